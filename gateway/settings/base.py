"""The strict base of every configuration Struct, and where relative paths in the config resolve."""

from __future__ import annotations

from pathlib import Path

import msgspec

PROJECT = Path(__file__).resolve().parents[2]
NAME_RE = r"^[a-z][a-z0-9_-]{0,31}$"


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """All config sections: unknown keys are errors, values are immutable."""


def project_path(path: str | Path) -> Path:
    """A relative path from the working directory if it is there, else from the project."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else PROJECT / p
