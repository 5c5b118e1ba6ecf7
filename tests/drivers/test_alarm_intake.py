"""AlarmIntake on a real SQLite store, a real spool directory and its HTTP route served on 127.0.0.1."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import trio
from starlette.applications import Starlette

from gateway.incident.bus import Bus
from gateway.incident.desk import Desk
from gateway.incident.recorder import Recorder
from gateway.incident.records import Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.alarm.panels import AlarmIntake
from gateway.intake.alarm.sites import token_hash
from gateway.protocols.contact_id import encode, parse
from gateway.settings import AlarmConfig
from gateway.web.server import run_server
from gateway.web.webhooks import AlarmRoutes
from tests.store_backends import Backend, PgCluster

TOKENS = {"1201": "token-school-12", "4B09": "token-internat-9"}
SITES = "".join(f"""
[[sites]]
account = "{account}"
name_kk = "№ {account} мектеп"
name_ru = "Школа {account}"
address = "Алматы, ул. Толе би, {account}"
lat = 43.25
lon = 76.92
zone = "almaly"
panel_token_sha256 = "{token_hash(token)}"
contacts = [{{ name = "Директор", role = "director", phone = "+77017120001" }}]
""" for account, token in TOKENS.items())


def panel(code: str, qualifier: str = "new", account: str = "1201", zone: int = 1) -> str:
    return encode(account, code, qualifier, 1, zone)  # type: ignore[arg-type]


PANIC = panel("120")


def event_file(*messages: str, calling_from: str = "87272920012") -> str:
    """Exactly the layout AlarmReceiver writes (see tests/test_alarm_receiver_file.py)."""
    events = "".join(m + "\n" for m in messages)
    return (f"\n\n[metadata]\n\nPROTOCOL=ADEMCO_CONTACT_ID\nCHECKSUM=yes\nCALLINGFROM={calling_from}\n"
            f"CALLERNAME=<unknown>\nTIMESTAMP=Sat Nov 21, 2026 @ 10:15:02 +05\n\n[events]\n\n{events}")


@dataclass
class Lab:
    store: AsyncStore
    desk: Desk
    spool: Path
    sites_file: Path
    nursery: trio.Nursery

    def intake(self, **cfg: object) -> AlarmIntake:
        options: dict[str, object] = {"sites_file": str(self.sites_file), "poll_s": 0.02, "settle_s": 0.0} | cfg
        return AlarmIntake(msgspec.convert(options, AlarmConfig), self.desk, self.spool)

    async def start(self, **cfg: object) -> AlarmIntake:
        intake = self.intake(**cfg)
        await self.nursery.start(intake.run)
        return intake

    def drop(self, text: str, name: str = "event-AbC123") -> None:
        # Written aside and renamed in, so the watcher never sees it half-written even with settle_s = 0.
        (self.spool / ".writing").write_text(text)
        (self.spool / ".writing").rename(self.spool / name)

    def filed(self, kind: str) -> list[Path]:
        return sorted(p for p in (self.spool / kind).iterdir() if not p.name.endswith(".why"))

    async def wait_filed(self, count: int) -> None:
        while len(self.filed("done")) + len(self.filed("bad")) < count:
            await trio.sleep(0.01)

    async def incidents(self) -> list[Incident]:
        return [await self.desk.get(s.id) for s in await self.store.recent()]


@asynccontextmanager
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    sites_file = tmp_path / "sites.toml"
    sites_file.write_text(SITES, encoding="utf-8")
    store = AsyncStore(SqliteStore(tmp_path / "s.db"))
    async with trio.open_nursery() as nursery:
        yield Lab(store, Desk(store, Recorder(store, Bus())), tmp_path / "spool" / "alarm", sites_file, nursery)
        nursery.cancel_scope.cancel()
    store.sync.close()


def kinds(incident: Incident) -> list[str]:
    return [e.kind for e in incident.timeline]


async def test_panic_opens_an_incident_a_repeat_joins_it_and_the_restore_closes_out(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            await t.start()
            t.drop(event_file(PANIC))
            await t.wait_filed(1)
            [incident] = await t.incidents()
            assert (incident.source, incident.category, incident.priority, incident.service, incident.reporter) == (
                "alarm", "school_alarm", 9, "102", "1201")
            assert incident.caller.raw_number == "87272920012"
            assert incident.locations[0].address == "Алматы, ул. Толе би, 1201" and incident.best_location == 0
            first = incident.timeline[0]
            assert first.kind == "alarm_received" and first.actor == "panel:1201"
            assert (first.data["event_code"], first.data["event_description"], first.data["zone_or_user"]) == (
                "120", "Panic alarm", "001")
            assert (first.data["site_ru"], first.data["zone"], first.data["contact_id"]) == ("Школа 1201", "almaly",
                                                                                          PANIC)
            t.drop(event_file(panel("120", zone=4)), "event-XyZ789")
            await t.wait_filed(2)
            t.drop(event_file(panel("120", "restore", zone=4)), "event-Rst001")
            await t.wait_filed(3)
            [again] = await t.incidents()
            assert again.id == incident.id
            assert kinds(again) == ["alarm_received", "alarm_repeated", "alarm_restored"]
            assert again.timeline[1].data["zone_or_user"] == "004"
            assert len(t.filed("done")) == 3 and t.filed("bad") == [] and list(t.spool.glob("event-*")) == []


async def test_test_reports_and_arming_open_nothing_but_show_in_site_health(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            intake = await t.start()
            assert intake.site_health()["1201"].last_test_wall is None
            t.drop(event_file(panel("602", zone=0), panel("401", "restore", zone=7)))
            await t.wait_filed(1)
            assert await t.incidents() == []
            health = intake.site_health()
            assert health["1201"].last_test_wall is not None
            assert health["1201"].last_event == "401 Open/close by user (restore)"
            assert health["4B09"].last_event_wall is None
            assert len(t.filed("done")) == 1


async def test_unknown_account_makes_no_incident_and_the_file_is_kept_in_bad(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            intake = await t.start()
            stranger = panel("120", account="9999")
            t.drop(event_file(stranger, panel("120", account="4B09")))
            await t.wait_filed(1)
            [incident] = await t.incidents()  # the known school's alarm in the same call still counts
            assert incident.reporter == "4B09"
            [bad] = t.filed("bad")
            assert stranger in bad.read_text()
            assert "account 9999 is not in the site registry" in Path(str(bad) + ".why").read_text()
            assert intake.statistics()["unknown"] == 1 and intake.statistics()["bad_files"] == 1


async def test_bad_checksum_is_refused_with_its_digits_and_kept(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            await t.start()
            garbled = PANIC[:-1] + ("1" if PANIC[-1] != "1" else "2")
            t.drop(event_file(garbled))
            await t.wait_filed(1)
            assert await t.incidents() == []
            [bad] = t.filed("bad")
            why = Path(str(bad) + ".why").read_text()
            assert garbled in why and "checksum" in why and "line 13" in why


async def test_malformed_event_files_go_to_bad(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            intake = await t.start()
            t.drop("hello, this is not an event file\n", "event-junk01")
            t.drop(event_file(PANIC).replace("ADEMCO_CONTACT_ID", "UNKNOWN_FORMAT"), "event-unkn01")
            t.drop("\n\n[metadata]\n\nPROTOCOL=ADEMCO_CONTACT_ID\n", "event-short1")  # cut before [events]
            await t.wait_filed(3)
            assert await t.incidents() == []
            reasons = sorted(Path(str(p) + ".why").read_text() for p in t.filed("bad"))
            assert len(reasons) == 3
            assert any("no PROTOCOL= line" in r for r in reasons)
            assert any("PROTOCOL=UNKNOWN_FORMAT" in r for r in reasons)
            assert any("no [events] section" in r for r in reasons)
            assert intake.statistics()["bad_files"] == 3


async def test_files_waiting_at_start_are_handled_and_a_restart_keeps_the_open_incident(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            t.spool.parent.mkdir(parents=True)
            t.spool.mkdir()
            t.drop(event_file(PANIC))  # arrived while the gateway was down
            first = t.intake()
            await first.scan()
            assert len(t.filed("done")) == 1  # the spool had no done/ yet: scan alone must not need run()
            # A new process knows nothing in memory: the repeat and the restore still find the incident.
            second = t.intake()
            await t.nursery.start(second.run)
            t.drop(event_file(panel("120", zone=2)), "event-again1")
            t.drop(event_file(panel("120", "restore", zone=2)), "event-again2")
            await t.wait_filed(3)
            [incident] = await t.incidents()
            assert kinds(incident) == ["alarm_received", "alarm_repeated", "alarm_restored"]


async def test_an_alarm_after_the_window_or_a_closed_incident_opens_a_new_one(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            intake = await t.start(dedupe_window_s=0.3)
            first = await intake.handle(parse(PANIC), via="api")
            await trio.sleep(0.4)
            second = await intake.handle(parse(PANIC), via="api")
            assert first.outcome == second.outcome == "opened" and first.incident_id != second.incident_id
            await t.desk.set_status(second.incident_id, "closed", actor="aigerim")
            third = await intake.handle(parse(PANIC), via="api")
            assert third.outcome == "opened" and third.incident_id not in (first.incident_id, second.incident_id)
            orphan = await intake.handle(parse(panel("120", "restore", account="4B09")), via="api")
            assert orphan.outcome == "restore_unmatched" and orphan.incident_id == ""


async def test_a_fresh_file_waits_until_asterisk_has_finished_it(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with lab(tmp_path) as t:
            intake = t.intake(settle_s=0.5)
            await t.nursery.start(intake.run)
            t.drop(event_file(PANIC))
            await trio.sleep(0.2)
            assert list(t.spool.glob("event-*")) and await t.incidents() == []
            await t.wait_filed(1)
            assert len(await t.incidents()) == 1


async def test_a_store_failure_leaves_the_file_for_the_next_try(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with lab(tmp_path) as t:
            intake = t.intake()
            await t.nursery.start(intake.run)
            # Another process holds the write lock: the store gives up after its busy timeout.
            blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            t.drop(event_file(PANIC))
            with trio.move_on_after(6.5):
                while intake.counts.get("alarm", 0) < 2:  # failed once, being tried again
                    await trio.sleep(0.05)
            assert intake.counts.get("alarm", 0) >= 2
            assert list(t.spool.glob("event-*")) and t.filed("done") == []
            blocker.execute("ROLLBACK")
            blocker.close()
            await t.wait_filed(1)
            [incident] = await t.incidents()
            assert kinds(incident) == ["alarm_received"]


async def test_an_event_file_read_again_adds_nothing_even_after_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with lab(tmp_path) as t:
            intake = await t.start()
            t.drop(event_file(PANIC, panel("120", zone=4)))
            await t.wait_filed(1)
            t.drop(event_file(PANIC, panel("120", zone=4)))  # the gateway stopped before it filed it away
            await t.wait_filed(2)
            [incident] = await t.incidents()
            assert kinds(incident) == ["alarm_received", "alarm_repeated"]
            assert intake.statistics()["replayed"] == 2 and len(t.filed("done")) == 2 and t.filed("bad") == []
        async with lab(tmp_path) as t:  # a new process on the same store
            intake = await t.start()
            t.drop(event_file(PANIC))
            await t.wait_filed(3)
            later = event_file(PANIC).replace("10:15:02", "10:16:40")  # the same zone alarming again later
            t.drop(later, "event-later1")
            await t.wait_filed(4)
            [again] = await t.incidents()
            assert again.id == incident.id and kinds(again) == ["alarm_received", "alarm_repeated", "alarm_repeated"]
            assert intake.statistics()["replayed"] == 1


# --- POST /alarms --------------------------------------------------------------------------------


@asynccontextmanager
async def served(t: Lab) -> AsyncIterator[tuple[str, AlarmIntake]]:
    intake = await t.start()
    bound = await t.nursery.start(run_server, Starlette(routes=AlarmRoutes(intake).routes()), "127.0.0.1", 0)
    yield bound[0], intake


def client(url: str, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(base_url=url, timeout=10, headers=headers)


async def test_panel_api_opens_and_repeats(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with lab(tmp_path) as t, served(t) as (url, _intake), client(url, TOKENS["4B09"]) as c:
            opened = await c.post("/alarms", json={"account": "4B09", "event_code": 120, "qualifier": 1,
                                                   "partition": 1, "zone_or_user": 3})
            assert opened.status_code == 200 and opened.json()["outcome"] == "opened"
            raw = await c.post("/alarms", content=encode("4B09", "120", "new", 1, 3, alphabet="hex"))
            assert raw.json() == {**opened.json(), "outcome": "repeated"}
            test = await c.post("/alarms", json={"account": "4b09", "event_code": "602"})
            assert test.status_code == 200 and test.json()["outcome"] == "test"
            [incident] = await t.incidents()
            assert incident.id == opened.json()["incident_id"] and incident.timeline[0].data["via"] == "api"


async def test_panel_api_refuses_forged_tokens_other_accounts_and_bad_bodies(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with lab(tmp_path) as t, served(t) as (url, intake):
            body = {"account": "1201", "event_code": 120}
            for token in (None, "token-school-13", TOKENS["1201"] + "x"):
                async with client(url, token) as c:
                    reply = await c.post("/alarms", json=body)
                    assert reply.status_code == 401 and "panel token" in reply.json()["error"]
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                for header in (f"Basic {TOKENS['1201']}", "Bearer"):
                    reply = await c.post("/alarms", json=body, headers={"Authorization": header})
                    assert reply.status_code == 401
            async with client(url, TOKENS["1201"]) as c:
                other = await c.post("/alarms", json={"account": "4B09", "event_code": 120})
                assert other.status_code == 403 and "belongs to account 1201" in other.json()["error"]
                for content, says in ((b"{", "not valid JSON"), (b'{"account": "1201"}', "account and event_code"),
                                      (b'{"account": "1201", "event_code": 120, "qualifier": 5}', "qualifier 5"),
                                      (PANIC[:-1].encode() + b"9", "checksum"), (b"", "empty body")):
                    reply = await c.post("/alarms", content=content)
                    assert reply.status_code == 400 and says in reply.json()["error"], reply.text
            assert await t.incidents() == [] and intake.statistics()["api_unauthorised"] == 5


async def test_panel_api_report_sent_again_with_its_time_is_taken_once(tmp_path: Path) -> None:
    report = {"account": "4B09", "event_code": 120, "zone_or_user": 3, "time": "2026-11-21T10:15:02+05:00"}
    with trio.fail_after(20):
        async with lab(tmp_path) as t, served(t) as (url, intake), client(url, TOKENS["4B09"]) as c:
            answers = [await c.post("/alarms", json=report) for _ in range(3)]
            assert [a.status_code for a in answers] == [200] * 3  # the panel hears "taken" and stops
            assert [a.json()["outcome"] for a in answers] == ["opened", "replayed", "replayed"]
            same_instant = await c.post("/alarms", json={**report, "time": "2026-11-21T05:15:02Z"})
            later = await c.post("/alarms", json={**report, "time": "2026-11-21T10:15:09+05:00"})
            assert (same_instant.json()["outcome"], later.json()["outcome"]) == ("replayed", "repeated")
            [incident] = await t.incidents()
            assert kinds(incident) == ["alarm_received", "alarm_repeated"] and intake.statistics()["replayed"] == 3
            naive = await c.post("/alarms", json={**report, "time": "2026-11-21T10:15:02"})
            assert naive.status_code == 400 and "timezone" in naive.json()["error"]


async def test_two_nodes_on_one_postgresql_take_a_report_sent_to_both_once(tmp_path: Path, pg_cluster: PgCluster
                                                                           ) -> None:
    """A panel whose first node did not answer in time sends its report to the other node (Kamailio or its own
    list of addresses): the replay key is in the shared store, so the second node says "replayed"."""
    shared = Backend("postgresql", tmp_path / "pg", pg_cluster)
    sites_file = tmp_path / "sites.toml"
    sites_file.write_text(SITES, encoding="utf-8")
    report = {"account": "4B09", "event_code": 120, "zone_or_user": 3, "time": "2026-11-21T10:15:02+05:00"}
    stores = [AsyncStore(shared.open()), AsyncStore(shared.open())]
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                answers = []
                for n, store in enumerate(stores):
                    node = Lab(store, Desk(store, Recorder(store, Bus())), tmp_path / f"spool-{n}" / "alarm",
                               sites_file, nursery)
                    async with served(node) as (url, _intake), client(url, TOKENS["4B09"]) as c:
                        answers.append((await c.post("/alarms", json=report)).json())
                assert [a["outcome"] for a in answers] == ["opened", "replayed"]
                [incident] = await node.incidents()
                assert kinds(incident) == ["alarm_received"] and incident.id == answers[0]["incident_id"]
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.sync.close()
