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
    parser.add_argument("--fresh", action="store_true",
                        help="prove every claim in this run instead of reusing the proofs an "
                        "earlier run stored with the same code digest")


class _Progress:
    """Print one line per stage step on stderr, with elapsed seconds.

    Lines may come from two threads (the proofs' progress is forwarded from a
    second process); a lock keeps them whole. While nothing new happens for
    :data:`HEARTBEAT_SECONDS`, the current step is repeated with the time, so
    a long step (Numba compiling the kernels on a first run) never looks hung.
    """

    HEARTBEAT_SECONDS = 10.0

    def __init__(self) -> None:
        import threading

        self.start = time.perf_counter()
        self.last: tuple[str, int] | None = None
        self.line = ""
        self.printed = self.start
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._heartbeat, name="bnproof-heartbeat",
                                       daemon=True)
        self.thread.start()

    def _print(self, text: str) -> None:
        now = time.perf_counter()
        print(f"[{now - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)
        self.printed = now

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        with self.lock:
            if (stage, done) == self.last and not detail:
                return
            self.last = (stage, done)
            extra = f" {detail}" if detail else ""
            self.line = f"{stage} {done}/{total}{extra}"
            self._print(self.line)

    def _heartbeat(self) -> None:
        while not self.stopped.wait(1.0):
            with self.lock:
                if self.line and time.perf_counter() - self.printed >= self.HEARTBEAT_SECONDS:
                    self._print(f"{self.line} (still working)")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


def _open_in_browser(index: Path) -> None:
    """Open ``index`` in a web browser, or say plainly that none could be started."""
    import webbrowser

    try:
        opened = webbrowser.open(index.as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        print(f"bnproof report: could not open a web browser here; open {index} in one",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Collect the results, write the report atomically, return the exit code.

    Returns 0 when every claim reached its expected verdict and every
    cross-check passed, 1 otherwise (the report is written either way).
    """
    import importlib.util

    from bnproof._atomic import check_output_dir

    if args.seed < 0:
        raise UsageError(f"--seed {args.seed} must be >= 0")
    for f in args.claims or ():
        if not f.endswith(".py") or not Path(f).is_file():
            raise UsageError(f"--claims {f!r} must be an existing Python file (.py)")
    # Refuse a bad --out before minutes of work, not after.
    target = check_output_dir(args.out)
    # Check the report extra is installed without importing it (seconds).
    for name in ("matplotlib", "sklearn"):
        if importlib.util.find_spec(name) is None:
            raise UsageError(
                f"the report needs {name}; install the report extra: "
                "pip install 'bnproof[report]'"
            )

    progress = _Progress()
    try:
        progress("start", 0, 1, f"-> {target}/")
        from bnproof._atomic import atomic_output_dir
        from bnproof.report import collect, write_report

        extra = {"claims_files": args.claims} if args.claims else {}
        if args.fresh:
            extra["fresh"] = True
        data = collect(quick=args.quick, seed=args.seed, progress=progress, **extra)
        progress("write", 0, 1, str(target))
        with atomic_output_dir(target) as tmp:
            write_report(data, tmp)
        elapsed = time.perf_counter() - progress.start
        progress("write", 1, 1)
    finally:
        progress.close()

    index = Path(target) / "index.html"
    print(f"report written to {target}/ in {elapsed:.1f} s: index.html, report.md, report.tex")
    failures = data.failures
    for failure in failures:
        print(f"bnproof report: {failure}", file=sys.stderr)
    if args.open:
        _open_in_browser(index)
    return 1 if failures else 0
