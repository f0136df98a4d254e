"""Pass-through rules: which operations carry a constant along as a constant.

A bias ``c`` added before a normalization cancels when what reaches the
normalization is still a constant of the right pattern (the same value for
every sample and every position of a channel). Each operation the model
audit (:mod:`bnproof.audit`) propagates such a constant through is a claim
here, established like every other claim: symbolically (the window, the
kernel or the layer width is the symbolic size N) and by full expansion and
exact rationals at N = 2..n_max. The form is always

    f(x + c) - f(x) = K,

where ``K`` does not involve the data ``x`` and is the same at every output
position: the constant stays a constant. The negative controls (ReLU, zero
padding applied after the constant, average pooling that counts the padding,
dropout in training) expect ``refuted``: there the difference depends on the
data or on the position, and the audit stops there.

Structural operations (reshape, view, flatten, transpose, permute,
concatenation, indexing that keeps the channel) only move values around; the
audit treats them by bookkeeping of which axis is the channel, not by algebra
(see :mod:`bnproof.audit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import sympy
from sympy import IndexedBase, Max, Symbol

from ._engine import Identity, establish
from ._models import Batch
from ._proof import Claim, Step

__all__ = ["PASSTHROUGH_CLAIMS"]

#: The data, a second input, a weight, a second-channel input and weight.
_x = IndexedBase("x", real=True)
_z = IndexedBase("z", real=True)
_W = IndexedBase("W", real=True)
_w1 = IndexedBase("w^{(1)}", real=True)
_w2 = IndexedBase("w^{(2)}", real=True)
_x1 = IndexedBase("x^{(1)}", real=True)
_x2 = IndexedBase("x^{(2)}", real=True)
_cvec = IndexedBase("c", real=True)
_m = IndexedBase("m", nonnegative=True)
#: Per-channel constants, a scalar multiplier.
_c = Symbol("c", real=True)
_e = Symbol("e", real=True)
_c1 = Symbol("c_1", real=True)
_c2 = Symbol("c_2", real=True)
_a = Symbol("a", real=True)
#: A summation index over the window, the kernel taps or the input width.
_k = Symbol("q", integer=True)

_DIFF = Symbol("f(x + c) - f(x)", real=True)


def _entry(batch: Batch, base: IndexedBase, *index) -> sympy.Expr:
    """``base[index]`` for symbolic N; an explicit symbol at concrete N."""
    if batch.symbolic:
        return base[index if len(index) > 1 else index[0]]
    name = "_".join(str(v) for v in index)
    return Symbol(f"{base.label}_{name}", **base.assumptions0)


def _ranges(batch: Batch) -> dict:
    return dict(batch.ranges) if batch.symbolic else {}


def _linear(batch: Batch, idx: Mapping) -> list:
    # A linear layer of input width N: out_i = sum_q W[i, q] v_q.
    i = idx["i"]

    def out(v):
        return batch.total(lambda q: _entry(batch, _W, i, q) * v(q), _k)

    shifted = out(lambda q: _entry(batch, _x, q) + _entry(batch, _cvec, q))
    plain = out(lambda q: _entry(batch, _x, q))
    const = out(lambda q: _entry(batch, _cvec, q))
    return [Identity(_DIFF, shifted - plain, const, _ranges(batch))]


def _conv(batch: Batch, idx: Mapping) -> list:
    # Two input channels, a kernel of N taps, no padding: output position t
    # reads x[t + q] for q = 1..N; each channel carries its own constant.
    t = idx["i"]

    def out(c1, c2):
        return batch.total(
            lambda q: _entry(batch, _w1, q) * (_entry(batch, _x1, t + q) + c1)
            + _entry(batch, _w2, q) * (_entry(batch, _x2, t + q) + c2),
            _k,
        )

    taps1 = batch.total(lambda q: _entry(batch, _w1, q), _k)
    taps2 = batch.total(lambda q: _entry(batch, _w2, q), _k)
    return [Identity(_DIFF, out(_c1, _c2) - out(0, 0), _c1 * taps1 + _c2 * taps2,
                     _ranges(batch))]


def _avgpool(batch: Batch, idx: Mapping) -> list:
    # A window of N real positions (no padding counted in).
    n = batch.size
    shifted = batch.total(lambda q: _entry(batch, _x, q) + _c, _k) / n
    plain = batch.total(lambda q: _entry(batch, _x, q), _k) / n
    return [Identity(_DIFF, shifted - plain, _c, _ranges(batch))]


def _maxpool(batch: Batch, idx: Mapping) -> list:
    i, j = idx["i"], idx["j"]
    # The shift keeps every pairwise order, hence the position of the maximum.
    order = Identity(
        Symbol("(x_i + c) - (x_j + c)", real=True),
        (_entry(batch, _x, i) + _c) - (_entry(batch, _x, j) + _c),
        _entry(batch, _x, i) - _entry(batch, _x, j),
        _ranges(batch),
    )
    if batch.symbolic:
        return [order]
    # Case split at concrete N: in the case "x_i is a maximum", write every
    # other value as x_j = x_i - d_j with d_j >= 0; then both maxima reduce.
    top = _entry(batch, _x, i)
    gaps = {q: Symbol(f"d_{q}", nonnegative=True) for q in batch.indices if q != i}
    values = [top if q == i else top - gaps[q] for q in batch.indices]
    case = Identity(
        Symbol("max(x + c) - max(x)", real=True),
        Max(*(v + _c for v in values)) - Max(*values),
        _c,
    )
    return [order, case]


def _residual(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    xi, zi = _entry(batch, _x, i), _entry(batch, _z, i)
    return [Identity(_DIFF, (xi + _c) + (zi + _e) - (xi + zi), _c + _e, _ranges(batch))]


def _upsample(batch: Batch, idx: Mapping) -> list:
    # Nearest upsampling by 2 copies input position ceil(i / 2) to output i.
    i = idx["i"]
    src = sympy.ceiling(i / 2) if batch.symbolic else -(-i // 2)
    xs = _entry(batch, _x, src)
    return [Identity(_DIFF, (xs + _c) - xs, _c, _ranges(batch))]


def _scalar(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    xi = _entry(batch, _x, i)
    return [Identity(_DIFF, _a * (xi + _c) - _a * xi, _a * _c, _ranges(batch))]


def _relu(batch: Batch, idx: Mapping) -> list:
    i = idx["i"]
    xi = _entry(batch, _x, i)
    return [Identity(_DIFF, Max(xi + _c, 0) - Max(xi, 0), _c, _ranges(batch))]


def _zero_padding(batch: Batch, idx: Mapping) -> list:
    # Position 0 is a zero pad added after the constant; position i is data.
    i = idx["i"]
    xi = _entry(batch, _x, i)
    pad_shifted, pad_plain = sympy.S.Zero, sympy.S.Zero
    return [
        Identity(
            Symbol("[f(x + c) - f(x)]_pad", real=True),
            pad_shifted - pad_plain,
            (xi + _c) - xi,
            _ranges(batch),
        )
    ]


def _avgpool_counting_padding(batch: Batch, idx: Mapping) -> list:
    # The border window holds one zero pad and N - 1 data values, divided by N.
    n = batch.size
    if batch.symbolic:
        inner = lambda term: sympy.Sum(term(_k), (_k, 1, n - 1))  # noqa: E731
    else:
        inner = lambda term: sympy.Add(*(term(q) for q in range(1, n)))  # noqa: E731
    shifted = inner(lambda q: _entry(batch, _x, q) + _c) / n
    plain = inner(lambda q: _entry(batch, _x, q)) / n
    return [Identity(Symbol("[f(x + c) - f(x)]_border", real=True), shifted - plain, _c,
                     _ranges(batch))]


def _dropout(batch: Batch, idx: Mapping) -> list:
    # In training, dropout multiplies each value by a random mask m_i >= 0.
    i = idx["i"]
    xi, mi = _entry(batch, _x, i), _entry(batch, _m, i)
    return [Identity(_DIFF, mi * (xi + _c) - mi * xi, _c, _ranges(batch))]


def _claim(id, statement, latex, assumptions, build, *, free=("i",), expected="proved",
           symbolic=True, section=""):
    preamble = (Step(statement),)

    def prove_claim(n_max: int):
        return establish(id, build, free=free, n_max=n_max, symbolic=symbolic,
                         preamble=preamble)

    return Claim(
        id=id,
        statement=statement,
        latex=latex,
        assumptions=tuple(assumptions),
        expected=expected,
        prove=prove_claim,
        symbolic_n_expected=symbolic,
        section=section,
        group="rules",
    )


_RULES = "Pass-through rule of the model audit"

PASSTHROUGH_CLAIMS: Mapping[str, Claim] = MappingProxyType(
    {
        claim.id: claim
        for claim in (
            _claim(
                "passthrough-linear",
                "A linear layer turns a constant into a constant: W(x + c) - Wx = Wc, which "
                "does not involve x (input width N symbolic).",
                r"W(x + c) - Wx = Wc",
                ("any weights W", "c the same for every sample"),
                _linear,
                section=_RULES,
            ),
            _claim(
                "passthrough-conv-no-padding",
                "A convolution without padding turns per-channel constants into a "
                "per-channel constant: out(x + c) - out(x) = sum over channels of c times "
                "the sum of that channel's taps, the same at every output position "
                "(kernel length N symbolic).",
                r"\sum_q w_q (x_{t+q} + c) - \sum_q w_q x_{t+q} = c \sum_q w_q",
                ("no padding: every tap reads data", "c the same at every position"),
                _conv,
                section=_RULES,
            ),
            _claim(
                "passthrough-avgpool",
                "Average pooling over real positions (no padding counted in) keeps a "
                "constant: mean(x + c) = mean(x) + c (window of N symbolic). Also used for "
                "adaptive average pooling and means over positions.",
                r"\tfrac{1}{N}\sum_q (x_q + c) = \tfrac{1}{N}\sum_q x_q + c",
                ("the divisor counts only real positions",),
                _avgpool,
                free=(),
                section=_RULES,
            ),
            _claim(
                "passthrough-maxpool",
                "Max pooling keeps a constant: max(x + c) = max(x) + c. Proof by cases: a "
                "shift keeps every pairwise order ((x_i + c) - (x_j + c) = x_i - x_j, "
                "symbolic N), so the position of a maximum is unchanged; at concrete N each "
                "case 'x_i is a maximum' (x_j = x_i - d_j, d_j >= 0) reduces exactly.",
                r"\max_q (x_q + c) = \max_q x_q + c",
                ("c the same over the window", "padding, if any, is -infinity"),
                _maxpool,
                free=("i", "j"),
                section=_RULES,
            ),
            _claim(
                "passthrough-residual-add",
                "A residual addition adds the constants its two inputs carry: "
                "(x + c) + (z + e) = (x + z) + (c + e).",
                r"(x + c) + (z + e) = (x + z) + (c + e)",
                ("c and e the same for every sample",),
                _residual,
                section=_RULES,
            ),
            _claim(
                "passthrough-upsample-nearest",
                "Nearest upsampling copies values, so it copies a constant: "
                "up(x + c) = up(x) + c.",
                r"\mathrm{up}(x + c)_i = x_{\lceil i/2 \rceil} + c",
                ("nearest mode",),
                _upsample,
                section=_RULES,
            ),
            _claim(
                "passthrough-scalar-multiple",
                "Multiplying by a fixed number keeps a constant a constant: "
                "a(x + c) = ax + ac.",
                r"a(x + c) = a x + a c",
                ("a a fixed number, not data",),
                _scalar,
                section=_RULES,
            ),
            _claim(
                "passthrough-relu",
                "Negative control: ReLU would carry a constant, relu(x + c) = relu(x) + c. "
                "It does not; the audit stops at ReLU.",
                r"\max(x + c, 0) = \max(x, 0) + c",
                ("none",),
                _relu,
                expected="refuted",
                section=_RULES,
            ),
            _claim(
                "passthrough-zero-padding-after",
                "Negative control: zero padding applied after the constant would keep it the "
                "same at every position. It does not: the pad holds 0, the data c.",
                r"[\mathrm{pad}(x + c) - \mathrm{pad}(x)]_{\mathrm{pad}} = c",
                ("the pad value is 0",),
                _zero_padding,
                expected="refuted",
                section=_RULES,
            ),
            _claim(
                "passthrough-avgpool-counting-padding",
                "Negative control: average pooling that counts a zero pad in its divisor "
                "would keep a constant. It does not: a border window carries c (N - 1)/N.",
                r"\tfrac{1}{N}\Big(0 + \sum_{q < N} (x_q + c)\Big) - \tfrac{1}{N}\Big(0 + "
                r"\sum_{q<N} x_q\Big) = c",
                ("count_include_pad with nonzero padding",),
                _avgpool_counting_padding,
                free=(),
                expected="refuted",
                section=_RULES,
            ),
            _claim(
                "passthrough-dropout-training",
                "Negative control: dropout in training multiplies by a random mask, so "
                "m(x + c) - m x = m c is not the constant c.",
                r"m_i (x_i + c) - m_i x_i = c",
                ("training mode, drop probability > 0",),
                _dropout,
                expected="refuted",
                section=_RULES,
            ),
        )
    }
)


def register_claims() -> None:
    """Add the pass-through rules to the registry (group ``"rules"``)."""
    from ._registry import register

    for claim in PASSTHROUGH_CLAIMS.values():
        register(claim)
