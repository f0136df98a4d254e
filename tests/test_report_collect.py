"""``collect``: gathers the experiments' results as they are, with per-stage progress."""

import pytest

from bnproof.report import STAGES, ReportData, collect


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quick": "yes"}, TypeError, "quick must be True or False"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"stages": "proofs"}, TypeError, "list of names"),
        ({"stages": ["proofs", "typeset"]}, ValueError, "unknown stage"),
        ({"progress": 3}, TypeError, "progress must be a callable"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        collect(**kwargs)


def test_tables_are_the_experiments_results_unchanged():
    from bnproof.experiments.accuracy import accuracy_vs_offset
    from bnproof.experiments.crosscheck import cross_check
    from bnproof.report import _collect

    calls = []
    data = collect(quick=True, seed=2, stages=("cross-check", "accuracy"),
                   progress=lambda *args: calls.append(args))
    assert isinstance(data, ReportData)
    assert data.claims == () and data.drift is None and data.figures == ()

    direct = cross_check(_collect.CROSSCHECK_N_QUICK, seed=2)
    assert data.crosscheck["rows"] == direct["rows"]
    direct = accuracy_vs_offset(list(_collect.ACCURACY_OFFSETS_QUICK),
                                shape=_collect.ACCURACY_SHAPE_QUICK, std=1.0, seed=2)
    assert data.accuracy["rows"] == direct["rows"]

    assert data.seeds == {"cross-check": 2, "accuracy": 2}
    assert set(data.timings_seconds) == {"cross-check", "accuracy"}
    assert data.settings["quick"] is True
    # the first report says "compiling kernels" when their cache is cold
    assert [c[:3] for c in calls if c[0] == "cross-check"] == [("cross-check", 0, 1),
                                                               ("cross-check", 1, 1)]
    assert ("accuracy", 1, 1, "") in calls
    assert {c[0] for c in calls} <= set(STAGES)
    assert {"bnproof", "sympy", "numpy", "numba", "python", "cpu", "date"} <= set(
        data.provenance
    )


def test_a_failing_proof_worker_is_reported_not_swallowed():
    import queue

    from bnproof.report._second_process import _prove_worker, _Prover

    messages = queue.Queue()
    _prove_worker(-1, messages)  # an invalid n_max: prove_all refuses it
    got = []
    while not messages.empty():
        got.append(messages.get_nowait())
    message = got[-1]
    assert message[0] == "error" and "n_max" in message[1]
    assert not any(m[0] in ("proof", "done") for m in got)  # nothing proved, not "done"
    prover = _Prover(4, parallel=False, report=lambda *a: None)
    with pytest.raises(RuntimeError, match="the proofs failed"):
        prover._handle(message)


def test_parallel_must_be_a_bool():
    with pytest.raises(TypeError, match="parallel must be True or False"):
        collect(parallel="no")


@pytest.mark.slow
def test_on_a_first_run_the_accuracy_runs_in_the_proofs_process(monkeypatch):
    # cold cache: both processes compile kernels, so the accuracy experiment
    # (float32 kernels) moves to the proofs' process; its results are the same
    import bnproof.kernels
    from bnproof.experiments.accuracy import accuracy_vs_offset
    from bnproof.report import _collect

    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: False)
    seen = []
    data = collect(quick=True, seed=1, stages=("proofs", "accuracy"),
                   progress=lambda *args: seen.append(args))
    assert ("accuracy", 0, 1, "compiling kernels (first run only) in the proofs' process") in seen
    assert data.settings["accuracy"]["separate_process"] is True
    assert data.claims and all(c.as_expected for c in data.claims)
    direct = accuracy_vs_offset(list(_collect.ACCURACY_OFFSETS_QUICK),
                                shape=_collect.ACCURACY_SHAPE_QUICK, std=1.0, seed=1)
    assert data.accuracy["rows"] == direct["rows"]


def test_with_warm_kernels_the_accuracy_runs_here(monkeypatch):
    import bnproof.kernels

    monkeypatch.setattr(bnproof.kernels, "kernels_cached", lambda: True)
    seen = []
    data = collect(quick=True, seed=1, stages=("accuracy",), parallel=True,
                   progress=lambda *args: seen.append(args))
    assert ("accuracy", 0, 1, "") in seen and data.settings["accuracy"]["separate_process"] is False


@pytest.mark.slow
def test_the_claims_are_shared_between_the_two_processes(monkeypatch):
    # the main process proves the claims the worker has not taken yet: each
    # claim is proved once, by one of the two, and the list is in registry order
    from bnproof.report import _second_process
    from bnproof.symbolic import CLAIMS

    taken = []
    real_take = _second_process._take

    def take_here(counter, total):
        index = real_take(counter, total)
        taken.append(index)
        return index

    monkeypatch.setattr(_second_process, "_take", take_here)
    seen = []
    data = collect(quick=True, seed=1, stages=("proofs",), fresh=True,
                   progress=lambda *args: seen.append(args))
    assert [c.proof.claim_id for c in data.claims] == list(CLAIMS)
    assert all(c.as_expected for c in data.claims)
    assert data.settings["proofs"]["processes"].startswith("a second process, joined by this")
    # the main process reached the shared counter (it proved some, or found none left)
    assert taken and taken[-1] is None
    here = [i for i in taken if i is not None]
    assert len(here) == len(set(here))
    counts = [args[1] for args in seen if args[0] == "proofs"]
    assert counts == sorted(counts) and counts[-1] == len(CLAIMS)


def test_a_claim_registered_only_here_is_refused_by_name_not_dropped():
    # the proofs' second process sees the built-in claims and claims files;
    # a claim registered interactively here is named, with the two ways out
    import sympy

    from bnproof.symbolic import Identity, register_claim
    from bnproof.symbolic._registry import _REGISTRY

    before = dict(_REGISTRY)
    try:
        register_claim("only-here", "Registered in this process only.",
                       lambda batch, indices: [Identity(sympy.Integer(0), sympy.Integer(0), 0)],
                       symbolic=False, replace=True)
        with pytest.raises(RuntimeError, match="only-here are registered in the calling "
                                               "process only"):
            collect(quick=True, stages=("proofs",), fresh=True)
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(before)
