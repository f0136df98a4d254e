"""Index sets, multi-index data, statistics over any subset of axes, stop-gradient.

The normalization family of Ba, Kiros & Hinton (2016, section 5.1) and Wu &
He (2018) acts on activations ``a[n, c, p]`` (sample ``n``, channel or
feature ``c``, position ``p``) computed from inputs ``x[n, d, p]`` by a
weight matrix, ``a[n, c, p] = sum_d W[c, d] x[n, d, p]``. This module holds
the pieces every member shares, at concrete sizes:

* :class:`Layout`: the named index sets and their sizes (batch ``N``,
  channels ``C``, positions ``P``, input features ``D``, groups ``G``);
* :func:`tensor`: one exact symbol per index tuple (``a_{1,2,1}``);
* :func:`standardize`: subtract the mean and divide by the root of the
  (biased) variance plus eps, over the slices a key function defines;
* :class:`StopGradient`: a value that passes through, with derivative 0.

Every index value is a tuple of 1-based integers; nothing here assumes that
a claim is symmetric under permutations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import sympy
from sympy import Symbol

__all__ = ["Layout", "StopGradient", "standardize", "strip_stop_gradients", "tensor"]

Index = tuple[int, ...]
Tensor = dict[Index, sympy.Expr]


@dataclass(frozen=True)
class Layout:
    """Concrete sizes of the named index sets of a normalization layer.

    Parameters
    ----------
    N : int
        Batch size (samples ``n = 1..N``).
    C : int
        Channels or features of the activations (``c = 1..C``).
    P : int
        Positions per channel (``p = 1..P``); 1 for plain feature vectors.
    D : int
        Input features of ``a = W x`` (``d = 1..D``).
    G : int
        Groups of channels (group normalization); must divide ``C``.
    """

    N: int
    C: int
    P: int = 1
    D: int = 2
    G: int = 1

    def __post_init__(self) -> None:
        for name in ("N", "C", "P", "D", "G"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"layout size {name}={value!r} must be an int >= 1")
        if self.C % self.G:
            raise ValueError(
                f"G={self.G} groups must divide C={self.C} channels (choose G among the "
                f"divisors of {self.C})"
            )

    @property
    def per_group(self) -> int:
        """Channels per group, ``C / G``."""
        return self.C // self.G

    def group(self, c: int) -> int:
        """Return the group (1-based) of channel ``c`` (1-based)."""
        return (c - 1) // self.per_group + 1

    def activations(self) -> list[Index]:
        """Every index ``(n, c, p)`` of the activations, in order."""
        return list(itertools.product(*(range(1, s + 1) for s in (self.N, self.C, self.P))))

    def inputs(self) -> list[Index]:
        """Every index ``(n, d, p)`` of the inputs ``x``."""
        return list(itertools.product(*(range(1, s + 1) for s in (self.N, self.D, self.P))))

    def weights(self) -> list[Index]:
        """Every index ``(c, d)`` of the weight matrix ``W``."""
        return list(itertools.product(range(1, self.C + 1), range(1, self.D + 1)))

    def text(self) -> str:
        """Return the sizes as people read them, e.g. ``N=2, C=4, P=2, G=2, D=2``."""
        return f"N={self.N}, C={self.C}, P={self.P}, G={self.G}, D={self.D}"


def tensor(name: str, indices: Iterable[Index], **assumptions) -> Tensor:
    """Return one symbol per index tuple, named like ``a_{1,2,1}``.

    Parameters
    ----------
    name : str
        The base name (``"a"``, ``"x"``, ``"W"``).
    indices : iterable of tuple of int
        The index tuples.
    **assumptions
        SymPy assumptions of every entry (default ``real=True``).
    """
    assumptions = assumptions or {"real": True}
    return {
        idx: Symbol(f"{name}_{{{','.join(map(str, idx))}}}", **assumptions) for idx in indices
    }


def standardize(
    a: Mapping[Index, sympy.Expr],
    key: Callable[[Index], object],
    eps: sympy.Expr,
    *,
    center: bool = True,
) -> Tensor:
    """Normalize ``a`` over the slices of equal ``key(index)``.

    Parameters
    ----------
    a : mapping of index tuple to expression
        The activations.
    key : callable
        ``key(index)``: indices with the same key share their statistics
        (e.g. ``lambda i: i[1]`` for batch normalization: one slice per
        channel, over samples and positions).
    eps : sympy.Expr
        The variance floor (a symbol >= 0, or 0).
    center : bool, default True
        Subtract the slice mean (``False``: RMS normalization, the root of
        the mean square plus eps divides).

    Returns
    -------
    dict
        ``(a - mean) / sqrt(var + eps)`` at every index (biased variance,
        Algorithm 1 of Ioffe & Szegedy 2015).
    """
    slices: dict[object, list[Index]] = {}
    for idx in a:
        slices.setdefault(key(idx), []).append(idx)
    out: Tensor = {}
    for members in slices.values():
        size = len(members)
        mu = sympy.Add(*(a[m] for m in members)) / size if center else sympy.S.Zero
        var = sympy.Add(*((a[m] - mu) ** 2 for m in members)) / size
        scale = sympy.sqrt(var + eps)
        for m in members:
            out[m] = (a[m] - mu) / scale
    return out


class StopGradient(sympy.Function):
    """``sg(v)``: the value ``v``, whose derivative is 0 (a constant to the gradient).

    Batch Renormalization (Ioffe 2017, section 3) treats its corrections
    ``r`` and ``d`` this way: they enter the forward pass but not the
    backward pass. :func:`strip_stop_gradients` gives the value.

    Examples
    --------
    >>> from sympy import Symbol, diff
    >>> b = Symbol("b")
    >>> diff(StopGradient(b**2) * b, b)
    StopGradient(b**2)
    """

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        """Return the derivative with respect to the argument: 0."""
        return sympy.S.Zero

    @classmethod
    def eval(cls, arg):
        """Let a number pass through: ``sg(2) = 2``."""
        if arg.is_Number:
            return arg
        return None


def strip_stop_gradients(expr: sympy.Expr) -> sympy.Expr:
    """Return the value of ``expr``: every ``StopGradient(v)`` replaced by ``v``."""
    return expr.replace(lambda e: isinstance(e, StopGradient), lambda e: e.args[0])
