"""The layout's promises, checked on the running interpreter (the import-layer contract itself is
``lint-imports`` in ``scripts/check``): loading the settings or a protocol pulls in no driver library."""

from __future__ import annotations

import json
import subprocess
import sys

DRIVERS = ("trio", "trio_asyncio", "anyio", "asyncari", "panoramisk", "httpx", "aiohttp", "hypercorn", "starlette",
           "telegram", "twilio", "aiosmtplib", "aiosmtpd", "pymodbus", "serial", "smpplib", "sqlite3", "channels")


def loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_settings_load_no_driver_library() -> None:
    assert loaded_by("import gateway.settings; gateway.settings.load()") & set(DRIVERS) == set()


def test_protocols_load_no_driver_library() -> None:
    every = ("import importlib, pkgutil, gateway.protocols as p\n"
             "for m in pkgutil.iter_modules(p.__path__): importlib.import_module(f'gateway.protocols.{m.name}')")
    assert loaded_by(every) & set(DRIVERS) == set()
