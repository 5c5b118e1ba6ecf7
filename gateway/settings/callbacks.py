"""``[callback]`` and ``[silence]``: calling back callers who hung up before a dispatcher answered, and
what the gateway does about a connected caller who says nothing."""

from __future__ import annotations

import re

from gateway.settings.base import Base

NUMBER_RE = re.compile(r"^\+?[0-9]{2,15}$")


class CallbackConfig(Base, frozen=True):
    """A dispatcher's call-back rings their position first, then dials the caller through the call-out
    trunk (``endpoint``, ``trunk_uri``: the number becomes the URI's user part) showing ``caller_id``
    (the centre's number). ``keep_s``: how long an abandoned call stays on the list when nobody calls
    it back. ``auto_after_s`` > 0: that long after an abandoned call, while no dispatcher is free and
    nobody has tried, the gateway calls the caller itself once, plays the ``callback`` prompt and queues
    the call like an incoming one (0: off)."""

    enabled: bool = True
    endpoint: str = "ecgw-callout"
    trunk_uri: str = "sip:127.0.0.1:5080"
    caller_id: str = "112"
    position_ring_s: float = 20.0
    caller_ring_s: float = 30.0
    keep_s: float = 86_400.0
    auto_after_s: float = 0.0


class SilenceConfig(Base, frozen=True):
    """A caller answered by the gateway in whom Asterisk's talk detection (``TALK_DETECT``) hears no
    speech within ``after_s`` is marked silent and hears the ``silent`` prompt (press a key if you cannot
    speak), repeated every ``repeat_s`` while waiting; the call stays in the queue. ``threshold_ms`` is
    TALK_DETECT's silence threshold, ``energy`` its talking threshold."""

    enabled: bool = True
    after_s: float = 20.0
    repeat_s: float = 45.0
    threshold_ms: int = 1200
    energy: int = 128


def callback_problems(cb: CallbackConfig, silence: SilenceConfig, source: str) -> list[str]:
    p: list[str] = []
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", cb.endpoint):
        p.append(f"{source}: callback.endpoint: expected a PJSIP endpoint name, got {cb.endpoint!r}")
    if not re.match(r"^sips?:[A-Za-z0-9.\-\[\]:]+$", cb.trunk_uri):
        p.append(f"{source}: callback.trunk_uri: expected a SIP URI without user part like sip:10.0.0.5:5060, "
                 f"got {cb.trunk_uri!r}")
    if not NUMBER_RE.match(cb.caller_id):
        p.append(f"{source}: callback.caller_id: expected the centre's number (digits, optional +), "
                 f"got {cb.caller_id!r}")
    for key in ("position_ring_s", "caller_ring_s"):
        if not 1 <= getattr(cb, key) <= 120:
            p.append(f"{source}: callback.{key}: expected 1-120 seconds, got {getattr(cb, key)}")
    if cb.keep_s < 600:
        p.append(f"{source}: callback.keep_s: expected at least 600 seconds, got {cb.keep_s}")
    if cb.auto_after_s != 0 and not 3 <= cb.auto_after_s <= 3600:
        p.append(f"{source}: callback.auto_after_s: expected 0 (off) or 3-3600 seconds, got {cb.auto_after_s}")
    if not 3 <= silence.after_s <= 120 or silence.repeat_s < 10:
        p.append(f"{source}: silence: expected after_s 3-120 and repeat_s at least 10 seconds")
    if not 200 <= silence.threshold_ms <= 10_000 or not 1 <= silence.energy <= 32_767:
        p.append(f"{source}: silence: expected threshold_ms 200-10000 and energy 1-32767")
    return p
