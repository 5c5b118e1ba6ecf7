"""Real tier, secrets and the host: with the shipped default secrets, `gateway asterisk up` and `gateway run`
agree on generated ones and ARI and AMI refuse the defaults; Asterisk runs as an id no host account has,
and none of its files, nor the gateway's stores, is readable by other accounts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from gateway import settings as config
from gateway.asterisk import sandbox
from gateway.asterisk.sandbox_ids import used_ids
from sim.lab import REPO, GatewayProcess, start_asterisk, stop_asterisk, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the Asterisk sandbox needs root (chroot)")


def with_shipped_secrets(path: Path) -> config.GatewayConfig:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"ari-test-secret"', '"ari-secret-change-me"')
                    .replace('"ami-test-secret"', '"ami-secret-change-me"'), encoding="utf-8")
    cfg = config.load(path)
    assert (cfg.asterisk.ari_password, cfg.asterisk.ami_password) == ("ari-secret-change-me", "ami-secret-change-me")
    return cfg


async def ami_login(port: int, secret: str) -> str:
    """AMI's answer to a login, e.g. 'Response: Success' or 'Response: Error'."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"Action: Login\r\nUsername: ecgw\r\nSecret: {secret}\r\n\r\n".encode())
        seen = b""
        with trio.fail_after(10):
            while b"Response:" not in seen or not seen.endswith(b"\r\n\r\n"):
                seen += await stream.receive_some()
    return next(line for line in seen.decode().splitlines() if line.startswith("Response:"))


def not_for_others(top: Path) -> list[str]:
    """Files below ``top`` that another account could read, or that a host account (not root) owns."""
    host_uids, host_gids = used_ids(Path("/etc/passwd").read_text(), Path("/etc/group").read_text())
    found = []
    for path in [top, *top.rglob("*")]:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            continue
        if st.st_mode & 0o004 or (st.st_uid in host_uids - {0}) or (st.st_gid in host_gids - {0}):
            found.append(f"{path} {stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}")
    return found


async def test_shipped_secrets_are_replaced_and_agree(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    path = write_config(tmp_path / "lab")
    cfg = with_shipped_secrets(path)
    box = sandbox.locate(cfg)
    gateway = GatewayProcess(path, tmp_path / "gateway.log")
    try:
        up = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(path), "asterisk", "up"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
        assert up.returncode == 0, up.stderr
        await gateway.start()  # ready once ARI has registered the app: `run` has the secret `up` rendered
        ari, ami = ((tmp_path / "lab" / f"{s}.secret").read_text().strip() for s in ("ari", "ami"))
        assert stat.S_IMODE((tmp_path / "lab" / "ari.secret").stat().st_mode) == 0o600
        url = f"http://127.0.0.1:{cfg.asterisk.http_port}/ari/asterisk/info"
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(url, auth=("ecgw", "ari-secret-change-me"))).status_code == 401
            assert (await client.get(url, auth=("ecgw", ari))).status_code == 200
            with trio.fail_after(20):  # AMI too: the monitor logs in with the generated secret
                while not (await client.get(gateway.url + "/health")).json()["ami_connected"]:
                    await trio.sleep(0.2)
        assert await ami_login(cfg.asterisk.ami_port, "ami-secret-change-me") == "Response: Error"
        assert await ami_login(cfg.asterisk.ami_port, ami) == "Response: Success"
        running = sandbox.pid(box)
        assert running is not None
        uid = int(next(line.split()[1] for line in Path(f"/proc/{running}/status").read_text().splitlines()
                       if line.startswith("Uid:")))
        assert uid not in used_ids(Path("/etc/passwd").read_text(), Path("/etc/group").read_text())[0]
        assert not_for_others(box.host_dir / "etc") + not_for_others(box.host_dir / "log") == []
        assert not_for_others(box.host_dir / "lib") + not_for_others(box.host_dir / "spool") == []
    finally:
        await gateway.stop()
        sandbox.remove_instance(cfg)
    stores = sorted(p.name for p in (tmp_path / "lab").iterdir() if p.suffix in (".sqlite3", ".db", ".key"))
    assert stores and all(stat.S_IMODE((tmp_path / "lab" / n).stat().st_mode) == 0o600 for n in stores), stores


def test_an_instance_running_as_an_older_uid_is_restarted_at_up(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    instance = start_asterisk(write_config(tmp_path))
    try:
        box = sandbox.locate(instance.cfg)
        before = sandbox.pid(box)
        sandbox.up(instance.cfg)  # same uid: reloaded in place
        assert sandbox.pid(box) == before
        monkeypatch.setattr(sandbox, "_running_uid", lambda process: 101)  # as if started before renumbering
        sandbox.up(instance.cfg)
        after = sandbox.pid(box)
        assert after is not None and after != before
        assert "Asterisk" in instance.cli("core show version")
    finally:
        stop_asterisk(instance)
