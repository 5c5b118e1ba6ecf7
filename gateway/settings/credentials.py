"""Secrets left at their shipped defaults are replaced by ones generated for this installation.

``config/gateway.toml`` ships ``ari-secret-change-me`` and ``ami-secret-change-me`` (the Structs
``change-me-ari``, ``change-me-ami``): anyone who has read the source would hold full call control.
A secret containing ``change-me`` is therefore never used: ``resolve`` replaces it with a random one
generated on first use and kept, mode 0600, in the store's directory (``ari.secret``,
``ami.secret``); every later load reads the same file, so ``gateway asterisk up`` (which renders
ari.conf and manager.conf) and ``gateway run`` (ARI, AMI, the voice channels) agree. A secret the
config sets itself is used as given. A voice channel logs in to the gateway's own ARI user, so its
default password becomes ARI's. ``gateway.cli`` resolves where it loads a config to run;
``gateway check-config`` says which secrets will be generated (or refuses them, see there).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Literal

from msgspec.structs import replace

from gateway.errors import ConfigError
from gateway.settings.channels import VoiceConfig
from gateway.settings.config import GatewayConfig

log = logging.getLogger(__name__)
SHIPPED_DEFAULT = "change-me"
Service = Literal["ari", "ami"]
_KEPT = re.compile(r"^[A-Za-z0-9_.@+-]{16,}$")  # what a stored secret may be: safe in Asterisk's .conf files


def is_shipped_default(secret: str) -> bool:
    return SHIPPED_DEFAULT in secret


def shipped_defaults(cfg: GatewayConfig) -> list[tuple[str, str, Service]]:
    """Every secret the config leaves at a shipped default: (key, value, service it logs in to)."""
    a = cfg.asterisk
    found: list[tuple[str, str, Service]] = [("asterisk.ari_password", a.ari_password, "ari"),
                                             ("asterisk.ami_password", a.ami_password, "ami")]
    for key, voice in _voice_channels(cfg).items():
        if voice is not None:
            found.append((f"{key}.ari_password", voice.ari_password, "ari"))
    return [(key, value, service) for key, value, service in found if is_shipped_default(value)]


def secret_path(cfg: GatewayConfig, service: Service) -> Path:
    """Where a generated secret is kept: beside the store (like the CLI's key beside the warnings store)."""
    return Path(cfg.store.path).parent / f"{service}.secret"


def with_secrets(cfg: GatewayConfig, secret: Callable[[Service], str]) -> GatewayConfig:
    """``cfg`` with every shipped-default secret replaced by ``secret(service)`` (pure)."""
    a = cfg.asterisk
    ari = secret("ari") if is_shipped_default(a.ari_password) else a.ari_password
    ami = secret("ami") if is_shipped_default(a.ami_password) else a.ami_password

    def voice(v: VoiceConfig | None) -> VoiceConfig | None:
        return replace(v, ari_password=ari) if v is not None and is_shipped_default(v.ari_password) else v

    w, e = cfg.warnings, cfg.escalation
    return replace(
        cfg, asterisk=replace(a, ari_password=ari, ami_password=ami),
        warnings=replace(w, actual=replace(w.actual, voice=voice(w.actual.voice)),
                         drill=replace(w.drill, voice=voice(w.drill.voice))),
        escalation=replace(e, channels=replace(e.channels, voice=voice(e.channels.voice))))


def resolve(cfg: GatewayConfig) -> GatewayConfig:
    """The config with this installation's generated secrets in place of shipped defaults; each is
    generated on first use and read back afterwards. Raises ConfigError for a secret file that does not
    hold a usable secret."""

    @cache
    def kept(service: Service) -> str:
        path = secret_path(cfg, service)
        log.info("%s secret: a shipped default in the config; using the one kept in %s", service.upper(), path)
        return stored_secret(path)

    return with_secrets(cfg, kept)


def stored_secret(path: Path) -> str:
    """The secret kept in ``path``, generated (32 random bytes, URL-safe) if there is none. The file is
    0600 and appears whole or not at all (linked into place), so two commands starting together agree."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
        partial = Path(name)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(fd)
        try:
            os.link(partial, path)  # fails if another command has just made one: then theirs is used
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    path.chmod(0o600)
    secret = path.read_text(encoding="utf-8").strip()
    if not _KEPT.match(secret):
        raise ConfigError([f"{path}: expected a secret of 16 or more letters, digits or _.@+-; delete the file "
                           "to have a new one generated"])
    return secret


def _voice_channels(cfg: GatewayConfig) -> dict[str, VoiceConfig | None]:
    return {"warnings.actual.voice": cfg.warnings.actual.voice, "warnings.drill.voice": cfg.warnings.drill.voice,
            "escalation.channels.voice": cfg.escalation.channels.voice}
