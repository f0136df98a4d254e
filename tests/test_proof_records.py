"""bnproof.symbolic._proof: the plain-data records, field by field.

The report, the JSON output and the claims file read these records, so each
field's value and spelling is part of the promise, stated here literally.
"""

import json

import pytest
import sympy

from bnproof.symbolic._proof import VERDICTS, Check, Proof, Step


def test_step_text_is_title_expression_and_note():
    mu = sympy.Symbol("mu")
    # "title: lhs = rhs (note)": the equation in plain text, the note in brackets
    assert str(Step("the mean", sympy.Eq(mu, sympy.Rational(1, 2)), note="by linearity")) == (
        "the mean: mu = 1/2 (by linearity)")
    assert str(Step("the mean", sympy.Eq(mu, 0))) == "the mean: mu = 0"
    # a step without an expression is its title alone, with the note if any
    assert str(Step("prose only")) == "prose only"
    assert str(Step("prose only", note="why")) == "prose only (why)"
    # names in the paper's notation, not SymPy's LaTeX markup
    assert str(Step("normalized", sympy.Symbol(r"\hat{x}"))) == "normalized: xhat"


def test_summary_holds_every_field_but_the_steps():
    proof = Proof(
        "some-claim", "proved", True, ("symbolic-N", "expand-N=2..4"),
        steps=(Step("a step", sympy.Integer(0)),),
        checks=(Check("expand-N=2", True, "0 == 0"), Check("rationals-N=2", False, "x = 1")),
        seconds=1.23456, reason="why not", condition="eps = 0",
    )
    summary = proof.summary()
    assert summary == {
        "id": "some-claim",
        "verdict": "proved",
        "symbolic_n": True,
        "methods": ["symbolic-N", "expand-N=2..4"],
        # rounded to the millisecond (3 decimals) for the JSON file
        "seconds": 1.235,
        "reason": "why not",
        "condition": "eps = 0",
        "checks": [
            {"method": "expand-N=2", "passed": True, "detail": "0 == 0"},
            {"method": "rationals-N=2", "passed": False, "detail": "x = 1"},
        ],
    }
    assert list(summary) == ["id", "verdict", "symbolic_n", "methods", "seconds", "reason",
                             "condition", "checks"]
    assert type(summary["methods"]) is list and type(summary["checks"]) is list
    assert json.loads(json.dumps(summary)) == summary


def test_defaults_and_verdicts():
    proof = Proof("c", "unproved", False, ())
    assert (proof.steps, proof.checks, proof.seconds, proof.reason, proof.condition) == (
        (), (), 0.0, "", "")
    assert proof.summary()["checks"] == [] and proof.summary()["seconds"] == 0.0
    assert VERDICTS == ("proved", "refuted", "unproved")
    for verdict in VERDICTS:
        assert Proof("c", verdict, False, ()).verdict == verdict
    assert Check("m", True).detail == ""


@pytest.mark.parametrize("verdict", ["true", "Proved", "", None])
def test_an_unknown_verdict_is_refused_by_name(verdict):
    with pytest.raises(ValueError) as error:
        Proof("c", verdict, False, ())
    assert str(error.value) == (
        f"verdict {verdict!r} is not one of ('proved', 'refuted', 'unproved')")
