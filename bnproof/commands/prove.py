"""``bnproof prove``: establish the claims of the registry and print the verdicts."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import UsageError
from ._claim_ids import CLAIM_IDS

HELP = ("prove the batch-norm claims, the invariance table and your own claims with SymPy "
        "(symbolic N, then N = 2..n-max)")

#: Default largest concrete batch size.
DEFAULT_N_MAX = 8


#: Largest --n-max: exact expansion at concrete N grows quickly with N.
MAX_N_MAX = 16
#: Groups of claims (``Claim.group``).
GROUPS = ("catalogue", "family", "invariances", "rules", "user")



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
    parser.add_argument(
        "--claims",
        action="append",
        metavar="FILE.py",
        help="a Python file that registers claims of your own (repeatable); they are "
        "proved with the others",
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=GROUPS,
        help="prove only the claims of this group (repeatable): the batch-norm catalogue, "
        "the rest of the normalization family, the invariance table, the audit's pass-through "
        "rules, or claims registered "
        "by --claims files",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="processes to prove claims in (default 1)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="seconds per claim; a claim still running then is reported unproved",
    )


def _table(rows: list[dict]) -> str:
    header = ("claim", "verdict", "expected", "condition", "symbolic N", "methods", "seconds")
    body = [
        (
            r["id"],
            r["verdict"],
            r["expected"],
            r.get("condition") or "-",
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


def _refuse_unknown(ids, valid: tuple[str, ...]) -> None:
    unknown = [i for i in ids if i not in valid]
    if unknown:
        raise UsageError(
            f"unknown claim id(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
        )


def run(args: argparse.Namespace) -> int:
    """Prove the selected claims; 0 when each has its expected verdict, else 1."""
    if args.workers < 1 or args.workers > 64:
        raise UsageError(f"--workers {args.workers} must be between 1 and 64")
    if args.time_limit is not None and not 0 < args.time_limit < float("inf"):
        raise UsageError(f"--time-limit {args.time_limit:g} must be a number of seconds > 0")
    from pathlib import Path

    files = [Path(f) for f in args.claims or ()]
    for f in files:
        if f.suffix != ".py" or not f.is_file():
            raise UsageError(f"--claims {str(f)!r} must be an existing Python file (.py)")
    if not files:  # only the built-in claims: refuse a bad id before SymPy loads
        _refuse_unknown(args.claim or [], CLAIM_IDS)
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
    groups = args.group or list(GROUPS)
    what = (f"{len(args.claim)} claim(s)" if args.claim
            else "the claims of group(s) " + ", ".join(groups))
    say(f"proving {what} for symbolic N, then N = 2..{args.n_max}")
    from bnproof.symbolic import CLAIMS, load_claims, prove_all

    for f in files:
        try:
            load_claims(f)
        except Exception as exc:
            raise UsageError(f"--claims {str(f)!r} failed to load: {type(exc).__name__}: "
                             f"{exc}") from exc
    ids = args.claim or [cid for cid, c in CLAIMS.items() if c.group in groups]
    _refuse_unknown(ids, tuple(CLAIMS))

    def progress(claim_id: str, done: int, total: int) -> None:
        say(f"{done}/{total} {claim_id}")

    extra = {}
    if args.workers > 1 or args.time_limit is not None:
        extra = {"workers": args.workers, "time_limit": args.time_limit,
                 "modules": [str(f) for f in files]}
    proofs = prove_all(ids, n_max=args.n_max, progress=progress, **extra)
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
