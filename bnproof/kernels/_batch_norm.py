"""Public batch-normalization functions: validation, layouts, running buffers.

The functions here check every argument before any kernel runs or any buffer
is written, bring the input into one of two memory layouts and call the
jitted bodies of :mod:`bnproof.kernels._jit`, which trust their inputs.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading

import numpy as np

from . import _buffers
from ._moments import Moments

__all__ = ["batch_norm_backward", "batch_norm_forward", "batch_norm_moments"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Numba's ``workqueue`` threading layer aborts the process when two Python
# threads run parallel kernels at once. The kernels already use every core,
# so concurrent calls are serialized under this lock whatever the layer.
_KERNEL_LOCK = threading.Lock()

#: Inputs with fewer values than this run on one Numba thread: waking the
#: pool costs more than it saves, and on a busy machine a parallel region
#: can wait a whole scheduler slice (~10 ms) for a descheduled worker.
#: Results do not depend on the number of threads, so this is invisible.
PARALLEL_MIN_SIZE = 1 << 17

_backend_module = None


def _backend():
    """Return the module of jitted kernels, importing Numba on first use."""
    global _backend_module
    if _backend_module is None:
        from . import _jit

        _backend_module = _jit
    return _backend_module


@contextlib.contextmanager
def _kernel_call(size: int):
    """Hold the kernel lock; run on one thread when ``size`` is small."""
    with _KERNEL_LOCK:
        if size >= PARALLEL_MIN_SIZE:
            yield
            return
        import numba

        saved = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(saved)


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #


def _check_array(name: str, value: object, func: str, like: np.dtype | None = None) -> np.ndarray:
    """``value`` as a float32/float64 ndarray; ``like`` is the dtype to suggest casting to."""
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy array, got {type(value).__name__} "
            f"(convert with np.asarray({name}, dtype=np.float32) before calling {func})"
        )
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array; {func} would ignore its mask and use the hidden "
            f"values (pass np.ma.getdata({name}) if they are valid, or {name}.filled(v))"
        )
    # A subclass (np.matrix, np.memmap, ...) is used as the plain array of its
    # memory: its own shape or indexing cannot disagree with what the kernels
    # read, and running buffers are written without its hooks.
    value = value.view(np.ndarray)
    if value.dtype not in _FLOAT_DTYPES:
        if like is not None:
            cast = f"np.{like}"
        elif value.dtype.kind == "f" and value.itemsize in (4, 8):  # non-native byte order
            cast = f"np.float{8 * value.itemsize}"
        else:
            cast = "np.float32" if value.dtype.kind == "f" and value.itemsize < 4 else "np.float64"
        raise TypeError(
            f"{name} has dtype {value.dtype}; {func} supports float32 and float64 only "
            f"(cast with {name}.astype({cast}))"
        )
    return value


def _check_input(name: str, x: object, channel_axis: object, func: str):
    """Validate ``x`` and ``channel_axis``; return ``(x, axis, (A, C, B))``."""
    x = _check_array(name, x, func)
    if x.ndim < 2:
        raise ValueError(
            f"{name} has ndim {x.ndim} (shape {x.shape}); {func} needs (N, C) or "
            f"(N, C, *spatial) (add a channel axis, e.g. {name}.reshape(-1, 1))"
        )
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(
            f"channel_axis must be an int, got {channel_axis!r} "
            "(use 1 for (N, C, ...) or -1 for channels-last (N, ..., C))"
        )
    axis = int(channel_axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"channel_axis={axis} is out of range for {name} with ndim {x.ndim} "
            "(use 1 for (N, C, ...) or -1 for channels-last (N, ..., C))"
        )
    axis %= x.ndim
    if axis == 0:
        raise ValueError(
            f"channel_axis={channel_axis} is the batch axis of {name} (shape {x.shape}); "
            "use 1 for (N, C, ...) or -1 for channels-last (N, ..., C)"
        )
    a = math.prod(x.shape[:axis])
    b = math.prod(x.shape[axis + 1 :])
    return x, axis, (a, x.shape[axis], b)


def _check_channel_vector(name, value, channels, dtype, func, *, writeable=False):
    if value is None:
        return None
    value = _check_array(name, value, func, like=dtype)
    if value.shape != (channels,):
        raise ValueError(
            f"{name} has shape {value.shape} but x has {channels} channels; "
            f"pass {name} of shape ({channels},)"
        )
    if writeable and channels > 1 and abs(value.strides[0]) < value.itemsize:
        raise ValueError(
            f"{name} has stride {value.strides[0]}, so its channels share memory and "
            f"updates would overwrite each other; pass an array with one element per "
            f"channel (e.g. np.zeros({channels}, np.{dtype}))"
        )
    if value.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype} but x has dtype {dtype}; pass all arrays "
            f"in one dtype (e.g. {name}.astype(np.{dtype}))"
        )
    if writeable and not value.flags.writeable:
        raise ValueError(
            f"{name} is read-only but training updates it in place; "
            f"pass a writeable array (e.g. {name}.copy())"
        )
    return value


def _check_stat_vector(name, value, channels, dtype, func):
    """mean/invstd for the backward pass: float64 or the input's dtype."""
    value = _check_array(name, value, func, like=np.dtype(np.float64))
    if value.shape != (channels,):
        raise ValueError(
            f"{name} has shape {value.shape} but x has {channels} channels; "
            f"pass the {name} returned by batch_norm_forward (shape ({channels},))"
        )
    if value.dtype not in (np.dtype(np.float64), dtype):
        raise TypeError(
            f"{name} has dtype {value.dtype}; pass float64 (as batch_norm_forward "
            f"returns) or {dtype} like x"
        )
    return value


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _as_float(value: numbers.Real) -> float:
    """``float(value)``, with an integer too large for a float as ``inf`` (then rejected)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number >= 0, got {eps!r} (e.g. eps=1e-5)")
    eps = _as_float(eps)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps={eps!r} must be finite and >= 0 (PyTorch's default is 1e-5)")
    return eps


def _check_training_count(count: int, shape: tuple[int, ...], training: bool) -> None:
    if training and count == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size "
            f"{tuple(shape)} (use training=False or a batch with more than one value "
            "per channel)"
        )


def _as_layout(arr: np.ndarray, layout: tuple[int, int, int]) -> np.ndarray:
    """Read-only C-contiguous ``(A, C, B)`` view (a copy only if ``arr`` is not contiguous).

    Inputs always reach the kernels as read-only arrays, so that writeable
    and read-only inputs share one compiled specialization (Numba types the
    two differently) and a kernel cannot write to them.
    """
    view = np.ascontiguousarray(arr).reshape(layout)
    if view is arr:
        view = arr.view()
    view.flags.writeable = False
    return view


def _kernel_view(arr3: np.ndarray) -> np.ndarray:
    """Drop a trailing axis of length 1: rows x channels ``(R, C)`` kernels."""
    return arr3[:, :, 0] if arr3.shape[2] == 1 else arr3


def _vec64(value: np.ndarray | None, channels: int, fill: float) -> np.ndarray:
    if value is None:
        return np.full(channels, fill, dtype=np.float64)
    return np.ascontiguousarray(value, dtype=np.float64)


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def batch_norm_moments(x, channel_axis=1) -> Moments:
    """Per-channel count, mean and sum of squared deviations of a batch.

    Parameters
    ----------
    x : numpy.ndarray
        float32 or float64 array ``(N, C)``, ``(N, C, *spatial)`` or, with
        ``channel_axis=-1``, channels-last ``(N, *spatial, C)``.
    channel_axis : int, default 1
        Axis of the channels; every other axis is reduced.

    Returns
    -------
    Moments
        ``(count, mean, m2)`` with float64 ``mean`` and ``m2`` of shape
        ``(C,)``, and the mean's float64 rounding error as ``mean_lo``.
        Merge records of several batches with :func:`merge_moments`.

    Raises
    ------
    TypeError
        If ``x`` is not a float32/float64 NumPy array.
    ValueError
        If ``x`` has fewer than 2 axes or ``channel_axis`` is invalid.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1 (mini-batch mean and variance).
    Accumulates in float64 about a shift ``K`` (the channel's first value),
    over fixed blocks of the batch combined in a fixed order, so the result
    does not depend on the number of threads; see :func:`batch_norm_forward`
    for the algorithm. An empty batch gives ``count = 0`` with zero ``mean``
    and ``m2``: the record that :func:`merge_moments` merges as nothing.
    """
    func = "batch_norm_moments"
    x, _, layout = _check_input("x", x, channel_axis, func)
    if x.size == 0:  # the identity of merge_moments: count 0
        zeros = np.zeros(layout[1])
        return Moments(layout[0] * layout[2], zeros, zeros.copy(), mean_lo=zeros.copy())
    x3 = _as_layout(x, layout)
    kernels = _backend()
    with np.errstate(all="ignore"), _kernel_call(x.size):
        mu, m2, mu_lo = kernels.moments(_kernel_view(x3))
    return Moments(layout[0] * layout[2], mu, m2, mean_lo=mu_lo)


def batch_norm_forward(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    *,
    training=True,
    momentum=0.1,
    eps=1e-5,
    channel_axis=1,
    num_batches_tracked=None,
):
    """Batch normalization forward pass (PyTorch's semantics).

    Parameters
    ----------
    x : numpy.ndarray
        float32 or float64 input ``(N, C)``, ``(N, C, *spatial)`` or, with
        ``channel_axis=-1``, channels-last ``(N, *spatial, C)``. Any memory
        order; non-contiguous arrays are copied once.
    weight, bias : numpy.ndarray or None
        ``gamma`` and ``beta`` of shape ``(C,)`` in ``x``'s dtype. ``None``
        means no affine step (``gamma = 1``, ``beta = 0``).
    running_mean, running_var : numpy.ndarray or None
        Running buffers of shape ``(C,)`` in ``x``'s dtype. Pass both or
        neither. In training mode they are updated **in place** (they must
        be writeable); in inference mode they are read and never changed.
    training : bool, default True
        ``True``: normalize with the batch statistics. ``False``: normalize
        with ``running_mean`` and ``running_var`` (both required).
    momentum : float or None, default 0.1
        PyTorch's convention, not Keras/Flax's: ``new = (1 - momentum) old +
        momentum batch``. ``None`` gives a cumulative average, see
        ``num_batches_tracked``. Any real number is accepted, as in PyTorch:
        values outside ``[0, 1]`` extrapolate (Keras' 0.99 corresponds to
        0.01 here), inf or NaN make the running buffers NaN, and inference
        ignores it.
    eps : float, default 1e-5
        Added to the variance before the square root; ``>= 0``.
    channel_axis : int, default 1
        Axis of the channels (1 for channels-first, -1 for channels-last).
    num_batches_tracked : int or None
        Only with ``momentum=None``: how many batches the running buffers
        already average (PyTorch's ``num_batches_tracked`` buffer *before*
        this call). This batch enters with weight ``1 / (num_batches_tracked
        + 1)``; the caller increments its count afterwards. Ignored when
        ``momentum`` is a number.

    Returns
    -------
    y : numpy.ndarray
        Normalized output, same shape and dtype as ``x``, C-contiguous and
        owned by the caller. Outputs of 1 MiB or more reuse the memory of
        earlier outputs that are no longer referenced (their ``base`` is an
        owner object rather than ``None``), which saves the operating
        system's zero-filling of fresh pages, and start half a page away
        from ``x`` (modulo the page size: see ``bnproof.kernels._buffers``).
    mean : numpy.ndarray
        float64 ``(C,)``: the batch mean (training) or ``running_mean``
        (inference).
    invstd : numpy.ndarray
        float64 ``(C,)``: ``1 / sqrt(var + eps)`` with the biased batch
        variance (training) or ``running_var`` (inference). Pass ``mean`` and
        ``invstd`` to :func:`batch_norm_backward`.

    Raises
    ------
    TypeError
        Non-array or masked-array inputs, dtypes other than float32/float64,
        mixed dtypes, non-boolean ``training``, a non-integer
        ``num_batches_tracked``.
    ValueError
        Wrong ndim, channel counts that disagree, one value per
        channel in training, ``eps < 0``, only one running buffer,
        read-only running buffers in training (or ones whose channels
        share memory), missing running buffers in
        inference, ``momentum=None`` without ``num_batches_tracked``.
        Nothing is written when an error is raised. NumPy's floating-point
        error settings (``np.errstate``, warnings as errors) do not apply:
        inf and NaN are results, never an exception halfway through.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1: ``mu`` and the biased ``var`` of
    each channel over the batch and spatial positions, ``xhat = (x - mu) /
    sqrt(var + eps)``, ``y = gamma xhat + beta``; section 3.1 for the
    inference transform with population statistics. The running variance is
    updated with the unbiased estimate ``m2 / (count - 1)`` as in PyTorch.

    Statistics accumulate in float64 and never as ``E[x^2] - E[x]^2``: the
    shifted data algorithm sums ``x - K`` and ``(x - K)^2`` about the
    channel's first value ``K`` (so ``|mean - K|`` is of the order of the
    spread), over fixed blocks added in a fixed order. Where that still
    cancels (``|mean - K|`` above ~32 standard deviations, a constant
    channel, NaN), the channel is recomputed with two passes per block
    (mean, then squared deviations) merged with Chan's rule. The variance is
    never negative and a constant channel gives exactly ``bias``. Each
    output is evaluated as ``(x - mu) * (gamma invstd) + beta`` in float64
    and rounded once, with the rounding error of the float64 mean added
    back through ``beta`` (the mean is ``K + d`` and Knuth's TwoSum keeps
    the part that float64 drops, which ``gamma invstd`` would otherwise
    amplify), so float32 outputs stay at the rounding floor even when
    ``|mean| / std`` is 1e6 and the weight is large, and float32 inputs
    near +-3e38 do not overflow. NaN or inf in a channel make that
    channel's ``invstd`` and outputs NaN and its ``mean`` NaN or infinite,
    as in PyTorch; other
    channels are unaffected. With ``eps=0`` a constant channel gives NaN.
    Results are bit-identical whatever the number of Numba threads.

    An empty input (``N = 0``, or any axis of length 0) gives an empty
    output and leaves the running buffers untouched, as in PyTorch; in
    training its ``mean`` and ``invstd`` are NaN (statistics of nothing).

    Limits of float64 evaluation: an output is off by about
    ``1e-16 (|gamma xhat| + |beta|)`` in absolute terms (the rounding of
    ``gamma invstd`` and of the sum), which the accuracy goal's 1e-7
    absolute allowance covers while ``|gamma xhat|`` and ``|beta|`` stay
    below about 1e8; an output that cancels between larger terms (weight and
    bias of 1e10, say) carries that absolute error. For float64 inputs, a
    channel whose spread exceeds about 1e154 overflows the squared
    deviations (``var`` is inf, ``invstd`` 0, outputs equal ``bias``), and
    with ``eps=0`` a spread below about 1e-154 underflows them; PyTorch
    shares both limits.
    """
    func = "batch_norm_forward"
    x, _, layout = _check_input("x", x, channel_axis, func)
    channels = layout[1]
    count = layout[0] * layout[2]
    training = _check_bool("training", training)
    weight = _check_channel_vector("weight", weight, channels, x.dtype, func)
    bias = _check_channel_vector("bias", bias, channels, x.dtype, func)
    if (running_mean is None) != (running_var is None):
        given = "running_mean" if running_var is None else "running_var"
        raise ValueError(
            f"only {given} was given; pass both running_mean and running_var or neither"
        )
    running_mean = _check_channel_vector(
        "running_mean", running_mean, channels, x.dtype, func, writeable=training
    )
    running_var = _check_channel_vector(
        "running_var", running_var, channels, x.dtype, func, writeable=training
    )
    if running_mean is not None and np.shares_memory(running_mean, running_var):
        raise ValueError(
            "running_mean and running_var share memory; pass two separate arrays"
        )
    eps = _check_eps(eps)
    if momentum is not None:
        # any real number, as in PyTorch (which does not check it): outside
        # [0, 1] the update extrapolates, a non-finite one gives NaN buffers
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
            raise TypeError(
                f"momentum must be a real number or None, got {momentum!r} (e.g. 0.1)"
            )
        momentum = _as_float(momentum)
    if num_batches_tracked is not None:
        if isinstance(num_batches_tracked, bool) or not isinstance(
            num_batches_tracked, numbers.Integral
        ):
            raise TypeError(
                f"num_batches_tracked must be an int >= 0, got {num_batches_tracked!r} "
                "(pass PyTorch's count as int(module.num_batches_tracked))"
            )
        if not 0 <= num_batches_tracked < 2**63:
            raise ValueError(
                f"num_batches_tracked must be an int in [0, 2**63), got {num_batches_tracked!r} "
                "(the number of batches already in the running buffers)"
            )
    if training and momentum is None and running_mean is not None and num_batches_tracked is None:
        raise ValueError(
            "momentum=None (cumulative average) needs num_batches_tracked, the number of "
            "batches already in the running buffers (0 for the first batch)"
        )
    if not training and running_mean is None:
        raise ValueError(
            "training=False normalizes with running statistics; pass running_mean and "
            "running_var (or use training=True)"
        )
    _check_training_count(count, x.shape, training)

    # ---- everything is valid: compute ---------------------------------- #
    if x.size == 0:  # PyTorch: empty output, buffers untouched
        y = np.empty(x.shape, x.dtype)
        if training:
            return y, np.full(channels, np.nan), np.full(channels, np.nan)
        with np.errstate(all="ignore"):
            return (y, running_mean.astype(np.float64),
                    1.0 / np.sqrt(running_var.astype(np.float64) + eps))
    gamma = _vec64(weight, channels, 1.0)
    beta = _vec64(bias, channels, 0.0)
    x3 = _kernel_view(_as_layout(x, layout))
    y = _buffers.empty(x.shape, x.dtype, apart_from=(x3,))
    y3 = _kernel_view(y.reshape(layout))
    kernels = _backend()
    # inf and NaN are documented results (eps=0 with a constant channel, NaN
    # in the input, a running variance that overflows float32); the caller's
    # np.errstate / warnings-as-errors must not turn them into an exception
    # halfway, after some buffers were written
    with np.errstate(all="ignore"):
        if training:
            with _kernel_call(x.size):
                mean, m2, invstd = kernels.forward_train(x3, gamma, beta, eps, y3)
            if running_mean is not None:
                factor = momentum if momentum is not None else 1.0 / (num_batches_tracked + 1)
                new_mean = (1.0 - factor) * running_mean.astype(np.float64) + factor * mean
                new_var = (1.0 - factor) * running_var.astype(np.float64) + factor * (
                    m2 / (count - 1)
                )
                # cast first: the two assignments below cannot fail
                new_mean = new_mean.astype(running_mean.dtype)
                new_var = new_var.astype(running_var.dtype)
                running_mean[...] = new_mean
                running_var[...] = new_var
        else:
            mean = running_mean.astype(np.float64)
            invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
            with _kernel_call(x.size):
                kernels.normalize(x3, mean, gamma * invstd, beta, y3)
    return y, mean, invstd


def batch_norm_backward(dy, x, weight, mean, invstd, *, training=True, channel_axis=1,
                        bias=None):
    """Batch normalization backward pass: gradients of a loss w.r.t. x, weight, bias.

    Parameters
    ----------
    dy : numpy.ndarray
        Gradient of the loss with respect to ``y``; same shape and dtype as
        ``x``.
    x : numpy.ndarray
        The forward input (float32 or float64, layouts as in
        :func:`batch_norm_forward`).
    weight : numpy.ndarray or None
        ``gamma`` of shape ``(C,)`` in ``x``'s dtype, or ``None`` for no
        affine step.
    mean, invstd : numpy.ndarray
        ``(C,)`` as returned by :func:`batch_norm_forward` (float64, or
        ``x``'s dtype).
    training : bool, default True
        Must match the forward call. ``True``: gradients flow through the
        batch mean and variance. ``False``: the statistics are constants.
    channel_axis : int, default 1
        Axis of the channels.
    bias : numpy.ndarray or None
        The forward's ``bias`` (``beta``), or ``None``. Only whether it is
        given matters: with a bias, ``dbias`` is returned even when
        ``weight`` is ``None`` (PyTorch allows a bias without a weight).

    Returns
    -------
    dx : numpy.ndarray
        Same shape and dtype as ``x``, C-contiguous (recycled and placed
        like ``y`` of :func:`batch_norm_forward` when it is 1 MiB or more).
    dweight : numpy.ndarray or None
        ``(C,)`` in ``x``'s dtype; ``None`` when ``weight`` is ``None``.
    dbias : numpy.ndarray or None
        ``(C,)`` in ``x``'s dtype; ``None`` when both ``weight`` and
        ``bias`` are ``None``.

    Raises
    ------
    TypeError
        Non-array inputs, unsupported or mixed dtypes.
    ValueError
        Wrong ndim, ``dy`` of another shape than ``x``, channel
        counts that disagree, one value per channel in training.

    Notes
    -----
    Ioffe & Szegedy (2015), section 3, the chain rule below Algorithm 1,
    written in closed form with ``g = dy`` and ``xhat = (x - mean) invstd``:
    training ``dx = gamma invstd (g - mean(g) - xhat mean(g xhat))``,
    inference ``dx = g gamma invstd``; in both ``dweight = sum(g xhat)`` and
    ``dbias = sum(g)`` per channel. Sums accumulate in float64 over fixed
    blocks merged in a fixed order (bit-identical for any thread count), and
    ``dx`` is evaluated in float64 and rounded once. An empty input gives
    an empty ``dx`` and zero ``dweight`` and ``dbias`` (sums of nothing),
    as in PyTorch.
    """
    func = "batch_norm_backward"
    x, _, layout = _check_input("x", x, channel_axis, func)
    dy = _check_array("dy", dy, func, like=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(
            f"dy has shape {dy.shape} but x has shape {x.shape}; pass the gradient of y, "
            "which has x's shape"
        )
    if dy.dtype != x.dtype:
        raise TypeError(
            f"dy has dtype {dy.dtype} but x has dtype {x.dtype}; pass all arrays in one "
            f"dtype (e.g. dy.astype(np.{x.dtype}))"
        )
    channels = layout[1]
    count = layout[0] * layout[2]
    weight = _check_channel_vector("weight", weight, channels, x.dtype, func)
    bias = _check_channel_vector("bias", bias, channels, x.dtype, func)
    mean = _check_stat_vector("mean", mean, channels, x.dtype, func)
    invstd = _check_stat_vector("invstd", invstd, channels, x.dtype, func)
    training = _check_bool("training", training)
    _check_training_count(count, x.shape, training)
    dweight_wanted = weight is not None
    dbias_wanted = dweight_wanted or bias is not None
    if x.size == 0:
        zeros = np.zeros(channels, dtype=x.dtype)
        return (np.empty(x.shape, x.dtype), zeros if dweight_wanted else None,
                zeros.copy() if dbias_wanted else None)

    gamma = _vec64(weight, channels, 1.0)
    mu = np.ascontiguousarray(mean, dtype=np.float64)
    invstd64 = np.ascontiguousarray(invstd, dtype=np.float64)
    x3 = _kernel_view(_as_layout(x, layout))
    dy3 = _kernel_view(_as_layout(dy, layout))
    dx = _buffers.empty(x.shape, x.dtype, apart_from=(x3, dy3))
    dx3 = _kernel_view(dx.reshape(layout))
    kernels = _backend()
    with np.errstate(all="ignore"):  # inf/NaN are results, see batch_norm_forward
        with _kernel_call(x.size):
            if training:
                sum_dy, sum_dy_xmu = kernels.backward_train(dy3, x3, mu, invstd64, gamma, dx3)
            else:
                zeros = np.zeros(channels, dtype=np.float64)
                kernels.normalize(dy3, zeros, gamma * invstd64, zeros, dx3)
                sum_dy, sum_dy_xmu = (
                    kernels.backward_sums(dy3, x3, mu) if dbias_wanted else (None, None)
                )
        dweight = (sum_dy_xmu * invstd64).astype(x.dtype) if dweight_wanted else None
        dbias = sum_dy.astype(x.dtype) if dbias_wanted else None
        return dx, dweight, dbias
