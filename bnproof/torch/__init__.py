"""PyTorch side of bnproof (imports torch; ``import bnproof`` does not import this).

Functions
---------
precise_bn
    Exact population statistics for every batch norm of a model (PreciseBN),
    on one process or merged across the ranks of ``torch.distributed``.
"""

from ._precise import PreciseBNResult as PreciseBNResult
from ._precise import precise_bn as precise_bn

__all__ = ["PreciseBNResult", "precise_bn"]
