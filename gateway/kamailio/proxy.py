"""Start, ask and stop the Kamailio in front of the Asterisk nodes (``gateway kamailio up|down|status``).

Kamailio is the host's own (Debian's ``kamailio`` package), started by root with everything in one
instance directory (``[cluster] instance_dir``): ``kamailio.cfg`` and ``dispatcher.list`` rendered by
``gateway.kamailio.render``, ``run/`` (pid file, control socket; Kamailio's runtime dir ``-Y``) and
``log/kamailio.log``. It drops to the package's ``kamailio`` account when that account can reach the
instance directory (the default under /var/lib/ecgw); under a private directory (a test's tmp dir) it stays
root, since after dropping it could no longer reread the dispatcher list or remove its pid file. The main process
stays in the foreground of a session of its own (``-DD``), so ``down`` can end it and its children.
This is blocking code for the CLI and test fixtures, not for the Trio service.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import KamailioError
from gateway.kamailio.render import CONFIG_FILE, CONTROL_SOCKET, LIST_FILE, node_uri, render
from gateway.settings import GatewayConfig, project_path

log = logging.getLogger(__name__)
ACCOUNT = "kamailio"  # created by the Debian package
MEMORY = ("-m", "64", "-M", "8")  # MB of shared and per-process memory: a proxy for a few hundred calls


@dataclass(frozen=True)
class Instance:
    """Where one Kamailio lives."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kamailio.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "log" / "kamailio.log"

    @property
    def control(self) -> str:
        return f"unix:{self.dir / CONTROL_SOCKET}"


def locate(cfg: GatewayConfig) -> Instance:
    return Instance(project_path(cfg.cluster.instance_dir).resolve())


def binary(name: str = "kamailio") -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise KamailioError(f"{name} is not installed (apt-get install kamailio; `make deps` does it)")
    return found


def _account() -> tuple[int, int] | None:
    try:
        return pwd.getpwnam(ACCOUNT).pw_uid, grp.getgrnam(ACCOUNT).gr_gid
    except KeyError:
        return None


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` may search every directory from ``/`` down to ``path``."""
    for directory in (path, *path.parents):
        st = directory.stat()
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _user_options(instance: Instance) -> list[str]:
    account = _account()
    if account is None:
        log.warning("no %s account (Debian's kamailio package makes one): Kamailio runs as root", ACCOUNT)
        return []
    if not _reachable(instance.dir, *account):
        log.warning("the %s account cannot reach %s (a directory above it is private): Kamailio runs as root",
                    ACCOUNT, instance.dir)
        return []
    return ["-u", ACCOUNT, "-g", ACCOUNT]


def _alive(process: int) -> bool:
    """True while ``process`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def pid(instance: Instance) -> int | None:
    """PID of the running Kamailio's main process, or None."""
    try:
        value = int(instance.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if _alive(value) else None


def install_config(cfg: GatewayConfig, instance: Instance) -> dict[str, bool]:
    """Render the config into the instance directory; which files changed."""
    files = render(cfg.cluster, str(instance.dir))
    account = _account()
    for sub in (instance.run_dir, instance.log_file.parent):
        sub.mkdir(parents=True, exist_ok=True)
    if account is not None:
        os.chown(instance.dir, 0, account[1])
        instance.dir.chmod(0o750)
        os.chown(instance.run_dir, *account)  # its pid file and control socket, written after dropping root
    changed = {}
    for name, text in files.items():
        target = instance.dir / name
        changed[name] = not target.exists() or target.read_text(encoding="utf-8") != text
        if changed[name]:
            _write(target, text, account[1] if account else 0)
    return changed


def _write(target: Path, text: str, gid: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o640)
        os.fchown(fd, 0, gid)
        out.write(text)


def up(cfg: GatewayConfig, timeout: float = 10.0) -> Instance:
    """Render the config and start Kamailio; return once it answers on its control socket. A running
    one reloads a changed node list, or restarts for any other change (it keeps no dialogs: calls up
    stay up). Raises KamailioError if the config is refused or it does not come up within ``timeout``."""
    instance = locate(cfg)
    changed = install_config(cfg, instance)
    if pid(instance) is not None:
        if not changed[CONFIG_FILE]:
            if changed[LIST_FILE]:
                rpc(instance, "dispatcher.reload")
            return instance
        down(cfg)
    check = subprocess.run([binary(), "-c", "-f", str(instance.config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise KamailioError(f"Kamailio refuses {instance.config}:\n{check.stderr[-2000:]}")
    _start(instance)
    _wait_answering(instance, timeout)
    return instance


def _start(instance: Instance) -> None:
    cmd = [binary(), "-f", str(instance.config), "-P", str(instance.pid_file), "-Y", str(instance.run_dir),
           "-w", str(instance.dir), "-DD", "-E", *MEMORY, *_user_options(instance)]
    out = os.open(instance.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    finally:
        os.close(out)


def _wait_answering(instance: Instance, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid(instance) is not None:
            try:
                rpc(instance, "core.version", timeout=1.0)
                return
            except KamailioError:
                pass
        time.sleep(0.1)
    tail = instance.log_file.read_text(errors="replace")[-2000:] if instance.log_file.exists() else ""
    raise KamailioError(f"Kamailio did not come up within {timeout} s; {instance.log_file}:\n{tail}")


def rpc(instance: Instance, *command: str, timeout: float = 5.0) -> str:
    """One RPC command over the control socket (``kamcmd``); its output."""
    try:
        result = subprocess.run([binary("kamcmd"), "-s", instance.control, *command], capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise KamailioError(f"kamcmd {' '.join(command)} timed out after {timeout} s") from exc
    if result.returncode != 0 or result.stdout.startswith("error:"):  # kamcmd exits 0 on an RPC fault
        raise KamailioError(f"kamcmd {' '.join(command)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def parse_destinations(text: str) -> dict[str, str]:
    """``kamcmd dispatcher.list`` → {destination URI: flags}; flags ``A`` active, ``I`` inactive,
    ``D`` disabled, then ``P`` probing or ``X`` not."""
    return dict(re.findall(r"URI:\s*(\S+)\s*\n\s*FLAGS:\s*(\S+)", text))


def destinations(cfg: GatewayConfig) -> dict[str, str]:
    """Each node's SIP URI → its dispatcher flags, as the running Kamailio sees them now."""
    return parse_destinations(rpc(locate(cfg), "dispatcher.list"))


def down(cfg: GatewayConfig, timeout: float = 10.0) -> None:
    """Stop Kamailio: SIGTERM (it ends its children), then SIGKILL to its whole process group."""
    instance = locate(cfg)
    running = pid(instance)
    if running is None:
        return
    os.kill(running, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(running):
        time.sleep(0.05)
    if _alive(running):
        log.warning("Kamailio pid %d did not stop within %g s: killing it", running, timeout)
        os.killpg(running, signal.SIGKILL)


def status(cfg: GatewayConfig) -> str:
    instance = locate(cfg)
    running = pid(instance)
    if running is None:
        return f"stopped (instance {instance.dir})"
    c = cfg.cluster
    found = destinations(cfg)
    nodes = ", ".join(f"{node} {_state(found.get(node_uri(node), ''))}" for node in c.nodes)
    return f"running pid {running} on udp {c.listen}:{c.sip_port} (instance {instance.dir}): {nodes}"


def _state(flags: str) -> str:
    if not flags:
        return "unknown to the running Kamailio (gateway kamailio up reloads the list)"
    return {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}.get(flags[0], flags)
