"""Texts to 112 by SMS: what a person's message and number are, and what we answer (pure, no I/O).

People who cannot speak (deaf, hard of hearing, hiding from an attacker) text 112. Whatever
arrives is kept: control characters are removed and flagged, an over-long text is cut at the
configured limit and flagged with its real length, and an empty text (an MMS with only a
picture, a pocket text) is still a report. Only the sender decides whether we can answer.
"""

from __future__ import annotations

import re

import msgspec

from gateway.protocols import ani
from gateway.protocols.aml import AmlReport
from gateway.protocols.caller import Caller
from gateway.protocols.text import repair

MAX_SENDER_CHARS = 32
_KAZAKH_LETTERS = frozenset("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
# Shown to a person in distress: short, both languages, and "call if you can" because a call is faster.
ACK = {
    "kk": "112: хабарламаңыз жетті. Диспетчер осы нөмірге жауап береді. Мүмкін болса, қоңырау шалыңыз.",
    "ru": "112: сообщение получено. Диспетчер ответит на этот номер. Если можете, позвоните.",
}


class CleanText(msgspec.Struct, frozen=True, kw_only=True):
    """A message as we keep it; ``length`` is the length received, ``flags`` what was odd."""

    text: str
    length: int
    flags: tuple[str, ...] = ()


class Sender(msgspec.Struct, frozen=True, kw_only=True):
    """Who texted: the Caller record and whether an SMS can go back to them."""

    caller: Caller
    reporter: str
    can_reply: bool


def clean_text(text: str, max_chars: int) -> CleanText:
    """Keep what a person wrote, repaired as every text is (``text.repair``: line breaks kept, control and
    format characters such as bidi overrides dropped), the rest cut at ``max_chars``."""
    kept, flags = repair(text, lines=True)
    if not kept:
        flags.append("empty")
    if len(kept) > max_chars:
        flags.append("truncated")
        kept = kept[:max_chars]
    return CleanText(text=kept, length=len(text), flags=tuple(flags))


def sender(raw: str) -> Sender:
    """The sender as an ANI record. A number we cannot make E.164 (an alphanumeric operator
    sender, a short code, garbage) is kept raw and flagged; nobody can be answered there."""
    printable = "".join(ch for ch in raw if ch.isprintable()).strip()
    caller = ani.normalise(printable[:MAX_SENDER_CHARS], "")
    flags = list(caller.flags)
    if printable != raw.strip():
        flags.append("sender_control_chars")
    if len(printable) > MAX_SENDER_CHARS:
        flags.append("sender_too_long")
    if not caller.number:
        flags.append("sender_not_a_number")
    caller = msgspec.structs.replace(caller, flags=flags)
    reporter = f"sms:{caller.number or caller.raw_number or 'unknown'}"
    return Sender(caller=caller, reporter=reporter, can_reply=bool(caller.number))


def language(text: str, default: str) -> str:
    """kk when Kazakh-only letters appear, ru for other Cyrillic, else ``default``."""
    if any(ch in _KAZAKH_LETTERS for ch in text):
        return "kk"
    if _CYRILLIC.search(text):
        return "ru"
    return default


def acknowledgement(first: str) -> str:
    """The automatic answer in Kazakh and Russian, ``first`` language first."""
    order = ["kk", "ru"] if first != "ru" else ["ru", "kk"]
    return "\n".join(ACK[lang] for lang in order)


def is_aml(text: str) -> bool:
    """An AML SMS (the handset's automatic location message), however malformed the rest is."""
    return text.lstrip().startswith('A"ML=')


class HeldAml(msgspec.Struct, frozen=True, kw_only=True):
    """An AML report waiting for its caller's incident."""

    number: str
    report: AmlReport
    held_at: float


class PendingAml:
    """AML reports that came before (or without) an incident for their number.

    A handset sends AML as soon as the caller dials, often before the call reaches us; a report
    is held for ``window_s`` so the incident opened just after can still take it. Bounded: beyond
    ``limit`` the oldest report is pushed out (the caller logs it). Times are the caller's clock.
    """

    def __init__(self, window_s: float, limit: int = 1000) -> None:
        self.window_s, self.limit = window_s, limit
        self._held: list[HeldAml] = []

    def __len__(self) -> int:
        return len(self._held)

    def holds(self, number: str) -> bool:
        return any(h.number == number for h in self._held)

    def hold(self, number: str, report: AmlReport, now: float) -> list[HeldAml]:
        """Keep a report; returns the ones pushed out to stay within ``limit``."""
        self._held.append(HeldAml(number=number, report=report, held_at=now))
        pushed, self._held = self._held[:-self.limit], self._held[-self.limit:]
        return pushed

    def take(self, number: str, now: float) -> list[HeldAml]:
        """The reports held for ``number`` and not yet expired, oldest first; no longer held."""
        mine = [h for h in self._held if h.number == number and now - h.held_at <= self.window_s]
        self._held = [h for h in self._held if h not in mine]  # expired ones stay for expire() to report
        return mine

    def expire(self, now: float) -> list[HeldAml]:
        """Reports held longer than ``window_s``, removed and returned (for the log)."""
        old = [h for h in self._held if now - h.held_at > self.window_s]
        self._held = [h for h in self._held if now - h.held_at <= self.window_s]
        return old
