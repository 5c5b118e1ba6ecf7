"""Recordings on disk: the blocking reads of ``gateway.intake.recordings`` (a worker thread's, never Trio's).

A finished file's facts in one read (stat, size, SHA-256, header), the daily check of the kept files at a
bounded rate, and the sweep's scan of the directory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from gateway.incident.recording_index import Recording

log = logging.getLogger(__name__)
EXT = ".WAV"  # wav49, as the dialplan names them (gateway.asterisk.dialplan.RECORDING_EXT)
CHECK_FILE_BYTES = 65536  # the daily check counts a file as at least this much read (``verify``)


class Facts(msgspec.Struct, frozen=True):
    """A file as read in one go: its stat, size, SHA-256 hex and first 4 KiB."""

    stat: os.stat_result
    size: int
    sha256: str
    head: bytes


def read_facts(path: Path) -> Facts:
    """The file's stat and contents' facts, one open; blocking, raises OSError. ``stat`` is taken after the
    read (so a write meanwhile shows as a size other than ``size``)."""
    with open(path, "rb") as f:
        digest, size, head = hashlib.sha256(), 0, b""
        while chunk := f.read(1 << 20):
            if not head:
                head = chunk[:4096]
            size += len(chunk)
            digest.update(chunk)
        return Facts(os.fstat(f.fileno()), size, digest.hexdigest(), head)


def final_facts(path: Path, before: os.stat_result | None, quiet_s: float) -> Facts | os.stat_result | None:
    """One look at a recording (blocking): its Facts when Asterisk has finished it (untouched for ``quiet_s``
    of the wall clock, or unchanged since ``before``, an earlier look; ``quiet_s`` <= 0: as it is); else its
    stat (still being written), or None (no file). Raises OSError (other than a missing file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    unchanged = before is not None and _same(st, before)
    if not unchanged and time.time() - st.st_mtime < quiet_s:
        return st
    facts = read_facts(path)
    final = quiet_s <= 0 or (_same(facts.stat, st) and facts.size == st.st_size)  # <= 0: taken as it is
    return facts if final else facts.stat


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def verify(directory: Path, recordings: Sequence[Recording], max_bytes_s: float = math.inf
           ) -> tuple[list[str], list[str]]:
    """(missing, altered) recording ids: no file, or a size or SHA-256 other than indexed. Blocking; reads at
    most ``max_bytes_s`` bytes per second on average (sleeping between files), each file counted as at least
    ``CHECK_FILE_BYTES``: many short recordings cost Python code per file, which holds the GIL from Trio's
    thread, more than hashing (which lets go of it)."""
    missing, altered = [], []
    began, read = time.monotonic(), 0
    for rec in recordings:
        try:
            facts = read_facts(directory / rec.file)
        except FileNotFoundError:
            missing.append(rec.id)
            continue
        except OSError as exc:
            log.error("recording %s: cannot read %s: %s", rec.id, rec.file, exc)
            missing.append(rec.id)
            continue
        if (facts.size, facts.sha256) != (rec.size, rec.sha256):
            altered.append(rec.id)
        read += max(facts.size, CHECK_FILE_BYTES)
        time.sleep(ahead_s(read, time.monotonic() - began, max_bytes_s))  # even 0 s lets go of the GIL
    return missing, altered


def ahead_s(read_bytes: int, elapsed_s: float, max_bytes_s: float) -> float:
    """How long to pause so that ``read_bytes`` in ``elapsed_s`` is no faster than ``max_bytes_s`` (0: not ahead)."""
    return max(0.0, read_bytes / max_bytes_s - elapsed_s)


def finished_stems(directory: Path, before_wall: float, since_wall: float | None, also: list[str]) -> list[str]:
    """The stems of recordings last changed before ``before_wall`` (and not before ``since_wall``, if given),
    with those of the file names ``also`` (blocking: a worker thread's, not Trio's, at 300,000 files; unsorted:
    sorting them is one call that keeps the GIL from Trio's thread for ~70 ms)."""
    low = -math.inf if since_wall is None else since_wall
    found: set[str] = set()
    try:
        with os.scandir(directory) as entries:  # one entry at a time: 300,000 kept at once make the GC work
            for e in entries:
                if e.name.endswith(EXT) and e.is_file() and low <= e.stat().st_mtime < before_wall:
                    found.add(e.name.removesuffix(EXT))
    except FileNotFoundError:
        pass
    return list(found.union(n.removesuffix(EXT) for n in also))
