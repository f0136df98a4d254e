"""Every claim of the registry, both ways, and negative controls that must fail."""

import json

import pytest
import sympy

from bnproof.cli import main
from bnproof.symbolic import CLAIMS, VERDICTS, prove, prove_all
from bnproof.symbolic._claims import b, y
from bnproof.symbolic._engine import Identity, Nonzero, establish
from bnproof.symbolic._models import g, inference, training, u

#: Concrete checks run up to this N in the per-claim tests (the CLI test
#: below runs the full default of 8 once).
N_MAX = 4

REQUIRED_IDS = {
    "bias-cancels-train",
    "bias-cancels-center-only",
    "bias-survives-eval",
    "loss-grad-bias-zero",
    "backward-closed-form",
    "jacobian-form",
    "shift-invariance",
    "scale-invariance",
    "outside-gradient-drift",
    "weight-grad-orthogonal",
}


#: The batch-norm catalogue (the invariance table has its own tests, test_family.py).
CATALOGUE = [cid for cid, c in CLAIMS.items() if c.group == "catalogue"]


class _Proofs(dict):
    """The catalogue's proofs, each proved when a test first asks for it.

    One claim per test keeps each proof inside the test that checks it (a
    failure names its claim, and a mutation run credits each proof's code
    to the test that checks its verdict), and each claim is still proved
    once per module.
    """

    def __missing__(self, claim_id):
        self[claim_id] = prove(claim_id, n_max=N_MAX)
        return self[claim_id]


@pytest.fixture(scope="module")
def proofs():
    return _Proofs()


def test_registry_has_the_required_claims_and_a_negative_control():
    assert REQUIRED_IDS <= set(CLAIMS)
    assert any(c.expected == "refuted" for c in CLAIMS.values())
    for claim in CLAIMS.values():
        assert claim.statement and claim.latex and claim.assumptions
        assert claim.expected in VERDICTS


@pytest.mark.parametrize("claim_id", CATALOGUE)
def test_claim_has_its_expected_verdict(proofs, claim_id):
    proof, claim = proofs[claim_id], CLAIMS[claim_id]
    assert proof.verdict == claim.expected, proof.reason
    assert proof.seconds > 0
    methods = {c.method: c.passed for c in proof.checks}
    if claim.expected == "proved":
        # Way 1: symbolic N reduced to a literal zero polynomial.
        assert proof.symbolic_n is claim.symbolic_n_expected
        assert methods["symbolic-N"]
        # Way 2: full expansion and exact rationals at every concrete N.
        for n in range(2, N_MAX + 1):
            assert methods[f"expand-N={n}"] and methods[f"rationals-N={n}"]
        assert proof.reason == ""
        assert any(isinstance(s.expr, sympy.Basic) for s in proof.steps)


def test_symbolic_n_claims_cover_symbolic_n(proofs):
    for claim_id in ("bias-cancels-train", "backward-closed-form"):
        assert proofs[claim_id].symbolic_n
        assert "symbolic-N" in proofs[claim_id].methods


def test_rms_negative_control_finds_a_counterexample(proofs):
    proof = proofs["rms-bias-cancels"]
    assert proof.verdict == "refuted"
    assert not proof.symbolic_n
    assert proof.reason.startswith("counterexample: N = 2")
    # readable notation, not SymPy's repr or a dict of indices
    assert "dy[1]/db" in proof.reason
    assert "Derivative(" not in proof.reason and "{'" not in proof.reason
    assert any(not c.passed for c in proof.checks if c.method.startswith("rationals"))


def test_bias_derivative_in_training_mode_is_literally_zero(proofs):
    steps = proofs["bias-cancels-train"].steps
    reduced = [s for s in steps if s.title.startswith("Exact zero test")]
    assert reduced and all(s.expr.rhs == 0 for s in reduced)


# ---- the checker can say no --------------------------------------------- #


def _wrong_backward(batch, idx):
    from bnproof.symbolic._models import gamma, loss_gradient, x

    model = training(batch)
    j = idx["j"]
    gk = lambda k: batch.item(g, k)  # noqa: E731
    # Missing the xhat_j mean(g xhat) term: must be refuted.
    wrong = gamma / model.scale * (gk(j) - batch.total(gk, sympy.Symbol("q")) / batch.size)
    return [Identity(sympy.Symbol("dLdx"), loss_gradient(model, batch.item(x, j)), wrong,
                     dict(batch.ranges) if batch.symbolic else {})]


def test_wrong_closed_form_is_refuted_not_proved():
    proof = establish("wrong-backward", _wrong_backward, free=("j",), n_max=3)
    assert proof.verdict == "refuted"
    assert not proof.symbolic_n
    assert "counterexample" in proof.reason


def _bias_cancels_in_inference(batch, idx):
    model = inference(batch, lambda k: batch.item(u, k) + b)
    return [Identity(y[idx["i"]], sympy.diff(model.y(idx["i"]), b), 0, {})]


def test_bias_cancelling_with_running_statistics_is_refuted():
    proof = establish("eval-cancels", _bias_cancels_in_inference, free=("i",), n_max=3)
    assert proof.verdict == "refuted"


def _zero_is_nonzero(batch, idx):
    return [Nonzero(sympy.Symbol("z"), sympy.Integer(0))]


def test_missing_witness_is_unproved():
    proof = establish("zero-nonzero", _zero_is_nonzero, n_max=2, symbolic=False)
    assert proof.verdict == "unproved"
    assert "witness" in proof.reason


def _bias_derivative_must_not_vanish(batch, idx):
    model = training(batch, lambda k: batch.item(u, k) + b)
    return [Nonzero(sympy.Symbol("dydb"), sympy.diff(model.y(idx["i"]), b))]


def test_an_identically_zero_nonzero_is_refuted():
    # the symbolic zero test shows it is 0 everywhere: no witness can exist
    proof = establish("dydb-nonzero", _bias_derivative_must_not_vanish, free=("i",), n_max=2)
    assert proof.verdict == "refuted"
    assert "identically 0" in proof.reason


def test_degenerate_random_points_are_drawn_again():
    # with this id the first point has x_1 = x_2 at N = 2 and eps = 0, so the
    # scale s is 0 and the value undefined; it crashed the check before
    from bnproof.symbolic._claims import _scale_invariance

    proof = establish("scale-invariance-19", _scale_invariance, free=("i",), n_max=2,
                      symbolic=False)
    assert proof.verdict == "proved"
    assert all(check.passed for check in proof.checks)


def test_a_refused_witness_search_is_not_a_witness():
    # the sum rules refuse the nonzero's sum (reversed limits) while looking
    # for a witness: the claim has none (this once skipped the bookkeeping,
    # and a claim with no identity came out proved)
    def build(batch, idx):
        k = sympy.Symbol("k", integer=True)
        c = sympy.Symbol("c", positive=True)
        return [Nonzero(sympy.Symbol("z"), sympy.Sum(c * k, (k, 3, 1)) + c)]

    proof = establish("refused-witness", build, n_max=2)
    assert proof.verdict == "unproved" and "witness" in proof.reason


def test_reversed_limits_are_unproved_not_a_crash():
    from bnproof.symbolic._models import x

    def build(batch, idx):
        k = sympy.Symbol("k", integer=True)
        lhs = sympy.Sum(sympy.KroneckerDelta(2, k) * batch.item(x, k), (k, 3, 1))
        return [Identity(sympy.Symbol("s"), lhs, 0, {})]

    proof = establish("reversed", build, n_max=3)
    assert proof.verdict == "unproved"
    assert "reversed limits" in proof.reason


def test_unproved_when_symbolic_route_is_refused():
    from bnproof.symbolic._models import x

    def build(batch, idx):
        # A sum over a delta whose index range is deliberately not declared.
        k = sympy.Symbol("k", integer=True)
        lhs = batch.total(lambda t: sympy.KroneckerDelta(idx["j"], t) * batch.item(x, t), k)
        return [Identity(sympy.Symbol("s"), lhs, batch.item(x, idx["j"]), {})]

    proof = establish("no-range", build, free=("j",), n_max=3)
    assert proof.verdict == "unproved"
    assert "sum rules refused" in proof.reason
    assert not proof.symbolic_n


# ---- API errors ------------------------------------------------------------ #


def test_prove_rejects_bad_arguments():
    with pytest.raises(KeyError, match="valid ids"):
        prove("no-such-claim")
    with pytest.raises(ValueError, match="n_max must be >= 2"):
        prove("bias-cancels-train", n_max=1)
    with pytest.raises(TypeError, match="n_max must be an int"):
        prove("bias-cancels-train", n_max=True)
    with pytest.raises(KeyError, match="unknown claim"):
        prove_all(["bias-cancels-train", "nope"])


# ---- the CLI ------------------------------------------------------------- #


def test_cli_json_reports_every_claim_as_expected(capsys):
    # the invariance table's cells are checked through the command in test_family.py
    code = main(["prove", "--json", "--group", "catalogue"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["n_max"] == 8
    rows = {r["id"]: r for r in data["claims"]}
    assert set(rows) == set(CATALOGUE)
    for claim_id, row in rows.items():
        assert set(row) >= {"id", "statement", "verdict", "symbolic_n", "methods", "seconds"}
        assert row["verdict"] == CLAIMS[claim_id].expected
        if row["verdict"] == "proved":  # a refutation may end at the cheap first test
            assert "expand-N=2..8" in row["methods"]
    assert rows["bias-cancels-train"]["symbolic_n"] is True
    assert rows["backward-closed-form"]["symbolic_n"] is True
    assert rows["rms-bias-cancels"]["verdict"] == "refuted"


def test_cli_table_for_selected_claims(capsys):
    code = main(["prove", "--claim", "shift-invariance", "--claim", "rms-bias-cancels",
                 "--n-max", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "shift-invariance" in out and "rms-bias-cancels: refuted: counterexample" in out
    assert "2 of 2 claims have their expected verdict" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prove", "--claim", "nope"], "valid: bias-cancels-train"),
        (["prove", "--n-max", "1"], "--n-max 1 is too small"),
        (["prove", "--n-max", "100000"], "--n-max 100000 is too large"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_exits_1_when_a_verdict_is_not_the_expected_one(monkeypatch, capsys):
    import bnproof.symbolic as symbolic
    from bnproof.symbolic import Proof

    def fake(ids, n_max, progress=None):
        return [Proof(claim_id=ids[0], verdict="unproved", symbolic_n=False, methods=(),
                      reason="simulated")]

    monkeypatch.setattr(symbolic, "prove_all", fake)
    assert main(["prove", "--claim", "bias-cancels-train"]) == 1
    assert "not: bias-cancels-train" in capsys.readouterr().out
