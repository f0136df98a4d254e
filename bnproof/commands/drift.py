"""``bnproof drift``: re-run section 2's drift experiment, write JSON and figures."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from . import UsageError

HELP = "re-run section 2: the bias drift when normalization is outside the gradient step"

#: Default output folder (relative to the current folder).
DEFAULT_OUT = "bnproof-drift"

#: Scenario names (kept here so that ``bnproof --help`` imports no NumPy);
#: a test checks they equal :data:`bnproof.experiments.drift.SCENARIOS`.
SCENARIO_NAMES = ("bias-only", "train-all", "precision")
#: Floating-point types the experiment trains in.
DTYPE_NAMES = ("float64", "float32")
#: Figure formats written for every figure.
FIGURE_FORMATS = ("png", "svg")
#: Resolution of the PNG figures: 100 dpi makes the 7-inch figures 700 px wide.
PNG_DPI = 100


#: Largest --steps: a million steps of every run already take hours.
MAX_STEPS = 1_000_000
#: Largest --lr: the sweep multiplies it, and near 1e308 the rates themselves
#: overflow (float32 runs are NaN long before that, which the summary shows).
MAX_LR = 1e6

def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``bnproof drift``."""
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"scenario to run, repeatable: {', '.join(SCENARIO_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--steps", type=int, metavar="N",
        help=f"gradient steps of every b-only and training run, 1..{MAX_STEPS} "
        "(default: the experiment's plan, 300 / 120 / 80)",
    )
    parser.add_argument(
        "--lr", type=float, metavar="X",
        help=f"base learning rate, > 0 and <= {MAX_LR:g}; the sweep multiplies it (default 0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of every random draw, >= 0 (default 0)")
    parser.add_argument(
        "--dtype", action="append", metavar="DTYPE",
        help=f"floating-point type to train in, repeatable: {', '.join(DTYPE_NAMES)} "
        "(default: both)",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR",
        help=f"output folder for results.json and the figures, replaced only when the "
        f"run is complete (default: {DEFAULT_OUT}/)",
    )
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON on stdout instead of a summary")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced run of a few seconds (fewer steps and settings)")


def _check_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Validate every option before any work; raise :class:`UsageError`."""
    scenarios = args.scenario or list(SCENARIO_NAMES)
    for name in scenarios:
        if name not in SCENARIO_NAMES:
            raise UsageError(
                f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)}"
            )
    dtypes = args.dtype or list(DTYPE_NAMES)
    for name in dtypes:
        if name not in DTYPE_NAMES:
            raise UsageError(f"unsupported --dtype {name!r}; choose from {', '.join(DTYPE_NAMES)}")
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise UsageError(f"--steps {args.steps} must be between 1 and {MAX_STEPS}")
    if args.lr is not None and not (math.isfinite(args.lr) and 0.0 < args.lr <= MAX_LR):
        raise UsageError(
            f"--lr {args.lr} must be a number > 0 and <= {MAX_LR:g} (e.g. --lr 0.5); "
            "larger rates overflow the sweep's rates and every loss"
        )
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed} must be >= 0")
    return scenarios, dtypes


class _ProgressBar:
    """A one-line progress bar on stderr (used only when stderr is a terminal)."""

    WIDTH = 30

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{stage:>10} [{bar}] {done}/{total} {elapsed:6.1f}s")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Lines:
    """Progress as plain lines on stderr (not a terminal): each stage, then every few seconds."""

    EVERY_SECONDS = 5.0

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stage = None
        self.printed = -math.inf

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage or done == total or now - self.printed >= self.EVERY_SECONDS:
            print(f"[{now - self.start:6.1f}s] {stage} {done}/{total}", file=sys.stderr,
                  flush=True)
            self.stage, self.printed = stage, now

    def close(self) -> None:
        pass


def _json_safe(value):
    """Replace non-finite floats by ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(result: dict, out: Path, files: list[str], elapsed: float) -> list[str]:
    lines = [f"drift results written to {out}/ in {elapsed:.1f} s: {', '.join(files)}"]
    bias = result.get("bias-only")
    if bias:
        lines.append("only b trains (max over channels; loss change in nats):")
        for run in bias["runs"]:
            s = run["summary"]
            lines.append(
                f"  {run['norm']:>12} {run['mode']:>7} {run['dtype']}: "
                f"|b_T - b_0| {s['b_displacement_final_max_abs']:.3g}, "
                f"residual {s['linear_residual_in_rounding_units']:.3g} rounding units, "
                f"|loss change| {s['loss_change_max_abs_nats']:.3g}"
            )
    train = result.get("train-all")
    if train:
        lines.append("learning-rate sweep (runs that blew up / runs):")
        for row in train["sweep"]["table"]:
            lines.append(
                f"  lr {row['lr']:<6g} {row['norm']:>12} {row['mode']:>7} {row['dtype']}: "
                f"{row['blew_up']}/{row['runs']}"
            )
    precision = result.get("precision")
    if precision:
        lines.append("float32 output error at |mean| / std (max over outputs, float32 ulp):")
        for row in precision["accuracy"]["rows"]:
            err = row["max_err_ulp"]
            lines.append(f"  {row['offset_over_std']:<8g} {row['method']:>16}: "
                         + ("non-finite" if err is None else f"{err:.3g}"))
    return lines


def run(args: argparse.Namespace) -> int:
    """Run the experiment, write ``results.json`` and the figures atomically.

    Returns 0 on success. Bad options and unusable output folders raise
    before any work, so nothing is written then.
    """
    from bnproof._atomic import atomic_output_dir, check_output_dir

    scenarios, dtypes = _check_args(args)
    # Refuse a bad --out before a minute of work, not after.
    target = check_output_dir(args.out)
    import importlib.util

    # Check the report extra is installed without importing it (seconds).
    for name in ("matplotlib", "sklearn"):
        if importlib.util.find_spec(name) is None:
            raise UsageError(
                f"bnproof drift needs {name}; install the report extra: "
                "pip install 'bnproof[report]'"
            )

    start = time.perf_counter()
    bar = _ProgressBar() if sys.stderr.isatty() else _Lines()
    # Progress within a second, before NumPy, Numba and the data set load.
    bar("starting", 0, len(scenarios))
    from bnproof.experiments.drift import run_drift
    from bnproof.plots import drift_figures

    try:
        result = run_drift(
            scenarios, steps=args.steps, lr=args.lr, seed=args.seed, dtypes=dtypes,
            quick=args.quick, progress=bar,
        )
    finally:
        bar.close()
    result = _json_safe(result)
    figures = drift_figures(result)
    files = ["results.json"]
    with atomic_output_dir(target) as tmp:
        text = json.dumps(result, indent=1, allow_nan=False)
        (tmp / "results.json").write_text(text + "\n", encoding="utf-8")
        for name, fig in figures.items():
            for fmt in FIGURE_FORMATS:
                fig.savefig(tmp / f"{name}.{fmt}", dpi=PNG_DPI, metadata=_metadata(fmt))
                files.append(f"{name}.{fmt}")
    elapsed = time.perf_counter() - start
    if args.json:
        print(text)
    else:
        print("\n".join(_summary(result, target, files, elapsed)))
    failed = [c for c in (result.get("bias-only") or {}).get("checks", []) if not c["passed"]]
    for check in failed:
        print(f"bnproof drift: {check['norm']} {check['mode']} {check['dtype']}: expected "
              f"that {check['expectation']}, and it did not", file=sys.stderr)
    return 1 if failed else 0


def _metadata(fmt: str) -> dict:
    """Figure metadata without a creation date, so reruns give identical files."""
    return {"Date": None} if fmt == "svg" else {}
