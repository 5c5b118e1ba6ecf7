"""Modules stay readable: at most MAX_MODULE lines each, and no function over MAX_FUNCTION lines.

Run by ``scripts/check``; prints every offender with its size and exits 1 if there is one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE = 500
MAX_FUNCTION = 50
ROOTS = ("gateway", "channels", "sim")


def offenders(root: Path) -> list[str]:
    found = []
    for package in ROOTS:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n")
            if lines > MAX_MODULE:
                found.append(f"{path.relative_to(root)}: {lines} lines (at most {MAX_MODULE})")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    size = (node.end_lineno or node.lineno) - node.lineno + 1
                    if size > MAX_FUNCTION:
                        found.append(f"{path.relative_to(root)}:{node.lineno}: {node.name}() is {size} lines "
                                     f"(at most {MAX_FUNCTION})")
    return found


def main() -> int:
    found = offenders(Path(__file__).resolve().parent.parent)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
