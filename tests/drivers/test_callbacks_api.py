"""The call-back list's HTTP routes and a dispatcher's call-back, on a real store and a real HTTP server;
Asterisk is a stand-in that records what it was asked (the real one: tests/drills/test_real_callbacks.py)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trio
from starlette.applications import Starlette

from gateway import settings as config
from gateway.asterisk.ari import Ari
from gateway.errors import AriError
from gateway.incident.bus import Bus
from gateway.incident.callback_table import abandoned
from gateway.incident.recorder import Held, Recorder
from gateway.incident.records import Caller, Incident
from gateway.incident.store import AsyncStore, SqliteStore
from gateway.intake.call_back import LIST_FRESH_S, CallBacks
from gateway.intake.dispatch import Dispatcher
from gateway.metrics import Metrics
from gateway.people.accounts import Accounts
from gateway.protocols import ari_events as ev
from gateway.web.auth import Auth
from gateway.web.callbacks import CallbackRoutes
from gateway.web.server import run_server

TOKENS = {"aigerim": "tok-dispatcher", "olga": "tok-civil-defence", "marat": "tok-supervisor"}
NUMBER = "+77011234567"


@dataclass
class FakeAri:
    refuse: bool = False
    asked: list[tuple[str, Any]] = field(default_factory=list)

    async def originate(self, endpoint: str, channel_id: str, **kw: Any) -> None:
        self.asked.append(("originate", (endpoint, channel_id, kw)))
        if self.refuse:
            raise AriError("ARI POST channels failed (400): b'Allocation failed'")

    async def subscribe(self, channel_id: str) -> None:
        self.asked.append(("subscribe", channel_id))

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, label: str = "") -> None:
        self.asked.append(("continue", (channel_id, context, extension)))

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.asked.append(("hangup", channel_id))


@dataclass
class Lab:
    url: str
    recorder: Recorder
    store: AsyncStore
    callbacks: CallBacks
    dispatcher: Dispatcher
    accounts: Accounts
    ari: FakeAri
    nursery: trio.Nursery

    def client(self, name: str = "aigerim") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {TOKENS[name]}"})

    async def abandoned_call(self, incident_id: str, number: str = NUMBER, priority: int = 1) -> None:
        incident = Incident(id=incident_id, service="112", created_wall=time.time(), priority=priority,
                            caller=Caller(number=number, raw_number=number, display_name="", withheld=False))
        held = self.recorder.track(Held(incident))
        await self.recorder.create(held)
        await self.recorder.record(held, "hung_up", actor="caller", state="closed", answered=False, callback=True,
                                   with_event=[abandoned(incident, time.time())])
        self.recorder.release(held)

    async def kinds(self, incident_id: str) -> list[str]:
        return [e.kind for e in (await self.store.get(incident_id)).timeline]


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    cfg = config.load()
    accounts = Accounts(tmp_path / "accounts.sqlite3")
    accounts.adopt([("aigerim", ["dispatcher"], hashlib.sha256(b"tok-dispatcher").hexdigest()),
                    ("olga", ["civil-defence"], hashlib.sha256(b"tok-civil-defence").hexdigest()),
                    ("marat", ["supervisor"], hashlib.sha256(b"tok-supervisor").hexdigest())])
    store = AsyncStore(SqliteStore(tmp_path / "gateway.sqlite3"))
    recorder = Recorder(store, Bus())
    from gateway.incident.callback_table import CallbackTable

    callbacks = CallBacks(cfg, CallbackTable(store), recorder)
    dispatcher = Dispatcher(cfg.dispatch, recorder, Metrics())
    ari = FakeAri()
    async with trio.open_nursery() as nursery:
        callbacks.attach(cast(Ari, ari), dispatcher, nursery)
        app = Starlette(routes=CallbackRoutes(callbacks, Auth(accounts, local_key="k" * 64)).routes())
        bound = await nursery.start(run_server, app, "127.0.0.1", 0)
        yield Lab(bound[0], recorder, store, callbacks, dispatcher, accounts, ari, nursery)
        nursery.cancel_scope.cancel()


async def test_the_list_is_for_dispatchers_supervisors_and_admins_and_every_read_is_audited(lab: Lab) -> None:
    with trio.fail_after(20):
        await lab.abandoned_call("i1")
        await lab.abandoned_call("i2", "+77017654321", priority=9)
        await lab.abandoned_call("i3")
        await trio.sleep(LIST_FRESH_S)  # the list read at attach (the catch-up) is a second old: read again
        async with httpx.AsyncClient(base_url=lab.url, timeout=10) as anonymous:
            assert (await anonymous.get("/callbacks")).status_code == 401
            assert (await anonymous.post(f"/callbacks/{NUMBER}/call", json={"position": "pos1"})).status_code == 401
        async with lab.client("olga") as civil:
            assert (await civil.get("/callbacks")).status_code == 403
            assert (await civil.post(f"/callbacks/{NUMBER}/call", json={"position": "pos1"})).status_code == 403
        async with lab.client() as c, lab.client("marat") as supervisor:
            listed = (await c.get("/callbacks")).json()
            assert (await supervisor.get("/callbacks")).status_code == 200
        assert [(e["number"], e["count"], e["incidents"]) for e in listed] == [
            ("+77017654321", 1, ["i2"]), (NUMBER, 2, ["i3", "i1"])]
        trail = [(e.who, e.via, e.action) for e in lab.accounts.audit_trail() if e.action == "callbacks_listed"]
        assert trail == [("aigerim", "token", "callbacks_listed"), ("marat", "token", "callbacks_listed")]


async def test_bad_requests_say_why_and_lose_nothing(lab: Lab) -> None:
    with trio.fail_after(20):
        await lab.abandoned_call("i1")
        async with lab.client() as c:
            nobody = await c.post("/callbacks/+77019999999/call", json={"position": "pos1"})
            assert nobody.status_code == 404 and "nobody to call back" in nobody.json()["error"]
            unknown = await c.post(f"/callbacks/{NUMBER}/call", json={"position": "pos9"})
            assert unknown.status_code == 400 and "unknown position 'pos9'" in unknown.json()["error"]
            assert (await c.post(f"/callbacks/{NUMBER}/call", json={"where": "pos1"})).status_code == 400
            lab.dispatcher.board.set("pos1", "busy")
            busy = await c.post(f"/callbacks/{NUMBER}/call", json={"position": "pos1"})
            assert busy.status_code == 409 and "pos1 is busy" in busy.json()["error"]
            lab.dispatcher.board.set("pos1", "free")
            lab.ari.refuse = True
            refused = await c.post("/callbacks/i1/call", json={"position": "pos1"})
            assert refused.status_code == 503 and "Allocation failed" in refused.json()["error"]
            assert lab.dispatcher.board.state("pos1") == "free"  # the position is not left reserved
            listed = (await c.get("/callbacks")).json()
        assert listed[0]["incidents"] == ["i1"] and listed[0]["attempts"] == 1 and listed[0]["last_outcome"] == "failed"
        assert (await lab.kinds("i1"))[-2:] == ["callback_started", "callback_outcome"]
        lab.callbacks.attach(None, None, None)  # Asterisk away
        async with lab.client() as c:
            away = await c.post("/callbacks/i1/call", json={"position": "pos1"})
        assert away.status_code == 503 and "not connected" in away.json()["error"]


async def test_a_call_back_rings_the_position_then_the_caller_and_reaching_them_clears_the_number(lab: Lab) -> None:
    with trio.fail_after(20):
        await lab.abandoned_call("i1")
        await lab.abandoned_call("i2")
        async with lab.client() as c:
            started = await c.post(f"/callbacks/{NUMBER}/call", json={"position": "pos2"})
            assert started.status_code == 202, started.text
            attempt = started.json()
            again = await c.post(f"/callbacks/{NUMBER}/call", json={"position": "pos1"})
            assert again.status_code == 409 and "already being called back" in again.json()["error"]
        kind, (endpoint, leg, options) = lab.ari.asked[0]
        assert (kind, endpoint, leg) == ("originate", "PJSIP/ecgw-pos-pos2", attempt["id"])
        assert options["variables"]["ECGW_CALLBACK_TO"] == NUMBER and options["app_args"] == f"callback,{leg}"
        assert lab.dispatcher.board.state("pos2") == "busy"
        lab.dispatcher.sweep()  # the safety net must not free a position on a call-back
        assert lab.dispatcher.board.state("pos2") == "busy"
        chan = ev.Channel(id=leg, name="PJSIP/ecgw-pos-pos2-00000001")
        lab.callbacks.on_event(ev.StasisStart(channel=chan, args=["callback", leg]))
        await trio.sleep(0.1)
        assert ("continue", (leg, "ecgw-callback", "s")) in lab.ari.asked
        lab.callbacks.on_event(ev.Dial(peer=ev.Channel(id="peer"), caller=chan, dialstatus="RINGING"))
        lab.callbacks.on_event(ev.Dial(peer=ev.Channel(id="peer"), caller=chan, dialstatus="ANSWER"))
        lab.callbacks.on_event(ev.ChannelDestroyed(channel=chan, cause=16))
        while "callback_outcome" not in await lab.kinds("i2"):
            await trio.sleep(0.05)
        for incident_id in ("i1", "i2"):  # the first incident's callback_ended (naming the recording) may follow
            outcome = next(e for e in (await lab.store.get(incident_id)).timeline if e.kind == "callback_outcome")
            assert outcome.data["outcome"] == "answered"
            assert outcome.data["position"] == "pos2"
        assert lab.dispatcher.board.state("pos2") == "free"
        async with lab.client() as c:
            assert (await c.get("/callbacks")).json() == []


async def test_a_position_that_does_not_answer_keeps_the_caller_on_the_list(lab: Lab) -> None:
    with trio.fail_after(20):
        await lab.abandoned_call("i1")
        async with lab.client() as c:
            leg = (await c.post("/callbacks/i1/call", json={"position": "pos1"})).json()["id"]
            lab.callbacks.on_event(ev.ChannelDestroyed(channel=ev.Channel(id=leg), cause=19, cause_txt="No answer"))
            while "callback_outcome" not in await lab.kinds("i1"):
                await trio.sleep(0.05)
            listed = (await c.get("/callbacks")).json()
        assert listed[0]["last_outcome"] == "position_unanswered" and listed[0]["attempts"] == 1
        assert lab.dispatcher.board.state("pos1") == "free"
