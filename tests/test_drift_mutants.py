"""The drift experiment's helpers, stated literally (fast; the runs are in test_drift.py)."""

import math

import numpy as np
import pytest

from bnproof.experiments import drift

pytest.importorskip("sklearn", reason="the drift experiment trains on scikit-learn's digits")


# --------------------------------------------------------------------------- #
# plan and validation
# --------------------------------------------------------------------------- #


def test_the_plans_literally():
    # run_drift's docstring: 300 / 120 / 80 steps (50 / 30 / 30 with quick), base
    # learning rate 0.5, sweep factors 1, 10, 60, 200, 600 (1 and 200 with quick)
    quick = drift._plan(None, None, True)
    assert quick == drift._Plan(
        bias_steps=50, bias_lr=0.5, train_steps=30, train_lr=0.5,
        train_datasets=("digits", "synthetic"), train_batchings=("full",), sweep_steps=30,
        sweep_lrs=(0.5, 100.0), sweep_seeds=1, precision_offsets=(0.0, 1e2, 1e4, 1e6),
        precision_shape=(256, 8))
    full = drift._plan(None, None, False)
    assert full == drift._Plan(
        bias_steps=300, bias_lr=0.5, train_steps=120, train_lr=0.5,
        train_datasets=("digits", "synthetic"), train_batchings=("full", "minibatch"),
        sweep_steps=80, sweep_lrs=(0.5, 5.0, 30.0, 100.0, 300.0), sweep_seeds=2,
        precision_offsets=(0.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6), precision_shape=(1024, 16))
    assert drift._plan(7, 2.0, False) == drift._Plan(
        bias_steps=7, bias_lr=2.0, train_steps=7, train_lr=2.0,
        train_datasets=("digits", "synthetic"), train_batchings=("full", "minibatch"),
        sweep_steps=7, sweep_lrs=(2.0, 20.0, 120.0, 400.0, 1200.0), sweep_seeds=2,
        precision_offsets=(0.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6), precision_shape=(1024, 16))
    q = drift._plan(3, 1.0, True)
    assert (q.bias_steps, q.train_steps, q.sweep_steps, q.bias_lr, q.train_lr,
            q.sweep_lrs) == (3, 3, 3, 1.0, 1.0, (1.0, 200.0))


def test_check_scenarios():
    assert drift._check_scenarios(None) == ("bias-only", "train-all", "precision")
    assert drift._check_scenarios("train-all") == ("train-all",)
    assert drift._check_scenarios(["precision", "bias-only", "precision"]) == (
        "bias-only", "precision")
    assert drift._check_scenarios(iter(["train-all"])) == ("train-all",)
    with pytest.raises(TypeError, match=r"^scenarios must be a list of names or None, got 3 "
                                        r"\(choose from bias-only, train-all, precision\)$"):
        drift._check_scenarios(3)
    with pytest.raises(ValueError, match=r"^scenarios is empty; choose from bias-only, "
                                         r"train-all, precision or pass None$"):
        drift._check_scenarios([])
    with pytest.raises(ValueError, match=r"^unknown scenario 'x'; choose from bias-only, "
                                         r"train-all, precision$"):
        drift._check_scenarios(["bias-only", "x"])


def test_check_steps_lr_seed():
    assert drift._check_steps(None) is None
    assert drift._check_steps(1) == 1
    got = drift._check_steps(np.int64(4))
    assert got == 4 and type(got) is int
    for bad in (True, 2.0, "3"):
        with pytest.raises(TypeError, match=r"^steps must be an int >= 1 or None, got "):
            drift._check_steps(bad)
    with pytest.raises(ValueError, match=r"^steps=0 must be at least 1 \(or None for the "
                                         r"defaults\)$"):
        drift._check_steps(0)

    assert drift._check_lr(None) is None
    got = drift._check_lr(2)
    assert got == 2.0 and type(got) is float
    assert drift._check_lr(np.float32(0.5)) == 0.5
    assert drift._check_lr(1e-300) == 1e-300
    for bad in (True, "0.5"):
        with pytest.raises(TypeError, match=r"^lr must be a positive number or None, got "
                                            r".* \(e\.g\. lr=0\.5\)$"):
            drift._check_lr(bad)
    for bad, shown in ((0, "0.0"), (-1.0, "-1.0"), (math.nan, "nan"), (math.inf, "inf"),
                       (-math.inf, "-inf")):
        with pytest.raises(ValueError, match=rf"^lr={shown} must be finite and > 0 "
                                             r"\(e\.g\. lr=0\.5\)$"):
            drift._check_lr(bad)

    assert drift._check_seed(0) == 0
    got = drift._check_seed(np.int32(5))
    assert got == 5 and type(got) is int
    for bad in (False, 1.0, None):
        with pytest.raises(TypeError, match=r"^seed must be an int >= 0, got "):
            drift._check_seed(bad)
    with pytest.raises(ValueError, match=r"^seed=-2 must be >= 0$"):
        drift._check_seed(-2)


def test_check_dtypes():
    assert drift._check_dtypes("float32") == ("float32",)
    assert drift._check_dtypes(["float32", "float64", "f8"]) == ("float64", "float32")
    assert drift._check_dtypes([np.float32]) == ("float32",)
    with pytest.raises(TypeError, match=r"^dtypes must be a list of 'float64' and/or "
                                        r"'float32', got None$"):
        drift._check_dtypes(None)
    with pytest.raises(ValueError, match=r"^dtypes is empty; pass 'float64' and/or "
                                         r"'float32'$"):
        drift._check_dtypes([])
    with pytest.raises(ValueError, match=r"^dtype 'float16' is not supported; use 'float64' "
                                         r"and/or 'float32'$"):
        drift._check_dtypes(["float64", "float16"])


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #


def test_record_steps():
    assert drift._record_steps(0).tolist() == [0]
    assert drift._record_steps(3).tolist() == [0, 1, 2, 3]
    assert drift._record_steps(3).dtype.kind == "i"  # step numbers are integers
    assert drift._record_steps(60).tolist() == list(range(61))
    # 61 points, evenly spaced: every second step of 120
    assert drift._record_steps(120).tolist() == list(range(0, 121, 2))
    # 61 points over 100 steps, rounded: 0, 5/3 -> 2, 10/3 -> 3, 5, ...
    got = drift._record_steps(100).tolist()
    assert len(got) == 61 and got[:5] == [0, 2, 3, 5, 7] and got[-1] == 100


def test_worst_keeps_the_nan():
    assert drift._worst(1.0, 2.0) == 2.0 and drift._worst(3.0, 2.0) == 3.0
    assert math.isnan(drift._worst(math.nan, 1.0)) and math.isnan(drift._worst(1.0, math.nan))


def test_finite_or_none():
    assert drift._finite_or_none(1.5) == 1.5
    got = drift._finite_or_none(np.float32(2.0))
    assert got == 2.0 and type(got) is float
    for bad in (math.inf, -math.inf, math.nan, np.float64("nan")):
        assert drift._finite_or_none(bad) is None


def test_plain():
    value = {1: (np.float32(0.5), np.int64(3)), "a": np.array([1.0, np.inf]),
             "b": [math.nan, -math.inf, 2.0, "s", None, True],
             "c": {"d": np.float64(np.nan)}}
    got = drift._plain(value)
    assert got == {"1": [0.5, 3], "a": [1.0, None], "b": [None, None, 2.0, "s", None, True],
                   "c": {"d": None}}
    assert type(got["1"][0]) is float and type(got["1"][1]) is int


def test_report():
    seen = []
    drift._report(None, "x", 1, 2)
    drift._report(lambda *a: seen.append(a), "x", 1, 2)
    assert seen == [("x", 1, 2)]


def test_outcome_boundaries():
    # final equal to the start is not above it; a rebound is strictly more than half
    assert drift._outcome([2.0, 1.0, 2.0], False) == "rebounded"
    assert drift._outcome([2.0, 1.0, 1.5], False) == "trained"
    assert drift._outcome([2.0, 1.0, 1.5000001], False) == "rebounded"
    assert drift._outcome([2.0, 2.0], False) == "trained"
    assert drift._outcome([2.0, 2.5, 1.9], False) == "trained"
    assert drift._outcome([2.0, None, 1.0], False) == "trained"  # lowest of the finite ones
    assert drift._outcome([None, 1.0], False) == "non-finite"
    assert drift._outcome([2.0, 1.0], True) == "non-finite"


def test_batches():
    rng = np.random.default_rng(0)
    assert list(drift._batches(10, "full", 3, rng)) == [None, None, None]
    assert list(drift._batches(10, "full", 0, rng)) == []
    got = list(drift._batches(130, "minibatch", 5, np.random.default_rng(1)))
    # 130 // 64 = 2 batches an epoch (the last 2 examples dropped), reshuffled each epoch
    assert len(got) == 5 and all(len(b) == 64 for b in got)
    for epoch in (got[0:2], got[2:4]):
        assert len(set(epoch[0]) | set(epoch[1])) == 128
        assert set(epoch[0]) | set(epoch[1]) <= set(range(130))
    assert list(got[0]) != list(got[2])
    first = np.random.default_rng(1).permutation(130)
    assert list(got[0]) == list(first[:64]) and list(got[1]) == list(first[64:128])
    assert len(list(drift._batches(64, "minibatch", 3, rng))) == 3
    # one permutation an epoch, and none once the steps are done: 4 steps of 2 an
    # epoch draw two permutations from the stream
    rng = np.random.default_rng(5)
    assert len(list(drift._batches(130, "minibatch", 4, rng))) == 4
    twice = np.random.default_rng(5)
    twice.permutation(130), twice.permutation(130)
    assert rng.random() == twice.random()


def _summary(**kw):
    return {"outcome": "trained", "final_loss_nats": 1.0, "final_W_norm": 2.0,
            "final_b_norm": 3.0, **kw}


def test_sweep_table():
    runs = [
        {"mode": "exact", "norm": "center", "dtype": "float64", "lr": 0.5,
         "summary": _summary(final_loss_nats=1.0)},
        {"mode": "outside", "norm": "center", "dtype": "float64", "lr": 0.5,
         "summary": _summary(outcome="non-finite", final_loss_nats=None, final_W_norm=None,
                             final_b_norm=None)},
        {"mode": "exact", "norm": "center", "dtype": "float64", "lr": 0.5,
         "summary": _summary(outcome="rose-above-start", final_loss_nats=3.0,
                             final_W_norm=4.0, final_b_norm=None)},
        {"mode": "exact", "norm": "center", "dtype": "float64", "lr": 0.5,
         "summary": _summary(outcome="rebounded", final_loss_nats=None, final_W_norm=6.0,
                             final_b_norm=None)},
    ]
    exact, outside = drift._sweep_table(runs)
    # three exact runs: losses 1, 3, inf -> median 3; W 2, 4, 6 -> 4; b 3 and two
    # non-finite -> None (half or more are non-finite)
    assert exact == {"mode": "exact", "norm": "center", "dtype": "float64", "lr": 0.5,
                     "runs": 3, "outcomes": {"trained": 1, "rebounded": 1,
                                             "rose-above-start": 1, "non-finite": 0},
                     "final_loss_nats_median": 3.0, "final_W_norm_median": 4.0,
                     "final_b_norm_median": None, "blew_up": 1}
    assert outside == {"mode": "outside", "norm": "center", "dtype": "float64", "lr": 0.5,
                       "runs": 1, "outcomes": {"trained": 0, "rebounded": 0,
                                               "rose-above-start": 0, "non-finite": 1},
                       "final_loss_nats_median": None, "final_W_norm_median": None,
                       "final_b_norm_median": None, "blew_up": 1}
    two = drift._sweep_table([runs[0], {**runs[0], "summary": _summary(final_loss_nats=None)}])
    assert two[0]["final_loss_nats_median"] is None  # one of two is half: None
    assert drift._sweep_table([{**runs[0], "lr": 1.0}, runs[0]])[0]["lr"] == 1.0
    # two trained runs of one group, every value finite: counted twice, medians of two
    [row] = drift._sweep_table([runs[0], {**runs[0], "summary": _summary(
        final_loss_nats=2.0, final_W_norm=4.0, final_b_norm=5.0)}])
    assert row["outcomes"] == {"trained": 2, "rebounded": 0, "rose-above-start": 0,
                               "non-finite": 0}
    assert row["runs"] == 2 and row["blew_up"] == 0
    assert (row["final_loss_nats_median"], row["final_W_norm_median"],
            row["final_b_norm_median"]) == (1.5, 3.0, 4.0)


def test_moments_var_is_the_population_variance():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    assert drift._moments_var(x).tolist() == [1.0, 4.0]


# --------------------------------------------------------------------------- #
# bias_only_checks at their boundaries
# --------------------------------------------------------------------------- #


def _run(mode, **kw):
    summary = {"loss_change_max_in_eps": 1.0, "db_max_abs": 1.0, "db_rounding_bound": 0.01,
               "b_displacement_final_max_abs": 1.0, "linear_residual_in_rounding_units": 1.0,
               "steps": 10, "lr": 0.5, **kw}
    return {"norm": "center", "mode": mode, "dtype": "float64", "summary": summary}


def test_bias_only_checks_boundaries():
    def passed(run):
        [check] = drift.bias_only_checks([run])
        return check["passed"]

    [check] = drift.bias_only_checks([_run("outside")])
    assert check == {"norm": "center", "mode": "outside", "dtype": "float64",
                     "expectation": "b drifts on a straight line while the loss stays fixed",
                     "passed": True}
    assert type(check["passed"]) is bool
    # outside: 10 times the bound is not enough; the residual and loss limits are inclusive
    assert not passed(_run("outside", db_max_abs=0.1))
    assert passed(_run("outside", db_max_abs=0.1000001))
    assert not passed(_run("outside", b_displacement_final_max_abs=0.0))
    assert passed(_run("outside", linear_residual_in_rounding_units=64.0))
    assert not passed(_run("outside", linear_residual_in_rounding_units=64.001))
    assert passed(_run("outside", loss_change_max_in_eps=16.0))
    assert not passed(_run("outside", loss_change_max_in_eps=16.001))
    # exact: gradient within the bound, displacement within steps * lr * bound = 0.05
    exact = {"db_max_abs": 0.01, "b_displacement_final_max_abs": 0.05}
    [check] = drift.bias_only_checks([_run("exact", **exact)])
    assert check["expectation"] == "b stays put (up to rounding) and the loss stays fixed"
    assert check["passed"] is True
    assert not passed(_run("exact", **{**exact, "db_max_abs": 0.0101}))
    assert not passed(_run("exact", **{**exact, "b_displacement_final_max_abs": 0.0501}))
    assert passed(_run("exact", **{**exact, "loss_change_max_in_eps": 16.0}))
    assert not passed(_run("exact", **{**exact, "loss_change_max_in_eps": 16.5}))
    # running, the control: the loss must move by more than 16 eps
    [check] = drift.bias_only_checks([_run("running", loss_change_max_in_eps=16.5)])
    assert check["expectation"] == "control: the loss moves (the statistics lag b)"
    assert check["passed"] is True
    assert not passed(_run("running", loss_change_max_in_eps=16.0))
    assert drift.bias_only_checks([]) == []
    assert len(drift.bias_only_checks([_run("exact"), _run("running")])) == 2


# --------------------------------------------------------------------------- #
# the scenarios' bookkeeping, with the runs replaced
# --------------------------------------------------------------------------- #


def test_bias_only_runs_every_configuration_in_order(monkeypatch):
    made = []

    def fake_run(norm, mode, dtype, steps, lr, seed):
        made.append((norm, mode, dtype, steps, lr, seed))
        return _run(mode, loss_change_max_in_eps=100.0) | {"norm": norm, "dtype": dtype}

    monkeypatch.setattr(drift, "_bias_only_run", fake_run)
    seen = []
    plan = drift._plan(4, 0.25, True)
    out = drift._bias_only(plan, 3, ("float64", "float32"),
                           lambda *a: seen.append(a))
    assert made == [(n, m, d, 4, 0.25, 3) for n in ("center", "center-scale")
                    for d in ("float64", "float32") for m in ("exact", "outside", "running")]
    assert seen == [("bias-only", i, 12) for i in range(13)]
    assert out["description"] == drift.SCENARIOS["bias-only"]
    assert out["setup"] == {
        "dataset": "digits", "batching": "full", "steps": 4, "lr": 0.25, "b_init": "N(0, 1)",
        "trained": ["b"],
        "negative_control": "running mode: its statistics lag b, so the loss must move and "
                            "the drift must leave the straight line"}
    assert [r["mode"] for r in out["runs"]] == [m[1] for m in made]
    assert [c["passed"] for c in out["checks"]] == [False, False, True] * 4


def test_train_all_runs_the_curves_then_the_sweep(monkeypatch):
    made = []

    def fake_run(dataset, batching, mode, norm, dtype, steps, lr, seed, curves):
        made.append((dataset, batching, mode, norm, dtype, steps, lr, seed, curves))
        return {"mode": mode, "norm": norm, "dtype": dtype, "lr": lr,
                "summary": _summary()}

    monkeypatch.setattr(drift, "_train_run", fake_run)
    seen = []
    plan = drift._plan(5, 1.0, False)
    out = drift._train_all(plan, 2, ("float32",), lambda *a: seen.append(a))
    curves = [(ds, bt, m, n, "float32", 5, 1.0, 2, True) for ds in ("digits", "synthetic")
              for bt in ("full", "minibatch") for n in ("center", "center-scale")
              for m in ("exact", "outside", "running")]
    sweep = [("digits", "full", m, n, "float32", 5, lr, s, False)
             for lr in (1.0, 10.0, 60.0, 200.0, 600.0) for s in (2, 3)
             for n in ("center", "center-scale") for m in ("exact", "outside", "running")]
    assert made == curves + sweep
    total = len(curves) + len(sweep)
    assert seen == [("train-all", i, total) for i in range(total + 1)]
    assert len(out["curves"]) == len(curves) and len(out["sweep"]["runs"]) == len(sweep)
    assert len(out["sweep"]["table"]) == 5 * 2 * 3
    assert out["description"] == drift.SCENARIOS["train-all"]
    assert out["setup"] == {
        "network": "x = u W + b (W: D x 32) -> normalization -> gamma, beta -> tanh -> h V + c "
                   "-> softmax cross-entropy (mean over the batch, nats)",
        "optimizer": "plain gradient descent on every parameter",
        "init": "W ~ N(0, 1/D), V ~ N(0, 1/hidden), b = beta = c = 0, gamma = 1",
        "digits_inputs": "pixels / 16, in [0, 1], not centered",
        "synthetic_inputs": "1024 standard normal vectors in R^16, 4 classes by a random "
                            "linear teacher",
        "minibatch_size": 64,
        "evaluation": "loss and accuracy on the whole training set after each recorded step; "
                      "exact and outside normalize with the statistics of the whole set, "
                      "running with its running buffers",
        "outcomes": {
            "non-finite": "a loss or parameter became NaN or inf (run stopped there)",
            "rose-above-start": "final loss above the initial loss",
            "rebounded": "final loss gave back more than 0.5 of the progress to the lowest "
                         "loss seen",
            "trained": "none of the above",
            "blew_up": "the sweep table's count of non-finite plus rose-above-start runs",
        },
        "curve_steps": 5, "curve_lr": 1.0, "sweep_dataset": "digits", "sweep_batching": "full",
        "sweep_steps": 5, "sweep_lrs": [1.0, 10.0, 60.0, 200.0, 600.0], "sweep_seeds": [2, 3],
    }


def test_precision_passes_the_plan_to_the_accuracy_experiment(monkeypatch):
    import bnproof.experiments.accuracy

    calls = []

    def fake(offsets, *, shape, std, seed):
        calls.append((offsets, shape, std, seed))
        return {"rows": [np.float32(0.5)], "worst": math.inf}

    monkeypatch.setattr(bnproof.experiments.accuracy, "accuracy_vs_offset", fake)
    seen = []
    out = drift._precision(drift._plan(None, None, True), 7, lambda *a: seen.append(a))
    assert calls == [([0.0, 1e2, 1e4, 1e6], (256, 8), 1.0, 7)]
    assert seen == [("precision", 0, 1), ("precision", 1, 1)]
    assert out == {"description": drift.SCENARIOS["precision"],
                   "setup": {"offsets_over_std": [0.0, 1e2, 1e4, 1e6], "shape": [256, 8],
                             "std": 1.0, "dtype": "float32"},
                   "accuracy": {"rows": [0.5], "worst": None}}


def test_run_drift_bookkeeping(monkeypatch):
    from bnproof import _provenance

    calls = []
    monkeypatch.setattr(drift, "_bias_only",
                        lambda plan, seed, dtypes, progress: calls.append(
                            ("bias", plan, seed, dtypes, progress)) or {"b": 1})
    monkeypatch.setattr(drift, "_train_all",
                        lambda plan, seed, dtypes, progress: calls.append(
                            ("train", plan, seed, dtypes, progress)) or {"t": 1})
    monkeypatch.setattr(drift, "_precision",
                        lambda plan, seed, progress: calls.append(
                            ("precision", plan, seed, progress)) or {"p": 1})
    monkeypatch.setattr(_provenance, "provenance", lambda: {"prov": True})
    # a clock that advances 1.23456 s a reading: every stage took 1.23456 s
    ticks = iter(np.arange(10) * 1.23456)
    monkeypatch.setattr(drift.time, "perf_counter", lambda: float(next(ticks)))
    progress = print
    out = drift.run_drift(["precision", "bias-only"], steps=3, lr=2, seed=4,
                          dtypes=["float32"], quick=np.bool_(True), progress=progress)
    plan = drift._plan(3, 2.0, True)
    assert calls == [("bias", plan, 4, ("float32",), progress),
                     ("precision", plan, 4, progress)]
    assert list(out) == ["parameters", "seed", "provenance", "timings_seconds", "bias-only",
                         "precision"]
    assert out["bias-only"] == {"b": 1} and out["precision"] == {"p": 1}
    assert out["seed"] == 4 and out["provenance"] == {"prov": True}
    # rounded to the millisecond
    assert out["timings_seconds"] == {"bias-only": 1.235, "precision": 1.235}
    assert out["parameters"] == {
        "scenarios": ["bias-only", "precision"], "steps": 3, "lr": 2.0, "dtypes": ["float32"],
        "quick": True,
        "plan": {"bias_steps": 3, "bias_lr": 2.0, "train_steps": 3, "train_lr": 2.0,
                 "train_datasets": ["digits", "synthetic"], "train_batchings": ["full"],
                 "sweep_steps": 3, "sweep_lrs": [2.0, 400.0], "sweep_seeds": 1,
                 "precision_offsets": [0.0, 1e2, 1e4, 1e6], "precision_shape": [256, 8]},
        "hidden_units": 32, "eps": 1e-5, "momentum": 0.1,
        "momentum_convention": "PyTorch: new = (1 - momentum) old + momentum batch",
        "nonlinearity": "tanh", "loss": "softmax cross-entropy, mean over the batch, nats"}
    assert type(out["parameters"]["quick"]) is bool
    calls.clear()
    ticks = iter(np.arange(10) * 1.23456)
    out = drift.run_drift("train-all", progress=progress)
    assert calls == [("train", drift._plan(None, None, False), 0, ("float64", "float32"),
                      progress)]
    assert out["parameters"]["quick"] is False and out["parameters"]["steps"] is None
    assert out["parameters"]["lr"] is None
    for bad, match in ((("quick", "yes"), r"^quick must be True or False, got 'yes'$"),
                       (("progress", 3), r"^progress must be a callable\(stage, done, total\) "
                                         r"or None, got 3$")):
        with pytest.raises(TypeError, match=match):
            drift.run_drift("train-all", **dict([bad]))


# --------------------------------------------------------------------------- #
# short real runs, their numbers recomputed here
# --------------------------------------------------------------------------- #


def _digits_loss(p, u, labels, norm, b):
    """Mean cross-entropy of the network with batch statistics (NumPy, float64)."""
    x = u @ p.W.astype(np.float64) + b
    xc = x - x.mean(axis=0)
    y = xc if norm == "center" else xc / np.sqrt(x.var(axis=0) + 1e-5)
    logits = np.tanh(y) @ p.V.astype(np.float64)
    lse = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("norm", ["center", "center-scale"])
def test_a_short_outside_run_by_hand(norm):
    from bnproof.experiments._drift_network import _dataset, _init_params

    run = drift._bias_only_run(norm, "outside", "float64", 3, 0.5, 0)
    assert (run["norm"], run["mode"], run["dtype"]) == (norm, "outside", "float64")
    series, s = run["series"], run["summary"]
    assert series["step"] == [0, 1, 2, 3]
    assert series["b_displacement_max_abs"][0] == 0.0
    assert series["linear_residual_max_abs"][0] == 0.0
    assert series["loss_change_nats"][0] == 0.0
    u, labels, _ = _dataset("digits", 0)
    p = _init_params(64, 10, 0, "float64", random_b=True)  # b ~ N(0, 1)
    assert s["initial_loss_nats"] == pytest.approx(_digits_loss(p, u, labels, norm, p.b),
                                                   rel=1e-12)
    assert (s["steps"], s["lr"], s["batch_size"], s["machine_eps"]) == (3, 0.5, 1797, 2.0**-52)
    # the straight line: three equal steps
    disp = series["b_displacement_max_abs"]
    assert disp[1] == s["b_drift_per_step_max_abs"] > 0.0
    assert disp[2] == pytest.approx(2 * disp[1], rel=1e-9)
    assert disp[3] == pytest.approx(3 * disp[1], rel=1e-9) == s["b_displacement_final_max_abs"]
    assert s["linear_residual_max_abs"] == max(series["linear_residual_max_abs"])
    assert s["linear_residual_max_abs"] < 1e-12 * disp[3]
    assert s["linear_residual_relative_to_displacement"] == (
        s["linear_residual_max_abs"] / s["b_displacement_final_max_abs"])
    assert 0.0 <= s["linear_residual_in_rounding_units"] <= 64.0
    assert s["loss_change_max_abs_nats"] == max(abs(v) for v in series["loss_change_nats"])
    assert s["loss_change_max_in_eps"] == (
        s["loss_change_max_abs_nats"] / (2.0**-52 * s["initial_loss_nats"]))
    assert s["loss_change_max_in_eps"] <= 16.0
    # the first step's size, lr times the largest |dL/db| with the statistics held
    # (db for the center norm: gamma times the sum of dL/dy, here the same as d beta)
    assert s["db_max_abs"] == pytest.approx(disp[1] / 0.5, rel=1e-9)
    assert 0.0 < s["db_rounding_bound"] < 1e-10 * s["db_max_abs"]
    std = np.sqrt((u @ p.W).var(axis=0))
    assert s["b_over_std_final_max"] >= float(np.max(np.abs(p.b) / std)) - 3 * disp[1] / std.min()
    assert s["b_over_std_final_max"] <= float(np.max(np.abs(p.b) / std)) + 3 * disp[1] / std.min()


def test_a_short_exact_and_running_run():
    exact = drift._bias_only_run("center-scale", "exact", "float64", 2, 0.5, 0)["summary"]
    assert exact["db_max_abs"] <= exact["db_rounding_bound"]
    assert exact["b_displacement_final_max_abs"] <= 2 * 0.5 * exact["db_rounding_bound"]
    running = drift._bias_only_run("center", "running", "float32", 2, 0.5, 0)
    s = running["summary"]
    assert s["machine_eps"] == 2.0**-23
    assert s["loss_change_max_in_eps"] > 16.0  # the control moves the loss
    assert running["series"]["loss_change_nats"][1] != 0.0


def test_a_short_training_run_by_hand():
    from bnproof.experiments._drift_network import _dataset, _init_params

    run = drift._train_run("digits", "full", "exact", "center-scale", "float64", 2, 0.5, 0,
                           curves=True)
    assert {k: run[k] for k in ("dataset", "batching", "mode", "norm", "dtype", "lr",
                                "seed")} == {
        "dataset": "digits", "batching": "full", "mode": "exact", "norm": "center-scale",
        "dtype": "float64", "lr": 0.5, "seed": 0}
    series, s = run["series"], run["summary"]
    assert series["step"] == [0, 1, 2]
    u, labels, _ = _dataset("digits", 0)
    p = _init_params(64, 10, 0, "float64", random_b=False)
    assert series["loss_nats"][0] == pytest.approx(
        _digits_loss(p, u, labels, "center-scale", p.b), rel=1e-12)
    assert series["b_norm"][0] == 0.0
    assert series["W_norm"][0] == pytest.approx(float(np.linalg.norm(p.W)), rel=1e-12)
    assert series["b_over_std_max"][0] == 0.0
    assert 0.0 <= series["accuracy_fraction"][0] <= 1.0
    assert series["loss_nats"][2] < series["loss_nats"][1] < series["loss_nats"][0]
    assert s == {
        "outcome": "trained", "first_nonfinite_step": None, "steps_completed": 2,
        "initial_loss_nats": series["loss_nats"][0], "min_loss_nats": series["loss_nats"][2],
        "final_loss_nats": series["loss_nats"][2],
        "final_accuracy_fraction": series["accuracy_fraction"][2],
        "final_b_norm": series["b_norm"][2], "final_W_norm": series["W_norm"][2],
        "initial_W_norm": series["W_norm"][0],
        "final_b_over_std_max": series["b_over_std_max"][2],
        "final_gamma_abs_max": s["final_gamma_abs_max"]}
    assert s["final_gamma_abs_max"] != 1.0 and s["final_W_norm"] != s["initial_W_norm"]
    assert s["final_b_norm"] < 1e-12  # exact mode: b's gradient cancels
    short = drift._train_run("digits", "full", "exact", "center-scale", "float64", 2, 0.5, 0,
                             curves=False)
    assert "series" not in short and short["summary"] == s


def test_a_blown_up_training_run_stops_at_the_first_non_finite_step():
    with np.errstate(over="ignore", invalid="ignore"):  # as run_drift runs it
        run = drift._train_run("synthetic", "minibatch", "outside", "center-scale", "float32",
                               4, 1e39, 1, curves=True)  # lr rounds to inf in float32
    s = run["summary"]
    assert s["outcome"] == "non-finite"
    assert s["first_nonfinite_step"] == s["steps_completed"] >= 1
    assert run["series"]["step"][-1] == s["steps_completed"]
    assert run["series"]["loss_nats"][-1] is None or s["final_W_norm"] is None


def test_running_training_evaluates_with_the_running_buffers():
    run = drift._train_run("synthetic", "full", "running", "center", "float64", 1, 0.5, 2,
                           curves=False)
    same = drift._train_run("synthetic", "full", "exact", "center", "float64", 1, 0.5, 2,
                            curves=False)
    # step 0: running buffers at mean 0, var 1 are not the batch statistics
    assert run["summary"]["initial_loss_nats"] != same["summary"]["initial_loss_nats"]


# --------------------------------------------------------------------------- #
# the runs replayed step by step with the network's own passes
# --------------------------------------------------------------------------- #


def _replay_bias_only(norm, mode, dtype, steps, lr, seed):
    """Section 2's loop written out: only b moves, W and the head stay put.

    Returns the values the run's summary should hold, from the definitions in
    run_drift's docstring (the straight line b_0 + t Delta b, its residual in
    units of eps times the sum of |b_s| + |b_s - b_(s-1)|, N eps max_j sum_i |dx_ij|).
    """
    from bnproof.experiments._drift_network import (
        _dataset,
        _init_params,
        _loss_and_grads,
        _Running,
    )

    u64, labels, _ = _dataset("digits", seed)
    p = _init_params(64, 10, seed, dtype, random_b=True)
    x0 = u64.astype(dtype) @ p.W
    running = _Running(dtype) if mode == "running" else None
    eps = float(np.finfo(dtype).eps)
    bs, losses, db_max, db_bound = [], [], [], []
    for t in range(steps + 1):
        bs.append(p.b.astype(np.float64))
        loss, _, grads, dx = _loss_and_grads(p, x0 + p.b, None, labels, mode, norm, running)
        losses.append(loss)
        db_max.append(float(np.max(np.abs(grads["b"]))))
        db_bound.append(float(len(labels) * eps * np.max(np.abs(dx).sum(axis=0))))
        if t < steps:
            p.b = p.b - np.asarray(lr, dtype=dtype) * grads["b"]
    b0, step = bs[0], bs[1] - bs[0]
    budget = np.zeros(32)
    units = [0.0]
    for t in range(1, steps + 1):
        budget = budget + eps * (np.abs(bs[t]) + np.abs(bs[t] - bs[t - 1]))
        residual = np.abs(bs[t] - b0 - t * step)
        units.append(float(np.max([r / w if r else 0.0
                                   for r, w in zip(residual, budget, strict=True)])))
    change = max(abs(v - losses[0]) for v in losses)
    return {
        "losses": losses, "bs": bs, "loss_change": change,
        "loss_change_in_eps": change / (eps * abs(losses[0])),
        "residual_units": max(units),
        "residual_max": max(float(np.max(np.abs(b - b0 - t * step))) for t, b in enumerate(bs)),
        "displacement": float(np.max(np.abs(bs[-1] - b0))),
        "db_max": max(db_max), "db_bound": max(db_bound),
    }


@pytest.mark.parametrize("norm, mode, dtype, steps", [
    ("center", "running", "float32", 4),        # the control: the loss moves
    ("center-scale", "running", "float64", 3),
    ("center-scale", "outside", "float32", 8),  # float32: the line is off by rounding
])
def test_bias_only_runs_replayed_by_hand(norm, mode, dtype, steps):
    run = drift._bias_only_run(norm, mode, dtype, steps, 0.5, 0)
    want = _replay_bias_only(norm, mode, dtype, steps, 0.5, 0)
    s, series = run["summary"], run["series"]
    assert s["initial_loss_nats"] == want["losses"][0]
    assert series["loss_change_nats"] == [v - want["losses"][0] for v in want["losses"]]
    assert series["b_displacement_max_abs"] == [
        float(np.max(np.abs(b - want["bs"][0]))) for b in want["bs"]]
    assert s["loss_change_max_abs_nats"] == want["loss_change"]
    assert s["loss_change_max_in_eps"] == pytest.approx(want["loss_change_in_eps"], rel=1e-14)
    assert s["b_displacement_final_max_abs"] == want["displacement"]
    assert s["b_drift_per_step_max_abs"] == float(np.max(np.abs(want["bs"][1] - want["bs"][0])))
    assert s["linear_residual_max_abs"] == want["residual_max"]
    assert s["linear_residual_in_rounding_units"] == pytest.approx(want["residual_units"],
                                                                   rel=1e-12)
    assert s["db_max_abs"] == want["db_max"] and s["db_rounding_bound"] == want["db_bound"]
    if mode == "outside":
        # the float32 line is not exact: some residual, within the 64 units of the check
        assert 0.0 < s["linear_residual_in_rounding_units"] <= 64.0
    else:
        assert s["loss_change_max_in_eps"] > 16.0


def test_a_bias_only_run_that_does_not_move_reports_no_relative_residual():
    # lr 1e-300: b - lr db rounds back to b, so b never moves and there is no
    # displacement to divide by
    s = drift._bias_only_run("center", "exact", "float64", 2, 1e-300, 0)["summary"]
    assert s["b_displacement_final_max_abs"] == 0.0 and s["b_drift_per_step_max_abs"] == 0.0
    assert s["linear_residual_relative_to_displacement"] is None
    assert s["linear_residual_in_rounding_units"] == 0.0


def _replay_train(dataset, batching, mode, norm, dtype, steps, lr, seed):
    """Every parameter trains: the loop written out, observed after every step.

    Returns per step (loss, accuracy, |b|, |W|, max |b| / std, max |gamma|), the
    loss and accuracy on the whole set as the experiment's setup states (batch
    statistics of the whole set, or the running buffers in running mode).
    """
    from bnproof.experiments._drift_network import (
        _dataset,
        _evaluate,
        _init_params,
        _loss_and_grads,
        _Running,
    )

    u64, labels, k = _dataset(dataset, seed)
    u = u64.astype(dtype)
    p = _init_params(u.shape[1], k, seed, dtype, random_b=False)  # b = 0
    running = _Running(dtype) if mode == "running" else None
    rng = np.random.default_rng([seed, 3])  # the minibatches' own stream
    per_epoch = len(labels) // 64

    def look():
        stats = None if running is None else (running.mean, running.var)
        loss, acc = _evaluate(p, u, labels, norm, stats)
        std = np.sqrt((u @ p.W).astype(np.float64).var(axis=0))
        b, w = p.b.astype(np.float64), p.W.astype(np.float64)
        return (loss, acc, float(np.linalg.norm(b)), float(np.linalg.norm(w)),
                float(np.max(np.abs(b) / std)), float(np.max(np.abs(p.gamma))))

    seen = [look()]
    for t in range(steps):
        if batching == "full":
            ub, lb = u, labels
        else:
            if t % per_epoch == 0:
                order = rng.permutation(len(labels))
            j = t % per_epoch
            ub, lb = u[order[j * 64:(j + 1) * 64]], labels[order[j * 64:(j + 1) * 64]]
        _, _, grads, _ = _loss_and_grads(p, ub @ p.W + p.b, ub, lb, mode, norm, running)
        for name, g in grads.items():
            setattr(p, name, getattr(p, name) - np.asarray(lr, dtype=dtype) * g)
        seen.append(look())
    return seen


@pytest.mark.parametrize("dataset, batching, mode, norm, dtype", [
    ("digits", "full", "running", "center-scale", "float32"),
    ("synthetic", "minibatch", "outside", "center", "float64"),
])
def test_training_runs_replayed_by_hand(dataset, batching, mode, norm, dtype):
    run = drift._train_run(dataset, batching, mode, norm, dtype, 3, 0.5, 1, curves=True)
    want = _replay_train(dataset, batching, mode, norm, dtype, 3, 0.5, 1)
    series, s = run["series"], run["summary"]
    assert series["step"] == [0, 1, 2, 3]
    assert series["loss_nats"] == [w[0] for w in want]
    assert series["accuracy_fraction"] == [w[1] for w in want]
    assert series["b_norm"] == [w[2] for w in want]
    assert series["W_norm"] == [w[3] for w in want]
    assert series["b_over_std_max"] == pytest.approx([w[4] for w in want], rel=1e-9)
    assert series["b_over_std_max"][-1] > 0.0  # b moved off zero
    assert s["final_gamma_abs_max"] == want[-1][5]
    assert s["min_loss_nats"] == min(w[0] for w in want)


def test_a_run_without_curves_judges_its_start_and_end_only():
    # digits, exact, center, lr 30, seed 0: the loss falls at step 1 and rises
    # above its start at step 2; without curves only steps 0 and 2 are observed,
    # so the lowest loss is the initial one
    with_curves = drift._train_run("digits", "full", "exact", "center", "float64", 2, 30.0,
                                   0, curves=True)
    losses = with_curves["series"]["loss_nats"]
    assert losses[1] < losses[0] < losses[2]
    s = drift._train_run("digits", "full", "exact", "center", "float64", 2, 30.0, 0,
                         curves=False)["summary"]
    assert s["min_loss_nats"] == losses[0] and s["final_loss_nats"] == losses[2]
    assert with_curves["summary"]["min_loss_nats"] == losses[1]
    assert s["outcome"] == "rose-above-start"


def test_a_full_batch_blow_up_stops_after_the_first_step():
    # lr 1e39 rounds to inf in float32: the first update makes the parameters
    # non-finite while the loss it came from was finite; the run stops there
    with np.errstate(over="ignore", invalid="ignore"):
        run = drift._train_run("digits", "full", "outside", "center", "float32", 5, 1e39, 0,
                               curves=True)
    s = run["summary"]
    assert s["first_nonfinite_step"] == 1 and s["steps_completed"] == 1
    assert run["series"]["step"] == [0, 1] and s["outcome"] == "non-finite"
