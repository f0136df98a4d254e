"""bnproof's kernels as a PyTorch custom op: forward, autograd formula, fake.

The op, its backward and their fake (meta) functions sit side by side; the
numerics stay in :mod:`bnproof.kernels`. Tensors cross into NumPy and back
as views (``Tensor.numpy()`` and ``torch.from_numpy`` share memory), so the
only copies are the ones the kernels make of non-contiguous inputs.
"""

# No ``from __future__ import annotations``: torch.library infers the ops' schemas
# from the annotations, which must then be types, not strings to be resolved in
# the globals of whatever wraps the function (a decorator's module).

import contextlib
import threading
import warnings

import numpy as np
import torch

from bnproof import kernels

__all__ = ["batch_norm"]

_NATIVE_DTYPES = (torch.float32, torch.float64)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    # 1: here, 2: batch_norm, 3: the line that called batch_norm
    warnings.warn(message, RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- #
# layouts: which view of a tensor the kernels read
# --------------------------------------------------------------------------- #


def _channels_last(t: torch.Tensor) -> bool:
    """Whether ``t`` (N, C, *spatial) is stored channels-last and not channels-first.

    Such a tensor is read through its ``(N, *spatial, C)`` view, which is
    contiguous, with the kernels' channel axis -1 (no copy).
    """
    return t.dim() > 2 and not t.is_contiguous() and t.movedim(1, -1).is_contiguous()


def _to_kernel(t: torch.Tensor, last: bool) -> np.ndarray:
    """NumPy view of ``t`` in the layout the kernels read (``last``: channels-last)."""
    return (t.movedim(1, -1) if last else t).detach().numpy()


def _from_kernel(arr: np.ndarray, last: bool) -> torch.Tensor:
    """Tensor view of a kernel output, in the input's (N, C, *spatial) order."""
    t = torch.from_numpy(arr)
    return t.movedim(-1, 1) if last else t


def _vector(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy()


def _empty_like_kernel(t: torch.Tensor) -> torch.Tensor:
    """Return an uninitialized tensor with the strides the op's real output gets."""
    if _channels_last(t):
        return t.new_empty(t.movedim(1, -1).shape).movedim(-1, 1)
    return t.new_empty(t.shape)


# --------------------------------------------------------------------------- #
# the forward op
# --------------------------------------------------------------------------- #


def _updates(training: bool, running_mean: torch.Tensor | None) -> bool:
    return training and running_mean is not None


# The op is functional: torch.library refuses an autograd formula for an op
# that mutates its inputs. In training it returns the updated running
# statistics (the kernel updates copies of the two (C,) buffers), and
# batch_norm copies them into the buffers with Tensor.copy_.
def _forward_impl(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, invstd, new_running_mean, new_running_var)``.

    The new running statistics are empty unless ``training`` with buffers.
    """
    last = _channels_last(input)
    new_mean, new_var = running_mean, running_var
    if _updates(training, running_mean):
        new_mean, new_var = running_mean.clone(), running_var.clone()
    y, mean, invstd = kernels.batch_norm_forward(
        _to_kernel(input, last), _vector(weight), _vector(bias), _vector(new_mean),
        _vector(new_var), training=training, momentum=momentum, eps=eps,
        channel_axis=-1 if last else 1,
    )
    if not _updates(training, running_mean):
        new_mean, new_var = input.new_empty(0), input.new_empty(0)
    return (_from_kernel(y, last), torch.from_numpy(mean), torch.from_numpy(invstd),
            new_mean, new_var)


_forward_op = torch.library.custom_op(
    "bnproof::batch_norm_forward", _forward_impl, mutates_args=(), device_types="cpu")


@_forward_op.register_fake
def _forward_fake(input, weight, bias, running_mean, running_var, training, momentum, eps):
    channels = input.shape[1]
    stats = channels if _updates(training, running_mean) else 0
    return (_empty_like_kernel(input), input.new_empty(channels, dtype=torch.float64),
            input.new_empty(channels, dtype=torch.float64),
            input.new_empty(stats), input.new_empty(stats))


# --------------------------------------------------------------------------- #
# the backward op
# --------------------------------------------------------------------------- #


def _backward_impl(
    grad_out: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dx, dweight, dbias)``; ``dweight`` is empty when ``weight`` is None."""
    last = _channels_last(input)
    x = _to_kernel(input, last)
    dx, dweight, dbias = kernels.batch_norm_backward(
        _to_kernel(grad_out, last), x, _vector(weight), mean.numpy(), invstd.numpy(),
        training=training, channel_axis=-1 if last else 1,
        bias=np.empty(mean.shape[0], x.dtype),  # ask for dbias in every case
    )
    if dweight is None:
        dweight = np.empty(0, x.dtype)
    return _from_kernel(dx, last), torch.from_numpy(dweight), torch.from_numpy(dbias)


_backward_op = torch.library.custom_op(
    "bnproof::batch_norm_backward", _backward_impl, mutates_args=(), device_types="cpu")


@_backward_op.register_fake
def _backward_fake(grad_out, input, weight, mean, invstd, training):
    channels = input.shape[1]
    return (_empty_like_kernel(input), input.new_empty(0 if weight is None else channels),
            input.new_empty(channels))


def _no_double_backward(ctx, *grads):
    raise RuntimeError(
        "bnproof.torch.batch_norm has no second derivative (its backward is one "
        "kernel); for double backward (gradient penalties, Hessian-vector products) "
        "use torch.nn.functional.batch_norm or PyTorch's nn.BatchNorm modules"
    )


def _backward_setup(ctx, inputs, output):
    pass


torch.library.register_autograd(
    "bnproof::batch_norm_backward", _no_double_backward, setup_context=_backward_setup
)


# --------------------------------------------------------------------------- #
# autograd of the forward op
# --------------------------------------------------------------------------- #


def _forward_setup(ctx, inputs, output):
    input, weight, bias, _, _, training, _, _ = inputs
    _, mean, invstd, new_mean, new_var = output
    ctx.mark_non_differentiable(mean, invstd, new_mean, new_var)
    ctx.save_for_backward(input, weight, mean, invstd)
    ctx.training = training
    ctx.has_weight = weight is not None
    ctx.has_bias = bias is not None


def _forward_backward(ctx, grad_y, *grad_stats):
    input, weight, mean, invstd = ctx.saved_tensors
    dx, dweight, dbias = _backward_op(grad_y, input, weight, mean, invstd, ctx.training)
    return (dx, dweight if ctx.has_weight else None, dbias if ctx.has_bias else None,
            None, None, None, None, None)


torch.library.register_autograd(
    "bnproof::batch_norm_forward", _forward_backward, setup_context=_forward_setup
)


# --------------------------------------------------------------------------- #
# the eager route: the same functions, without the op dispatch
# --------------------------------------------------------------------------- #


class _EagerBatchNorm(torch.autograd.Function):
    """The forward op's autograd formula as a plain :class:`torch.autograd.Function`.

    In eager mode on plain CPU tensors, :func:`batch_norm` runs the op's
    body through this class instead of the registered op: the same forward,
    the same backward, without ``torch.library``'s dispatch (about 0.13 ms
    a call, measured on (64, 16): 495 against 365 us for forward and
    backward). Compiling, tracing and tensor subclasses take the op.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, training, momentum, eps):
        # ctx in forward: a separate setup_context makes apply() bind the
        # arguments with inspect.signature on every call (0.1 ms)
        inputs = (input, weight, bias, running_mean, running_var, training, momentum, eps)
        output = _forward_impl(*inputs)
        _forward_setup(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, grad_y, *grad_stats):
        input, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the registered op, whose own backward says
            # that there is no second derivative when one is asked for
            dx, dweight, dbias = _backward_op(grad_y, input, weight, mean, invstd,
                                              ctx.training)
        else:
            dx, dweight, dbias = _backward_impl(grad_y, input, weight, mean, invstd,
                                                ctx.training)
        return (dx, dweight if ctx.has_weight else None, dbias if ctx.has_bias else None,
                None, None, None, None, None)


    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(_no_forward_mode("torch.autograd.forward_ad"))


def _no_forward_mode(api: str) -> str:
    return (
        f"bnproof.torch.batch_norm has no forward-mode derivative ({api}): its "
        "kernels have a closed-form backward only. Use torch.nn.functional.batch_norm "
        "for forward mode, or reverse mode (loss.backward(), torch.autograd.grad) with "
        "bnproof's op"
    )


def _refuse_tangents(tensors) -> None:
    """Raise when an input carries a forward-mode tangent (dual tensors, torch.func.jvp).

    The registered op has no forward-mode formula, and PyTorch runs a custom
    op whose inputs do not require grad without its autograd formula: the
    tangents would be dropped, silently (seen under torch.compile, dispatch
    modes and tensor subclasses, which take the op instead of the eager route).
    """
    import torch.autograd.forward_ad as fwAD

    if fwAD._current_level < 0:
        return
    if any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors):
        raise RuntimeError(_no_forward_mode("dual tensors, torch.func.jvp, jacfwd"))


def _under_func(tensors):
    """Return the op to run inside torch.func transforms, or None outside them.

    Under ``torch.func.grad`` (also ``vjp``, ``jacrev``) PyTorch refuses the
    op with a message about ``setup_context``; under ``torch.func.jvp`` (also
    ``jacfwd``, ``hessian``) it runs the op and silently drops the tangents,
    returning zeros. Both are refused here, with the alternatives, when an
    input is one the transform tracks. Inputs it does not track (constants)
    are computed directly, without autograd, as a constant; ``vmap`` and
    ``functionalize`` run the registered op (PyTorch loops over the batch).
    """
    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return None
    is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    if any(t is not None and is_wrapped(t) for t in tensors):
        _refuse_func_transforms()
        return _forward_op
    if any(t is not None and t.requires_grad for t in tensors):
        # tracked by autograd outside the transform: not supported either
        _refuse_func_transforms(grad=True)
    return _constant_forward


def _outside_func(constant: bool):
    """Run outside torch.func's dispatch when ``constant``, else change nothing."""
    if not constant:
        return contextlib.nullcontext()
    from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

    return temporarily_clear_interpreter_stack()


def _constant_forward(*inputs):
    """Run the forward on inputs no transform tracks, outside the transforms' dispatch."""
    with _outside_func(True):
        return _forward_impl(*inputs)


def _refuse_func_transforms(grad: bool = False) -> None:
    """Raise a clear error under torch.func's grad and jvp transforms (see _under_func)."""
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    kinds = {i.key() for i in retrieve_all_functorch_interpreters()}
    if TransformType.Jvp in kinds:
        raise RuntimeError(_no_forward_mode("torch.func.jvp, jacfwd, hessian"))
    if grad or TransformType.Grad in kinds:
        raise RuntimeError(
            "bnproof.torch.batch_norm does not run under torch.func.grad (nor vjp, "
            "jacrev): its kernels read the tensors' memory, which the transform hides. "
            "Use torch.nn.functional.batch_norm inside torch.func, or torch.autograd.grad "
            "with bnproof's op"
        )


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _eager(tensors) -> bool:
    """Whether the eager route applies: plain CPU tensors, no compiling, tracing or torch.func."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    if (torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None
            or torch._C._functorch.peek_interpreter_stack() is not None):
        return False
    is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return all(t is None or (type(t) in _PLAIN and not is_wrapped(t)) for t in tensors)


# --------------------------------------------------------------------------- #
# the public function
# --------------------------------------------------------------------------- #


def _check_arguments(input, named_vectors) -> None:
    """Reject shapes and dtypes PyTorch's CPU batch norm rejects, in PyTorch's terms."""
    if input.dim() < 2:
        raise ValueError(
            f"input has shape {tuple(input.shape)}; batch norm needs (N, C) or "
            "(N, C, *spatial) (add a batch axis, e.g. input.unsqueeze(0))"
        )
    channels = input.shape[1]
    for name, t in named_vectors:
        if t is None:
            continue
        if tuple(t.shape) != (channels,):
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but input {tuple(input.shape)} has "
                f"{channels} channels; pass {name} of shape ({channels},)"
            )
        if t.dtype != input.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but input has dtype {input.dtype}; pass "
                f"them in one dtype, as PyTorch's CPU batch norm needs too (e.g. "
                f"{name}.to(input.dtype))"
            )


def _fallback_reason(tensors) -> str | None:
    """Why PyTorch's own op runs instead of the kernels, or None."""
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu":
            return "device"
        if t.dtype not in _NATIVE_DTYPES:
            return "dtype"
    return None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization with bnproof's kernels: ``torch.nn.functional.batch_norm``'s API.

    Parameters
    ----------
    input : torch.Tensor
        ``(N, C)`` or ``(N, C, *spatial)``, float32 or float64, on the CPU.
        Channels-last tensors (``torch.channels_last``, ``channels_last_3d``)
        are read in place through their ``(N, *spatial, C)`` view.
    running_mean, running_var : torch.Tensor or None
        Running buffers ``(C,)`` in ``input``'s dtype; updated in place when
        ``training`` (``new = (1 - momentum) old + momentum batch``, with the
        unbiased batch variance), only read otherwise.
    weight, bias : torch.Tensor or None
        ``gamma`` and ``beta`` ``(C,)``; gradients flow to both.
    training : bool, default False
        Normalize with the batch statistics (``True``) or the running ones.
    momentum : float, default 0.1
        PyTorch's convention; any real number, unused in inference.
    eps : float, default 1e-5
        Added to the variance before the square root.

    Returns
    -------
    torch.Tensor
        The output, in ``input``'s shape and dtype; channels-last when
        ``input`` is, contiguous otherwise.

    Raises
    ------
    ValueError
        One value per channel in training ("Expected more than 1 value per
        channel when training", as PyTorch), fewer than 2 axes, shapes that
        disagree, missing running buffers in inference.
    TypeError
        Non-tensor arguments, mixed float32/float64 arguments.
    RuntimeError
        On double backward (the backward is a single kernel), forward-mode
        differentiation (``torch.func.jvp``, ``jacfwd``, ``hessian``,
        ``torch.autograd.forward_ad``) and ``torch.func.grad`` (``vjp``,
        ``jacrev``) with respect to its inputs: use
        :func:`torch.nn.functional.batch_norm` there, or reverse mode
        (``.backward()``, :func:`torch.autograd.grad`) with this op.
        ``torch.func.vmap`` runs it.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1 and section 3.1; the numerics are
    :func:`bnproof.kernels.batch_norm_forward` and
    :func:`~bnproof.kernels.batch_norm_backward`. The running buffers are
    updated in place (``Tensor.copy_`` of the kernel's update, which the op
    returns: an op with an autograd formula may not mutate its inputs).
    The op is registered as
    ``bnproof::batch_norm_forward`` (and ``bnproof::batch_norm_backward``)
    with ``torch.library``: autograd differentiates it with the kernels'
    closed-form backward, and ``torch.compile`` treats it as one opaque call
    (its fake function gives the output's shape and strides). In eager mode
    on plain CPU tensors the op's own body and backward run through a
    :class:`torch.autograd.Function` instead, which skips the op's dispatch
    (about 0.13 ms a call) and gives the same bits; compiling, tracing
    (dispatch modes) and tensor subclasses call the registered op.

    Tensors on another device than the CPU (CUDA, MPS, meta) and dtypes
    other than float32/float64 (bfloat16, float16) run PyTorch's own
    :func:`torch.nn.functional.batch_norm` instead, with a one-time
    ``RuntimeWarning``: a converted model keeps working after ``.cuda()`` or
    under autocast, with PyTorch's numerics.
    """
    tensors = (input, running_mean, running_var, weight, bias)
    names = ("input", "running_mean", "running_var", "weight", "bias")
    for name, t in zip(names, tensors, strict=True):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__} "
                            f"(convert with torch.as_tensor({name}))")
    if input is None:
        raise TypeError("input must be a torch.Tensor, got None")
    if input.dim() < 2 and input.numel() == 0:
        # no (N, C) layout, nothing to normalize: PyTorch's empty-input shortcut
        # (a new tensor, so that the gradient chain is kept)
        y = input.clone()
        if weight is not None:
            y = y * weight[0]
        if bias is not None:
            y = y + bias[0]
        return y
    reason = _fallback_reason(tensors)
    if reason is not None:
        where = f"{input.device.type} tensors" if reason == "device" else "dtypes other " \
            "than float32 and float64"
        _warn_once(reason, f"bnproof.torch runs on the CPU in float32 and float64; for {where} "
                           "it uses torch.nn.functional.batch_norm (PyTorch's numerics)")
        return torch.nn.functional.batch_norm(input, running_mean, running_var, weight, bias,
                                              training, momentum, eps)
    if isinstance(momentum, bool) or not isinstance(momentum, int | float):
        raise TypeError(f"momentum must be a float, got {momentum!r} (e.g. 0.1)")
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise TypeError(f"eps must be a float, got {eps!r} (e.g. 1e-5)")
    _check_arguments(input, zip(names[1:], tensors[1:], strict=True))
    training = bool(training)
    if _eager(tensors):
        op = _EagerBatchNorm.apply
    else:
        _refuse_tangents(tensors)
        op = _under_func(tensors) or _forward_op
    y, _, _, new_mean, new_var = op(input, weight, bias, running_mean, running_var,
                                    training, float(momentum), float(eps))
    if _updates(training, running_mean):
        with torch.no_grad(), _outside_func(op is _constant_forward):
            running_mean.copy_(new_mean)
            running_var.copy_(new_var)
    return y
