"""``[units]``: the response units' roster file, when a reported position counts as stale, the speed for ETAs."""

from __future__ import annotations

from gateway.settings.base import Base


class UnitsConfig(Base, frozen=True):
    """``[units]``: the roster file, when a reported position counts as stale, the speed for ETAs."""

    enabled: bool = True
    roster_file: str = "config/units.toml"
    stale_after_s: float = 600.0
    speed_kmh: float = 30.0  # straight-line average across a city at rush hour, sirens on


def units_problems(cfg: UnitsConfig, source: str = "<config>") -> list[str]:
    """Cross-field checks of ``[units]`` (the roster is checked by ``gateway.check_config``)."""
    p: list[str] = []
    if not 0 < cfg.stale_after_s <= 86400:
        p.append(f"{source}: units.stale_after_s: expected more than 0 s, at most a day, got {cfg.stale_after_s}")
    if not 1 <= cfg.speed_kmh <= 200:
        p.append(f"{source}: units.speed_kmh: expected 1-200, got {cfg.speed_kmh}")
    return p
