"""The registry of claims: the catalogue, the invariance table and user claims.

:data:`CLAIMS` is a read-only, live view of the registry: the catalogue
fills it at import, and :func:`register` (or :func:`register_claim`, its
builder form) adds a user's claims, e.g. from a module passed to
``bnproof prove --claims FILE.py``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ._proof import VERDICTS, Claim, Proof

__all__ = ["CLAIMS", "load_claims", "register", "register_claim"]

_REGISTRY: dict[str, Claim] = {}
#: Every registered claim by id, in registration order (read-only view).
CLAIMS: Mapping[str, Claim] = MappingProxyType(_REGISTRY)

_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def register(claim: Claim, *, replace: bool = False) -> Claim:
    """Add ``claim`` to the registry and return it.

    Parameters
    ----------
    claim : Claim
        The claim; its ``prove(n_max)`` must return a :class:`Proof`.
    replace : bool, default False
        Allow replacing a claim with the same id (e.g. re-running a user
        module); otherwise a repeated id is an error.

    Raises
    ------
    TypeError
        If ``claim`` is not a :class:`Claim`.
    ValueError
        For an id that is not lowercase words joined by ``-``, a repeated
        id, or an unknown expected verdict.
    """
    if not isinstance(claim, Claim):
        raise TypeError(f"register takes a Claim, got {type(claim).__name__}")
    if not _ID.fullmatch(claim.id):
        raise ValueError(
            f"claim id {claim.id!r} must be lowercase letters and digits joined by '-' "
            "(e.g. 'my-bias-claim')"
        )
    if claim.expected not in VERDICTS:
        raise ValueError(f"expected verdict {claim.expected!r} is not one of {VERDICTS}")
    if claim.id in _REGISTRY and not replace:
        raise ValueError(
            f"a claim with id {claim.id!r} is already registered; choose another id "
            "(or pass replace=True)"
        )
    _REGISTRY[claim.id] = claim
    return claim


def register_claim(
    id: str,
    statement: str,
    build,
    *,
    free: Sequence[str] = (),
    expected: str = "proved",
    symbolic: bool = True,
    symmetric: bool = False,
    latex: str = "",
    assumptions: Sequence[str] = (),
    section: str = "",
    replace: bool = False,
) -> Claim:
    """Register a claim written as a builder, proved by :func:`establish`.

    Parameters
    ----------
    id : str
        The claim's id (lowercase words joined by ``-``).
    statement : str
        One plain-text sentence.
    build : callable
        ``build(batch, indices) -> [Identity | Nonzero, ...]`` (see
        :func:`bnproof.symbolic.establish`).
    free, symbolic, symmetric
        Passed to :func:`establish`.
    expected : {"proved", "refuted", "unproved"}, default "proved"
        The verdict the claim should get (a negative control: ``"refuted"``).
    latex, assumptions, section
        Shown by the report.
    replace : bool, default False
        Replace an already registered claim with this id.

    Returns
    -------
    Claim
    """
    from ._engine import establish

    if not callable(build):
        raise TypeError(f"build must be callable(batch, indices), got {build!r}")

    def prove_claim(n_max: int) -> Proof:
        return establish(id, build, free=free, n_max=n_max, symbolic=symbolic,
                         symmetric=symmetric)

    return register(
        Claim(id=id, statement=statement, latex=latex or r"\text{" + id + "}",
              assumptions=tuple(assumptions) or ("as stated",), expected=expected,
              prove=prove_claim, symbolic_n_expected=symbolic, section=section,
              group="user"),
        replace=replace,
    )


def load_claims(path: str | Path) -> list[str]:
    """Run a user's claims module (``FILE.py``); return the ids it registered.

    Parameters
    ----------
    path : str or Path
        A Python file that calls :func:`register` / :func:`register_claim`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a ``.py`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"claims file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise ValueError(f"claims file {str(path)!r} must be a Python file (.py)")
    before = set(_REGISTRY)
    name = f"bnproof_user_claims_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        for cid in set(_REGISTRY) - before:  # leave nothing half-registered
            del _REGISTRY[cid]
        raise
    return [cid for cid in _REGISTRY if cid not in before]
