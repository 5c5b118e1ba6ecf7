"""Mobile-originated SMPP texts, pure: decoding by data_coding, UDH and SAR parts, reassembly."""

from __future__ import annotations

from gateway.protocols import smpp_mo
from gateway.protocols.smpp_pdu import decode, encode
from gateway.protocols.smpp_pdu_types import DeliverSm
from gateway.protocols.smpp_text import Concat


def wire(pdu: DeliverSm) -> DeliverSm:
    """Through the real codec, as the reader would see it."""
    back = decode(encode(pdu))
    assert isinstance(back, DeliverSm)
    return back


def test_gsm_and_ucs2_texts_round_trip_through_the_codec() -> None:
    for text in ("Help, I cannot talk. Flat 12, Abaya 5", "Көмектесіңіз! Пәтер 12", "Помогите, муж бьёт"):
        [pdu] = smpp_mo.mo_pdus("77011234567", "112", text, ref=1)
        part = smpp_mo.decode_mo(wire(pdu))
        assert part.text == text and part.concat is None and part.flags == ()
        assert smpp_mo.is_mobile_originated(pdu)


def test_a_receipt_is_not_mobile_originated() -> None:
    assert not smpp_mo.is_mobile_originated(DeliverSm(sequence=1, esm_class=0x04))
    assert not smpp_mo.is_mobile_originated(DeliverSm(sequence=1, esm_class=0x20))  # intermediate notification
    assert smpp_mo.is_mobile_originated(DeliverSm(sequence=1, esm_class=0x40))  # UDHI on an ordinary text


def test_long_text_parts_are_joined_in_any_order_once() -> None:
    text = "Я не могу говорить, в квартире чужой человек с ножом. Адрес: Абая 10, кв 5, третий этаж. " * 2
    pdus = smpp_mo.mo_pdus("77011234567", "112", text, ref=9)
    assert len(pdus) == 3
    r = smpp_mo.Reassembler()
    parts = [smpp_mo.decode_mo(wire(p)) for p in pdus]
    assert [p.concat for p in parts] == [Concat(9, 3, 1), Concat(9, 3, 2), Concat(9, 3, 3)]
    assert r.add(parts[2], 0.0) == (None, [])
    assert r.add(parts[0], 0.1) == (None, [])
    assert r.add(parts[0], 0.1) == (None, [])  # an SMSC retry of a part
    whole, pushed = r.add(parts[1], 0.2)
    assert pushed == [] and whole is not None and whole.text == text and whole.complete and whole.parts == 3
    assert whole.flags == ("duplicate_part",) and len(r) == 0


def test_sar_tlvs_carry_the_reference_too() -> None:
    pdu = DeliverSm(sequence=1, source_addr="77011234567", short_message=b"second", sar_msg_ref_num=300,
                    sar_total_segments=2, sar_segment_seqnum=2)
    assert smpp_mo.decode_mo(wire(pdu)).concat == Concat(300, 2, 2)


def test_missing_parts_are_handed_over_with_a_gap_after_max_age() -> None:
    r = smpp_mo.Reassembler(max_age_s=60)
    [first, _, third] = [smpp_mo.decode_mo(p) for p in smpp_mo.mo_pdus("7701", "112", "x" * 400, ref=3)]
    r.add(first, 0.0)
    r.add(third, 1.0)
    assert r.expire(59.0) == []
    [late] = r.expire(60.0)
    assert late.text == "x" * 153 + smpp_mo.GAP + "x" * (400 - 306) and not late.complete
    assert late.flags == ("parts_missing",) and len(r) == 0


def test_waiting_groups_are_bounded() -> None:
    r = smpp_mo.Reassembler(max_pending=2)
    for ref in range(3):
        first = smpp_mo.decode_mo(smpp_mo.mo_pdus("7701", "112", "y" * 200, ref=ref)[0])
        whole, pushed = r.add(first, float(ref))
    assert whole is None and [p.text for p in pushed] == ["y" * 153 + smpp_mo.GAP] and len(r) == 2


def test_unknown_data_coding_becomes_a_visible_marker() -> None:
    [pdu] = smpp_mo.mo_pdus("77011234567", "112", "", ref=0, data_coding=0x05, body=b"\x82\xa0\x82\xa2")
    part = smpp_mo.decode_mo(wire(pdu))
    assert part.flags == ("data_coding_0x05",)
    assert part.text == "[undecodable SMS: data_coding 0x05, 4 octets: 82a082a2]"
    binary = smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0xF4, short_message=b"\x00\x01"))
    assert binary.text.startswith("[undecodable SMS: data_coding 0xF4")


def test_other_codings_we_can_read() -> None:
    assert smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0x06, short_message="Помощь".encode("iso8859_5"))).text \
        == "Помощь"
    assert smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0x03, short_message="Café".encode("latin-1"))).text \
        == "Café"
    assert smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0x18, short_message="Ой".encode("utf-16-be"))).text \
        == "Ой"  # GSM general data coding, class 0, UCS-2
    assert smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0xF1, short_message=b"Hi")).text == "Hi"
    odd = smpp_mo.decode_mo(DeliverSm(sequence=1, data_coding=0x08, short_message=b"\x04\x1f\x04"))
    assert odd.flags == ("odd_ucs2_length",) and odd.text.startswith("П")


def test_a_udh_running_past_the_message_keeps_the_octets() -> None:
    part = smpp_mo.decode_mo(DeliverSm(sequence=1, esm_class=0x40, short_message=b"\x09\x00\x03hi"))
    assert part.flags == ("bad_udh",) and part.concat is None and part.text.endswith("hi")
    bad_seq = smpp_mo.decode_mo(DeliverSm(sequence=1, esm_class=0x40, short_message=b"\x05\x00\x03\x01\x02\x05hi"))
    assert bad_seq.flags == ("bad_concat",) and bad_seq.concat is None and bad_seq.text == "hi"


def test_a_text_carries_the_smsc_id_of_the_part_that_completed_it() -> None:
    import msgspec

    text = "Я не могу говорить, в квартире чужой человек с ножом. Адрес: Абая 10, кв 5, третий этаж. " * 2
    pdus = [msgspec.structs.replace(p, receipted_message_id=f"M7-{n}")
            for n, p in enumerate(smpp_mo.mo_pdus("77011234567", "112", text, ref=9), start=1)]
    parts = [smpp_mo.decode_mo(wire(p)) for p in pdus]
    r = smpp_mo.Reassembler(max_age_s=60)
    r.add(parts[2], 0.0)
    r.add(parts[0], 0.1)
    whole, _ = r.add(parts[1], 0.2)
    assert whole is not None and whole.message_id == "M7-2"  # the one whose answer waited on the gateway
    # the SMSC missed that answer and sends the part again: alone, handed over late, with the same id
    assert r.add(parts[1], 5.0) == (None, [])
    [orphan] = r.expire(70.0)
    assert orphan.message_id == "M7-2" and not orphan.complete
    [single] = smpp_mo.mo_pdus("77011234567", "112", "help", ref=1)
    assert smpp_mo.Reassembler().add(smpp_mo.decode_mo(wire(single)), 0.0)[0].message_id == ""  # type: ignore[union-attr]
