"""``bnproof invariances``: the invariance table of the normalization family."""

from __future__ import annotations

import argparse
import json
import sys

from . import UsageError

HELP = ("decide which transformations each normalization is invariant to "
        "(Ba, Kiros & Hinton 2016, Table 1, extended), with proofs")

#: Worker processes by default (SymPy uses one core each).
DEFAULT_WORKERS = 2
#: Seconds each cell may take by default before it is reported unproved.
DEFAULT_TIME_LIMIT = 120.0
#: Short labels of the columns for the printed table.
SHORT = {
    "weight-matrix-rescaling": "W scale",
    "weight-matrix-recentering": "W recenter",
    "weight-vector-rescaling": "w_c scale",
    "dataset-rescaling": "data scale",
    "dataset-recentering": "data recenter",
    "case-rescaling": "case scale",
    "bias-shared": "bias shared",
    "bias-per-feature": "bias/feature",
    "bias-per-group": "bias/group",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``invariances`` options to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="K",
                        help=f"processes to prove cells in (default {DEFAULT_WORKERS})")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                        help="seconds per cell before it counts as unproved (default "
                        f"{DEFAULT_TIME_LIMIT:g})")


def _cell_text(cell: dict) -> str:
    if cell["verdict"] == "invariant":
        return "yes" + (" (eps=0)" if cell["condition"] == "eps = 0" else "")
    return {"not invariant": "no", "unproved": "?"}[cell["verdict"]]


def _render(table: dict, columns: list[str]) -> str:
    header = ["", *(SHORT.get(c, c) for c in columns)]
    body = [[row, *(_cell_text(cells[c]) if c in cells else "-" for c in columns)]
            for row, cells in table.items()]
    widths = [max(len(r[k]) for r in (header, *body)) for k in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prove every cell; 0 when each is proved or refuted, else 1."""
    if args.workers < 1 or args.workers > 64:
        raise UsageError(f"--workers {args.workers} must be between 1 and 64")
    if not args.time_limit > 0 or args.time_limit == float("inf"):
        raise UsageError(f"--time-limit {args.time_limit:g} must be a number of seconds > 0")
    from bnproof.symbolic import CLAIMS, COLUMNS, cells, prove_all, table

    ids = [cid for _, _, cid in cells()]

    def progress(claim_id: str, done: int, total: int) -> None:
        print(f"[{done}/{total}] {claim_id}", file=sys.stderr, flush=True)

    proofs = prove_all(ids, workers=args.workers, time_limit=args.time_limit,
                       progress=progress)
    by_id = {p.claim_id: p for p in proofs}
    result = table(by_id)
    if args.json:
        print(json.dumps({"table": result}, indent=2))
    else:
        print(_render(result, list(COLUMNS)))
        print("\nyes: invariant (proved; '(eps=0)': only at eps = 0); no: not invariant "
              "(refuted by a counterexample); ?: unproved")
        symbolic = sum(cell["symbolic"] for cells in result.values()
                       for cell in cells.values())
        invariant = sum(cell["verdict"] == "invariant" for cells in result.values()
                        for cell in cells.values())
        print(f"every cell is decided at concrete sizes; {symbolic} of the {invariant} "
              "invariant cells are also proved for symbolic sizes (symbolic: true); a "
              "counterexample at concrete sizes refutes a cell at every size; see "
              "'bnproof prove --claim ID' for a cell's derivation")
        for p in proofs:
            if p.verdict == "proved" and not p.symbolic_n:
                print(f"\n{p.claim_id}: proved at the concrete sizes only: " + next(
                    (c.detail for c in p.checks if c.method == "symbolic-sizes"),
                    "no symbolic-size route"))
        for p in proofs:
            note = CLAIMS[p.claim_id].note
            if p.verdict == "unproved":
                print(f"\n{p.claim_id}: unproved: {p.reason}")
            elif note:
                print(f"\n{p.claim_id}: {note}")
    return 0 if all(p.verdict in ("proved", "refuted") for p in proofs) else 1
