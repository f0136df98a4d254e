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


SYMBOLIC_WEIGHT_GRAD = [f"{row}-weight-grad-orthogonal-symbolic"
                        for row in ("batch", "instance", "layer", "rms", "group", "weight")]


@pytest.mark.parametrize("claim_id", SYMBOLIC_WEIGHT_GRAD)
def test_weight_grad_symbolic_claims_hold_for_symbolic_sizes(family_proofs, claim_id):
    proof = family_proofs[claim_id]
    assert CLAIMS[claim_id].symbolic_n_expected
    assert proof.verdict == "proved" and proof.symbolic_n, proof.reason
    assert any(c.method == "symbolic-N" and c.passed for c in proof.checks)


def _at_positive_eps(row):
    """The claim's identity, but with the eps > 0 product (the witness's expression)."""
    from bnproof.symbolic._family_weight_grad import weight_grad_symbolic

    build = weight_grad_symbolic(row)

    def flipped(batch, indices):
        identity, witness = build(batch, indices)
        assert isinstance(identity, Identity) and isinstance(witness, Nonzero)
        return [Identity(identity.label, witness.expr, 0, identity.ranges)]

    return flipped


@pytest.mark.parametrize("row", ["batch", "instance", "layer", "rms", "group", "weight"])
def test_at_positive_eps_the_weight_grad_identity_is_not_proved(row):
    proof = establish(f"{row}-eps-positive", _at_positive_eps(row), n_max=3)
    assert proof.verdict == "refuted" and not proof.symbolic_n, proof.reason


@pytest.mark.parametrize("row", ["batch", "instance", "layer", "rms", "group", "weight"])
def test_the_symbolic_zero_test_leaves_the_positive_eps_product(row):
    from bnproof.symbolic import vanishes
    from bnproof.symbolic._models import SymbolicBatch

    [identity] = _at_positive_eps(row)(SymbolicBatch(), {})
    assert not vanishes(identity.lhs, identity.ranges).is_zero


@pytest.mark.parametrize("row", ["layer", "rms", "group"])
def test_a_wrongly_weighted_row_of_the_matrix_product_is_refused(row):
    from bnproof.symbolic._family_weight_grad import weight_grad_symbolic

    build = weight_grad_symbolic(row, row_scale=lambda c: c)  # row c weighed c times
    from bnproof.symbolic import vanishes
    from bnproof.symbolic._models import SymbolicBatch

    identity = build(SymbolicBatch(), {})[0]
    assert not vanishes(identity.lhs, identity.ranges).is_zero
    proof = establish(f"{row}-rows-weighed", build, n_max=3)
    assert proof.verdict == "refuted" and not proof.symbolic_n, proof.reason


def test_a_gradient_that_holds_the_norm_constant_is_refused(monkeypatch):
    import types

    from bnproof.symbolic import StopGradient, strip_stop_gradients, vanishes
    from bnproof.symbolic import _family_weight_grad as wg
    from bnproof.symbolic._models import SymbolicBatch

    # ||v|| as a constant of the backward pass: the gradient misses the normalization
    held = types.SimpleNamespace(**{k: getattr(sympy, k) for k in dir(sympy)
                                    if not k.startswith("_")})
    held.sqrt = lambda value: StopGradient(sympy.sqrt(value))
    monkeypatch.setattr(wg, "sympy", held)
    build = wg.weight_grad_symbolic("weight")

    def stripped(batch, indices):
        return [Identity(it.label, strip_stop_gradients(it.lhs), 0, it.ranges)
                for it in build(batch, indices) if isinstance(it, Identity)]

    [identity] = stripped(SymbolicBatch(), {})
    assert not vanishes(identity.lhs, identity.ranges).is_zero
    proof = establish("weight-norm-held-constant", stripped, n_max=3)
    assert proof.verdict == "refuted" and not proof.symbolic_n, proof.reason


def test_a_row_without_a_symbolic_weight_grad_builder_is_named():
    from bnproof.symbolic._family_weight_grad import weight_grad_symbolic

    with pytest.raises(ValueError, match="'center-only'"):
        weight_grad_symbolic("center-only")
