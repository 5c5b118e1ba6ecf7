"""The delivery engine and workflow against real stand-ins (aiosmtpd SMTP, Telegram Bot API) on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from starlette.applications import Starlette

from channels.base import Receipt
from channels.email import open_email
from channels.telegram import open_telegram
from channels.twilio_sms import open_twilio, status_callback_route
from gateway.errors import AlertError
from gateway.settings.channels import EmailConfig, TelegramConfig, TwilioConfig
from gateway.warning.workflow import DraftSpec
from gateway.web.server import run_server
from sim.smtp import open_smtp_sim
from sim.telegram import open_telegram_sim
from sim.twilio import open_twilio_sim
from tests.core.warning_harness import harness, people

TOKEN = "123456:TEST-token"
FLOOD = DraftSpec(event="flood", zones=["medeu"], channels=["email", "telegram"])


def email_config(port: int, **kw: object) -> EmailConfig:
    return EmailConfig(from_address="alerts@ecgw.kz", host="127.0.0.1", port=port, max_per_second=0,
                       **kw)  # type: ignore[arg-type]


def telegram_config(url: str, **kw: object) -> TelegramConfig:
    settings: dict[str, object] = {"max_per_second": 1000, "per_chat_interval_s": 0} | kw
    return TelegramConfig(bot_token=TOKEN, api_base_url=f"{url}/bot", **settings)  # type: ignore[arg-type]


async def test_alert_reaches_every_recipient_once(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_email(email_config(smtp.port)) as email:
        async with harness(tmp_path / "w.sqlite3", {"email": email}) as h:
            await h.add(people(300) + people(50, zone="turksib", start=300))
            record = await h.send(FLOOD)
            await h.wait_state(record.id, "sent")
            progress = await h.workflow.progress(record.id)
    assert progress.channels["email"].sent == 300
    assert smtp.accepted == 300
    assert all(smtp.count(f"r{i}@example.kz") == 1 for i in range(300))
    assert smtp.count("r320@example.kz") == 0  # outside the alert's zones


async def test_second_different_officer_must_approve(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_email(email_config(smtp.port)) as email:
        async with harness(tmp_path / "w.sqlite3", {"email": email}) as h:
            draft = await h.workflow.draft(FLOOD, "aigerim")
            with pytest.raises(AlertError, match="second, different officer"):
                await h.workflow.approve(draft.id, "aigerim")
            with pytest.raises(AlertError, match="not a civil-defence officer"):
                await h.workflow.approve(draft.id, "erlan")
            with pytest.raises(AlertError, match="only an approved alert"):
                await h.workflow.send(draft.id, "daniyar")
            approved = await h.workflow.approve(draft.id, "daniyar")
            with pytest.raises(AlertError, match="only a draft"):
                await h.workflow.approve(draft.id, "daniyar")
            assert approved.approved_by == "daniyar"
    assert smtp.accepted == 0


@pytest.mark.parametrize("spec, problem", [
    (DraftSpec(event="no-such-event", zones=["medeu"]), "unknown event"),
    (DraftSpec(event="flood", zones=["atlantis"]), "unknown zone"),
    (DraftSpec(event="flood", polygons=[[(43.2, 76.9), (43.3, 77.0), (43.2, 77.0), (43.3, 76.9), (43.2, 76.9)]]),
     "not simple"),
    (DraftSpec(event="flood", polygons=[[(50.0, 60.0), (50.1, 60.0), (50.1, 60.1), (50.0, 60.0)]]), "reaches no"),
    (DraftSpec(event="flood", zones=["medeu"], channels=["pigeon"]), "channels"),
])
async def test_bad_drafts_are_refused_clearly(tmp_path: Path, spec: DraftSpec, problem: str) -> None:
    async with harness(tmp_path / "w.sqlite3", {}) as h:
        with pytest.raises(AlertError, match=problem):
            await h.workflow.draft(spec, "aigerim")
        assert await h.outbox.call(h.outbox.sync.alerts) == []


async def test_exercise_never_reaches_an_actual_channel(tmp_path: Path) -> None:
    async with open_smtp_sim() as real, open_smtp_sim() as drill, \
            open_email(email_config(real.port)) as real_email, open_email(email_config(drill.port)) as drill_email:
        async with harness(tmp_path / "w.sqlite3", {"email": real_email, "drill:email": drill_email}) as h:
            await h.add(people(30))
            record = await h.send(DraftSpec(event="flood", zones=["medeu"], status="Exercise", channels=["email"]))
            await h.wait_state(record.id, "sent")
    assert real.accepted == 0
    assert drill.accepted == 30
    for mail in drill.records():
        assert any(mark in mail.subject for mark in ("ЖАТТЫҒУ", "УЧЕНИЯ", "EXERCISE")), mail.subject


async def test_exercise_without_drill_destination_goes_nowhere(tmp_path: Path) -> None:
    async with open_smtp_sim() as real, open_email(email_config(real.port)) as real_email:
        async with harness(tmp_path / "w.sqlite3", {"email": real_email}) as h:
            await h.add(people(10))
            record = await h.send(DraftSpec(event="flood", zones=["medeu"], status="Exercise", channels=["email"]))
            await h.wait_state(record.id, "sent")
    assert real.accepted == 0


async def test_refused_addresses_fail_over_to_the_next_channel(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_telegram_sim(TOKEN) as tg, \
            open_email(email_config(smtp.port)) as email, open_telegram(telegram_config(tg.url)) as telegram:
        smtp.refuse("r1@example.kz", "r2@example.kz")
        async with harness(tmp_path / "w.sqlite3", {"email": email, "telegram": telegram}) as h:
            await h.add(people(6, channels="email;telegram"))
            record = await h.send(FLOOD)
            await h.wait_state(record.id, "sent")
            progress = await h.workflow.progress(record.id)
            assert sorted(tg.counts()) == ["100001", "100002"]
            assert all("&lt;b&gt;" not in m.text for m in tg.sent)  # template HTML is not escaped twice
    assert smtp.accepted == 4
    assert progress.channels["email"].moved == 2
    assert progress.channels["telegram"].sent == 2


async def test_a_down_channel_opens_its_breaker_and_recipients_fail_over(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_telegram_sim(TOKEN) as tg, \
            open_email(email_config(smtp.port, max_batch=5, timeout_s=2)) as email, \
            open_telegram(telegram_config(tg.url)) as telegram:
        smtp.fail_next(10_000, code=421, stage="mail")
        async with harness(tmp_path / "w.sqlite3", {"email": email, "telegram": telegram}) as h:
            await h.add(people(40, channels="email;telegram"))
            record = await h.send(FLOOD)
            await h.wait_state(record.id, "sent", timeout=40)
            progress = await h.workflow.progress(record.id)
            assert len(tg.counts()) == 40
    assert progress.channels["email"].health == "down"
    assert progress.channels["email"].moved == 40


async def test_temporary_refusals_are_retried_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.warning.engine.backoff_s", lambda attempt: 0.05)
    async with open_smtp_sim() as smtp, open_email(email_config(smtp.port, max_batch=10)) as email:
        smtp.fail_next(3, code=451)
        async with harness(tmp_path / "w.sqlite3", {"email": email}) as h:
            await h.add(people(20))
            record = await h.send(DraftSpec(event="flood", zones=["medeu"], channels=["email"]))
            await h.wait_state(record.id, "sent")
            progress = await h.workflow.progress(record.id)
    assert smtp.accepted == 20
    assert progress.channels["email"].retried >= 1


async def test_cancel_withdraws_the_rest_and_reaches_those_already_warned(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_telegram_sim(TOKEN) as tg, \
            open_telegram(telegram_config(tg.url, max_per_second=20)) as telegram:
        async with harness(tmp_path / "w.sqlite3", {"telegram": telegram}) as h:
            await h.add(people(200, channels="telegram"))
            record = await h.send(DraftSpec(event="flood", zones=["medeu"], channels=["telegram"]))
            with trio.fail_after(10):
                while len(tg.sent) < 20:
                    await trio.sleep(0.02)
            cancel = await h.workflow.cancel(record.id, "daniyar", "false alarm")
            await h.wait_state(cancel.id, "sent", timeout=30)
            original = await h.workflow.get(record.id)
            progress = await h.workflow.progress(record.id)
            cancelled = await h.workflow.progress(cancel.id)
            chats = tg.counts()
    assert original.state == "cancelled"
    assert cancel.cap.references[0].identifier == record.id
    reached = progress.channels["telegram"].sent
    assert 20 <= reached < 200 and progress.channels["telegram"].withdrawn == 200 - reached
    assert cancelled.channels["telegram"].sent == reached  # the all-clear reaches exactly those warned
    assert sum(chats.values()) == 2 * reached
    assert smtp.accepted == 0


async def test_sirens_sound_first_and_a_cancel_silences_them(tmp_path: Path) -> None:
    from channels.sirens import SirenConfig, SirenTarget, open_sirens
    from gateway.settings.channels import SirenLine
    from sim.relayboard import relay_line

    async with relay_line(units=(3,), coils=8, parity="N") as line, open_smtp_sim() as smtp, \
            open_email(email_config(smtp.port)) as email:
        sirens = SirenConfig(lines=[SirenLine(name="rs485-1", port=line.port, parity="N")],
                             zones={"medeu": [SirenTarget(line="rs485-1", unit=3, coils=list(range(8)))]})
        async with open_sirens(sirens) as siren, harness(tmp_path / "w.sqlite3", {"siren": siren, "email": email}) as h:
            await h.add(people(50))
            record = await h.send(DraftSpec(event="mudflow", zones=["medeu"], channels=["siren", "email"]))
            await h.wait_state(record.id, "sent")
            sounding = line.boards.state(3)
            cancel = await h.workflow.cancel(record.id, "daniyar")
            await h.wait_state(cancel.id, "sent")
            silent = line.boards.state(3)
            jobs = h.outbox.sync._read("SELECT channel, state FROM jobs WHERE target < 0")
    assert any(sounding) and not any(silent)
    assert jobs and all(state in (2, 3) for _, state in jobs)
    assert smtp.accepted == 100  # the warning and the all-clear to everyone


async def test_an_sms_rendering_over_the_segment_limit_is_refused_at_draft(tmp_path: Path) -> None:
    async with harness(tmp_path / "w.sqlite3", {}) as h:
        long = "Очень длинное описание обстановки " * 20
        with pytest.raises(AlertError, match="shorten"):
            await h.workflow.draft(DraftSpec(event="flood", zones=["medeu"], instruction={"ru": long}), "aigerim")


async def test_update_supersedes_keeps_exercise_status_and_a_cancelled_chain_stays_cancelled(tmp_path: Path) -> None:
    async with open_smtp_sim() as smtp, open_email(email_config(smtp.port)) as email:
        async with harness(tmp_path / "w.sqlite3", {"drill:email": email}) as h:
            await h.add(people(20))
            record = await h.send(DraftSpec(event="flood", zones=["medeu"], status="Exercise", channels=["email"]))
            await h.wait_state(record.id, "sent")
            update = await h.workflow.update(record.id, DraftSpec(event="flood", zones=["medeu"], channels=["email"]),
                                             "aigerim")
            assert update.cap.status == "Exercise" and update.cap.msg_type == "Update"  # never turns Actual
            late = await h.workflow.update(record.id, DraftSpec(event="flood", zones=["medeu"], channels=["email"]),
                                           "aigerim")
            await h.workflow.approve(update.id, "daniyar", send=True)
            await h.wait_state(update.id, "sent")
            assert (await h.workflow.get(record.id)).state == "superseded"
            cancel = await h.workflow.cancel(update.id, "daniyar")
            await h.wait_state(cancel.id, "sent")
            await h.workflow.approve(late.id, "daniyar")
            with pytest.raises(AlertError, match="was cancelled"):
                await h.workflow.send(late.id, "daniyar")
    assert smtp.accepted == 60  # warning, update and all-clear to each of the 20; the late update to nobody


async def test_a_twilio_status_callback_sent_again_changes_nothing(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.warning.engine")
    receiver, late = Starlette(), list[Callable[[Receipt], None]]()
    with trio.fail_after(20):
        async with open_twilio_sim(mps=1000.0, send_delay_s=0.01, deliver_delay_s=0.02) as sim, \
                trio.open_nursery() as nursery:
            [base] = await nursery.start(run_server, receiver, "127.0.0.1", 0)
            cfg = TwilioConfig(account_sid=sim.account_sid, auth_token=sim.auth_token, from_number="+15005550006",
                               api_base_url=sim.base_url, status_callback_url=f"{base}/twilio/status")
            async with open_twilio(cfg, on_update=lambda r: late[0](r)) as twilio, \
                    harness(tmp_path / "w.sqlite3", {"twilio": twilio}, sms_routes=(("+", "twilio"),)) as h:
                receiver.router.routes.append(status_callback_route(twilio, "/twilio/status"))
                late.append(h.engine.receipt_callback("twilio"))
                await h.add(people(1, channels="sms"))
                record = await h.send(DraftSpec(event="flood", zones=["medeu"], channels=["sms"]))
                while (done := (await h.workflow.progress(record.id)).channels.get("twilio")) is None or \
                        done.delivered < 1:
                    await trio.sleep(0.02)
                sid = sim.messages[0].sid
                # Twilio did not get our answers and sends them again: "sent" late, after "delivered"
                for n, status in enumerate(("sent", "delivered"), start=1):
                    assert (await sim.repeat_callback(sid, status)).http_status == 204  # taken: Twilio stops
                    with trio.move_on_after(2):
                        while sum("already taken" in m for m in caplog.messages) < n:
                            await trio.sleep(0.02)
                    progress = (await h.workflow.progress(record.id)).channels["twilio"]
                    assert (progress.delivered, progress.sent) == (1, 0)  # never back to "sent"
                assert sum("already taken" in m for m in caplog.messages) == 2
            nursery.cancel_scope.cancel()
