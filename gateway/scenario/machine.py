"""The scenario state machine: where a run stands and what it does next. Pure: no I/O, no clock.

A ``Run`` is the durable progress of one scenario on one incident: the step it is on (``pc``), the
phase of that step, the attempt, the acknowledgement deadline (wall clock, so it survives a
restart), who was notified with which token, and loop counters. The engine persists a run with
every timeline event it writes, in the same transaction, so after a crash the run resumes exactly
where its last event says it was.

Phases of a notifying step: ``sending`` (attempt ``attempt`` goes to every target group not yet
acknowledged; ``sent`` marks who got it) -> ``waiting`` (until ``deadline_wall`` or enough acks)
-> the next attempt, or the next step with ``last_acked`` set.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Literal

import msgspec

from gateway.scenario.model import Close, DraftWarning, Escalate, Forward, Goto, Notify, Scenario, When
from gateway.scenario.people import Centre, Tier

Phase = Literal["enter", "sending", "waiting", "effect", "done"]
RunKind = Literal["category", "sla", "status"]
MAX_HOPS = 1000  # steps evaluated in one advance: a guard, since check() already refuses unbounded loops


class Target(msgspec.Struct, kw_only=True):
    """One person told in a notifying step. People of one unit share a ``group``: one member's
    acknowledgement answers for the unit."""

    token: str
    code: str  # short code an SMS reply may quote
    group: str
    person: str
    unit: str = ""
    unit_name: str = ""  # the unit's callsign, as its crew hears it
    sent: int = 0  # the last attempt that reached them (0: none yet)
    channel: str = ""
    failed: str = ""
    acked_wall: float | None = None
    acked_by: str = ""
    acked_via: str = ""


class Run(msgspec.Struct, kw_only=True):
    key: str
    incident_id: str
    kind: RunKind
    scenario: str
    category: str
    generation: int = 0
    pc: int = 0
    phase: Phase = "enter"
    attempt: int = 0
    deadline_wall: float = 0.0
    targets: list[Target] = []
    loops: dict[str, int] = {}
    last_acked: bool | None = None
    outcome: str = ""
    started_wall: float = 0.0
    status: str = ""  # for a "status" run: the response status it tells of


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What conditions may look at."""

    priority: int
    service: str
    zone: str
    local_minutes: int  # minutes since local midnight
    warning_event: str = ""


class Spec(msgspec.Struct, frozen=True, kw_only=True):
    """A notifying step made concrete: notify, escalate to a tier, or forward to a centre."""

    kind: Literal["notify", "escalate", "forward"]
    roles: list[str] = []
    people: list[str] = []
    units: list[str] = []
    centre: str = ""
    channels: list[str]
    template: str
    ack: Literal["none", "any", "each"] = "none"
    timeout_s: float = 60.0
    repeat: int = 1


class Notifying(msgspec.Struct, frozen=True):
    spec: Spec


class Drafting(msgspec.Struct, frozen=True):
    event: str


class Skipped(msgspec.Struct, frozen=True):
    step: int
    what: str


class Finished(msgspec.Struct, frozen=True):
    outcome: str


Action = Notifying | Drafting | Finished


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def applies(when: When | None, facts: Facts, last_acked: bool | None) -> bool:
    if when is None:
        return True
    if when.priority_at_least is not None and facts.priority < when.priority_at_least:
        return False
    if when.service and facts.service not in when.service:
        return False
    if when.zone and facts.zone not in when.zone:
        return False
    if when.last_acked is not None and last_acked is not when.last_acked:
        return False
    if when.between is not None:
        start, end = minutes(when.between[0]), minutes(when.between[1])
        now = facts.local_minutes
        inside = start <= now < end if start <= end else (now >= start or now < end)  # wraps midnight
        if not inside:
            return False
    return True


def spec_of(step: Notify | Escalate | Forward, tiers: dict[str, Tier], centres: dict[str, Centre]) -> Spec:
    match step:
        case Notify():
            return Spec(kind="notify", roles=step.roles, people=step.people, units=step.units,
                        channels=list(step.channels), template=step.template, ack=step.ack,
                        timeout_s=step.timeout_s, repeat=step.repeat)
        case Escalate(tier=name):
            tier = tiers[name]
            return Spec(kind="escalate", roles=tier.roles, people=tier.people, channels=list(tier.channels),
                        template=tier.template, ack=tier.ack, timeout_s=tier.timeout_s, repeat=tier.repeat)
        case Forward(centre=name):
            centre = centres[name]
            return Spec(kind="forward", centre=name, people=[f"centre:{name}"], channels=list(centre.channels),
                        template="forwarded")


def advance(run: Run, scenario: Scenario, facts: Facts, tiers: dict[str, Tier], centres: dict[str, Centre],
            skipped: Callable[[Skipped], None] = lambda _: None) -> Action:
    """Move ``run`` from ``pc`` (phase "enter") to the next step that does something, and say what.

    Conditions false -> the step is skipped (reported through ``skipped``); goto jumps (bounded by
    its counter); close or the end finishes the run. Mutates ``run``.
    """
    index = {s.id: n for n, s in enumerate(scenario.steps) if s.id}
    for _ in range(MAX_HOPS):
        if run.pc >= len(scenario.steps):
            return _finish(run, "end")
        step = scenario.steps[run.pc]
        if not applies(step.when, facts, run.last_acked):
            skipped(Skipped(run.pc, str(type(step).__struct_config__.tag)))
            run.pc += 1
            continue
        match step:
            case Goto(target=target, max_times=max_times):
                done = run.loops.get(str(run.pc), 0)
                if max_times is None or done < max_times:
                    run.loops[str(run.pc)] = done + 1
                    run.pc = index[target]
                else:
                    run.pc += 1
            case Close(reason=reason):
                return _finish(run, reason or "closed")
            case DraftWarning(event=event):
                run.phase = "effect"
                return Drafting(event or facts.warning_event)
            case Notify() | Escalate() | Forward():
                run.phase, run.attempt, run.targets, run.deadline_wall = "sending", 0, [], 0.0
                return Notifying(spec_of(step, tiers, centres))
    return _finish(run, "loop guard")


def _finish(run: Run, outcome: str) -> Finished:
    run.phase, run.outcome, run.targets = "done", outcome, []
    return Finished(outcome)


def current_spec(run: Run, scenario: Scenario, tiers: dict[str, Tier], centres: dict[str, Centre]) -> Spec | None:
    """The spec of the step a run is sending or waiting on (to resume after a restart)."""
    if run.phase not in ("sending", "waiting") or run.pc >= len(scenario.steps):
        return None
    step = scenario.steps[run.pc]
    return spec_of(step, tiers, centres) if isinstance(step, Notify | Escalate | Forward) else None


def new_target(group: str, person: str, unit: str = "", unit_name: str = "") -> Target:
    return Target(token=secrets.token_urlsafe(12), code=f"{secrets.randbelow(10000):04d}", group=group,
                  person=person, unit=unit, unit_name=unit_name)


def start_attempt(run: Run) -> list[Target]:
    """Begin the next attempt; the targets whose group has not acknowledged get it."""
    run.phase, run.attempt = "sending", run.attempt + 1
    return due(run)


def due(run: Run) -> list[Target]:
    """Targets of the current attempt not reached yet (all of them right after ``start_attempt``)."""
    acked = acked_groups(run)
    return [t for t in run.targets if t.group not in acked and t.sent < run.attempt]


def acked_groups(run: Run) -> set[str]:
    return {t.group for t in run.targets if t.acked_wall is not None}


def satisfied(run: Run, ack: str) -> bool:
    groups = {t.group for t in run.targets}
    acked = acked_groups(run)
    if ack == "any":
        return bool(acked)
    if ack == "each":
        return bool(groups) and acked >= groups
    return True


def acknowledge(run: Run, token: str, by: str, via: str, now: float) -> Target | None:
    """Mark the target with ``token`` acknowledged; None if no such target or already acknowledged."""
    for target in run.targets:
        if target.token == token and target.acked_wall is None:
            target.acked_wall, target.acked_by, target.acked_via = now, by, via
            return target
    return None


def step_done(run: Run, acked: bool | None) -> None:
    """The notifying step is over: on to the next one, remembering whether it was acknowledged."""
    if acked is not None:
        run.last_acked = acked
    run.phase, run.pc, run.attempt, run.deadline_wall = "enter", run.pc + 1, 0, 0.0


def after_deadline(run: Run, spec: Spec) -> Literal["again", "give_up"]:
    """The acknowledgement deadline passed: another attempt, or the step gives up."""
    return "again" if run.attempt < spec.repeat else "give_up"


def switch(run: Run, scenario: str, category: str) -> Run:
    """A fresh run of another scenario for the same incident (the category changed)."""
    return Run(key=run.key, incident_id=run.incident_id, kind=run.kind, scenario=scenario, category=category,
               generation=run.generation + 1)


WATCH_PREFIX = "_watch:"


def watch_scenario(category: str, roles: list[str]) -> Scenario:
    """The built-in scenario telling a category's watchers of a status change: by message, no
    acknowledgement (a call only if nothing else reaches them is the person's own preference)."""
    return Scenario(name=WATCH_PREFIX + category, steps=[
        Notify(roles=roles, channels=["telegram", "sms", "email"], template="status_changed"), Close()])
