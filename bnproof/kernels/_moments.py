"""Mergeable per-channel moments: ``(count, mean, m2)`` and Chan's rule."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Moments(NamedTuple):
    """Per-channel moments of a batch, mergeable across batches or shards.

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

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1: ``var = m2 / count``. Records merge
    exactly with :func:`merge_moments`.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

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
    for field in ("mean", "m2"):
        value = getattr(m, field)
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise ValueError(
                f"{name}.{field} must be a 1-D NumPy array of shape (C,), got "
                f"{type(value).__name__} with shape {getattr(value, 'shape', None)}"
            )
        if value.dtype.kind not in "fiu" or isinstance(value, np.ma.MaskedArray):
            raise TypeError(
                f"{name}.{field} has dtype {value.dtype}"
                f"{' (a masked array)' if isinstance(value, np.ma.MaskedArray) else ''}; "
                f"pass a plain real array (e.g. {name}.{field}.astype(np.float64))"
            )
    if m.count > 0 and np.any(m.m2 < 0):
        raise ValueError(
            f"{name}.m2 has negative values ({m.m2[m.m2 < 0][:3]}); m2 is a sum of squared "
            "deviations (use the m2 that batch_norm_moments returns)"
        )
    if m.mean.shape != m.m2.shape:
        raise ValueError(
            f"{name}.mean has shape {m.mean.shape} but {name}.m2 has shape {m.m2.shape}; "
            "both must be (C,)"
        )
    return m


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
    ``M2 = M2A + M2B + d^2 nA nB / n``. It never subtracts two large sums,
    so it keeps the accuracy of the two-pass algorithm. Ioffe & Szegedy
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
    na, nb = int(a.count), int(b.count)
    mean_a = np.asarray(a.mean, dtype=np.float64)
    mean_b = np.asarray(b.mean, dtype=np.float64)
    m2_a = np.asarray(a.m2, dtype=np.float64)
    m2_b = np.asarray(b.m2, dtype=np.float64)
    if nb == 0:
        return Moments(na, mean_a.copy(), m2_a.copy())
    if na == 0:
        return Moments(nb, mean_b.copy(), m2_b.copy())
    n = na + nb
    d = mean_b - mean_a
    mean = mean_a + d * (nb / n)
    m2 = m2_a + m2_b + d * d * (na * nb / n)
    return Moments(n, mean, m2)
