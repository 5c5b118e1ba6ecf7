"""The strict base of every configuration Struct (kept apart so channel drivers can use it without
importing the whole gateway configuration)."""

from __future__ import annotations

import msgspec


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """All config sections: unknown keys are errors, values are immutable."""
