"""Telegram driver and sign-up bot against the Bot API stand-in on 127.0.0.1; pure helpers first."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, TelegramError, TimedOut

from channels.base import Message
from channels.telegram import classify, open_telegram, parse_address, render_parts, utf16_len
from channels.telegram_bot import run_signup_bot
from gateway.errors import ChannelError, StoreError
from gateway.protocols.telegram_signup import GREETING, TEXTS
from gateway.settings.channels import TelegramConfig
from sim.telegram import TelegramSim, open_telegram_sim
from sim.telegram_wire import plain_text

# PTB 22 warns from inside RetryAfter that retry_after will become a timedelta; the driver takes both.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
TOKEN = "123456:TEST-token"
PUBLIC = "@ecgw_alerts_almaty"
ZONES = {"almaly": {"kk": "Алмалы ауданы", "ru": "Алмалинский район", "en": "Almaly district"},
         "medeu": {"kk": "Медеу ауданы", "ru": "Медеуский район", "en": "Medeu district"}}


def zone_of(lat: float, lon: float) -> str | None:
    return "almaly" if 43.228 <= lat <= 43.262 and 76.895 <= lon <= 76.955 else None


def config(sim: TelegramSim, **kwargs: Any) -> TelegramConfig:
    fields: dict[str, Any] = {"bot_token": TOKEN, "api_base_url": sim.api_base_url, "public_channel": PUBLIC}
    return TelegramConfig(**(fields | kwargs))


def warning(address: str, key: str = "", body: str = "Сильный ветер до 25 м/с. Оставайтесь дома.",
            subject: str = "Штормовое предупреждение") -> Message:
    return Message(idempotency_key=key or f"alert-1:telegram:{address}", alert_id="alert-1", address=address,
                   language="ru", subject=subject, body=body)


async def until(condition: Callable[[], object]) -> None:
    while not condition():
        await trio.sleep(0.01)


# ---- pure helpers ------------------------------------------------------------------------------


def test_addresses() -> None:
    assert parse_address("123456789") == 123456789
    assert parse_address(" -1001234567890 ") == -1001234567890
    assert parse_address(PUBLIC) == PUBLIC
    for bad in ["", "@ab", "+77011234567", "chat", "@1abc", "12 34", "1" * 21]:
        assert parse_address(bad) is None


def test_short_messages_are_one_escaped_part() -> None:
    assert render_parts("Тревога", "Газ <утечка> & эвакуация") == [
        "<b>Тревога</b>\n\nГаз &lt;утечка&gt; &amp; эвакуация"]
    assert render_parts("", "a < b", parse_mode="") == ["a < b"]
    assert render_parts("", "  ") == []
    assert render_parts("Only a subject", "") == ["<b>Only a subject</b>"]


def test_long_messages_split_at_breaks_with_markers_and_lose_nothing() -> None:
    paragraphs = [f"Абзац {i}: " + "Ескерту мәтіні. " * 60 for i in range(12)]
    body = "\n\n".join(paragraphs)
    parts = render_parts("Внимание", body)
    assert len(parts) > 1
    for k, part in enumerate(parts, 1):
        plain = plain_text(part, "HTML")
        assert utf16_len(plain) <= 4096
        assert plain.endswith(f"[{k}/{len(parts)}]")
    assert parts[0].startswith("<b>Внимание</b>\n\n")
    rejoined = " ".join(plain_text(p, "HTML").rsplit("\n", 1)[0] for p in parts)
    assert rejoined.replace("<b>Внимание</b>", "").split() == ("Внимание " + body).split()


def test_split_counts_utf16_and_cuts_text_without_breaks() -> None:
    parts = render_parts("", "🚨" * 5000)  # each emoji is two UTF-16 units
    assert len(parts) == 3
    assert all(utf16_len(plain_text(p, "HTML")) <= 4096 for p in parts)
    assert sum(p.count("🚨") for p in parts) == 5000
    escaped = render_parts("", "<" * 5000)  # escaping makes the source longer, not the parsed text
    assert len(escaped) == 2 and all(utf16_len(plain_text(p, "HTML")) <= 4096 for p in escaped)


def test_library_errors_are_classified_in_one_place() -> None:
    assert classify(Forbidden("Forbidden: bot was blocked by the user")) == (
        "Forbidden: bot was blocked by the user", False)
    assert classify(BadRequest("Chat not found")) == ("Chat not found", False)
    assert classify(ChatMigrated(-1009)) == ("chat migrated to supergroup -1009", False)
    assert classify(TimedOut())[1] is True
    assert classify(NetworkError("Bad Gateway"))[1] is True
    assert classify(InvalidToken("Unauthorized"))[1] is True
    assert classify(TelegramError("Invalid server response"))[1] is True


# ---- driver against the stand-in ---------------------------------------------------------------


async def test_batch_to_residents_and_the_public_channel_is_counted_at_the_stand_in() -> None:
    chats = [100 + i for i in range(10)]
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN, channels=[PUBLIC]) as sim, open_telegram(config(sim)) as channel:
            assert channel.name == "telegram" and channel.public_channel == PUBLIC
            batch = [warning(str(c), body="Газ <утечка> & эвакуация") for c in chats] + [warning(PUBLIC)]
            receipts = await channel.deliver(batch)
            assert [r.idempotency_key for r in receipts] == [m.idempotency_key for m in batch]
            assert all(r.state == "sent" for r in receipts), receipts
            assert receipts[0].provider_id == "100:1"
            assert receipts[-1].provider_id.startswith("-100")
            assert sim.counts() == {str(c): 1 for c in chats} | {str(sim.resolve(PUBLIC)): 1}
            assert len(sim.messages_to(PUBLIC)) == 1
            first = sim.messages_to(100)[0]
            assert first.parse_mode == "HTML"
            assert plain_text(first.text, "HTML") == "Штормовое предупреждение\n\nГаз <утечка> & эвакуация"


async def test_pacing_keeps_under_the_bot_limit_and_an_unpaced_burst_is_refused() -> None:
    with trio.fail_after(15):
        async with open_telegram_sim(TOKEN) as sim:
            async with open_telegram(config(sim)) as channel:
                started = time.monotonic()
                receipts = await channel.deliver([warning(str(1000 + i)) for i in range(45)])
                elapsed = time.monotonic() - started
            assert all(r.state == "sent" for r in receipts)
            assert sim.rate_limited == 0
            assert elapsed >= 44 / 30 - 0.05, elapsed
            # The stand-in really enforces the limit: the same batch unpaced meets 429s.
            await trio.sleep(1.1)  # let the stand-in's bucket refill
            async with open_telegram(config(sim, max_per_second=1000, concurrency=32)) as fast:
                burst = await fast.deliver([warning(str(2000 + i)) for i in range(60)])
            refused = [r for r in burst if r.state == "failed"]
            assert refused and sim.rate_limited > 0
            # the 429s carry Telegram's retry_after; messages that came up during the pause carry what is left of it
            assert any(r.error == "429 too many requests" and r.retry_after_s == 1 for r in refused)
            assert all(r.retryable and r.retry_after_s is not None and 0 < r.retry_after_s <= 1 for r in refused)


async def test_429_is_retryable_with_retry_after_and_pauses_the_whole_driver() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, open_telegram(config(sim)) as channel:
            sim.fail_next(1, 429, retry_after=1)
            [refused] = await channel.deliver([warning("501")])
            assert refused.state == "failed" and refused.retryable and refused.retry_after_s == 1
            requests = sim.requests["sendMessage"]
            later = await channel.deliver([warning("502"), warning("503")])
            assert all(r.retryable and r.retry_after_s is not None and 0 < r.retry_after_s <= 1 for r in later)
            assert sim.requests["sendMessage"] == requests  # nothing went to Telegram while paused
            assert "flood wait" in (await channel.health()).detail
            await trio.sleep(1.0)
            assert [r.state for r in await channel.deliver([warning("502"), warning("503")])] == ["sent", "sent"]


async def test_per_chat_interval_keeps_order_within_a_chat() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, open_telegram(config(sim, per_chat_interval_s=0.3)) as channel:
            started = time.monotonic()
            receipts = await channel.deliver([warning("77", key=f"k{i}", body=f"часть {i}") for i in range(3)]
                                             + [warning("78")])
            assert all(r.state == "sent" for r in receipts)
            assert time.monotonic() - started >= 0.55
            assert [plain_text(m.text, "HTML").split("\n\n")[1] for m in sim.messages_to(77)] == [
                "часть 0", "часть 1", "часть 2"]


async def test_long_warning_arrives_in_parts() -> None:
    body = "\n\n".join(f"Пункт {i}. " + "Сохраняйте спокойствие. " * 40 for i in range(10))
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN, channels=[PUBLIC]) as sim, \
                open_telegram(config(sim, per_chat_interval_s=0.05)) as channel:
            [receipt] = await channel.deliver([warning(PUBLIC, body=body)])
            parts = sim.messages_to(PUBLIC)
            assert receipt.state == "sent" and len(parts) >= 2
            assert receipt.provider_id.split(":")[1] == ",".join(str(m.message_id) for m in parts)


async def test_failures_that_retrying_cannot_fix_are_not_retryable() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, open_telegram(config(sim)) as channel:
            sim.block(601)
            sim.forget(602)
            blocked, missing, unknown_channel, bad, empty = await channel.deliver([
                warning("601"), warning("602"), warning("@no_such_channel"), warning("+77011234567"),
                warning("603", body="", subject="")])
            assert (blocked.state, blocked.retryable) == ("failed", False)
            assert blocked.error == "Forbidden: bot was blocked by the user"
            assert (missing.retryable, missing.error) == (False, "Chat not found")
            assert not unknown_channel.retryable
            assert not bad.retryable and "not a chat id" in bad.error
            assert not empty.retryable
            assert sim.requests["sendMessage"] == 3


async def test_server_errors_and_silence_are_retryable() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, open_telegram(config(sim, request_timeout_s=0.5)) as channel:
            sim.fail_next(1, 502)
            [gateway_down] = await channel.deliver([warning("701")])
            assert gateway_down.retryable and gateway_down.retry_after_s is None and "Bad Gateway" in gateway_down.error
            sim.silent = True
            [timed_out] = await channel.deliver([warning("702")])
            assert timed_out.retryable and "timed out" in timed_out.error
            assert not (await channel.health()).up


async def test_health_is_getme() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim:
            async with open_telegram(config(sim)) as channel:
                assert await channel.health() == type(await channel.health())(up=True, detail="@ecgw_alerts_bot")
            async with open_telegram(config(sim, bot_token="123456:WRONG")) as channel:
                health = await channel.health()
                assert not health.up and "Unauthorized" in health.detail and "WRONG" not in health.detail
                [receipt] = await channel.deliver([warning("1")])
                assert receipt.retryable and "token rejected" in receipt.error
            async with open_telegram(config(sim, bot_token="not-a-token")) as channel:
                assert not (await channel.health()).up
    with pytest.raises(ChannelError):
        async with open_telegram(TelegramConfig(bot_token="")):
            pass


# ---- the stand-in's wire protocol --------------------------------------------------------------


async def test_stand_in_speaks_the_bot_api_wire_format() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, httpx.AsyncClient() as http:
            base = f"{sim.api_base_url}{TOKEN}"
            ok = await http.post(f"{base}/sendMessage", data={"chat_id": "5", "text": "<b>hi</b>", "parse_mode": "HTML",
                                                              "reply_markup": '{"inline_keyboard": []}'})
            assert ok.json()["result"]["text"] == "hi" and ok.json()["result"]["chat"]["type"] == "private"
            bad_html = await http.post(f"{base}/sendMessage",
                                       json={"chat_id": 5, "text": "<script>", "parse_mode": "HTML"})
            assert bad_html.status_code == 400 and "Unsupported start tag" in bad_html.json()["description"]
            too_long = await http.post(f"{base}/sendMessage", json={"chat_id": 5, "text": "x" * 4097})
            assert too_long.json() == {"ok": False, "error_code": 400,
                                       "description": "Bad Request: message is too long"}
            float_chat = await http.post(f"{base}/sendMessage", json={"chat_id": 5.5, "text": "x"})
            assert float_chat.json()["description"] == "Bad Request: chat not found"
            garbage = await http.post(f"{base}/getUpdates", data={"allowed_updates": "[oops"})
            assert garbage.status_code == 400
            unauthorized = await http.post(f"{sim.api_base_url}123:nope/getMe")
            assert unauthorized.status_code == 401 and unauthorized.json()["description"] == "Unauthorized"
            assert (await http.post(f"{sim.api_base_url}nonsense/getMe")).status_code == 404
            assert (await http.post(f"{base}/noSuchMethod")).status_code == 404
            sim.fail_next(1, 429, retry_after=7)
            limited = await http.post(f"{base}/sendMessage", json={"chat_id": 5, "text": "x"})
            assert limited.json() == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                                      "parameters": {"retry_after": 7}}
            edit = {"chat_id": 5, "message_id": 1, "text": "<b>hi</b>", "parse_mode": "HTML",
                    "reply_markup": {"inline_keyboard": []}}
            assert "not modified" in (await http.post(f"{base}/editMessageText", json=edit)).json()["description"]
            assert (await http.post(f"{base}/editMessageText", json=edit | {"text": "new"})).json()["ok"]
            stale = await http.post(f"{base}/answerCallbackQuery", json={"callback_query_id": "999"})
            assert stale.status_code == 400
            # one long poll at a time: a second getUpdates ends the first with 409
            async with trio.open_nursery() as nursery:
                first: list[httpx.Response] = []

                async def poll() -> None:
                    first.append(await http.post(f"{base}/getUpdates", json={"timeout": 5}))
                nursery.start_soon(poll)
                await trio.sleep(0.2)
                second = await http.post(f"{base}/getUpdates", json={"timeout": 1})
            assert first[0].status_code == 409 and "Conflict" in first[0].json()["description"]
            assert second.json() == {"ok": True, "result": []}
            sim.resident_text(5, "/start")
            second = await http.post(f"{base}/getUpdates", json={"timeout": 1})
            [update] = second.json()["result"]
            assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
            confirm = await http.post(f"{base}/getUpdates", data={"offset": str(update["update_id"] + 1)})
            assert confirm.json()["result"] == [] and sim.stats()["pending_updates"] == 0
            stats = (await http.get(f"{sim.url}/sim/stats")).json()
            assert stats["sent"] == 1 and stats["rate_limited"] == 1 and stats["by_chat"] == {"5": 1}


async def test_stand_in_runs_as_a_process() -> None:
    with trio.fail_after(20):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "sim.telegram", "--port", "0", "--token", TOKEN, "--channel", PUBLIC],
            stdout=-1)
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                assert chunk, "stand-in exited before printing its address"
                line += chunk
            ready = json.loads(line)
            async with httpx.AsyncClient() as http:
                me = await http.post(f"{ready['base_url']}{TOKEN}/getMe")
                assert me.json()["result"]["is_bot"] is True
                await http.post(f"{ready['control']}/faults", json={"block": [9]})
                blocked = await http.post(f"{ready['base_url']}{TOKEN}/sendMessage", json={"chat_id": 9, "text": "x"})
                assert blocked.status_code == 403
        finally:
            process.kill()
            await process.wait()


# ---- the sign-up bot through getUpdates --------------------------------------------------------


async def test_bot_runner_signs_a_resident_up_through_get_updates() -> None:
    resident = 424242
    subscribed: list[tuple[Any, ...]] = []
    unsubscribed: list[int] = []

    async def on_subscribe(*args: Any) -> None:
        subscribed.append(args)

    with trio.fail_after(15):
        async with open_telegram_sim(TOKEN) as sim, trio.open_nursery() as nursery:
            await nursery.start(partial(run_signup_bot, config(sim), zones=ZONES, zone_of=zone_of,
                                        on_subscribe=on_subscribe, on_unsubscribe=unsubscribed.append,
                                        poll_timeout_s=1, replies_per_second=100))
            assert len(sim.commands) == 3 and sim.requests["deleteWebhook"] == 1
            sim.resident_text(resident, "/start", language_code="kk")
            await until(lambda: sim.messages_to(resident))
            assert sim.messages_to(resident)[0].text == GREETING
            sim.resident_press(resident, "l:ru")
            await until(lambda: sim.edits and len(sim.messages_to(resident)) == 2)
            assert sim.edits[0].text == TEXTS["choose_district"]["ru"]
            assert sim.messages_to(resident)[1].reply_markup["keyboard"][0][0]["request_location"] is True  # type: ignore[index]
            sim.resident_press(resident, "z:ru:medeu")
            await until(lambda: subscribed and len(sim.messages_to(resident)) == 3)
            assert subscribed == [(resident, "medeu", None, None, "ru")]
            assert "Медеуский район" in sim.messages_to(resident)[2].text
            assert len(sim.callback_answers) == 2
            sim.resident_text(resident, "/zones")
            await until(lambda: len(sim.messages_to(resident)) == 4)
            assert sim.messages_to(resident)[3].text.startswith("Текущая подписка: Медеуский район.")
            # a location outside every zone: told so, offered the list, nothing changes
            sim.resident_location(resident, 51.17, 71.45)
            await until(lambda: len(sim.messages_to(resident)) == 5)
            assert sim.messages_to(resident)[4].text == TEXTS["outside"]["ru"] and len(subscribed) == 1
            # hostile input: a sticker and an unknown button get polite replies, the bot keeps going
            sim.inject({"message": {"message_id": 99, "chat": {"id": resident, "type": "private"}, "date": 1,
                                    "sticker": {"file_id": "x"}}})
            sim.resident_callback(resident, "definitely-not-ours")
            sim.resident_location(resident, 43.25, 76.92)
            await until(lambda: len(subscribed) == 2)
            assert subscribed[1] == (resident, "almaly", 43.25, 76.92, "ru")
            sim.resident_text(resident, "/stop")
            await until(lambda: unsubscribed)
            assert unsubscribed == [resident]
            await until(lambda: sim.stats()["pending_updates"] == 0)  # every update confirmed by the offset
            nursery.cancel_scope.cancel()


async def test_bot_runner_tells_the_resident_when_the_store_fails() -> None:
    def on_subscribe(*args: Any) -> None:
        raise StoreError("database is locked")

    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim, trio.open_nursery() as nursery:
            await nursery.start(partial(run_signup_bot, config(sim), zones=ZONES, zone_of=zone_of,
                                        on_subscribe=on_subscribe, on_unsubscribe=lambda chat: None,
                                        poll_timeout_s=1, replies_per_second=100))
            sim.resident_location(77, 43.25, 76.92, language_code="kk")
            await until(lambda: sim.messages_to(77))
            assert sim.messages_to(77)[0].text == TEXTS["unavailable"]["kk"]
            sim.resident_text(77, "/zones", language_code="kk")  # the failed subscription is not shown
            await until(lambda: len(sim.messages_to(77)) == 2)
            assert sim.messages_to(77)[1].text.startswith(TEXTS["not_subscribed"]["kk"])
            nursery.cancel_scope.cancel()


async def test_bot_runner_refuses_a_wrong_token() -> None:
    with trio.fail_after(10):
        async with open_telegram_sim(TOKEN) as sim:
            with pytest.raises(ChannelError, match="401"):
                await run_signup_bot(config(sim, bot_token="123456:WRONG"), zones=ZONES, zone_of=zone_of,
                                     on_subscribe=lambda *a: None, on_unsubscribe=lambda c: None)
