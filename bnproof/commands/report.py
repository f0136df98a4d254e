"""``bnproof report``: write the derivation report (HTML, Markdown, LaTeX)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import UsageError

HELP = "write the derivation report (index.html with MathML, report.md, report.tex)"

#: Default output folder (relative to the current folder).
DEFAULT_OUT = "bnproof-report"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``bnproof report``."""
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder, replaced only when the new report is complete "
        f"(default: {DEFAULT_OUT}/)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller proofs and experiments (a test run, not the full report)",
    )
    parser.add_argument(
        "--open", action="store_true", help="open index.html in a web browser when done"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the experiments (default 0)")
    parser.add_argument("--claims", action="append", metavar="FILE.py",
                        help="a Python file registering claims of your own (repeatable)")


class _Progress:
    """Print one line per stage step on stderr, with elapsed seconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last: tuple[str, int] | None = None

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        if (stage, done) == self.last:
            return
        self.last = (stage, done)
        elapsed = time.perf_counter() - self.start
        extra = f" {detail}" if detail else ""
        print(f"[{elapsed:6.1f}s] {stage} {done}/{total}{extra}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Collect the results, write the report atomically, return the exit code.

    Returns 0 when every claim reached its expected verdict and every
    cross-check passed, 1 otherwise (the report is written either way).
    """
    from bnproof._atomic import check_output_dir

    if args.seed < 0:
        raise UsageError(f"--seed {args.seed} must be >= 0")
    for f in args.claims or ():
        if not f.endswith(".py") or not Path(f).is_file():
            raise UsageError(f"--claims {f!r} must be an existing Python file (.py)")
    # Refuse a bad --out before minutes of work, not after.
    target = check_output_dir(args.out)
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the report needs {exc.name}; install the report extra: pip install 'bnproof[report]'"
        ) from None

    from bnproof._atomic import atomic_output_dir
    from bnproof.report import collect, write_report

    progress = _Progress()
    extra = {"claims_files": args.claims} if args.claims else {}
    data = collect(quick=args.quick, seed=args.seed, progress=progress, **extra)
    progress("write", 0, 1, str(target))
    with atomic_output_dir(target) as tmp:
        write_report(data, tmp)
    elapsed = time.perf_counter() - progress.start
    progress("write", 1, 1)

    index = Path(target) / "index.html"
    print(f"report written to {target}/ in {elapsed:.1f} s: index.html, report.md, report.tex")
    failures = data.failures
    for failure in failures:
        print(f"bnproof report: {failure}", file=sys.stderr)
    if args.open:
        import webbrowser

        webbrowser.open(index.as_uri())
    return 1 if failures else 0
