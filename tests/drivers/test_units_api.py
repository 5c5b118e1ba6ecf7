"""The units HTTP routes served by Hypercorn on 127.0.0.1: officers, bodies, and every refusal."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio
from starlette.applications import Starlette

from gateway.incident.desk import Desk
from gateway.people.accounts import Accounts
from gateway.units.board import UnitBoard
from gateway.web.auth import Auth
from gateway.web.server import run_server
from gateway.web.units import UnitRoutes
from tests.core.test_units_board import ABAI, incident_desk, make_board, report

TOKENS = {"aigerim": "tok-dispatcher", "olga": "tok-civil-defence"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Desk, UnitBoard]]:
    accounts = Accounts(tmp_path / "accounts.sqlite3")
    accounts.adopt([("aigerim", ["dispatcher"], sha(TOKENS["aigerim"])),
                    ("olga", ["civil-defence"], sha(TOKENS["olga"]))])
    auth = Auth(accounts, local_key="k" * 64)
    async with incident_desk(tmp_path) as desk, trio.open_nursery() as nursery:
        board = make_board(tmp_path, desk)
        await nursery.start(board.run)
        bound = await nursery.start(run_server, Starlette(routes=UnitRoutes(board, auth).routes()), "127.0.0.1", 0)
        yield bound[0], desk, board
        nursery.cancel_scope.cancel()
    board.close()


def officer(url: str, name: str = "aigerim") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {TOKENS[name]}"})


async def test_dispatcher_assigns_the_proposed_unit_and_it_reports_in(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with served(tmp_path) as (url, desk, _board), officer(url) as c:
            inc = await report(desk, ABAI)
            units = (await c.get("/units")).json()
            assert [u["id"] for u in units] == ["ps101", "ps102", "ss1"]
            assert [u["id"] for u in (await c.get("/units?kind=patrol&status=free")).json()] == ["ps101", "ps102"]
            offers = (await c.get(f"/incidents/{inc.id}/proposals?kind=patrol&limit=1")).json()
            assert [p["unit"] for p in offers["units"]] == ["ps101"] and offers["units"][0]["eta_s"] > 0
            assigned = await c.post(f"/incidents/{inc.id}/assign", json={"unit": offers["units"][0]["unit"]})
            assert assigned.status_code == 200 and assigned.json()["incident"] == inc.id
            moving = await c.post("/units/ps101/status", json={"status": "en_route", "lat": 43.245, "lon": 76.925})
            assert moving.status_code == 200 and moving.json()["status"] == "en_route"
            unit = (await c.get("/units/ps101")).json()
            assert unit["lat"] == 43.245 and unit["status"] == "en_route"
            history = (await c.get("/units/ps101/history")).json()
            assert [h["status"] for h in history] == ["en_route", "assigned"] and history[0]["actor"] == "aigerim"
            incident = await desk.get(inc.id)
            assert incident.status == "en_route" and incident.units == ["ps101"]


async def test_refusals_say_why(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with served(tmp_path) as (url, desk, board), officer(url) as c, officer(url, "olga") as civil:
            inc, nowhere = await report(desk, ABAI), await report(desk)
            async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
                assert (await anonymous.get("/units")).status_code == 401
                assert (await anonymous.post(f"/incidents/{inc.id}/assign", json={"unit": "ps101"})).status_code == 401
                wrong = await anonymous.get("/units", headers={"Authorization": "Bearer guess"})
                assert wrong.status_code == 401
            assert (await civil.get("/units")).status_code == 200  # any officer may look
            refused = await civil.post(f"/incidents/{inc.id}/assign", json={"unit": "ps101"})
            assert refused.status_code == 403 and "dispatcher" in refused.json()["error"]
            assert (await civil.post("/units/ps101/status", json={"status": "unavailable"})).status_code == 403

            bad = {
                "/units/ps101/status": [b"{not json", b"[]", b'{"status": "free", "speed": 3}', b'{"lat": 43.2}',
                                        b'{"lat": "north", "lon": 1}', b'{"lat": 99.0, "lon": 76.9}', b"{}",
                                        b'{"status": "lunch"}',
                                        b'{"status": "unavailable", "force": true}',
                                        b'{"status": "unavailable", "reason": "%s"}' % (b"x" * 501)],
                f"/incidents/{inc.id}/assign": [b"", b'{"unit": 7}', b'{"unti": "ps101"}'],
            }
            for path, bodies in bad.items():
                for body in bodies:
                    answer = await c.post(path, content=body)
                    assert answer.status_code == 400, (path, body, answer.text)
            typo = await c.post("/units/ps101/status", content=b'{"status": "free", "speed": 3}')
            assert "speed" in typo.json()["error"]
            for query in ("kind=tank", "limit=0", "limit=many", "limit=51"):
                assert (await c.get(f"/incidents/{inc.id}/proposals?{query}")).status_code == 400, query
            assert (await c.get("/units?kind=tank")).status_code == 400

            assert (await c.get("/units/ps999")).status_code == 404
            assert (await c.get("/units/ps999/history")).status_code == 404
            assert (await c.post("/units/ps999/status", json={"status": "free"})).status_code == 404
            assert (await c.post(f"/incidents/{inc.id}/assign", json={"unit": "ps999"})).status_code == 404
            assert (await c.post("/incidents/KZ-nothing/assign", json={"unit": "ps101"})).status_code == 404
            assert (await c.get("/incidents/KZ-nothing/proposals")).status_code == 404

            no_place = await c.get(f"/incidents/{nowhere.id}/proposals")
            assert no_place.status_code == 409 and "no location" in no_place.json()["error"]
            assert (await c.post("/units/ps102/status", json={"status": "on_scene"})).status_code == 409
            assert (await c.post(f"/incidents/{inc.id}/assign", json={"unit": "ps101"})).status_code == 200
            twice = await c.post(f"/incidents/{nowhere.id}/assign", json={"unit": "ps101"})
            assert twice.status_code == 409 and inc.id in twice.json()["error"]
            assert (await c.post("/units/ps101/status", json={"status": "on_scene"})).status_code == 200
            illegal = await c.post("/units/ps101/status", json={"status": "unavailable"})
            assert illegal.status_code == 409 and "force" in illegal.json()["error"]
            forced = await c.post("/units/ps101/status", json={"status": "unavailable", "force": True,
                                                               "reason": "tyre burst"})
            assert forced.status_code == 200 and forced.json()["incident"] == ""
            assert board.get("ps102").status == "free"  # nothing refused changed anything
            assert (await desk.get(inc.id)).units == []
