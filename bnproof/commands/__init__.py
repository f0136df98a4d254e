"""Subcommands of the ``bnproof`` command line.

Each module here exposes ``HELP`` (one line), ``configure(parser)`` and
``run(args) -> int``. Modules import heavy libraries inside ``run`` only, so
``bnproof --help`` stays fast.
"""


class UsageError(Exception):
    """A bad command-line value; the CLI prints the message and exits with 2."""
