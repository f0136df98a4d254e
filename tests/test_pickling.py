"""Proofs cross processes and the cache as bytes that load without evaluating again."""

import pickle

import sympy

from bnproof import _cache
from bnproof.symbolic import prove, to_bytes


def test_a_relation_loads_as_it_was_stored_not_evaluated_again():
    a = sympy.Symbol("a")
    rel = sympy.Eq(a, a, evaluate=False)
    # SymPy's own pickling evaluates on loading: this Eq comes back as True
    assert pickle.loads(pickle.dumps(rel)) is sympy.true
    back = pickle.loads(to_bytes(rel))
    assert isinstance(back, sympy.Equality) and back.args == (a, a)
    for cls in (sympy.Ne, sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge):
        rel = cls(a, a + 1, evaluate=False)
        back = pickle.loads(to_bytes(rel))
        assert type(back) is cls and back.args == rel.args


def test_other_objects_pickle_as_usual():
    a, n = sympy.symbols("a n", integer=True)
    value = {"sum": sympy.Sum(a**2, (a, 1, n)), "n": 3, "list": [sympy.Rational(1, 3)]}
    assert pickle.loads(to_bytes(value)) == value


def test_proofs_round_trip_step_by_step():
    for cid in ("bias-cancels-train", "backward-closed-form"):
        proof = prove(cid, n_max=3)
        back = pickle.loads(to_bytes(proof))
        assert back.summary() == proof.summary()
        assert len(back.steps) == len(proof.steps) > 0
        for s, t in zip(proof.steps, back.steps, strict=True):
            assert type(s.expr) is type(t.expr)
            assert sympy.srepr(s.expr) == sympy.srepr(t.expr)
            assert str(s) == str(t)


def test_the_cache_stores_with_a_given_dumps(tmp_path, monkeypatch):
    monkeypatch.setenv("BNPROOF_CACHE_DIR", str(tmp_path))
    a = sympy.Symbol("a")
    rel = sympy.Eq(a, a, evaluate=False)
    assert _cache.store("proofs", "k" * 64, [rel], dumps=to_bytes)
    value, _ = _cache.load("proofs", "k" * 64)
    assert value == [rel] and isinstance(value[0], sympy.Equality)
    assert _cache.store("proofs", "j" * 64, [rel])  # the default: SymPy's own pickling
    assert _cache.load("proofs", "j" * 64)[0] == [sympy.true]


def test_the_highest_protocol_is_used():
    # protocol 5 (Python 3.8+) frames start with PROTO 5: b"\x80\x05"
    assert pickle.HIGHEST_PROTOCOL == 5
    assert to_bytes(sympy.Symbol("a"))[:2] == b"\x80\x05"
