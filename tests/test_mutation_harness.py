"""benchmarks/mutation.py: its configuration reads (the campaign itself runs on demand)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness():
    name = "_bnproof_mutation_harness"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def test_every_target_names_existing_files(harness):
    for name, target in harness.TARGETS.items():
        assert (ROOT / target.module).is_file(), name
        assert target.tests and all(t.startswith("tests/test_") for t in target.tests), name
    strict = {t.module for t in harness.TARGETS.values() if t.strict}
    assert strict == {"bnproof/symbolic/_zero.py", "bnproof/symbolic/_sums.py",
                      "bnproof/kernels/_batch_norm.py", "bnproof/kernels/_moments.py",
                      "bnproof/_atomic.py"}


def test_equivalents_parse_per_module(harness):
    listed = harness._equivalents()
    modules = {t.module for t in harness.TARGETS.values()}
    assert listed and set(listed) <= modules
    for entries in listed.values():
        for function, before, after in entries:
            assert function and before != after


def test_planted_bugs_belong_to_known_targets(harness):
    for bug in harness.PLANTED:
        assert bug.target in harness.TARGETS or bug.target in harness.PLANTED_TESTS
        assert (ROOT / bug.module).is_file() and bug.before != bug.after
        # each bug can be planted: its text occurs exactly once in the module
        source = (ROOT / bug.module).read_text(encoding="utf-8")
        assert source.count(bug.before) == 1, bug.why
    # the issue: the audit's rules, the bridge's semantics, the precise
    # statistics and the family claims each have planted bugs
    assert {"audit", "torch", "precise", "family"} <= {bug.target for bug in harness.PLANTED}
    for name, tests in harness.PLANTED_TESTS.items():
        for test in tests:
            path, _, function = test.partition("::")
            assert path.startswith("tests/test_") and (ROOT / path).is_file(), name
            if function:
                assert f"def {function}(" in (ROOT / path).read_text(encoding="utf-8"), test


def test_list_and_usage_errors(harness, capsys):
    assert harness.main(["--list"]) == 0
    assert "bnproof/symbolic/_zero.py" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        harness.main(["no-such-target"])
    assert exc.value.code == 2


def test_each_target_gets_its_own_pytest_temp_root(harness, tmp_path):
    # two targets run at once must not prune each other's temporary folders
    roots = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        root = Path(harness._environment(tmp_path / name)["PYTEST_DEBUG_TEMPROOT"])
        assert root.is_dir() and root.parent == tmp_path / name
        roots.append(root)
    assert roots[0] != roots[1]
