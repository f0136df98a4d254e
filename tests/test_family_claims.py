"""Batch Renormalization, bias parts and scale-invariant weights, with negative controls."""

import pytest
import sympy

from bnproof.symbolic import CLAIMS, Identity, Nonzero, establish, prove_all
from bnproof.symbolic import _family_claims as fc
from bnproof.symbolic._models import b
from bnproof.symbolic._renorm import renorm_output

FAMILY = [cid for cid, c in CLAIMS.items() if c.group == "family"]


@pytest.fixture(scope="module")
def family_proofs():
    return {p.claim_id: p for p in prove_all(FAMILY, n_max=4, workers=2)}


def test_family_claims_are_registered():
    assert {"batch-renorm-bias-gradient-zero", "batch-renorm-output-depends-on-bias",
            "batch-renorm-clipping", "layer-bias-cancelling-part",
            "batch-weight-grad-orthogonal", "layer-weight-grad-orthogonal"} <= set(FAMILY)


@pytest.mark.parametrize("claim_id", FAMILY)
def test_family_claim_has_its_expected_verdict(family_proofs, claim_id):
    proof = family_proofs[claim_id]
    assert proof.verdict == CLAIMS[claim_id].expected, proof.reason


def test_batch_renorm_halves_hold_for_symbolic_n(family_proofs):
    for cid in ("batch-renorm-bias-gradient-zero", "batch-renorm-output-depends-on-bias",
                "batch-renorm-clipping"):
        assert family_proofs[cid].symbolic_n, cid


def _renorm_without_stop_gradient(batch, idx):
    from bnproof.symbolic import strip_stop_gradients

    i = idx["i"]
    value = strip_stop_gradients(renorm_output(batch, i))  # r and d differentiated through
    return [Identity(sympy.Symbol("dy/db"), sympy.diff(value, b), 0,
                     dict(batch.ranges) if batch.symbolic else {})]


def test_without_stop_gradient_the_bias_gradient_is_not_zero():
    proof = establish("renorm-no-sg", _renorm_without_stop_gradient, free=("i",), n_max=3)
    assert proof.verdict == "refuted"


def test_claiming_the_whole_bias_cancels_under_layer_norm_is_refuted(monkeypatch):
    monkeypatch.setattr(fc, "cancelling_projection", lambda row, lay: sympy.eye(lay.C))
    proof = establish("layer-all-cancels", fc._bias_part("layer"), n_max=2, symbolic=False)
    assert proof.verdict == "refuted"


def test_a_per_vector_claim_for_layer_norm_is_refuted():
    items = fc._weight_grad("layer")(None, {})
    flipped = [Identity(it.label, it.expr, 0) if isinstance(it, Nonzero) else it
               for it in items]
    assert len(flipped) == len(items) and any(isinstance(it, Nonzero) for it in items)
    proof = establish("layer-per-vector", lambda batch, idx: flipped, n_max=2,
                      symbolic=False)
    assert proof.verdict == "refuted"
