"""Real tier: the Twilio driver (twilio's aiohttp client in trio-asyncio) against the stand-in on 127.0.0.1.

Every test is bounded with ``trio.fail_after``; nothing leaves the loopback interface.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
import trio
from starlette.applications import Starlette

from channels.base import Channel, Message, Receipt
from channels.twilio_callbacks import callback_url
from channels.twilio_sms import open_twilio, status_callback_route
from gateway.errors import ChannelError
from gateway.settings.channels import TwilioConfig
from gateway.warning.sms import segments
from gateway.web.server import run_server
from sim.twilio import API, TwilioSim, open_twilio_sim
from sim.twilio_wire import sign

SENDER = "+15005550006"
SERVICE = "MG" + "1" * 32
KAZAKH = ("Назар аударыңыз! Алматы қаласында жер сілкінісі қаупі. Ғимараттан шығып, ашық жерге барыңыз. "
          "Внимание! Угроза землетрясения в Алматы: выйдите на открытое место.")


def message(n: int, address: str | None = None, body: str = "Test warning: stay indoors.") -> Message:
    return Message(idempotency_key=f"alert-1/twilio/{n}", alert_id="alert-1", address=address or f"+7701555{n:04d}",
                   language="en", body=body)


def config(sim: TwilioSim, **overrides: Any) -> TwilioConfig:
    fields: dict[str, Any] = {"account_sid": sim.account_sid, "auth_token": sim.auth_token, "from_number": SENDER,
                              "api_base_url": sim.base_url, "max_per_second": 200.0, "timeout_s": 3.0}
    fields.update(overrides)
    return TwilioConfig(**fields)


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSim]:
    async with open_twilio_sim(mps=1000.0, send_delay_s=0.01, deliver_delay_s=0.02) as running:
        yield running


async def test_batch_is_accepted_paced_and_counted(sim: TwilioSim) -> None:
    messages = [message(n) for n in range(20)]
    with trio.fail_after(10):
        async with open_twilio(config(sim, max_per_second=50.0, concurrency=4)) as channel:
            as_channel: Channel = channel  # the driver satisfies the engine's interface
            assert as_channel.name == "twilio" and as_channel.max_per_second == 50.0
            assert (await channel.health()).up
            started = trio.current_time()
            receipts = await channel.deliver(messages)
            elapsed = trio.current_time() - started
    assert [r.idempotency_key for r in receipts] == [m.idempotency_key for m in messages]
    assert all(r.state == "queued" and r.provider_id.startswith("SM") and len(r.provider_id) == 34 for r in receipts)
    assert len({r.provider_id for r in receipts}) == 20
    assert all(sim.count(m.address) == 1 for m in messages)
    assert len(sim.messages) == 20 and {m.from_ for m in sim.messages} == {SENDER}
    # 20 starts at 50 per second are at least 19 intervals of 20 ms apart.
    assert elapsed >= 19 / 50


async def test_kazakh_and_russian_text_arrives_intact(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            [got] = await channel.deliver([message(1, body=KAZAKH)])
    assert got.state == "queued"
    [record] = sim.messages
    assert record.body == KAZAKH
    assert record.num_segments == segments(KAZAKH).segments == 3  # UCS-2: 164 units in 67-unit parts


async def test_messaging_service_sender(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim, from_number="", messaging_service_sid=SERVICE)) as channel:
            [got] = await channel.deliver([message(1)])
    assert got.state == "queued"  # Twilio answers "accepted" for a Messaging Service
    [record] = sim.messages
    assert record.messaging_service_sid == SERVICE and record.from_ is None


@pytest.mark.parametrize(("address", "code"), [("87015550000", "21211"), ("+7 701 555", "21211"),
                                               ("+77015550099", "21614")])
async def test_invalid_number_fails_without_retry(sim: TwilioSim, address: str, code: str) -> None:
    sim.landlines.add("+77015550099")
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            [bad, good] = await channel.deliver([message(1, address), message(2)])
    assert bad.state == "failed" and not bad.retryable and f"error {code}" in bad.error
    assert good.state == "queued"
    assert sim.requests == 2  # one attempt each: the driver does not retry on its own
    assert sim.count(address) == 0


async def test_injected_429_is_retryable_after_the_retry_after_header(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim, retry_after_s=2.5)) as channel:
            sim.fail_next(1, 429, retry_after_s=7)
            [with_header] = await channel.deliver([message(1)])
            sim.fail_next(1, 429)
            [without_header] = await channel.deliver([message(1)])
            [then] = await channel.deliver([message(1)])
    assert with_header.state == "failed" and with_header.retryable and with_header.retry_after_s == 7.0
    assert "20429" in with_header.error
    assert without_header.retryable and without_header.retry_after_s == 2.5
    assert then.state == "queued" and sim.count(message(1).address) == 1


async def test_sending_faster_than_the_account_mps_gets_20429(sim: TwilioSim) -> None:
    sim.set_mps(3.0)
    with trio.fail_after(10):
        async with open_twilio(config(sim, max_per_second=1000.0)) as channel:
            receipts = await channel.deliver([message(n) for n in range(8)])
    accepted = [r for r in receipts if r.state == "queued"]
    limited = [r for r in receipts if r.state == "failed"]
    assert 3 <= len(accepted) < 8 and len(accepted) == len(sim.messages)
    assert all(r.retryable and r.retry_after_s == 1.0 and "20429" in r.error for r in limited)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(sim: TwilioSim, status: int) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            sim.fail_next(2, status)
            receipts = await channel.deliver([message(1), message(2), message(3)])
    assert [r.state for r in receipts] == ["failed", "failed", "queued"]
    assert all(r.retryable and f"HTTP {status}" in r.error and "outcome unknown" in r.error for r in receipts[:2])


async def test_bad_credentials_fail_for_good_and_mark_health_down(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim, auth_token="not-the-token")) as channel:
            [got] = await channel.deliver([message(1)])
            health = await channel.health()
        async with open_twilio(config(sim, account_sid="AC" + "9" * 32)) as other:
            [wrong_account] = await other.deliver([message(2)])
    assert got.state == "failed" and not got.retryable and "HTTP 401 error 20003" in got.error
    assert not health.up and "credentials refused" in health.detail
    assert not wrong_account.retryable and "20003" in wrong_account.error
    assert sim.messages == []


async def test_sending_refused_keeps_health_down_until_a_message_is_accepted(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            sim.fail_next(1, 403)
            [refused] = await channel.deliver([message(1)])
            down = await channel.health()  # the Account GET itself succeeds
            [accepted] = await channel.deliver([message(1)])
            up = await channel.health()
    assert refused.state == "failed" and not refused.retryable and "HTTP 403 error 20003" in refused.error
    assert not down.up and "sending refused" in down.detail
    assert accepted.state == "queued" and up.up


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = TwilioConfig(account_sid="AC" + "0" * 32, auth_token="x", from_number=SENDER,
                       api_base_url=f"http://127.0.0.1:{port}", timeout_s=3.0)
    with trio.fail_after(10):
        async with open_twilio(cfg) as channel:
            [got] = await channel.deliver([message(1)])
            health = await channel.health()
    assert got.state == "failed" and got.retryable and "cannot connect" in got.error
    assert not health.up


async def test_silent_provider_times_out_retryably(sim: TwilioSim) -> None:
    sim.set_silent(True)
    with trio.fail_after(10):
        async with open_twilio(config(sim, timeout_s=0.3)) as channel:
            [got] = await channel.deliver([message(1)])
            health = await channel.health()
    assert got.state == "failed" and got.retryable and "no answer within 0.3 s (outcome unknown)" in got.error
    assert not health.up and "no answer" in health.detail


async def test_status_callbacks_reach_a_receiver_verified(sim: TwilioSim) -> None:
    updates: list[Receipt] = []
    receiver = Starlette()
    sim.failing_numbers.add(message(2).address)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [base] = await nursery.start(run_server, receiver, "127.0.0.1", 0)
            url = f"{base}/twilio/status"
            async with open_twilio(config(sim, status_callback_url=url), on_update=updates.append) as channel:
                receiver.router.routes.append(status_callback_route(channel, "/twilio/status"))
                sent = await channel.deliver([message(1), message(2)])
                while len(updates) < 4:
                    await trio.sleep(0.02)
                async with httpx.AsyncClient() as client:
                    forged = await client.post(callback_url(url, "alert-1/twilio/1"),
                                               data={"MessageSid": sent[0].provider_id, "MessageStatus": "failed"},
                                               headers={"X-Twilio-Signature": "AAAA"})
                    unsigned = await client.post(callback_url(url, "alert-1/twilio/1"), data={"MessageStatus": "x"})
                    form = {"MessageSid": "SM1", "MessageStatus": "received"}
                    inbound_url = callback_url(url, "alert-1/twilio/1")
                    malformed = await client.post(inbound_url, data=form,
                                                  headers={"X-Twilio-Signature": sign(sim.auth_token, inbound_url,
                                                                                      form)})
            nursery.cancel_scope.cancel()
    assert forged.status_code == 403 and unsigned.status_code == 403 and malformed.status_code == 400
    assert len(updates) == 4  # the forged, unsigned and malformed ones never reached the engine
    by_key: dict[str, list[Receipt]] = {}
    for update in updates:
        by_key.setdefault(update.idempotency_key, []).append(update)
    first, second = by_key["alert-1/twilio/1"], by_key["alert-1/twilio/2"]
    assert [u.state for u in first] == ["sent", "delivered"] and {u.provider_id for u in first} == {sent[0].provider_id}
    assert [u.state for u in second] == ["sent", "failed"]
    assert second[1].retryable and "30003" in second[1].error and second[1].provider_id == sent[1].provider_id
    assert [c.http_status for c in sim.callbacks] == [204, 204, 204, 204]


async def test_lookup_finds_accepted_messages_and_not_unsent_ones(sim: TwilioSim) -> None:
    accepted, other_body, unsent = message(1), message(1, body="A different warning."), message(2)
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            [receipt] = await channel.deliver([accepted])
            while sim.by_sid[receipt.provider_id].status != "delivered":
                await trio.sleep(0.01)
            found = await channel.lookup([accepted, other_body, unsent])
            # Only messages since the window: one created earlier is not ours to claim.
            later = await channel.lookup([accepted], since=datetime.now(UTC) + timedelta(minutes=5))
    assert found[0] == Receipt(idempotency_key=accepted.idempotency_key, state="delivered",
                               provider_id=receipt.provider_id)
    assert found[1:] == [None, None]
    assert later == [None]


async def test_lookup_finds_a_message_still_queued_at_twilio() -> None:
    # Still queued means no date_sent yet, so Twilio's DateSent filter alone would miss it.
    async with open_twilio_sim(send_delay_s=30.0) as slow:
        with trio.fail_after(10):
            async with open_twilio(config(slow, from_number="", messaging_service_sid=SERVICE)) as channel:
                [receipt] = await channel.deliver([message(1)])
                [found] = await channel.lookup([message(1)])
    assert found is not None and found.state == "queued" and found.provider_id == receipt.provider_id


async def test_lookup_refuses_to_guess_when_twilio_cannot_answer(sim: TwilioSim) -> None:
    with trio.fail_after(10):
        async with open_twilio(config(sim)) as channel:
            sim.fail_next(5, 503)
            with pytest.raises(ChannelError, match="lookup failed"):
                await channel.lookup([message(1)])


async def test_stand_in_speaks_twilio_errors_and_paging(sim: TwilioSim) -> None:
    messages_url = f"{sim.base_url}{API}/Accounts/{sim.account_sid}/Messages.json"
    auth = (sim.account_sid, sim.auth_token)
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            unauthenticated = await client.post(messages_url, data={"To": "+77015550001", "Body": "x"})
            no_body = await client.post(messages_url, auth=auth, data={"To": "+77015550001", "From": SENDER})
            no_sender = await client.post(messages_url, auth=auth, data={"To": "+77015550001", "Body": "x"})
            for _ in range(3):
                created = await client.post(messages_url, auth=auth,
                                            data={"To": "+77015550001", "From": SENDER, "Body": "hello"})
            first = (await client.get(messages_url, auth=auth, params={"To": "+77015550001", "PageSize": 2})).json()
            second = (await client.get(sim.base_url + first["next_page_uri"], auth=auth)).json()
            bad_date = await client.get(messages_url, auth=auth, params={"DateSent>": "yesterday"})
            await trio.sleep(0.05)  # sent by now, so date_sent is set
            today = datetime.now(UTC)
            by_date = {}
            for key, value in [("DateSent", today.strftime("%Y-%m-%d")),
                               ("DateSent<", (today - timedelta(days=1)).strftime("%Y-%m-%d")),
                               ("DateSent>", (today - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")),
                               ("DateSent>", (today + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))]:
                page = (await client.get(messages_url, auth=auth, params={key: value})).json()
                by_date[key + value[10:]] = len(page["messages"])
            records = (await client.get(f"{sim.base_url}/_sim/records")).json()
    assert unauthenticated.status_code == 401 and unauthenticated.json()["code"] == 20003
    assert unauthenticated.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    assert no_body.status_code == 400 and no_body.json() == {
        "code": 21602, "message": "Message body is required.",
        "more_info": "https://www.twilio.com/docs/errors/21602", "status": 400}
    assert no_sender.json()["code"] == 21603
    resource = created.json()
    assert created.status_code == 201 and resource["status"] == "queued" and resource["num_segments"] == "1"
    assert resource["uri"] == f"{API}/Accounts/{sim.account_sid}/Messages/{resource['sid']}.json"
    assert resource["date_created"].endswith("+0000") and resource["date_sent"] is None
    assert [len(first["messages"]), first["page"], len(second["messages"]), second["next_page_uri"]] == [2, 0, 1, None]
    assert first["messages"][0]["sid"] == resource["sid"]  # newest first
    assert bad_date.status_code == 400
    assert list(by_date.values()) == [3, 0, 3, 0]
    assert records["counts"] == {"+77015550001": 3}


async def test_stand_in_runs_as_a_process() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            command = [sys.executable, "-m", "sim.twilio", "--port", "0", "--account-sid", "AC" + "5" * 32,
                       "--auth-token", "process-token"]
            process = await nursery.start(functools.partial(trio.run_process, command, stdout=subprocess.PIPE,
                                                            check=False))
            try:
                line = b""
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive_some(4096)
                ready = json.loads(line)
                async with httpx.AsyncClient() as client:
                    account = await client.get(f"{ready['base_url']}{API}/Accounts/{'AC' + '5' * 32}.json",
                                               auth=("AC" + "5" * 32, "process-token"))
            finally:
                process.terminate()
    assert ready["base_url"].startswith("http://127.0.0.1:")
    assert account.status_code == 200 and account.json()["status"] == "active"


async def test_stand_in_faults_over_http(sim: TwilioSim) -> None:
    faults = f"{sim.base_url}/_sim/faults"
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            assert (await client.post(faults, json={"fail_next": 1, "fail_status": 503})).status_code == 200
            assert (await client.post(faults, json={"failing_numbers": ["+77015550002"], "mps": 50})).status_code == 200
            assert (await client.post(faults, json={"fail_next": 1, "fail_status": 404})).status_code == 400
            assert (await client.post(faults, json={"typo": 1})).status_code == 400
        async with open_twilio(config(sim)) as channel:
            receipts = await channel.deliver([message(1), message(2)])
            while sim.messages[-1].status not in ("delivered", "undelivered"):
                await trio.sleep(0.01)
    assert receipts[0].retryable and "HTTP 503" in receipts[0].error and receipts[1].state == "queued"
    assert sim.mps == 50 and sim.messages[-1].status == "undelivered" and sim.messages[-1].error_code == 30003


def test_config_names_exactly_one_sender() -> None:
    base = {"account_sid": "AC1", "auth_token": "t"}
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert(base, TwilioConfig)
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert(base | {"from_number": SENDER, "messaging_service_sid": SERVICE}, TwilioConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert(base | {"from_number": SENDER, "mps": 5}, TwilioConfig)
    with pytest.raises(msgspec.ValidationError, match="max_per_second"):
        msgspec.convert(base | {"from_number": SENDER, "max_per_second": 0}, TwilioConfig)
    cfg = msgspec.convert(base | {"from_number": SENDER}, TwilioConfig)
    assert (cfg.api_base_url, cfg.max_per_second, cfg.concurrency) == ("https://api.twilio.com", 10.0, 10)
