"""PyTorch side of bnproof (imports torch; ``import bnproof`` does not import this).

Functions
---------
precise_bn
    Exact population statistics for every batch norm of a model (PreciseBN),
    on one process or merged across the ranks of ``torch.distributed``.
precise_study
    ``update_bn``, two fvcore-style estimators and :func:`precise_bn`
    against the exact statistics, on a CNN trained on the digits.
"""

from ._precise import PreciseBNResult as PreciseBNResult
from ._precise import precise_bn as precise_bn
from ._study import precise_study as precise_study

__all__ = ["PreciseBNResult", "precise_bn", "precise_study"]
