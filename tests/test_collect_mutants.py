"""``collect`` and its helpers, with every stage replaced by a recording stand-in.

Fast literal tests: what ``collect`` passes to each experiment, what it keeps
in the settings, seeds and timings, the order of the figures and what the
failure list says. The experiments themselves are tested in their own files.
"""

import sys
import time
import types
from types import SimpleNamespace

import pytest

import bnproof.experiments.accuracy
import bnproof.experiments.crosscheck
import bnproof.experiments.drift
import bnproof.kernels
import bnproof.plots
import bnproof.report._audit
from bnproof import _provenance
from bnproof.report import ClaimResult, ReportData, _collect
from bnproof.symbolic import CLAIMS, Proof


def _claim(claim_id, expected):
    return SimpleNamespace(id=claim_id, expected=expected)


def _result(claim_id, expected, verdict):
    return ClaimResult(_claim(claim_id, expected), SimpleNamespace(verdict=verdict))


# --------------------------------------------------------------------------- #
# ClaimResult, ReportData.failures
# --------------------------------------------------------------------------- #


def test_as_expected_compares_the_verdict_with_the_catalogue():
    assert _result("a", "proved", "proved").as_expected is True
    assert _result("a", "refuted", "refuted").as_expected is True
    assert _result("a", "proved", "refuted").as_expected is False


def _data(**kw):
    base = {"claims": (), "crosscheck": None, "accuracy": None, "drift": None,
            "figures": (), "provenance": {}}
    return ReportData(**{**base, **kw})


def test_no_results_no_failures():
    assert _data().failures == []
    assert _data(drift={"bias-only": None}).failures == []
    assert _data(crosscheck={}, drift={}).failures == []


def test_failures_name_each_claim_row_and_drift_check_in_order():
    claims = (_result("good", "proved", "proved"), _result("bad", "proved", "unproved"),
              _result("worse", "refuted", "proved"))
    rows = [{"n": 2, "quantity": "dx", "passed": True},
            {"n": 3, "quantity": "dgamma", "passed": False},
            {"n": 5, "quantity": "dbeta"}]  # no verdict is no pass
    checks = [{"norm": "center", "mode": "exact", "dtype": "float64", "passed": True,
               "expectation": "b stays put"},
              {"norm": "center-scale", "mode": "outside", "dtype": "float32", "passed": False,
               "expectation": "b drifts linearly"},
              {"norm": "center", "mode": "running", "dtype": "float64",
               "expectation": "the loss moves"}]
    other = [{"norm": "x", "mode": "y", "dtype": "z", "passed": False, "expectation": "w"}]
    data = _data(claims=claims, crosscheck={"rows": rows},
                 drift={"bias-only": {"checks": checks}, "train-all": {"checks": other}})
    assert data.failures == [
        "claim bad: verdict unproved, expected proved",
        "claim worse: verdict proved, expected refuted",
        "cross-check n=3 dgamma: failed",
        "cross-check n=5 dbeta: failed",
        "drift center-scale outside float32: expected that b drifts linearly",
        "drift center running float64: expected that the loss moves",
    ]


# --------------------------------------------------------------------------- #
# the small helpers
# --------------------------------------------------------------------------- #


def test_check_seed():
    assert _collect._check_seed(0) == 0
    import numpy as np

    got = _collect._check_seed(np.int64(7))
    assert got == 7 and type(got) is int
    for bad in (True, False, 1.0, "3", None):
        with pytest.raises(TypeError, match=r"^seed must be an int >= 0, got "):
            _collect._check_seed(bad)
    with pytest.raises(ValueError, match=r"^seed=-1 must be >= 0$"):
        _collect._check_seed(-1)


def test_the_experiments_arguments_literally():
    # the module's constants, as documented in collect's docstring
    assert _collect._accuracy_arguments(True, 3) == {
        "offsets": [0.0, 1e3, 1e6], "shape": (256, 8), "std": 1.0, "seed": 3}
    assert _collect._accuracy_arguments(False, 4) == {
        "offsets": [0.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6], "shape": (1024, 16), "std": 1.0,
        "seed": 4}
    assert _collect._drift_arguments(True, 5) == {
        "scenarios": ["bias-only", "train-all"], "steps": 5, "seed": 5,
        "dtypes": ["float64"], "quick": True}
    assert _collect._drift_arguments(False, 6) == {
        "scenarios": ["bias-only", "train-all"], "steps": None, "seed": 6,
        "dtypes": ["float64", "float32"], "quick": True}
    assert _collect._drift_settings(True) == {
        "scenarios": ["bias-only", "train-all"], "plan": "quick", "steps": 5,
        "dtypes": ["float64"]}
    assert _collect._drift_settings(False) == {
        "scenarios": ["bias-only", "train-all"], "plan": "quick", "steps": None,
        "dtypes": ["float64", "float32"]}


def test_proofs_key_changes_with_what_determines_the_proofs(tmp_path):
    one = tmp_path / "one.py"
    one.write_text("A = 1\n", encoding="utf-8")
    key = _collect.proofs_key(8)
    assert len(key) == 64 and int(key, 16) >= 0
    assert _collect.proofs_key(8) == key
    assert _collect.proofs_key(4) != key
    with_file = _collect.proofs_key(8, [str(one)])
    assert with_file != key
    one.write_text("A = 2\n", encoding="utf-8")
    assert _collect.proofs_key(8, [str(one)]) != with_file
    # the number of files counts: an empty file named like nothing else
    empty = tmp_path / "empty.py"
    empty.write_text("", encoding="utf-8")
    assert _collect.proofs_key(8, [str(empty)]) != key


def test_proofs_key_covers_the_versions_and_the_registry(monkeypatch):
    import platform

    import sympy

    key = _collect.proofs_key(8)
    monkeypatch.setattr(sympy, "__version__", "0.0.0")
    assert _collect.proofs_key(8) != key
    monkeypatch.undo()
    monkeypatch.setattr(platform, "python_version", lambda: "2.7.0")
    assert _collect.proofs_key(8) != key
    monkeypatch.undo()
    from bnproof.symbolic._registry import _REGISTRY

    first = next(iter(_REGISTRY))
    value = _REGISTRY.pop(first)
    try:
        assert _collect.proofs_key(8) != key
    finally:
        _REGISTRY[first] = value
        for name in [n for n in _REGISTRY if n != first]:
            _REGISTRY[name] = _REGISTRY.pop(name)  # back to registry order
    assert _collect.proofs_key(8) == key


def _proofs(ids=None):
    return [Proof(cid, "proved", False, ()) for cid in (ids or list(CLAIMS))]


def test_reuse_proofs_takes_only_the_registry_in_order(monkeypatch):
    stored = {}
    monkeypatch.setattr(_collect._cache, "load", lambda name, key: stored.get((name, key)))
    assert _collect._reuse_proofs("k") is None
    for bad in ("text", _proofs()[:-1], _proofs()[::-1], [*_proofs()[:-1], "x"],
                [SimpleNamespace(claim_id=c) for c in CLAIMS]):
        stored["proofs", "k"] = (bad, "yesterday")
        assert _collect._reuse_proofs("k") is None
    stored["proofs", "k"] = (_proofs(), "yesterday")
    proofs, when, seconds = _collect._reuse_proofs("k")
    assert [p.claim_id for p in proofs] == list(CLAIMS) and when == "yesterday"
    assert 0 <= seconds < 5
    assert _collect._reuse_proofs("other") is None


# --------------------------------------------------------------------------- #
# collect, with recording stand-ins for every stage
# --------------------------------------------------------------------------- #


class _Fig:
    def __init__(self, name):
        self.name = name


class _FakeProver:
    """Stands in for the second process: records how it was made, returns set results."""

    made: list = []
    events: list = []

    def __init__(self, n_max, parallel, report, modules=(), accuracy=None, *, prove=True,
                 drift=None, drift_figures=False):
        self.args = {"n_max": n_max, "parallel": parallel, "modules": modules,
                     "accuracy": accuracy, "prove": prove, "drift": drift,
                     "drift_figures": drift_figures}
        self.runs_accuracy = parallel and accuracy is not None
        self.report = report
        self.polls = self.closed = 0
        _FakeProver.made.append(self)
        _FakeProver.events.append(("start", prove))

    def poll(self):
        self.polls += 1

    def close(self):
        self.closed += 1

    def result(self):
        self.report("proofs", 1, 1, "from the prover")
        return _proofs(), 2.50049  # rounded to 2.5 (milliseconds) in the report

    def drift_result(self):
        self.report("drift", 1, 1, "from the second process")
        there = {"train-all": {"from": "there"}, "parameters": {"seed": 9, "scenarios": ["x"]},
                 "timings_seconds": {"train-all": 1.0}, "provenance": {"p": "there"}}
        return there, 3.0, (_Fig("train-curves"),), 0.5

    def accuracy_result(self):
        return {"rows": ["from the worker"]}, 4.0


@pytest.fixture
def fakes(monkeypatch):
    calls = {"cross_check": [], "accuracy": [], "drift": [], "stored": [], "rendered": [],
             "audit": 0, "precise": []}
    _FakeProver.made = []
    _FakeProver.events = []

    def cross_check(n_values, *, seed, reuse):
        calls["cross_check"].append((n_values, seed, reuse))
        return {"rows": ["cc"], "setup": {"derivations_reused": calls.get("reused", [])}}

    def accuracy_vs_offset(**kw):
        calls["accuracy"].append(kw)
        return {"rows": ["acc"]}

    def run_drift(**kw):
        progress = kw.pop("progress")
        progress("bias-only", 1, 2)
        calls["drift"].append(kw)
        out = {"parameters": {"seed": kw["seed"], "scenarios": kw["scenarios"]},
               "timings_seconds": {s: 2.0 for s in kw["scenarios"]}, "provenance": "here"}
        out.update((s, {"from": "here"}) for s in kw["scenarios"])
        return out

    def drift_figures(result):
        return {f"{s}-fig": _Fig(f"{s}-fig") for s in ("bias-only", "train-all") if s in result}

    def render(fig, name, caption):
        time.sleep(0.005)  # so that the figures' wall time adds up visibly
        calls["rendered"].append((name, caption, fig.name))
        return _Fig(name)

    def audit():
        calls["audit"] += 1
        return {"audit": True}

    torch_module = types.ModuleType("bnproof.torch")

    def precise_study(**kw):
        calls["precise"].append(kw)
        return {"precise": kw}

    torch_module.precise_study = precise_study
    monkeypatch.setitem(sys.modules, "bnproof.torch", torch_module)
    monkeypatch.setattr(bnproof.experiments.crosscheck, "cross_check", cross_check)
    monkeypatch.setattr(bnproof.experiments.accuracy, "accuracy_vs_offset", accuracy_vs_offset)
    monkeypatch.setattr(bnproof.experiments.drift, "run_drift", run_drift)
    monkeypatch.setattr(bnproof.plots, "drift_figures", drift_figures)
    monkeypatch.setattr(bnproof.plots, "accuracy_figure",
                        lambda result: _Fig(f"accuracy of {result['rows']}"))
    monkeypatch.setattr(_collect, "render_figure", render)
    monkeypatch.setattr(_collect, "figure_caption",
                        lambda name, fig: f"caption of {name} ({fig.name})")
    monkeypatch.setattr(bnproof.report._audit, "collect_audit", audit)
    monkeypatch.setattr(_provenance, "provenance", lambda: {"prov": 1})
    monkeypatch.setattr(_collect, "invariance_data", lambda claims: {"claims": len(claims)})
    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: True)
    monkeypatch.setattr(_collect, "_Prover", _FakeProver)
    monkeypatch.setattr(_collect, "proofs_key", lambda n_max, files=(): _key(n_max, len(files)))
    stored = {}
    monkeypatch.setattr(_collect._cache, "exists", lambda name, key: (name, key) in stored)
    def load(name, key):
        _FakeProver.events.append(("load", name))
        return stored.get((name, key))

    monkeypatch.setattr(_collect._cache, "load", load)

    def store(name, key, value, dumps=None):
        calls["stored"].append((name, key, [p.claim_id for p in value], dumps))
        return True

    monkeypatch.setattr(_collect._cache, "store", store)
    calls["cache"] = stored
    return calls


def _key(n_max, files=0):
    return f"key{n_max:03d}{files:058d}"


def _run(**kw):
    seen = []
    data = _collect.collect(progress=lambda *a: seen.append(a), **kw)
    # wall times of stand-ins: well under a minute (a sum in place of a
    # difference of clock readings would be hours)
    assert all(0 <= t < 60 for t in data.timings_seconds.values()), data.timings_seconds
    return data, seen


def test_bad_flags_are_refused_by_name(fakes):
    for name in ("quick", "parallel", "fresh"):
        with pytest.raises(TypeError, match=rf"^{name} must be True or False, got 'no'$"):
            _collect.collect(**{name: "no"})
    with pytest.raises(TypeError, match=r"^stages must be a list of names, got the string 'x'$"):
        _collect.collect(stages="x")
    with pytest.raises(ValueError, match=r"^unknown stage\(s\) a, b; choose from proofs, "
                                         r"cross-check, accuracy, drift, figures, audit, "
                                         r"precise$"):
        _collect.collect(stages=["b", "a", "drift"])
    with pytest.raises(TypeError, match=r"^progress must be a callable\(stage, done, total, "
                                        r"detail\) or None, got 3$"):
        _collect.collect(progress=3)


def test_crosscheck_and_accuracy_here(fakes):
    data, seen = _run(quick=True, seed=2, stages=["cross-check", "accuracy"])
    assert fakes["cross_check"] == [((2, 3, 4), 2, True)]
    assert fakes["accuracy"] == [{"offsets": [0.0, 1e3, 1e6], "shape": (256, 8), "std": 1.0,
                                  "seed": 2}]
    assert data.crosscheck == {"rows": ["cc"], "setup": {"derivations_reused": []}}
    assert data.accuracy == {"rows": ["acc"]}
    assert data.settings == {
        "quick": True,
        "cross-check": {"n_values": [2, 3, 4], "derivations": "computed in this run"},
        "accuracy": {"offsets_over_std": [0.0, 1e3, 1e6], "shape": [256, 8],
                     "separate_process": False},
    }
    assert data.seeds == {"cross-check": 2, "accuracy": 2}
    assert set(data.timings_seconds) == {"cross-check", "accuracy"}
    assert all(0 <= t < 5 for t in data.timings_seconds.values())
    assert seen == [("cross-check", 0, 1, ""), ("cross-check", 1, 1, ""),
                    ("accuracy", 0, 1, ""), ("accuracy", 1, 1, "")]
    assert data.claims == () and data.drift is None and data.figures == ()
    assert data.audit is None and data.precise is None
    assert data.provenance == {"prov": 1} and data.invariances == {"claims": 0}
    assert _FakeProver.made == []


def test_crosscheck_full_and_fresh_and_compiling(fakes, monkeypatch):
    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: False)
    data, seen = _run(seed=1, stages=["cross-check"], fresh=True)
    assert fakes["cross_check"] == [((2, 3, 4, 5, 6, 7, 8), 1, False)]
    assert data.settings["cross-check"]["n_values"] == [2, 3, 4, 5, 6, 7, 8]
    assert data.settings["quick"] is False
    assert seen[0] == ("cross-check", 0, 1, "compiling kernels (first run only)")


def test_crosscheck_says_which_derivations_were_reused(fakes):
    fakes["reused"] = [2, 3]
    data, _ = _run(quick=True, stages=["cross-check"])
    assert data.settings["cross-check"]["derivations"] == (
        "lambdified code reused from an earlier run (same code digest) for N = 2, 3; "
        "the rest computed in this run")
    fakes["reused"] = [2, 3, 4]
    data, _ = _run(quick=True, stages=["cross-check"])
    assert data.settings["cross-check"]["derivations"] == (
        "lambdified code reused from an earlier run (same code digest)")


def test_drift_and_figures_in_one_process(fakes):
    data, seen = _run(quick=True, seed=3, stages=["drift", "figures", "accuracy"],
                      parallel=False)
    assert fakes["drift"] == [{"scenarios": ["bias-only", "train-all"], "steps": 5, "seed": 3,
                               "dtypes": ["float64"], "quick": True}]
    assert data.drift["bias-only"] == {"from": "here"}
    assert data.settings["drift"] == {"scenarios": ["bias-only", "train-all"], "plan": "quick",
                                      "steps": 5, "dtypes": ["float64"],
                                      "separate_process": False}
    assert data.seeds == {"accuracy": 3, "drift": 3}
    assert [f.name for f in data.figures] == ["bias-only-fig", "train-all-fig", "accuracy"]
    assert fakes["rendered"] == [
        ("bias-only-fig", "caption of bias-only-fig (bias-only-fig)", "bias-only-fig"),
        ("train-all-fig", "caption of train-all-fig (train-all-fig)", "train-all-fig"),
        ("accuracy", "caption of accuracy (accuracy of ['acc'])", "accuracy of ['acc']")]
    assert all(t < 60 for t in data.timings_seconds.values())
    assert [s for s in seen if s[0] in ("drift", "figures")] == [
        ("drift", 0, 1, ""), ("drift", 1, 2, "bias-only"),
        ("figures", 0, 3, "bias-only-fig"), ("figures", 1, 3, "train-all-fig"),
        ("figures", 2, 3, "accuracy"), ("figures", 3, 3, "")]
    assert set(data.timings_seconds) == {"accuracy", "drift", "figures"}
    assert _FakeProver.made == []


def test_figures_without_drift_or_accuracy_are_not_timed(fakes):
    data, seen = _run(quick=True, stages=["figures"])
    assert data.figures == () and data.timings_seconds == {}
    assert seen == []
    data, seen = _run(quick=True, stages=["figures", "accuracy"])
    assert [f.name for f in data.figures] == ["accuracy"]
    assert ("figures", 0, 1, "accuracy") in seen and seen[-1] == ("figures", 1, 1, "")
    assert "figures" in data.timings_seconds


def test_drift_in_a_second_process(fakes):
    data, seen = _run(seed=4, stages=["drift", "figures", "accuracy"])
    [drifter] = _FakeProver.made
    assert drifter.args == {
        "n_max": 0, "parallel": True, "modules": (), "accuracy": None, "prove": False,
        "drift": {"scenarios": ["train-all"], "steps": None, "seed": 4,
                  "dtypes": ["float64", "float32"], "quick": True},
        "drift_figures": True}
    assert drifter.closed == 1 and drifter.polls > 0
    assert fakes["drift"] == [{"scenarios": ["bias-only"], "steps": None, "seed": 4,
                               "dtypes": ["float64", "float32"], "quick": True}]
    assert data.drift == {
        "parameters": {"seed": 9, "scenarios": ["bias-only", "train-all"]},
        "timings_seconds": {"bias-only": 2.0, "train-all": 1.0},
        "provenance": {"p": "there"},
        "bias-only": {"from": "here"}, "train-all": {"from": "there"}}
    assert list(data.drift)[-2:] == ["bias-only", "train-all"]
    assert data.settings["drift"]["separate_process"] is True
    assert [f.name for f in data.figures] == ["bias-only-fig", "train-curves", "accuracy"]
    assert fakes["rendered"] == [
        ("bias-only-fig", "caption of bias-only-fig (bias-only-fig)", "bias-only-fig"),
        ("accuracy", "caption of accuracy (accuracy of ['acc'])", "accuracy of ['acc']")]
    assert [s for s in seen if s[0] == "drift"] == [("drift", 1, 2, "bias-only"),
                                                    ("drift", 1, 1, "from the second process")]
    assert all(t < 60 for t in data.timings_seconds.values())
    assert [s for s in seen if s[0] == "figures"] == [
        ("figures", 0, 2, "bias-only-fig"), ("figures", 1, 2, "accuracy"),
        ("figures", 3, 3, "")]
    assert data.timings_seconds["drift"] >= 3.0
    # the second process's 0.5 s plus the two figures rendered here
    assert data.timings_seconds["figures"] >= 0.51


def test_drift_in_a_second_process_without_figures(fakes):
    data, _ = _run(quick=True, stages=["drift"])
    [drifter] = _FakeProver.made
    assert drifter.args["drift_figures"] is False
    assert drifter.args["drift"]["steps"] == 5 and drifter.args["drift"]["dtypes"] == ["float64"]
    assert fakes["drift"] == [{"scenarios": ["bias-only"], "steps": 5, "seed": 0,
                               "dtypes": ["float64"], "quick": True}]
    assert data.figures == () and "figures" not in data.timings_seconds
    assert data.drift["train-all"] == {"from": "there"}


def test_proofs_reused(fakes):
    fakes["cache"]["proofs", _key(8)] = (_proofs(), "2026-01-01")
    data, seen = _run(stages=["proofs"])
    assert [c.proof.claim_id for c in data.claims] == list(CLAIMS)
    assert all(c.claim is CLAIMS[c.proof.claim_id] for c in data.claims)
    assert data.settings["proofs"] == {
        "n_max": 8, "processes": "none (reused)",
        "source": "reused from 2026-01-01, same code digest key008000000"}
    assert seen == [("proofs", 0, len(CLAIMS), ""),
                    ("proofs", len(CLAIMS), len(CLAIMS), "reused from an earlier run")]
    assert "proofs" in data.timings_seconds and fakes["stored"] == []
    assert _FakeProver.made == [] and data.invariances == {"claims": len(CLAIMS)}


def test_proofs_reused_start_the_drift_process_first(fakes):
    fakes["cache"]["proofs", _key(4)] = (_proofs(), "then")
    data, _ = _run(quick=True, stages=["proofs", "drift"])
    [drifter] = _FakeProver.made
    assert drifter.args["prove"] is False
    assert len(data.claims) == len(CLAIMS)
    # fresh: the proofs take the second process, the drift runs here in one call
    _FakeProver.made = []
    fakes["drift"].clear()
    data, _ = _run(quick=True, stages=["proofs", "drift"], fresh=True)
    [prover] = _FakeProver.made
    assert prover.args["prove"] is True
    assert [d["scenarios"] for d in fakes["drift"]] == [["bias-only", "train-all"]]
    assert data.settings["proofs"]["source"] == "computed in this run"
    # not parallel: no second process for the drift either
    _FakeProver.made = []
    _run(quick=True, stages=["proofs", "drift"], parallel=False, fresh=True)
    assert [p.args["prove"] for p in _FakeProver.made] == [True]


def test_proofs_in_this_process(fakes, tmp_path):
    claims_file = tmp_path / "mine.py"
    claims_file.write_text("", encoding="utf-8")
    data, _ = _run(quick=True, stages=["proofs"], parallel=False, claims_files=[claims_file])
    [prover] = _FakeProver.made
    assert prover.args == {"n_max": 4, "parallel": False, "modules": [str(claims_file)],
                           "accuracy": None, "prove": True, "drift": None,
                           "drift_figures": False}
    assert data.settings["proofs"] == {"n_max": 4, "processes": "this process",
                                       "source": "computed in this run"}
    from bnproof.symbolic import to_bytes

    assert fakes["stored"] == [("proofs", _key(4, 1), list(CLAIMS), to_bytes)]
    # the claims and their proofs, in registry order
    assert [c.proof.claim_id for c in data.claims] == list(CLAIMS)
    assert all(c.claim is CLAIMS[c.proof.claim_id] for c in data.claims)
    assert data.timings_seconds["proofs"] == 2.5 and prover.closed == 1


def test_proofs_in_a_second_process_with_the_accuracy_on_a_first_run(fakes, monkeypatch):
    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: False)
    data, seen = _run(quick=True, seed=6, stages=["proofs", "accuracy", "drift", "figures"])
    [prover] = _FakeProver.made
    assert prover.args["accuracy"] == {"offsets": [0.0, 1e3, 1e6], "shape": (256, 8),
                                       "std": 1.0, "seed": 6}
    assert prover.args["parallel"] is True and prover.args["n_max"] == 4
    assert data.settings["proofs"]["processes"] == (
        "a second process, joined by this one once its other stages were done")
    assert data.accuracy == {"rows": ["from the worker"]}
    assert data.settings["accuracy"]["separate_process"] is True
    assert fakes["accuracy"] == []
    assert {k: data.timings_seconds[k] for k in ("accuracy", "proofs")} == {
        "accuracy": 4.0, "proofs": 2.5}
    from bnproof.symbolic import to_bytes

    assert fakes["stored"] == [("proofs", _key(4), list(CLAIMS), to_bytes)]
    assert [c.proof.claim_id for c in data.claims] == list(CLAIMS)
    assert all(c.claim is CLAIMS[c.proof.claim_id] for c in data.claims)
    # the drift figures here, then the accuracy figure once its results arrived
    assert [f.name for f in data.figures] == ["bias-only-fig", "train-all-fig", "accuracy"]
    assert fakes["rendered"][-1] == ("accuracy", "caption of accuracy (accuracy of "
                                     "['from the worker'])", "accuracy of ['from the worker']")
    assert [s for s in seen if s[0] == "figures"] == [
        ("figures", 0, 3, "bias-only-fig"), ("figures", 1, 3, "train-all-fig"),
        ("figures", 2, 3, "accuracy"), ("figures", 3, 3, "")]
    assert data.timings_seconds["figures"] >= 0.015  # three figures, all counted


def test_proofs_in_a_second_process_with_warm_kernels(fakes):
    data, _ = _run(quick=True, stages=["proofs", "accuracy"])
    [prover] = _FakeProver.made
    assert prover.args["accuracy"] is None
    assert fakes["accuracy"] and data.accuracy == {"rows": ["acc"]}


def test_audit_and_precise(fakes, monkeypatch):
    data, seen = _run(stages=["audit", "precise"])
    assert data.audit == {"audit": True}
    assert fakes["precise"] == [{"epochs": 2, "timing_repeats": 3}]
    assert data.precise == {"precise": {"epochs": 2, "timing_repeats": 3}}
    assert data.settings["precise"] == {"epochs": 2, "timing_repeats": 3}
    assert seen == [("audit", 0, 1, "the example model (needs PyTorch)"), ("audit", 1, 1, ""),
                    ("precise", 0, 1, "training the digits CNN"), ("precise", 1, 1, "")]
    assert set(data.timings_seconds) == {"audit", "precise"}
    data, _ = _run(quick=True, stages=["precise"])
    assert fakes["precise"][-1] == {"epochs": 1, "timing_repeats": 1}
    monkeypatch.setattr(bnproof.report._audit, "collect_audit", lambda: None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    data, seen = _run(stages=["audit", "precise"])
    assert data.audit is None and data.precise is None and "precise" not in data.settings
    assert seen[1] == ("audit", 1, 1, "PyTorch is not installed")
    assert seen[2] == ("precise", 1, 1, "PyTorch is not installed")
    assert "precise" in data.timings_seconds


def test_timings_are_rounded_to_milliseconds(fakes):
    data, _ = _run(quick=True, stages=["proofs"], parallel=False)
    assert data.timings_seconds["proofs"] == 2.5
    fakes["cache"]["proofs", _key(4)] = (_proofs(), "then")
    data, _ = _run(quick=True, stages=["proofs"])
    assert data.timings_seconds["proofs"] == round(data.timings_seconds["proofs"], 3)


def test_every_stage_by_default(fakes):
    data, seen = _run()
    assert data.seeds == {"cross-check": 0, "accuracy": 0, "drift": 0}
    assert set(data.settings) == {"quick", "proofs", "cross-check", "accuracy", "drift",
                                  "precise"}
    assert set(data.timings_seconds) == {"proofs", "cross-check", "accuracy", "drift",
                                         "figures", "audit", "precise"}
    # a first run: the proofs take the second process, the drift runs here
    [prover] = _FakeProver.made
    assert prover.args["prove"] is True and prover.args["n_max"] == 8
    assert ("proofs", 1, 1, "from the prover") in seen
    assert len(data.claims) == len(CLAIMS) and data.audit == {"audit": True}


def test_with_stored_proofs_the_drift_process_starts_before_they_load(fakes):
    fakes["cache"]["proofs", _key(8)] = (_proofs(), "then")
    data, seen = _run(stages=["proofs", "drift"])
    assert _FakeProver.events == [("start", False), ("load", "proofs")]
    assert ("drift", 1, 1, "from the second process") in seen
    assert data.drift["train-all"] == {"from": "there"}
    # without the drift stage there is no second process
    _FakeProver.events.clear()
    _run(stages=["proofs"])
    assert _FakeProver.events == [("load", "proofs")]


def test_the_accuracy_moves_to_the_proofs_process_only_in_parallel(fakes, monkeypatch):
    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: False)
    _run(quick=True, stages=["proofs", "accuracy"], parallel=False)
    _run(quick=True, stages=["proofs"])
    assert [p.args["accuracy"] for p in _FakeProver.made] == [None, None]
    assert [p.args["parallel"] for p in _FakeProver.made] == [False, True]


def test_stages_not_run_are_none(fakes):
    data, _ = _run(quick=True, stages=["audit"])
    assert data.crosscheck is None and data.accuracy is None and data.drift is None
    assert data.precise is None and data.claims == () and data.figures == ()


def test_proofs_key_reads_every_python_source_of_the_symbolic_package(monkeypatch, tmp_path):
    import bnproof.symbolic

    package = tmp_path / "symbolic"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    nested = package / "sub" / "_rules.py"
    nested.write_text("RULE = 1\n", encoding="utf-8")
    notes = package / "notes.txt"
    notes.write_text("a\n", encoding="utf-8")
    monkeypatch.setattr(bnproof.symbolic, "__file__", str(package / "__init__.py"))
    key = _collect.proofs_key(8)
    notes.write_text("b\n", encoding="utf-8")
    assert _collect.proofs_key(8) == key  # not a source
    nested.write_text("RULE = 2\n", encoding="utf-8")
    assert _collect.proofs_key(8) != key  # a source, in a subfolder
