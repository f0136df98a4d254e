"""``bnproof prove``: establish the claims of the registry and print the verdicts."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import UsageError

HELP = "prove the batch-norm claims with SymPy (symbolic N, then N = 2..n-max)"

#: Default largest concrete batch size.
DEFAULT_N_MAX = 8


#: Largest --n-max: exact expansion at concrete N grows quickly with N.
MAX_N_MAX = 16

#: The ids of :data:`bnproof.symbolic.CLAIMS`, kept here so that a bad
#: ``--claim`` is refused before SymPy is imported (about a second); a test
#: checks they equal the registry's.
CLAIM_IDS = (
    "bias-cancels-train",
    "bias-cancels-center-only",
    "bias-survives-eval",
    "loss-grad-bias-zero",
    "backward-closed-form",
    "jacobian-form",
    "shift-invariance",
    "scale-invariance",
    "outside-gradient-drift",
    "outside-gradient-drift-center-only",
    "weight-grad-orthogonal",
    "rms-bias-cancels",
)

def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``prove`` options to ``parser``."""
    parser.add_argument(
        "--claim",
        action="append",
        metavar="ID",
        help="prove only this claim (repeatable); default: every claim",
    )
    parser.add_argument(
        "--n-max",
        type=int,
        default=DEFAULT_N_MAX,
        metavar="N",
        help=f"concrete checks run for N = 2..N (default {DEFAULT_N_MAX}, 2..{MAX_N_MAX})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _table(rows: list[dict]) -> str:
    header = ("claim", "verdict", "expected", "symbolic N", "methods", "seconds")
    body = [
        (
            r["id"],
            r["verdict"],
            r["expected"],
            "yes" if r["symbolic_n"] else "no",
            ", ".join(r["methods"]),
            f"{r['seconds']:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(str(v)) for v in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prove the selected claims; 0 when each has its expected verdict, else 1."""
    ids = args.claim or list(CLAIM_IDS)
    unknown = [i for i in ids if i not in CLAIM_IDS]
    if unknown:
        raise UsageError(
            f"unknown claim id(s) {', '.join(map(repr, unknown))}; valid: {', '.join(CLAIM_IDS)}"
        )
    if args.n_max < 2:
        raise UsageError(f"--n-max {args.n_max} is too small: concrete checks need N >= 2")
    if args.n_max > MAX_N_MAX:
        raise UsageError(
            f"--n-max {args.n_max} is too large: the full expansion grows with N, and "
            f"N = 2..{MAX_N_MAX} takes minutes already (use at most {MAX_N_MAX})"
        )
    start = time.perf_counter()
    tty = sys.stderr.isatty()

    def say(text: str) -> None:
        line = f"[{time.perf_counter() - start:5.1f}s] {text}"
        if tty:
            print("\r" + line.ljust(70), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    # Progress within a second: importing SymPy alone takes about that long.
    say(f"proving {len(ids)} claim(s) for symbolic N, then N = 2..{args.n_max}")
    from bnproof.symbolic import CLAIMS, prove_all

    def progress(claim_id: str, done: int, total: int) -> None:
        say(f"{done}/{total} {claim_id}")

    proofs = prove_all([CLAIMS[i].id for i in ids], n_max=args.n_max, progress=progress)
    if tty:
        print(file=sys.stderr)
    rows = []
    for proof in proofs:
        claim = CLAIMS[proof.claim_id]
        row = proof.summary()
        row["statement"] = claim.statement
        row["expected"] = claim.expected
        row["as_expected"] = proof.verdict == claim.expected
        rows.append(row)
    if args.json:
        print(json.dumps({"n_max": args.n_max, "claims": rows}, indent=2))
    else:
        print(_table(rows))
        for r in rows:
            if r["reason"]:
                print(f"\n{r['id']}: {r['verdict']}: {r['reason']}")
        bad = [r["id"] for r in rows if not r["as_expected"]]
        print(
            f"\n{len(rows) - len(bad)} of {len(rows)} claims have their expected verdict"
            + (f"; not: {', '.join(bad)}" if bad else "")
        )
    return 0 if all(r["as_expected"] for r in rows) else 1
