"""``bnproof bench``: time the kernels against NumPy, PyTorch and a memory copy."""

from __future__ import annotations

import json
import sys

from . import UsageError

HELP = "time the batch-norm kernels against NumPy, PyTorch and the memory-traffic floor"


def configure(parser) -> None:
    """Add the options of ``bnproof bench``."""
    from bnproof.bench import CASES

    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="small shapes, 2 repeats (a smoke run, not a measure)"
    )
    parser.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this case (repeatable): " + ", ".join(c.name for c in CASES),
    )
    parser.add_argument(
        "--repeats",
        type=str,
        default=None,
        metavar="N",
        help="timed repeats per measurement, the minimum is reported (default 7, 2 with --quick)",
    )


def _repeats(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        repeats = int(value)
    except ValueError:
        raise UsageError(f"--repeats must be a whole number >= 1, got {value!r}") from None
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    return repeats


def _fmt_ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(result: dict) -> str:
    """Render :func:`bnproof.bench.run_bench`'s result as a plain-text table."""
    lines = []
    header = (
        f"{'case':<14} {'impl':<16} {'op':<9} {'ms':>8} {'GB/s':>7} {'floor':>6} "
        f"{'vs numpy':>9} {'vs torch':>9}"
    )
    for case in result["cases"]:
        lines.append(
            f"{case['case']}: shape {tuple(case['shape'])} {case['dtype']} {case['layout']}, "
            f"memcpy {case['memcpy_seconds'] * 1e3:.2f} ms ({case['memcpy_gb_per_s']:.1f} GB/s), "
            f"copy into a new array {case['fresh_copy_seconds'] * 1e3:.2f} ms"
        )
        lines.append(
            "  copies: "
            + ", ".join(
                f"{name} {t * 1e3:.2f} ms"
                for name, t in case["memcpy_seconds_by_method"].items()
            )
            + " (the fastest is the floor)"
        )
        lines.append(header)
        for row in case["rows"]:
            lines.append(
                f"{row['case']:<14} {row['impl']:<16} {row['op']:<9} "
                f"{row['seconds'] * 1e3:>8.2f} {row['gb_per_s']:>7.1f} "
                f"{row['fraction_of_floor']:>6.0%} {_fmt_ratio(row['speedup_vs_numpy']):>9} "
                f"{_fmt_ratio(row['speedup_vs_torch']):>9}"
            )
        fb = case["forward_backward_speedup_vs_torch"]
        if fb is not None:
            if fb >= 1:
                lines.append(f"forward+backward: bnproof {_fmt_ratio(fb)} faster than torch")
            else:
                lines.append(f"forward+backward: bnproof {_fmt_ratio(1 / fb)} slower than torch")
        lines.append("")
    threads = result["threads"]
    lines.append(
        f"first call in a new process: {result['first_call_seconds']:.2f} s; "
        f"numba threads {threads['numba_threads']}, torch threads {threads['torch_threads']}"
    )
    lines.append(
        "floor = fraction of the memory-copy floor (forward 2 passes, backward 3); "
        "minimum of repeats"
    )
    return "\n".join(lines)


def run(args) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``)."""
    repeats = _repeats(args.repeats)
    from bnproof._provenance import provenance
    from bnproof.bench import run_bench

    def progress(case, impl):
        if not args.json:
            print(f"  {case}: {impl} ...", file=sys.stderr, flush=True)

    from bnproof.bench import CASES

    names = [c.name for c in CASES]
    for name in args.case or []:
        if name not in names:
            raise UsageError(f"--case {name!r} is unknown; choose from {', '.join(names)}")
    if not args.json:  # progress within a second: the first kernels may compile for a while
        chosen = args.case or names
        print(f"bench: {len(chosen)} case(s), {'quick' if args.quick else 'full'} run; "
              "the first call loads or compiles the kernels", file=sys.stderr, flush=True)
    result = run_bench(quick=args.quick, repeats=repeats, cases=args.case, progress=progress)
    result["provenance"] = provenance()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0
