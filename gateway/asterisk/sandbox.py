"""Provision, start and stop a real Asterisk for the gateway.

A system Asterisk is used when installed; otherwise a Debian-sid chroot holding the ``asterisk``
package is built once with mmdebstrap and reused. Each *instance* lives in its own directory
(config, run, log, spool), so tests can run their own Asterisk on free ports next to the main one.
This is blocking code for the CLI and test fixtures, not for the Trio service.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.asterisk import sandbox_ids
from gateway.asterisk.dialplan import CEL_DIR, render_all
from gateway.errors import AsteriskError
from gateway.files import UMASK, withhold_from_others
from gateway.settings import GatewayConfig

log = logging.getLogger(__name__)
PACKAGES = "asterisk,asterisk-modules,asterisk-core-sounds-en,ca-certificates"
APT_SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
NEW_MODULES = ("cel_custom.so",)  # once `noload` in dialplans/modules.conf: see _load_new_modules


@dataclass(frozen=True)
class Sandbox:
    """Where one Asterisk instance lives. ``root`` is ``/`` for a system Asterisk."""

    root: Path
    instance: str

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    @property
    def inside_dir(self) -> str:
        """The instance directory as Asterisk sees it."""
        return f"/srv/ecgw/{self.instance}" if self.chrooted else str(self.host_dir)

    @property
    def host_dir(self) -> Path:
        if self.chrooted:
            return self.root / "srv" / "ecgw" / self.instance
        return Path("/var/lib/ecgw/instances") / self.instance

    @property
    def conf(self) -> str:
        return f"{self.inside_dir}/etc/asterisk.conf"

    def command(self, *args: str) -> list[str]:
        """An ``asterisk`` command line for this instance, wrapped in chroot when sandboxed."""
        base = ["asterisk", "-C", self.conf, *args]
        return ["chroot", str(self.root), *base] if self.chrooted else base


def locate(cfg: GatewayConfig) -> Sandbox:
    """Pick the system Asterisk or the sandbox according to ``asterisk.mode``."""
    mode = cfg.asterisk.mode
    system = shutil.which("asterisk")
    if mode == "system" or (mode == "auto" and system):
        if not system:
            raise AsteriskError("asterisk.mode is 'system' but no asterisk binary is installed")
        return Sandbox(Path("/"), cfg.asterisk.instance)
    return Sandbox(Path(cfg.asterisk.sandbox_dir), cfg.asterisk.instance)


def debian_mirror(sources: list[Path] = APT_SOURCES) -> str:
    """The machine's own Debian mirror, read from its apt sources (never hard-coded)."""
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.suffix == ".sources":
            found = _mirror_from_deb822(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            found = _mirror_from_one_line(text)
        else:
            continue
        if found:
            return found
    raise AsteriskError("no Debian mirror found in the machine's apt sources")


def _is_debian_archive(uri: str) -> bool:
    return uri.rstrip("/").endswith("/debian")


def _mirror_from_deb822(text: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes").strip().lower() == "no":
            continue
        for uri in fields.get("URIs", "").split():
            if _is_debian_archive(uri):
                return uri.rstrip("/")
    return None


def _mirror_from_one_line(text: str) -> str | None:
    for line in text.splitlines():
        parts = re.sub(r"\[[^\]]*\]", "", line).split()
        if len(parts) >= 3 and parts[0] == "deb" and _is_debian_archive(parts[1]):
            return parts[1].rstrip("/")
    return None


def build_chroot(root: Path) -> None:
    """Build the Debian-sid chroot with Asterisk once; an existing complete one is reused."""
    if (root / "usr" / "sbin" / "asterisk").exists() and (root / ".ecgw-complete").exists():
        return
    if not shutil.which("mmdebstrap"):
        raise AsteriskError("mmdebstrap is not installed (apt-get install mmdebstrap); it builds the sandbox")
    mirror = debian_mirror()
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mmdebstrap", "--variant=apt", "--aptopt=Acquire::Check-Valid-Until \"false\"",
        f"--include={PACKAGES}", "sid", str(partial), f"deb {mirror} sid main",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AsteriskError(f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-2000:]}")
    (partial / ".ecgw-complete").write_text(mirror + "\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)


def write_hosts(root: Path) -> None:
    # Measured: without the machine's hostname here PJSIP stalls ~5 s on DNS per call under load.
    name = socket.gethostname()
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost {name}\n::1 localhost ip6-localhost\n")


def module_dir(root: Path) -> str:
    for found in sorted(root.glob("usr/lib*/**/asterisk/modules/app_stasis.so")):
        return "/" + str(found.parent.relative_to(root))
    raise AsteriskError(f"no Asterisk modules (app_stasis.so) under {root}")


def _asterisk_ids(root: Path) -> tuple[int, int]:
    return sandbox_ids.account_ids((root / "etc" / "passwd").read_text())


def install_config(cfg: GatewayConfig, box: Sandbox) -> None:
    """Render ``dialplans/`` into the instance's configuration directory."""
    files = render_all(cfg, box.inside_dir, module_dir(box.root), "/usr/share/asterisk")
    uid, gid = _asterisk_ids(box.root)
    # spool/<alarm>: AlarmReceiver writes there even while the gateway is down (then nothing is lost)
    # <recordings.dir>: MixMonitor writes every emergency call there (the gateway indexes and purges them)
    # CEL_DIR: cel_custom logs every call's events there and creates no directory itself (the gateway
    # reads them to register the calls the fallback dialplan served while it was down)
    for sub in ("etc", "run", "log", "spool", "lib", f"spool/{cfg.alarm.spool_subdir}", cfg.recordings.dir,
                CEL_DIR):
        path = box.host_dir / sub
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
    os.chown(box.host_dir, uid, gid)
    for name, text in files.items():
        _write_config(box.host_dir / "etc" / name, text, uid, gid)
    # Asterisk's logs, database and spool hold callers' numbers and locations: Asterisk and root only
    # (an instance set up before Asterisk ran with UMASK has them 0644). sounds/ stays readable.
    for sub in ("etc", "run", "log", "spool", "lib", cfg.recordings.dir):
        adopt(box.host_dir / sub, uid, gid)
        withhold_from_others(box.host_dir / sub)
    box.host_dir.chmod(0o750)


def adopt(top: Path, uid: int, gid: int) -> None:
    """What Asterisk left in its instance directory under an older uid (before the sandbox's account
    was renumbered) becomes its own again; root's files stay root's."""
    for directory, _, names in os.walk(top):
        for path in (directory, *(os.path.join(directory, n) for n in names)):
            st = os.lstat(path)
            sandbox_ids.hand_over(path, {st.st_uid: uid} if st.st_uid not in (0, uid) else {},
                                  {st.st_gid: gid} if st.st_gid not in (0, gid) else {})


def _write_config(target: Path, text: str, uid: int, gid: int) -> None:
    """Write a rendered config (ari.conf and manager.conf hold secrets) 0640, never readable by others
    even for a moment."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o640)
        os.fchown(fd, uid, gid)
        out.write(text)


def pid(box: Sandbox) -> int | None:
    """PID of the running instance, or None."""
    try:
        value = int((box.host_dir / "run" / "asterisk.pid").read_text().strip())
        os.kill(value, 0)
    except (OSError, ValueError):
        return None
    return value


def cli(box: Sandbox, command: str, timeout: float = 15.0) -> str:
    """Run one Asterisk CLI command on the running instance and return its output."""
    try:
        result = subprocess.run(
            box.command("-rx", command), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AsteriskError(f"asterisk CLI {command!r} timed out after {timeout} s") from exc
    if result.returncode != 0:
        raise AsteriskError(f"asterisk CLI {command!r} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def prepare(cfg: GatewayConfig) -> Sandbox:
    """Build the sandbox if needed (no instance started)."""
    box = locate(cfg)
    if box.chrooted:
        build_chroot(box.root)
        sandbox_ids.settle(box.root, skip=_running_instances(box.root))
        write_hosts(box.root)
        withhold_from_others(box.root / "var" / "log" / "asterisk")  # the package's own; instances log in theirs
    return box


def _running_instances(root: Path) -> list[Path]:
    instances = root / "srv" / "ecgw"
    found = sorted(instances.iterdir()) if instances.is_dir() else []
    return [d for d in found if d.is_dir() and pid(Sandbox(root, d.name)) is not None]


def _running_uid(process: int) -> int | None:
    """The real uid ``process`` runs as (None once it is gone)."""
    try:
        status = Path(f"/proc/{process}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:")), None)


def up(cfg: GatewayConfig) -> Sandbox:
    """Provision (if needed), configure and start Asterisk; return once it is fully booted."""
    box = prepare(cfg)
    running = pid(box)
    if running is not None and _running_uid(running) not in (_asterisk_ids(box.root)[0], None):
        log.warning("Asterisk instance %s runs as a uid the sandbox's account no longer has: restarting it",
                    box.instance)
        down(cfg)  # started before the account was renumbered: the new configs are not its to read
    install_config(cfg, box)
    if pid(box) is not None:
        cli(box, "core reload")
        _load_new_modules(box)
        return box
    console = os.open(box.host_dir / "log" / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    subprocess.Popen(
        box.command("-f", "-U", "asterisk", "-G", "asterisk"),
        stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True, umask=UMASK,
    )
    os.close(console)
    _wait_booted(box, cfg.asterisk.boot_timeout_s)
    return box


def _load_new_modules(box: Sandbox) -> None:
    """Modules ``dialplans/modules.conf`` once kept out, loaded into an instance already running (a reload
    reads modules.conf but loads nothing new): cel_custom writes the CEL log the gateway registers fallback
    calls from."""
    for name in NEW_MODULES:
        if re.search(r"^0 modules loaded", cli(box, f"module show like {name.removesuffix('.so')}"), re.M):
            log.warning("Asterisk instance %s: loading %s (kept out of it before)", box.instance, name)
            cli(box, f"module load {name}")


def _wait_booted(box: Sandbox, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cli(box, "core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            return
        except AsteriskError:
            time.sleep(0.2)
    tail = (box.host_dir / "log" / "console.log").read_text(errors="replace")[-2000:]
    raise AsteriskError(f"Asterisk did not finish booting within {timeout} s:\n{tail}")


def down(cfg: GatewayConfig, timeout: float = 15.0) -> None:
    """Stop the instance: gracefully, then by signal."""
    box = locate(cfg)
    running = pid(box)
    if running is None:
        return
    try:
        cli(box, "core stop now", timeout=timeout)
    except AsteriskError:
        pass  # fall through to signals below
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid(box) is not None:
        time.sleep(0.1)
    if pid(box) is not None:
        os.kill(running, signal.SIGKILL)


def remove_instance(cfg: GatewayConfig) -> None:
    """Stop the instance and delete its directory (config, logs, spool): for throw-away labs."""
    down(cfg)
    shutil.rmtree(locate(cfg).host_dir, ignore_errors=True)


def status(cfg: GatewayConfig) -> str:
    box = locate(cfg)
    running = pid(box)
    where = f"chroot {box.root}" if box.chrooted else "system Asterisk"
    if running is None:
        return f"stopped ({where}, instance {box.instance})"
    uptime = cli(box, "core show uptime").strip().replace("\n", "; ")
    return f"running pid {running} ({where}, instance {box.instance}): {uptime}"
