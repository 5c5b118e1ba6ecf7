"""The delivery curve of a drill's Exercise alert (pure: no I/O, no clock).

Input: the alert's progress as the drill sampled it (``GET /alerts/{id}/progress``), each sample the
seconds since the second officer sent it and the per-channel counts (``queued``, ``sending``, ``sent``,
``delivered``, ``failed``, ...). A job counts as done once it left (``sent``) or was confirmed
(``delivered``); the two are disjoint. A channel's total is its jobs in the last sample (the fan-out
adds jobs as it goes, so earlier totals are short); jobs moved to a recipient's next channel count on
that channel. Time to x %: the first sample whose done count reaches x % of that total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec

DRILL_PREFIX = "drill:"  # the gateway's key for a drill channel (gateway.warning.policy)
COUNTED = ("queued", "sending", "sent", "delivered", "failed")
Counts = Mapping[str, object]  # one channel's counts in a progress event (JSON as sent)
Sample = tuple[float, Mapping[str, Counts]]  # (seconds since send, channel -> counts)


class CurvePoint(msgspec.Struct, frozen=True, array_like=True):
    """One sample of one channel; JSON ``[at_s, done, failed]``."""

    at_s: float
    done: int  # sent + delivered
    failed: int


class ChannelDelivery(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    total: int
    done: int
    failed: int
    to_50_s: float | None
    to_90_s: float | None
    to_100_s: float | None
    curve: list[CurvePoint]


class DeliveryReport(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: str
    event: str
    status: str
    zones: list[str]
    drafted_by: str
    approved_by: str
    recipients_generated: int  # 0: the gateway's own recipient list was used
    targeted: int
    state: str  # the alert's state when sampling stopped
    sent_after_s: float  # since the drill started
    channels: list[ChannelDelivery]


def _count(counts: Counts, key: str) -> int:
    value = counts.get(key, 0)
    return value if isinstance(value, int) else 0


def channel_name(key: str) -> str:
    return key.removeprefix(DRILL_PREFIX)


def time_to(curve: Sequence[CurvePoint], total: int, fraction: float) -> float | None:
    """Seconds until ``fraction`` of ``total`` jobs were done (None if never, or no jobs)."""
    if total <= 0:
        return None
    need = math.ceil(fraction * total - 1e-9)
    return next((p.at_s for p in curve if p.done >= need), None)


def channel_curves(samples: Sequence[Sample]) -> list[ChannelDelivery]:
    """Per channel (sorted by name): its curve from ``samples`` (sorted by time, a 0 point first)."""
    ordered = sorted(samples, key=lambda s: s[0])
    names = sorted({channel_name(k) for _, channels in ordered for k in channels})
    out = []
    for name in names:
        curve = [CurvePoint(at_s=0.0, done=0, failed=0)]
        last: Counts = {}
        for at_s, channels in ordered:
            counts = next((c for k, c in channels.items() if channel_name(k) == name), None)
            if counts is None:
                continue
            last = counts
            point = CurvePoint(at_s=round(at_s, 3), done=_count(counts, "sent") + _count(counts, "delivered"),
                               failed=_count(counts, "failed"))
            if (curve[-1].done, curve[-1].failed) != (point.done, point.failed):
                curve.append(point)
        total = sum(_count(last, k) for k in COUNTED)
        if total == 0:
            continue
        final = curve[-1]
        out.append(ChannelDelivery(channel=name, total=total, done=final.done, failed=final.failed,
                                   to_50_s=time_to(curve, total, 0.5), to_90_s=time_to(curve, total, 0.9),
                                   to_100_s=time_to(curve, total, 1.0), curve=curve))
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def delivery_text(d: DeliveryReport) -> list[str]:
    """The summary lines of the warning phase."""
    who = f"drafted by {d.drafted_by}, sent by {d.approved_by}"
    made = f", {d.recipients_generated} drill recipients" if d.recipients_generated else ""
    lines = [f"  warning: {d.status} {d.event} {d.alert_id or '(not drafted)'} to {', '.join(d.zones)} "
             f"({who}{made}): {d.targeted} targeted, now {d.state}; sent {d.sent_after_s:.1f} s into the drill"]
    for c in d.channels:
        lines.append(f"    {c.channel:<10} {c.done}/{c.total} done, {c.failed} failed; 50 % {_s(c.to_50_s)}, "
                     f"90 % {_s(c.to_90_s)}, 100 % {_s(c.to_100_s)}")
    return lines
