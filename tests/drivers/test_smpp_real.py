"""SMPP driver against the SMSC stand-in on 127.0.0.1: delivery, receipts, throttling, binds, lost links."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import trio

from channels.base import Message, Receipt
from channels.smpp import open_smpp
from gateway.errors import ChannelError
from gateway.protocols import smpp_pdu as P
from gateway.settings.channels import SmppConfig
from sim.smsc import smsc_process
from sim.smsc_server import Smsc, open_smsc

KAZAKH = "Назар аударыңыз! Су тасқыны: ә ғ қ ң ө ұ ү һ і"


def msg(i: int, body: str = "Flood warning: move to high ground", address: str = "") -> Message:
    return Message(idempotency_key=f"alert-1/smpp/{i}", alert_id="alert-1", address=address or f"+7701{i:07d}",
                   language="kk", body=body)


def config(smsc: Smsc, **overrides: object) -> SmppConfig:
    host, port = smsc.address
    fields: dict[str, object] = dict(system_id="warn", password="secret", host=host, port=port, source_addr="112",
                                     source_addr_ton=5, max_per_second=100000, response_timeout_s=2.0,
                                     reconnect_min_s=0.05)
    fields.update(overrides)
    return SmppConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    async with open_smsc(system_id="warn", password="secret", receipt_delay_s=0.02) as running:
        yield running


async def wait_until(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_batch_is_delivered_and_counted(smsc: Smsc) -> None:
    long_ru = "Внимание! Эвакуация жителей района. " * 6  # 216 UCS-2 units: 4 parts
    messages = [msg(i, KAZAKH if i % 3 == 0 else long_ru if i % 3 == 1 else "Flood {test} €") for i in range(300)]
    with trio.fail_after(10):
        async with open_smpp(config(smsc, window=16)) as channel:
            assert channel.name == "smpp" and channel.max_batch == 500
            assert (await channel.health()).up
            receipts = await channel.deliver(messages)
    assert [r.idempotency_key for r in receipts] == [m.idempotency_key for m in messages]
    assert {r.state for r in receipts} == {"sent"}
    assert len({r.provider_id for r in receipts}) == 300
    assert smsc.messages == 300 and smsc.submitted == 100 + 100 * 4 + 100
    assert smsc.by_destination["77010000003"] == 1
    assert smsc.texts("77010000000") == [KAZAKH]
    assert smsc.texts("77010000001") == [long_ru]
    assert smsc.texts("77010000002") == ["Flood {test} €"]
    assert [d.data_coding for d in smsc.records["77010000002"]] == [P.CODING_GSM]
    assert smsc.records["77010000001"][0].parts == 4
    assert smsc.records["77010000001"][0].source == "112"
    assert smsc.unbinds == 1  # close unbinds politely


async def test_concurrent_batches_share_the_window(smsc: Smsc) -> None:
    results: list[list[Receipt]] = []
    with trio.fail_after(10):
        async with open_smpp(config(smsc, window=8)) as channel:
            async def one(start: int) -> None:
                results.append(await channel.deliver([msg(i) for i in range(start, start + 100)]))
            async with trio.open_nursery() as nursery:
                for start in range(0, 400, 100):
                    nursery.start_soon(one, start)
            assert channel.statistics()["window_free"] == 8
    assert sum(r.state == "sent" for batch in results for r in batch) == 400
    assert smsc.messages == 400


async def test_payload_mode_sends_one_pdu(smsc: Smsc) -> None:
    text = "Внимание! " * 30
    with trio.fail_after(5):
        async with open_smpp(config(smsc, long_messages="payload")) as channel:
            (receipt,) = await channel.deliver([msg(1, text)])
    assert receipt.state == "sent" and smsc.submitted == 1 and smsc.texts("77010000001") == [text]


async def test_delivery_receipts_reach_on_update(smsc: Smsc) -> None:
    smsc.fail_destinations = frozenset({"77010000002"})
    updates: list[Receipt] = []
    long_kk = KAZAKH * 4  # 3 parts, one receipt each at the SMSC, one update here
    with trio.fail_after(10):
        async with open_smpp(config(smsc), on_update=updates.append) as channel:
            receipts = await channel.deliver([msg(0), msg(1, long_kk), msg(2)])
            await wait_until(lambda: len(updates) == 3)
            await trio.sleep(0.1)  # no duplicate reports from the other parts
            assert smsc.receipts_acked == 5  # every deliver_sm got its deliver_sm_resp
            assert channel.statistics()["tracked"] == 0
    by_key = {u.idempotency_key: u for u in updates}
    assert len(updates) == 3
    assert by_key[msg(0).idempotency_key].state == "delivered"
    assert by_key[msg(0).idempotency_key].provider_id == receipts[0].provider_id
    assert by_key[msg(1).idempotency_key].state == "delivered"
    assert by_key[msg(1).idempotency_key].provider_id == receipts[1].provider_id == smsc.records["77010000001"][
        0].message_ids[0]
    failed = by_key[msg(2).idempotency_key]
    assert failed.state == "failed" and "UNDELIV" in failed.error and failed.provider_id == receipts[2].provider_id


@pytest.mark.parametrize("tlvs", [True, False])
async def test_receipt_text_alone_and_intermediate_notifications(smsc: Smsc, tlvs: bool) -> None:
    smsc.receipt_tlvs = tlvs  # without the TLVs the driver reads id and stat from the receipt text
    smsc.intermediate_receipts = True
    smsc.fail_destinations = frozenset({"77010000001"})
    updates: list[Receipt] = []
    with trio.fail_after(5):
        async with open_smpp(config(smsc), on_update=updates.append) as channel:
            await channel.deliver([msg(0), msg(1), msg(2, KAZAKH * 2)])
            await wait_until(lambda: len(updates) == 3)
            stats = channel.statistics()
    assert {u.idempotency_key: u.state for u in updates} == {
        msg(0).idempotency_key: "delivered", msg(1).idempotency_key: "failed", msg(2).idempotency_key: "delivered"}
    assert [u.error for u in updates if u.state == "failed"] == ["stat:UNDELIV err:001"]
    assert stats["receipt_intermediate"] == 4 and "receipt_unmatched" not in stats


async def test_no_receipts_asked_none_tracked(smsc: Smsc) -> None:
    updates: list[Receipt] = []
    with trio.fail_after(5):
        async with open_smpp(config(smsc, registered_delivery=False), on_update=updates.append) as channel:
            assert (await channel.deliver([msg(1)]))[0].state == "sent"
            await trio.sleep(0.1)
    assert updates == [] and smsc.receipts_sent == 0


async def test_throttling_is_retryable_and_slows_the_driver(smsc: Smsc) -> None:
    smsc.throttle_next(5)
    smsc.queue_full_next(2)
    with trio.fail_after(10):
        async with open_smpp(config(smsc, max_per_second=5000, window=1, throttle_retry_after_s=0.5)) as channel:
            receipts = await channel.deliver([msg(i) for i in range(20)])
            detail = (await channel.health()).detail
            stats = channel.statistics()
    refused = [r for r in receipts if r.state == "failed"]
    assert [r.error for r in refused] == ["ESME_RTHROTTLED"] * 5 + ["ESME_RMSGQFUL"] * 2
    assert all(r.retryable and r.retry_after_s == 0.5 for r in refused)
    assert sum(r.state == "sent" for r in receipts) == 13 == smsc.messages
    assert stats["ESME_RTHROTTLED"] == 5
    allowed = float(detail.split(", ")[-1].split("/s")[0])
    assert allowed < 5000  # the driver cut its own rate


async def test_rate_limit_above_n_per_second_is_respected() -> None:
    async with open_smsc(receipt_delay_s=0.02) as smsc:
        smsc.throttle_above(100)
        with trio.fail_after(10):
            async with open_smpp(config(smsc, max_per_second=80)) as channel:
                start = trio.current_time()
                receipts = await channel.deliver([msg(i) for i in range(40)])
                elapsed = trio.current_time() - start
    assert all(r.state == "sent" for r in receipts) and smsc.throttled == 0
    assert elapsed >= 0.3  # 40 at 80/s after a 4-message burst


async def test_smsc_per_second_limit_answers_throttled() -> None:
    async with open_smsc(receipt_delay_s=0.02) as smsc:
        smsc.throttle_above(50)
        with trio.fail_after(10):
            async with open_smpp(config(smsc)) as channel:
                receipts = await channel.deliver([msg(i) for i in range(120)])
    throttled = [r for r in receipts if r.error == "ESME_RTHROTTLED"]
    assert throttled and all(r.retryable and r.retry_after_s for r in throttled)
    assert len(throttled) == smsc.throttled and smsc.messages == 120 - len(throttled)


async def test_cancelled_deliver_leaves_the_link_whole(smsc: Smsc) -> None:
    with trio.fail_after(10):
        async with open_smpp(config(smsc, max_per_second=200, window=8)) as channel:
            with trio.move_on_after(0.15):
                await channel.deliver([msg(i) for i in range(100)])
            await wait_until(lambda: channel.statistics()["window_free"] == 8)
            receipts = await channel.deliver([msg(i) for i in range(100, 110)])
            assert all(r.state == "sent" for r in receipts)
            assert channel.statistics().get("links_lost", 0) == 0
    assert 10 < smsc.messages < 100


async def test_receipt_memory_is_bounded(smsc: Smsc) -> None:
    updates: list[Receipt] = []
    with trio.fail_after(5):
        async with open_smpp(config(smsc, receipt_memory=2), on_update=updates.append) as channel:
            await channel.deliver([msg(i) for i in range(5)])
            await wait_until(lambda: smsc.receipts_acked == 5)
            assert channel.statistics()["receipt_unmatched"] == 3
    assert sorted(u.idempotency_key for u in updates) == [msg(3).idempotency_key, msg(4).idempotency_key]


async def test_invalid_destination_fails_for_good(smsc: Smsc) -> None:
    smsc.reject_destinations = frozenset({"77010000001"})
    with trio.fail_after(5):
        async with open_smpp(config(smsc)) as channel:
            receipts = await channel.deliver([msg(0), msg(1), msg(2, address="+12"), msg(3, address="mail@x"),
                                              msg(4, "x" * 153 * 256)])
    assert receipts[0].state == "sent"
    assert (receipts[1].state, receipts[1].error, receipts[1].retryable) == ("failed", "ESME_RINVDSTADR", False)
    assert receipts[2].state == "failed" and not receipts[2].retryable and "E.164" in receipts[2].error
    assert receipts[3].state == "failed" and not receipts[3].retryable
    assert receipts[4].state == "failed" and not receipts[4].retryable and "255" in receipts[4].error
    assert smsc.messages == 1


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"password": "wrong"}, "ESME_RINVPASWD"),
    ({"system_id": "nobody"}, "ESME_RINVSYSID"),
])
async def test_bad_bind_is_a_channel_error(smsc: Smsc, overrides: dict[str, str], expected: str) -> None:
    with trio.fail_after(5), pytest.raises(ChannelError, match=expected):
        async with open_smpp(config(smsc, **overrides)):
            pass
    assert smsc.bind_failures == 1


async def test_refused_bind_and_unreachable_smsc(smsc: Smsc) -> None:
    smsc.refuse_bind = True
    with trio.fail_after(5), pytest.raises(ChannelError, match="ESME_RBINDFAIL"):
        async with open_smpp(config(smsc)):
            pass
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    free_port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(5), pytest.raises(ChannelError, match="cannot connect"):
        async with open_smpp(config(smsc, port=free_port)):
            pass


async def test_bind_unanswered_times_out(smsc: Smsc) -> None:
    smsc.silent = True
    with trio.fail_after(5), pytest.raises(ChannelError, match="no bind_transceiver_resp"):
        async with open_smpp(config(smsc, connect_timeout_s=0.3)):
            pass


async def test_dropped_connection_mid_batch(smsc: Smsc) -> None:
    smsc.drop_after(60)  # bind + 58 submit_sm answered, then the connection dies on the next one
    with trio.fail_after(15):
        async with open_smpp(config(smsc, window=32)) as channel:
            receipts = await channel.deliver([msg(i) for i in range(300)])
            sent = [r for r in receipts if r.state == "sent"]
            lost = [r for r in receipts if r.state == "failed"]
            assert lost and all(r.retryable and "lost" in r.error for r in lost)
            assert len(sent) + len(lost) == 300
            assert len(sent) == smsc.messages  # nothing the SMSC answered was reported lost, nothing unanswered sent
            await wait_until(lambda: smsc.binds == 2)
            again = await channel.deliver([msg(i) for i in range(300, 400)])
            assert all(r.state == "sent" for r in again)
            assert channel.statistics()["reconnects"] >= 1


async def test_silent_smsc_declares_the_link_dead(smsc: Smsc) -> None:
    with trio.fail_after(10):
        async with open_smpp(config(smsc, response_timeout_s=0.3, connect_timeout_s=0.5)) as channel:
            assert (await channel.deliver([msg(0)]))[0].state == "sent"
            smsc.silent = True
            receipts = await channel.deliver([msg(i) for i in range(1, 11)])
            assert all(r.state == "failed" and r.retryable and "no submit_sm_resp" in r.error for r in receipts)
            health = await channel.health()
            assert not health.up and "no submit_sm_resp within 0.3 s" in health.detail
            smsc.silent = False
            await wait_until(lambda: smsc.binds >= 2)
            assert (await channel.deliver([msg(20)]))[0].state == "sent"


async def test_enquire_link_keeps_and_checks_the_link(smsc: Smsc) -> None:
    with trio.fail_after(10):
        async with open_smpp(config(smsc, enquire_link_s=0.05, response_timeout_s=0.3)) as channel:
            await trio.sleep(0.5)  # ten idle periods: enquire_link answered each time
            assert (await channel.health()).up and smsc.binds == 1
            smsc.silent = True
            await wait_until(lambda: not channel._link)
            assert "no enquire_link_resp" in (await channel.health()).detail  # the rebind is still waiting
            assert (await channel.deliver([msg(1)]))[0].retryable


async def test_link_down_too_long_fails_fast(smsc: Smsc) -> None:
    with trio.fail_after(10):
        async with open_smpp(config(smsc, response_timeout_s=0.3, reconnect_min_s=5)) as channel:
            smsc.drop_after(1)
            await channel.deliver([msg(0)])
            receipts = await channel.deliver([msg(1), msg(2)])
    assert [r.error.startswith("SMPP link down") for r in receipts] == [True, True]
    assert all(r.retryable for r in receipts)


async def test_config_is_validated() -> None:
    with pytest.raises(msgspec.ValidationError, match="window"):
        msgspec.convert({"system_id": "a", "password": "b", "window": 0}, SmppConfig)
    with pytest.raises(msgspec.ValidationError, match="max_per_second"):
        msgspec.convert({"system_id": "a", "password": "b", "max_per_second": 200000}, SmppConfig)
    with pytest.raises(msgspec.ValidationError, match="windw"):
        msgspec.convert({"system_id": "a", "password": "b", "windw": 3}, SmppConfig)
    cfg = msgspec.convert({"system_id": "a", "password": "b"}, SmppConfig)
    assert (cfg.window, cfg.max_per_second, cfg.max_batch, cfg.registered_delivery) == (64, 1000.0, 500, True)


# --- peers that break the protocol -------------------------------------------------------------

async def _raw_smsc(after_bind: bytes, seen: list[P.Pdu], task_status: trio.TaskStatus[int]) -> None:
    """A one-connection SMSC that binds anyone, then sends ``after_bind`` and records what comes back."""
    async def handler(stream: trio.SocketStream) -> None:
        decoder = P.Decoder()
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return
            decoder.receive_data(data)
            while True:
                try:
                    pdu = decoder.next_pdu()
                except P.PduError:
                    continue
                if pdu is None:
                    break
                seen.append(pdu)
                if isinstance(pdu, P.BindTransceiver):
                    await stream.send_all(P.encode(P.BindTransceiverResp(sequence=pdu.sequence, system_id="X"))
                                          + after_bind)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def test_unknown_command_from_smsc_gets_generic_nack() -> None:
    seen: list[P.Pdu] = []
    unknown = bytes.fromhex("00000010 00000099 00000000 00000007")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_raw_smsc, unknown + P.encode(P.EnquireLink(sequence=8)), seen)
            async with open_smpp(SmppConfig(system_id="a", password="b", port=port, response_timeout_s=0.3)) as channel:
                await wait_until(lambda: len(seen) >= 3)
                assert (await channel.health()).up
            nursery.cancel_scope.cancel()
    assert P.GenericNack(sequence=7, status=P.Status.ESME_RINVCMDID) in seen
    assert P.EnquireLinkResp(sequence=8) in seen


async def test_broken_stream_from_smsc_drops_the_link() -> None:
    seen: list[P.Pdu] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_raw_smsc, b"\x00\x00\x00\x05junk", seen)
            async with open_smpp(SmppConfig(system_id="a", password="b", port=port, reconnect_min_s=5,
                                                 response_timeout_s=0.3)) as channel:
                await wait_until(lambda: channel._link is None)
                assert "broke the PDU stream" in (await channel.health()).detail
            nursery.cancel_scope.cancel()
    assert any(isinstance(p, P.GenericNack) and p.status == P.Status.ESME_RINVCMDLEN for p in seen)


async def test_stand_in_answers_protocol_errors(smsc: Smsc) -> None:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*smsc.address)
        decoder = P.Decoder()

        async def ask(data: bytes) -> P.Pdu:
            await stream.send_all(data)
            while (pdu := decoder.next_pdu()) is None:
                decoder.receive_data(await stream.receive_some(4096))
            return pdu

        assert await ask(P.encode(P.SubmitSm(sequence=1, destination_addr="77011234567"))) == P.SubmitSmResp(
            sequence=1, status=P.Status.ESME_RINVBNDSTS)
        assert await ask(bytes.fromhex("00000010 00000099 00000000 00000002")) == P.GenericNack(
            sequence=2, status=P.Status.ESME_RINVCMDID)
        assert await ask(P.encode(P.EnquireLink(sequence=3))) == P.EnquireLinkResp(sequence=3)
        assert await ask(P.encode(P.BindTransmitter(sequence=4, system_id="warn", password="secret"))) == \
            P.BindTransmitterResp(sequence=4, system_id="SIMSMSC", sc_interface_version=0x34)
        assert (await ask(P.encode(P.BindTransmitter(sequence=5, system_id="warn", password="secret")))).status == \
            P.Status.ESME_RALYBND
        assert await ask(b"\x00\x00\x00\x04" + bytes(12)) == P.GenericNack(status=P.Status.ESME_RINVCMDLEN,
                                                                           sequence=0)
        assert await stream.receive_some(4096) == b""  # and it hangs up: the stream cannot be framed
        await stream.aclose()


async def test_stand_in_as_a_separate_process(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    with trio.fail_after(15):
        async with smsc_process("--system-id", "warn", "--password", "secret", "--stats", str(stats)) as (_, ready):
            assert ready["host"] == "127.0.0.1" and isinstance(ready["port"], int) and ready["port"] > 0
            control = str(ready["control"])
            assert control.startswith("http://127.0.0.1:")
            cfg = SmppConfig(system_id="warn", password="secret", host=str(ready["host"]), port=ready["port"],
                             reconnect_min_s=5)
            async with httpx.AsyncClient() as http, open_smpp(cfg) as channel:
                faults = await http.post(f"{control}/faults", json={"throttle_next": 2, "reject_destinations": [
                    "77010000005"]})
                assert faults.status_code == 200
                assert (await http.post(f"{control}/faults", json={"throtle": 1})).status_code == 400
                receipts = await channel.deliver([msg(i, KAZAKH) for i in range(10)])
                counts = (await http.get(f"{control}/counts")).json()
                one = (await http.get(f"{control}/destinations/77010000009")).json()
    assert [r.error for r in receipts[:2]] == ["ESME_RTHROTTLED"] * 2 and receipts[5].error == "ESME_RINVDSTADR"
    assert sum(r.state == "sent" for r in receipts) == 7
    assert counts["messages"] == 7 and counts["throttled"] == 2 and counts["rejected"] == 1
    assert one["count"] == 1 and one["records"][0]["text"] == KAZAKH
    snapshot = json.loads(stats.read_text())  # the final snapshot, written on SIGTERM
    assert snapshot["messages"] == 7 and snapshot["by_destination"]["77010000009"] == 1


async def test_refuse_bind_from_the_command_line() -> None:
    with trio.fail_after(15):
        async with smsc_process("--refuse-bind") as (_, ready):
            cfg = SmppConfig(system_id="warn", password="secret", host=str(ready["host"]), port=ready["port"])
            with pytest.raises(ChannelError, match="ESME_RBINDFAIL"):
                async with open_smpp(cfg):
                    pass
