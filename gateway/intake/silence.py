"""When a connected caller counts as silent (pure: no I/O, no clock of its own).

Theory of operation: Asterisk's talk detection (``TALK_DETECT`` in the dialplan) reports when the
caller starts talking. From the gateway's answer, a caller in whom no speech was heard for
``after_s`` is silent: the incident is marked and the caller hears the "press a key if you cannot
speak" prompt, again every ``repeat_s`` while still silent and waiting. A key pressed after that
prompt confirms it (the caller is there and cannot speak); speech heard later ends it (the mark
stays: a dispatcher should know the caller was silent). Nothing here ever ends a call::

    listening  --speech-->            heard (never silent)
    listening  --after_s passed-->    silent: Mark + Prompt
    silent     --repeat_s passed-->   Prompt
    silent     --key-->               confirmed (KeyPressed once)
    silent     --speech-->            heard (SpeechAfterSilence)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """Mark the incident silent (once)."""

    after_s: float


@dataclass(frozen=True)
class Prompt:
    """Play the "press a key if you cannot speak" prompt now."""


@dataclass(frozen=True)
class KeyPressed:
    """The silent caller pressed a key after the prompt: there is someone who cannot speak."""

    digit: str


@dataclass(frozen=True)
class SpeechAfterSilence:
    """Speech heard from a caller marked silent."""

    silent_for_s: float


Decision = Mark | Prompt | KeyPressed | SpeechAfterSilence


class Silence:
    """One call's silence rule. Times are the driver's monotonic clock, in seconds."""

    def __init__(self, after_s: float, repeat_s: float) -> None:
        self.after_s = after_s
        self.repeat_s = repeat_s
        self.answered_at: float | None = None
        self.heard = False
        self.silent = False
        self.confirmed = False
        self.prompted_at: float | None = None

    def answered(self, at: float) -> None:
        """The gateway answered the call: the caller can be heard from now."""
        if self.answered_at is None:
            self.answered_at = at

    def due(self) -> float | None:
        """When the next prompt is due (None: no prompt, speech was heard or the call is not answered)."""
        if self.heard or self.answered_at is None:
            return None
        if self.prompted_at is None:
            return self.answered_at + self.after_s
        return self.prompted_at + self.repeat_s

    def check(self, now: float) -> list[Decision]:
        """What to do at ``now`` (call it when ``due`` has passed; early or late calls are safe)."""
        due = self.due()
        if due is None or now < due:
            return []
        decisions: list[Decision] = []
        if not self.silent:
            self.silent = True
            decisions.append(Mark(round(now - (self.answered_at or now), 3)))
        self.prompted_at = now
        return [*decisions, Prompt()]

    def talking(self, at: float) -> list[Decision]:
        """Asterisk heard the caller start talking."""
        if self.heard:
            return []
        self.heard = True
        if self.silent and self.answered_at is not None:
            return [SpeechAfterSilence(round(at - self.answered_at, 3))]
        return []

    def key(self, digit: str) -> list[Decision]:
        """A DTMF key from the caller; it counts once, after a silence prompt."""
        if not self.silent or self.heard or self.confirmed or self.prompted_at is None:
            return []
        self.confirmed = True
        return [KeyPressed(digit[:1])]
