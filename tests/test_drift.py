"""The section 2 drift experiment, asserted from its JSON-ready result."""

import json
import math

import pytest

from bnproof.experiments import drift
from bnproof.experiments.drift import MODES, NORMS, SCENARIOS, run_drift

pytest.importorskip("sklearn", reason="the drift experiment trains on scikit-learn's digits")

#: Steps of the b-only runs here: enough for the drift to dwarf rounding.
BIAS_STEPS = 40
#: The thresholds of section 2's outcome, stated as numbers (the experiment's
#: own constants must not loosen the tests): the drift stays within 64
#: rounding units of the line (measured at most 24; the running-mode control
#: above 1e6), the loss moves by at most 16 machine epsilons (measured at most
#: 1.7; the control above 1e5), and outside mode's gradient is at least 10
#: times the rounding bound of a sum that cancels exactly.
LINEAR_RESIDUAL_UNITS = 64.0
LOSS_CHANGE_EPS = 16.0
SIGNAL_OVER_ROUNDING = 10.0
#: Exact mode's displacement of b, relative to outside mode's in the same setting.
EXACT_OVER_OUTSIDE = 1e-6


@pytest.fixture(scope="module")
def result():
    return run_drift(["bias-only", "train-all"], quick=True, steps=BIAS_STEPS, seed=0)


def _json_roundtrip(value):
    return json.loads(json.dumps(value, allow_nan=False))


def _bias_runs(result, mode):
    return [r for r in result["bias-only"]["runs"] if r["mode"] == mode]


def _partner(result, run, mode):
    (other,) = [r for r in result["bias-only"]["runs"]
                if (r["norm"], r["dtype"], r["mode"]) == (run["norm"], run["dtype"], mode)]
    return other


# --------------------------------------------------------------------------- #
# scenario 1: the thought experiment
# --------------------------------------------------------------------------- #


def test_bias_only_covers_every_norm_mode_and_dtype(result):
    runs = result["bias-only"]["runs"]
    assert {(r["norm"], r["mode"], r["dtype"]) for r in runs} == {
        (n, m, d) for n in NORMS for m in MODES for d in ("float64", "float32")
    }
    assert result["bias-only"]["setup"]["trained"] == ["b"]


def test_outside_mode_b_drifts_linearly_while_the_loss_stays_fixed(result):
    for run in _bias_runs(result, "outside"):
        s = run["summary"]
        assert s["db_max_abs"] > SIGNAL_OVER_ROUNDING * s["db_rounding_bound"], run["norm"]
        assert s["b_drift_per_step_max_abs"] > 0.0
        # b_T - b_0 = T Delta b up to rounding, hence a displacement of T steps.
        assert s["linear_residual_in_rounding_units"] <= LINEAR_RESIDUAL_UNITS, s
        assert s["b_displacement_final_max_abs"] == pytest.approx(
            BIAS_STEPS * s["b_drift_per_step_max_abs"], rel=1e-3)
        assert s["loss_change_max_in_eps"] <= LOSS_CHANGE_EPS, s
        assert max(abs(v) for v in run["series"]["loss_change_nats"]) == s[
            "loss_change_max_abs_nats"]
        # The series is the straight line itself: displacement grows with t.
        disp = run["series"]["b_displacement_max_abs"]
        assert disp == sorted(disp) and disp[-1] > 0.0


def test_the_outcome_checks_pass_and_can_fail(result):
    checks = result["bias-only"]["checks"]
    assert len(checks) == len(result["bias-only"]["runs"]) and all(c["passed"] for c in checks)
    # negative controls: each mode's check says no when its outcome is absent
    for mode, key, value in [("outside", "db_max_abs", 0.0),  # b does not drift
                             ("outside", "loss_change_max_in_eps", 1e3),  # the loss moves
                             ("exact", "b_displacement_final_max_abs", 1.0),  # b moves
                             ("running", "loss_change_max_in_eps", 0.0),  # control fixed
                             ("outside", "linear_residual_in_rounding_units", math.nan)]:
        (run,) = [r for r in _bias_runs(result, mode)
                  if (r["norm"], r["dtype"]) == ("center", "float64")]
        doctored = {**run, "summary": {**run["summary"], key: value}}
        assert not drift.bias_only_checks([doctored])[0]["passed"], (mode, key)
    # each threshold is the promised number: just inside passes, just outside fails
    (run,) = [r for r in _bias_runs(result, "outside")
              if (r["norm"], r["dtype"]) == ("center", "float64")]
    bound = run["summary"]["db_rounding_bound"]
    for key, inside, outside in [
        ("linear_residual_in_rounding_units", 0.99 * LINEAR_RESIDUAL_UNITS,
         1.01 * LINEAR_RESIDUAL_UNITS),
        ("loss_change_max_in_eps", 0.99 * LOSS_CHANGE_EPS, 1.01 * LOSS_CHANGE_EPS),
        ("db_max_abs", 1.01 * SIGNAL_OVER_ROUNDING * bound, 0.99 * SIGNAL_OVER_ROUNDING * bound),
    ]:
        for value, passes in ((inside, True), (outside, False)):
            doctored = {**run, "summary": {**run["summary"], key: value}}
            assert drift.bias_only_checks([doctored])[0]["passed"] is passes, (key, value)


def test_a_diverging_run_reports_nan_not_zero():
    # max() kept the old value when the new one was NaN: a run whose loss went
    # NaN reported a loss change of 0
    res = run_drift(["bias-only"], lr=1e39, dtypes=["float32"], quick=True, steps=3)
    diverged = [run for run in res["bias-only"]["runs"]
                if any(math.isnan(v) for v in run["series"]["loss_change_nats"])]
    assert diverged  # lr 1e39 in float32
    for run in diverged:
        assert math.isnan(run["summary"]["loss_change_max_abs_nats"])


def test_exact_mode_leaves_b_where_it_started(result):
    for run in _bias_runs(result, "exact"):
        s = run["summary"]
        # Its gradient is zero up to the rounding of a sum that cancels exactly...
        assert s["db_max_abs"] <= s["db_rounding_bound"], s
        # ...so b moves at most by that rounding, step after step.
        assert s["b_displacement_final_max_abs"] <= BIAS_STEPS * s["lr"] * s["db_rounding_bound"]
        outside = _partner(result, run, "outside")["summary"]
        assert s["b_displacement_final_max_abs"] <= (
            EXACT_OVER_OUTSIDE * outside["b_displacement_final_max_abs"])
        assert s["loss_change_max_in_eps"] <= LOSS_CHANGE_EPS


def test_running_mode_control_fails_both_checks(result):
    # Negative control: running statistics lag b, so b's step changes the
    # loss and the drift is not a straight line. The checks above must see it.
    for run in _bias_runs(result, "running"):
        s = run["summary"]
        assert s["linear_residual_in_rounding_units"] > 1e3 * LINEAR_RESIDUAL_UNITS, s
        assert s["loss_change_max_in_eps"] > 1e3 * LOSS_CHANGE_EPS, s


# --------------------------------------------------------------------------- #
# scenario 2: every parameter trains
# --------------------------------------------------------------------------- #


def test_train_all_curves_and_sweep_are_consistent(result):
    train = result["train-all"]
    outcomes = set(train["setup"]["outcomes"]) - {"blew_up"}
    for run in train["curves"] + train["sweep"]["runs"]:
        s = run["summary"]
        assert s["outcome"] in outcomes
        assert s["steps_completed"] == (BIAS_STEPS if s["first_nonfinite_step"] is None
                                        else s["first_nonfinite_step"])
    for run in train["curves"]:
        series = run["series"]
        assert series["step"][0] == 0 and series["step"][-1] == run["summary"]["steps_completed"]
        assert all(len(v) == len(series["step"]) for v in series.values())
    for row in train["sweep"]["table"]:
        assert sum(row["outcomes"].values()) == row["runs"]
        assert row["blew_up"] == row["outcomes"]["non-finite"] + row["outcomes"][
            "rose-above-start"]
    lrs = {row["lr"] for row in train["sweep"]["table"]}
    assert lrs == set(train["setup"]["sweep_lrs"])


def test_exact_mode_keeps_b_at_rounding_level_when_everything_trains(result):
    curves = result["train-all"]["curves"]
    for run in (r for r in curves if r["mode"] == "exact"):
        (outside,) = [r for r in curves if r["mode"] == "outside" and all(
            r[k] == run[k] for k in ("dataset", "batching", "norm", "dtype"))]
        assert run["summary"]["final_b_norm"] <= (
            EXACT_OVER_OUTSIDE * outside["summary"]["final_b_norm"])


@pytest.mark.parametrize(
    ("losses", "nonfinite", "expected"),
    [
        ([2.0, 1.0, 0.5], False, "trained"),
        ([2.0, 0.5, 1.5], False, "rebounded"),  # gave back 1.0 of 1.5
        ([2.0, 0.5, 1.0], False, "trained"),  # gave back 0.5 of 1.5
        ([2.0, 1.0, 2.5], False, "rose-above-start"),
        ([2.0, 1.0, None], False, "non-finite"),
        ([2.0, 1.0, 1.0], True, "non-finite"),
    ],
)
def test_outcome_classification(losses, nonfinite, expected):
    assert drift._outcome(losses, nonfinite) == expected


# --------------------------------------------------------------------------- #
# scenario 3, schema, determinism, validation
# --------------------------------------------------------------------------- #


def test_precision_scenario_compares_the_kernels_with_the_one_pass_formula():
    res = run_drift(["precision"], quick=True)
    rows = res["precision"]["accuracy"]["rows"]
    offsets = res["precision"]["setup"]["offsets_over_std"]
    by = {(r["offset_over_std"], r["method"]): r for r in rows}
    for offset in offsets:
        assert (offset, "bnproof") in by and (offset, "one-pass-float32") in by
    top = max(offsets)
    assert by[(top, "bnproof")]["max_err_ulp"] < by[(top, "one-pass-float32")]["max_err_ulp"]
    assert _json_roundtrip(res["precision"]) == res["precision"]


#: Keys every result carries, per level (the report and the CLI read them).
SCHEMA = {
    "top": {"parameters", "seed", "provenance", "timings_seconds", "bias-only", "train-all"},
    "provenance": {"bnproof", "python", "numpy", "numba", "date"},
    "bias_run": {"norm", "mode", "dtype", "series", "summary"},
    "bias_series": {"step", "b_displacement_max_abs", "linear_residual_max_abs",
                    "loss_change_nats"},
    "bias_summary": {"steps", "lr", "initial_loss_nats", "loss_change_max_abs_nats",
                     "loss_change_max_in_eps", "b_drift_per_step_max_abs",
                     "b_displacement_final_max_abs", "linear_residual_max_abs",
                     "linear_residual_relative_to_displacement",
                     "linear_residual_in_rounding_units", "db_max_abs", "db_rounding_bound",
                     "b_over_std_final_max", "machine_eps", "batch_size"},
    "train_run": {"dataset", "batching", "mode", "norm", "dtype", "lr", "seed", "summary"},
    "train_summary": {"outcome", "first_nonfinite_step", "steps_completed",
                      "initial_loss_nats", "min_loss_nats", "final_loss_nats",
                      "final_accuracy_fraction", "final_b_norm", "final_W_norm",
                      "initial_W_norm", "final_b_over_std_max", "final_gamma_abs_max"},
    "train_series": {"step", "loss_nats", "accuracy_fraction", "b_norm", "W_norm",
                     "b_over_std_max"},
    "sweep_row": {"mode", "norm", "dtype", "lr", "runs", "outcomes", "blew_up",
                  "final_loss_nats_median", "final_W_norm_median", "final_b_norm_median"},
}


def test_json_schema(result):
    assert _json_roundtrip(result) == result  # plain JSON types, no NaN
    assert set(result) == SCHEMA["top"]
    assert SCHEMA["provenance"] <= set(result["provenance"])
    assert result["parameters"]["steps"] == BIAS_STEPS
    assert set(result["timings_seconds"]) == {"bias-only", "train-all"}
    for run in result["bias-only"]["runs"]:
        assert set(run) == SCHEMA["bias_run"]
        assert set(run["series"]) == SCHEMA["bias_series"]
        assert set(run["summary"]) == SCHEMA["bias_summary"]
    train = result["train-all"]
    assert set(train) == {"description", "setup", "curves", "sweep"}
    for run in train["curves"]:
        assert set(run) == SCHEMA["train_run"] | {"series"}
        assert set(run["summary"]) == SCHEMA["train_summary"]
        assert set(run["series"]) == SCHEMA["train_series"]
    for run in train["sweep"]["runs"]:
        assert set(run) == SCHEMA["train_run"]
    for row in train["sweep"]["table"]:
        assert set(row) == SCHEMA["sweep_row"]


def _comparable(res):
    res = json.loads(json.dumps(res))
    del res["provenance"]["date"]
    del res["timings_seconds"]
    return res


def test_same_seed_gives_the_same_json_and_another_seed_does_not():
    args = {"scenarios": ["bias-only", "train-all"], "quick": True, "steps": 4,
            "dtypes": ["float32"]}
    first = run_drift(seed=5, **args)
    again = run_drift(seed=5, **args)
    other = run_drift(seed=6, **args)
    assert _comparable(first) == _comparable(again)
    assert _comparable(first) != _comparable(other)


def test_progress_reports_every_stage_to_completion():
    calls = []
    run_drift(["bias-only"], quick=True, steps=2, dtypes="float64",
              progress=lambda *a: calls.append(a))
    assert calls[0] == ("bias-only", 0, len(NORMS) * len(MODES))
    assert calls[-1] == ("bias-only", len(NORMS) * len(MODES), len(NORMS) * len(MODES))


def test_scenario_names_match_the_command_line():
    from bnproof.commands.drift import SCENARIO_NAMES

    assert tuple(SCENARIOS) == SCENARIO_NAMES


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scenarios": ["nope"]}, ValueError, "unknown scenario 'nope'"),
        ({"scenarios": []}, ValueError, "scenarios is empty"),
        ({"scenarios": 3}, TypeError, "scenarios must be"),
        ({"steps": 0}, ValueError, "steps=0 must be at least 1"),
        ({"steps": -5}, ValueError, "steps=-5"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"steps": True}, TypeError, "steps must be an int"),
        ({"lr": 0.0}, ValueError, "lr=0.0 must be finite and > 0"),
        ({"lr": math.inf}, ValueError, "must be finite"),
        ({"lr": "0.5"}, TypeError, "lr must be a positive number"),
        ({"seed": -1}, ValueError, "seed=-1 must be >= 0"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"dtypes": ["float16"]}, ValueError, "'float16' is not supported"),
        ({"dtypes": []}, ValueError, "dtypes is empty"),
        ({"quick": "yes"}, TypeError, "quick must be True or False"),
        ({"progress": 3}, TypeError, "progress must be a callable"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, error, match):
    with pytest.raises(error, match=match):
        run_drift(**kwargs)
