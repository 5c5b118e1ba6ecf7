"""The 102 bot under hostile input and a failing Bot API: every case handled, logged, and survived."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.incident.desk import no_caller
from gateway.protocols.telegram_replies import TEXTS
from sim.telegram_citizen import Citizen
from tests.drivers.test_telegram102_harness import lab

CHAT = 700200
VICTIM = 700999


async def test_markup_is_stored_literally_and_nothing_is_sent_with_a_parse_mode(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            evil = "<b>unclosed <a href='javascript:x'>*bold* [link](http://evil) `code`"
            t.sim.inject(Citizen(CHAT, first_name="<i>Admin</i>").text(evil))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            assert incident.timeline[0].data["text"] == evil
            assert incident.timeline[0].data["flags"] == "markup"
            assert incident.caller.display_name == "iAdmin/i"  # ANI name rules: no angle brackets
            await t.bot.reply(incident.id, "</b><b>", actor="dispatcher")  # invalid HTML if it were parsed
            sent = await t.replies(CHAT, 2)
            assert sent[1].text.endswith("</b><b>") and all(m.parse_mode == "" for m in sent)


async def test_control_characters_are_removed(tmp_path: Path) -> None:
    with trio.fail_after(10):  # lone surrogates are in the pure tests: the stand-in's JSON cannot carry them
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT).text("Помогите\x00\x07\x1b[2J \u202eтипа\u200b адрес"))
            await t.replies(CHAT, 1)
            first = (await t.incident_of(CHAT)).timeline[0]
            assert first.data["text"] == "Помогите[2J типа адрес" and first.data["flags"] == "control_chars"


async def test_oversized_text_is_truncated_and_the_citizen_told(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path, max_text=100) as t:
            t.sim.inject(Citizen(CHAT).text("Д" * 4096))
            sent = await t.replies(CHAT, 2)
            assert sent[1].text == TEXTS["truncated"]["ru"].format(limit=100)
            first = (await t.incident_of(CHAT)).timeline[0]
            assert len(first.data["text"]) == 100 and first.data["length"] == 4096  # type: ignore[arg-type]
            assert first.data["flags"] == "truncated"


async def test_flood_is_acknowledged_once_and_dropped_with_a_counted_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "gateway.intake.text.telegram102")
    with trio.fail_after(10):
        async with lab(tmp_path, max_per_minute=3, ack_interval_s=60) as t:
            citizen = Citizen(CHAT)
            for i in range(8):
                t.sim.inject(citizen.text(f"сообщение {i}"))
            t.sim.inject(Citizen(CHAT + 1).text("другой человек"))
            await t.replies(CHAT + 1, 1)  # the other chat is not held up
            await t.until(lambda: t.bot.statistics()["flood_dropped"] == 5)
            sent = await t.replies(CHAT, 3)
            await trio.sleep(0.2)
            texts = [m.text for m in t.sim.messages_to(CHAT)]
            assert texts == [TEXTS["registered"]["ru"].format(ref=(await t.incident_of(CHAT)).id),
                             TEXTS["added"]["ru"], TEXTS["flood"]["ru"]]  # one "added" per interval
            assert len(sent) == 3
            incident = await t.incident_of(CHAT)
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 3)
            assert [e.data["text"] for e in stored.timeline] == ["сообщение 0", "сообщение 1", "сообщение 2"]
            flood_logs = [r.getMessage() for r in caplog.records if "messages a minute" in r.getMessage()]
            assert flood_logs and flood_logs[0].endswith("(1 dropped in all)")


async def test_forged_sender_is_never_answered_nor_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "gateway.intake.text.telegram102")
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            forged = Citizen(VICTIM).text("Ложный вызов")
            forged["message"]["from"] = Citizen(CHAT).user()  # sender is not the chat it claims
            t.sim.inject(forged)
            bot_sender = Citizen(VICTIM).text("/start")
            bot_sender["message"]["from"]["is_bot"] = True
            t.sim.inject(bot_sender)
            t.sim.inject(Citizen(CHAT).text("/help"))  # the loop goes on
            await t.replies(CHAT, 1)
            await trio.sleep(0.1)
            assert t.sim.messages_to(VICTIM) == [] and len(t.sim.messages_to(CHAT)) == 1
            assert await t.telegram_incidents() == []
            assert t.bot.statistics()["ignored_forged_sender"] == 2
            assert any("forged_sender" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("update", [
    {"message": {"text": "no chat, no sender"}},
    {"message": {"chat": {"id": CHAT, "type": "private"}, "text": "no sender"}},
    {"message": {"chat": {"id": str(CHAT), "type": "private"}, "from": {"id": CHAT}, "text": "id as text"}},
    {"message": "not an object"},
    {"message": None, "edited_message": [1, 2]},
    {"message": {"chat": {"id": -100777, "type": "supergroup"}, "from": {"id": CHAT}, "text": "group chatter"}},
])
async def test_malformed_updates_are_dropped_and_the_loop_goes_on(tmp_path: Path, update: dict[str, Any]) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(update)
            t.sim.inject(Citizen(CHAT).text("настоящее сообщение"))
            await t.replies(CHAT, 1)
            assert len(await t.telegram_incidents()) == 1
            assert len(t.sim.sent) == 1  # nothing was said to anyone about the malformed one
            assert sum(v for k, v in t.bot.statistics().items() if k.startswith("ignored_")) == 1


async def test_unknown_content_gets_one_polite_reply(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path, ack_interval_s=60) as t:
            citizen = Citizen(CHAT)
            for _ in range(3):
                t.sim.inject(citizen.message(sticker={"file_id": "CAACAgIAAxk", "file_unique_id": "u"}))
            t.sim.inject(citizen.message(dice={"emoji": "🎲", "value": 6}))
            t.sim.inject(citizen.text("/help"))
            sent = await t.replies(CHAT, 2)
            assert [m.text for m in sent] == [TEXTS["unsupported"]["ru"], TEXTS["help"]["ru"]]
            assert await t.telegram_incidents() == []
            assert t.bot.statistics()["ignored_unsupported"] == 4


async def test_someone_elses_contact_is_refused_and_noted(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            citizen = Citizen(CHAT)
            t.sim.inject(citizen.foreign_contact("+77017654321"))
            assert (await t.replies(CHAT, 1))[0].text == TEXTS["contact_refused"]["ru"]
            t.sim.inject(citizen.text("Сосед не отвечает, вот его номер"))
            await t.replies(CHAT, 2)
            incident = await t.incident_of(CHAT)
            t.sim.inject(citizen.foreign_contact("+77017654321", user_id=4242))
            await t.replies(CHAT, 3)
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 2)
            refused = stored.timeline[1]
            assert refused.kind == "telegram_contact_refused" and refused.data["other_number"] == "+77017654321"
            assert stored.caller.number == "" and t.bot.statistics()["contact_refused"] == 2
            assert await t.store.by_number("+77017654321", 0) == []


async def test_invalid_location_is_refused_with_the_location_button(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT).message(location={"latitude": 95.0, "longitude": 76.9}))
            t.sim.inject(Citizen(CHAT + 1).message(location={"latitude": 43.2, "longitude": "76.9"}))
            [reply] = await t.replies(CHAT, 1)
            assert reply.text == TEXTS["bad_location"]["ru"] and reply.reply_markup is not None
            await t.replies(CHAT + 1, 1)
            assert await t.telegram_incidents() == []
            assert t.bot.statistics()["ignored_bad_location"] == 2


async def test_edits_are_refused_and_live_location_is_silent(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject({"edited_message": Citizen(CHAT).text("исправлено")["message"]})
            t.sim.inject({"edited_message": Citizen(CHAT).location(43.2, 76.9)["message"]})
            assert [m.text for m in await t.replies(CHAT, 1)] == [TEXTS["edited"]["ru"]]
            await t.until(lambda: t.bot.statistics().get("ignored_live_location") == 1)
            assert len(t.sim.messages_to(CHAT)) == 1 and await t.telegram_incidents() == []


async def test_random_garbage_never_stops_the_bot(tmp_path: Path) -> None:
    rng = random.Random(102)
    atoms: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "/start", "x" * 3000, "private", CHAT, [], {}]
    keys = ["chat", "from", "id", "type", "text", "location", "latitude", "longitude", "contact", "phone_number",
            "user_id", "photo", "voice", "file_id", "caption", "venue", "is_bot", "language_code"]

    def junk(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(atoms)
        return {rng.choice(keys): junk(depth - 1) for _ in range(rng.randint(1, 5))}

    with trio.fail_after(20):
        async with lab(tmp_path, max_per_minute=600) as t:
            for i in range(300):
                kind = "message" if i % 3 else "edited_message"
                body = junk(4) if i % 2 else Citizen(CHAT + 1 + i % 5).message(**{rng.choice(keys): junk(3)})["message"]
                t.sim.inject({kind: body})
            t.sim.inject(Citizen(CHAT).text("после мусора"))
            await t.replies(CHAT, 1)
            assert t.bot.statistics()["updates"] == 301


async def test_bot_api_outage_is_retried_with_backoff(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with lab(tmp_path) as t:
            t.sim.fail_next(3, 502, methods=("getUpdates",))
            t.sim.fail_next(2, 500)  # the first two replies fail too
            t.sim.inject(Citizen(CHAT).text("Во время сбоя"))
            [registered] = await t.replies(CHAT, 1)
            assert registered.text.startswith("Ваше сообщение принято")
            # the stand-in has the message before the bot has its reply back: wait for the bot to count it
            await t.until(lambda: t.bot.statistics().get("sent") == 1)
            stats = t.bot.statistics()
            assert stats["poll_failures"] >= 3 and stats["connected"] == 1 and stats["sent"] == 1
            t.sim.fail_next(1, 429, retry_after=1)
            incident = await t.incident_of(CHAT)
            await t.desk.set_status(incident.id, "en_route", actor="dispatcher")
            started = trio.current_time()
            sent = await t.replies(CHAT, 2)
            assert sent[1].text == TEXTS["status_en_route"]["ru"] and trio.current_time() - started >= 0.9


async def test_a_rejected_token_is_retried_without_stopping_the_gateway(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "gateway.intake.text.telegram102")
    with trio.fail_after(10):
        async with lab(tmp_path, sim_token="999:OTHER-token") as t:
            await t.until(lambda: any("cannot reach the Bot API" in r.getMessage() for r in caplog.records))
            assert t.bot.statistics()["connected"] == 0
            assert all("CITIZEN-token" not in r.getMessage() for r in caplog.records)  # no token in logs
            incident = await t.desk.open(service="102", source="telegram", caller=no_caller(),
                                         kind="telegram_report", actor="test", reporter=f"tg:{CHAT}")
            await t.desk.set_status(incident.id, "assigned", actor="dispatcher")  # the desk still works

