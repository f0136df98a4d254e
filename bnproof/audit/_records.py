"""Plain-data records of an audit: findings and the report (no printing here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AuditReport", "Finding"]

Kind = Literal["dead", "scale-invariant"]


@dataclass(frozen=True)
class Finding:
    """One parameter (or a subspace of it) whose effect provably cancels.

    Parameters
    ----------
    parameter : str
        The parameter's qualified name, e.g. ``"block.conv1.bias"``.
    kind : {"dead", "scale-invariant"}
        ``dead``: moving the parameter along ``redundant_dims`` directions
        changes no output in training mode. ``scale-invariant``: rescaling
        the weight (per row or as a whole) changes no output at eps = 0.
    shape : tuple of int
        The parameter's shape.
    redundant_dims : int
        Dimension of the subspace that cancels (for scale-invariant weights:
        the number of independent positive scales).
    dims : int
        The parameter's number of entries.
    normalization : str
        The normalization(s) that cancel it, e.g. ``"bn1 (BatchNorm2d)"``.
    through : tuple of str
        The operations its contribution passes through on the way.
    claims : tuple of str
        Ids of the proved claims the finding rests on.
    why : str
        One or two sentences for people.
    blocks : tuple of int
        For ``dead``: a label per entry; the dead subspace is the set of
        vectors constant on each label (so ``redundant_dims`` labels). For
        ``scale-invariant``: a label per row that scales together.
    """

    parameter: str
    kind: Kind
    shape: tuple[int, ...]
    redundant_dims: int
    dims: int
    normalization: str
    through: tuple[str, ...]
    claims: tuple[str, ...]
    why: str
    blocks: tuple[int, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether only part of a dead parameter cancels."""
        return self.kind == "dead" and self.redundant_dims < self.dims

    def to_json(self) -> dict:
        """Return the JSON record (the format of ``bnproof audit --json``)."""
        return {
            "parameter": self.parameter,
            "kind": self.kind,
            "redundant_dims": self.redundant_dims,
            "dims": self.dims,
            "normalization": self.normalization,
            "through": list(self.through),
            "claims": list(self.claims),
        }


@dataclass(frozen=True)
class AuditReport:
    """The outcome of :func:`bnproof.audit.audit`.

    Parameters
    ----------
    findings : tuple of Finding
        Confirmed findings, in the model's parameter order.
    parameters_total : int
        Trainable parameter entries of the model (shared ones counted once).
    capture : str
        How the graph was captured: ``"torch.fx"``, or ``"torch.export"``
        when tracing failed and the exported graph was used.
    inconsistencies : tuple of str
        Findings the numeric confirmation did not confirm: dropped, never
        reported as dead. Nonempty means a rule is wrong; please report it.
    """

    findings: tuple[Finding, ...]
    parameters_total: int
    capture: str = "torch.fx"
    inconsistencies: tuple[str, ...] = ()

    @property
    def redundant_dims_total(self) -> int:
        """Dead dimensions over all findings (scale-invariant ones not counted)."""
        return sum(f.redundant_dims for f in self.findings if f.kind == "dead")

    def to_json(self) -> dict:
        """Return the JSON document of ``bnproof audit --json``."""
        return {
            "findings": [f.to_json() for f in self.findings],
            "redundant_dims_total": self.redundant_dims_total,
            "parameters_total": self.parameters_total,
        }
