"""Response scenarios: what the centre does, step by step, for an incident of a category. Pure.

A scenario is an ordered list of steps, run top to bottom. A step may carry a ``when`` condition
on incident fields or on whether the latest notify step was acknowledged (skipped when false) and
an ``id`` other steps can ``goto``. Going back to an
earlier step is a loop and must say how many times (``max_times``): an unbounded loop in an
emergency scenario is a bug, not a feature. ``check`` reports every problem with its place.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.settings.base import Base

Channel = Literal["voice", "sms", "telegram", "email", "console"]
ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class When(Base, frozen=True):
    """All given conditions must hold."""

    priority_at_least: int | None = None
    service: list[str] = []
    zone: list[str] = []
    between: tuple[str, str] | None = None  # local time window "HH:MM", may wrap midnight (night roster)
    last_acked: bool | None = None  # the outcome of the latest notify step with ack any/each


class Step(Base, frozen=True, tag_field="do"):
    id: str = ""
    when: When | None = None


class Notify(Step, frozen=True, kw_only=True, tag="notify"):
    """Tell people, roles or units over channels; optionally wait for acknowledgement."""

    roles: list[str] = []
    people: list[str] = []
    units: list[str] = []
    channels: list[Channel]
    template: str
    ack: Literal["none", "any", "each"] = "none"
    timeout_s: float = 60.0
    repeat: int = 1  # "keep calling until a human answers", bounded


class Escalate(Step, frozen=True, kw_only=True, tag="escalate"):
    tier: str


class Forward(Step, frozen=True, kw_only=True, tag="forward"):
    centre: str


class DraftWarning(Step, frozen=True, kw_only=True, tag="draft_warning"):
    event: str = ""  # a public-warning template; "" takes the category's warning_event


class Goto(Step, frozen=True, kw_only=True, tag="goto"):
    target: str
    max_times: int | None = None


class Close(Step, frozen=True, kw_only=True, tag="close"):
    reason: str = ""


AnyStep = Notify | Escalate | Forward | DraftWarning | Goto | Close


class Scenario(Base, frozen=True):
    name: str
    steps: list[AnyStep]


class Known(msgspec.Struct, frozen=True, kw_only=True):
    """What the rest of the configuration defines, for cross-checks."""

    roles: frozenset[str] = frozenset()
    people: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    centres: frozenset[str] = frozenset()


def load(path: str | Path) -> Scenario:
    """Read one ``scenarios/<name>.toml``; raises ConfigError naming the file and the problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return msgspec.convert({"name": path.stem, **raw}, Scenario)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid UTF-8 TOML: {exc}"]) from exc
    except msgspec.ValidationError as exc:
        raise ConfigError([f"{path}: {exc}"]) from exc


def check(scenario: Scenario, known: Known, where: str = "") -> list[str]:
    """Every problem of one scenario: references, conditions, reachability, unbounded loops."""
    at = where or f"scenario {scenario.name}"
    problems: list[str] = []
    ids = [s.id for s in scenario.steps if s.id]
    if not scenario.steps:
        problems.append(f"{at}: no steps")
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{at}: step id {dup!r} used twice")
    index = {s.id: n for n, s in enumerate(scenario.steps) if s.id}
    for n, step in enumerate(scenario.steps):
        place = f"{at} step {n + 1}" + (f" ({step.id})" if step.id else "")
        problems.extend(f"{place}: {p}" for p in _step_problems(step, n, index, known))
    problems.extend(f"{at} step {n + 1}: unreachable (nothing leads here)" for n in _unreachable(scenario, index))
    return problems


def _step_problems(step: AnyStep, n: int, index: dict[str, int], known: Known) -> list[str]:
    p: list[str] = []
    if step.id and not ID_RE.match(step.id):
        p.append(f"id {step.id!r}: expected lower-case letters, digits, - or _")
    if step.when is not None:
        p.extend(_when_problems(step.when))
    match step:
        case Notify():
            p.extend(_notify_problems(step, known))
        case Escalate(tier=tier) if known.tiers and tier not in known.tiers:
            p.append(f"unknown tier {tier!r}")
        case Forward(centre=centre) if known.centres and centre not in known.centres:
            p.append(f"unknown centre {centre!r}")
        case DraftWarning(event=event) if event and known.events and event not in known.events:
            p.append(f"unknown warning template {event!r}")
        case Goto(target=target, max_times=max_times):
            if target not in index:
                p.append(f"goto {target!r}: no step has this id")
            elif index[target] <= n and not max_times:
                p.append(f"goto {target!r} goes back: a loop needs max_times (1-100)")
            if max_times is not None and not 1 <= max_times <= 100:
                p.append("max_times: expected 1-100")
    return p


def _notify_problems(step: Notify, known: Known) -> list[str]:
    p: list[str] = []
    if not (step.roles or step.people or step.units):
        p.append("notify: nobody to notify (roles, people or units)")
    for kind, names, pool in (("role", step.roles, known.roles), ("person", step.people, known.people),
                              ("unit", step.units, known.units)):
        p.extend(f"unknown {kind} {name!r}" for name in names if pool and name not in pool)
    if not step.channels:
        p.append("notify: no channels")
    if known.templates and step.template not in known.templates:
        p.append(f"unknown template {step.template!r}")
    if not 1 <= step.repeat <= 20:
        p.append("repeat: expected 1-20")
    if step.ack != "none" and not 5 <= step.timeout_s <= 86400:
        p.append("timeout_s: expected 5 s to a day when waiting for acknowledgement")
    return p


def _when_problems(when: When) -> list[str]:
    p: list[str] = []
    if when.between is not None and not all(TIME_RE.match(t) for t in when.between):
        p.append(f"when.between: expected two HH:MM times, got {list(when.between)}")
    if when.priority_at_least is not None and not 0 <= when.priority_at_least <= 9:
        p.append("when.priority_at_least: expected 0-9")
    return p


def _unreachable(scenario: Scenario, index: dict[str, int]) -> list[int]:
    """Steps no path reaches: after an unconditional close or goto, unless a goto targets them."""
    reached: set[int] = set()
    todo = [0] if scenario.steps else []
    while todo:
        n = todo.pop()
        if n in reached or n >= len(scenario.steps):
            continue
        reached.add(n)
        step = scenario.steps[n]
        conditional = step.when is not None
        if isinstance(step, Goto):
            if step.target in index:
                todo.append(index[step.target])
            if conditional or step.max_times:  # a bounded loop falls through once exhausted
                todo.append(n + 1)
        elif isinstance(step, Close):
            if conditional:
                todo.append(n + 1)
        else:
            todo.append(n + 1)
    return sorted(set(range(len(scenario.steps))) - reached)


def check_all(scenarios: Iterable[Scenario], known: Known) -> list[str]:
    return [p for s in scenarios for p in check(s, known)]
