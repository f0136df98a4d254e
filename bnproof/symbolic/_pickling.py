"""Proofs to bytes and back, each expression rebuilt exactly as it was stored.

SymPy pickles an expression as ``type(expr)(*expr.args)``, which evaluates
it again on loading. For relations (``Eq``, ``Ne``, ``<``, ...) that means
asking assumptions of both sides, so loading the report's proofs took about
two seconds; an already-evaluated relation needs none of it. Here relations
are stored as ``cls(*args, evaluate=False)``, which gives back the same
object (same class, same arguments) at a fraction of the cost. Everything
else pickles as usual, and :func:`pickle.loads` reads the bytes back.
"""

from __future__ import annotations

import copyreg
import io
import pickle

from sympy.core import relational

__all__ = ["to_bytes"]

_RELATIONS = (relational.Equality, relational.Unequality, relational.StrictLessThan,
              relational.LessThan, relational.StrictGreaterThan, relational.GreaterThan)


def _rebuild(cls, args):
    """Return ``cls(*args)`` without evaluating it (it was stored evaluated)."""
    return cls(*args, evaluate=False)


def _reduce_relation(rel):
    return _rebuild, (type(rel), rel.args)


_DISPATCH = {**copyreg.dispatch_table, **dict.fromkeys(_RELATIONS, _reduce_relation)}


def to_bytes(obj: object) -> bytes:
    """Pickle ``obj`` (proofs, steps, expressions) so that loading it evaluates nothing.

    Parameters
    ----------
    obj : object
        Anything picklable; SymPy relations inside it are stored unevaluated.

    Returns
    -------
    bytes
        Read back with :func:`pickle.loads`: the loaded object equals ``obj``.
    """
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buf.getvalue()
