"""Siren activation patterns → a plan of relay states over time. Pure: no I/O, no clock.

A zone's relays switch together, so a plan is a list of (seconds from start, on/off) steps.
``steady`` holds the relays on for ``duration_s``; ``wail`` cycles them ``on_s`` on, ``off_s``
off for ``duration_s`` (motor sirens rise and fall as their power is cycled, which is how the
civil-defence "attention everyone" signal is sounded on relay-driven sirens); ``off`` switches
them off; ``none`` leaves them as they are (a template's "no siren for this update": a pattern
still running is not cut short). ``repeat`` sounds the pattern that many times with ``gap_s`` of silence between.
Every plan that switches on ends with the relays off, so a plan that runs to completion never
leaves a siren sounding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import msgspec

from gateway.errors import AlertError

PatternKind = Literal["steady", "wail", "off", "none"]
KINDS: tuple[PatternKind, ...] = ("steady", "wail", "off", "none")
MAX_DURATION_S = 3600.0  # one sounding; an operator who means longer repeats or re-sends
MAX_REPEAT = 20
MIN_CYCLE_S = 0.5  # shorter on/off times wear relays and never spin a motor siren up
MAX_GAP_S = 3600.0


class Step(msgspec.Struct, frozen=True):
    at_s: float
    on: bool


class Plan(msgspec.Struct, frozen=True):
    kind: PatternKind
    steps: tuple[Step, ...]

    @property
    def end_s(self) -> float:
        return self.steps[-1].at_s if self.steps else 0.0


class PatternSpec(msgspec.Struct, frozen=True, kw_only=True):
    kind: PatternKind = "steady"
    duration_s: float = 180.0
    repeat: int = 1
    on_s: float = 4.0
    off_s: float = 4.0
    gap_s: float = 10.0


DEFAULT = PatternSpec()


def parse_options(options: Mapping[str, str]) -> PatternSpec:
    """A pattern from a message's options: ``pattern`` (steady|wail|off, default steady),
    ``duration_s``, ``repeat``, and for wail ``on_s``/``off_s``; ``gap_s`` between repeats.
    ``msg_type=Cancel`` (a CAP Cancel) means off. Keys not listed here belong to other
    channels and are ignored. Raises AlertError naming the bad option."""
    if options.get("msg_type", "").lower() == "cancel":
        return PatternSpec(kind="off")
    kind = options.get("pattern", "steady").strip().lower()
    if kind not in KINDS:
        raise AlertError(f"siren pattern {kind!r} unknown (expected one of: {', '.join(KINDS)})")
    if kind == "none":
        return PatternSpec(kind="none")  # its duration_s is 0 by the templates' rule; nothing to check
    spec = PatternSpec(
        kind=kind,  # type: ignore[arg-type]  # checked against KINDS above
        duration_s=_number(options, "duration_s", DEFAULT.duration_s, 1.0, MAX_DURATION_S),
        repeat=int(_number(options, "repeat", DEFAULT.repeat, 1, MAX_REPEAT, integer=True)),
        on_s=_number(options, "on_s", DEFAULT.on_s, MIN_CYCLE_S, MAX_DURATION_S),
        off_s=_number(options, "off_s", DEFAULT.off_s, MIN_CYCLE_S, MAX_DURATION_S),
        gap_s=_number(options, "gap_s", DEFAULT.gap_s, MIN_CYCLE_S, MAX_GAP_S),
    )
    return spec


def _number(options: Mapping[str, str], key: str, default: float, low: float, high: float,
            *, integer: bool = False) -> float:
    text = options.get(key)
    if text is None or not text.strip():
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise AlertError(f"siren option {key}={text!r}: expected {'an integer' if integer else 'a number'}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise AlertError(f"siren option {key}={text!r}: expected {low:g} to {high:g}")
    return value


def plan(spec: PatternSpec) -> Plan:
    """The steps that sound ``spec``: strictly increasing times, first at 0, last one off; none
    for ``none``."""
    if spec.kind == "none":
        return Plan("none", ())
    if spec.kind == "off":
        return Plan("off", (Step(0.0, False),))
    sounding = _steady(spec) if spec.kind == "steady" else _wail(spec)
    period = spec.duration_s + spec.gap_s
    steps = tuple(Step(r * period + s.at_s, s.on) for r in range(spec.repeat) for s in sounding)
    return Plan(spec.kind, steps)


def _steady(spec: PatternSpec) -> list[Step]:
    return [Step(0.0, True), Step(spec.duration_s, False)]


def _wail(spec: PatternSpec) -> list[Step]:
    steps: list[Step] = []
    t = 0.0
    while t < spec.duration_s:
        steps.append(Step(t, True))
        steps.append(Step(min(t + spec.on_s, spec.duration_s), False))
        t += spec.on_s + spec.off_s
    return steps


def state_at(p: Plan, t: float) -> bool:
    """Whether the relays are on ``t`` seconds into ``p`` (off before it starts)."""
    on = False
    for step in p.steps:
        if step.at_s > t:
            break
        on = step.on
    return on


def plan_for(options: Mapping[str, str]) -> Plan:
    """``plan(parse_options(options))``. Raises AlertError for bad options."""
    return plan(parse_options(options))
