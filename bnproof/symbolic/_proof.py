"""Plain-data records of claims and their proofs.

These records are what the maths hands to the report and the CLI: they hold
SymPy expressions and numbers, never formatting or file handles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import sympy

Verdict = Literal["proved", "refuted", "unproved"]
VERDICTS: tuple[Verdict, ...] = ("proved", "refuted", "unproved")


@dataclass(frozen=True)
class Step:
    """One step of a derivation, shown in order by the report.

    Parameters
    ----------
    title : str
        A short sentence saying what the step does ("differentiate the
        batch mean with respect to b").
    expr : sympy.Basic or None
        The expression the step produced (an equation is a ``sympy.Eq``).
        ``None`` for a step that is prose only.
    note : str
        Optional plain-text remark (method used, why a rewrite is sound).
    """

    title: str
    expr: sympy.Basic | None = None
    note: str = ""

    def __str__(self) -> str:
        """Return ``title: expression`` in plain text (``mu = ...``, no LaTeX names)."""
        from ._text import plain

        text = self.title if self.expr is None else f"{self.title}: {plain(self.expr)}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Check:
    """One independent check of a claim, e.g. full expansion at a concrete N.

    Parameters
    ----------
    method : str
        The method's name, e.g. ``"expand-N=4"`` or ``"rationals-N=5"``.
    passed : bool
        Whether the check agreed with the claim.
    detail : str
        What was compared, or the counterexample when it failed.
    """

    method: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Proof:
    """The outcome of proving one claim.

    Parameters
    ----------
    claim_id : str
        The id of the claim in the registry.
    verdict : {"proved", "refuted", "unproved"}
        ``proved`` when SymPy reached a literal zero or ``True`` *and* every
        concrete check agreed; ``refuted`` when a counterexample was found;
        ``unproved`` when neither could be established (see ``reason``).
    symbolic_n : bool
        Whether the claim is proved for a symbolic batch size N: ``True``
        only for a ``proved`` verdict whose symbolic route reduced every
        identity (``False`` when only concrete N were covered, and for
        ``refuted`` and ``unproved``). A :class:`Nonzero` item is shown by
        an exact nonzero witness at every concrete N and every index tuple
        checked; for symbolic N it is only shown not to be the zero
        function (a nonzero the sum rules refuse makes ``symbolic_n``
        ``False``), which does not exclude an isolated N beyond ``n_max``
        where it vanishes.
    methods : tuple of str
        The methods used, e.g. ``("symbolic-N", "expand-N=2..8",
        "rationals-N=2..8")``.
    steps : tuple of Step
        The derivation, step by step.
    checks : tuple of Check
        The independent checks and their outcomes.
    seconds : float
        Wall time of the proof.
    reason : str
        For ``unproved``: why; for ``refuted``: the counterexample.
    condition : str
        For a ``proved`` claim that holds only under a condition, the
        condition (e.g. ``"eps = 0"``); empty otherwise.
    """

    claim_id: str
    verdict: Verdict
    symbolic_n: bool
    methods: tuple[str, ...]
    steps: tuple[Step, ...] = ()
    checks: tuple[Check, ...] = ()
    seconds: float = 0.0
    reason: str = ""
    condition: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def summary(self) -> dict[str, object]:
        """Return the JSON-serialisable fields (everything but the SymPy steps).

        Returns
        -------
        dict
            ``id``, ``verdict``, ``symbolic_n``, ``methods``, ``seconds``,
            ``reason`` and ``checks`` (a list of ``{method, passed, detail}``).
        """
        return {
            "id": self.claim_id,
            "verdict": self.verdict,
            "symbolic_n": self.symbolic_n,
            "methods": list(self.methods),
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "condition": self.condition,
            "checks": [
                {"method": c.method, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
        }


@dataclass(frozen=True)
class Claim:
    """A named claim of the registry.

    Parameters
    ----------
    id : str
        Stable identifier, e.g. ``"bias-cancels-train"``.
    statement : str
        One plain-text sentence.
    latex : str
        The statement in LaTeX (math mode content, no surrounding ``$``).
    assumptions : tuple of str
        Plain-text assumptions (``"eps >= 0"``, ``"N >= 2"``).
    expected : {"proved", "refuted", "unproved"}
        The verdict the catalogue expects. Negative controls expect
        ``"refuted"``.
    prove : callable
        ``prove(n_max: int) -> Proof``.
    symbolic_n_expected : bool
        Whether the proof is expected to cover a symbolic N.
    section : str
        Where the paper or the literature discusses the claim.
    group : str
        Which part of the catalogue it belongs to (``"catalogue"`` for the
        batch-norm claims, ``"invariances"`` for the invariance table,
        ``"user"`` for claims registered by a user module).
    condition : str
        The condition under which a ``proved`` claim is expected to hold
        (e.g. ``"eps = 0"``); empty when none.
    note : str
        Remarks, e.g. where the result differs from a published table.
    """

    id: str
    statement: str
    latex: str
    assumptions: tuple[str, ...]
    expected: Verdict
    prove: Callable[[int], Proof] = field(repr=False)
    symbolic_n_expected: bool = True
    section: str = ""
    group: str = "catalogue"
    condition: str = ""
    note: str = ""
