"""bnproof's kernels inside PyTorch models (CPU, float32 and float64).

Importing this subpackage imports PyTorch (``import bnproof`` does not).

Functions
---------
batch_norm
    ``torch.nn.functional.batch_norm`` with bnproof's kernels, as the
    ``torch.library`` custom op ``bnproof::batch_norm_forward`` with its
    autograd formula and fake function (opaque to ``torch.compile``).
convert
    Swap every ``nn.BatchNorm1d/2d/3d`` of a model for the classes below.

Classes
-------
BatchNorm1d, BatchNorm2d, BatchNorm3d
    Subclasses of PyTorch's modules that compute with the kernels.
"""

from ._modules import BatchNorm1d as BatchNorm1d
from ._modules import BatchNorm2d as BatchNorm2d
from ._modules import BatchNorm3d as BatchNorm3d
from ._modules import convert as convert
from ._ops import batch_norm as batch_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "batch_norm", "convert"]
