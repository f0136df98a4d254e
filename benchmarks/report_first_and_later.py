"""Time ``bnproof report`` in a fresh clone: the first run, then later runs.

The repository is cloned into a temporary folder (so Numba's kernel cache,
which lives beside the sources, starts empty) and bnproof's result cache
points at an empty temporary folder; ``bnproof report`` then runs once cold
and ``--later`` more times warm, each in a fresh process with the clone on
``PYTHONPATH``. Goals (issue 18, two cores): first run under 60 s, later
runs under 20 s. Run from the repository root::

    python benchmarks/report_first_and_later.py [--later 2] [--repo .]

and read the wall time of each run and the stage lines of the last one.
Commits only: uncommitted changes are not in the clone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_GOAL_SECONDS = 60.0
LATER_GOAL_SECONDS = 20.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--later", type=int, default=2, help="warm runs after the first")
    parser.add_argument("--repo", default=".", help="repository to clone (default: .)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bnproof-report-times-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(Path(args.repo).resolve()), str(clone)],
                       check=True)
        env = {**os.environ, "PYTHONPATH": str(clone),
               "BNPROOF_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("NUMBA_CACHE_DIR", None)
        for run in range(1 + args.later):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "bnproof", "report", "--out", str(Path(tmp) / "out")],
                cwd=tmp, env=env, capture_output=True, text=True, check=False,
            )
            wall = time.perf_counter() - start
            label = "first" if run == 0 else f"later {run}"
            goal = FIRST_GOAL_SECONDS if run == 0 else LATER_GOAL_SECONDS
            print(f"{label:8s} {wall:6.1f} s (goal {goal:.0f} s) exit {proc.returncode}",
                  flush=True)
            if proc.returncode not in (0, 1):
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
        stages = [line for line in proc.stderr.splitlines()
                  if (" 0/" in line or " 1/1" in line or "reused" in line or "write" in line)
                  and "(still working)" not in line]
        print("stages of the last run:\n  " + "\n  ".join(stages[-20:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
