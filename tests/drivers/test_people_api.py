"""People at the API of a running gateway (the shipped config): log in with a password set by
`gateway users`, a session that reads freely and changes only with its CSRF token, lockout, logout,
incident reads only for people and tokens, each card read in the audit trail, and security headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sim.lab import REPO, GatewayProcess, shipped_config
from tests.drivers.test_api_inputs import Api, api

PASSWORD = "a long pass phrase"


def users(a: Api, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(a.gateway.path), "users", *args],
                          input=password + "\n", capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def browser(a: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=a.gateway.url, timeout=15)


async def login(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/login", json={"name": name, "password": password, "position": "pos1"})


async def test_a_person_logs_in_reads_changes_with_csrf_and_logs_out(tmp_path: Path) -> None:
    async with api(tmp_path) as a, browser(a) as page:
        assert users(a, "reset", "marat", "--password-stdin", password=PASSWORD).returncode == 0
        assert (await page.get("/incidents")).status_code == 401
        assert (await login(page, "marat", "not the password")).status_code == 401
        me = await login(page, "marat")
        assert me.status_code == 200, me.text
        cookie = me.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        csrf = me.json()["csrf"]
        assert (me.json()["name"], me.json()["roles"], me.json()["position"]) == ("marat", ["dispatcher"], "pos1")
        assert (await page.get("/incidents")).json() == []
        forged = await page.post("/incidents", json={"note": "from another site's form"})
        assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["error"]
        made = await page.post("/incidents", json={"note": "walk-in"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        assert made.json()["timeline"][0]["actor"] == "marat"
        assert (await page.get(f"/incidents/{made.json()['id']}")).status_code == 200
        assert (await page.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
        assert (await page.get("/incidents")).status_code == 401


async def test_five_wrong_passwords_lock_and_a_disabled_person_is_out_at_once(tmp_path: Path) -> None:
    async with api(tmp_path) as a, browser(a) as page, browser(a) as other:
        users(a, "reset", "marat", "--password-stdin", password=PASSWORD)
        users(a, "reset", "saule", "--password-stdin", password=PASSWORD)
        for _ in range(4):
            assert (await login(page, "marat", "guess guess guess")).json()["error"] == "wrong name or password"
        assert "too many wrong passwords" in (await login(page, "marat", "guess guess guess")).json()["error"]
        assert "too many wrong passwords" in (await login(page, "marat")).json()["error"]
        assert (await login(other, "saule")).status_code == 200
        assert (await other.get("/incidents")).status_code == 200
        assert users(a, "disable", "saule").returncode == 0  # from the host, while the gateway runs
        assert (await other.get("/incidents")).status_code == 401
        listed = users(a, "list").stdout
        assert "marat" in listed and "locked" in listed and "disabled" in listed


async def test_reads_of_incidents_are_audited_and_the_trail_is_for_supervisors(tmp_path: Path) -> None:
    async with api(tmp_path) as a, a.as_("marat") as dispatcher, a.as_("saule") as supervisor, \
            a.as_("aigerim") as officer:
        for path in ("/incidents", "/events"):  # a civil-defence officer has no business with callers' data
            assert (await officer.get(path)).status_code == 403, path
        assert (await dispatcher.get("/recipients")).status_code == 403  # nor a dispatcher with residents'

        incident_id = (await dispatcher.post("/incidents", json={"note": "x"})).json()["id"]
        assert (await dispatcher.get(f"/incidents/{incident_id}")).status_code == 200
        assert (await dispatcher.get("/audit")).status_code == 403
        trail = (await supervisor.get("/audit")).json()
        assert {"who": "marat", "via": "local", "action": "incident_read", "target": incident_id}.items() <= \
            next(e for e in trail if e["action"] == "incident_read").items()
        assert (await supervisor.get("/recipients?limit=5")).status_code == 200
        trail = (await supervisor.get("/audit")).json()
        assert any(e["action"] == "recipients_listed" and e["who"] == "saule" for e in trail)
        exported = await supervisor.get("/audit?format=csv")
        assert exported.headers["content-type"].startswith("text/csv")
        assert exported.text.splitlines()[0] == "seq,wall,who,via,action,target,detail"
        assert f"marat,local,incident_read,{incident_id}" in exported.text
        one = (await supervisor.get(f"/audit?target={incident_id}&order=newest")).json()
        assert [(e["who"], e["action"]) for e in one] == [("marat", "incident_read")]
        mine = (await supervisor.get("/audit?who=saule&order=newest")).json()
        assert mine and all(e["who"] == "saule" for e in mine)
        assert [e["seq"] for e in mine] == sorted((e["seq"] for e in mine), reverse=True)


async def test_every_answer_carries_the_security_headers_and_health_is_open_on_loopback(tmp_path: Path) -> None:
    async with api(tmp_path) as a, browser(a) as anonymous:
        for path in ("/health", "/incidents", "/openapi.json"):
            headers = (await anonymous.get(path)).headers
            assert "script-src 'self'" in headers["content-security-policy"], path
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert (headers["x-content-type-options"], headers["referrer-policy"]) == ("nosniff", "no-referrer")
        assert (await anonymous.get("/health")).status_code in (200, 503)  # answered, not 401


async def test_over_https_the_session_cookie_is_secure_and_plain_http_is_not_served(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    config = shipped_config(tmp_path)
    config.write_text(config.read_text().replace("[http]\n", f'[http]\ncertfile = "{cert}"\nkeyfile = "{key}"\n', 1))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", need_ari=False)
    await gateway.start()
    try:
        a = Api(gateway, tmp_path)
        assert users(a, "reset", "marat", "--password-stdin", password=PASSWORD).returncode == 0
        async with httpx.AsyncClient(base_url=gateway.url, verify=gateway.verify, timeout=15) as page:
            me = await login(page, "marat")
            assert me.status_code == 200 and "secure" in me.headers["set-cookie"].lower()
            assert (await page.get("/incidents")).status_code == 200
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(gateway.url.replace("https://", "http://") + "/incidents")
    finally:
        await gateway.stop()
