"""``bnproof audit``: find, prove and (optionally) remove dead parameters of a model."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile
from pathlib import Path

from . import UsageError

HELP = "find parameters of a PyTorch model whose effect provably cancels (exit 1 if any is dead)"

DTYPES = ("float32", "float64")
#: Largest number of entries of one example input (keeps a typo from
#: allocating gigabytes).
MAX_INPUT_ENTRIES = 50_000_000


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-shape {text!r} is not a comma-separated list of sizes, e.g. 2,3,32,32"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--input-shape {text!r}: every size must be >= 1")
    total = 1
    for d in dims:
        total *= d
    if total > MAX_INPUT_ENTRIES:
        raise argparse.ArgumentTypeError(
            f"--input-shape {text!r} has {total} entries; at most {MAX_INPUT_ENTRIES}"
        )
    return dims


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``audit`` options to ``parser``."""
    parser.add_argument(
        "factory",
        metavar="FILE.py:FACTORY | package.module:FACTORY",
        help="a function (or class) that returns the model, called without arguments",
    )
    parser.add_argument(
        "--input-shape", action="append", type=_shape, required=True, metavar="2,3,32,32",
        help="shape of one input of forward, batch first (repeat for several inputs)",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype of the model and the inputs (default float32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--fix", metavar="OUT.pt", type=Path,
                        help="save the state dict of the fixed model (dead biases removed)")


def _split(spec: str) -> tuple[str, str]:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise UsageError(
            f"{spec!r} is not FILE.py:FACTORY or package.module:FACTORY (e.g. "
            "models.py:make_unet)"
        )
    if target.endswith(".py") and not Path(target).is_file():
        raise UsageError(f"{target} does not exist")
    return target, name


def _load(target: str, name: str):
    try:
        if target.endswith(".py"):
            spec = importlib.util.spec_from_file_location("_bnproof_audited", target)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except SystemExit as exc:
        raise UsageError(f"cannot import {target}: it called exit({exc.code})") from None
    except Exception as exc:  # noqa: BLE001 - the user's file: report, do not crash
        raise UsageError(f"cannot import {target}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise UsageError(f"{target} has no callable {name}")
    try:
        return factory()
    except SystemExit as exc:
        raise UsageError(f"{target}:{name}() called exit({exc.code}) instead of returning "
                         "a model") from None
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{target}:{name}() failed: {type(exc).__name__}: {exc}") from None


def _check_input_count(model, given: int) -> None:
    """Reject a forward that needs more (or takes fewer) inputs than --input-shape gives."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return  # no signature to read: the trace reports what goes wrong
    kinds = [p.kind for p in signature.parameters.values()]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    needed = sum(1 for p in signature.parameters.values()
                 if p.kind in positional and p.default is inspect.Parameter.empty)
    at_most = (None if inspect.Parameter.VAR_POSITIONAL in kinds
               else sum(1 for k in kinds if k in positional))
    if given < needed:
        raise UsageError(f"the model's forward needs {needed} inputs; --input-shape was given "
                         f"{given} time(s): give one --input-shape per input")
    if at_most is not None and given > at_most:
        raise UsageError(f"the model's forward takes at most {at_most} input(s); "
                         f"--input-shape was given {given} times")


def table(report, notes=()) -> str:
    """Return the findings as a table for people, with totals."""
    header = ("parameter", "shape", "kind", "dead dims", "normalization", "path", "claims")
    rows = [
        (
            f.parameter,
            "x".join(str(s) for s in f.shape),
            f.kind,
            f"{f.redundant_dims}/{f.dims}" if f.kind == "dead" else f"{f.redundant_dims} scales",
            f.normalization,
            " -> ".join(f.through) or "direct",
            ", ".join(f.claims),
        )
        for f in report.findings
    ]
    lines = []
    if rows:
        widths = [max(len(str(v)) for v in col) for col in zip(header, *rows, strict=True)]
        for k, row in enumerate((header, *rows)):
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                         .rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    dead = sum(1 for f in report.findings if f.kind == "dead")
    scale = len(report.findings) - dead
    lines.append(
        f"{dead} dead parameter(s): {report.redundant_dims_total} of {report.parameters_total} "
        f"trainable parameter entries are redundant in training mode; {scale} scale-invariant "
        "weight(s)."
    )
    for f in report.findings:
        if f.kind == "scale-invariant":
            lines.append("Scale-invariant weights: " + f.why.split(": ", 1)[1])
            break
    for problem in report.inconsistencies:
        lines.append(f"internal inconsistency (finding dropped): {problem}")
    for note in notes:
        lines.append(f"fix: {note.parameter} {note.action} ({note.detail})")
    return "\n".join(lines)


def _save(state: dict, path: Path, torch) -> None:
    """Write all or nothing: a temporary file in the same folder, then a rename."""
    folder = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=".bnproof-", suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    """Audit the model; 0 when nothing is found, 1 when something is, 2 on errors."""
    target, name = _split(args.factory)
    if args.fix is not None:
        folder = args.fix.resolve().parent
        if not folder.is_dir():
            raise UsageError(f"--fix {args.fix}: folder {folder} does not exist")
        if args.fix.is_dir():
            raise UsageError(f"--fix {args.fix} is a folder; give a file name such as fixed.pt")
    try:
        import torch
    except ImportError:
        raise UsageError(
            "bnproof audit needs PyTorch: pip install torch (the CPU wheel is enough)"
        ) from None
    from bnproof.audit import CaptureError, audit, fix, fix_notes

    sys.path.insert(0, os.getcwd())
    model = _load(target, name)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"{target}:{name}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    _check_input_count(model, len(args.input_shape))
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=gen, dtype=dtype) for shape in args.input_shape]
    print(f"bnproof audit: tracing and auditing {target}:{name}", file=sys.stderr)
    try:
        report = audit(model, *inputs)
    except (CaptureError, TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    notes = []
    if args.fix is not None:
        fixed = fix(model, report, *inputs)
        notes = fix_notes(model, report)
        _save(fixed.state_dict(), args.fix, torch)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(table(report, notes))
        if args.fix is not None:
            print(f"fixed state dict written to {args.fix}")
    # Scale-invariant weights are information (every network with batch
    # normalization has them); the exit status gates on dead parameters.
    return 1 if any(f.kind == "dead" for f in report.findings) else 0
