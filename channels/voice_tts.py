"""Spoken warnings: the rendered voice text as an 8 kHz mono WAV that Asterisk can play.

The speech itself is the IVR prompts' (``gateway.asterisk.prompts``: espeak-ng in the kk/ru/en
voice, sox to 8 kHz mono 16-bit). Files are named by a hash of what was said and how, so the same
warning to 10,000 residents is synthesised once, and a restart finds the file already there.
Synthesis runs in a worker thread (espeak-ng takes ~0.1-1 s) and at most two at a time: the
machine is shared with the call intake.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path

import msgspec
import trio

from channels.base import Language
from gateway.asterisk import prompts
from gateway.errors import ChannelError

# Part of every file name: change it when the way speech is made changes (voice, speed, format).
SPEECH_VERSION = "espeak-ng-175-8k-1"
SUBDIR = "callout"  # below the instance's sounds directory, next to the IVR prompts' language folders
MAX_CHARS = 2000  # ~2.5 minutes of speech per repetition; a longer warning is a drafting mistake
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


class Speech(msgspec.Struct, frozen=True, kw_only=True):
    """One synthesised message: where it is on disk, how Asterisk names it, how long it lasts."""

    path: Path
    media: str  # ARI media URI, e.g. sound:/srv/ecgw/default/sounds/callout/3f2a...
    duration_s: float


def clean(text: str) -> str:
    """The text as it will be spoken: one line, no control or bidi characters, and never
    starting with '-' (it is a command-line argument to espeak-ng)."""
    spoken = " ".join(_CONTROL.sub(" ", text).split())
    return " " + spoken if spoken.startswith("-") else spoken


def text_problem(text: str, language: str) -> str | None:
    """Why this text cannot be called out in this language (None if it can): no retry helps."""
    spoken = clean(text)
    if not spoken.strip():
        return "the voice text is empty"
    if len(spoken) > MAX_CHARS:
        return f"the voice text has {len(spoken)} characters; at most {MAX_CHARS} can be called out"
    if language not in prompts.VOICES:
        return f"no voice for language {language!r}"
    return None


def file_key(text: str, language: Language) -> str:
    """A stable file name for this speech: same words, voice and settings give the same name."""
    digest = hashlib.sha256(f"{SPEECH_VERSION}\0{language}\0{text}".encode()).hexdigest()
    return f"{language}-{digest[:32]}"


def asterisk_view(path: Path) -> str:
    """``path`` as Asterisk sees it: below the nearest ancestor that is Asterisk's chroot (it holds
    its own usr/sbin/asterisk, see ``gateway.asterisk.sandbox``), else unchanged (a system Asterisk
    sees the host's paths)."""
    path = path.absolute()
    for parent in path.parents:
        if parent != Path("/") and (parent / "usr" / "sbin" / "asterisk").exists():
            return "/" + str(path.relative_to(parent))
    return str(path)


def wav_duration(path: Path) -> float:
    """Seconds of audio in a WAV file; raises ChannelError if it is not a readable WAV."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (OSError, EOFError, wave.Error) as exc:
        raise ChannelError(f"speech file {path} is not a readable WAV: {exc}") from exc


class Synthesizer:
    """Makes and caches speech files in ``<sounds_dir>/callout``; Asterisk sees ``sounds_dir`` as
    ``asterisk_dir`` (default: worked out by ``asterisk_view``). Owns nothing that needs closing."""

    def __init__(self, sounds_dir: Path, asterisk_dir: str | None = None) -> None:
        self.sounds_dir = sounds_dir / SUBDIR
        self.asterisk_dir = (asterisk_dir or asterisk_view(sounds_dir)).rstrip("/") + "/" + SUBDIR
        self._locks: dict[str, trio.Lock] = {}
        self._workers = trio.CapacityLimiter(2)

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("espeak-ng") and shutil.which("sox"))

    async def speech(self, text: str, language: Language) -> Speech:
        """The speech file for ``text`` in ``language``, synthesised now unless cached.

        Raises ChannelError when ``text_problem`` finds one, or espeak-ng/sox are missing or fail.
        """
        problem = text_problem(text, language)
        if problem:
            raise ChannelError(problem)
        spoken = clean(text)
        key = file_key(spoken, language)
        path = self.sounds_dir / f"{key}.wav"
        # One synthesis per file even when a batch asks for the same message many times at once.
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            if not path.exists():
                if not self.available():
                    raise ChannelError("espeak-ng or sox is not installed: warnings cannot be spoken")
                await trio.to_thread.run_sync(_synthesise, spoken, language, path, limiter=self._workers)
        return Speech(path=path, media=f"sound:{self.asterisk_dir}/{key}", duration_s=wav_duration(path))


def _for_asterisk(path: Path, *, directory: bool) -> None:
    """Readable by Asterisk's own account whatever the umask: the gateway runs with 027, and a directory
    it made would shut Asterisk (another account) out. Others are kept out one level up: the sandbox's
    instance directory is its account's own, 0750."""
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755 if directory else 0o644)


def _synthesise(text: str, language: Language, path: Path) -> None:
    """Write the WAV under a temporary name and rename it, so a reader never sees half a file."""
    partial = path.with_name(path.stem + ".partial.wav")
    try:
        _for_asterisk(path.parent, directory=True)
        prompts._speak([(text, language)], partial)
        _for_asterisk(partial, directory=False)
        os.replace(partial, path)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()[-300:]
        raise ChannelError(f"speech synthesis failed ({exc.cmd[0]} exited {exc.returncode}): {detail}") from exc
    except OSError as exc:
        raise ChannelError(f"cannot write speech file {path}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
