"""bnproof inside PyTorch models (CPU, float32 and float64).

Importing this subpackage imports PyTorch (``import bnproof`` does not).

Functions
---------
batch_norm
    ``torch.nn.functional.batch_norm`` with bnproof's kernels, as the
    ``torch.library`` custom op ``bnproof::batch_norm_forward`` with its
    autograd formula and fake function (opaque to ``torch.compile``).
convert
    Swap every ``nn.BatchNorm1d/2d/3d`` of a model for the classes below.
precise_bn
    Exact population statistics for every batch norm of a model (PreciseBN),
    on one process or merged across the ranks of ``torch.distributed``.
precise_study
    ``update_bn``, two fvcore-style estimators and :func:`precise_bn`
    against the exact statistics, on a CNN trained on the digits.

Classes
-------
BatchNorm1d, BatchNorm2d, BatchNorm3d
    Subclasses of PyTorch's modules that compute with the kernels.
PreciseBNResult
    What :func:`precise_bn` measured and wrote.
"""

from ._modules import BatchNorm1d as BatchNorm1d
from ._modules import BatchNorm2d as BatchNorm2d
from ._modules import BatchNorm3d as BatchNorm3d
from ._modules import convert as convert
from ._ops import batch_norm as batch_norm
from ._precise import PreciseBNResult as PreciseBNResult
from ._precise import precise_bn as precise_bn
from ._study import precise_study as precise_study

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "PreciseBNResult",
    "batch_norm",
    "convert",
    "precise_bn",
    "precise_study",
]
