"""The 102 bot against the Bot API stand-in on 127.0.0.1 and a real SQLite store: reports, status, replies."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import trio

from gateway.errors import ConfigError, NotFound
from gateway.incident.desk import DeskError, no_caller
from gateway.intake.text.telegram102 import Telegram102
from gateway.protocols.telegram_replies import TEXTS
from gateway.settings import Report102Config
from sim.telegram_citizen import Citizen, play, typical_report
from tests.drivers.test_telegram102_harness import lab

CHAT = 700100


def kinds(incident: object) -> list[str]:
    return [e.kind for e in incident.timeline]  # type: ignore[attr-defined]


async def test_start_greets_in_the_citizens_language_and_asks_for_number_and_location(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT, language_code="kk").text("/start"))
            [greeting] = await t.replies(CHAT, 1)
            assert greeting.text == TEXTS["greeting"]["kk"] and greeting.parse_mode == ""
            assert greeting.reply_markup is not None
            buttons = [b for row in greeting.reply_markup["keyboard"] for b in row]
            assert buttons[0]["request_contact"] is True and buttons[1]["request_location"] is True
            t.sim.inject(Citizen(CHAT + 1, language_code="de").text("/start"))
            assert (await t.replies(CHAT + 1, 1))[0].text == TEXTS["greeting"]["ru"]  # default language
            assert await t.telegram_incidents() == []  # greeting is not a report


async def test_report_by_text_opens_a_durable_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT, first_name="Айгерим").text("У подъезда драка, Абая 10"))
            [registered] = await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            assert (incident.source, incident.service, incident.reporter, incident.language) == (
                "telegram", "102", f"tg:{CHAT}", "ru")
            assert incident.caller.number == "" and incident.caller.display_name == "Айгерим"
            assert incident.caller.flags == ["telegram", "no_number"]
            first = incident.timeline[0]
            assert first.kind == "telegram_report" and first.actor == f"tg:{CHAT}"
            assert first.data["text"] == "У подъезда драка, Абая 10" and first.data["source"] == "telegram"
            assert registered.text == TEXTS["registered"]["ru"].format(ref=incident.id)
            assert registered.parse_mode == ""
            t.sim.inject(Citizen(CHAT).text("Их трое"))
            added = await t.replies(CHAT, 2)
            assert added[1].text == TEXTS["added"]["ru"]
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 2)
            assert stored.timeline[1].kind == "telegram_message" and stored.timeline[1].data["text"] == "Их трое"
            assert await t.telegram_incidents() == [incident.id]


async def test_own_contact_and_location_attach_to_the_same_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            citizen = Citizen(CHAT)
            t.sim.inject(citizen.text("Горит машина во дворе"))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            t.sim.inject(citizen.own_contact("87011234567"))
            saved = await t.replies(CHAT, 2)
            assert saved[1].text == TEXTS["phone_saved"]["ru"].format(number="+77011234567")
            t.sim.inject(citizen.location(43.2381, 76.9456, accuracy_m=15))
            await t.replies(CHAT, 3)
            stored = await t.stored_until(incident.id, lambda i: len(i.locations) == 1)
            assert stored.caller.number == "+77011234567" and stored.caller.raw_number == "87011234567"
            assert stored.caller.flags == ["telegram"]
            loc = stored.locations[0]
            assert (loc.source, loc.method, loc.shape, loc.lat, loc.lon, loc.radius_m) == (
                "manual", "telegram", "circle", 43.2381, 76.9456, 15)
            assert stored.best_location == 0
            assert kinds(stored) == ["telegram_report", "telegram_contact", "location_added"]
            # the verified number correlates the report with the caller's other incidents
            assert [s.id for s in await t.store.by_number("+77011234567", 0)] == [incident.id]
            assert await t.telegram_incidents() == [incident.id]


async def test_a_number_shared_first_is_the_ani_of_the_new_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            citizen = Citizen(CHAT)
            t.sim.inject(citizen.own_contact("+7 701 765 43 21"))
            [saved] = await t.replies(CHAT, 1)
            assert saved.reply_markup is not None and len(saved.reply_markup["keyboard"]) == 1  # location only
            assert await t.telegram_incidents() == []  # a number alone is not a report
            t.sim.inject(citizen.location(43.25, 76.92))
            await t.replies(CHAT, 2)
            incident = await t.incident_of(CHAT)
            assert incident.caller.number == "+77017654321"
            assert incident.locations[0].shape == "point" and incident.best_location == 0
            assert incident.timeline[0].data["item"] == "location"


async def test_photo_and_voice_are_kept_as_file_ids(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            citizen = Citizen(CHAT)
            photo = citizen.photo(caption="Номер машины 123ABC02", size=250_000)
            t.sim.inject(photo)
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            first = incident.timeline[0]
            largest = photo["message"]["photo"][-1]
            assert first.kind == "telegram_report" and first.data["media"] == "photo"
            assert first.data["file_id"] == largest["file_id"] and first.data["size"] == 250_000
            assert first.data["caption"] == "Номер машины 123ABC02" and first.data["width"] == 1280
            voice = citizen.voice(duration=9, size=31_000)
            t.sim.inject(voice)
            await t.replies(CHAT, 2)
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 2)
            media = stored.timeline[1]
            assert media.kind == "telegram_media"
            assert {k: media.data[k] for k in ("media", "file_id", "duration", "size", "mime_type")} == {
                "media": "voice", "file_id": voice["message"]["voice"]["file_id"], "duration": 9, "size": 31_000,
                "mime_type": "audio/ogg"}
            assert "getFile" not in t.sim.requests  # nothing is downloaded


async def test_media_can_be_refused_by_configuration(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path, accept_media=False) as t:
            t.sim.inject(Citizen(CHAT).voice())
            assert (await t.replies(CHAT, 1))[0].text == TEXTS["unsupported"]["ru"]
            assert await t.telegram_incidents() == []


async def test_status_changes_reach_the_citizen_without_internal_details(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT, language_code="en").text("Someone broke into my car"))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            await t.desk.set_status(incident.id, "assigned", actor="dispatcher:ivanov", unit="Patrol 12 Sgt Ivanov")
            await t.desk.set_category(incident.id, "theft", 2, actor="dispatcher:ivanov")  # not told
            await t.desk.set_status(incident.id, "on_scene", actor="unit:patrol-12")
            await t.desk.set_status(incident.id, "closed", actor="dispatcher:ivanov")
            sent = await t.replies(CHAT, 4)
            assert [m.text for m in sent[1:]] == [TEXTS["status_assigned"]["en"], TEXTS["status_on_scene"]["en"],
                                                   TEXTS["status_closed"]["en"]]
            assert all("Ivanov" not in m.text and "theft" not in m.text for m in sent)
            # a closed report is not reopened: the next message is a new one
            t.sim.inject(Citizen(CHAT, language_code="en").text("Now they are back"))
            await t.replies(CHAT, 5)
            second = await t.incident_of(CHAT)
            assert second.id != incident.id and sorted(await t.telegram_incidents()) == sorted(
                [incident.id, second.id])
            assert t.bot.statistics()["notices_sent"] == 3


async def test_other_incidents_changes_never_reach_citizens(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            call = await t.desk.open(service="102", source="call", caller=no_caller(), kind="call_arrived",
                                     actor="gateway", reporter=f"tg:{CHAT}")  # a forged-looking reporter
            await t.desk.set_status(call.id, "assigned", actor="dispatcher")
            await t.desk.record(call.id, "citizen_replied", actor="dispatcher", text="hello")
            t.sim.inject(Citizen(CHAT).text("/help"))
            await t.replies(CHAT, 1)
            await trio.sleep(0.2)
            assert [m.text for m in t.sim.messages_to(CHAT)] == [TEXTS["help"]["ru"]]


async def test_dispatcher_reply_is_recorded_and_sent_as_plain_text(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT, language_code="kk").text("Көмектесіңіз"))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            body = "<b>Stay</b> inside & lock the door <a href='x'>\x00"
            await t.bot.reply(incident.id, body, actor="dispatcher:ivanov")
            sent = await t.replies(CHAT, 2)
            assert sent[1].text == TEXTS["dispatcher"]["kk"].format(
                text="<b>Stay</b> inside & lock the door <a href='x'>")
            assert sent[1].parse_mode == "" and "ivanov" not in sent[1].text
            stored = await t.store.get(incident.id)
            assert stored.timeline[-1].kind == "citizen_replied" and stored.timeline[-1].actor == "dispatcher:ivanov"
            with pytest.raises(DeskError):
                await t.bot.reply(incident.id, " \x00 ", actor="dispatcher:ivanov")
            with pytest.raises(NotFound):
                await t.bot.reply("20260101-000000-nope", "hi", actor="dispatcher:ivanov")
            call = await t.desk.open(service="112", source="call", caller=no_caller("+77010000000"),
                                     kind="call_arrived", actor="gateway")
            with pytest.raises(DeskError):
                await t.bot.reply(call.id, "hi", actor="dispatcher:ivanov")


async def test_undeliverable_notice_is_recorded_on_the_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT).text("Шумят соседи"))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            t.sim.block(CHAT)
            await t.bot.reply(incident.id, "Наряд выехал", actor="dispatcher")
            stored = await t.stored_until(incident.id, lambda i: i.timeline[-1].kind == "telegram_notice_failed")
            assert stored.timeline[-1].data["notice"] == "citizen_replied"
            assert t.bot.statistics()["notices_failed"] == 1


async def test_reopen_window_zero_makes_every_item_a_new_report(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path, reopen_window_s=0) as t:
            t.sim.inject(Citizen(CHAT).text("first"))
            await t.replies(CHAT, 1)
            await trio.sleep(0.01)
            t.sim.inject(Citizen(CHAT).text("second"))
            await t.replies(CHAT, 2)
            assert len(await t.telegram_incidents()) == 2


async def test_a_restarted_bot_adds_to_the_open_incident(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT).own_contact("+77011234567"))
            t.sim.inject(Citizen(CHAT).text("Драка"))
            await t.replies(CHAT, 2)
            first = await t.incident_of(CHAT)
        async with lab(tmp_path) as t:  # same database file, new bot process state
            t.sim.inject(Citizen(CHAT).text("Уже разошлись"))
            assert (await t.replies(CHAT, 1))[0].text == TEXTS["added"]["ru"]
            stored = await t.stored_until(first.id, lambda i: len(i.timeline) == 2)
            assert stored.timeline[-1].data["text"] == "Уже разошлись"
            assert await t.telegram_incidents() == [first.id]


async def test_an_update_handed_out_again_is_taken_once_even_by_a_restarted_bot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.intake.text.telegram102")
    with trio.fail_after(15):
        async with lab(tmp_path) as t:
            report = t.sim.inject(Citizen(CHAT).text("Драка у подъезда"))
            place = t.sim.inject(Citizen(CHAT).location(43.25, 76.92))
            await t.replies(CHAT, 2)
            incident = await t.incident_of(CHAT)
            await t.stored_until(incident.id, lambda i: len(i.timeline) == 2)
            await t.bot.handle(copy.deepcopy(report))  # the same update again, in this process
            assert t.bot.statistics()["replayed"] == 1 and len(t.sim.messages_to(CHAT)) == 2
        async with lab(tmp_path) as t:  # stopped before getUpdates confirmed the batch: Telegram hands it out again
            for update in (report, place):
                t.sim.inject(copy.deepcopy(update))
            t.sim.inject(Citizen(CHAT).text("Уже разошлись"))  # and a new one
            assert (await t.replies(CHAT, 1))[0].text == TEXTS["added"]["ru"]
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 3)
            assert kinds(stored) == ["telegram_report", "location_added", "telegram_message"]
            assert t.bot.statistics()["replayed"] == 2 and await t.telegram_incidents() == [incident.id]
            assert len(t.sim.messages_to(CHAT)) == 1  # no second "registered" or "added" for the replays
    assert sum("already taken" in m for m in caplog.messages) == 3  # once per replay


async def test_drill_citizen_script_makes_one_complete_incident(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with lab(tmp_path) as t:
            await play(typical_report(CHAT, language_code="kk"), t.sim.inject)
            await t.replies(CHAT, 6)
            incident = await t.incident_of(CHAT)
            stored = await t.stored_until(incident.id, lambda i: len(i.timeline) == 4)
            assert kinds(stored) == ["telegram_report", "location_added", "telegram_media", "telegram_media"]
            assert stored.caller.number == "+77011234567" and stored.language == "kk"
            assert [e.data.get("media") for e in stored.timeline[2:]] == ["photo", "voice"]


async def test_disabled_bot_refuses_replies_and_enabled_needs_a_token(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.sim.inject(Citizen(CHAT).text("Помогите"))
            await t.replies(CHAT, 1)
            incident = await t.incident_of(CHAT)
            disabled = Telegram102(Report102Config(), t.desk, t.recorder)
            await disabled.run()  # returns at once
            with pytest.raises(DeskError):
                await disabled.reply(incident.id, "hi", actor="dispatcher")
            with pytest.raises(ConfigError):
                Telegram102(Report102Config(enabled=True), t.desk, t.recorder)
