"""The rules the audit cites: every id is a claim of the registry with the verdict relied on."""

from __future__ import annotations

import pytest

from bnproof.symbolic import CLAIMS, prove
from bnproof.symbolic._passthrough import PASSTHROUGH_CLAIMS

#: The pass-through claims are small: each proves in well under a second on
#: an idle core; the bound leaves room for a loaded machine.
PASSTHROUGH_SECONDS = 10.0


def _rules():
    pytest.importorskip("torch", reason="bnproof.audit imports torch")
    from bnproof.audit import _rules

    return _rules


def test_cited_claims_have_the_expected_verdicts():
    rules = _rules()
    missing = sorted(set(rules.CITED) - set(CLAIMS))
    assert missing == []
    for claim_id, verdict in rules.CITED.items():
        assert CLAIMS[claim_id].expected == verdict, claim_id


def test_passthrough_rules_are_registered_claims_with_their_verdicts():
    rules = _rules()
    for claim_id in (*rules.PASSTHROUGH.values(), *rules.STOPS.values()):
        assert claim_id in CLAIMS, claim_id
        assert CLAIMS[claim_id].expected == rules.CITED[claim_id]
    assert set(PASSTHROUGH_CLAIMS) == {*rules.PASSTHROUGH.values(), *rules.STOPS.values()}


@pytest.mark.parametrize("claim_id", list(PASSTHROUGH_CLAIMS))
def test_passthrough_claim_reaches_its_verdict_quickly(claim_id):
    proof = prove(claim_id, n_max=5)
    claim = CLAIMS[claim_id]
    assert proof.verdict == claim.expected, proof.reason
    assert proof.seconds < PASSTHROUGH_SECONDS
    if claim.expected == "proved":
        assert proof.symbolic_n  # the window / kernel / width is a symbolic N
    else:
        assert proof.reason.startswith("counterexample")


def test_maxpool_case_split_would_catch_a_wrong_constant():
    # Negative control for the case-split route: claim max(x + c) = max(x) + 2c.
    import sympy

    from bnproof.symbolic._engine import Identity, establish
    from bnproof.symbolic._passthrough import _maxpool

    def wrong(batch, idx):
        items = _maxpool(batch, idx)
        if batch.symbolic:
            return items
        case = items[-1]
        c = sympy.Symbol("c", real=True)
        return [*items[:-1], Identity(case.label, case.lhs, 2 * c)]

    proof = establish("wrong-maxpool", wrong, free=("i", "j"), n_max=4)
    assert proof.verdict == "refuted"


def test_structural_rules_are_documented():
    rules = _rules()
    assert {"structural-reshape", "structural-transpose", "structural-concat",
            "structural-getitem", "structural-identity"} == set(rules.STRUCTURAL)
    assert all(text for text in rules.STRUCTURAL.values())
