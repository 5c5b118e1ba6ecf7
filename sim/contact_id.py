"""An alarm panel's side of a Contact ID call for the simulator: messages and their DTMF audio.

A panel waits for the receiver's handshake (1400 Hz then 2300 Hz, 100 ms each), then dials each
16-digit message as DTMF, with 50-60 ms of tone and 50-60 ms of silence per digit as SIA DC-05
asks, and waits for the 1400 Hz kiss-off before sending the next one. A WAV file cannot listen,
so ``panel_audio`` lays the messages out with the silences a real exchange with Asterisk's
AlarmReceiver leaves. Audio is 8 kHz 16-bit mono PCM, made with plain math. Pure apart from
``write_wav``.
"""

from __future__ import annotations

import math
import os
import struct
import wave
from collections.abc import Sequence
from pathlib import Path

from gateway.protocols.contact_id import Qualifier, encode

SAMPLE_RATE = 8000
TONE_MS = 55  # DC-05: 50-60 ms; the middle leaves room for clock error on either side
GAP_MS = 55
LEVEL = 0.3  # peak of each of the two tones as a fraction of full scale: together they cannot clip
RAMP_MS = 2  # raised-cosine edges: a hard start would spread energy into the other DTMF bins
# Asterisk answers, waits answait (1250 ms), plays its 300 ms handshake; the panel then waits 250-300 ms.
LEAD_IN_MS = 2000
# After each message Asterisk waits 200 ms and plays 900 ms of kiss-off; the panel waits 250-300 ms more.
KISSOFF_WAIT_MS = 1500

DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


def panel_message(
    account: str, code: str | int, qualifier: Qualifier = "new", partition: int = 1, zone: int = 1
) -> str:
    """A checksummed 16-digit Contact ID message in DTMF keys, as the panel dials it.

    ``account`` is in hex notation ("1234", "B2E4"). Raises ``ContactIdError`` for fields that cannot be sent.
    """
    return encode(account, code, qualifier, partition, zone)


def dtmf_samples(
    digits: str,
    *,
    tone_ms: float = TONE_MS,
    gap_ms: float = GAP_MS,
    sample_rate: int = SAMPLE_RATE,
    level: float = LEVEL,
) -> list[int]:
    """16-bit samples keying ``digits`` (0-9 * # A-D), each a tone then a silence. Raises ``ValueError``."""
    unknown = sorted({d for d in digits.upper() if d not in DTMF_FREQUENCIES})
    if unknown:
        raise ValueError(f"no DTMF key for {', '.join(map(repr, unknown))} in {digits!r}")
    if tone_ms <= 0 or gap_ms < 0 or sample_rate <= 0:
        raise ValueError(f"tone {tone_ms} ms, gap {gap_ms} ms, rate {sample_rate} Hz: all must be positive")
    if not 0 < level <= 0.5:
        raise ValueError(f"level {level} must be in (0, 0.5] so that two tones together cannot clip")
    gap = silence(gap_ms, sample_rate=sample_rate)
    out: list[int] = []
    for digit in digits.upper():
        low, high = DTMF_FREQUENCIES[digit]
        out += _dual_tone(low, high, _count(tone_ms, sample_rate), sample_rate, level)
        out += gap
    return out


def panel_audio(
    messages: Sequence[str],
    *,
    lead_in_ms: float = LEAD_IN_MS,
    kissoff_wait_ms: float = KISSOFF_WAIT_MS,
    sample_rate: int = SAMPLE_RATE,
) -> list[int]:
    """A whole call from the panel's side: silence for the handshake, then each message with the kiss-off pause."""
    out = silence(lead_in_ms, sample_rate=sample_rate)
    for i, message in enumerate(messages):
        if i:
            out += silence(kissoff_wait_ms, sample_rate=sample_rate)
        out += dtmf_samples(message, sample_rate=sample_rate)
    return out


def silence(ms: float, *, sample_rate: int = SAMPLE_RATE) -> list[int]:
    """``ms`` milliseconds of digital silence."""
    return [0] * _count(ms, sample_rate)


def write_wav(path: str | os.PathLike[str], samples: Sequence[int], *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write ``samples`` as a 16-bit mono PCM WAV file at ``path`` and return the path."""
    target = Path(path)
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))  # WAV is little-endian on every host
    return target


def _dual_tone(low: int, high: int, count: int, sample_rate: int, level: float) -> list[int]:
    peak = level * 32767
    ramp = min(_count(RAMP_MS, sample_rate), count // 2)
    step_low, step_high = 2 * math.pi * low / sample_rate, 2 * math.pi * high / sample_rate
    out = []
    for i in range(count):
        edge = min(i, count - 1 - i)
        gain = 0.5 - 0.5 * math.cos(math.pi * (edge + 0.5) / ramp) if edge < ramp else 1.0
        out.append(round(peak * gain * (math.sin(step_low * i) + math.sin(step_high * i))))
    return out


def _count(ms: float, sample_rate: int) -> int:
    return round(ms * sample_rate / 1000)
