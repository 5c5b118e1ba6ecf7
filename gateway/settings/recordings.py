"""``[recordings]``: where calls are recorded and how long the recordings are kept.

Asterisk writes the files (MixMonitor, ``dialplans/extensions.conf``) into ``dir`` under its instance
directory; the gateway indexes, serves and purges them (``gateway.intake.recordings``).
"""

from __future__ import annotations

import re

from gateway.settings.base import Base

MIN_KEEP_DAYS = 90  # MVD order 897: the archive of calls is kept at least 90 days
DIR_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$")


class RecordingsConfig(Base, frozen=True):
    """``dir``: a directory under the Asterisk instance directory (relative, no ``..``); ``keep_days``:
    a recording is purged that many days after its call ended, unless its incident is on legal hold;
    ``check_mb_s``: how fast the daily check reads the kept recordings to compare their SHA-256 with the index
    (MB/s): 90 days of a busy centre are tens of GB, and read at the disk's full speed they would hold up the
    incident store's writes on the same disk for minutes."""

    enabled: bool = True
    dir: str = "recordings"
    keep_days: int = 90
    check_mb_s: float = 50.0


def recordings_problems(cfg: RecordingsConfig, source: str) -> list[str]:
    problems = []
    if cfg.keep_days < MIN_KEEP_DAYS:
        problems.append(f"{source}: recordings.keep_days: expected at least {MIN_KEEP_DAYS} days "
                        f"(the archive of calls is kept at least {MIN_KEEP_DAYS} days), got {cfg.keep_days}")
    if not cfg.check_mb_s > 0:
        problems.append(f"{source}: recordings.check_mb_s: expected a rate above 0 MB/s (the daily check must end),"
                        f" got {cfg.check_mb_s}")
    if not DIR_RE.match(cfg.dir):
        problems.append(f"{source}: recordings.dir: expected a directory under the Asterisk instance directory "
                        f"(relative; letters, digits, _ and - separated by /), got {cfg.dir!r}")
    return problems
