"""What the failover drill (``sim.failover``) is asked to do and what it found: its spec (a TOML file such as
``sim/drills/failover.toml``) and its report, whose ``lines()`` ``gateway-sim failover`` prints and whose
``lossless()`` is the drill's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

NAMES = ("node-a", "node-b")


class FailoverSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = "failover"
    description: str = ""
    calls_per_s: int = 20
    seconds: float = 30.0  # callers arrive for this long
    kill_after_s: float = 10.0
    talk_ms: int = 2000
    reports_per_s: float = 0.5  # police incidents reported through the API before the kill, nodes in turn
    lease_s: float = 5.0
    invite_timeout_ms: int = 1000
    recipients: int = 0  # an Exercise to zone medeu among this many imported recipients (9 in 10 in it); 0: none
    fanout_lead_s: float = 3.0  # the alert is sent through node A this long before the kill
    fanout_per_s: float = 0.0  # each node's pace per channel (0: SMPP 5,000/s, e-mail unpaced, Telegram 200/s)
    fanout_timeout_s: float = 300.0  # after the kill, B must have finished the fan-out within this


def load_spec(path: Path) -> FailoverSpec:
    return msgspec.toml.decode(path.read_bytes(), type=FailoverSpec)


@dataclass
class Call:
    call_id: str
    invite_wall: float
    answered_wall: float | None = None
    node: str = ""  # the node that answered it ("" none)


@dataclass
class FanoutReport:
    """The Exercise fan-out through the kill, counted at the stand-ins (times from the kill unless named)."""

    recipients: int
    audience: int  # those in medeu: each must be warned once
    import_s: float = 0.0  # ``recipients import`` through A's CLI, before the callers
    approve_s: float = 0.0  # ``alert approve --send`` through A's CLI, until it answered "sending"
    sent_to_kill_s: float | None = None  # the alert accepted for sending on A → the kill
    at_kill: int = 0  # messages the stand-ins had received when A died
    in_flight: int = 0  # jobs A held claimed and unsettled at the kill: the most that can go twice
    delivered_once: int = 0
    missed: int = 0
    duplicates: int = 0  # recipients warned more than once
    duplicates_outside: int = 0  # ... of them, not among A's in-flight jobs (must be 0)
    resent: int = 0  # A's jobs B sent again not knowing whether A had ("recovered" in the audit)
    # ... of them adopted before the kill: A's lease in the outbox ran out while A was alive (a renewal late),
    # so B took jobs A was still sending; they can go twice though A did not die holding them.
    resent_before_kill: int = 0
    jobs_a: int = 0  # the alert's jobs A last claimed
    jobs_b: int = 0
    adopted_s: float | None = None  # B took over A's in-flight jobs (its first "recovered" after the kill)
    # B's first message of A's in-flight work: adopted jobs are queued again behind those already due, so this
    # follows the queue's length, not the lease.
    first_of_a_on_b_s: float | None = None
    all_reached_s: float | None = None  # the last recipient's first message
    finished_s: float | None = None  # the alert shown "sent" on B (None: not within fanout_timeout_s)

    @property
    def in_progress(self) -> bool:
        """The kill caught the fan-out half-way: some messages out, not all."""
        return 0 < self.at_kill < self.audience

    def lossless(self) -> bool:
        """Finished with nobody missed, and only A's in-flight jobs, at most, sent twice."""
        return (self.finished_s is not None and not self.missed and self.duplicates <= self.in_flight
                and not self.duplicates_outside)

    def lines(self) -> list[str]:
        progress = "in progress" if self.in_progress else "NOT in progress"
        return [
            f"fan-out: {self.recipients} recipients imported in {self.import_s:.1f} s; approve --send took "
            f"{self.approve_s:.2f} s",
            f"fan-out: Exercise to {self.audience} of {self.recipients} recipients, sent on A "
            f"{_s(self.sent_to_kill_s)} before the kill; {self.at_kill} messages out at the kill ({progress}), "
            f"{self.in_flight} jobs in flight on A (the duplicates' bound); jobs by node: A {self.jobs_a}, "
            f"B {self.jobs_b}",
            f"fan-out: delivered once {self.delivered_once}, missed {self.missed}, duplicates {self.duplicates} "
            f"(outside A's in-flight {self.duplicates_outside}); resent with unknown outcome {self.resent}, "
            f"{self.resent_before_kill} of them taken from A while it was alive; kill -> A's jobs adopted by B "
            f"{_s(self.adopted_s)}, B's first message of A's work {_s(self.first_of_a_on_b_s)}, last recipient reached "
            f"{_s(self.all_reached_s)}, sent on B {_s(self.finished_s)}",
        ]


@dataclass
class FailoverReport:
    spec: FailoverSpec
    calls: list[Call] = field(default_factory=list)
    killed_wall: float = 0.0
    cut_on_a: int = 0
    in_setup_on_a: int = 0
    first_answer_on_b_s: float | None = None
    slowest_answer_after_kill_s: float | None = None
    incidents: int = 0
    calls_without_incident: int = 0
    calls_with_two: int = 0
    left_live: int = 0
    closed_as_lost: int = 0
    reported: int = 0
    reported_missing: int = 0
    runs_on_a: int = 0
    taken_over: int = 0
    first_taken_over_s: float | None = None
    last_taken_over_s: float | None = None
    first_resumed_step_s: float | None = None  # kill -> the first step B took of A's runs (its own schedule)
    steps_twice: int = 0
    notices_twice: int = 0
    runs_unfinished: int = 0
    a_lost_on_b_s: float | None = None
    fanout: FanoutReport | None = None  # None: the spec asked for no fan-out

    def lossless(self) -> bool:
        """Nothing the drill counts as lost: every answered call recorded once, none left live, no reported
        incident missing, no step or notice twice, every run finished; the fan-out (if any) finished with
        nobody missed and no more sent twice than A had in flight."""
        if self.fanout is not None and not self.fanout.lossless():
            return False
        return not (self.calls_without_incident or self.calls_with_two or self.left_live or self.reported_missing
                    or self.steps_twice or self.notices_twice or self.runs_unfinished)

    def answered(self, node: str = "") -> int:
        return sum(1 for c in self.calls if c.answered_wall is not None and (not node or c.node == node))

    def lines(self) -> list[str]:
        s = self.spec
        unanswered = len(self.calls) - self.answered() - self.in_setup_on_a
        return [
            f"failover drill {s.name!r}: {s.calls_per_s} calls/s for {s.seconds:g} s, node A killed at "
            f"{s.kill_after_s:g} s, leases {s.lease_s:g} s",
            f"callers: {len(self.calls)} placed, {self.answered()} answered ({self.answered(NAMES[0])} on A, "
            f"{self.answered(NAMES[1])} on B), {self.cut_on_a} cut on A while talking, {self.in_setup_on_a} in "
            f"setup on A at the kill, {unanswered} unanswered otherwise",
            f"kill -> first call answered on B {_s(self.first_answer_on_b_s)}; slowest INVITE -> answer after "
            f"the kill {_s(self.slowest_answer_after_kill_s)}",
            f"record: {self.incidents} incidents; answered calls without an incident {self.calls_without_incident}, "
            f"with two {self.calls_with_two}; left live {self.left_live}; closed as lost with node A "
            f"{self.closed_as_lost}; reported before the kill {self.reported}, missing {self.reported_missing}",
            f"escalations: {self.runs_on_a} running on A at the kill, {self.taken_over} taken over by B (kill -> "
            f"first {_s(self.first_taken_over_s)}, last {_s(self.last_taken_over_s)}; first step resumed there "
            f"{_s(self.first_resumed_step_s)}); steps started twice "
            f"{self.steps_twice}, notices sent twice {self.notices_twice}, runs unfinished {self.runs_unfinished}",
            f"kill -> node A shown lost on B's /health {_s(self.a_lost_on_b_s)}",
            *(self.fanout.lines() if self.fanout is not None else []),
        ]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
