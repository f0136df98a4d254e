"""Gather every result the report shows (proofs, tables, drift, figures, provenance).

:func:`collect` runs the other parts of bnproof and keeps what they return;
the writers only read the :class:`ReportData` it builds. Nothing here
derives, checks or computes any mathematics of its own.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bnproof import _cache

from ._figures import FigureData, figure_caption, render_figure
from ._invariances import invariance_data
from ._second_process import _Prover

__all__ = ["STAGES", "ClaimResult", "FigureData", "ReportData", "collect", "proofs_key",
           "render_figure"]

#: Stages of :func:`collect`, as passed to ``progress``. They run in this order,
#: except that with ``parallel`` the proofs, then the accuracy experiment, run
#: in a second process alongside the others.
STAGES = ("proofs", "cross-check", "accuracy", "drift", "figures", "audit", "precise")

#: Settings of :func:`bnproof.torch.precise_study` in the report (the
#: research note uses its defaults, 4 epochs and 5 timing repeats).
PRECISE = {"epochs": 2, "timing_repeats": 3}
PRECISE_QUICK = {"epochs": 1, "timing_repeats": 1}

#: Largest batch size of the concrete checks of each proof (the default of
#: :func:`bnproof.symbolic.prove_all`), and a smaller one for ``quick``.
N_MAX = 8
N_MAX_QUICK = 4
#: Batch sizes of the kernels' cross-check against the symbolic derivation.
CROSSCHECK_N = tuple(range(2, 9))
CROSSCHECK_N_QUICK = (2, 3, 4)
#: Offsets |mean| / std of the accuracy table (0 and every decade to 1e6).
ACCURACY_OFFSETS = (0.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
ACCURACY_OFFSETS_QUICK = (0.0, 1e3, 1e6)
#: Shape (N, C) of the accuracy batches (the experiment's default) and a quick one.
ACCURACY_SHAPE = (1024, 16)
ACCURACY_SHAPE_QUICK = (256, 8)
#: The drift scenarios the report shows. The accuracy stage above already
#: covers the drift experiment's "precision" scenario, so it is not re-run.
DRIFT_SCENARIOS = ("bias-only", "train-all")
#: Steps of every drift run with ``quick`` (the report's default run is the
#: experiment's own ``quick=True`` plan; ``bnproof drift`` runs the full one).
DRIFT_STEPS_QUICK = 5
#: Floating-point types of the drift runs, and the one used with ``quick``.
DRIFT_DTYPES = ("float64", "float32")
DRIFT_DTYPES_QUICK = ("float64",)

Progress = Callable[[str, int, int, str], object]


@dataclass(frozen=True)
class ClaimResult:
    """A claim of the registry and the outcome of proving it.

    Parameters
    ----------
    claim : bnproof.symbolic.Claim
        The statement, its LaTeX, assumptions and expected verdict.
    proof : bnproof.symbolic.Proof
        The verdict, derivation steps, checks and time.
    """

    claim: object
    proof: object

    @property
    def as_expected(self) -> bool:
        """Whether the verdict is the one the catalogue expects."""
        return self.proof.verdict == self.claim.expected


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as gathered by :func:`collect`.

    Parameters
    ----------
    claims : tuple of ClaimResult
        Every claim of the registry with its proof, in registry order.
    crosscheck : dict or None
        :func:`bnproof.experiments.crosscheck.cross_check`'s result.
    accuracy : dict or None
        :func:`bnproof.experiments.accuracy.accuracy_vs_offset`'s result.
    drift : dict or None
        :func:`bnproof.experiments.drift.run_drift`'s result.
    figures : tuple of FigureData
        The drift and accuracy figures, rendered.
    provenance : dict
        :func:`bnproof._provenance.provenance`.
    seeds : dict
        Name of each random experiment -> its seed.
    settings : dict
        How each stage was run (batch sizes, offsets, steps, ``quick``).
    timings_seconds : dict
        Stage name -> wall time.
    invariances : dict or None
        The invariance table and its notes (:mod:`bnproof.report._invariances`).
    audit : dict or None
        The audit of the built-in example model (:mod:`bnproof.report._audit`);
        ``None`` when the stage did not run or PyTorch is not installed.
    precise : dict or None
        :func:`bnproof.torch.precise_study` (population statistics after
        training); ``None`` when the stage did not run or PyTorch is not
        installed.

    ``None`` for a stage means it was not run; the writers say so.
    """

    claims: tuple[ClaimResult, ...]
    crosscheck: dict | None
    accuracy: dict | None
    drift: dict | None
    figures: tuple[FigureData, ...]
    provenance: dict
    seeds: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    timings_seconds: dict = field(default_factory=dict)
    invariances: dict | None = None
    audit: dict | None = None
    precise: dict | None = None

    @property
    def failures(self) -> list[str]:
        """Claims without their expected verdict, failed cross-checks and drift checks."""
        out = [
            f"claim {c.claim.id}: verdict {c.proof.verdict}, expected {c.claim.expected}"
            for c in self.claims
            if not c.as_expected
        ]
        for row in (self.crosscheck or {}).get("rows", []):
            if not row.get("passed", False):
                out.append(f"cross-check n={row.get('n')} {row.get('quantity')}: failed")
        for check in ((self.drift or {}).get("bias-only") or {}).get("checks", []):
            if not check.get("passed", False):
                out.append(f"drift {check['norm']} {check['mode']} {check['dtype']}: "
                           f"expected that {check['expectation']}")
        return out


def proofs_key(n_max: int, claims_files: Sequence[str] = ()) -> str:
    """Return the digest of everything that determines the report's proofs.

    The source of every module of :mod:`bnproof.symbolic`, the versions of
    SymPy and Python, ``n_max``, the registered claim ids in order and the
    contents of the user's claims files. Any change gives a new digest, so
    proofs stored under the old one are not reused.
    """
    import platform
    from pathlib import Path

    import sympy

    import bnproof.symbolic as symbolic
    from bnproof.symbolic import CLAIMS

    sources = sorted(Path(symbolic.__file__).parent.rglob("*.py"))
    return _cache.digest(
        [*sources, *(Path(p) for p in claims_files)],
        [sympy.__version__, platform.python_version(), n_max, tuple(CLAIMS),
         len(claims_files)],
    )


def _reuse_proofs(key: str) -> tuple[list, str, float] | None:
    """Return ``(proofs, stored_at, seconds to load)`` stored under ``key``, or None.

    A stored entry that is not a list of proofs of the registered claims, in
    registry order, is ignored (and the proofs are computed again).
    """
    from bnproof.symbolic import CLAIMS, Proof

    start = time.perf_counter()
    found = _cache.load("proofs", key)
    if found is None:
        return None
    proofs, stored_at = found
    if (not isinstance(proofs, list) or not all(isinstance(p, Proof) for p in proofs)
            or [p.claim_id for p in proofs] != list(CLAIMS)):
        return None
    return proofs, stored_at, time.perf_counter() - start


def _accuracy_arguments(quick: bool, seed: int) -> dict:
    """Return the keyword arguments of the accuracy experiment for the report."""
    return {
        "offsets": list(ACCURACY_OFFSETS_QUICK if quick else ACCURACY_OFFSETS),
        "shape": ACCURACY_SHAPE_QUICK if quick else ACCURACY_SHAPE,
        "std": 1.0,
        "seed": seed,
    }


def _drift_arguments(quick: bool, seed: int) -> dict:
    """Return the keyword arguments of the drift experiment for the report."""
    return {
        "scenarios": list(DRIFT_SCENARIOS),
        "steps": DRIFT_STEPS_QUICK if quick else None,
        "seed": seed,
        "dtypes": list(DRIFT_DTYPES_QUICK if quick else DRIFT_DTYPES),
        "quick": True,
    }


def _drift_settings(quick: bool) -> dict:
    """Return how the drift stage runs.

    Always the experiment's quick plan (``bnproof drift --quick``), with fewer
    steps and one float type when the report itself is quick.
    """
    return {
        "scenarios": list(DRIFT_SCENARIOS),
        "plan": "quick",
        "steps": DRIFT_STEPS_QUICK if quick else None,
        "dtypes": list(DRIFT_DTYPES_QUICK if quick else DRIFT_DTYPES),
    }


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int >= 0, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    return int(seed)


def collect(
    *,
    quick: bool = False,
    seed: int = 0,
    stages: Sequence[str] | None = None,
    progress: Progress | None = None,
    parallel: bool = True,
    claims_files: Sequence[str] = (),
    fresh: bool = False,
) -> ReportData:
    """Run the proofs and experiments and gather their results for the report.

    Parameters
    ----------
    quick : bool, default False
        Smaller runs (for tests): proofs checked up to N = 4, cross-check at
        N = 2..4, three offsets on a smaller batch, drift runs of
        :data:`DRIFT_STEPS_QUICK` steps in float64 only.
    seed : int, default 0
        Seed of the cross-check, accuracy and drift experiments.
    stages : sequence of str or None
        Names from :data:`STAGES` to run (default all); the others are
        left as ``None`` (the figures need "drift" and/or "accuracy").
    progress : callable or None
        Called as ``progress(stage, done, total, detail)`` as work completes.
    parallel : bool, default True
        Run the proofs (SymPy, one core) in a separate process while this
        one runs the numeric stages; ``False`` runs everything here, in order.
    claims_files : sequence of str, default ()
        Files of user claims (:func:`bnproof.symbolic.load_claims`) proved
        with the registry's own.
    fresh : bool, default False
        Prove every claim and derive the cross-check's reference in this
        run. By default proofs stored by an earlier run with the same code
        digest (:func:`proofs_key`) are reused, and so is the code of the
        cross-check's lambdified derivations; what is computed here is
        stored for the next run. The provenance says which happened.

    Returns
    -------
    ReportData

    Raises
    ------
    TypeError, ValueError
        For a bad argument; the message names the value and the fix.
    ModuleNotFoundError
        If matplotlib or scikit-learn is missing (``pip install 'bnproof[report]'``).

    Notes
    -----
    The claims are those of sections 2 and 3 of Ioffe & Szegedy (2015); see
    :data:`bnproof.symbolic.CLAIMS`. This function only calls
    :func:`bnproof.symbolic.prove_all`, the experiments and the plots.
    """
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    if not isinstance(parallel, bool):
        raise TypeError(f"parallel must be True or False, got {parallel!r}")
    if not isinstance(fresh, bool):
        raise TypeError(f"fresh must be True or False, got {fresh!r}")
    seed = _check_seed(seed)
    if stages is None:
        wanted = set(STAGES)
    else:
        if isinstance(stages, str):
            raise TypeError(f"stages must be a list of names, got the string {stages!r}")
        wanted = set(stages)
        unknown = wanted - set(STAGES)
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}"
            )
    if progress is not None and not callable(progress):
        raise TypeError(
            f"progress must be a callable(stage, done, total, detail) or None, got {progress!r}"
        )

    import threading

    # The worker's progress arrives from a second thread: one report at a time.
    # Only this thread polls the worker: the forwarding thread reports while
    # it holds the worker's lock, and polling there would wait on itself.
    report_lock = threading.RLock()
    this_thread = threading.get_ident()

    def report(stage: str, done: int, total: int, detail: str = "") -> None:
        if progress is not None:
            with report_lock:
                progress(stage, done, total, detail)
        if threading.get_ident() == this_thread:
            for worker in (prover, drifter):
                if worker is not None:
                    worker.poll()

    from bnproof._provenance import provenance

    prover: _Prover | None = None  # the proofs (and on a first run the accuracy)
    drifter: _Prover | None = None  # the drift experiment, when the proofs are reused

    def start_drifter() -> _Prover:
        # The proofs are reused (or not asked for): the drift experiment and
        # its figures take the second core while this one runs the others.
        # This one runs the first scenario (its single figure) after the others.
        return _Prover(0, True, report, prove=False,
                       drift={**_drift_arguments(quick, seed),
                              "scenarios": list(DRIFT_SCENARIOS[1:])},
                       drift_figures="figures" in wanted)
    timings: dict[str, float] = {}
    settings: dict[str, object] = {"quick": quick}
    seeds: dict[str, int] = {}

    claims: tuple[ClaimResult, ...] = ()
    if "proofs" in wanted:
        from bnproof.symbolic import CLAIMS, load_claims, to_bytes

        for path in claims_files:
            load_claims(path)
        n_max = N_MAX_QUICK if quick else N_MAX
        key = proofs_key(n_max, claims_files)
        if parallel and "drift" in wanted and not fresh and _cache.exists("proofs", key):
            drifter = start_drifter()  # before loading the proofs (seconds)
        reused = None if fresh else _reuse_proofs(key)
        settings["proofs"] = {"n_max": n_max,
                              "processes": ("none (reused)" if reused is not None else
                                            "a second process, joined by this one once its "
                                            "other stages were done" if parallel else
                                            "this process"),
                              "source": ("computed in this run" if reused is None else
                                         f"reused from {reused[1]}, same code digest "
                                         f"{key[:12]}")}
        report("proofs", 0, len(CLAIMS))
        worker_accuracy = None
        if reused is not None:
            claims = tuple(ClaimResult(CLAIMS[p.claim_id], p) for p in reused[0])
            timings["proofs"] = reused[2]
            report("proofs", len(claims), len(CLAIMS), "reused from an earlier run")
        elif parallel and "accuracy" in wanted:
            from bnproof.kernels import kernels_cached

            # On a first run both processes compile kernels (the accuracy
            # experiment's float32 ones in the proofs' process). Once they are
            # cached, the proofs are the longer path: the accuracy runs here.
            if not kernels_cached():
                worker_accuracy = _accuracy_arguments(quick, seed)
        if reused is None:
            prover = _Prover(n_max, parallel, report, [str(p) for p in claims_files],
                             worker_accuracy)
    if drifter is None and prover is None and parallel and "drift" in wanted:
        drifter = start_drifter()

    try:
        if prover is not None and not parallel:
            proofs, timings["proofs"] = prover.result()
            claims = tuple(ClaimResult(CLAIMS[p.claim_id], p) for p in proofs)
            _cache.store("proofs", key, proofs, dumps=to_bytes)
        crosscheck = None
        if "cross-check" in wanted:
            from bnproof.experiments.crosscheck import cross_check

            n_values = CROSSCHECK_N_QUICK if quick else CROSSCHECK_N
            settings["cross-check"] = {"n_values": list(n_values)}
            seeds["cross-check"] = seed
            start = time.perf_counter()
            from bnproof.kernels import kernels_cached

            # A first run compiles the kernels here (about a minute on two
            # cores); say so rather than sit silent.
            report("cross-check", 0, 1,
                   "" if kernels_cached() else "compiling kernels (first run only)")
            crosscheck = cross_check(n_values, seed=seed, reuse=not fresh)
            reused_n = crosscheck["setup"].get("derivations_reused", [])
            settings["cross-check"]["derivations"] = (
                "computed in this run" if not reused_n else
                f"lambdified code reused from an earlier run (same code digest) for N = "
                f"{', '.join(map(str, reused_n))}; the rest computed in this run"
                if len(reused_n) < len(n_values) else
                "lambdified code reused from an earlier run (same code digest)")
            report("cross-check", 1, 1)
            timings["cross-check"] = time.perf_counter() - start

        accuracy = None
        in_worker = prover is not None and prover.runs_accuracy
        if "accuracy" in wanted:
            arguments = _accuracy_arguments(quick, seed)
            settings["accuracy"] = {"offsets_over_std": list(arguments["offsets"]),
                                    "shape": list(arguments["shape"]),
                                    "separate_process": in_worker}
            seeds["accuracy"] = seed
        if "accuracy" in wanted and not in_worker:
            from bnproof.experiments.accuracy import accuracy_vs_offset

            start = time.perf_counter()
            report("accuracy", 0, 1)
            accuracy = accuracy_vs_offset(**_accuracy_arguments(quick, seed))
            report("accuracy", 1, 1)
            timings["accuracy"] = time.perf_counter() - start

        drift = None
        accuracy_drawn = False
        drift_elsewhere = drifter is not None
        if "drift" in wanted:
            settings["drift"] = {**_drift_settings(quick), "separate_process": drift_elsewhere}
            seeds["drift"] = seed
        figures: list[FigureData] = []
        if drift_elsewhere:
            # The second process runs the other scenarios; this one the first,
            # then its figure and the accuracy figure, and (after its other
            # stages) merges the results in the order run_drift gives them
            # (the same as one call).
            from bnproof.experiments.drift import run_drift

            start = time.perf_counter()
            here = run_drift(
                **{**_drift_arguments(quick, seed), "scenarios": [DRIFT_SCENARIOS[0]]},
                progress=lambda stage, done, tot: report("drift", done, tot, stage),
            )
            seconds_here = time.perf_counter() - start
            mine: list[FigureData] = []
            if "figures" in wanted:
                from bnproof import plots

                start = time.perf_counter()
                drawn_here = plots.drift_figures(here)
                if accuracy is not None:
                    drawn_here["accuracy"] = plots.accuracy_figure(accuracy)
                for name, fig in drawn_here.items():
                    report("figures", len(mine), len(drawn_here), name)
                    mine.append(render_figure(fig, name, figure_caption(name, fig)))
                timings["figures"] = time.perf_counter() - start
            # merged below, after the audit and the precise statistics: on a
            # later run the second process is the longer path
            accuracy_drawn = accuracy is not None
        elif "drift" in wanted:
            from bnproof.experiments.drift import run_drift

            start = time.perf_counter()
            report("drift", 0, 1)
            drift = run_drift(
                **_drift_arguments(quick, seed),
                progress=lambda stage, done, tot: report("drift", done, tot, stage),
            )
            timings["drift"] = time.perf_counter() - start

        if "figures" in wanted and not drift_elsewhere:
            from bnproof import plots

            start = time.perf_counter()
            drawn = plots.drift_figures(drift) if drift is not None else {}
            total = len(drawn) + ("accuracy" in wanted)
            # the drift figures first: the accuracy results may still be on their way
            for name, fig in drawn.items():
                report("figures", len(figures), total, name)
                figures.append(render_figure(fig, name, figure_caption(name, fig)))
            timings["figures"] = time.perf_counter() - start

        audit = None
        if "audit" in wanted:
            from ._audit import collect_audit

            start = time.perf_counter()
            report("audit", 0, 1, "the example model (needs PyTorch)")
            audit = collect_audit()
            report("audit", 1, 1, "" if audit is not None else "PyTorch is not installed")
            timings["audit"] = time.perf_counter() - start

        precise = None
        if "precise" in wanted:
            import importlib.util

            start = time.perf_counter()
            if importlib.util.find_spec("torch") is None:
                report("precise", 1, 1, "PyTorch is not installed")
            else:
                from bnproof.torch import precise_study

                arguments = PRECISE_QUICK if quick else PRECISE
                settings["precise"] = dict(arguments)
                report("precise", 0, 1, "training the digits CNN")
                precise = precise_study(**arguments)
                report("precise", 1, 1)
            timings["precise"] = time.perf_counter() - start

        if drift_elsewhere:
            there, seconds_there, drawn, seconds = drifter.drift_result()
            drift = {key: value for key, value in there.items() if key not in DRIFT_SCENARIOS}
            drift["parameters"] = {**there["parameters"], "scenarios": list(DRIFT_SCENARIOS)}
            drift["timings_seconds"] = {**here["timings_seconds"], **there["timings_seconds"]}
            drift.update((name, (here if name == DRIFT_SCENARIOS[0] else there)[name])
                         for name in DRIFT_SCENARIOS)
            timings["drift"] = seconds_here + seconds_there
            if "figures" in wanted:
                # in the order of one process: the drift figures, then the accuracy
                figures = ([f for f in mine if f.name != "accuracy"] + list(drawn)
                           + [f for f in mine if f.name == "accuracy"])
                timings["figures"] += seconds
        if in_worker:
            accuracy, timings["accuracy"] = prover.accuracy_result()
        if "figures" in wanted and accuracy is not None and not accuracy_drawn:
            start = time.perf_counter()
            fig = plots.accuracy_figure(accuracy)
            report("figures", len(figures), total, "accuracy")
            figures.append(render_figure(fig, "accuracy", figure_caption("accuracy", fig)))
            timings["figures"] += time.perf_counter() - start
        if "figures" in wanted and figures:
            report("figures", len(figures), len(figures))
        elif "figures" in wanted:
            timings.pop("figures", None)

        if prover is not None and parallel:
            proofs, timings["proofs"] = prover.result()
            claims = tuple(ClaimResult(CLAIMS[p.claim_id], p) for p in proofs)
            _cache.store("proofs", key, proofs, dumps=to_bytes)
    finally:
        for worker in (prover, drifter):
            if worker is not None:
                worker.close()

    return ReportData(
        claims=claims,
        crosscheck=crosscheck,
        accuracy=accuracy,
        drift=drift,
        figures=tuple(figures),
        provenance=provenance(),
        seeds=seeds,
        settings=settings,
        timings_seconds={k: round(v, 3) for k, v in timings.items()},
        invariances=invariance_data(claims),
        audit=audit,
        precise=precise,
    )

