"""Acknowledgement buttons: the Telegram driver attaches them, ``poll_callbacks`` receives the presses,
against the Bot API stand-in on 127.0.0.1; pure parsing first."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio

from channels.base import Message
from channels.telegram import ack_button, open_telegram
from channels.telegram_callbacks import (
    NEUTRAL,
    TRY_LATER,
    AckRejected,
    Malformed,
    Press,
    parse_press,
    poll_callbacks,
    remove_keyboard_params,
    text_for,
)
from gateway.errors import StoreError
from gateway.settings.channels import TelegramConfig
from gateway.web.server import run_server
from sim import telegram as simtg
from sim.telegram import TelegramSim

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
TOKEN = "123456:TEST-token"
CHAT = 700001
DATA = "ack:inc-42:r7"
THANKS = "Принято, спасибо. Ваше подтверждение записано."


class AckSim(TelegramSim):
    """sim.telegram has no editMessageReplyMarkup yet: this adds it as Telegram behaves (no markup
    removes the keyboard; the same markup again is 400 "message is not modified")."""

    async def call(self, token: str, method: str, params: dict[str, Any]) -> Any:
        if method.lower() == "editmessagereplymarkup" and token == self.token:
            self.requests[method] = self.requests.get(method, 0) + 1
            chat_id, _ = self._writable_chat(params)
            sent = self._messages.get((chat_id, simtg._as_int(params.get("message_id"), "message_id")))
            if sent is None:
                raise simtg.bad_request("message to edit not found")
            markup = simtg._markup(params.get("reply_markup"))
            if markup == sent.reply_markup:
                raise simtg.bad_request("message is not modified")
            sent.reply_markup, sent.edited = markup, sent.edited + 1
            self.edits.append(msgspec.structs.replace(sent, at=time.time()))
            return self._message_object(sent)
        return await super().call(token, method, params)


@asynccontextmanager
async def ack_sim() -> AsyncIterator[AckSim]:
    sim = AckSim(TOKEN)
    async with trio.open_nursery() as nursery:
        sim.url = (await nursery.start(run_server, sim.app(), "127.0.0.1", 0))[0]
        yield sim
        nursery.cancel_scope.cancel()


def config(sim: TelegramSim) -> TelegramConfig:
    return TelegramConfig(bot_token=TOKEN, api_base_url=sim.api_base_url, per_chat_interval_s=0)


def warning(key: str, body: str = "Пожар на ул. Абая 10. Выезд немедленно.", **options: str) -> Message:
    return Message(idempotency_key=key, alert_id="inc-42", address=str(CHAT), language="ru",
                   subject="Вызов", body=body, options=options)


async def until(condition: Callable[[], object]) -> None:
    while not condition():
        await trio.sleep(0.01)


class Engine:
    """What the escalation engine does with a press: records it, or refuses, or cannot record now."""

    def __init__(self) -> None:
        self.presses: list[tuple[str, int, str]] = []
        self.store_down = False

    async def on_press(self, data: str, user_id: int, username: str) -> str:
        if self.store_down:
            raise StoreError("database is locked")
        if not data.startswith("ack:"):
            raise AckRejected(f"unknown acknowledgement {data!r}")
        self.presses.append((data, user_id, username))
        return THANKS


def buttons(message: simtg.SentMessage) -> list[list[dict[str, Any]]]:
    return (message.reply_markup or {}).get("inline_keyboard", [])  # type: ignore[no-any-return]


def sent_with(sim: TelegramSim, text: str) -> list[simtg.SentMessage]:
    """The messages (parts) whose text has ``text``, in the order sent."""
    return [m for m in sim.sent if text in m.text]


# ---- real tier: driver, stand-in, poller --------------------------------------------------------


async def test_button_press_is_recorded_answered_and_removed() -> None:
    engine = Engine()
    long_body = "Эвакуация. " * 500  # two parts: the button goes on the first
    with trio.fail_after(20):
        async with ack_sim() as sim, open_telegram(config(sim)) as telegram, trio.open_nursery() as nursery:
            receipts = await telegram.deliver([warning("k1", ack_button=DATA, ack_label="Принял"),
                                               warning("k2", body=long_body, ack_button="ack:inc-42:r8",
                                                       ack_label="Принял"),
                                               warning("k3", body="Пожар потушен.")])
            assert [r.state for r in receipts] == ["sent"] * 3, receipts
            [message], [plain] = sent_with(sim, "Абая"), sent_with(sim, "потушен")
            part1, part2 = sent_with(sim, "Эвакуация")
            assert buttons(message) == [[{"text": "Принял", "callback_data": DATA}]]
            assert buttons(part1) and not buttons(part2) and not buttons(plain)  # k3 asked for none
            await nursery.start(poll_callbacks, config(sim), engine.on_press)
            sim.resident_press(CHAT, DATA)
            await until(lambda: sim.callback_answers and message.reply_markup is None)
            # A double tap that raced the removal: answered alike, recorded once.
            sim.resident_callback(CHAT, DATA, message=message)
            await until(lambda: len(sim.callback_answers) == 2)
            with pytest.raises(LookupError):
                sim.resident_press(CHAT, DATA)  # the button is gone
            nursery.cancel_scope.cancel()
    assert engine.presses == [(DATA, CHAT, "")]
    assert [a["text"] for a in sim.callback_answers] == [THANKS, THANKS]
    assert buttons(part1)  # the other message keeps its button


async def test_forged_and_malformed_presses_get_a_neutral_answer() -> None:
    engine = Engine()
    neutral = NEUTRAL["ru"]
    with trio.fail_after(20):
        async with ack_sim() as sim, open_telegram(config(sim)) as telegram, trio.open_nursery() as nursery:
            await telegram.deliver([warning("k1", ack_button=DATA, ack_label="Принял")])
            await nursery.start(poll_callbacks, config(sim), engine.on_press)
            message = sim.sent[0]
            sim.resident_callback(CHAT, "forged-data", message=message)
            sim.resident_callback(CHAT, "ack:" + "x" * 70, message=message)  # over Telegram's 64 bytes
            sim.inject({"callback_query": {"id": "1", "from": {"id": CHAT}}})  # no data (a game): not ours
            sim.inject({"callback_query": "nonsense"})
            sim.resident_callback(CHAT, DATA, language_code="kk")  # no message: nothing to edit
            await until(lambda: len(sim.callback_answers) == 3)
            engine.store_down = True
            sim.resident_press(CHAT, DATA)
            await until(lambda: len(sim.callback_answers) == 4)
            assert message.reply_markup is not None  # the store failed: the resident can press again
            engine.store_down = False
            sim.resident_press(CHAT, DATA)
            await until(lambda: message.reply_markup is None)
            nursery.cancel_scope.cancel()
    texts = [a["text"] for a in sim.callback_answers]
    assert texts == [neutral, neutral, THANKS, TRY_LATER["ru"], THANKS], texts
    assert engine.presses == [(DATA, CHAT, ""), (DATA, CHAT, "")]
    assert sim.requests.get("editMessageReplyMarkup") == 1


async def test_bot_api_outages_are_retried() -> None:
    engine = Engine()
    with trio.fail_after(20):
        async with ack_sim() as sim, open_telegram(config(sim)) as telegram, trio.open_nursery() as nursery:
            await telegram.deliver([warning("k1", ack_button=DATA, ack_label="Принял")])
            sim.fail_next(3, 502, methods=("getUpdates",))
            sim.fail_next(1, 429, retry_after=1, methods=("answerCallbackQuery",))
            sim.fail_next(1, 500, methods=("answerCallbackQuery",))
            await nursery.start(poll_callbacks, config(sim), engine.on_press)
            sim.resident_press(CHAT, DATA)
            await until(lambda: sim.callback_answers and sim.sent[0].reply_markup is None)
            nursery.cancel_scope.cancel()
    assert sim.requests["getUpdates"] >= 4 and sim.requests["answerCallbackQuery"] == 3
    assert engine.presses == [(DATA, CHAT, "")] and sim.callback_answers[0]["text"] == THANKS


async def test_rejected_token_keeps_retrying_without_crashing(caplog: pytest.LogCaptureFixture) -> None:
    def refusals() -> int:
        return sum(1 for r in caplog.records if r.levelname == "ERROR" and "401 Unauthorized" in r.getMessage())

    with trio.fail_after(10):
        async with ack_sim() as sim, trio.open_nursery() as nursery:
            wrong = TelegramConfig(bot_token="123456:WRONG-token", api_base_url=sim.api_base_url)
            await nursery.start(poll_callbacks, wrong, Engine().on_press)
            await until(lambda: refusals() >= 1)
            await trio.sleep(0.5)  # still running: a crash would end the nursery with the error
            nursery.cancel_scope.cancel()
    assert refusals() == 1  # and the next attempt waits the longest backoff
    assert "WRONG-token" not in caplog.text


async def test_bad_button_options_fail_the_message_unsent() -> None:
    with trio.fail_after(10):
        async with ack_sim() as sim, open_telegram(config(sim)) as telegram:
            receipts = await telegram.deliver([warning("k1", ack_button=DATA),
                                               warning("k2", ack_button="ack:" + "я" * 31, ack_label="OK")])
    assert [(r.state, r.retryable) for r in receipts] == [("failed", False)] * 2
    assert "go together" in receipts[0].error and "64 bytes" in receipts[1].error
    assert sim.sent == []


# ---- pure parts ---------------------------------------------------------------------------------


def test_press_parsing() -> None:
    query = {"id": "77", "from": {"id": 5, "username": "aidos_k", "language_code": "kk"}, "data": DATA,
             "message": {"message_id": 3, "chat": {"id": -1001}}}
    press = parse_press(query)
    assert press == Press(query_id="77", data=DATA, user_id=5, username="aidos_k", language="kk", chat_id=-1001,
                          message_id=3)
    assert isinstance(press, Press) and remove_keyboard_params(press) == {"chat_id": -1001, "message_id": 3}
    inline = parse_press({"id": "8", "from": {"id": 5}, "data": "x", "inline_message_id": "AAA"})
    assert isinstance(inline, Press) and remove_keyboard_params(inline) == {"inline_message_id": "AAA"}
    lost = parse_press({"id": "9", "from": {"id": 5}, "data": "x", "message": {"date": 0}})  # inaccessible
    assert isinstance(lost, Press) and remove_keyboard_params(lost) is None
    for bad, problem in [("x", "not an object"), ({"from": {"id": 5}, "data": "x"}, "without an id"),
                         ({"id": "1", "data": "x"}, "no sender"), ({"id": "1", "from": {"id": True}}, "no sender"),
                         ({"id": "1", "from": {"id": 5}}, "no callback data"),
                         ({"id": "1", "from": {"id": 5}, "data": "é" * 33}, "64 bytes")]:
        found = parse_press(bad)
        assert isinstance(found, Malformed) and problem in found.problem, (bad, found)


def test_button_options_and_texts() -> None:
    assert ack_button({}) is None
    assert ack_button({"ack_button": DATA, "ack_label": " Принял "}) == (DATA, "Принял")
    assert ack_button({"ack_button": "x" * 64, "ack_label": "OK"}) is not None
    for options in [{"ack_button": DATA}, {"ack_label": "OK"}, {"ack_button": "x" * 65, "ack_label": "OK"}]:
        with pytest.raises(ValueError):
            ack_button(options)
    assert text_for(NEUTRAL, "kk") == NEUTRAL["kk"] and text_for(NEUTRAL, "en-GB") == NEUTRAL["en"]
    assert text_for(NEUTRAL, "") == text_for(NEUTRAL, "de") == NEUTRAL["ru"]
