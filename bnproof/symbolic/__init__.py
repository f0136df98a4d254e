"""Batch normalization in SymPy: models, the registry of claims, and their proofs.

Pure SymPy, no I/O. The claims are those around the bias paragraph of
section 2 of Ioffe & Szegedy (2015); each is established for a symbolic batch
size N (a small, sound rule set for sums plus an exact zero test) and again by
full expansion and exact rational evaluation at N = 2..n_max. The
invariance table of the normalization family (Ba, Kiros & Hinton 2016,
section 5.1) adds one claim per cell (:func:`prove_cell`, :func:`table`).
A user's own claims enter the registry with :func:`register_claim`, written
with :func:`establish`'s :class:`Identity` and :class:`Nonzero`.

Examples
--------
>>> from bnproof.symbolic import prove
>>> prove("bias-cancels-train", n_max=3).verdict
'proved'
"""

from . import _family, _family_claims, _passthrough, _renorm
from ._claims import prove as prove
from ._claims import prove_all as prove_all
from ._engine import FULL_INDEX_N as FULL_INDEX_N
from ._engine import Identity as Identity
from ._engine import Nonzero as Nonzero
from ._engine import establish as establish
from ._family import COLUMNS as COLUMNS
from ._family import LAYOUTS as LAYOUTS
from ._family import ROWS as ROWS
from ._family import cells as cells
from ._family import prove_cell as prove_cell
from ._family import table as table
from ._indexsets import Layout as Layout
from ._indexsets import StopGradient as StopGradient
from ._indexsets import standardize as standardize
from ._indexsets import strip_stop_gradients as strip_stop_gradients
from ._indexsets import tensor as tensor
from ._models import ConcreteBatch as ConcreteBatch
from ._models import Model as Model
from ._models import N as N
from ._models import SymbolicBatch as SymbolicBatch
from ._models import b as b
from ._models import beta as beta
from ._models import center_only as center_only
from ._models import eps as eps
from ._models import g as g
from ._models import gamma as gamma
from ._models import i as i
from ._models import inference as inference
from ._models import j as j
from ._models import loss_gradient as loss_gradient
from ._models import rms as rms
from ._models import training as training
from ._models import u as u
from ._models import x as x
from ._pickling import to_bytes as to_bytes
from ._proof import VERDICTS as VERDICTS
from ._proof import Check as Check
from ._proof import Claim as Claim
from ._proof import Proof as Proof
from ._proof import Step as Step
from ._registry import CLAIMS as CLAIMS
from ._registry import load_claims as load_claims
from ._registry import register as register
from ._registry import register_claim as register_claim
from ._runner import run_claims as run_claims
from ._sumrules import interchange_sums as interchange_sums
from ._sumrules import merge_ranges as merge_ranges
from ._sums import SumRuleError as SumRuleError
from ._sums import reduce_sums as reduce_sums
from ._zero import ZeroTest as ZeroTest
from ._zero import vanishes as vanishes

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "Check",
    "Claim",
    "ConcreteBatch",
    "FULL_INDEX_N",
    "Identity",
    "LAYOUTS",
    "Layout",
    "Model",
    "N",
    "Nonzero",
    "Proof",
    "ROWS",
    "Step",
    "StopGradient",
    "SumRuleError",
    "SymbolicBatch",
    "VERDICTS",
    "ZeroTest",
    "b",
    "beta",
    "cells",
    "center_only",
    "eps",
    "establish",
    "g",
    "gamma",
    "i",
    "inference",
    "interchange_sums",
    "j",
    "load_claims",
    "loss_gradient",
    "merge_ranges",
    "prove",
    "prove_all",
    "prove_cell",
    "reduce_sums",
    "register",
    "register_claim",
    "rms",
    "run_claims",
    "standardize",
    "strip_stop_gradients",
    "table",
    "tensor",
    "to_bytes",
    "training",
    "u",
    "vanishes",
    "x",
]

# Registry order is the order of `bnproof prove` and of the report: the
# batch-norm catalogue (registered by ._claims on import), the rest of the
# family, the invariance table, then the audit's pass-through rules.
_renorm.register_claims()
_family_claims.register_claims()
_family.register_table()
_passthrough.register_claims()
