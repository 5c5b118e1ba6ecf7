"""A Telegram Bot API stand-in: the real wire format at ``/bot{token}/{method}``, real error bodies.

Theory of operation: one ``TelegramSim`` holds the bot's world — chats, the messages the bot
sent or edited, the residents' pending updates — and a Starlette app serves it on Hypercorn's
Trio worker. Requests are JSON or ``application/x-www-form-urlencoded`` bodies (python-telegram-bot
sends the latter, with non-string values JSON-encoded) or query strings, like the real server. How
requests are read and answers written (error objects, HTML parse mode) is in ``sim.telegram_wire``.

What it enforces, because the real server does and our drivers must cope:
- the token: a malformed one gets 404 Not Found, a well-formed wrong one 401 Unauthorized;
- about 30 messages per second for the whole bot (a token bucket of 30 refilled at 30/s):
  beyond it, 429 with ``parameters.retry_after``;
- HTML parse mode: only Telegram's tags, balanced, and 4096 characters after entity parsing;
- blocked chats (403), unknown chats and usernames (400 chat not found), stale callback
  queries, edits of unknown or unchanged messages;
- one long poll at a time: a second ``getUpdates`` ends the first with 409 Conflict.

Knobs: ``block``, ``forget``, ``fail_next(n, status, retry_after)``, ``silent``. Records: every
sent message per chat, edits, callback answers, commands, 429s. Residents are played through
``resident_text``, ``resident_location``, ``resident_press`` (press a button the bot sent) and
``inject`` (any raw update). A control API under ``/sim/`` exposes the same for drills that run
the stand-in as a separate process: ``python -m sim.telegram --port N --token T``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sim.http import run_server
from sim.telegram_wire import ApiError, _as_int, _markup, _params, _reply, bad_request, plain_text, utf16_len

# Telegram numbers a bot's updates upwards for good: a bot restarted (or a stand-in started again,
# in this process or a later one) never sees an old update_id on a new update, and a bot that keeps
# the update_ids it took (the 102 bot does) must not take a new update for an old one.
_UPDATE_IDS = itertools.count(int(time.time() * 1000))

ChatId = int | str
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
USERNAME_RE = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{3,31}$")
TEXT_LIMIT = 4096
MAX_POLL_S = 50.0
UPDATE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post", "callback_query",
                "my_chat_member", "chat_member", "inline_query")


class SentMessage(msgspec.Struct, kw_only=True):
    """One message the bot sent (``edited`` counts later edits of it)."""

    chat_id: int
    address: ChatId
    message_id: int
    text: str
    parse_mode: str = ""
    reply_markup: dict[str, Any] | None = None
    at: float = 0.0
    edited: int = 0


class TelegramSim:
    """The stand-in's state and knobs; ``app()`` serves it. Not thread-safe: one Trio run owns it."""

    def __init__(self, token: str = "123456:TEST-token", *, channels: list[str] | tuple[str, ...] = (),
                 rate_per_s: float = 30.0, burst: float = 30.0, bot_username: str = "ecgw_alerts_bot") -> None:
        self.token = token
        self.bot_user = {"id": int(token.split(":")[0]) if TOKEN_RE.match(token) else 1, "is_bot": True,
                         "first_name": "ECGW Alerts", "username": bot_username, "can_join_groups": True,
                         "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.url = ""  # http://127.0.0.1:PORT once serving
        self.rate_per_s, self.burst = rate_per_s, burst
        self._tokens, self._refilled = burst, time.monotonic()
        self.channels = {name.lower(): -1001000000000 - i for i, name in enumerate(channels, 1)}
        self.blocked: set[int] = set()
        self.missing: set[int] = set()
        self.silent = False
        self._faults: list[tuple[int, int | None, frozenset[str]]] = []
        # records
        self.sent: list[SentMessage] = []
        self.edits: list[SentMessage] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {}
        self.rate_limited = 0
        # chats and updates
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], SentMessage] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = _UPDATE_IDS
        self._callback_ids = itertools.count(7000000001)
        self._open_callbacks: set[str] = set()
        self._changed = trio.Event()
        self._poll_generation = 0

    # ---- knobs -------------------------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """The resident blocked the bot: sends to them answer 403."""
        self.blocked.add(chat_id)

    def forget(self, chat_id: int) -> None:
        """Telegram does not know this chat: sends answer 400 chat not found."""
        self.missing.add(chat_id)

    def fail_next(self, n: int, status: int = 500, *, retry_after: int | None = None,
                  methods: tuple[str, ...] = ("sendMessage",)) -> None:
        """Answer the next ``n`` calls of ``methods`` with ``status`` (429 carries ``retry_after``)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        self._faults.extend([(status, retry_after, frozenset(methods))] * n)

    # ---- records -----------------------------------------------------------------------------

    def resolve(self, chat: ChatId) -> int:
        """A chat id from a numeric id or a known ``@username``; raises chat not found otherwise."""
        if isinstance(chat, int) and not isinstance(chat, bool):
            return chat
        if not isinstance(chat, str):
            raise bad_request("chat not found")
        if re.fullmatch(r"-?\d{1,20}", chat):
            return int(chat)
        if USERNAME_RE.match(chat) and chat.lower() in self.channels:
            return self.channels[chat.lower()]
        raise bad_request("chat not found")

    def messages_to(self, chat: ChatId) -> list[SentMessage]:
        chat_id = self.resolve(chat)
        return [m for m in self.sent if m.chat_id == chat_id]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.sent:
            out[str(m.chat_id)] = out.get(str(m.chat_id), 0) + 1
        return out

    def stats(self) -> dict[str, Any]:
        return {"sent": len(self.sent), "edits": len(self.edits), "callback_answers": len(self.callback_answers),
                "rate_limited": self.rate_limited, "pending_updates": len(self._updates),
                "requests": dict(self.requests), "by_chat": self.counts()}

    # ---- residents ---------------------------------------------------------------------------

    def inject(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update for ``getUpdates`` (an ``update_id`` is assigned if missing)."""
        update = dict(update)
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._wake()
        return update

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _resident(self, chat_id: int, language_code: str) -> dict[str, Any]:
        return {"id": chat_id, "is_bot": False, "first_name": "Resident", "language_code": language_code}

    def _resident_message(self, chat_id: int, language_code: str, **content: Any) -> dict[str, Any]:
        return {"message_id": self._next_message_id(chat_id), "from": self._resident(chat_id, language_code),
                "chat": {"id": chat_id, "first_name": "Resident", "type": "private"}, "date": int(time.time()),
                **content}

    def resident_text(self, chat_id: int, text: str, *, language_code: str = "ru") -> dict[str, Any]:
        """A resident writes ``text`` (a leading ``/command`` is marked as a bot_command entity)."""
        content: dict[str, Any] = {"text": text}
        command = re.match(r"^/\S+", text)
        if command:
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(command.group())}]
        return self.inject({"message": self._resident_message(chat_id, language_code, **content)})

    def resident_location(self, chat_id: int, lat: float, lon: float, *, language_code: str = "ru") -> dict[str, Any]:
        """A resident shares a location (what the request_location button sends)."""
        location = {"latitude": lat, "longitude": lon}
        return self.inject({"message": self._resident_message(chat_id, language_code, location=location)})

    def resident_press(self, chat_id: int, data: str, *, language_code: str = "ru") -> dict[str, Any]:
        """A resident presses the inline button carrying ``data`` on the latest bot message that has it."""
        for sent in reversed(list(self._messages.values())):
            buttons = (sent.reply_markup or {}).get("inline_keyboard", [])
            if sent.chat_id == chat_id and any(b.get("callback_data") == data for row in buttons for b in row):
                return self.resident_callback(chat_id, data, message=sent, language_code=language_code)
        raise LookupError(f"no bot message in chat {chat_id} has a button with data {data!r}")

    def resident_callback(self, chat_id: int, data: str, *, message: SentMessage | None = None,
                          language_code: str = "ru") -> dict[str, Any]:
        """A callback query with any ``data`` (use ``resident_press`` for buttons the bot really sent)."""
        query_id = str(next(self._callback_ids))
        self._open_callbacks.add(query_id)
        query: dict[str, Any] = {"id": query_id, "from": self._resident(chat_id, language_code),
                                 "chat_instance": str(abs(chat_id) * 7 + 3), "data": data}
        if message is not None:
            query["message"] = self._message_object(message)
        return self.inject({"callback_query": query})

    # ---- the Bot API -------------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _chat_object(self, chat_id: int) -> dict[str, Any]:
        for name, known in self.channels.items():
            if known == chat_id:
                return {"id": chat_id, "title": name[1:], "username": name[1:], "type": "channel"}
        if chat_id > 0:
            return {"id": chat_id, "first_name": "Resident", "type": "private"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "title": f"Group {-chat_id}", "type": kind}

    def _message_object(self, sent: SentMessage) -> dict[str, Any]:
        chat = self._chat_object(sent.chat_id)
        out: dict[str, Any] = {"message_id": sent.message_id, "chat": chat, "date": int(sent.at),
                               "text": plain_text(sent.text, sent.parse_mode)}
        if chat["type"] == "channel":
            out["sender_chat"] = chat
        else:
            out["from"] = self.bot_user
        if sent.reply_markup and "inline_keyboard" in sent.reply_markup:
            out["reply_markup"] = sent.reply_markup
        return out

    def _take_token(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate_per_s)
        self._refilled = now
        if self._tokens < 1:
            self.rate_limited += 1
            wait = math.ceil((1 - self._tokens) / self.rate_per_s)
            raise ApiError(429, f"Too Many Requests: retry after {wait}", max(1, wait))
        self._tokens -= 1

    def _writable_chat(self, params: dict[str, Any]) -> tuple[int, ChatId]:
        address = params.get("chat_id")
        if address in (None, ""):
            raise bad_request("chat_id is empty")
        chat_id = self.resolve(address)  # type: ignore[arg-type]
        if chat_id in self.missing:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id, address  # type: ignore[return-value]

    def _text(self, params: dict[str, Any]) -> tuple[str, str]:
        text, parse_mode = str(params.get("text") or ""), str(params.get("parse_mode") or "")
        if parse_mode and parse_mode.upper() not in ("HTML", "MARKDOWN", "MARKDOWNV2"):
            raise bad_request(f"unsupported parse_mode {parse_mode!r}")
        plain = plain_text(text, parse_mode)
        if not plain.strip():
            raise bad_request("message text is empty")
        if utf16_len(plain) > TEXT_LIMIT:
            raise bad_request("message is too long")
        return text, parse_mode

    def send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, address = self._writable_chat(params)
        text, parse_mode = self._text(params)
        markup = _markup(params.get("reply_markup"))
        self._take_token()
        sent = SentMessage(chat_id=chat_id, address=address, message_id=self._next_message_id(chat_id), text=text,
                           parse_mode=parse_mode, reply_markup=markup, at=time.time())
        self.sent.append(sent)
        self._messages[(chat_id, sent.message_id)] = sent
        return self._message_object(sent)

    def edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, _ = self._writable_chat(params)
        text, parse_mode = self._text(params)
        markup = _markup(params.get("reply_markup"))
        sent = self._messages.get((chat_id, _as_int(params.get("message_id"), "message_id")))
        if sent is None:
            raise bad_request("message to edit not found")
        if (plain_text(sent.text, sent.parse_mode), sent.reply_markup) == (plain_text(text, parse_mode), markup):
            raise bad_request("message is not modified: specified new message content and reply markup are "
                              "exactly the same as a current content and reply markup of the message")
        self._take_token()
        sent.text, sent.parse_mode, sent.reply_markup, sent.edited = text, parse_mode, markup, sent.edited + 1
        self.edits.append(msgspec.structs.replace(sent, at=time.time()))
        return self._message_object(sent)

    def edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, _ = self._writable_chat(params)
        sent = self._messages.get((chat_id, _as_int(params.get("message_id"), "message_id")))
        if sent is None:
            raise bad_request("message to edit not found")
        markup = _markup(params.get("reply_markup"))  # none given: the keyboard is removed
        if markup == sent.reply_markup:
            raise bad_request("message is not modified")
        sent.reply_markup, sent.edited = markup, sent.edited + 1
        self.edits.append(msgspec.structs.replace(sent, at=time.time()))
        return self._message_object(sent)

    def answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_callbacks:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self._open_callbacks.discard(query_id)
        self.callback_answers.append({k: v for k, v in params.items()})
        return True

    async def get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = _as_int(params.get("offset", 0), "offset")
        limit = min(100, max(1, _as_int(params.get("limit", 100), "limit")))
        timeout = min(MAX_POLL_S, max(0.0, float(_as_int(params.get("timeout", 0), "timeout"))))
        kinds = params.get("allowed_updates")
        try:
            kinds = json.loads(kinds) if isinstance(kinds, str) else kinds
            allowed = {str(k) for k in kinds} if kinds else set(UPDATE_KINDS) - {"chat_member"}
        except (ValueError, TypeError):
            raise bad_request("can't parse allowed updates list") from None
        if offset > 0:  # confirms every update before it, as Telegram does
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an earlier long poll sees the new generation and ends with 409
        deadline = trio.current_time() + timeout
        while True:
            ready = [u for u in self._updates if u["update_id"] >= offset and allowed & u.keys()][:limit]
            if ready or trio.current_time() >= deadline:
                return ready
            with trio.move_on_at(deadline):
                await self._changed.wait()
            if generation != self._poll_generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                                    "make sure that only one bot instance is running")

    async def call(self, token: str, method: str, params: dict[str, Any]) -> Any:
        """One Bot API call; raises ``ApiError`` for every answer that is not ``ok``."""
        if not TOKEN_RE.match(token):
            raise ApiError(404, "Not Found")
        if token != self.token:
            raise ApiError(401, "Unauthorized")
        self.requests[method] = self.requests.get(method, 0) + 1
        if self.silent:
            await trio.sleep_forever()
        for i, (status, retry_after, methods) in enumerate(self._faults):
            if method in methods:
                del self._faults[i]
                if status == 429:
                    self.rate_limited += 1
                    raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
                raise ApiError(status, {500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error"))
        match method.lower():
            case "getme":
                return self.bot_user
            case "sendmessage":
                return self.send_message(params)
            case "editmessagetext":
                return self.edit_message_text(params)
            case "editmessagereplymarkup":
                return self.edit_message_reply_markup(params)
            case "answercallbackquery":
                return self.answer_callback_query(params)
            case "getupdates":
                return await self.get_updates(params)
            case "setmycommands":
                self.commands.append(params)
                return True
            case "deletewebhook" | "close" | "logout":
                return True
            case "getwebhookinfo":
                return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}
        raise ApiError(404, "Not Found")

    # ---- HTTP --------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def api(request: Request) -> Response:
            try:
                params = await _params(request)
                result = await self.call(request.path_params["token"], request.path_params["method"], params)
            except ApiError as exc:
                return _reply(exc.body(), exc.code)
            return _reply({"ok": True, "result": result})

        async def messages(request: Request) -> Response:
            chat = request.query_params.get("chat_id")
            try:
                found = self.messages_to(chat) if chat else self.sent
            except ApiError as exc:
                return _reply(exc.body(), exc.code)
            return _reply(found)

        async def stats(request: Request) -> Response:
            return _reply(self.stats())

        async def updates(request: Request) -> Response:
            return _reply(self.inject(json.loads(await request.body())))

        async def faults(request: Request) -> Response:
            body = json.loads(await request.body())
            if "fail_next" in body:
                self.fail_next(int(body["fail_next"]), int(body.get("status", 500)),
                               retry_after=body.get("retry_after"),
                               methods=tuple(body.get("methods", ["sendMessage"])))
            self.blocked.update(int(c) for c in body.get("block", []))
            self.missing.update(int(c) for c in body.get("forget", []))
            self.silent = bool(body.get("silent", self.silent))
            return _reply(self.stats())

        return Starlette(routes=[
            Route("/bot{token}/{method}", api, methods=["GET", "POST"]),
            Route("/sim/messages", messages), Route("/sim/stats", stats),
            Route("/sim/updates", updates, methods=["POST"]), Route("/sim/faults", faults, methods=["POST"]),
        ])

    @property
    def api_base_url(self) -> str:
        """What to give python-telegram-bot as ``base_url`` (it appends the token)."""
        return f"{self.url}/bot"


@asynccontextmanager
async def open_telegram_sim(token: str = "123456:TEST-token", *, port: int = 0,
                            **kwargs: Any) -> AsyncIterator[TelegramSim]:
    """Serve a ``TelegramSim`` on 127.0.0.1 (port 0: any free port) until the block exits."""
    sim = TelegramSim(token, **kwargs)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run_server, sim.app(), "127.0.0.1", port)
        sim.url = binds[0]
        try:
            yield sim
        finally:
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.telegram", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="123456:TEST-token")
    parser.add_argument("--channel", action="append", default=[], help="a public @channel the bot may post to")
    parser.add_argument("--rate", type=float, default=30.0, help="messages per second before 429")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with open_telegram_sim(args.token, port=args.port, channels=args.channel, rate_per_s=args.rate,
                                     burst=args.rate) as sim:
            print(json.dumps({"base_url": sim.api_base_url, "token": args.token, "control": f"{sim.url}/sim"}),
                  flush=True)
            await trio.sleep_forever()

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
