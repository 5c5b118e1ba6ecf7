"""Asterisk's CEL log (cel_custom, our layout): records in, events out, byte by byte, with the hostile and
broken rows a log can hold; and the grouping of events into the calls the fallback dialplan served.

``tests/data/cel/asterisk22-fallback.csv`` is what Debian's Asterisk 22.10 wrote for two fallback calls
answered by a dispatcher phone (two positions rung each time; the second caller's number held ``<>",`` and a
newline, sent as ``%3Cimg%3E1234%22%2C%0A5``)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from gateway.protocols.cel import LAYOUT, MAX_RECORD, CelEvent, Malformed, Reader
from gateway.protocols.cel_calls import Calls, FallbackCall

SAMPLE = Path(__file__).parent.parent / "data" / "cel" / "asterisk22-fallback.csv"


def row(kind: str, wall: float, uid: str, linked: str, channel: str, *, user: str = "", extra: str = "",
        number: str = "", name: str = "", context: str = "ecgw-emergency") -> bytes:
    """One record as cel_custom writes it: every field quoted, quotes doubled."""
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(
        [LAYOUT, kind, user, f"{wall:.6f}", uid, linked, channel, context, "s", "", extra, number, name])
    return out.getvalue().encode()


def events(data: bytes) -> list[CelEvent | Malformed]:
    reader = Reader()
    reader.receive_data(data)
    found = []
    while (item := reader.next_row()) is not None:
        found.append(item)
    return found


def fallback_call(t: float = 1000.0, uid: str = "1000.0", *, answer_leg: str = "PJSIP/ecgw-pos-pos1-00000001",
                  number: str = "+77011234567", mark: bool = True, caller_hangs_up: bool = True) -> bytes:
    """The rows of one call the fallback dialplan rang two positions for (as Asterisk 22 logs them)."""
    caller, leg1, leg2 = "PJSIP/operator-trunk-00000000", uid + "1", uid + "2"
    named = time.strftime("%Y%m%d-%H%M%S", time.gmtime(int(t)))
    extra = json.dumps({"extra": f"112 {named}-{uid} allowed_not_screened 1-2@127.0.0.1"})
    rows = [row("CHAN_START", t, uid, uid, caller, number=number, name="Айгерім", context="ecgw-from-operator")]
    if mark:
        rows.append(row("USER_DEFINED", t + 0.005, uid, uid, caller, user="ecgw_fallback", extra=extra,
                        number=number, name="Айгерім"))
    rows += [row("CHAN_START", t + 0.006, leg1, uid, "PJSIP/ecgw-pos-pos1-00000001"),
             row("CHAN_START", t + 0.007, leg2, uid, "PJSIP/ecgw-pos-pos2-00000002")]
    if answer_leg:
        answering = leg1 if "pos1" in answer_leg else leg2
        rows += [row("ANSWER", t + 3.0, answering, uid, answer_leg),
                 row("ANSWER", t + 3.001, uid, uid, caller, number=number)]
    hangup = json.dumps({"hangupcause": 16, "hangupsource": caller if caller_hangs_up else leg1,
                         "dialstatus": "ANSWER"})
    rows += [row("HANGUP", t + 10.0, uid, uid, caller, extra=hangup, number=number),
             row("HANGUP", t + 10.001, leg1, uid, "PJSIP/ecgw-pos-pos1-00000001"),
             row("LINKEDID_END", t + 10.001, leg1, uid, "PJSIP/ecgw-pos-pos1-00000001")]
    return b"".join(rows)


# --- rows ---------------------------------------------------------------------------------------------------

def test_a_row_is_read_as_asterisk_wrote_it() -> None:
    [found] = events(row("CHAN_START", 1796417176.785318, "1796417176.0", "1796417176.0", "PJSIP/trunk-00000000",
                         number="+77011234567", name='Bob "Quote", Jr.'))
    assert isinstance(found, CelEvent)
    assert (found.kind, found.wall, found.unique_id, found.number, found.name) == (
        "CHAN_START", 1796417176.785318, "1796417176.0", "+77011234567", 'Bob "Quote", Jr.')
    assert found.offset == 0


def test_the_real_asterisk_log_reads_whole_with_the_hostile_number_kept() -> None:
    found = events(SAMPLE.read_bytes())
    assert all(isinstance(e, CelEvent) for e in found) and len(found) == 20
    hostile = [e for e in found if isinstance(e, CelEvent) and e.number.startswith("<img>")]
    assert hostile and hostile[0].number == '<img>1234",\n5'


def test_bytes_arriving_one_at_a_time_give_the_same_events_and_offsets() -> None:
    data = SAMPLE.read_bytes() + fallback_call()
    whole = events(data)
    reader, found = Reader(), []
    for i in range(len(data)):
        reader.receive_data(data[i:i + 1])
        while (item := reader.next_row()) is not None:
            found.append(item)
    assert found == whole
    assert reader.consumed == len(data) and reader.pending == 0


def test_an_unfinished_record_waits_even_when_a_line_of_it_ended() -> None:
    record = row("CHAN_START", 1.5, "1.0", "1.0", "PJSIP/x-1", number="12\n34")
    cut = record.index(b"\n") + 1  # inside the quoted number: a newline, but not the record's end
    reader = Reader()
    reader.receive_data(record[:cut])
    assert reader.next_row() is None and reader.consumed == 0
    reader.receive_data(record[cut:])
    found = reader.next_row()
    assert isinstance(found, CelEvent) and found.number == "12\n34"


def test_a_forged_record_inside_a_value_stays_in_its_value() -> None:
    forged = "1\n" + row("ANSWER", 2.0, "9.9", "9.9", "PJSIP/ecgw-pos-evil-00000001").decode()
    found = events(row("CHAN_START", 1.0, "1.0", "1.0", "PJSIP/x-1", number=forged))
    assert len(found) == 1 and isinstance(found[0], CelEvent) and found[0].number == forged


def test_a_torn_write_is_one_malformed_record_and_the_next_record_is_read() -> None:
    good = row("HANGUP", 2.0, "1.0", "1.0", "PJSIP/x-1")
    torn = row("CHAN_START", 1.0, "1.0", "1.0", "PJSIP/x-1")[:30]  # Asterisk killed mid-write
    found = events(torn + b"\n" + good)
    assert isinstance(found[0], Malformed) and isinstance(found[1], CelEvent)
    glued = events(torn + good + good)  # no newline between: the torn one swallows the next
    assert [type(e) for e in glued] == [Malformed, CelEvent]


def test_hostile_and_broken_rows_are_malformed_with_a_reason_never_an_exception() -> None:
    base = ["CHAN_START", "", "1.5", "1.0", "1.0", "PJSIP/x-1", "c", "s", "", "", "1", "n"]

    def raw(fields: list[str], layout: str = LAYOUT) -> bytes:
        out = io.StringIO()
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow([layout, *fields])
        return out.getvalue().encode()

    cases = {
        "fields": raw(base[:-1]),
        "event name": raw(["drop table", *base[1:]]),
        "not a number": raw([base[0], "", "yesterday", *base[3:]]),
        "not a time": raw([base[0], "", "nan", *base[3:]]),
        "unique id": raw([*base[:3], "1.0;rm -rf /", *base[4:]]),
        "longer than": raw([*base[:-1], "x" * 5000]),
        "layout": raw(base, layout="ecgw-cel-0"),
        "not CSV": f'"{LAYOUT}","CHAN_START"x,"a""b"\n'.encode(),
        "found 2": f'"{LAYOUT}","CHAN_START"x,"1"\n'.encode(),
    }
    for reason, data in cases.items():
        [found] = events(data)
        assert isinstance(found, Malformed) and reason in found.reason, (reason, found)
    [binary] = events(row("CHAN_START", 1.0, "1.0", "1.0", "PJSIP/x-1")[:-1] + b"\xff\xfe\n")
    assert isinstance(binary, Malformed)
    [latin] = events(row("CHAN_START", 1.0, "1.0", "1.0", "PJSIP/x-1", name="\udcff".encode("utf-8", "surrogatepass")
                         .decode("utf-8", "replace")))
    assert isinstance(latin, CelEvent)


def test_garbage_without_an_end_is_dropped_once_no_record_can_be_that_long() -> None:
    reader = Reader()
    reader.receive_data(b"x" * (MAX_RECORD + 10) + b"\n" + b"y" * 10)
    found = reader.next_row()
    assert isinstance(found, Malformed) and reader.consumed == MAX_RECORD + 11
    reader.receive_data(b"\n" + row("HANGUP", 2.0, "1.0", "1.0", "PJSIP/x-1"))
    assert isinstance(reader.next_row(), Malformed) and isinstance(reader.next_row(), CelEvent)


def test_a_reader_resumes_at_a_file_offset() -> None:
    data = fallback_call()
    first = events(data)
    reader = Reader(offset=first[3].offset)
    reader.receive_data(data[first[3].offset:])
    assert reader.next_row() == first[3]


# --- calls --------------------------------------------------------------------------------------------------

def grouped(data: bytes, now: float = 2000.0) -> tuple[list[FallbackCall], Calls, Reader]:
    calls, reader = Calls(), Reader()
    reader.receive_data(data)
    while (item := reader.next_row()) is not None:
        if isinstance(item, CelEvent):
            calls.add(item)
    return calls.take_ended(now), calls, reader


def test_a_fallback_call_answered_by_a_position() -> None:
    [call], calls, _ = grouped(fallback_call())
    assert (call.incident_id, call.service, call.presentation, call.call_id) == (
        "19700101-001640-1000.0", "112", "allowed_not_screened", "1-2@127.0.0.1")
    assert (call.number, call.name, call.unique_id, call.linked_id) == ("+77011234567", "Айгерім", "1000.0", "1000.0")
    assert (call.arrived_wall, call.answered_wall, call.ended_wall) == (1000.0, 1003.0, 1010.0)
    assert call.answered_by == "PJSIP/ecgw-pos-pos1-00000001" and call.legs == 2
    assert (call.hangup_cause, call.hung_up_by) == (16, "PJSIP/operator-trunk-00000000")
    assert calls.open == {}


def test_the_real_log_gives_both_calls_with_the_position_that_answered() -> None:
    found, _, _ = grouped(SAMPLE.read_bytes())
    assert [(c.service, c.presentation, c.call_id) for c in found] == [
        ("112", "allowed_not_screened", "1-13020@127.0.0.1"), ("112", "allowed_not_screened", "1-13026@127.0.0.1")]
    assert [c.incident_id for c in found] == ["20261204-205844-1796417924.0", "20261204-205846-1796417926.3"]
    assert [c.answered_by for c in found] == ["PJSIP/ecgw-pos-pos2-00000002", "PJSIP/ecgw-pos-pos1-00000004"]
    assert found[1].number == '<img>1234",\n5'
    assert all(c.ended_wall is not None and c.answered_wall is not None for c in found)


def test_unanswered_and_unmarked_calls() -> None:
    [nobody], _, _ = grouped(fallback_call(answer_leg=""))
    assert nobody.answered_wall is None and nobody.answered_by == ""
    seen, calls, _ = grouped(fallback_call(mark=False))
    assert seen == [] and calls.open == {}  # a call the gateway served: forgotten once it ends


def test_a_call_is_handed_out_once_when_it_ends_not_before() -> None:
    data = fallback_call()
    cut = data.index(b'"HANGUP"') - len(f'"{LAYOUT}",')
    calls, reader = Calls(), Reader()
    reader.receive_data(data[:cut])
    while (item := reader.next_row()) is not None:
        assert isinstance(item, CelEvent)
        calls.add(item)
    assert calls.take_ended(2000.0) == []
    assert calls.resume_offset(reader.consumed) == 0  # the open marked call keeps its first row
    reader.receive_data(data[cut:])
    while (item := reader.next_row()) is not None:
        assert isinstance(item, CelEvent)
        calls.add(item)
    assert len(calls.take_ended(2000.0)) == 1 and calls.take_ended(2000.0) == []
    assert calls.resume_offset(reader.consumed) == reader.consumed == len(data)


def test_resume_offset_keeps_young_unmarked_calls_and_lets_old_ones_go() -> None:
    young = row("CHAN_START", 1000.0, "1000.0", "1000.0", "PJSIP/x-1")
    later = row("CHAN_START", 1030.0, "1030.0", "1030.0", "PJSIP/x-2")
    _, calls, reader = grouped(young + later)
    assert calls.resume_offset(reader.consumed) == 0  # the first may still be marked
    much_later = row("CHAN_START", 1100.0, "1100.0", "1100.0", "PJSIP/x-3")
    reader.receive_data(much_later)
    item = reader.next_row()
    assert isinstance(item, CelEvent)
    calls.add(item)
    assert calls.resume_offset(reader.consumed) == len(young + later)  # the 1100 one is still young


def test_a_call_whose_log_stopped_is_handed_out_without_an_end_once_stale() -> None:
    data = fallback_call()
    cut = data.index(b'"HANGUP"') - len(f'"{LAYOUT}",')
    calls, reader = Calls(stale_s=3600.0), Reader()
    reader.receive_data(data[:cut])
    while (item := reader.next_row()) is not None:
        assert isinstance(item, CelEvent)
        calls.add(item)
    assert calls.take_ended(1000.0 + 3000) == []
    [call] = calls.take_ended(1000.0 + 3700)
    assert call.ended_wall is None and call.answered_wall == 1003.0


def test_a_mark_without_its_words_still_names_the_call() -> None:
    caller = "PJSIP/trunk-00000000"
    data = (row("USER_DEFINED", 5.0, "5.0", "5.0", caller, user="ecgw_fallback", extra="not json")
            + row("HANGUP", 6.0, "5.0", "5.0", caller, extra="{}"))
    [call], _, _ = grouped(data)
    assert (call.incident_id, call.service, call.arrived_wall, call.hangup_cause) == ("", "", 5.0, None)


def test_rebase_restarts_open_calls_at_the_new_file() -> None:
    data = fallback_call()
    cut = data.index(b'"HANGUP"') - len(f'"{LAYOUT}",')
    _, calls, reader = grouped(data[:cut] + row("CHAN_START", 1000.5, "1000.9", "1000.9", "PJSIP/y-1"))
    calls.rebase()
    assert calls.resume_offset(reader.consumed) == 0


def test_a_marked_call_going_on_is_told_as_far_as_the_log_goes() -> None:
    data = fallback_call()
    _, calls, _ = grouped(data[:data.index(b'"HANGUP"') - len(f'"{LAYOUT}",')])
    [going] = calls.in_progress()
    assert (going.answered_wall, going.ended_wall, going.legs) == (1003.0, None, 2)
    _, unmarked, _ = grouped(fallback_call(mark=False, answer_leg="")[:200])
    assert unmarked.in_progress() == []
