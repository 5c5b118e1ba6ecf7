"""The escalation benchmark runs end to end (``--quick``) and prints every figure it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_prints_the_figures() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "escalation.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all finished: yes" in out, out
    timers = re.search(r"timers fired: engine ([\d,]+), baseline ([\d,]+)", out)
    assert timers is not None, out
    engine, baseline = (int(x.replace(",", "")) for x in timers.groups())
    assert engine > 0 and engine == baseline  # the baseline sleeps to exactly the deadlines the engine fired
    assert re.search(r"acknowledgements \{'acknowledged': [1-9]", out), out
    assert re.search(r"SMSC stand-in: [1-9]\d* messages", out), out  # the SMS share really went over SMPP
    for figure in ("deadline lateness p50 (ms)", "deadline lateness p99 (ms)", "deadline lateness max (ms)",
                   "deadline -> next sent p99 (ms)", "Python heap per incident (KiB)",
                   "peak RSS growth per incident (KiB)", "store events/s", "store transactions"):
        line = next((x for x in out.splitlines() if x.startswith(figure)), None)
        assert line is not None, f"{figure} missing:\n{out}"
        assert re.search(r"\d+\.\d+|\d[\d,]*", line[len(figure):]), line
