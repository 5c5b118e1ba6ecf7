"""SMPP 3.4 codec: known byte strings, round trips, stream framing, malformed PDUs, text, receipts."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import ProtocolError
from gateway.protocols import smpp_pdu as P

KAZAKH = "ә ғ қ ң ө ұ ү һ і"


def test_enquire_link_known_bytes() -> None:
    assert P.encode(P.EnquireLink(sequence=1)) == bytes.fromhex("00000010 00000015 00000000 00000001")
    assert P.decode(bytes.fromhex("00000010 80000015 00000000 00000007")) == P.EnquireLinkResp(sequence=7)


def test_bind_transceiver_known_bytes() -> None:
    raw = P.encode(P.BindTransceiver(sequence=1, system_id="esme", password="secret", system_type="WARN"))
    body = b"esme\0secret\0WARN\0\x34\x00\x00\0"
    assert raw == (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("00000009 00000000 00000001") + body
    assert P.decode(raw) == P.BindTransceiver(sequence=1, system_id="esme", password="secret", system_type="WARN")


def test_submit_sm_known_bytes() -> None:
    pdu = P.SubmitSm(sequence=2, source_addr_ton=5, source_addr="112", dest_addr_ton=1, dest_addr_npi=1,
                     destination_addr="77011234567", registered_delivery=1, short_message=b"Hi")
    body = (b"\0" + b"\x05\x00" + b"112\0" + b"\x01\x01" + b"77011234567\0" + b"\x00\x00\x00" + b"\0" + b"\0"
            + b"\x01\x00\x00\x00\x02" + b"Hi")
    assert P.encode(pdu) == (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("00000004 00000000 00000002") + body
    assert P.decode(P.encode(pdu)) == pdu


def test_submit_sm_resp_error_has_no_body() -> None:
    raw = P.encode(P.SubmitSmResp(sequence=9, status=P.Status.ESME_RTHROTTLED))
    assert raw == bytes.fromhex("00000010 80000004 00000058 00000009")
    assert P.decode(raw) == P.SubmitSmResp(sequence=9, status=0x58)
    ok = P.encode(P.SubmitSmResp(sequence=9, message_id="A1B2"))
    assert ok == bytes.fromhex("00000015 80000004 00000000 00000009") + b"A1B2\0"


@pytest.mark.parametrize("pdu", [
    P.BindTransmitter(sequence=3, system_id="a", password="b", addr_ton=1, addr_npi=1, address_range="7701"),
    P.BindTransmitterResp(sequence=3, system_id="SMSC", sc_interface_version=0x34),
    P.BindTransceiverResp(sequence=4, status=P.Status.ESME_RBINDFAIL),
    P.BindReceiver(sequence=3, system_id="a", password="b"),
    P.BindReceiverResp(sequence=3, system_id="S"),
    P.DeliverSm(sequence=0x7FFFFFFF, source_addr="77011234567", destination_addr="112", esm_class=4,
                short_message=b"id:1 stat:DELIVRD", receipted_message_id="1", message_state=2,
                network_error_code=b"\x03\x00\x01"),
    P.DeliverSmResp(sequence=5),
    P.SubmitSm(sequence=6, destination_addr="77011234567", data_coding=8, message_payload=KAZAKH.encode("utf-16-be"),
               user_message_reference=513, sar_msg_ref_num=300, sar_total_segments=3, sar_segment_seqnum=2,
               other_tlvs=((0x1501, b"\x01\x02"),)),
    P.Unbind(sequence=7), P.UnbindResp(sequence=7), P.EnquireLink(sequence=8),
    P.GenericNack(sequence=9, status=P.Status.ESME_RINVCMDID),
])
def test_round_trip(pdu: P.Pdu) -> None:
    assert P.decode(P.encode(pdu)) == pdu


def test_tlv_bytes() -> None:
    raw = P.encode(P.SubmitSm(sequence=1, destination_addr="1", user_message_reference=0x0102, message_payload=b"xy"))
    assert raw.endswith(bytes.fromhex("0204 0002 0102") + bytes.fromhex("0424 0002") + b"xy")


def test_submit_template_frames_equal_encode() -> None:
    pdu = P.SubmitSm(sequence=0, service_type="WAP", source_addr_ton=5, source_addr="ALERT", dest_addr_ton=1,
                     dest_addr_npi=1, registered_delivery=1, data_coding=8, short_message=KAZAKH.encode("utf-16-be"),
                     user_message_reference=7)
    template = P.SubmitTemplate(pdu)
    for seq, dest in ((1, "77011234567"), (0x7FFFFFFF, "1"), (5, "")):
        expected = P.encode(P.SubmitSm(**{**msgspec.structs.asdict(pdu), "sequence": seq, "destination_addr": dest}))
        assert template.frame(seq, dest) == expected


def test_fields_that_do_not_fit_are_local_errors() -> None:
    with pytest.raises(ValueError, match="system_id"):
        P.encode(P.BindTransceiver(sequence=1, system_id="x" * 16, password="p"))
    with pytest.raises(ValueError, match="254"):
        P.encode(P.SubmitSm(sequence=1, short_message=b"x" * 255))


def test_stream_decoder_split_and_concatenated_chunks() -> None:
    frames = [P.encode(P.SubmitSmResp(sequence=i, message_id=f"M{i}")) for i in range(1, 6)]
    frames.append(P.encode(P.DeliverSm(sequence=6, short_message=b"x" * 200)))
    stream = b"".join(frames)
    for size in (1, 3, 7, 16, 17, 100, len(stream)):
        decoder = P.Decoder()
        got: list[P.Pdu] = []
        for start in range(0, len(stream), size):
            got.extend(decoder.feed(stream[start:start + size]))
        assert [p.sequence for p in got] == [1, 2, 3, 4, 5, 6], size
        assert decoder.buffered == 0
    decoder = P.Decoder()
    assert [p.sequence for p in decoder.feed(stream[:30])] == [1] and decoder.buffered == 11
    assert decoder.feed(b"") == [] and decoder.buffered == 11


def test_stream_decoder_accepts_bytearray() -> None:
    (pdu,) = P.Decoder().feed(bytearray(P.encode(P.SubmitSm(sequence=1, short_message=b"abc"))))
    assert isinstance(pdu, P.SubmitSm) and type(pdu.short_message) is bytes


@pytest.mark.parametrize("length", [0, 15, P.MAX_PDU + 1])
def test_bad_command_length_loses_the_stream(length: int) -> None:
    decoder = P.Decoder()
    bad = length.to_bytes(4, "big") + bytes.fromhex("00000015 00000000 00000004")
    with pytest.raises(P.PduError) as caught:
        decoder.feed(bad)
    assert not caught.value.in_sync and caught.value.status == P.Status.ESME_RINVCMDLEN
    assert isinstance(caught.value, ProtocolError)
    with pytest.raises(P.PduError):  # the stream cannot be framed again
        decoder.feed(P.encode(P.EnquireLink(sequence=1)))


def test_bad_length_seen_before_the_whole_header() -> None:
    with pytest.raises(P.PduError):
        P.Decoder().feed(b"\x00\x00\x00\x08")


def test_unknown_command_id_is_skipped_in_sync() -> None:
    decoder = P.Decoder()
    unknown = bytes.fromhex("00000014 00000099 00000000 0000002A") + b"abcd"
    decoder.receive_data(unknown + P.encode(P.EnquireLink(sequence=43)))
    with pytest.raises(P.PduError) as caught:
        decoder.next_pdu()
    assert caught.value.in_sync and caught.value.sequence == 42 and caught.value.status == P.Status.ESME_RINVCMDID
    assert decoder.next_pdu() == P.EnquireLink(sequence=43)


@pytest.mark.parametrize("body", [
    b"no-terminator",  # service_type never ends
    b"\0\x05\x00112\0\x01\x01" + b"777\0" + b"\0\0\0\0\0" + b"\x01\0\0\0\x09" + b"short",  # sm_length past the end
    b"\0\x05\x00112\0\x01\x01" + b"777\0" + b"\0\0\0\0\0" + b"\x01\0\0\0\x00" + b"\x02\x04\x00",  # half a TLV
    b"\0\x05\x00112\0\x01\x01" + b"777\0" + b"\0\0\0\0\0" + b"\x01\0\0\0\x00" + b"\x04\x24\x00\x09ab",  # TLV overrun
    b"\0\x05",  # body ends inside the fixed fields
])
def test_malformed_body(body: bytes) -> None:
    raw = (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("00000004 00000000 00000005") + body
    with pytest.raises(P.PduError) as caught:
        P.decode(raw)
    assert caught.value.in_sync and caught.value.sequence == 5


def test_decode_wants_exactly_one_pdu() -> None:
    one = P.encode(P.EnquireLink(sequence=1))
    with pytest.raises(P.PduError):
        P.decode(one + one)
    with pytest.raises(P.PduError):
        P.decode(one[:10])


def test_status_names() -> None:
    assert P.status_name(0x58) == "ESME_RTHROTTLED"
    assert P.status_name(0x14) == "ESME_RMSGQFUL"
    assert P.status_name(0x0B) == "ESME_RINVDSTADR"
    assert P.status_name(0x0D) == "ESME_RBINDFAIL"
    assert P.status_name(0x400) == "0x00000400"


# --- text ----------------------------------------------------------------------------------

def test_gsm_chosen_for_latin_text() -> None:
    enc = P.encode_text("Flood warning @ Almaty: go to {high} ground €5", ref=1)
    assert enc.data_coding == P.CODING_GSM and enc.esm_class == 0 and len(enc.parts) == 1
    assert enc.parts[0].startswith(b"Flood warning \x00 Almaty")
    assert b"\x1b\x28high\x1b\x29" in enc.parts[0] and enc.parts[0].endswith(b"\x1b\x655")
    assert P.gsm_decode(enc.parts[0]) == "Flood warning @ Almaty: go to {high} ground €5"


@pytest.mark.parametrize("text", [KAZAKH, "Внимание! Эвакуация", "back`tick", "tab\there", "ESC\x1b"])
def test_ucs2_chosen_when_a_character_has_no_septet(text: str) -> None:
    enc = P.encode_text(text, ref=1)
    assert enc.data_coding == P.CODING_UCS2
    assert b"".join(enc.parts).decode("utf-16-be") == text


def test_kazakh_letters_in_ucs2_big_endian() -> None:
    enc = P.encode_text("әғқңөұүһі", ref=1)
    assert enc.parts == [bytes.fromhex("04D9 0493 049B 04A3 04E9 04B1 04AF 04BB 0456")]


def test_limits_of_one_short_message() -> None:
    assert len(P.encode_text("a" * 160, ref=1).parts) == 1
    assert len(P.encode_text("ә" * 70, ref=1).parts) == 1
    assert P.text_units("{" * 80) == (P.CODING_GSM, 160)
    assert len(P.encode_text("{" * 80, ref=1).parts) == 1
    assert P.text_units(KAZAKH) == (P.CODING_UCS2, len(KAZAKH))


def test_gsm_segmentation_153_septets() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    enc = P.encode_text(text, ref=0x7B)
    assert enc.esm_class == P.ESM_UDHI and len(enc.parts) == 3
    assert [len(p) - 6 for p in enc.parts] == [153, 153, 94]
    assert [p[:6] for p in enc.parts] == [bytes([5, 0, 3, 0x7B, 3, i]) for i in (1, 2, 3)]
    assert "".join(P.gsm_decode(P.split_udh(p)[1]) for p in enc.parts) == text


def test_gsm_segmentation_never_splits_an_escape() -> None:
    text = "a" * 152 + "€" + "b" * 10  # the euro's ESC would be septet 153 of part one
    enc = P.encode_text(text, ref=1)
    assert len(enc.parts[0]) - 6 == 152 and enc.parts[1][6:8] == b"\x1b\x65"
    assert "".join(P.gsm_decode(P.split_udh(p)[1]) for p in enc.parts) == text


def test_ucs2_segmentation_67_units_kazakh() -> None:
    text = (KAZAKH + " ") * 12  # 216 units
    enc = P.encode_text(text, ref=9)
    assert enc.data_coding == P.CODING_UCS2 and enc.esm_class == P.ESM_UDHI
    assert [(len(p) - 6) // 2 for p in enc.parts] == [67, 67, 67, 15]
    concat = [P.split_udh(p) for p in enc.parts]
    assert [c for c, _ in concat] == [P.Concat(9, 4, i) for i in (1, 2, 3, 4)]
    assert "".join(P.decode_text(8, body) for _, body in concat) == text


def test_ucs2_segmentation_never_splits_a_surrogate_pair() -> None:
    text = "ә" * 66 + "🚨" + "ә" * 10
    enc = P.encode_text(text, ref=1)
    assert (len(enc.parts[0]) - 6) // 2 == 66
    assert "".join(P.decode_text(8, P.split_udh(p)[1]) for p in enc.parts) == text


def test_too_many_parts() -> None:
    with pytest.raises(ValueError, match="255"):
        P.encode_text("ә" * 67 * 256, ref=1)


def test_udh_with_16_bit_reference_and_bad_udh() -> None:
    concat, body = P.split_udh(bytes([6, 8, 4, 0x01, 0x02, 2, 1]) + b"xy")
    assert concat == P.Concat(0x0102, 2, 1) and body == b"xy"
    with pytest.raises(ProtocolError):
        P.split_udh(bytes([9, 0, 3]))


def test_decode_text_other_codings() -> None:
    assert P.decode_text(3, "café".encode("latin-1")) == "café"
    assert P.gsm_decode(b"\x1b\x99a\xff") == " a?"


# --- delivery receipts ---------------------------------------------------------------------

def test_parse_receipt() -> None:
    text = ("id:0A1B2C sub:001 dlvrd:001 submit date:2405011230 done date:2405011231 stat:DELIVRD err:000 "
            "text:Flood warning, go")
    r = P.parse_receipt(text)
    assert r == P.DeliveryReceipt(message_id="0A1B2C", stat="DELIVRD", err="000", sub="001", dlvrd="001",
                                  submit_date="2405011230", done_date="2405011231", text="Flood warning, go")


def test_parse_receipt_variants() -> None:
    r = P.parse_receipt("id:77 submit date:2405011230 done date:2405011231 stat:undeliv err:034 Text:x")
    assert (r.message_id, r.stat, r.err) == ("77", "UNDELIV", "034")
    assert P.parse_receipt("stat:EXPIRED id:5").message_id == "5"


@pytest.mark.parametrize("text", ["", "hello", "id:1 sub:001", "stat:DELIVRD"])
def test_not_a_receipt(text: str) -> None:
    with pytest.raises(ProtocolError):
        P.parse_receipt(text)


def test_format_then_parse_receipt() -> None:
    r = P.DeliveryReceipt(message_id="FF01", stat="UNDELIV", err="001", submit_date="2405011230",
                          done_date="2405011231")
    assert P.parse_receipt(P.format_receipt(r)) == P.DeliveryReceipt(
        message_id="FF01", stat="UNDELIV", err="001", sub="001", dlvrd="001", submit_date="2405011230",
        done_date="2405011231", text="")
