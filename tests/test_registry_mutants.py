"""Fast literal tests of the claim registry (``_registry``), in a private registry.

Every test swaps in an empty registry, so nothing registered here leaks into
the catalogue the other tests read.
"""

import sys

import pytest

from bnproof.symbolic import _engine, _registry
from bnproof.symbolic._proof import Claim


@pytest.fixture
def registry(monkeypatch):
    empty: dict = {}
    monkeypatch.setattr(_registry, "_REGISTRY", empty)
    return empty


def _claim(cid="my-claim", expected="proved"):
    return Claim(id=cid, statement="S.", latex="l", assumptions=(), expected=expected,
                 prove=lambda n_max: n_max)


def test_register_adds_and_returns_the_claim(registry):
    claim = _claim()
    assert _registry.register(claim) is claim
    assert registry == {"my-claim": claim}


@pytest.mark.parametrize("cid", ["a", "a-1", "my-bias-claim", "x2-y3-z4"])
def test_good_ids(registry, cid):
    _registry.register(_claim(cid))
    assert list(registry) == [cid]


@pytest.mark.parametrize("cid", ["", "My-claim", "a--b", "-a", "a-", "a_b", "a b", "é"])
def test_bad_ids_are_refused_with_the_fix(registry, cid):
    with pytest.raises(ValueError, match=rf"claim id {cid!r} must be lowercase letters and "
                                         r"digits joined by '-' \(e.g. 'my-bias-claim'\)"):
        _registry.register(_claim(cid))
    assert registry == {}


def test_an_unknown_verdict_is_refused(registry):
    with pytest.raises(ValueError, match=r"expected verdict 'maybe' is not one of "
                                         r"\('proved', 'refuted', 'unproved'\)"):
        _registry.register(_claim(expected="maybe"))
    for verdict in ("proved", "refuted", "unproved"):
        _registry.register(_claim(f"c-{verdict}", expected=verdict))
    assert len(registry) == 3


def test_a_repeated_id_needs_replace(registry):
    first, second = _claim(), _claim()
    _registry.register(first)
    with pytest.raises(ValueError, match=r"a claim with id 'my-claim' is already registered; "
                                         r"choose another id \(or pass replace=True\)"):
        _registry.register(second)
    assert registry["my-claim"] is first
    assert _registry.register(second, replace=True) is second
    assert registry["my-claim"] is second


def test_only_claims_are_registered(registry):
    with pytest.raises(TypeError, match="register takes a Claim, got dict"):
        _registry.register({"id": "x"})


def test_register_claim_builds_a_user_claim(registry, monkeypatch):
    calls = []
    monkeypatch.setattr(_engine, "establish",
                        lambda *args, **kw: calls.append((args, kw)) or "proof")

    def build(batch, idx):
        return []

    claim = _registry.register_claim("u-one", "A user's claim.", build)
    assert registry == {"u-one": claim}
    assert claim == Claim(id="u-one", statement="A user's claim.", latex=r"\text{u-one}",
                          assumptions=("as stated",), expected="proved", prove=claim.prove,
                          symbolic_n_expected=True, section="", group="user")
    assert claim.prove(4) == "proof"
    assert calls == [(("u-one", build), {"free": (), "n_max": 4, "symbolic": True,
                                         "symmetric": False})]
    other = _registry.register_claim(
        "u-two", "S.", build, free=("i",), expected="refuted", symbolic=False,
        symmetric=True, latex="x = 1", assumptions=["N >= 2"], section="Sec")
    assert (other.latex, other.assumptions, other.expected, other.symbolic_n_expected,
            other.section, other.group) == ("x = 1", ("N >= 2",), "refuted", False, "Sec",
                                            "user")
    other.prove(3)
    assert calls[-1] == (("u-two", build), {"free": ("i",), "n_max": 3, "symbolic": False,
                                            "symmetric": True})
    with pytest.raises(ValueError, match="already registered"):
        _registry.register_claim("u-two", "S.", build)
    assert _registry.register_claim("u-two", "T.", build, replace=True).statement == "T."


def test_register_claim_needs_a_callable(registry):
    with pytest.raises(TypeError, match=r"build must be callable\(batch, indices\), got 3"):
        _registry.register_claim("u-x", "S.", 3)
    assert registry == {}


CLAIMS_FILE = '''
from bnproof.symbolic import register_claim
register_claim("{cid}", "S.", lambda batch, idx: [])
'''


def test_load_claims_returns_the_new_ids(registry, tmp_path):
    first, second = tmp_path / "one.py", tmp_path / "two.py"
    first.write_text(CLAIMS_FILE.format(cid="f-one"), encoding="utf-8")
    second.write_text(CLAIMS_FILE.format(cid="f-two"), encoding="utf-8")
    assert _registry.load_claims(first) == ["f-one"]
    assert _registry.load_claims(str(second)) == ["f-two"]
    assert list(registry) == ["f-one", "f-two"]
    names = {name for name, mod in list(sys.modules.items())
             if getattr(mod, "__file__", None) in (str(first), str(second))}
    assert len(names) == 2  # one module per file
    assert all(name.startswith("bnproof_user_claims_") for name in names)
    for name in names:
        del sys.modules[name]


def test_a_failing_claims_file_leaves_nothing_behind(registry, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(CLAIMS_FILE.format(cid="f-half") + "raise RuntimeError('broken')\n",
                   encoding="utf-8")
    before = set(sys.modules)
    with pytest.raises(RuntimeError, match="broken"):
        _registry.load_claims(bad)
    assert registry == {}
    assert set(sys.modules) == before


def test_load_claims_checks_the_path(registry, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"claims file '.*nope\.py' does not exist"):
        _registry.load_claims(tmp_path / "nope.py")
    (tmp_path / "c.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"claims file '.*c\.txt' must be a Python file "
                                         r"\(\.py\)"):
        _registry.load_claims(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        _registry.load_claims(tmp_path)  # a folder is not a file
