"""Voice acknowledgements: the driver -> ARI -> Asterisk (the tests' own instance) -> call-out trunk ->
sipp residents' phones that key RFC 2833 DTMF into the call (or never press)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from channels.base import Language, Message, Receipt
from channels.voice import DEFAULT_ACK_WAIT_S, AckRequest, ack_request, acknowledges, open_voice
from channels.voice_tts import Synthesizer
from gateway.asterisk import sandbox
from sim.dtmf_phone import DtmfPhones, Press, dtmf_phones, scenario_xml
from sim.lab import AsteriskInstance, residents
from sim.sipp import parse_events
from tests.drivers.test_voice_real import voice_config, wait_no_callout_channels

TEXT = "Внимание! Угроза наводнения. Нажмите один, если вы услышали это сообщение."
WAIT_S = 3.0
ACK = {"ack_digits": "1", "ack_wait_s": str(WAIT_S)}


def message(number: str, options: dict[str, str], language: Language = "ru") -> Message:
    return Message(idempotency_key=f"alert-1/voice/{number}", alert_id="alert-1", address=number,
                   language=language, body=TEXT, options=options)


def call_length(phones: DtmfPhones, number: str) -> float:
    """From the answer to Asterisk's BYE, as the phone saw it."""
    return phones.when(number, "BYE") - phones.when(number, "ANSWERED")


# -- real tier --------------------------------------------------------------------------------------


async def test_keys_pressed_after_during_and_never(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    sounds = sandbox.locate(asterisk.cfg).host_dir / "sounds"
    speech_s = (await Synthesizer(sounds).speech(TEXT, "ru")).duration_s  # cached: the driver reuses it
    assert speech_s > 2.5, speech_s
    after, during, wrong_key, never, plain = (f"+7701000030{i}" for i in range(1, 6))
    presses = {after: Press("1", int((speech_s + 1.0) * 1000)),  # in the wait after the message
               during: Press("1", 800),  # while the message is still playing
               wrong_key: Press("2", int((speech_s + 0.8) * 1000))}  # not an acknowledging key
    batch = [message(after, ACK), message(during, ACK), message(wrong_key, ACK), message(never, ACK),
             message(plain, {}), message("+77010000399", {"ack_digits": "yes"})]
    with trio.fail_after(40):
        async with dtmf_phones(tmp_path / "phones", presses) as phones, \
                open_voice(voice_config(asterisk, phones.uri, repeats=1, max_calls_per_second=20),
                           sounds_dir=sounds) as voice:
            receipts = await voice.deliver(batch)
            await wait_no_callout_channels(asterisk)
    by_number = {m.address: r for m, r in zip(batch, receipts, strict=True)}
    delivered_with = {n: (r.state, r.reply) for n, r in by_number.items()}
    assert delivered_with == {after: ("delivered", "1"), during: ("delivered", "1"), wrong_key: ("delivered", ""),
                              never: ("delivered", ""), plain: ("delivered", ""),
                              "+77010000399": ("failed", "")}, receipts
    bad: Receipt = by_number["+77010000399"]
    assert not bad.retryable and "ack_digits" in bad.error and not phones.events("+77010000399")
    # A press ends the call at once; without one the call waits WAIT_S after the message, then ends.
    for number in (after, during):
        assert phones.when(number, "BYE") - phones.when(number, "PRESSED") < 1.0, phones.events(number)
    assert call_length(phones, during) < speech_s - 0.5  # the message was cut short by the answer
    assert speech_s + 0.8 <= call_length(phones, after) < speech_s + WAIT_S
    for number in (wrong_key, never):
        assert speech_s + WAIT_S - 0.3 <= call_length(phones, number) <= speech_s + WAIT_S + 1.0, \
            (number, call_length(phones, number))
    assert speech_s - 0.3 <= call_length(phones, plain) <= speech_s + 1.0  # no acknowledgement asked: no wait


async def test_hanging_up_while_waiting_for_a_key_is_delivered_without_reply(asterisk: AsteriskInstance,
                                                                             tmp_path: Path) -> None:
    sounds = sandbox.locate(asterisk.cfg).host_dir / "sounds"
    speech_s = (await Synthesizer(sounds).speech(TEXT, "ru")).duration_s
    number = "+77010000311"
    with trio.fail_after(30):
        async with residents(tmp_path / "residents", hang_up_after_ms={number: int((speech_s + 1.0) * 1000)}) \
                as phones, open_voice(voice_config(asterisk, phones.uri, repeats=1), sounds_dir=sounds) as voice:
            started = trio.current_time()
            [receipt] = await voice.deliver([message(number, {"ack_digits": "1", "ack_wait_s": "20"})])
            elapsed = trio.current_time() - started
    assert (receipt.state, receipt.reply) == ("delivered", ""), receipt
    assert speech_s + 1.0 <= elapsed < speech_s + 3.0, (elapsed, speech_s)  # not the 20 s wait
    assert phones.audio(number).audio_s >= speech_s - 0.3


# -- pure parts -------------------------------------------------------------------------------------


def test_ack_options_are_parsed_and_checked() -> None:
    assert ack_request({}) is None
    assert ack_request({"ack_digits": "1"}) == AckRequest("1", DEFAULT_ACK_WAIT_S)
    assert ack_request({"ack_digits": "12#", "ack_wait_s": "4.5"}) == AckRequest("12#", 4.5)
    for options, word in [({"ack_digits": "yes"}, "ack_digits"), ({"ack_digits": "1" * 17}, "ack_digits"),
                          ({"ack_digits": "1", "ack_wait_s": "soon"}, "ack_wait_s"),
                          ({"ack_digits": "1", "ack_wait_s": "0"}, "ack_wait_s"),
                          ({"ack_digits": "1", "ack_wait_s": "nan"}, "ack_wait_s"),
                          ({"ack_digits": "1", "ack_wait_s": "1e9"}, "ack_wait_s"),
                          ({"ack_wait_s": "5"}, "without ack_digits")]:
        with pytest.raises(ValueError, match=word):
            ack_request(options)


def test_only_one_acknowledging_key_counts() -> None:
    assert acknowledges("1", "1") and acknowledges("#", "1#")
    assert not acknowledges("2", "1") and not acknowledges("", "1") and not acknowledges("12", "12")
    assert not acknowledges("1", "")


def test_phone_scenario_and_log() -> None:
    xml = scenario_xml({"+77010000301": (Path("/tmp/k.pcap"), 1500)})
    assert 'play_pcap_audio="/tmp/k.pcap"' in xml and '<pause milliseconds="1500"/>' in xml
    assert "\\+77010000301" in xml and not re.search(r"\{(tests|branches|blocks|ring_ms)\}", xml)
    events = parse_events("INVITE 1700000000.000000 250000.000000 number=+7701 callid=x\n"
                       "garbage\nBYE 1700000003 0 number=+7701 callid=x\n")
    assert [(e.kind, e.wall, e.number) for e in events] == [("INVITE", 1700000000.25, "+7701"),
                                                            ("BYE", 1700000003.0, "+7701")]
