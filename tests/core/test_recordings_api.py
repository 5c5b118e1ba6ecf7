"""The recordings API in process (Starlette through httpx's ASGI transport, real SQLite): who may list and
listen (401 without anyone, 403 for the wrong role), every read in the audit trail, Range, legal holds for
supervisors only and respected by the purge."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.incident.store import AsyncStore, SqliteStore
from gateway.people.accounts import token_digest
from gateway.web.app import build_app
from gateway.web.auth import Auth
from gateway.web.recordings import RecordingRoutes
from tests.core.test_recordings import Lab

OLD = "20260801-000000-1.1"
PEOPLE = {"marat": "dispatcher", "saule": "supervisor", "aigerim": "civil-defence"}


class Api:
    def __init__(self, lab: Lab, client: httpx.AsyncClient) -> None:
        self.lab = lab
        self.client = client

    async def get(self, path: str, who: str = "", **headers: str) -> httpx.Response:
        return await self.client.get(path, headers=_bearer(who) | headers)

    async def send(self, method: str, path: str, who: str, body: object = None) -> httpx.Response:
        return await self.client.request(method, path, headers=_bearer(who), json=body)


def _bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who}-token"} if who else {}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = AsyncStore(SqliteStore(tmp_path / "gateway.sqlite3"))
    lab = Lab(tmp_path, store)
    lab.accounts.adopt([(name, [role], token_digest(f"{name}-token")) for name, role in PEOPLE.items()])
    app = build_app(RecordingRoutes(lab.recordings, Auth(lab.accounts, "k" * 64)).routes())
    await lab.call(OLD, seconds=20.0, age_days=100)
    await lab.recordings.sweep(min_age_s=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield Api(lab, client)


async def test_nobody_and_the_wrong_role_are_refused(api: Api) -> None:
    for path in (f"/incidents/{OLD}/recordings", f"/recordings/{OLD}"):
        assert (await api.get(path)).status_code == 401, path
        refused = await api.get(path, "aigerim")
        assert refused.status_code == 403 and "aigerim" in refused.json()["error"], path
    assert "recording_read" not in [e.action for e in api.lab.accounts.audit_trail()]


async def test_a_dispatcher_lists_and_listens_and_each_read_is_audited(api: Api) -> None:
    listing = await api.get(f"/incidents/{OLD}/recordings", "marat")
    assert listing.status_code == 200
    [view] = listing.json()["recordings"]
    assert (view["state"], view["recording"]["duration_s"], listing.json()["hold"]) == ("ok", 20.0, None)
    data = (api.lab.dir / f"{OLD}.WAV").read_bytes()
    whole = await api.get(f"/recordings/{OLD}", "marat")
    assert (whole.status_code, whole.headers["content-type"], whole.content) == (200, "audio/wav", data)
    assert whole.headers["accept-ranges"] == "bytes"
    part = await api.get(f"/recordings/{OLD}", "saule", Range="bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    trail = [(e.who, e.via, e.action, e.target, e.detail) for e in api.lab.accounts.audit_trail()]
    assert trail[-3:] == [("marat", "token", "recordings_listed", OLD, ""),
                          ("marat", "token", "recording_read", OLD, f"incident {OLD}"),
                          ("saule", "token", "recording_read", OLD, f"incident {OLD}; bytes=100-199")]
    assert (await api.get("/recordings/nope", "marat")).status_code == 404
    assert (await api.get("/recordings/..%2F..%2Fetc%2Fpasswd", "marat")).status_code == 404


async def test_a_browser_gets_the_recording_as_pcm_and_the_stored_file_stays_gsm(api: Api) -> None:
    played = await api.get(f"/recordings/{OLD}?play=pcm", "marat")
    assert (played.status_code, played.headers["content-type"]) == (200, "audio/wav"), played.text[:200]
    fmt_tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", played.content[20:36])
    assert (played.content[:4], fmt_tag, channels, rate, bits) == (b"RIFF", 1, 1, 8000, 16)  # PCM
    assert len(played.content) >= 20 * 8000 * 2  # the whole 20 s
    assert (api.lab.dir / f"{OLD}.WAV").read_bytes()[20:22] == struct.pack("<H", 0x31)  # GSM as written
    assert api.lab.accounts.audit_trail()[-1].action == "recording_read"
    assert (await api.get(f"/recordings/{OLD}?play=pcm", "aigerim")).status_code == 403


async def test_a_legal_hold_is_for_supervisors_and_the_purge_respects_it(api: Api) -> None:
    body = {"reason": "prosecutor's request 77/2026"}
    assert (await api.send("POST", f"/incidents/{OLD}/hold", "", body)).status_code == 401
    assert (await api.send("POST", f"/incidents/{OLD}/hold", "marat", body)).status_code == 403
    assert (await api.send("POST", f"/incidents/{OLD}/hold", "saule", {"reason": ""})).status_code == 400
    assert (await api.send("POST", "/incidents/20260101-000000-0.0/hold", "saule", body)).status_code == 404
    held = await api.send("POST", f"/incidents/{OLD}/hold", "saule", body)
    assert held.status_code == 200 and held.json()["actor"] == "saule"
    assert (await api.lab.recordings.purge()).purged == []
    assert (await api.get(f"/incidents/{OLD}/recordings", "marat")).json()["hold"]["reason"] == body["reason"]
    retention = await api.get("/recordings/retention", "saule")
    assert retention.json()["last_purge"]["kept_on_hold"] == 1
    assert (await api.get("/recordings/retention", "marat")).status_code == 403
    assert (await api.send("DELETE", f"/incidents/{OLD}/hold", "saule")).status_code == 204
    assert (await api.lab.recordings.purge()).purged == [OLD]
    gone = await api.get(f"/recordings/{OLD}", "marat")
    assert gone.status_code == 404 and "purged" in gone.json()["error"]
    kinds = [e.kind for e in (await api.lab.store.get(OLD)).timeline]
    assert kinds[-3:] == ["legal_hold_set", "legal_hold_released", "recording_purged"]
