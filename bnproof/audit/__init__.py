"""Find, prove and remove dead parameters of PyTorch models.

:func:`audit` traces a model with torch.fx and carries every bias through the
graph as a constant pattern; a bias whose contribution ends, on every path,
in a normalization that cancels it is *dead* (or partly dead). Every step
cites a claim proved by :mod:`bnproof.symbolic`, and every finding is
confirmed numerically. :func:`fix` removes what is dead from a copy of the
model without changing its outputs.

Importing this package imports torch.
"""

from ._audit import audit as audit
from ._capture import CaptureError as CaptureError
from ._fix import FixNote as FixNote
from ._fix import fix as fix
from ._fix import fix_notes as fix_notes
from ._records import AuditReport as AuditReport
from ._records import Finding as Finding

__all__ = ["AuditReport", "CaptureError", "Finding", "FixNote", "audit", "fix", "fix_notes"]
