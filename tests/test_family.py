"""The invariance table of the normalization family, and the checker saying no."""

import json

import pytest
import sympy

from bnproof.cli import main
from bnproof.symbolic import (
    CLAIMS,
    COLUMNS,
    ROWS,
    Layout,
    StopGradient,
    cells,
    prove_cell,
    strip_stop_gradients,
    table,
)
from bnproof.symbolic._family import EXPECTED, Column

#: Cells another part of bnproof (the audit) cites by id, with the verdict and
#: condition the mathematics gives (derived by hand in the issue's table).
RELIED_ON = {
    "batch-bias-per-feature": ("proved", "any eps >= 0"),
    "layer-bias-shared": ("proved", "any eps >= 0"),
    "group-bias-per-group": ("proved", "any eps >= 0"),
    "instance-bias-per-feature": ("proved", "any eps >= 0"),
    "rms-bias-shared": ("refuted", ""),
    "layer-bias-per-feature": ("refuted", ""),
    "group-bias-per-feature": ("refuted", ""),
    "batch-weight-vector-rescaling": ("proved", "eps = 0"),
    "layer-weight-matrix-rescaling": ("proved", "eps = 0"),
    "group-weight-matrix-rescaling": ("proved", "eps = 0"),
    "instance-weight-vector-rescaling": ("proved", "eps = 0"),
}
ROW_IDS = ("batch", "weight", "layer", "rms", "group", "instance")
COLUMN_IDS = ("weight-matrix-rescaling", "weight-matrix-recentering",
              "weight-vector-rescaling", "dataset-rescaling", "dataset-recentering",
              "case-rescaling", "bias-shared", "bias-per-feature", "bias-per-group")


def test_rows_columns_and_ids_are_the_agreed_ones():
    assert tuple(ROWS) == ROW_IDS and tuple(COLUMNS) == COLUMN_IDS
    ids = {cid for _, _, cid in cells()}
    assert set(RELIED_ON) <= ids
    assert len(ids) == 51  # 6 rows x 8 columns + bias-per-group for 3 channel rows
    for cid in ids:
        claim = CLAIMS[cid]
        assert claim.group == "invariances" and claim.statement and claim.latex


@pytest.mark.parametrize("cell", [cid for _, _, cid in cells()])
def test_every_cell_has_its_expected_verdict(table_proofs, cell):
    proof, claim = table_proofs[cell], CLAIMS[cell]
    assert proof.verdict == claim.expected, proof.reason
    assert proof.condition == claim.condition
    if proof.verdict == "refuted":
        assert proof.reason.startswith("counterexample:")
        assert any(not c.passed for c in proof.checks)
    else:
        assert all(c.passed for c in proof.checks if c.method.startswith("zero-test"))
        zero_tests = [c for c in proof.checks if c.method.startswith("zero-test")]
        assert len(zero_tests) == 2  # both layouts of the grid


def test_the_cells_the_audit_relies_on(table_proofs):
    for cid, (verdict, condition) in RELIED_ON.items():
        assert (table_proofs[cid].verdict, table_proofs[cid].condition) == (verdict, condition)


def test_scale_invariance_fails_for_positive_eps_with_a_witness(table_proofs):
    proof = table_proofs["layer-weight-matrix-rescaling"]
    assert any("eps > 0" in s.title for s in proof.steps)
    assert any(not c.passed for c in proof.checks if c.method.startswith("rationals-eps>0"))


def test_table_json_shape(table_proofs):
    out = table(table_proofs)
    assert list(out) == list(ROW_IDS)
    assert "bias-per-group" not in out["layer"] and "bias-per-group" in out["group"]
    cell = out["batch"]["bias-per-feature"]
    assert cell == {"verdict": "invariant", "condition": "any eps >= 0",
                    "claim": "batch-bias-per-feature", "symbolic": True}
    assert out["rms"]["bias-shared"] == {"verdict": "not invariant", "condition": "",
                                         "claim": "rms-bias-shared", "symbolic": False}
    missing = table({})
    assert missing["batch"]["bias-shared"]["verdict"] == "unproved"


# ---- the checker can say no ------------------------------------------------ #


def test_a_bias_per_sample_does_not_cancel_under_batch_norm(monkeypatch):
    # negative control: a false variant of batch-bias-per-feature
    per_sample = Column(
        "bias-per-sample", "a[n, c, p] -> a + b_n",
        lambda d: (d.W, d.x, {i: d.rho_n[(i[0],)] for i in d.layout.activations()}),
        lambda d, i: (1, d.rho_n[(i[0],)]),
    )
    monkeypatch.setitem(COLUMNS, "bias-per-sample", per_sample)
    proof = prove_cell("batch", "bias-per-sample")
    assert proof.verdict == "refuted"
    assert prove_cell("layer", "bias-per-sample").verdict == "proved"


def test_a_wrong_action_on_the_summed_inputs_is_not_a_proof(monkeypatch):
    # the bias cancels, but the column claims it acts as the identity on a:
    # the lift check must catch it rather than prove from the wrong map
    lying = Column(
        "lying-bias", "a -> a + b_c, declared as a -> a",
        COLUMNS["bias-per-feature"].apply,
        lambda d, i: (1, 0),
    )
    monkeypatch.setitem(COLUMNS, "lying-bias", lying)
    proof = prove_cell("batch", "lying-bias")
    assert proof.verdict == "unproved"
    assert "scale a + shift" in proof.reason


def test_every_output_index_is_checked(monkeypatch):
    # a bias on the last channel only: the first output never changes
    last = Column(
        "last-channel-bias", "a[n, C, p] -> a + b under layer norm",
        lambda d: (d.W, d.x, {i: d.b if i[1] == d.layout.C else 0
                              for i in d.layout.activations()}),
        lambda d, i: (1, d.b if i[1] == d.layout.C else 0),
    )
    monkeypatch.setitem(COLUMNS, "last-channel-bias", last)
    assert prove_cell("layer", "last-channel-bias").verdict == "refuted"


def test_bad_cells_and_layouts_are_refused():
    with pytest.raises(KeyError, match="unknown row"):
        prove_cell("nope", "bias-shared")
    with pytest.raises(KeyError, match="unknown column"):
        prove_cell("batch", "nope")
    with pytest.raises(ValueError, match="does not apply"):
        prove_cell("layer", "bias-per-group")
    with pytest.raises(ValueError, match="must divide"):
        Layout(N=2, C=3, G=2)
    with pytest.raises(ValueError, match="int >= 1"):
        Layout(N=0, C=2)


def test_expected_table_covers_exactly_the_cells():
    assert set(EXPECTED) == {(r, c) for r, c, _ in cells()}


def test_stop_gradient_passes_the_value_and_blocks_the_derivative():
    b = sympy.Symbol("b", real=True)
    expr = StopGradient(b**2) * b
    assert sympy.diff(expr, b) == StopGradient(b**2)
    assert sympy.diff(StopGradient(b**2), b) == 0
    assert strip_stop_gradients(sympy.diff(expr, b)) == b**2
    assert StopGradient(sympy.Integer(3)) == 3


# ---- the command --------------------------------------------------------- #


def test_cli_json_gives_the_whole_table(table_proofs, monkeypatch, capsys):
    from bnproof import symbolic

    monkeypatch.setattr(symbolic, "prove_all",
                        lambda ids, **kw: [table_proofs[i] for i in ids])
    assert main(["invariances", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["table"]
    assert set(out) == set(ROW_IDS)
    assert all(set(c) == {"verdict", "condition", "claim", "symbolic"}
               for row in out.values() for c in row.values())
    assert out["group"]["bias-per-group"]["claim"] == "group-bias-per-group"
    assert main(["invariances"]) == 0
    text = capsys.readouterr().out
    assert "yes (eps=0)" in text and "instance" in text
    assert "30 of the 30 invariant cells are also proved for symbolic sizes" in text
    assert "concrete sizes only" not in text


def test_cli_names_a_cell_proved_at_concrete_sizes_only(table_proofs, monkeypatch, capsys):
    import dataclasses

    from bnproof import symbolic

    def fake(ids, **kw):
        return [dataclasses.replace(table_proofs[i], symbolic_n=False)
                if i == "layer-bias-shared" else table_proofs[i] for i in ids]

    monkeypatch.setattr(symbolic, "prove_all", fake)
    assert main(["invariances"]) == 0
    text = capsys.readouterr().out
    assert "29 of the 30 invariant cells" in text
    assert "layer-bias-shared: proved at the concrete sizes only" in text


def test_cli_exits_1_when_a_cell_is_unproved(table_proofs, monkeypatch, capsys):
    from bnproof import symbolic
    from bnproof.symbolic._runner import time_limit_proof

    def fake(ids, **kw):
        return [time_limit_proof(i, 1.0) if i == "batch-bias-shared" else table_proofs[i]
                for i in ids]

    monkeypatch.setattr(symbolic, "prove_all", fake)
    assert main(["invariances"]) == 1
    assert "batch-bias-shared: unproved: time limit" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["invariances", "--workers", "0"],
                                  ["invariances", "--time-limit", "0"],
                                  ["invariances", "--bogus"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects unknown options itself
        code = exc.code
    assert code == 2
