"""The ``bnproof`` command line: ``prove``, ``bench``, ``drift`` and ``report``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from ._atomic import OutputDirError
from .commands import UsageError

#: Subcommand name -> module implementing it (``HELP``, ``configure``, ``run``).
COMMANDS = {
    "prove": "bnproof.commands.prove",
    "bench": "bnproof.commands.bench",
    "drift": "bnproof.commands.drift",
    "report": "bnproof.commands.report",
    "invariances": "bnproof.commands.invariances",
    "audit": "bnproof.commands.audit",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="bnproof",
        description="Batch normalization, derived and proved with SymPy, "
        "computed with Numba kernels.",
    )
    parser.add_argument("--version", action="version", version=f"bnproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS.items():
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(cmd)
        cmd.set_defaults(_run=module.run, _parser=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Exit codes: 0 success, 1 a check failed (e.g. a claim without its
    expected verdict), 2 a usage error (bad value, unwritable folder),
    130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except (UsageError, OutputDirError) as exc:
        args._parser.print_usage(sys.stderr)
        print(f"bnproof {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bnproof {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
