"""Escalation drills, drivers against real peers on loopback: scripted Telegram responders pressing
buttons the Telegram channel sent through the Bot API stand-in, scripted SMS responders answering
texts the SMPP channel sent through the SMSC stand-in, and the responders' sipp phones taking real
SIP calls (the "second_call" number busy first, then answered and pressing 1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from channels.base import Message
from channels.smpp import open_smpp
from channels.telegram import open_telegram
from gateway.errors import DrillError
from gateway.settings.channels import SmppConfig, TelegramConfig
from sim import responders, sipp
from sim import sipp_xml as scenario
from sim.lab import free_port
from sim.smsc_server import open_smsc
from sim.telegram import open_telegram_sim

TOKEN = "700000:drill-responders-bot"


def button_message(chat: int, token: str, n: int) -> Message:
    return Message(idempotency_key=f"esc:{token}:{n}:telegram", alert_id="inc-1", address=str(chat), language="ru",
                   body="Тревожная кнопка, школа № 12", options={"ack_button": f"ack:{token}", "ack_label": "Принял"})


def callback_data(bot: object) -> list[str]:
    return [u["callback_query"]["data"] for u in bot._updates if "callback_query" in u]  # type: ignore[attr-defined]


async def test_telegram_responders_press_as_scripted() -> None:
    quick = responders.Plan("a", "700101", "telegram", "ack_after_s", 0.3)
    second = responders.Plan("b", "700102", "telegram", "second_call")
    never = responders.Plan("c", "700103", "telegram", "never")
    with trio.fail_after(20):
        async with open_telegram_sim(TOKEN) as bot, \
                open_telegram(TelegramConfig(bot_token=TOKEN, api_base_url=bot.api_base_url,
                                             per_chat_interval_s=0)) as channel, trio.open_nursery() as nursery:
            for plan in (quick, second, never):
                nursery.start_soon(responders.telegram_responder, bot, plan, 0.02)
            receipts = await channel.deliver([button_message(700101, "t1", 1), button_message(700102, "t2", 1),
                                              button_message(700103, "t3", 1)])
            assert all(r.state != "failed" for r in receipts), receipts
            await trio.sleep(0.15)
            assert callback_data(bot) == []  # the quick one waits its 0.3 s
            await trio.sleep(0.4)
            assert callback_data(bot) == ["ack:t1"]
            # The second notification of the same acknowledgement: "second_call" presses now.
            await channel.deliver([button_message(700102, "t2", 2), button_message(700103, "t3", 2),
                                   Message(idempotency_key="status", alert_id="inc-1", address="700102",
                                           language="ru", body="Статус: выехали")])
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
    assert callback_data(bot) == ["ack:t1", "ack:t2"]


async def test_sms_responders_reply_quoting_the_code() -> None:
    got: list[tuple[str, str]] = []

    async def inbound(sender: str, text: str, _key: str) -> None:
        got.append((sender, text))

    quick = responders.Plan("a", "+77010000101", "sms", "ack_after_s", 0.2)
    second = responders.Plan("b", "+77010000102", "sms", "second_call")
    never = responders.Plan("c", "+77010000103", "sms", "never")

    def text(number: str, code: str, n: int) -> Message:
        return Message(idempotency_key=f"esc:{number}:{n}", alert_id="inc-1", address=number, language="ru",
                       body=f"Пожар, ул. Сатпаева 30. Для подтверждения ответьте 1 (код {code}).")

    with trio.fail_after(20):
        async with open_smsc(system_id="drill", password="drill") as smsc:
            host, port = smsc.address
            cfg = SmppConfig(system_id="drill", password="drill", host=host, port=port, source_addr="112")
            async with open_smpp(cfg, on_inbound=inbound) as channel, trio.open_nursery() as nursery:
                for plan in (quick, second, never):
                    nursery.start_soon(responders.sms_responder, smsc, plan, 0.02)
                await channel.deliver([text("+77010000101", "1111", 1), text("+77010000102", "2222", 1),
                                       text("+77010000103", "3333", 1)])
                await trio.sleep(0.6)
                assert got == [("77010000101", "1 1111")]
                await channel.deliver([text("+77010000102", "2222", 2), text("+77010000103", "3333", 2),
                                       Message(idempotency_key="st", alert_id="inc-1", address="+77010000101",
                                               language="ru", body="Статус: на месте")])  # asks for nothing
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
    assert got == [("77010000101", "1 1111"), ("77010000102", "1 2222")]


def _call(port: int, number: str, workdir: Path, talk_ms: int) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "caller.xml").write_text(scenario.caller(number, "+77272000000", talk_ms=talk_ms))
    done = subprocess.run(["sipp", f"127.0.0.1:{port}", "-sf", "caller.xml", "-i", "127.0.0.1", "-p", "0", "-m", "1",
                           "-nostdin", "-timeout", "10s", "-timeout_error"], cwd=workdir, capture_output=True,
                          check=False, timeout=15)
    return done.returncode


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
async def test_phones_answer_per_behaviour(tmp_path: Path) -> None:
    plans = [responders.Plan("a", "+77010000101", "voice", "ack_after_s", 0.2),
             responders.Plan("b", "+77010000102", "voice", "never"),
             responders.Plan("c", "+77010000103", "voice", "second_call")]
    port = free_port()
    with trio.fail_after(40):
        async with responders.responder_phones(tmp_path / "phones", port, plans) as phones:
            rcs = [await trio.to_thread.run_sync(_call, port, number, tmp_path / f"call-{n}", 1500)
                   for n, number in enumerate(["+77010000103", "+77010000101", "+77010000102", "+77010000103",
                                               "+77019999999"])]
            await trio.sleep(0.3)
            events = phones.events()
    kinds = {n: [e.kind for e in events if e.number == n] for n in {e.number for e in events}}
    assert rcs[1:4] == [0, 0, 0] and rcs[0] != 0 and rcs[4] != 0, rcs  # busy: the caller sees a failure
    assert kinds["+77010000103"] == ["INVITE", "REJECTED", "INVITE", "ANSWERED", "PRESSED", "BYE"], kinds
    assert kinds["+77010000101"] == ["INVITE", "ANSWERED", "PRESSED", "BYE"], kinds
    assert kinds["+77010000102"] == ["INVITE", "ANSWERED", "BYE"], kinds
    assert kinds["+77019999999"] == ["INVITE", "REJECTED"], kinds  # nobody scripted it: busy


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
async def test_a_phone_that_cannot_start_is_a_drill_error_and_the_others_stop(tmp_path: Path) -> None:
    good = sipp.Uas("good", scenario.answering("good", "good", {}), free_port(), media_port=free_port())
    broken = sipp.Uas("broken", '<?xml version="1.0"?>\n<scenario name="x"><nonsense/></scenario>\n', free_port())
    with trio.fail_after(15):
        with pytest.raises(DrillError, match="the lab's phones: sipp exited at start .*see"):
            async with sipp.answering_sipp(tmp_path, [good, broken], "the lab's phones"):
                pytest.fail("yielded although a sipp exited")
        # the good one was stopped: its port is free again
        async with sipp.answering_sipp(tmp_path / "again", [good], "the good phone") as [log]:
            assert log == tmp_path / "again" / "good.log"
