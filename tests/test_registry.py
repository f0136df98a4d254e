"""User claims in the registry, and the per-claim time limit."""

import json
import time
from pathlib import Path

import pytest

from bnproof.cli import main
from bnproof.symbolic import CLAIMS, load_claims, prove_all, register, register_claim
from bnproof.symbolic._registry import _REGISTRY

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_claims.py"

SLOW = '''
import time
import sympy
from bnproof.symbolic import Identity, register_claim

def build(batch, indices):
    time.sleep(600)  # far beyond the time limit of the test
    return [Identity(sympy.Symbol("z"), sympy.Integer(0), 0)]

register_claim("slow-claim", "Takes far too long.", build, symbolic=False, replace=True)
'''


@pytest.fixture
def clean_registry():
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_a_user_claims_file_is_proved_with_the_others(clean_registry, capsys):
    assert main(["prove", "--claims", str(EXAMPLE), "--group", "user", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["claims"]}
    assert rows["my-mean-output-is-beta"]["verdict"] == "proved"
    assert rows["my-mean-output-is-beta"]["symbolic_n"] is True
    # the false variant in the same file is the negative control
    assert rows["my-mean-output-is-gamma"]["verdict"] == "refuted"
    assert CLAIMS["my-mean-output-is-beta"].group == "user"


def test_the_time_limit_stops_a_claim_as_unproved(clean_registry, tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text(SLOW)
    load_claims(slow)
    start = time.perf_counter()
    proof, = prove_all(["slow-claim"], time_limit=1.0, modules=[str(slow)])
    # 600 s of sleep stopped after 1 s (plus starting a fresh interpreter)
    assert time.perf_counter() - start < 60
    assert proof.verdict == "unproved" and proof.reason.startswith("time limit")


def test_registry_refuses_bad_claims(clean_registry):
    with pytest.raises(TypeError, match="takes a Claim"):
        register("not a claim")
    with pytest.raises(ValueError, match="already registered"):
        register(CLAIMS["bias-cancels-train"])
    with pytest.raises(ValueError, match="lowercase"):
        register_claim("Bad Id", "x", lambda b, i: [])
    with pytest.raises(TypeError, match="callable"):
        register_claim("no-build", "x", None)


def test_a_failing_claims_file_leaves_the_registry_as_it_was(clean_registry, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from bnproof.symbolic import register_claim\n"
        "register_claim('half-registered', 'x', lambda b, i: [])\n"
        "raise RuntimeError('broken file')\n"
    )
    before = set(CLAIMS)
    with pytest.raises(RuntimeError, match="broken file"):
        load_claims(bad)
    assert set(CLAIMS) == before
    assert main(["prove", "--claims", str(bad)]) == 2
    with pytest.raises(FileNotFoundError):
        load_claims(tmp_path / "missing.py")


@pytest.mark.parametrize("argv", [["prove", "--claims", "missing.py"],
                                  ["prove", "--workers", "0"],
                                  ["prove", "--time-limit", "-1"]])
def test_prove_usage_errors_exit_2(argv):
    assert main(argv) == 2


def test_report_takes_claims_files(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    import bnproof.report

    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before writing anything

    monkeypatch.setattr(bnproof.report, "collect", fake)
    assert main(["report", "--out", str(tmp_path / "r"), "--claims", str(EXAMPLE)]) == 130
    assert seen["claims_files"] == [str(EXAMPLE)]
    assert main(["report", "--out", str(tmp_path / "r"), "--claims", "missing.py"]) == 2


def test_a_claim_that_raises_is_unproved_with_the_reason(clean_registry, tmp_path):
    broken = tmp_path / "broken_claim.py"
    broken.write_text(
        "from bnproof.symbolic import register_claim\n"
        "def build(batch, indices):\n"
        "    raise RuntimeError('no such model')\n"
        "register_claim('broken-claim', 'Raises.', build, symbolic=False, replace=True)\n"
    )
    load_claims(broken)
    proof, = prove_all(["broken-claim"], workers=2, modules=[str(broken)])
    assert proof.verdict == "unproved"
    assert "RuntimeError: no such model" in proof.reason
