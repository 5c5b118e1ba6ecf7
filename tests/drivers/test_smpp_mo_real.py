"""Texts people send (MO) through the SMSC stand-in over TCP on 127.0.0.1 to the SMPP driver's
``on_inbound``, and on into SMS 112 with a real incident store."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import trio

from channels.base import Message
from channels.smpp import SmppChannel, open_smpp
from gateway.errors import StoreError
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.text.sms112 import Sms112
from gateway.protocols import smpp_pdu as P
from gateway.settings import Sms112Config
from gateway.settings.channels import SmppConfig
from sim.sms_citizen import aml_sms, text_via_smsc, text_via_smsc_control
from sim.smsc import smsc_process
from sim.smsc_server import Smsc, open_smsc


def config(smsc: Smsc) -> SmppConfig:
    host, port = smsc.address
    return SmppConfig(system_id="warn", password="secret", host=host, port=port, source_addr="112",
                      response_timeout_s=2.0, reconnect_min_s=0.05)


async def test_mo_texts_reach_on_inbound_whole_and_are_answered_after() -> None:
    got: list[tuple[str, str]] = []
    keys: list[str] = []

    async def on_inbound(sender: str, text: str, key: str) -> None:
        await trio.sleep(0.05)
        got.append((sender, text))
        keys.append(key)

    long_text = "Не могу говорить. Муж пьяный, угрожает ножом. Абая 10, кв 5. Дети в комнате. " * 3
    with trio.fail_after(10):
        async with open_smsc(system_id="warn", password="secret") as smsc, \
                open_smpp(config(smsc), on_inbound=on_inbound) as channel:
            assert await smsc.send_mo("77011234567", "112", "Help {me} €") == [0]
            assert got == [("77011234567", "Help {me} €")]  # answered only once handed over
            statuses = await smsc.send_mo("77011234567", "112", long_text)
            assert statuses == [0] * 4 and got[-1] == ("77011234567", long_text)
            undecodable = await smsc.send_mo("77011234567", "112", data_coding=0x05, body=b"\x82\xa0")
            assert undecodable == [0] and got[-1][1] == "[undecodable SMS: data_coding 0x05, 2 octets: 82a0]"
            stats = channel.statistics()
            assert stats["mo_texts"] == 3 and stats.get("receipt_unmatched", 0) == 0
            assert smsc.mo_acked == 6 and smsc.receipts_acked == 0
            # the SMSC's message id of the part that completed each text (the stand-in numbers parts -1, -2...)
            assert all(k.startswith("smpp:MO") for k in keys) and keys[1].endswith("-4") and len(set(keys)) == 3


async def test_a_failing_handler_makes_the_smsc_retry_later() -> None:
    calls = 0

    async def on_inbound(sender: str, text: str, _key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreError("disk full")

    with trio.fail_after(10):
        async with open_smsc(system_id="warn", password="secret") as smsc, \
                open_smpp(config(smsc), on_inbound=on_inbound) as channel:
            assert await smsc.send_mo("77011234567", "112", "help") == [P.Status.ESME_RX_T_APPN]
            assert await smsc.send_mo("77011234567", "112", "help") == [0]
            assert channel.statistics()["mo_failed"] == 1 and (await channel.health()).up


async def test_without_on_inbound_mo_is_acknowledged_as_before() -> None:
    with trio.fail_after(10):
        async with open_smsc(system_id="warn", password="secret") as smsc, open_smpp(config(smsc)):
            assert await smsc.send_mo("77011234567", "112", "help") == [0]


async def test_texts_through_the_smsc_open_incidents_and_locate_them(tmp_path: Path) -> None:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            desk = Desk(store, Recorder(store, Bus()))
            channels: list[SmppChannel] = []

            async def send_sms(number: str, text: str) -> bool:
                [receipt] = await channels[0].deliver([Message(idempotency_key=f"sms112/{number}/{len(text)}",
                                                               alert_id="sms112", address=number, language="kk",
                                                               body=text)])
                return receipt.state == "sent"

            sms = Sms112(Sms112Config(enabled=True), desk, send_sms)
            await nursery.start(sms.run)

            async def on_inbound(sender: str, text: str, key: str) -> None:
                await sms.handle_text(sender, text, "smpp", key)

            # one transceiver both sends the answers and takes the texts, as the gateway wires it
            async with open_smsc(system_id="warn", password="secret") as smsc, \
                    open_smpp(config(smsc), on_inbound=on_inbound) as channel:
                channels.append(channel)
                await smsc.send_mo("77011234567", "112", 'A"ML=1;lt=+99;lg=+76.9;rd=5')  # malformed: logged
                assert await text_via_smsc(smsc, "+77011234567", aml_sms(43.2381, 76.9456, 15)) == [0]
                assert len(sms.pending) == 1  # before the incident: held
                assert await text_via_smsc(smsc, "+77011234567", "Көмек керек, сөйлей алмаймын") == [0]
                [summary] = await store.by_number("+77011234567", 0)
                while not smsc.texts("77011234567"):
                    await trio.sleep(0.02)
                inc = await desk.get(summary.id)
                while not inc.locations:
                    await trio.sleep(0.02)
                    inc = await desk.get(summary.id)
                assert inc.source == "sms" and inc.language == "kk" and inc.locations[0].lat == 43.2381
                [ack] = smsc.texts("77011234567")
                assert ack.startswith("112: хабарлама")
            nursery.cancel_scope.cancel()



async def test_a_deliver_sm_sent_again_is_answered_ok_and_taken_once_even_after_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.intake.text.sms112")
    long_text = "Не могу говорить, Абая 10, кв 5. " * 8

    async def send_sms(number: str, text: str) -> bool:
        return True

    with trio.fail_after(20):
        async with open_smsc(system_id="warn", password="secret") as smsc:
            for run in (1, 2):  # the gateway, then the gateway restarted on the same store
                store = AsyncStore(SqliteStore(tmp_path / "s.db"))
                async with trio.open_nursery() as nursery:
                    desk = Desk(store, Recorder(store, Bus()))
                    sms = Sms112(Sms112Config(enabled=True), desk, send_sms)
                    await nursery.start(sms.run)

                    async def on_inbound(sender: str, text: str, key: str, sms: Sms112 = sms) -> None:
                        await sms.handle_text(sender, text, "smpp", key)

                    async with open_smpp(config(smsc), on_inbound=on_inbound):
                        for _ in range(2):  # the SMSC did not get our answers and sends both again
                            assert await smsc.send_mo("77011234567", "112", "Помогите", message_id="A1") == [0]
                            assert set(await smsc.send_mo("77011234567", "112", long_text, message_id="A2")) == {0}
                    [summary] = await store.by_number("+77011234567", 0)
                    received = [e for e in (await desk.get(summary.id)).timeline if e.kind == "sms_received"]
                    assert [e.data["text"] for e in received] == ["Помогите", long_text.strip()]
                    assert sms.statistics()["replayed"] == (2 if run == 1 else 4)
                    nursery.cancel_scope.cancel()
                store.sync.close()
    assert sum("already taken" in m for m in caplog.messages) == 6


async def test_a_separate_smsc_process_injects_through_its_control_api() -> None:
    got: list[tuple[str, str]] = []

    async def on_inbound(sender: str, text: str, _key: str) -> None:
        got.append((sender, text))

    with trio.fail_after(20):
        async with smsc_process("--system-id", "warn", "--password", "secret") as (_, ready):
            cfg = SmppConfig(system_id="warn", password="secret", host=ready["host"], port=ready["port"],
                             response_timeout_s=2.0)
            async with open_smpp(cfg, on_inbound=on_inbound):
                assert await text_via_smsc_control(ready["control"], "+77011234567", "Помогите") == [0]
                assert got == [("77011234567", "Помогите")]
                with pytest.raises(httpx.HTTPStatusError) as refused:  # refused with a reason, not a crash
                    await text_via_smsc_control(ready["control"], "77011234567", "ok", to="1" * 30)
                assert refused.value.response.status_code == 400
                assert "destination_addr longer" in refused.value.response.json()["error"]
                assert await text_via_smsc_control(ready["control"], "+77011234567", "ещё") == [0]
