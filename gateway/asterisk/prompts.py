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
DIGITS = {  # a configured key spoken inside a prompt ({offer_1402})
    "kk": ["нөл", "бір", "екі", "үш", "төрт", "бес", "алты", "жеті", "сегіз", "тоғыз"],
    "ru": ["ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"],
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
}


def load_texts(path: Path = PROMPTS_FILE, offer_1402_digit: str = "") -> dict[str, dict[str, str]]:
    """The prompt texts, ``{offer_1402}`` replaced by ``offer_1402_digit`` as a word of each language
    (no digit: prompts naming it are left out; the IVR does not play them then)."""
    texts: dict[str, dict[str, str]] = tomllib.loads(path.read_text(encoding="utf-8"))  # type: ignore[assignment]
    found = {}
    for name, by_lang in texts.items():
        if any("{offer_1402}" in text for text in by_lang.values()):
            if not offer_1402_digit.isdigit() or len(offer_1402_digit) != 1:
                continue
            by_lang = {lang: text.replace("{offer_1402}", DIGITS.get(lang, DIGITS["en"])[int(offer_1402_digit)])
                       for lang, text in by_lang.items()}
        found[name] = by_lang
    return found


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


def generate(dest: Path, texts: dict[str, dict[str, str]] | None = None, offer_1402_digit: str = "") -> int:
    """Write ``dest/<lang>/<name>.wav`` for every prompt (the language menu in all languages);
    ``offer_1402_digit``: the 102 menu's key for the 1402 line (``[ivr]``), spoken in its prompt.

    Returns how many files exist afterwards; existing files with the same text are kept.
    """
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        log.warning("espeak-ng or sox missing: IVR prompts will be silent")
        return 0
    texts = texts or load_texts(offer_1402_digit=offer_1402_digit)
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
