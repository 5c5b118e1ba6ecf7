"""The e-mail driver against the aiosmtpd relay stand-in on 127.0.0.1: deliveries, refusals, drops, recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
import trio

from channels.base import Message
from channels.email import open_email
from gateway.errors import ChannelError
from gateway.settings.channels import EmailConfig
from sim.smtp import SmtpSim, open_smtp_sim

SUBJECTS = {"kk": "ЖАТТЫҒУ: Қатты жел туралы ескерту", "ru": "УЧЕНИЯ: Штормовое предупреждение",
            "en": "EXERCISE: Storm warning"}
BODIES = {"kk": "Құрметті тұрғындар! Қатты жел күтілуде. Үйде болыңыз.\n",
          "ru": "Уважаемые жители! Ожидается сильный ветер. Оставайтесь дома.\n",
          "en": "Strong wind expected. Stay indoors.\n"}


def messages(n: int, *, alert: str = "alert-7", start: int = 0) -> list[Message]:
    langs = ("kk", "ru", "en")
    out = []
    for i in range(start, start + n):
        lang = langs[i % 3]
        out.append(Message(idempotency_key=f"{alert}:email:{i}", alert_id=alert, address=f"user{i}@example.kz",
                           language=lang, subject=SUBJECTS[lang], body=BODIES[lang],  # type: ignore[arg-type]
                           html=f"<p>{BODIES[lang].strip()}</p>"))
    return out


def config(sim: SmtpSim, **overrides: object) -> EmailConfig:
    fields: dict[str, object] = dict(from_address="alerts@police.kz", from_name="ІІМ Алматы", port=sim.port,
                                     helo_name="gateway.test", max_per_second=0, timeout_s=2.0)
    fields.update(overrides)
    return msgspec.convert(fields, EmailConfig)


@pytest.fixture
async def sim() -> AsyncIterator[SmtpSim]:
    async with open_smtp_sim() as running:
        yield running


async def test_batch_delivered_and_counted_once_each(sim: SmtpSim) -> None:
    batch = messages(40)
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            receipts = await channel.deliver(batch)
    assert [r.idempotency_key for r in receipts] == [m.idempotency_key for m in batch]
    assert all(r.state == "sent" and not r.error for r in receipts)
    assert sim.accepted == 40
    assert all(sim.count(m.address) == 1 for m in batch)
    by_rcpt = {rec.rcpt_tos[0]: rec for rec in sim.records()}
    for message, receipt in zip(batch, receipts, strict=True):
        record = by_rcpt[message.address]
        assert record.message_id == receipt.provider_id  # a receiver can de-duplicate on it
        assert record.to == message.address and record.mail_from == "alerts@police.kz"
        assert record.alert == "alert-7"


async def test_kazakh_and_russian_text_intact_at_the_server(sim: SmtpSim) -> None:
    batch = messages(3)
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            await channel.deliver(batch)
    by_rcpt = {rec.rcpt_tos[0]: rec for rec in sim.records()}
    for message in batch:
        record = by_rcpt[message.address]
        assert record.subject == message.subject
        assert record.text == message.body
        assert record.html.strip() == message.html


async def test_retry_carries_the_same_message_id(sim: SmtpSim) -> None:
    batch = messages(2)
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            first = await channel.deliver(batch)
            again = await channel.deliver(batch)
    assert [r.provider_id for r in first] == [r.provider_id for r in again]
    assert len({rec.message_id for rec in sim.records()}) == 2


async def test_temporary_451_is_retryable(sim: SmtpSim) -> None:
    sim.fail_next(1, 451, "data")
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1)) as channel:
            receipts = await channel.deliver(messages(2))
    assert receipts[0].state == "failed" and receipts[0].retryable and "451" in receipts[0].error
    assert receipts[1].state == "sent"  # the session carried on after the refusal
    assert sim.accepted == 1


async def test_permanent_550_is_not_retryable(sim: SmtpSim) -> None:
    sim.fail_next(1, 550, "data")
    sim.fail_next(1, 554, "mail")
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1)) as channel:
            receipts = await channel.deliver(messages(3))
    assert [(r.state, r.retryable) for r in receipts] == [("failed", False), ("failed", False), ("sent", False)]
    assert "550" in receipts[0].error and "DATA" in receipts[0].error
    assert "554" in receipts[1].error and "MAIL" in receipts[1].error


async def test_421_closes_the_session_and_the_next_one_reconnects(sim: SmtpSim) -> None:
    sim.fail_next(1, 421, "mail")
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1)) as channel:
            receipts = await channel.deliver(messages(3))
    assert receipts[0].retryable and "421" in receipts[0].error
    assert [r.state for r in receipts[1:]] == ["sent", "sent"]


async def test_refused_recipient_fails_only_that_one(sim: SmtpSim) -> None:
    batch = messages(6)
    sim.refuse(batch[2].address)
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            receipts = await channel.deliver(batch)
    assert [r.state for r in receipts] == ["sent", "sent", "failed", "sent", "sent", "sent"]
    assert not receipts[2].retryable and "550" in receipts[2].error and "RCPT" in receipts[2].error
    assert sim.count(batch[2].address) == 0 and sim.accepted == 5


async def test_several_recipients_per_transaction(sim: SmtpSim) -> None:
    batch = messages(30)
    sim.refuse(batch[4].address)  # one ru recipient: its transaction still goes out to the others
    with trio.fail_after(10):
        async with open_email(config(sim, recipients_per_transaction=5)) as channel:
            receipts = await channel.deliver(batch)
    assert [i for i, r in enumerate(receipts) if r.state != "sent"] == [4]
    assert sim.accepted == 6  # 10 recipients per language, 5 per transaction
    assert all(sim.count(m.address) == 1 for i, m in enumerate(batch) if i != 4)
    for record in sim.records():
        assert record.to == "undisclosed-recipients:;"
        assert 4 <= len(record.rcpt_tos) <= 5
    assert len({r.provider_id for r in receipts if r.state == "sent"}) == 3  # one Message-ID per language


async def test_connection_dropped_mid_batch_is_retryable_and_the_pool_recovers(sim: SmtpSim) -> None:
    batch = messages(20)
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            await channel.deliver(messages(4, start=100))  # sessions open and kept alive
            sim.drop_next(2, "data")
            receipts = await channel.deliver(batch)
            dropped = [m for m, r in zip(batch, receipts, strict=True) if r.state == "failed"]
            assert len(dropped) == 2
            assert all(r.retryable and "connection lost" in r.error for r in receipts if r.state == "failed")
            retried = await channel.deliver(dropped)
            assert all(r.state == "sent" for r in retried)
            assert (await channel.health()).up
    assert all(sim.count(m.address) == 1 for m in batch)


async def test_relay_closing_idle_sessions_is_noticed_before_sending(sim: SmtpSim) -> None:
    with trio.fail_after(10):
        async with open_email(config(sim, idle_check_s=0)) as channel:
            await channel.deliver(messages(4))
            sim.disconnect_all()  # as a relay does after its idle timeout
            await trio.sleep(0.05)
            receipts = await channel.deliver(messages(4, start=10))
    assert all(r.state == "sent" for r in receipts)


async def test_health_reopens_a_session_the_relay_dropped(sim: SmtpSim) -> None:
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1)) as channel:
            assert (await channel.health()).up
            sim.disconnect_all()
            await trio.sleep(0.05)
            assert (await channel.health()).up


async def test_stalled_relay_times_out_retryably(sim: SmtpSim) -> None:
    sim.stall_next(1, "data")
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1, timeout_s=0.3)) as channel:
            receipts = await channel.deliver(messages(2))
    assert receipts[0].retryable and "timed out" in receipts[0].error
    assert receipts[1].state == "sent"


async def test_deadline_keeps_answers_already_given_in_the_transaction(sim: SmtpSim) -> None:
    batch = messages(3, start=0)[:1] + messages(3, start=3)[:1] + messages(3, start=6)[:1]  # all Kazakh
    sim.refuse(batch[1].address)
    sim.stall_next(1, "data")
    with trio.fail_after(10):
        async with open_email(config(sim, timeout_s=0.3, recipients_per_transaction=5)) as channel:
            receipts = await channel.deliver(batch)
            assert [(r.state, r.retryable) for r in receipts] == [("failed", True), ("failed", False), ("failed", True)]
            assert "DATA: timed out" in receipts[0].error and "550" in receipts[1].error
            again = await channel.deliver([batch[0], batch[2]])
    assert [r.state for r in again] == ["sent", "sent"]


async def test_unreachable_relay_is_retryable_and_health_down() -> None:
    async with open_smtp_sim() as gone:
        port = gone.port
    with trio.fail_after(10):
        async with open_email(config(gone, port=port)) as channel:
            receipts = await channel.deliver(messages(2))
            health = await channel.health()
    assert all(r.state == "failed" and r.retryable and "setup" in r.error for r in receipts)
    assert not health.up and "setup" in health.detail


async def test_bad_address_fails_without_io(sim: SmtpSim) -> None:
    batch = messages(2)
    bad = msgspec.structs.replace(batch[0], address="not an address")
    injected = msgspec.structs.replace(batch[1], subject="Alert\r\nBcc: everyone@example.kz")
    with trio.fail_after(10):
        async with open_email(config(sim)) as channel:
            receipts = await channel.deliver([bad, injected, *messages(1, start=5)])
    assert [(r.state, r.retryable) for r in receipts] == [("failed", False), ("failed", False), ("sent", False)]
    assert sim.transactions == 1


async def test_health_is_a_noop_on_a_pooled_session(sim: SmtpSim) -> None:
    with trio.fail_after(10):
        async with open_email(config(sim, connections=1)) as channel:
            health = await channel.health()
            assert health.up and "NOOP 250" in health.detail
            await channel.deliver(messages(1))
    assert sim.transactions == 1  # health opened the session the delivery then used


async def test_pacing_spreads_recipients(sim: SmtpSim) -> None:
    with trio.fail_after(10):
        async with open_email(config(sim, max_per_second=40)) as channel:
            start = trio.current_time()
            await channel.deliver(messages(12))
            elapsed = trio.current_time() - start
    assert elapsed >= 11 / 40 * 0.9


async def test_bad_sender_refused_at_open(sim: SmtpSim) -> None:
    with pytest.raises(ChannelError, match="from_address|address"):
        async with open_email(config(sim, from_address="nobody")):
            pass
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"from_address": "a@b.kz", "conections": 2}, EmailConfig)



async def test_stand_in_as_a_separate_process() -> None:
    with trio.fail_after(15):
        process = await trio.lowlevel.open_process([sys.executable, "-m", "sim.smtp", "--port", "0"],
                                                   stdout=subprocess.PIPE)
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(4096)
            ready = json.loads(line)
            async with httpx.AsyncClient(base_url=ready["control"]) as http:
                fault = await http.post("/_sim/faults", json={"code": 451, "stage": "data", "count": 1})
                assert fault.status_code == 200
                assert (await http.post("/_sim/faults", json={"cnt": 1})).status_code == 400
                cfg = msgspec.convert({"from_address": "alerts@police.kz", "port": ready["port"],
                                       "helo_name": "gateway.test", "max_per_second": 0, "connections": 1},
                                      EmailConfig)
                async with open_email(cfg) as channel:
                    receipts = await channel.deliver(messages(3))
                assert [r.state for r in receipts] == ["failed", "sent", "sent"]
                counts = (await http.get("/_sim/counts")).json()
                assert counts["accepted"] == 2 and counts["rejected"] == 1
                assert counts["recipients"] == {"user1@example.kz": 1, "user2@example.kz": 1}
                records = (await http.get("/_sim/records")).json()
                assert records[0]["subject"] == SUBJECTS["ru"] and records[0]["text"] == BODIES["ru"]
        finally:
            process.terminate()
            await process.wait()
    assert process.returncode == 0
