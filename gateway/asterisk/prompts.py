"""Voice prompts generated at provisioning time with espeak-ng and sox (8 kHz mono WAV).

A missing tool leaves prompts missing, which is allowed: the gateway's IVR treats a prompt
that cannot be played as silence and the call goes on to a dispatcher.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

from gateway.errors import AsteriskError
from gateway.settings.base import PROJECT

log = logging.getLogger(__name__)
PROMPTS_FILE = PROJECT / "dialplans" / "prompts.toml"
VOICES = {"kk": "kk", "ru": "ru", "en": "en"}


def load_texts(path: Path = PROMPTS_FILE) -> dict[str, dict[str, str]]:
    return tomllib.loads(path.read_text(encoding="utf-8"))  # type: ignore[return-value]


def _speak(parts: list[tuple[str, str]], target: Path) -> None:
    """Speak each (text, language) with that language's voice, joined into one 8 kHz file."""
    with tempfile.TemporaryDirectory() as tmp:
        raws = []
        for i, (text, lang) in enumerate(parts):
            raw = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", VOICES[lang], "-s", "175", "-w", str(raw), text],
                           check=True, capture_output=True)
            raws.append(str(raw))
        subprocess.run(["sox", *raws, "-r", "8000", "-c", "1", "-b", "16", str(target)],
                       check=True, capture_output=True)


def generate(dest: Path, texts: dict[str, dict[str, str]] | None = None) -> int:
    """Write ``dest/<lang>/<name>.wav`` for every prompt (the language menu in all languages).

    Returns how many files exist afterwards; existing files with the same text are kept.
    """
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        log.warning("espeak-ng or sox missing: IVR prompts will be silent")
        return 0
    texts = texts or load_texts()
    count = 0
    try:
        for name, by_lang in texts.items():
            for lang in VOICES:
                if name == "language":  # the menu offering languages speaks each in its own voice
                    parts = [(t, code) for code, t in by_lang.items() if code in VOICES]
                else:
                    parts = [(by_lang[lang], lang)] if by_lang.get(lang) else []
                if not parts:
                    continue
                text = " | ".join(t for t, _ in parts)
                target = dest / lang / f"{name}.wav"
                stamp = target.with_suffix(".txt")
                if target.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == text:
                    count += 1
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _speak(parts, target)
                stamp.write_text(text, encoding="utf-8")
                count += 1
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AsteriskError(f"cannot generate prompts in {dest}: {exc}") from exc
    return count
