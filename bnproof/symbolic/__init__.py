"""Batch normalization in SymPy: models, the registry of claims, and their proofs.

Pure SymPy, no I/O. The claims are those around the bias paragraph of
section 2 of Ioffe & Szegedy (2015); each is established for a symbolic batch
size N (a small, sound rule set for sums plus an exact zero test) and again by
full expansion and exact rational evaluation at N = 2..n_max.

Examples
--------
>>> from bnproof.symbolic import prove
>>> prove("bias-cancels-train", n_max=3).verdict
'proved'
"""

from ._claims import CLAIMS as CLAIMS
from ._claims import prove as prove
from ._claims import prove_all as prove_all
from ._models import ConcreteBatch as ConcreteBatch
from ._models import Model as Model
from ._models import SymbolicBatch as SymbolicBatch
from ._models import center_only as center_only
from ._models import inference as inference
from ._models import loss_gradient as loss_gradient
from ._models import rms as rms
from ._models import training as training
from ._proof import VERDICTS as VERDICTS
from ._proof import Check as Check
from ._proof import Claim as Claim
from ._proof import Proof as Proof
from ._proof import Step as Step
from ._sums import SumRuleError as SumRuleError
from ._sums import reduce_sums as reduce_sums
from ._zero import ZeroTest as ZeroTest
from ._zero import vanishes as vanishes

__all__ = [
    "CLAIMS",
    "VERDICTS",
    "Check",
    "Claim",
    "ConcreteBatch",
    "Model",
    "Proof",
    "Step",
    "SumRuleError",
    "SymbolicBatch",
    "ZeroTest",
    "center_only",
    "inference",
    "loss_gradient",
    "prove",
    "prove_all",
    "reduce_sums",
    "rms",
    "training",
    "vanishes",
]
