"""Shipped default secrets: generated once per installation (0600, beside the store), the same for every
command; refused by check-config where ARI or AMI listen beyond loopback, a warning where they do not."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway import check_config
from gateway.asterisk import dialplan
from gateway.asterisk.dialplan import is_loopback, listen_addresses, render_all
from gateway.cli.main import main
from gateway.errors import ConfigError
from gateway.settings.base import PROJECT
from gateway.settings.credentials import resolve, shipped_defaults, stored_secret, with_secrets
from tests.core.test_render import DATADIR, INST, MODDIR

SHIPPED = PROJECT / "config" / "gateway.toml"
DEFAULT_KEYS = ["asterisk.ari_password", "asterisk.ami_password", "escalation.channels.voice.ari_password"]


def config_file(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The shipped config with its stores in ``tmp_path/var``."""
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in [('"var/', f'"{tmp_path}/var/'), *replacements]:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def every_secret(cfg: Any) -> list[str]:
    voice = cfg.escalation.channels.voice
    return [cfg.asterisk.ari_password, cfg.asterisk.ami_password, voice.ari_password]


def test_the_shipped_config_leaves_three_secrets_at_defaults() -> None:
    assert [key for key, _, _ in shipped_defaults(check_config.load(SHIPPED))] == DEFAULT_KEYS


def test_defaults_are_generated_once_and_kept_0600_beside_the_store(tmp_path: Path) -> None:
    cfg = resolve(check_config.load(config_file(tmp_path)))
    ari, ami = (tmp_path / "var" / "ari.secret"), (tmp_path / "var" / "ami.secret")
    assert (mode(ari), mode(ami)) == (0o600, 0o600)
    assert every_secret(cfg) == [ari.read_text().strip(), ami.read_text().strip(), ari.read_text().strip()]
    assert len(cfg.asterisk.ari_password) == 43 and cfg.asterisk.ari_password != cfg.asterisk.ami_password
    assert not any("change-me" in secret for secret in every_secret(cfg))
    assert shipped_defaults(cfg) == []
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["ami.secret", "ari.secret"]


def test_two_loads_in_two_processes_agree(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    code = ("import sys; from gateway import check_config; from gateway.settings.credentials import resolve; "
            "c = resolve(check_config.load(sys.argv[1])); print(c.asterisk.ari_password, c.asterisk.ami_password)")
    runs = [subprocess.run([sys.executable, "-c", code, str(path)], cwd=PROJECT, capture_output=True, text=True,
                           check=True, timeout=60).stdout.split() for _ in range(2)]
    assert runs[0] == runs[1] == every_secret(resolve(check_config.load(path)))[:2]


def test_rendered_asterisk_configs_and_the_clients_use_the_same_secret(tmp_path: Path) -> None:
    cfg = resolve(check_config.load(config_file(tmp_path)))  # `gateway asterisk up` and `gateway run` alike
    files = render_all(cfg, INST, MODDIR, DATADIR)
    assert f"password = {cfg.asterisk.ari_password}\n" in files["ari.conf"]
    assert f"secret = {cfg.asterisk.ami_password}\n" in files["manager.conf"]
    assert "change-me" not in files["ari.conf"] + files["manager.conf"]


def test_the_renderer_refuses_a_shipped_default() -> None:
    with pytest.raises(ConfigError, match="asterisk.ari_password: a shipped default secret must never reach"):
        render_all(check_config.load(SHIPPED), INST, MODDIR, DATADIR)


def test_a_secret_the_config_sets_is_used_as_given(tmp_path: Path) -> None:
    own = ('ari_password = "ari-secret-change-me"', 'ari_password = "our-own-ari-secret"')
    cfg = resolve(check_config.load(config_file(tmp_path, own)))
    assert cfg.asterisk.ari_password == "our-own-ari-secret"
    assert every_secret(cfg)[2] == "our-own-ari-secret"  # the voice channel's too: ARI's, kept as given
    assert not (tmp_path / "var" / "ari.secret").exists()
    assert (tmp_path / "var" / "ami.secret").exists()


def test_a_voice_channel_default_follows_the_gateways_own_ari_secret() -> None:
    cfg = with_secrets(check_config.load(SHIPPED), lambda service: f"{service}-generated")
    assert every_secret(cfg)[2] == cfg.asterisk.ari_password == "ari-generated"


def test_concurrent_first_uses_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: stored_secret(tmp_path / "ari.secret"), range(32)))
    assert len(found) == 1 and [p.name for p in tmp_path.iterdir()] == ["ari.secret"]


def test_a_kept_secret_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ari.secret"
    path.write_text("an-operators-own-secret-value\n")
    path.chmod(0o644)
    assert stored_secret(path) == "an-operators-own-secret-value" and mode(path) == 0o600


@pytest.mark.parametrize("text", ["", "short", "has space in the middle of it", "ari-secret-change-me ok?"])
def test_a_damaged_secret_file_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ari.secret"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path}: expected a secret of 16 or more"):
        stored_secret(path)


def test_check_config_warns_about_defaults_on_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path)
    problems, warnings = check_config.findings(path)
    assert problems == []
    assert [w.split(": ")[1] for w in warnings] == DEFAULT_KEYS
    assert f"random secret is generated on first use and kept in {tmp_path}/var/ari.secret (mode 0600)" in warnings[0]
    assert main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr()
    assert out.err.count("warning: ") == 3 and out.out.strip().endswith(": OK")
    assert not (tmp_path / "var").exists()  # checking generates nothing


def test_check_config_refuses_defaults_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def ari_everywhere(*args: Any) -> dict[str, str]:
        files = render_all(*args)
        return {**files, "http.conf": files["http.conf"].replace("bindaddr = 127.0.0.1", "bindaddr = 0.0.0.0")}

    monkeypatch.setattr(check_config, "render_all", ari_everywhere)
    path = config_file(tmp_path)
    problems, _ = check_config.findings(path)
    assert [p.split(": ")[1] for p in problems] == ["asterisk.ari_password", "escalation.channels.voice.ari_password"]
    assert "ARI listens on 0.0.0.0 (dialplans/): set a secret of your own" in problems[0]
    assert main(["--config", str(path), "check-config"]) == 1
    assert "OK" not in capsys.readouterr().out


def test_check_config_accepts_own_secrets_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ami_everywhere(*args: Any) -> dict[str, str]:
        files = render_all(*args)
        return {**files, "manager.conf": files["manager.conf"].replace("bindaddr = 127.0.0.1\n", "")}

    monkeypatch.setattr(check_config, "render_all", ami_everywhere)
    path = config_file(tmp_path, ('ami_password = "ami-secret-change-me"', 'ami_password = "our-own-ami-secret"'))
    problems, warnings = check_config.findings(path)
    assert problems == [] and [w.split(": ")[1] for w in warnings] == [DEFAULT_KEYS[0], DEFAULT_KEYS[2]]


def test_shipped_templates_listen_on_loopback_only() -> None:
    files = render_all(with_secrets(check_config.load(SHIPPED), lambda s: "x" * 20), INST, MODDIR, DATADIR)
    assert listen_addresses(files) == {"ari": ["127.0.0.1"], "ami": ["127.0.0.1"]}
    assert dialplan.TEMPLATE_DIR == PROJECT / "dialplans"


@pytest.mark.parametrize("http, manager, expected", [
    ("[general]\nenabled = yes\nbindaddr = 10.0.0.5\n", "[general]\nenabled = no\n", {"ari": ["10.0.0.5"], "ami": []}),
    ("[general]\nenabled = yes\n", "[general]\nenabled = yes\n", {"ari": ["0.0.0.0"], "ami": ["0.0.0.0"]}),
    ("[general]\nenabled=yes\nbindaddr=127.0.0.1 ; local\ntlsenable=yes\ntlsbindaddr=0.0.0.0:8089\n",
     "[general]\nenabled = yes\nbindaddr = ::1\nwebenabled = yes\n",
     {"ari": ["127.0.0.1", "0.0.0.0:8089"], "ami": ["::1", "127.0.0.1", "0.0.0.0:8089"]}),
    ("[general]\nenabled = no\nbindaddr = 0.0.0.0\n", "[other]\nbindaddr = 0.0.0.0\n", {"ari": [], "ami": []}),
])
def test_listen_addresses_as_asterisk_reads_them(http: str, manager: str, expected: dict[str, list[str]]) -> None:
    assert listen_addresses({"http.conf": http, "manager.conf": manager}) == expected


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.1:8089", True), ("127.1.2.3", True), ("::1", True), ("[::1]:8089", True),
    ("0.0.0.0", False), ("10.0.0.5:8088", False), ("::", False), ("localhost", False), ("", False),
])
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_resolve_writes_nothing_when_the_config_sets_every_secret(tmp_path: Path) -> None:
    path = config_file(tmp_path, ('ari-secret-change-me"', 'our-own-ari-secret"'),
                       ('ami_password = "ami-secret-change-me"', 'ami_password = "our-own-ami-secret"'))
    cfg = check_config.load(path)
    assert resolve(cfg) == cfg and not (tmp_path / "var").exists() and os.path.exists(path)
