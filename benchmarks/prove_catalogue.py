"""Time the whole claim catalogue, cold: a fresh ``bnproof prove --json`` process.

Every registered claim (the batch-norm catalogue, the rest of the
normalization family and the invariance table), proved over ``--workers``
processes (default 2, one per core). Goal: under 60 s on a 2-core machine
(imports included). Run::

    python benchmarks/prove_catalogue.py [--repeats 3] [--n-max 8] [--workers 2]

and read the wall time of each run, its minimum, the CPU seconds per group
of claims, and the slowest claims.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

GOAL_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-max", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    walls = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "bnproof", "prove", "--json", "--n-max", str(args.n_max),
             "--workers", str(args.workers)],
            capture_output=True, text=True, check=False,
        )
        walls.append(time.perf_counter() - start)
        if out.returncode != 0:
            print(out.stdout[-2000:], out.stderr[-2000:])
            print(f"bnproof prove exited with {out.returncode}")
            return 1
    claims = json.loads(out.stdout)["claims"]
    print(f"catalogue: {len(claims)} claims, N = 2..{args.n_max}, {args.workers} worker "
          "process(es), fresh process each run")
    from bnproof.symbolic import CLAIMS

    groups: dict[str, float] = {}
    for row in claims:
        group = CLAIMS[row["id"]].group if row["id"] in CLAIMS else "?"
        groups[group] = groups.get(group, 0.0) + row["seconds"]
    print("seconds per group (sum over claims, last run): " + ", ".join(
        f"{g} {s:.1f}" for g, s in groups.items()))
    print("wall seconds per run: " + ", ".join(f"{w:.1f}" for w in walls))
    best = min(walls)
    verdict = "met" if best < GOAL_SECONDS else "NOT met"
    print(f"best {best:.1f} s; goal {GOAL_SECONDS:.0f} s: {verdict}")
    print("slowest claims (last run):")
    for row in sorted(claims, key=lambda r: -r["seconds"])[:5]:
        print(f"  {row['id']:<40} {row['seconds']:6.2f} s  {row['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
