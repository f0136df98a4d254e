"""Mergeable per-channel moments: ``(count, mean, m2)`` and Chan's rule."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class _MomentFields(NamedTuple):
    count: int
    mean: np.ndarray
    m2: np.ndarray


class Moments(_MomentFields):
    """Per-channel moments of a batch, mergeable across batches or shards.

    A named tuple ``(count, mean, m2)``: ``count, mean, m2 = moments``
    works. Build one with :func:`~bnproof.kernels.batch_norm_moments`, with
    :func:`merge_moments`, or by hand as ``Moments(count, mean, m2)``.

    Attributes
    ----------
    count : int
        Number of values per channel (the same for every channel).
    mean : numpy.ndarray
        float64 array of shape ``(C,)``, the per-channel mean ``mu``.
    m2 : numpy.ndarray
        float64 array of shape ``(C,)``, the per-channel sum of squared
        deviations from ``mean``. The biased variance used by batch
        normalization is ``m2 / count``, the unbiased one stored in running
        buffers is ``m2 / (count - 1)``.
    mean_lo : numpy.ndarray or None
        Keyword-only, not one of the tuple's fields: float64 ``(C,)``, the
        rounding error of ``mean`` as far as it is known (``mean + mean_lo``
        is the mean with the float64 rounding of ``mean`` itself removed),
        or None (taken as 0). :func:`merge_moments` uses it to subtract
        two means without their rounding: with |mean| / std = 1e6 a merged
        ``m2`` would otherwise be some 1e-11 off, relatively, instead of
        1e-16. ``_replace`` drops it.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1: ``var = m2 / count``. Records merge
    with :func:`merge_moments`.
    """

    def __new__(cls, count, mean, m2, *, mean_lo=None):
        self = super().__new__(cls, count, mean, m2)
        self._mean_lo = mean_lo  # an instance attribute, so the tuple stays (count, mean, m2)
        return self

    @property
    def mean_lo(self) -> np.ndarray | None:
        """The rounding error of ``mean`` (see the class), or None."""
        return self.__dict__.get("_mean_lo")

    @property
    def var(self) -> np.ndarray:
        """Biased variance ``m2 / count`` (what batch normalization divides by)."""
        return self.m2 / self.count

    @property
    def unbiased_var(self) -> np.ndarray:
        """Unbiased variance ``m2 / (count - 1)`` (what running buffers store)."""
        return self.m2 / (self.count - 1)


def _check_moments(name: str, m: object) -> Moments:
    if not isinstance(m, Moments):
        raise TypeError(
            f"{name} must be a Moments record, got {type(m).__name__} "
            "(build one with batch_norm_moments(x) or Moments(count, mean, m2))"
        )
    if isinstance(m.count, bool) or not isinstance(m.count, int | np.integer):
        raise TypeError(f"{name}.count must be an int >= 0, got {m.count!r} (e.g. int(count))")
    if m.count < 0:
        raise ValueError(f"{name}.count must be an int >= 0, got {m.count!r}")
    fields = ("mean", "m2") + (("mean_lo",) if m.mean_lo is not None else ())
    arrays = {}
    for field in fields:
        value = getattr(m, field)
        if isinstance(value, np.ndarray) and not isinstance(value, np.ma.MaskedArray):
            value = value.view(np.ndarray)  # a subclass's own shape or hooks do not count
        arrays[field] = value
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise ValueError(
                f"{name}.{field} must be a 1-D NumPy array of shape (C,), got "
                f"{type(value).__name__} with shape {getattr(value, 'shape', None)}"
            )
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError(
                f"{name}.{field} is a masked array; merge_moments would ignore its mask "
                f"(pass np.ma.getdata({name}.{field}) if the values are valid)"
            )
        if value.dtype.kind not in "fiu":
            raise TypeError(
                f"{name}.{field} has dtype {value.dtype}; "
                f"pass a plain real array (e.g. {name}.{field}.astype(np.float64))"
            )
    m2 = arrays["m2"]
    if m.count > 0 and np.any(m2 < 0):
        raise ValueError(
            f"{name}.m2 has negative values ({m2[m2 < 0][:3]}); m2 is a sum of squared "
            "deviations (use the m2 that batch_norm_moments returns)"
        )
    for field in fields[1:]:
        if arrays[field].shape != arrays["mean"].shape:
            raise ValueError(
                f"{name}.mean has shape {arrays['mean'].shape} but {name}.{field} has shape "
                f"{arrays[field].shape}; both must be (C,)"
            )
    return Moments(m.count, arrays["mean"], arrays["m2"], mean_lo=arrays.get("mean_lo"))


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth's TwoSum)."""
    s = a + b
    bv = s - a
    return s, (a - (s - bv)) + (b - bv)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Merge the moments of two disjoint batches into those of their union.

    Parameters
    ----------
    a, b : Moments
        Moments of two batches with the same channels (from
        :func:`batch_norm_moments` or earlier merges).

    Returns
    -------
    Moments
        Moments of the concatenated batch, float64.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not a :class:`Moments` record.
    ValueError
        If the channel counts differ or a count is negative.

    Notes
    -----
    Chan, Golub & LeVeque (1979) pairwise update, exact in exact arithmetic:
    ``n = nA + nB``, ``d = muB - muA``, ``mu = muA + d nB / n``,
    ``M2 = M2A + M2B + d^2 nA nB / n``. It never subtracts two large sums.
    The difference of the means does subtract two large numbers when
    |mean| >> std; each record's ``mean_lo`` (which
    :func:`~bnproof.kernels.batch_norm_moments` and this function fill in)
    removes their float64 rounding from ``d``, and the merged mean's own
    rounding is kept in the result's ``mean_lo`` (a TwoSum), so merged
    ``m2`` stays as accurate as that of the whole batch. Records built
    without ``mean_lo`` merge with ``d`` rounded to about
    ``1e-16 |mean|``. Ioffe & Szegedy
    (2015), section 3.1, estimate population statistics from many
    mini-batches; merged moments give them exactly (the unbiased variance is
    ``m2 / (count - 1)``).
    """
    a = _check_moments("a", a)
    b = _check_moments("b", b)
    if a.mean.shape != b.mean.shape:
        raise ValueError(
            f"a has {a.mean.shape[0]} channels but b has {b.mean.shape[0]}; "
            "merge moments of the same channels only"
        )
    return _merge(a, b)


def _merge(a: Moments, b: Moments) -> Moments:
    """:func:`merge_moments` without the checks, for records known to be valid."""
    na, nb = int(a.count), int(b.count)

    def fields(m):
        lo = np.zeros(m.mean.shape) if m.mean_lo is None else m.mean_lo
        return (np.array(m.mean, dtype=np.float64), np.array(lo, dtype=np.float64),
                np.array(m.m2, dtype=np.float64))

    mean_a, lo_a, m2_a = fields(a)
    mean_b, lo_b, m2_b = fields(b)
    if nb == 0:
        return Moments(na, mean_a, m2_a, mean_lo=lo_a)
    if na == 0:
        return Moments(nb, mean_b, m2_b, mean_lo=lo_b)
    n = na + nb
    with np.errstate(all="ignore"):  # inf and NaN means are results, as in the kernels
        d = (mean_b - mean_a) + (lo_b - lo_a)
        mean, lo = _two_sum(mean_a, d * (nb / n))
        mean, lo = _two_sum(mean, lo + lo_a)
        m2 = m2_a + m2_b + d * d * (na * nb / n)
    return Moments(n, mean, m2, mean_lo=lo)
