"""debian_mirror(): the machine's own Debian mirror from apt sources (deb822 and one-line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.asterisk.sandbox import Sandbox, debian_mirror
from gateway.errors import AsteriskError

DEB822 = """\
Types: deb
URIs: http://mirror.example.kz/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_deb822_sources(tmp_path: Path) -> None:
    assert debian_mirror([write(tmp_path, "debian.sources", DEB822)]) == "http://mirror.example.kz/debian"


def test_deb822_security_archive_is_ignored(tmp_path: Path) -> None:
    security_first = DEB822.split("\n\n")[1] + "\n" + DEB822.split("\n\n")[0]
    assert debian_mirror([write(tmp_path, "debian.sources", security_first)]) == "http://mirror.example.kz/debian"


def test_deb822_only_security_gives_no_mirror(tmp_path: Path) -> None:
    path = write(tmp_path, "debian.sources", DEB822.split("\n\n")[1])
    with pytest.raises(AsteriskError, match="no Debian mirror"):
        debian_mirror([path])


@pytest.mark.parametrize("stanza, expected", [
    ("Types: deb deb-src\nURIs: http://a.example/debian\nSuites: sid\n", "http://a.example/debian"),
    ("Types: deb-src\nURIs: http://src.example/debian\n\nTypes: deb\nURIs: http://bin.example/debian\n",
     "http://bin.example/debian"),
    ("Types: deb\nURIs: http://x.example/ubuntu http://y.example/debian/\n", "http://y.example/debian"),
    ("# Types: deb\n# URIs: http://commented.example/debian\n\nTypes: deb\nURIs: https://z.example/debian\n",
     "https://z.example/debian"),
    ("Types: deb\nURIs: http://a.example/debian\n\n\n\nTypes: deb\nURIs: http://b.example/debian\n",
     "http://a.example/debian"),
    ("Types: deb\nURIs: http://off.example/debian\nEnabled: no\n\nTypes: deb\nURIs: http://on.example/debian\n"
     "Enabled: yes\n", "http://on.example/debian"),
])
def test_deb822_variants(tmp_path: Path, stanza: str, expected: str) -> None:
    assert debian_mirror([write(tmp_path, "x.sources", stanza)]) == expected


@pytest.mark.parametrize("text, expected", [
    ("deb http://mirror.example.kz/debian bookworm main\n", "http://mirror.example.kz/debian"),
    ("deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://m.example/debian/ sid main\n",
     "http://m.example/debian"),
    ("# deb http://old.example/debian sid main\n#deb http://old2.example/debian sid main\n"
     "deb http://new.example/debian sid main\n", "http://new.example/debian"),
    ("deb-src http://src.example/debian sid main\ndeb http://bin.example/debian sid main\n",
     "http://bin.example/debian"),
    ("deb http://security.debian.org/debian-security bookworm-security main\n"
     "deb http://deb.debian.org/debian bookworm main\n", "http://deb.debian.org/debian"),
    ("deb http://archive.ubuntu.com/ubuntu jammy main\ndeb http://ftp.example/debian sid main\n",
     "http://ftp.example/debian"),
])
def test_one_line_list(tmp_path: Path, text: str, expected: str) -> None:
    assert debian_mirror([write(tmp_path, "sources.list", text)]) == expected
    assert debian_mirror([write(tmp_path, "extra.list", text)]) == expected


@pytest.mark.parametrize("text", [
    "deb http://security.debian.org/debian-security bookworm-security main\n",
    "deb http://archive.ubuntu.com/ubuntu jammy main\n",
    "deb http://incomplete.example/debian\n",  # no suite
    "deb-src http://src.example/debian sid main\n",
    "",
])
def test_one_line_list_without_a_mirror(tmp_path: Path, text: str) -> None:
    with pytest.raises(AsteriskError):
        debian_mirror([write(tmp_path, "sources.list", text)])


def test_first_file_with_a_mirror_wins_and_missing_files_are_skipped(tmp_path: Path) -> None:
    empty = write(tmp_path, "sources.list", "# see sources.list.d\n")
    missing = tmp_path / "gone.list"
    security = write(tmp_path, "security.sources", DEB822.split("\n\n")[1])
    first = write(tmp_path, "a.list", "deb http://first.example/debian sid main\n")
    second = write(tmp_path, "b.sources", DEB822)
    assert debian_mirror([empty, missing, security, first, second]) == "http://first.example/debian"


def test_files_with_other_suffixes_are_ignored(tmp_path: Path) -> None:
    paths = [write(tmp_path, "old.list.save", "deb http://saved.example/debian sid main\n"),
             write(tmp_path, "debian.sources.disabled", DEB822),
             write(tmp_path, "real.list", "deb http://real.example/debian sid main\n")]
    assert debian_mirror(paths) == "http://real.example/debian"


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    binary = tmp_path / "binary.list"
    binary.write_bytes(b"\xff\xfe\x00deb http://bad.example/debian sid main\n")
    directory = tmp_path / "dir.list"
    directory.mkdir()
    good = write(tmp_path, "good.list", "deb http://good.example/debian sid main\n")
    assert debian_mirror([binary, directory, good]) == "http://good.example/debian"


def test_no_sources_at_all() -> None:
    with pytest.raises(AsteriskError, match="no Debian mirror"):
        debian_mirror([])


# --- Sandbox paths (pure properties) -----------------------------------------------------------

def test_chrooted_sandbox_paths() -> None:
    box = Sandbox(Path("/var/lib/ecgw/asterisk-sid"), "t1")
    assert box.chrooted
    assert box.inside_dir == "/srv/ecgw/t1"
    assert box.host_dir == Path("/var/lib/ecgw/asterisk-sid/srv/ecgw/t1")
    assert box.command("-rx", "core show uptime") == [
        "chroot", "/var/lib/ecgw/asterisk-sid", "asterisk", "-C", "/srv/ecgw/t1/etc/asterisk.conf",
        "-rx", "core show uptime"]


def test_system_asterisk_paths() -> None:
    box = Sandbox(Path("/"), "default")
    assert not box.chrooted
    assert box.inside_dir == str(box.host_dir) == "/var/lib/ecgw/instances/default"
    assert box.command("-rx", "x")[:3] == ["asterisk", "-C", "/var/lib/ecgw/instances/default/etc/asterisk.conf"]
