"""A throwaway PostgreSQL on loopback for tests, drills and benchmarks (issue 14: the store on PostgreSQL).

``pg_server()`` runs ``initdb`` in a temporary directory of its own, as the ``postgres`` system user when
we are root (Debian's package creates it; PostgreSQL refuses to run as root), and starts the server on a
free 127.0.0.1 port with its unix socket in that directory. Durability is as in production (fsync,
full_page_writes and synchronous_commit on); only what a throwaway cluster does not need is cut (no
fsync of the freshly made data directory, no locale). A database and a password role for the gateway
are created; ``PgServer.dsn()`` is the libpq URI the gateway would be given.

``pg_pair()`` adds a streaming standby (``pg_basebackup -R``) on another free port, in another temporary
directory, named in the primary's ``synchronous_standby_names``: a commit on the primary returns only
once the standby has the WAL on disk. ``kill()`` SIGKILLs a postmaster (a crashed node), ``promote()``
makes the standby the primary, and ``multi_host_dsn`` is the URI that finds whichever is writable.

Every server is stopped (``pg_ctl stop -m fast``, then SIGKILL of every process still working in its
directory) and its directory removed when the block exits, whatever happened inside it. Trio code uses
``open_pg_server``/``open_pg_pair``: the same, with the blocking steps on a worker thread.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import trio

from gateway.errors import DrillError
from sim.sipp import free_port

OS_USER = "postgres"  # Debian's package creates this system user
SUPERUSER = "postgres"  # the cluster's own superuser: trusted on the unix socket only
USER = "ecgw"  # the gateway's role (a password, scram-sha-256) and database
REPLICATOR = "replicator"
STANDBY_NAME = "standby1"
START_TIMEOUT_S = 30

SETTINGS = """
# sim/pg.py: a throwaway cluster. Durable like production; small and quiet otherwise.
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_senders = 4
wal_keep_size = '64MB'
hot_standby = on
max_connections = 150
shared_buffers = '64MB'
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""

HBA = """
local   all          {superuser}                   trust
local   all          all                           scram-sha-256
host    all          all          127.0.0.1/32     scram-sha-256
host    replication  {replicator} 127.0.0.1/32     scram-sha-256
"""


def bindir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and friends are: ``pg_config --bindir``, else the newest
    /usr/lib/postgresql/*/bin. Raises DrillError if PostgreSQL is not installed."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for path in candidates:
        if path and (Path(path) / "initdb").exists():
            return Path(path)
    raise DrillError("PostgreSQL is not installed (Debian package postgresql): no initdb found")


def _owner() -> tuple[int, int] | None:
    """The uid/gid the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise DrillError(f"running as root needs the {OS_USER!r} system user (Debian package postgresql)") from None
    return entry.pw_uid, entry.pw_gid


def _run(command: Sequence[str | Path], cwd: Path, timeout: float = 60) -> str:
    """Run a PostgreSQL tool as the server's owner; its output. Raises DrillError with what it said."""
    argv = [str(part) for part in command]
    if _owner() is not None:
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DrillError(f"{Path(str(command[0])).name}: no answer in {timeout} s") from exc
    if done.returncode != 0:
        raise DrillError(f"{' '.join(argv[:6])} ... exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def _private_dir(prefix: str) -> Path:
    """A fresh temporary directory the server's owner can use (and nobody else)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    owner = _owner()
    if owner is not None:
        os.chown(base, *owner)
    return base


@dataclass
class PgServer:
    """One running PostgreSQL instance in its own temporary directory ``base`` (data, socket, log)."""

    base: Path
    port: int
    password: str
    bin: Path
    database: str = USER
    user: str = USER
    replicator_password: str = ""
    pid: int | None = None  # the postmaster
    stopped: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sockets(self) -> Path:
        return self.base

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def dsn(self, *, unix: bool = False) -> str:
        """The gateway's libpq URI: loopback TCP, or (``unix``) the server's unix socket."""
        if unix:
            return (f"postgresql://{self.user}:{self.password}@/{self.database}"
                    f"?host={quote(str(self.sockets), safe='')}&port={self.port}")
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, *statements: str, database: str = "postgres") -> str:
        """Run SQL statements, each in its own transaction, as the cluster's superuser over the unix
        socket; psql's unaligned output. Raises DrillError with the server's complaint."""
        each = [arg for sql in statements for arg in ("-c", sql)]
        return _run([self.bin / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sockets,
                     "-p", str(self.port), "-U", SUPERUSER, "-d", database, *each], self.base).strip()

    def kill(self) -> None:
        """SIGKILL the postmaster, as in a crash of the node (its backends notice and exit)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone([self.pid], 10)

    def halt(self) -> None:
        """Stop the server at once (immediate shutdown, as a crash would) keeping its data: ``resume`` starts it."""
        _run([self.bin / "pg_ctl", "stop", "-m", "immediate", "-w", "-t", "10", "-D", self.data], self.base, 20)
        self.pid = None

    def resume(self) -> None:
        """Start a halted server again on its port (crash recovery replays its WAL)."""
        _start(self)

    def promote(self) -> None:
        """Make a standby the primary; returns once it accepts writes."""
        _run([self.bin / "pg_ctl", "promote", "-w", "-t", str(START_TIMEOUT_S), "-D", self.data], self.base)

    def processes(self) -> list[int]:
        """Every process working in this server's directory (postmaster and backends chdir to the data)."""
        return processes_in(self.base)

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL of whatever is left) and remove its directory."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.pid is not None and _alive(self.pid):
                try:
                    _run([self.bin / "pg_ctl", "stop", "-m", "fast", "-w", "-t", "10", "-D", self.data], self.base, 20)
                except DrillError:
                    pass  # killed below
            left = self.processes()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(left, 10)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def processes_in(directory: Path) -> list[int]:
    """Pids of processes whose working directory is ``directory`` or below it (also once it was removed)."""
    prefix, found = str(directory), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith(prefix + "/"):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped running; its parent reaps it


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise DrillError(f"PostgreSQL processes {[p for p in pids if _alive(p)]} still running after SIGKILL")
        time.sleep(0.02)


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().splitlines()[0])


def _start(server: PgServer) -> None:
    """Start the server in ``server.data`` on ``server.port`` and wait until it accepts connections."""
    with open(server.data / "postgresql.conf", "a") as conf:  # later lines win over the copied primary's
        conf.write(f"\nport = {server.port}\nunix_socket_directories = '{server.sockets}'\n")
    try:
        _run([server.bin / "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", server.data,
              "-l", server.log], server.base, START_TIMEOUT_S + 10)
    except DrillError as exc:
        log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
        raise DrillError(f"{exc}\nserver log:\n{log}") from exc
    server.pid = _postmaster_pid(server.data)


def _init_primary(bin: Path) -> PgServer:
    base = _private_dir("ecgw-pg-")
    server = PgServer(base, free_port(socket.SOCK_STREAM), secrets.token_hex(12), bin,
                      replicator_password=secrets.token_hex(12))
    try:
        _run([bin / "initdb", "-D", server.data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale",
              "--no-sync"], base)
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS)
        (server.data / "pg_hba.conf").write_text(HBA.format(superuser=SUPERUSER, replicator=REPLICATOR))
        _start(server)
        server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{server.password}'",
                    f"CREATE ROLE {REPLICATOR} LOGIN REPLICATION PASSWORD '{server.replicator_password}'",
                    f"CREATE DATABASE {USER} OWNER {USER}")
    except BaseException:
        server.stop()
        raise
    return server


def _init_standby(primary: PgServer, name: str) -> PgServer:
    base = _private_dir("ecgw-pg-standby-")
    standby = PgServer(base, free_port(socket.SOCK_STREAM), primary.password, primary.bin,
                       replicator_password=primary.replicator_password)
    conninfo = (f"host=127.0.0.1 port={primary.port} user={REPLICATOR} password={primary.replicator_password} "
                f"application_name={name}")
    try:
        _run([primary.bin / "pg_basebackup", "-D", standby.data, "-R", "-X", "stream", "-c", "fast", "--no-sync",
              "-d", conninfo], base, 120)  # -R writes the conninfo, application_name included
        _start(standby)
    except BaseException:
        standby.stop()
        raise
    return standby


def _require_sync(primary: PgServer, name: str) -> None:
    """Name the standby in ``synchronous_standby_names`` and wait until the primary reports it ``sync``.
    Set only now (not before the backup): the standby must not inherit it, or once promoted alone every
    commit on it would wait for a standby that does not exist."""
    primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({name})'", "SELECT pg_reload_conf()")
    deadline = time.monotonic() + START_TIMEOUT_S
    query = f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'"
    while primary.psql(query) != "sync":
        if time.monotonic() > deadline:
            raise DrillError(f"standby {name} never became synchronous; see {primary.log}")
        time.sleep(0.05)


def start_pair(name: str = STANDBY_NAME) -> tuple[PgServer, PgServer]:
    """A primary and its synchronous streaming standby, both running. The caller stops both."""
    primary = _init_primary(bindir())
    try:
        standby = _init_standby(primary, name)
        try:
            _require_sync(primary, name)
        except BaseException:
            standby.stop()
            raise
    except BaseException:
        primary.stop()
        raise
    return primary, standby


def multi_host_dsn(servers: Sequence[PgServer], target: str = "read-write", connect_timeout_s: int = 2) -> str:
    """``postgresql://u:p@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write``: libpq tries each
    host in turn and keeps the first that is ``target`` (a dead host costs a refused connect)."""
    first = servers[0]
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return (f"postgresql://{first.user}:{first.password}@{hosts}/{first.database}"
            f"?target_session_attrs={target}&connect_timeout={connect_timeout_s}")


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """A running primary until the block exits; then stopped and removed. Raises DrillError."""
    server = _init_primary(bindir())
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def pg_pair(name: str = STANDBY_NAME) -> Iterator[tuple[PgServer, PgServer]]:
    """A primary and its synchronous standby until the block exits; then both stopped and removed."""
    primary, standby = start_pair(name)
    try:
        yield primary, standby
    finally:
        try:
            standby.stop()
        finally:
            primary.stop()


@asynccontextmanager
async def open_pg_server() -> AsyncIterator[PgServer]:
    """``pg_server`` for Trio: starts on a worker thread (not abandoned if cancelled, so nothing leaks)."""
    server = await trio.to_thread.run_sync(_init_primary, bindir())
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.stop)


@asynccontextmanager
async def open_pg_pair(name: str = STANDBY_NAME) -> AsyncIterator[tuple[PgServer, PgServer]]:
    """``pg_pair`` for Trio (see ``open_pg_server``)."""
    primary, standby = await trio.to_thread.run_sync(start_pair, name)
    try:
        yield primary, standby
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(standby.stop)
            await trio.to_thread.run_sync(primary.stop)


async def serve(with_standby: bool) -> int:
    """``gateway-sim pg``: a throwaway server (and its standby) for a drill by hand, until Ctrl-C or SIGTERM;
    then stopped and removed."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        if with_standby:
            async with open_pg_pair() as (primary, standby):
                print(f"primary  {primary.dsn()}  (socket: {primary.dsn(unix=True)})")
                print(f"standby  {standby.dsn()}  (synchronous; data in {standby.base})")
                print(f"failover {multi_host_dsn([primary, standby])}")
                print("Ctrl-C stops both", flush=True)
                async for _ in received:
                    break
        else:
            async with open_pg_server() as server:
                print(f"{server.dsn()}  (socket: {server.dsn(unix=True)}; data in {server.base})")
                print("Ctrl-C stops it", flush=True)
                async for _ in received:
                    break
    return 0
