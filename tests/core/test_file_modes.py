"""Stores and logs hold personal data: created 0600/0640, and older 0644 ones are tightened."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from gateway.files import private_store, withhold_from_others
from gateway.incident.store import SqliteStore
from gateway.settings.base import PROJECT
from gateway.warning.outbox import Outbox
from tests.core.test_store import incident


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_fresh_store_and_its_wal_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # what a shell usually gives: files 0644
    try:
        store = SqliteStore(tmp_path / "var" / "gateway.sqlite3")
        store.create(incident("a"))
    finally:
        os.umask(old)
    files = sorted(p.name for p in (tmp_path / "var").iterdir())
    assert files == ["gateway.sqlite3", "gateway.sqlite3-shm", "gateway.sqlite3-wal"]
    assert {name: mode(tmp_path / "var" / name) for name in files} == dict.fromkeys(files, 0o600)


def test_an_existing_0644_store_becomes_0600(tmp_path: Path) -> None:
    path = tmp_path / "warnings.sqlite3"
    wal = path.with_name(path.name + "-wal")
    older = sqlite3.connect(path)  # as an older gateway left it: 0644, its WAL still there
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE t (x)")
    for found in (path, wal):
        found.chmod(0o644)
    Outbox(path)  # the warnings store (recipients' personal data) opens through the same opener
    assert (mode(path), mode(wal)) == (0o600, 0o600)
    older.close()


def test_private_store_creates_nothing_but_the_file(tmp_path: Path) -> None:
    private_store(tmp_path / "units.db")
    assert [(p.name, mode(p), p.stat().st_size) for p in tmp_path.iterdir()] == [("units.db", 0o600, 0)]


def test_logs_are_withheld_from_other_accounts(tmp_path: Path) -> None:
    log = tmp_path / "log"
    (log / "cdr-csv").mkdir(parents=True, mode=0o755)
    (log / "messages.log").write_text("+77011234567 called 112\n")
    (log / "messages.log").chmod(0o644)
    (log / "cdr-csv" / "Master.csv").write_text("")
    (log / "cdr-csv" / "Master.csv").chmod(0o666)
    (log / "private").write_text("")
    (log / "private").chmod(0o600)
    outside = tmp_path / "sounds.wav"
    outside.write_text("")
    outside.chmod(0o644)
    (log / "link").symlink_to(outside)
    withhold_from_others(log)
    assert {str(p.relative_to(tmp_path)): mode(p) for p in [log, *log.rglob("*")] if not p.is_symlink()} == {
        "log": 0o750, "log/cdr-csv": 0o750, "log/messages.log": 0o640, "log/cdr-csv/Master.csv": 0o660,
        "log/private": 0o600}
    assert mode(outside) == 0o644  # a link is not followed


def test_store_commands_run_with_umask_027(tmp_path: Path) -> None:
    text = (PROJECT / "config" / "gateway.toml").read_text(encoding="utf-8")
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace('path = "var/gateway.sqlite3"', f'path = "{tmp_path}/var/gateway.sqlite3"'))
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), "incidents", "list"],
                         cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (mode(tmp_path / "var"), mode(tmp_path / "var" / "gateway.sqlite3")) == (0o750, 0o600)
