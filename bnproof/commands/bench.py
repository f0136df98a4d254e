"""``bnproof bench``: time the kernels against NumPy, PyTorch and a memory copy."""

from __future__ import annotations

import json
import sys

from . import UsageError

HELP = "time the batch-norm kernels against NumPy, PyTorch and the memory-traffic floor"


def configure(parser) -> None:
    """Add the options of ``bnproof bench``."""
    from bnproof.bench import CASES, MODULE_CASE_NAMES

    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="small shapes, 2 repeats (a smoke run, not a measure)"
    )
    parser.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this case (repeatable): "
        + ", ".join([c.name for c in CASES] + list(MODULE_CASE_NAMES))
        + " (the last four need PyTorch)",
    )
    parser.add_argument(
        "--repeats",
        type=str,
        default=None,
        metavar="N",
        help="timed repeats per measurement, the minimum is reported (module rows: also the "
        "median) (default 7, 2 with --quick)",
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


def _faster(ratio: float) -> str:
    """``ratio`` = torch time / bnproof time, in words."""
    if ratio >= 1:
        return f"bnproof {ratio:.2f}x faster than torch"
    return f"bnproof {1 / ratio:.2f}x slower than torch"


def _median_note(row: dict) -> str:
    """``"; median torch X ms, bnproof Y ms: ..."`` (absent in results without medians)."""
    median = row.get("median_seconds")
    if not median:
        return ""
    return (f"; median torch {median['torch'] * 1e3:.2f} ms, bnproof "
            f"{median['bnproof'] * 1e3:.2f} ms: {_faster(row['median_speedup_vs_torch'])}")


def _format_modules(result: dict) -> list[str]:
    """Lines for the module rows and the training step (absent without PyTorch)."""
    lines = []
    rows = result.get("modules") or []
    if rows:
        lines.append("forward+backward through autograd (module call and .backward(), "
                     "running buffers updated), bnproof.torch against torch.nn:")
        lines.append(f"{'case':<20} {'shape':<18} {'layout':<6} {'torch ms':>9} "
                     f"{'bnproof ms':>11}  ratio (minimum; median of the calls)")
        for row in rows:
            t = row["seconds"]
            lines.append(
                f"{row['case']:<20} {str(tuple(row['shape'])):<18} {row['layout']:<6} "
                f"{t['torch'] * 1e3:>9.2f} {t['bnproof'] * 1e3:>11.2f}  "
                f"{_faster(row['speedup_vs_torch'])}{_median_note(row)}"
            )
        lines.append("")
    step = result.get("train_step")
    if step:
        t = step["seconds"]
        share = step["batch_norm_share"]
        lines.append(
            f"{step['case']}: SGD training step of a small CNN on {tuple(step['shape'])} "
            f"{step['dtype']}: torch {t['torch'] * 1e3:.2f} ms, bnproof "
            f"{t['bnproof'] * 1e3:.2f} ms ({_faster(step['speedup_vs_torch'])}), without "
            f"batch norm {t['no batch norm'] * 1e3:.2f} ms{_median_note(step)}"
        )
        lines.append(
            f"  batch norm's share of a step: torch {share['torch']:.0%}, "
            f"bnproof {share['bnproof']:.0%}"
        )
        lines.append("")
    return lines


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
    lines.extend(_format_modules(result))
    threads = result["threads"]
    lines.append(
        f"first call in a new process: {result['first_call_seconds']:.2f} s; "
        f"numba threads {threads['numba_threads']}, torch threads {threads['torch_threads']}"
    )
    lines.append(
        "floor = fraction of the memory-copy floor (forward 2 passes, backward 3); "
        "minimum of repeats (module rows: also the median)"
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

    from bnproof.bench import CASES, MODULE_CASE_NAMES

    names = [c.name for c in CASES] + list(MODULE_CASE_NAMES)
    for name in args.case or []:
        if name not in names:
            raise UsageError(f"--case {name!r} is unknown; choose from {', '.join(names)}")
    wanted = [name for name in args.case or [] if name in MODULE_CASE_NAMES]
    if wanted:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UsageError(f"--case {wanted[0]!r} needs PyTorch (pip install torch)")
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
