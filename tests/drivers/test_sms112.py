"""SMS to 112 against a real incident store: texts, AML matching, replies, and the HTTP routes served
by hypercorn on 127.0.0.1 (the Twilio webhook signed as Twilio signs, the AML endpoint)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trio
from starlette.applications import Starlette

from gateway.errors import ChannelError
from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.text.sms112 import Sms112
from gateway.settings import Sms112Config
from gateway.web.server import run_server
from gateway.web.webhooks import EMPTY_TWIML, Sms112Routes
from sim.sms_citizen import aml_form, aml_sms, text_via_twilio, twilio_inbound_form
from sim.twilio_wire import sign

NUMBER = "+77011234567"
TOKEN = "twilio-auth-token-for-tests"
AML_TOKEN = "aml-provider-secret"


@dataclass
class Phone:
    """The gateway's SMS sender as the test sees it: what went out, and whether it works."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    result: bool | None = True  # None: raise a ChannelError; "hang" via hang=True
    hang: bool = False

    async def send(self, number: str, text: str) -> bool:
        if self.hang:
            await trio.sleep_forever()
        if self.result is None:
            raise ChannelError("SMSC down")
        self.sent.append((number, text))
        return self.result


@dataclass
class Rig:
    sms: Sms112
    desk: Desk
    phone: Phone
    url: str = ""


def config(**overrides: object) -> Sms112Config:
    fields: dict[str, object] = dict(enabled=True, twilio_auth_token=TOKEN, match_window_s=600.0,
                                     aml_token_sha256=hashlib.sha256(AML_TOKEN.encode()).hexdigest(),
                                     send_timeout_s=0.5)
    fields.update(overrides)
    return Sms112Config(**fields)  # type: ignore[arg-type]


@asynccontextmanager
async def rig(tmp_path: Path, responder: list[str] | None = None, serve: bool = False,
              **overrides: object) -> AsyncIterator[Rig]:
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    phone = Phone()

    async def responder_reply(number: str, text: str, via: str) -> bool:
        return responder is not None and number in responder and text.lower() == "ok"

    async with trio.open_nursery() as nursery:
        desk = Desk(store, Recorder(store, Bus()))
        sms = Sms112(config(**overrides), desk, phone.send, responder_reply)
        await nursery.start(sms.run)
        r = Rig(sms, desk, phone)
        if serve:
            [r.url] = await nursery.start(run_server, Starlette(routes=Sms112Routes(sms).routes()), "127.0.0.1", 0)
        yield r
        nursery.cancel_scope.cancel()
    store.sync.close()


async def incidents(desk: Desk) -> list[Incident]:
    return [await desk.get(s.id) for s in await desk.store.by_number(NUMBER, 0)]


async def wait_for(desk: Desk, incident_id: str, kind: str) -> Incident:
    with trio.fail_after(3):
        while True:
            inc = await desk.get(incident_id)
            if any(e.kind == kind for e in inc.timeline):
                return inc
            await trio.sleep(0.01)


def kinds(incident: Incident) -> list[str]:
    return [e.kind for e in incident.timeline]


async def test_a_text_opens_an_incident_and_is_acknowledged_once(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            first = await r.sms.handle_text("87011234567", "Көмектесіңіз, сөйлей алмаймын. Абай 10, пәтер 5", "smpp")
            assert first.kind == "incident_opened"
            inc = await wait_for(r.desk, first.incident_id, "sms_ack_sent")
            assert inc.source == "sms" and inc.reporter == f"sms:{NUMBER}" and inc.caller.number == NUMBER
            assert inc.language == "kk" and inc.service == "112"
            assert inc.timeline[0].data["text"] == "Көмектесіңіз, сөйлей алмаймын. Абай 10, пәтер 5"
            second = await r.sms.handle_text(NUMBER, "Он ещё здесь", "twilio")
            assert second == first.__class__(kind="incident_updated", incident_id=first.incident_id)
            await trio.sleep(0.1)
            inc = await r.desk.get(first.incident_id)
            assert kinds(inc) == ["sms_received", "sms_ack_sent", "sms_received"]
            assert inc.timeline[2].data["via"] == "twilio" and inc.timeline[2].actor == f"sms:{NUMBER}"
            [(to, text)] = r.phone.sent
            assert to == NUMBER and text.startswith("112: хабарлама") and "112: сообщение" in text


async def test_a_text_after_the_reopen_window_opens_a_new_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path, reopen_window_s=0.2) as r:
            first = await r.sms.handle_text(NUMBER, "help", "smpp")
            await trio.sleep(0.3)
            second = await r.sms.handle_text(NUMBER, "help again", "smpp")
            assert second.kind == "incident_opened" and second.incident_id != first.incident_id


async def test_a_responders_acknowledgement_opens_nothing(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path, responder=[NUMBER]) as r:
            assert (await r.sms.handle_text("87011234567", "OK", "smpp")).kind == "responder"
            assert await incidents(r.desk) == [] and r.phone.sent == []
            assert (await r.sms.handle_text(NUMBER, "not ok, help", "smpp")).kind == "incident_opened"


async def test_bad_texts_are_kept_flagged(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path, max_text_chars=50) as r:
            empty = await r.sms.handle_text(NUMBER, "\x00 ", "smpp")
            inc = await r.desk.get(empty.incident_id)
            assert inc.timeline[0].data["text"] == "" and inc.timeline[0].data["flags"] == "control_chars,empty"
            big = await r.sms.handle_text(NUMBER, "x" * 500, "smpp")
            inc = await r.desk.get(big.incident_id)
            assert inc.timeline[-1].data["text"] == "x" * 50 and inc.timeline[-1].data["length"] == 500
            assert "truncated" in str(inc.timeline[-1].data["flags"])


async def test_unknown_senders_open_an_incident_nobody_can_answer(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            outcome = await r.sms.handle_text("Beeline\x1b", "Ваш баланс 0", "smpp")
            inc = await r.desk.get(outcome.incident_id)
            assert inc.reporter == "sms:Beeline" and inc.caller.number == ""
            assert "sender_not_a_number" in inc.caller.flags and "sender_control_chars" in inc.caller.flags
            await trio.sleep(0.1)
            assert r.phone.sent == [] and "sms_ack_sent" not in kinds(await r.desk.get(inc.id))
            again = await r.sms.handle_text("Beeline", "Ваш баланс 0", "smpp")
            assert again.incident_id != inc.id  # no number to group by


async def test_a_failed_acknowledgement_is_recorded(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            r.phone.result = None
            outcome = await r.sms.handle_text(NUMBER, "help", "smpp")
            inc = await wait_for(r.desk, outcome.incident_id, "sms_ack_failed")
            assert "SMSC down" in str(inc.timeline[-1].data["error"])


async def test_aml_attaches_to_the_callers_open_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            outcome = await r.sms.handle_text("87011234567", aml_sms(43.2381, 76.9456, 15), "smpp")
            assert outcome.kind == "aml_attached" and outcome.incident_id == opened.incident_id
            inc = await r.desk.get(opened.incident_id)
            [loc] = inc.locations
            assert (loc.source, loc.lat, loc.lon, loc.radius_m) == ("aml", 43.2381, 76.9456, 15.0)
            assert inc.best_location == 0 and inc.timeline[-1].kind == "location_added"
            assert inc.timeline[-1].data["via"] == "smpp" and inc.timeline[-1].actor == "aml"
            assert len(r.phone.sent) <= 1  # an AML text is never acknowledged


async def test_aml_without_a_fix_is_recorded_without_a_location(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            text = aml_sms(0, 0, 0, method="N")
            assert (await r.sms.handle_text(NUMBER, text, "smpp")).kind == "aml_attached"
            inc = await r.desk.get(opened.incident_id)
            assert inc.locations == [] and inc.timeline[-1].kind == "aml_received"
            assert inc.timeline[-1].data["has_position"] is False


async def test_aml_before_the_call_is_held_then_matched(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            held = await r.sms.handle_text(NUMBER, aml_sms(43.25, 76.95, 8), "smpp")
            assert held.kind == "aml_held" and len(r.sms.pending) == 1 and await incidents(r.desk) == []
            # the call (or a text) from that number opens its incident just after
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            inc = await wait_for(r.desk, opened.incident_id, "location_added")
            assert inc.locations[0].lat == 43.25 and inc.timeline[-1].data["via"] == "held"
            assert len(r.sms.pending) == 0


async def test_held_aml_expires_unmatched_and_is_logged(tmp_path: Path, caplog: object) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.INFO, "gateway.intake.text.sms112")
    with trio.fail_after(10):
        async with rig(tmp_path, match_window_s=0.2) as r:
            assert (await r.sms.handle_text(NUMBER, aml_sms(43.25, 76.95, 8), "smpp")).kind == "aml_held"
            while len(r.sms.pending):
                await trio.sleep(0.02)
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            await trio.sleep(0.1)
            assert (await r.desk.get(opened.incident_id)).locations == []
    assert any("expired: no incident" in m for m in caplog.messages)


async def test_aml_positioned_long_before_the_incident_is_not_attached(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path, match_window_s=60) as r:
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            stale = aml_sms(43.25, 76.95, 8, when=datetime.now(UTC) - timedelta(hours=2))
            assert (await r.sms.handle_text(NUMBER, stale, "smpp")).kind == "aml_held"
            assert (await r.desk.get(opened.incident_id)).locations == []


async def test_malformed_aml_is_rejected_and_told_to_the_open_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            assert (await r.sms.handle_text(NUMBER, 'A"ML=1;lt=+43.2', "smpp")).kind == "aml_rejected"
            assert await incidents(r.desk) == []  # a broken machine message is not a report
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            out_of_range = aml_sms(43.25, 76.95, 8).replace("lt=+43.25000", "lt=+93.25000")
            outcome = await r.sms.handle_text(NUMBER, out_of_range, "smpp")
            assert outcome.kind == "aml_rejected" and "outside -90..90" in outcome.error
            inc = await r.desk.get(opened.incident_id)
            assert inc.timeline[-1].kind == "aml_rejected" and inc.locations == []
            alpha = await r.sms.handle_text("Beeline", aml_sms(43.25, 76.95, 8), "smpp")
            assert alpha.kind == "aml_rejected" and "not a phone number" in alpha.error


async def test_dispatcher_reply_and_its_failures(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            await wait_for(r.desk, opened.incident_id, "sms_ack_sent")
            ok = await r.sms.reply(opened.incident_id, "Наряд выехал. Оставайтесь на связи.", "dispatcher:aigerim")
            assert ok.ok and r.phone.sent[-1] == (NUMBER, "Наряд выехал. Оставайтесь на связи.")
            r.phone.result = False
            refused = await r.sms.reply(opened.incident_id, "Second", "dispatcher:aigerim")
            r.phone.result = None
            raised = await r.sms.reply(opened.incident_id, "Third", "dispatcher:aigerim")
            r.phone.result, r.phone.hang = True, True
            hung = await r.sms.reply(opened.incident_id, "Fourth", "dispatcher:aigerim")
            r.phone.hang = False
            empty = await r.sms.reply(opened.incident_id, " \x00", "dispatcher:aigerim")
            assert not (refused.ok or raised.ok or hung.ok or empty.ok)
            assert "SMSC down" in raised.error and "within 0.5 s" in hung.error and "empty" in empty.error
            inc = await r.desk.get(opened.incident_id)
            assert kinds(inc)[-5:] == ["sms_replied"] + ["sms_reply_failed"] * 4
            assert inc.timeline[-5].actor == "dispatcher:aigerim" and inc.timeline[-5].data["to"] == NUMBER
            missing = await r.sms.reply("KZ-nothing", "hello", "dispatcher:aigerim")
            assert not missing.ok and "no incident" in missing.error


async def test_twilio_webhook_takes_signed_texts_and_refuses_forgeries(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with rig(tmp_path, serve=True) as r, httpx.AsyncClient(timeout=5) as client:
            url = r.url + "/webhooks/twilio/sms112"
            forged_form = twilio_inbound_form(NUMBER, "forged")
            forged = await client.post(url, data=forged_form,
                                       headers={"X-Twilio-Signature": sign("wrong-token", url, forged_form)})
            unsigned = await client.post(url, data=forged_form)
            good_sig = sign(TOKEN, url, forged_form)
            tampered = await client.post(url, data={**forged_form, "Body": "changed"},
                                         headers={"X-Twilio-Signature": good_sig})
            assert (forged.status_code, unsigned.status_code, tampered.status_code) == (403, 403, 403)
            assert await incidents(r.desk) == []
            answer = await text_via_twilio(url, TOKEN, NUMBER, "Помогите, не могу говорить", client=client)
            assert answer.status_code == 200 and answer.text == EMPTY_TWIML
            assert answer.headers["content-type"].startswith("text/xml")
            [inc] = await incidents(r.desk)
            assert inc.timeline[0].data["via"] == "twilio" and inc.language == "ru"
            not_utf8 = await client.post(url, content=b"Body=\xff", headers={"X-Twilio-Signature": "x"})
            huge = await client.post(url, content=b"Body=" + b"x" * 70_000, headers={"X-Twilio-Signature": "x"})
            assert (not_utf8.status_code, huge.status_code) == (400, 413)
            assert len(await incidents(r.desk)) == 1


async def test_twilio_webhook_behind_a_proxy_verifies_the_public_url(tmp_path: Path) -> None:
    public = "https://gw.example.kz/sms/112"
    with trio.fail_after(15):
        async with rig(tmp_path, serve=True, twilio_public_url=public) as r, httpx.AsyncClient(timeout=5) as client:
            form = twilio_inbound_form(NUMBER, "help")
            local = r.url + "/webhooks/twilio/sms112"
            signed_local = await client.post(local, data=form, headers={"X-Twilio-Signature": sign(TOKEN, local, form)})
            signed_public = await client.post(local, data=form,
                                              headers={"X-Twilio-Signature": sign(TOKEN, public, form)})
            assert (signed_local.status_code, signed_public.status_code) == (403, 200)


async def test_twilio_webhook_without_a_token_configured_refuses_all(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with rig(tmp_path, serve=True, twilio_auth_token="") as r, httpx.AsyncClient(timeout=5) as client:
            url = r.url + "/webhooks/twilio/sms112"
            answer = await text_via_twilio(url, "", NUMBER, "help", client=client)  # signed with the empty key
            assert answer.status_code == 403 and await incidents(r.desk) == []


async def test_aml_https_endpoint(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with rig(tmp_path, serve=True) as r, httpx.AsyncClient(timeout=5) as client:
            url = r.url + "/aml/v1"
            auth = {"Authorization": f"Bearer {AML_TOKEN}", "Content-Type": "application/x-www-form-urlencoded"}
            body = aml_form(NUMBER, 43.2381, 76.9456, 12)
            assert (await client.post(url, content=body)).status_code == 401
            wrong = await client.post(url, content=body, headers={**auth, "Authorization": "Bearer guess"})
            assert wrong.status_code == 401
            held = await client.post(url, content=body, headers=auth)
            assert held.status_code == 200 and held.json()["kind"] == "aml_held"
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            inc = await wait_for(r.desk, opened.incident_id, "location_added")
            assert inc.locations[0].radius_m == 12.0 and inc.timeline[-1].data["transport"] == "https"
            attached = await client.post(url, content=aml_form(NUMBER, 43.24, 76.95, 5), headers=auth)
            assert attached.json() == {"kind": "aml_attached", "incident_id": opened.incident_id, "error": ""}
            bad = aml_form(NUMBER, 43.2381, 76.9456).replace("location_latitude=43.238100",
                                                              "location_latitude=143.2")
            out_of_range = await client.post(url, content=bad, headers=auth)
            assert out_of_range.status_code == 400 and "outside -90..90" in out_of_range.json()["error"]
            malformed = await client.post(url, content=b"v=3&&&=x%zz", headers=auth)
            assert malformed.status_code == 400 and "error" in malformed.json()
            nobody = await client.post(url, content=aml_form("", 43.2, 76.9), headers=auth)
            assert nobody.status_code == 400 and "no usable number" in nobody.json()["error"]
            assert len((await r.desk.get(opened.incident_id)).locations) == 2


async def test_two_quick_texts_from_one_number_make_one_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with rig(tmp_path) as r:
            outcomes = []

            async def text(body: str) -> None:
                outcomes.append(await r.sms.handle_text(NUMBER, body, "smpp"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(text, "помогите")
                nursery.start_soon(text, "Абая 10, кв 5")
            assert sorted(o.kind for o in outcomes) == ["incident_opened", "incident_updated"]
            assert len({o.incident_id for o in outcomes}) == 1 and len(await incidents(r.desk)) == 1
            assert r.sms._numbers == {}


async def post_twilio(client: httpx.AsyncClient, url: str, form: dict[str, str]) -> httpx.Response:
    """POST ``form`` as Twilio does (signed for ``url``), the way Twilio retries: the same form again."""
    return await client.post(url, data=form, headers={"X-Twilio-Signature": sign(TOKEN, url, form)})


async def test_a_twilio_text_sent_three_times_is_recorded_once_even_after_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.intake.text.sms112")
    form = twilio_inbound_form(NUMBER, "Помогите, не могу говорить")
    with trio.fail_after(20):
        async with rig(tmp_path, serve=True) as r, httpx.AsyncClient(timeout=5) as client:
            url = r.url + "/webhooks/twilio/sms112"
            answers = [await post_twilio(client, url, form) for _ in range(3)]
            assert [(a.status_code, a.text) for a in answers] == [(200, EMPTY_TWIML)] * 3  # Twilio stops retrying
            [inc] = await incidents(r.desk)
            assert kinds(inc).count("sms_received") == 1 and r.sms.statistics() == {"replayed": 2}
        async with rig(tmp_path, serve=True) as r, httpx.AsyncClient(timeout=5) as client:  # same store file
            url = r.url + "/webhooks/twilio/sms112"
            again = await post_twilio(client, url, form)
            assert (again.status_code, again.text) == (200, EMPTY_TWIML)
            [inc] = await incidents(r.desk)
            assert kinds(inc).count("sms_received") == 1
            same_words = await post_twilio(client, url, twilio_inbound_form(NUMBER, "Помогите, не могу говорить"))
            assert same_words.status_code == 200  # a new message (new MessageSid) with the same words is taken
            [inc] = await incidents(r.desk)
            assert kinds(inc).count("sms_received") == 2
    assert sum("already taken" in m for m in caplog.messages) == 3  # once per replay


async def test_an_aml_report_sent_twice_adds_one_location(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with rig(tmp_path, serve=True) as r, httpx.AsyncClient(timeout=5) as client:
            url = r.url + "/aml/v1"
            auth = {"Authorization": f"Bearer {AML_TOKEN}", "Content-Type": "application/x-www-form-urlencoded"}
            early = aml_form(NUMBER, 43.2381, 76.9456, 12)
            held = [(await client.post(url, content=early, headers=auth)).json()["kind"] for _ in range(2)]
            assert held == ["aml_held", "aml_held"]  # sent again before the call: held twice, attached once
            opened = await r.sms.handle_text(NUMBER, "help", "smpp")
            await wait_for(r.desk, opened.incident_id, "location_added")
            later = aml_form(NUMBER, 43.24, 76.95, 5, when=datetime.now(UTC) + timedelta(seconds=1))
            kinds_sent = [(await client.post(url, content=later, headers=auth)).json()["kind"] for _ in range(2)]
            assert kinds_sent == ["aml_attached", "replayed"]
            sms = aml_sms(43.2382, 76.9457, 9)
            assert [(await r.sms.handle_text(NUMBER, sms, "smpp")).kind for _ in range(2)] == ["aml_attached",
                                                                                              "replayed"]
            await trio.sleep(0.1)
            inc = await r.desk.get(opened.incident_id)
            assert kinds(inc).count("location_added") == 3 and len(inc.locations) == 3
