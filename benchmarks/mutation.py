"""Mutation testing of the core modules, on demand (not part of the test run).

Each target is one module plus the few fast test files that should catch a
bug planted in it. For each target this script prepares a scratch folder
under ``.mutation/<target>/`` (git-ignored), runs ``mutmut run`` there with
one worker under ``nice``, and prints the mutation score: killed mutants
over all mutants, not counting the ones listed as equivalent in
``benchmarks/mutation_equivalents.md``.

    python benchmarks/mutation.py                   # strict targets, planted bugs
    python benchmarks/mutation.py --all             # every target (hours)
    python benchmarks/mutation.py zero sums         # some targets
    python benchmarks/mutation.py --list            # the targets and their tests
    python benchmarks/mutation.py zero --show       # diffs of the survivors
    python benchmarks/mutation.py audit torch       # only the planted bugs of these
    python benchmarks/mutation.py proof --no-planted  # only mutmut's mutants
    python benchmarks/mutation.py --all --only-planted  # every planted bug, no mutmut
    python benchmarks/mutation.py family --mutants "*x_axes*"  # some mutants only

Exit status: 0 when every strict target has no surviving mutant that is not
listed as equivalent and every other target scores at least 90 %, 1
otherwise, 2 for a usage error.

Why mutmut 3 (and not cosmic-ray): mutmut mutates each function into
trampolined copies inside one copy of the package and forks a process per
mutant from one that has already imported SymPy, NumPy and Numba and
loaded the kernels from Numba's disk cache, so a mutant costs only the
tests that reach the mutated function (it records which ones do), about a
second. cosmic-ray rewrites the module on disk and starts the test command
afresh for each mutant: several seconds of SymPy import per mutant, and
every rewrite of a kernel module invalidates Numba's cache of it. mutmut
leaves decorated functions alone, so the ``@njit`` bodies in
``kernels/_jit_*.py`` (checked by the planted bugs of the kernel tests) are
never rewritten; the copied package keeps its own Numba cache beside its
copy of the sources (``.mutation/<target>/mutants/``, compiled once per
target). Forking after Numba started an ``omp`` or ``tbb`` thread pool
hangs the child, so targets whose tests run kernels use Numba's
``workqueue`` layer. What mutmut does not mutate, ``PLANTED`` covers with
hand-planted bugs: decorated functions (the output folder's context
manager) and module-level constants (the experiments' thresholds). The
audit's rules, the bridge's semantics (``bnproof.torch``), the precise
statistics (``precise_bn``) and the family claims get planted bugs too,
each checked against the fast tests in ``PLANTED_TESTS``; the tests first
run once unplanted, so a bug is only counted as killed by tests that pass
without it. One run plants at a time (``.mutation/planted/`` is locked).

Adding a target (e.g. ``bnproof/audit/_rules.py`` or ``bnproof/torch/_op.py``
when they land): add a :class:`Target` to ``TARGETS`` with the module, its
fast test files (``select`` narrows a large file with ``-k``),
``strict=True`` if every surviving mutant must be killed or listed as
equivalent, and ``kernels=True`` if its tests run Numba kernels; a rule,
bridge semantics or claim that mutmut cannot reach gets a :class:`Planted`
entry. Tests that need torch skip without it, so run such targets where
torch is installed (a target whose tests all skip scores no kills).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.md"

#: Goal for targets that are not strict (issue: "at least 90 % elsewhere").
GOAL = 0.90


@dataclass(frozen=True)
class Target:
    """One module under mutation and the test files that guard it."""

    module: str
    tests: tuple[str, ...]
    strict: bool = False
    #: pytest ``-k`` expression narrowing the tests (for large test files).
    select: str | None = None
    #: The tests run Numba kernels. mutmut forks each mutant's process from
    #: one that has run the tests already; a process forked after Numba's
    #: ``omp`` or ``tbb`` pool started hangs, so these targets use Numba's
    #: ``workqueue`` layer, which forks cleanly (the thread-safety tests that
    #: switch layers are not selected).
    kernels: bool = False
    #: The tests run PyTorch. Its OpenMP pool, once started in the process mutmut
    #: forks from, hangs every forked child that runs a parallel PyTorch op
    #: until the CPU-time limit kills it (which would count as a kill), so these
    #: targets run PyTorch on one thread (``OMP_NUM_THREADS=1``: no pool).
    torch: bool = False


#: The family's tests that do not use the session fixtures proving every cell or claim.
_FAMILY_FAST = ("not expected_verdict and not relies_on and not scale_invariance_fails "
                "and not json_shape and not cli_ and not every_invariant_cell "
                "and not refuted_cells_stay and not family_claim_has and not renorm_halves "
                "and not weight_grad_symbolic_claims_hold")

TARGETS = {
    "zero": Target(
        "bnproof/symbolic/_zero.py",
        ("tests/test_symbolic_engine.py", "tests/test_zero_rules.py"),
        strict=True,
    ),
    "sums": Target(
        "bnproof/symbolic/_sums.py",
        ("tests/test_symbolic_engine.py", "tests/test_sums_rules.py"),
        strict=True,
    ),
    "batch_norm": Target(
        "bnproof/kernels/_batch_norm.py",
        ("tests/test_kernels.py", "tests/test_kernels_runtime.py",
         "tests/test_batch_norm_guards.py", "tests/test_batch_norm_mutants.py"),
        strict=True,
        # not the tests that start processes, threads or compile caches
        # the wrappers' tests: validation, buffers, layouts, glue (not the
        # threading, cache and compile tests, which start processes)
        select="reject or bad or running or momentum or cumulative or inference or guards "
               "or buffers or one_value or affine or layout or contiguous or modified "
               "or allocated or subclasses or matches_reference or constant or nan "
               "or batch_norm_mutants",
        kernels=True,
    ),
    "moments": Target(
        "bnproof/kernels/_moments.py",
        ("tests/test_kernels.py", "tests/test_moments_mutants.py"),
        strict=True,
        select="moments or merge or Moments",
        kernels=True,
    ),
    "atomic": Target(
        "bnproof/_atomic.py",
        ("tests/test_atomic.py", "tests/test_atomic_failures.py"),
        strict=True,
    ),
    "engine": Target(
        "bnproof/symbolic/_engine.py",
        ("tests/test_symbolic_engine.py", "tests/test_zero_rules.py", "tests/test_claims.py",
         "tests/test_engine.py"),
    ),
    "proof": Target(
        "bnproof/symbolic/_proof.py",
        ("tests/test_proof_records.py", "tests/test_claims.py", "tests/test_report.py"),
    ),
    "crosscheck": Target("bnproof/experiments/crosscheck.py", ("tests/test_crosscheck.py",),
                         kernels=True),
    "accuracy": Target("bnproof/experiments/accuracy.py", ("tests/test_accuracy.py",),
                       kernels=True),
    "collect": Target(
        "bnproof/report/_collect.py",
        # every stage replaced by a recording stand-in (seconds), and the
        # failure list through the writers and the command
        ("tests/test_collect_mutants.py", "tests/test_report_failures.py"),
    ),
    "drift_run": Target(
        "bnproof/experiments/drift.py",
        # the helpers stated literally and short real runs, then the
        # experiment's own tests that do not share its ten-second run
        ("tests/test_drift_mutants.py", "tests/test_drift.py"),
        select="not (covers_every or drifts_linearly or checks_pass_and_can_fail "
               "or leaves_b_where or control_fails_both or curves_and_sweep "
               "or keeps_b_at_rounding or json_schema or precision_scenario "
               "or same_seed_gives)",
        kernels=True,
    ),
    "drift_network": Target(
        "bnproof/experiments/_drift_network.py",
        # a NumPy reference of the network and finite differences
        ("tests/test_drift_network_mutants.py",),
        kernels=True,
    ),
    "processes": Target(
        "bnproof/report/_second_process.py",
        # the worker's messages and their handling, without starting a process
        ("tests/test_second_process_mutants.py",),
    ),
    "sumrules": Target(
        "bnproof/symbolic/_sumrules.py",
        ("tests/test_sum_rules.py", "tests/test_sumrules_mutants.py"),
    ),
    "indexsets": Target(
        "bnproof/symbolic/_indexsets.py",
        ("tests/test_indexsets_mutants.py",),
    ),
    "models": Target(
        "bnproof/symbolic/_models.py",
        ("tests/test_models_mutants.py",),
    ),
    "text": Target(
        "bnproof/symbolic/_text.py",
        ("tests/test_text_mutants.py",),
    ),
    "claims": Target(
        "bnproof/symbolic/_claims.py",
        # not tests/test_claims.py: it proves every claim (seconds each)
        ("tests/test_claims_mutants.py",),
    ),
    "passthrough": Target(
        "bnproof/symbolic/_passthrough.py",
        ("tests/test_passthrough_mutants.py",),
    ),
    "registry": Target(
        "bnproof/symbolic/_registry.py",
        ("tests/test_registry_mutants.py",),
    ),
    "pickling": Target(
        "bnproof/symbolic/_pickling.py",
        ("tests/test_pickling.py",),
        select="not proofs_round_trip",  # that one proves two claims
    ),
    "renorm": Target(
        "bnproof/symbolic/_renorm.py",
        ("tests/test_renorm_mutants.py",),
    ),
    "runner": Target(
        "bnproof/symbolic/_runner.py",
        ("tests/test_runner_mutants.py",),
        # simulated workers only: the two tests that spawn real ones take seconds each
        select="not worker_processes and not fails_in_the_workers",
    ),
    # the PyTorch bridge: not the compile, inductor and opcheck tests (slow, and
    # torch.compile in a forked child is not worth its seconds per mutant)
    "ops": Target(
        "bnproof/torch/_ops.py",
        ("tests/test_torch_ops_mutants.py", "tests/test_torch_bridge.py"),
        select="not compile and not inductor and not opcheck and not readme "
               "and not stacklevel",
        kernels=True,
        torch=True,
    ),
    "modules": Target(
        "bnproof/torch/_modules.py",
        ("tests/test_torch_modules_mutants.py", "tests/test_torch_bridge.py",
         "tests/test_torch_training.py"),
        select="convert or module or rejected or Module or training",
        kernels=True,
        torch=True,
    ),
    "precise": Target(
        "bnproof/torch/_precise.py",
        ("tests/test_precise_mutants.py", "tests/test_precise_bn.py"),
        select="not dask",
        kernels=True,
        torch=True,
    ),
    # the audit (bnproof.audit): its own fast unit tests first, then the
    # adversarial models and the zoo (the export fallback is slow and left out)
    "propagate": Target(
        "bnproof/audit/_propagate.py",
        ("tests/test_audit_propagate_mutants.py", "tests/test_audit_propagate_exact.py",
         "tests/test_audit_adversarial.py"),
        select="not export",
        torch=True,
    ),
    "confirm": Target(
        "bnproof/audit/_confirm.py",
        ("tests/test_audit_parts_mutants.py", "tests/test_audit_adversarial.py"),
        select="not export",
        torch=True,
    ),
    "fix": Target(
        "bnproof/audit/_fix.py",
        ("tests/test_audit_parts_mutants.py", "tests/test_audit_zoo.py"),
        select="not export",
        torch=True,
    ),
    "capture": Target(
        "bnproof/audit/_capture.py",
        ("tests/test_audit_capture_mutants.py", "tests/test_audit_adversarial.py"),
        torch=True,
    ),
    "audit_main": Target(
        "bnproof/audit/_audit.py",
        ("tests/test_audit_main_mutants.py", "tests/test_audit_adversarial.py"),
        select="not export",
        torch=True,
    ),
    "records": Target(
        "bnproof/audit/_records.py",
        ("tests/test_audit_parts_mutants.py", "tests/test_audit_cli.py"),
        torch=True,
    ),
    # the normalization family: literal tests of the builders, and the proofs' negative
    # controls; not the tests that prove the whole table or every family claim (a
    # session fixture of 10 s that mutmut would rerun for each mutant)
    "family": Target(
        "bnproof/symbolic/_family.py",
        ("tests/test_family_mutants.py", "tests/test_family.py", "tests/test_family_symbolic.py"),
        select=_FAMILY_FAST,
    ),
    "family_symbolic": Target(
        "bnproof/symbolic/_family_symbolic.py",
        ("tests/test_family_symbolic_mutants.py", "tests/test_family_symbolic.py"),
        select=_FAMILY_FAST,
    ),
    "family_claims": Target(
        "bnproof/symbolic/_family_claims.py",
        ("tests/test_family_claims_mutants.py", "tests/test_family_claims.py"),
        select=_FAMILY_FAST,
    ),
    "family_weight_grad": Target(
        "bnproof/symbolic/_family_weight_grad.py",
        ("tests/test_family_claims_mutants.py", "tests/test_family_claims.py"),
        select=_FAMILY_FAST,
    ),
}

@dataclass(frozen=True)
class Planted:
    """A bug mutmut cannot plant: in a decorated function or a module-level constant.

    ``before`` must occur exactly once in the module; the target's tests run
    with it replaced by ``after`` and must fail.
    """

    target: str
    module: str
    before: str
    after: str
    why: str


PLANTED = (
    Planted("atomic", "bnproof/_atomic.py",
            "            os.rename(old, target)\n        raise",
            "            pass\n        raise",
            "no rollback when the final rename fails"),
    Planted("atomic", "bnproof/_atomic.py",
            "        shutil.rmtree(tmp, ignore_errors=True)\n        raise",
            "        raise",
            "the temporary folder is left behind on an error"),
    Planted("atomic", "bnproof/_atomic.py",
            '        (tmp / MARKER).write_text("written by bnproof; safe to replace\\n", '
            'encoding="utf-8")',
            "        pass",
            "the marker is not written"),
    Planted("atomic", "bnproof/_atomic.py",
            "    if old is not None:\n        _remove_committed(old)",
            "    if old is not None:\n        pass",
            "the replaced folder is left beside the new one"),
    Planted("atomic", "bnproof/_atomic.py",
            "    if target.exists():\n        old = ",
            "    if False:\n        old = ",
            "the previous folder is not moved aside"),
    Planted("accuracy", "bnproof/experiments/accuracy.py",
            "GOAL_ULP = 2.0", "GOAL_ULP = 20.0", "the accuracy goal loosened tenfold"),
    Planted("accuracy", "bnproof/experiments/accuracy.py",
            "ABS_ALLOWANCE = 1e-7", "ABS_ALLOWANCE = 1e-5", "the absolute allowance loosened"),
    Planted("drift", "bnproof/experiments/drift.py",
            "LINE_ROUNDING_UNITS = 64.0", "LINE_ROUNDING_UNITS = 1e9",
            "drift off the line accepted"),
    Planted("drift", "bnproof/experiments/drift.py",
            "LOSS_FIXED_EPS = 16.0", "LOSS_FIXED_EPS = 1e9", "a moving loss accepted"),
    # the audit's rules: each lets a bias through, or cancels it, where it must not
    Planted("audit", "bnproof/audit/_propagate.py",
            "        if (state.vary <= {1} and _conv_without_padding(module)\n"
            "                and channel_axis_is_1(module, rank)):",
            "        if (state.vary <= {1} and _conv_without_padding(module)):",
            "a convolution at the wrong rank (unbatched input) passes the bias"),
    Planted("audit", "bnproof/audit/_propagate.py",
            "    if kind in (nn.Identity, nn.Flatten) or",
            "    if kind in (nn.Identity, nn.Flatten, nn.ReLU) or",
            "a ReLU treated as the identity (a nonlinearity as affine)"),
    Planted("audit", "bnproof/audit/_propagate.py",
            "    return all(p == 0 for p in padding)", "    return True",
            "a zero-padded convolution passes the bias"),
    Planted("audit", "bnproof/audit/_propagate.py",
            "        uses_batch_stats = module.training or not module.track_running_stats",
            "        uses_batch_stats = True",
            "a batch norm in eval mode (running statistics) cancels the bias"),
    Planted("audit", "bnproof/audit/_propagate.py",
            "        if not (state.vary & axes):", "        if True:",
            "layer norm cancels a per-feature bias as a whole"),
    # the audit's rule table (_rules.py is built at import, out of mutmut's reach):
    # each cites the wrong claim or the wrong verdict
    Planted("audit", "bnproof/audit/_rules.py",
            '"batch": ("batch-bias-per-feature", "bias-cancels-train", "shift-invariance"),',
            '"batch": ("batch-bias-per-feature", "bias-cancels-train"),',
            "batch norm's cancellation cites one claim too few"),
    Planted("audit", "bnproof/audit/_rules.py",
            '"group": ("group-bias-per-feature",),',
            '"group": ("group-bias-per-group",),',
            "group norm's partial cancellation cites the positive claim as its negative"),
    Planted("audit", "bnproof/audit/_rules.py",
            '"conv": "passthrough-conv-no-padding",', '"conv": "passthrough-linear",',
            "a convolution cites the linear layer's pass-through claim"),
    Planted("audit", "bnproof/audit/_rules.py",
            '    out.update(dict.fromkeys(STOPS.values(), "refuted"))',
            '    out.update(dict.fromkeys(STOPS.values(), "proved"))',
            "the stops are relied on as proved"),
    Planted("audit", "bnproof/audit/_rules.py",
            '    for ids in NEGATIVE.values():\n        out.update(dict.fromkeys(ids, "refuted"))',
            '    for ids in NEGATIVE.values():\n        pass',
            "the negative controls are not cited"),
    # the bridge's semantics (PyTorch's nn.BatchNorm*d)
    Planted("torch", "bnproof/torch/_modules.py",
            "            factor = 1.0 / float(self.num_batches_tracked + 1)",
            "            factor = 1.0 / float(self.num_batches_tracked + 2)",
            "momentum=None: the cumulative average weighs the batch wrongly"),
    Planted("torch", "bnproof/torch/_modules.py",
            "            self.num_batches_tracked.add_(1)", "            pass",
            "num_batches_tracked is not incremented"),
    Planted("torch", "bnproof/kernels/_batch_norm.py",
            "                    m2 / (count - 1)\n", "                    m2 / count\n",
            "the running variance gets the biased batch variance"),
    Planted("torch", "bnproof/torch/_modules.py",
            "        use_batch = self.training or (", "        use_batch = True or (",
            "eval mode normalizes with the batch statistics"),
    # the precise statistics (precise_bn)
    Planted("precise", "bnproof/torch/_precise.py",
            "np.asarray(record.m2, dtype=np.float64) / (record.count - 1))",
            "np.asarray(record.m2, dtype=np.float64) / record.count)",
            "the biased variance is written"),
    Planted("precise", "bnproof/torch/_precise.py",
            "                    self.records[name] = _merge(\n"
            "                        self.records[name], batch_norm_moments(x, channel_axis=axis)\n"
            "                    )",
            "                    self.records[name] = batch_norm_moments(x, channel_axis=axis)",
            "only the last batch's moments are kept"),
    Planted("precise", "bnproof/torch/_precise.py",
            "index >= num_batches:", "index > num_batches:",
            "one batch more than num_batches is read"),
    Planted("precise", "bnproof/torch/_precise.py",
            "                    m.num_batches_tracked.copy_(tracked)",
            "                    pass",
            "num_batches_tracked, advanced by the passes, is not restored"),
    # the family claims: each row's statistics over its own axes
    Planted("family", "bnproof/symbolic/_family.py",
            "            lambda lay: lambda i: i[1], True,",
            "            lambda lay: lambda i: (i[0], i[1]), True,",
            "batch norm's statistics per sample (instance norm's axes)"),
    Planted("family", "bnproof/symbolic/_family.py",
            "            lambda lay: lambda i: (i[0], lay.group(i[1])), True,",
            "            lambda lay: lambda i: lay.group(i[1]), True,",
            "group norm's statistics over the samples too"),
    Planted("family", "bnproof/symbolic/_family.py",
            "            lambda lay: lambda i: i[0], False,",
            "            lambda lay: lambda i: i[0], True,",
            "RMS norm centred (layer norm's statistics)"),
    Planted("family", "bnproof/symbolic/_family.py",
            "            lambda lay: lambda i: (i[0], i[1]), True,",
            "            lambda lay: lambda i: i[1], True,",
            "instance norm's statistics over the samples (batch norm's axes)"),
)

#: Test files for the planted bugs of targets that mutmut does not run (a
#: ``file::test`` names one test of a slow file).
PLANTED_TESTS = {
    "drift": ("tests/test_drift.py",),
    "audit": ("tests/test_audit_propagate_mutants.py", "tests/test_audit_parts_mutants.py",
              "tests/test_audit_adversarial.py", "tests/test_audit_zoo.py"),
    "torch": ("tests/test_kernels_torch.py", "tests/test_torch_training.py",
              "tests/test_torch_bridge.py::test_modules_state_dict_round_trip_with_pytorch",
              "tests/test_torch_bridge.py::test_batch_norm_matches_pytorch",
              "tests/test_torch_bridge.py::test_running_buffers_are_updated_in_place"),
    "precise": ("tests/test_precise_bn.py",),
    "family": ("tests/test_family.py", "tests/test_family_claims.py"),
}


#: mutmut's exit codes of a mutant's test run, as its ``stats`` module reads them.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 37: "killed", None: "not checked"}


def _prepare(name: str, target: Target, tests: list[str] | None = None) -> Path:
    """Lay out ``.mutation/<name>/``: links to the package and tests, and mutmut's config."""
    work = WORK / name
    # The folder mutmut fills must exist before it starts: the tests' subprocesses find it
    # through PYTHONPATH, and a path that did not exist at startup is never searched.
    (work / "mutants").mkdir(parents=True, exist_ok=True)
    for entry in ("bnproof", "tests"):
        link = work / entry
        if not link.exists():
            link.symlink_to(ROOT / entry, target_is_directory=True)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")  # pytest's settings
    tests = [t for t in (tests or target.tests) if (ROOT / t).exists()]
    select = ["    -k", f"    {target.select}"] if target.select else []
    lines = [
        "[mutmut]",
        "source_paths = bnproof",
        f"only_mutate = {target.module}",
        "pytest_add_cli_args_test_selection =",
        *(f"    {t}" for t in tests),
        "pytest_add_cli_args =",
        "    -x",
        "    -q",
        "    -p",
        "    no:cacheprovider",
        "    -m",
        "    not slow and not browser",
        *select,
        "",
    ]
    (work / "setup.cfg").write_text("\n".join(lines), encoding="utf-8")
    return work


def _environment(work: Path, kernels: bool = False, torch: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    if kernels:
        env["NUMBA_THREADING_LAYER"] = "workqueue"
    if torch:
        env["OMP_NUM_THREADS"] = "1"
    # Subprocesses the tests start (the CLI) must import the mutated copy too.
    env["PYTHONPATH"] = str(work / "mutants")
    # pytest's temporary folders live under one root per user, and a run that
    # starts prunes the old ones: two targets run at once would delete each
    # other's folders mid-test (seen as false kills). One root per target.
    temp_root = work / "pytest-tmp"
    temp_root.mkdir(exist_ok=True)
    env["PYTEST_DEBUG_TEMPROOT"] = str(temp_root)
    return env


def _forget_survivors(work: Path, target: Target) -> None:
    """Mark every mutant that is not killed as unchecked, so new tests get a go at it.

    mutmut keeps results while a function's source is unchanged, even when the
    tests changed; killed mutants stay killed (``--fresh`` reruns everything).
    """
    meta = work / "mutants" / (target.module + ".meta")
    if not meta.exists():
        return
    data = json.loads(meta.read_text(encoding="utf-8"))
    codes = data["exit_code_by_key"]
    for key, code in codes.items():
        if STATUS.get(code) != "killed":
            codes[key] = None
    meta.write_text(json.dumps(data), encoding="utf-8")


def _forget_stale_coverage(work: Path, tests: list[str]) -> None:
    """Make mutmut record again which tests reach which function when the tests changed.

    mutmut records it once per test and keeps it for tests it has seen: a test
    that now reaches a function (e.g. once a module-scoped fixture became
    per-test) would never run against that function's mutants.
    """
    digest = hashlib.sha256()
    for test in sorted(tests):
        path = ROOT / test.split("::")[0]
        digest.update(path.read_bytes() if path.exists() else b"missing")
    stamp = work / "tests.sha256"
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != digest.hexdigest():
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest(), encoding="utf-8")


def _mutmut(work: Path, *args: str, kernels: bool = False,
            torch: bool = False) -> subprocess.CompletedProcess:
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", *args]
    return subprocess.run(cmd, cwd=work, env=_environment(work, kernels, torch), check=False,
                          text=True, capture_output=True)


def _results(work: Path, target: Target) -> dict[str, str]:
    meta = work / "mutants" / (target.module + ".meta")
    data = json.loads(meta.read_text(encoding="utf-8"))
    return {key: STATUS.get(code, "suspicious") for key, code in data["exit_code_by_key"].items()}


def _functions(work: Path, target: Target) -> dict[str, list[str]]:
    """Source lines of every function in mutmut's copy of the module, by name."""
    source = (work / "mutants" / target.module).read_text(encoding="utf-8")
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = [ln.strip() for ln in lines[node.lineno - 1:node.end_lineno]]
            body[0] = body[0].replace(node.name, "f", 1)  # mutants differ in name only
            out[node.name] = body
    return out


def _diff(functions: dict[str, list[str]], mutant: str) -> tuple[str, str, str]:
    """Return (function, removed lines, added lines) of one mutant."""
    name = mutant.rsplit(".", 1)[-1]
    original = functions[re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)]
    changed = difflib.ndiff(original, functions[name])
    removed, added = [], []
    for line in changed:
        (removed if line.startswith("- ") else added if line.startswith("+ ") else []).append(
            line[2:])
    function = re.sub(r"__mutmut_\d+$", "", name).removeprefix("x_")
    function = function.replace("ǁ", ".").strip(".")
    return function, " ".join(removed), " ".join(added)


_ENTRY = re.compile(r"^- `([^`]+)`: `(.*)` → `(.*)`\s*$")


def _equivalents() -> dict[str, set[tuple[str, str, str]]]:
    """Read the listed equivalent mutants: module -> {(function, before, after)}."""
    listed: dict[str, set[tuple[str, str, str]]] = {}
    module = None
    for line in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            module = line[3:].strip().strip("`")
        elif (match := _ENTRY.match(line)) and module:
            func, before, after = (" ".join(g.split()) for g in match.groups())
            listed.setdefault(module, set()).add((func, before, after))
    return listed


def _norm(text: str) -> str:
    return " ".join(text.split())


def run_target(name: str, target: Target, show: bool, tests: list[str] | None = None,
               fresh: bool = False, only: list[str] | None = None) -> dict:
    """Mutate one target, run its tests against every mutant, and score it.

    ``only`` (globs of mutant names, e.g. ``*x_merge__mutmut_*``) runs and scores
    just the matching mutants: a partial score, for modules whose whole run
    does not fit the time at hand.
    """
    if fresh:
        shutil.rmtree(WORK / name, ignore_errors=True)
    work = _prepare(name, target, tests)
    _forget_survivors(work, target)
    _forget_stale_coverage(work, ["tests/conftest.py", *(tests or target.tests)])
    print(f"== {name}: {target.module} with {', '.join(tests or target.tests)}",
          file=sys.stderr)
    proc = _mutmut(work, "run", "--max-children", "1", *(only or ()), kernels=target.kernels,
                   torch=target.torch)
    if proc.returncode or not (work / "mutants" / (target.module + ".meta")).exists():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"mutmut produced no results for {target.module}")
    status = _results(work, target)
    if only:
        status = {k: v for k, v in status.items()
                  if any(fnmatch.fnmatchcase(k, pattern) for pattern in only)}
    listed = _equivalents().get(target.module, set())
    survivors, equivalent = [], []
    functions = _functions(work, target)
    for mutant, state in sorted(status.items()):
        if state in ("survived", "no tests", "timeout", "suspicious", "not checked", "skipped"):
            func, before, after = _diff(functions, mutant)
            if state != "timeout" and (func, _norm(before), _norm(after)) in listed:
                equivalent.append(mutant)
                status[mutant] = "equivalent"
            elif state != "timeout":
                survivors.append((mutant, state, func, before, after))
            else:
                status[mutant] = "killed"  # an endless loop is caught, by the timeout
    total = len(status) - len(equivalent)
    killed = sum(1 for s in status.values() if s == "killed")
    score = killed / total if total else 1.0
    row = {"target": name, "module": target.module, "mutants": len(status),
           "equivalent": len(equivalent), "killed": killed, "survived": len(survivors),
           "score": round(score, 4), "strict": target.strict,
           "survivors": [dict(zip(("mutant", "status", "function", "before", "after"), s,
                                  strict=True)) for s in survivors]}
    if show:
        for mutant, state, func, before, after in survivors:
            print(f"  {state}: {mutant}\n    {func}: `{before}` → `{after}`")
    return row


def _pytest(tests: list[str], work: Path, env: dict[str, str]) -> int:
    cmd = ["nice", "-n", "19", sys.executable, "-m", "pytest", *tests, "-x", "-q",
           "-p", "no:cacheprovider", "-m", "not slow and not browser"]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                          check=False).returncode


def run_planted(names: list[str], override: list[str] | None = None) -> list[dict]:
    """Plant each bug of ``PLANTED`` for the chosen targets in a copy and run their tests.

    The tests first run once on the unchanged copy: a bug "killed" by tests
    that fail anyway would prove nothing, so such bugs are reported as
    ``tests fail unplanted`` instead.
    """
    bugs = [p for p in PLANTED if p.target in names]
    if not bugs:
        return []
    work = WORK / "planted"
    work.mkdir(parents=True, exist_ok=True)
    # one run at a time: a second run would replace the copy under the first one's tests
    lock = (work / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("another run is planting bugs in .mutation/planted; wait for it "
                         "to finish") from None
    shutil.rmtree(work / "bnproof", ignore_errors=True)
    shutil.copytree(ROOT / "bnproof", work / "bnproof",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    if not (work / "tests").exists():
        (work / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    env = dict(os.environ, PYTHONPATH=str(work))
    rows = []
    baseline: dict[tuple[str, ...], int] = {}
    for bug in bugs:
        target = TARGETS.get(bug.target)
        tests = override or (target.tests if target else PLANTED_TESTS[bug.target])
        tests = tuple(t for t in tests if (ROOT / t.split("::")[0]).exists())
        if tests not in baseline:
            baseline[tests] = _pytest(list(tests), work, env)
            if baseline[tests]:
                print(f"  planted ({bug.target}): the tests fail without a planted bug",
                      file=sys.stderr)
        path = work / bug.module
        source = path.read_text(encoding="utf-8")
        if source.count(bug.before) != 1:
            rows.append({"target": bug.target, "why": bug.why, "result": "stale"})
            continue
        if baseline[tests]:
            rows.append({"target": bug.target, "why": bug.why, "result": "tests fail unplanted"})
            continue
        path.write_text(source.replace(bug.before, bug.after), encoding="utf-8")
        try:
            code = _pytest(list(tests), work, env)
        finally:
            path.write_text(source, encoding="utf-8")
        result = {0: "survived", 1: "killed"}.get(code, f"error {code}")
        rows.append({"target": bug.target, "why": bug.why, "result": result})
        print(f"  planted ({bug.target}): {bug.why}: {result}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the chosen targets (all by default) and print one score line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"targets to run, of {', '.join([*TARGETS, *PLANTED_TESTS])} "
                             "(default: the strict ones)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--all", action="store_true",
                        help="every target (default: the strict ones and the planted bugs; "
                             "the others take hours on two cores)")
    parser.add_argument("--show", action="store_true", help="print each survivor's change")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    parser.add_argument("--fresh", action="store_true",
                        help="start from scratch (new copy, every mutant rerun)")
    parser.add_argument("--no-planted", action="store_true",
                        help="skip the planted bugs (only mutmut's mutants)")
    parser.add_argument("--only-planted", action="store_true",
                        help="only the planted bugs (no mutmut run)")
    parser.add_argument("--mutants", nargs="+", metavar="GLOB",
                        help="run and score only the mutants whose names match (mutmut's "
                             "names, e.g. '*x_merge__mutmut_*'): a partial score")
    parser.add_argument("--tests", nargs="+", metavar="FILE",
                        help="run with these test files instead of the target's own "
                             "(e.g. the suite before new tests, for a before/after score)")
    args = parser.parse_args(argv)
    known = {*TARGETS, *PLANTED_TESTS}
    unknown = [t for t in args.targets if t not in known]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if shutil.which("nice") is None:
        parser.error("needs the nice command (the campaign runs at the lowest priority)")
    if args.list:
        for name, target in TARGETS.items():
            goal = "no survivor" if target.strict else f">= {GOAL:.0%}"
            print(f"{name:12} {target.module:36} {goal:12} {' '.join(target.tests)}")
        for name, tests in PLANTED_TESTS.items():
            count = sum(1 for bug in PLANTED if bug.target == name)
            print(f"{name:12} {f'{count} planted bugs':36} {'all killed':12} {' '.join(tests)}")
        return 0
    strict = [n for n, t in TARGETS.items() if t.strict]
    names = [*TARGETS, *PLANTED_TESTS] if args.all else (args.targets or strict)
    # by default also the planted thresholds of the experiments (not their mutmut runs)
    planted_for = names if (args.all or args.targets) else [*strict, "accuracy", *PLANTED_TESTS]
    planted = [] if args.no_planted else run_planted(planted_for, args.tests)
    rows = [] if args.only_planted else [
        run_target(n, TARGETS[n], args.show, args.tests, args.fresh, args.mutants)
        for n in names if n in TARGETS]
    print(f"{'target':12} {'module':36} {'mutants':>7} {'equiv':>5} {'killed':>6} "
          f"{'survived':>8} {'score':>7}")
    ok = True
    for r in rows:
        good = r["survived"] == 0 if r["strict"] else r["score"] >= GOAL
        ok &= good
        flag = "" if good else "  (below goal)"
        print(f"{r['target']:12} {r['module']:36} {r['mutants']:7} {r['equivalent']:5} "
              f"{r['killed']:6} {r['survived']:8} {r['score']:7.1%}{flag}")
    for p in planted:
        ok &= p["result"] == "killed"
        print(f"planted bug ({p['target']}): {p['why']}: {p['result']}")
    if args.json:
        args.json.write_text(json.dumps({"targets": rows, "planted": planted}, indent=1,
                                        ensure_ascii=False), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
