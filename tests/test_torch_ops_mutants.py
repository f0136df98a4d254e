"""bnproof.torch's op, literally: the op's outputs, its fake functions, the routes, the refusals.

Small cases whose expected values are worked out by hand in the comments, so
that a changed constant, comparison or argument in ``bnproof/torch/_ops.py``
fails a test (``benchmarks/mutation.py ops``).
"""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bnproof.torch as bt  # noqa: E402
from bnproof import kernels  # noqa: E402
from bnproof.torch import _ops  # noqa: E402

F = torch.nn.functional
D = torch.float64


def _layouts():
    """(N, C) contiguous, (N, C, L) stored channels-last, (N, C, H, W) channels_last."""
    gen = torch.Generator().manual_seed(5)
    plain = torch.randn(6, 3, generator=gen, dtype=D)
    last3 = torch.randn(4, 5, 3, generator=gen, dtype=D).movedim(-1, 1)  # (4, 3, 5)
    last4 = torch.randn(2, 3, 4, 4, generator=gen, dtype=D).contiguous(
        memory_format=torch.channels_last)
    return [plain, last3, last4]


def _meta(t):
    """Shape, strides (of a non-empty tensor: an empty one has no layout) and dtype."""
    return (tuple(t.shape), t.stride() if t.numel() else None, t.dtype)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("buffers", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_fake_functions_give_the_real_shapes_strides_and_dtypes(training, buffers, affine):
    for x in _layouts():
        c = x.shape[1]
        w = torch.linspace(0.5, 1.5, c, dtype=D) if affine else None
        b = torch.linspace(-1.0, 1.0, c, dtype=D) if affine else None
        rm = torch.zeros(c, dtype=D) if buffers else None
        rv = torch.ones(c, dtype=D) if buffers else None
        if not training and not buffers:
            continue  # inference needs the running buffers
        args = (x, w, b, rm, rv, training, 0.1, 1e-5)
        real = _ops._forward_impl(*args)
        fake = _ops._forward_fake(*args)
        assert [_meta(t) for t in fake] == [_meta(t) for t in real]
        # the statistics are float64 (C,), the new buffers (C,) only when updated
        stats = c if training and buffers else 0
        assert [tuple(t.shape) for t in real[1:]] == [(c,), (c,), (stats,), (stats,)]
        assert real[1].dtype == real[2].dtype == D
        assert real[0].stride() == x.stride()  # the input's layout, kept
        g = torch.ones_like(x)
        back = (g, x, w, real[1], real[2], training)
        real_back = _ops._backward_impl(*back)
        fake_back = _ops._backward_fake(*back)
        assert [_meta(t) for t in fake_back] == [_meta(t) for t in real_back]
        assert [tuple(t.shape) for t in real_back[1:]] == [(c if affine else 0,), (c,)]


def test_the_op_is_functional_and_returns_the_new_buffers():
    # one channel, values 1 and 3: mean 2, biased variance 1, unbiased 2
    x = torch.tensor([[1.0], [3.0]], dtype=D)
    rm, rv = torch.tensor([4.0], dtype=D), torch.tensor([6.0], dtype=D)
    y, mean, invstd, new_mean, new_var = _ops._forward_impl(
        x, None, None, rm, rv, True, 0.5, 0.0)
    assert torch.equal(y, torch.tensor([[-1.0], [1.0]], dtype=D))  # (x - 2) / 1
    assert torch.equal(mean, torch.tensor([2.0], dtype=D))
    assert torch.equal(invstd, torch.tensor([1.0], dtype=D))
    # 0.5 * 4 + 0.5 * 2 and 0.5 * 6 + 0.5 * 2 (the unbiased variance)
    assert torch.equal(new_mean, torch.tensor([3.0], dtype=D))
    assert torch.equal(new_var, torch.tensor([4.0], dtype=D))
    assert torch.equal(rm, torch.tensor([4.0], dtype=D))  # inputs untouched
    assert torch.equal(rv, torch.tensor([6.0], dtype=D))
    # inference: (x - 4) / sqrt(6 + 3) * 2 + 1, no new buffers
    w, b = torch.tensor([2.0], dtype=D), torch.tensor([1.0], dtype=D)
    y, *_, new_mean, new_var = _ops._forward_impl(x, w, b, rm, rv, False, 0.5, 3.0)
    torch.testing.assert_close(y, torch.tensor([[-1.0], [1.0 / 3.0]], dtype=D), rtol=1e-15,
                               atol=1e-15)
    assert new_mean.shape == (0,) and new_var.shape == (0,)


def test_the_backward_op_literally():
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=D)
    mean = torch.tensor([2.0, 2.0], dtype=D)
    invstd = torch.tensor([0.5, 0.25], dtype=D)
    g = torch.tensor([[1.0, 2.0], [5.0, 7.0]], dtype=D)
    w = torch.tensor([3.0, -1.0], dtype=D)
    # inference: dx = g * w * invstd, dweight = sum g * xhat, dbias = sum g
    dx, dw, db = _ops._backward_impl(g, x, w, mean, invstd, False)
    assert torch.equal(dx, torch.tensor([[1.5, -0.5], [7.5, -1.75]], dtype=D))
    # xhat = [[-0.5, -0.5], [0.5, 0.5]]
    assert torch.equal(dw, torch.tensor([2.0, 2.5], dtype=D))
    assert torch.equal(db, torch.tensor([6.0, 9.0], dtype=D))
    # no weight: an empty dweight in the input's dtype, dbias all the same
    x32, g32 = x.float(), g.float()
    dx, dw, db = _ops._backward_impl(g32, x32, None, mean, invstd, False)
    assert dw.shape == (0,) and dw.dtype == torch.float32
    assert torch.equal(db, torch.tensor([6.0, 9.0]))
    assert torch.equal(dx, torch.tensor([[0.5, 0.5], [2.5, 1.75]]))


def test_channels_last_3d_input_is_read_in_place_and_keeps_its_layout(monkeypatch):
    x = torch.randn(4, 5, 3, dtype=D).movedim(-1, 1)  # (4, 3, 5), channel stride 1
    seen = {}
    real = kernels.batch_norm_forward

    def spy(arr, *args, **kwargs):
        seen["shares"] = np.shares_memory(arr, x.numpy())
        seen["axis"] = kwargs["channel_axis"]
        return real(arr, *args, **kwargs)

    monkeypatch.setattr(kernels, "batch_norm_forward", spy)
    y = bt.batch_norm(x, None, None, training=True)
    assert seen == {"shares": True, "axis": -1}
    assert y.stride() == x.stride() == (15, 1, 3)
    torch.testing.assert_close(y, F.batch_norm(x.contiguous(), None, None, training=True),
                               rtol=1e-12, atol=1e-12)


def test_a_transposed_2d_input_is_not_channels_last():
    x = torch.randn(3, 6, dtype=D).t()  # (6, 3), not contiguous
    assert not _ops._channels_last(x)
    y = bt.batch_norm(x, None, None, training=True)
    assert y.is_contiguous()
    torch.testing.assert_close(y, F.batch_norm(x, None, None, training=True),
                               rtol=1e-12, atol=1e-12)


def _forbid(monkeypatch, name, owner=_ops):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} must not run here")

    monkeypatch.setattr(owner, name, refuse)


def test_plain_tensors_and_parameters_take_the_eager_route(monkeypatch):
    # the documented shortcut: no torch.library dispatch, forward or backward
    _forbid(monkeypatch, "_forward_op")
    _forbid(monkeypatch, "_backward_op")
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    w = torch.nn.Parameter(torch.ones(3, dtype=D))
    b = torch.nn.Parameter(torch.zeros(3, dtype=D))
    y = bt.batch_norm(x, None, None, w, b, training=True)
    y.backward(torch.ones_like(y))
    # a constant upstream gradient: dx = 0 in training, dbias = N, dweight = sum xhat = 0
    torch.testing.assert_close(x.grad, torch.zeros(6, 3, dtype=D), rtol=0, atol=1e-12)
    assert torch.equal(b.grad, torch.full((3,), 6.0, dtype=D))
    torch.testing.assert_close(w.grad, torch.zeros(3, dtype=D), rtol=0, atol=1e-12)


class _Subclass(torch.Tensor):
    pass


def test_subclasses_and_dispatch_modes_take_the_registered_op(monkeypatch):
    _forbid(monkeypatch, "apply", _ops._EagerBatchNorm)
    x = torch.randn(6, 3, dtype=D)
    sub = x.as_subclass(_Subclass)
    torch.testing.assert_close(bt.batch_norm(sub, None, None, training=True).as_subclass(
        torch.Tensor), F.batch_norm(x, None, None, training=True), rtol=1e-12, atol=1e-12)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Record() as mode:
        bt.batch_norm(x, None, None, training=True)
    assert any("bnproof.batch_norm_forward" in op for op in mode.ops), mode.ops


def test_the_registered_op_without_weight_and_bias(monkeypatch):
    monkeypatch.setattr(_ops, "_eager", lambda tensors: False)
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    g = torch.randn(6, 3, dtype=D)
    bt.batch_norm(x, None, None, training=True).backward(g)
    ref = x.detach().clone().requires_grad_()
    F.batch_norm(ref, None, None, training=True).backward(g)
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-10, atol=1e-12)
    # inference through the op: dx = g * invstd = g / sqrt(4 + 0) = g / 2
    x.grad = None
    rm, rv = torch.zeros(3, dtype=D), torch.full((3,), 4.0, dtype=D)
    bt.batch_norm(x, rm, rv, training=False, eps=0.0).backward(g)
    assert torch.equal(x.grad, g / 2)


def test_plain_backward_inside_no_grad_uses_the_kernel_directly(monkeypatch):
    # the eager backward takes the registered op only when a graph of the
    # backward is asked for (create_graph=True)
    _forbid(monkeypatch, "_backward_op")
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    (dx,) = torch.autograd.grad(bt.batch_norm(x, None, None, training=True).sum(), x)
    torch.testing.assert_close(dx, torch.zeros(6, 3, dtype=D), rtol=0, atol=1e-12)


def test_fallback_warns_once_per_reason_with_where(monkeypatch):
    monkeypatch.setattr(_ops, "_warned", set())
    x = torch.randn(4, 3, dtype=torch.float16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bt.batch_norm(x, None, None, training=True)
        bt.batch_norm(x, None, None, training=True)
        bt.batch_norm(torch.empty(4, 3, device="meta"), None, None, training=True)
    assert [str(w.message) for w in caught] == [
        "bnproof.torch runs on the CPU in float32 and float64; for dtypes other than "
        "float32 and float64 it uses torch.nn.functional.batch_norm (PyTorch's numerics)",
        "bnproof.torch runs on the CPU in float32 and float64; for meta tensors it uses "
        "torch.nn.functional.batch_norm (PyTorch's numerics)",
    ]
    assert all(w.category is RuntimeWarning for w in caught)


def test_a_float16_weight_after_missing_buffers_falls_back(monkeypatch):
    # every tensor is looked at, past the missing running buffers: PyTorch's
    # op runs (and refuses the mixed dtypes in its own words)
    monkeypatch.setattr(_ops, "_warned", set())
    with pytest.warns(RuntimeWarning, match="dtypes other than"):
        with pytest.raises(RuntimeError, match="mixed dtype"):
            bt.batch_norm(torch.randn(4, 3), None, None, torch.ones(3, dtype=torch.float16),
                          None, training=True)


def test_momentum_and_eps_types():
    x = torch.tensor([[1.0], [3.0]], dtype=D)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match="momentum must be a float"):
            bt.batch_norm(x, None, None, training=True, momentum=bad)
        with pytest.raises(TypeError, match="eps must be a float"):
            bt.batch_norm(x, None, None, training=True, eps=bad)
    # ints are numbers: momentum 1 takes the batch's statistics, eps 0 adds nothing
    rm, rv = torch.zeros(1, dtype=D), torch.ones(1, dtype=D)
    y = bt.batch_norm(x, rm, rv, training=1, momentum=1, eps=0)
    assert torch.equal(y, torch.tensor([[-1.0], [1.0]], dtype=D))
    assert torch.equal(rm, torch.tensor([2.0], dtype=D))  # mean of 1 and 3
    assert torch.equal(rv, torch.tensor([2.0], dtype=D))  # unbiased variance


def test_refusals_name_the_value_and_the_fix():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"^weight has shape \(2,\) but input \(4, 3\) has 3 "
                                         r"channels; pass weight of shape \(3,\)$"):
        bt.batch_norm(x, None, None, torch.ones(2), training=True)
    with pytest.raises(TypeError, match=r"^bias has dtype torch.float64 but input has dtype "
                                        r"torch.float32; pass them in one dtype, as PyTorch's "
                                        r"CPU batch norm needs too \(e.g. "
                                        r"bias.to\(input.dtype\)\)$"):
        bt.batch_norm(x, None, None, None, torch.ones(3, dtype=D), training=True)
    with pytest.raises(ValueError, match=r"^input has shape \(5,\); batch norm needs \(N, C\) "
                                         r"or \(N, C, \*spatial\) \(add a batch axis, e.g. "
                                         r"input.unsqueeze\(0\)\)$"):
        bt.batch_norm(torch.ones(5), None, None, torch.ones(1), torch.ones(1), training=True)
    with pytest.raises(TypeError, match=r"^running_var must be a torch.Tensor or None, got "
                                        r"list \(convert with torch.as_tensor\(running_var\)\)$"):
        bt.batch_norm(x, None, [1.0, 1.0, 1.0], training=True)
    with pytest.raises(TypeError, match="^input must be a torch.Tensor, got None$"):
        bt.batch_norm(None, None, None, training=True)


def test_an_empty_1d_input_returns_an_empty_tensor_in_the_graph():
    x = torch.empty(0, requires_grad=True)
    w = torch.tensor([2.0], requires_grad=True)
    b = torch.tensor([1.0], requires_grad=True)
    y = bt.batch_norm(x, None, None, w, b, training=True)
    assert y.shape == (0,) and y is not x and y.grad_fn is not None
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros(1)) and torch.equal(b.grad, torch.zeros(1))
    # without weight and bias: a new tensor too
    y = bt.batch_norm(x, None, None, training=True)
    assert y.shape == (0,) and y is not x


def test_an_empty_2d_batch_in_inference_is_empty():
    # (0, 3): the kernels' empty batch (not the 1-d shortcut), buffers kept
    rm, rv = torch.arange(3.0), torch.ones(3)
    y = bt.batch_norm(torch.empty(0, 3), rm, rv, torch.ones(3), torch.ones(3), training=False)
    assert y.shape == (0, 3)
    assert torch.equal(rm, torch.arange(3.0)) and torch.equal(rv, torch.ones(3))


def test_running_buffers_are_updated_with_mean_and_unbiased_variance():
    # two channels; momentum 0.25: new = 0.75 old + 0.25 batch
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]], dtype=D)
    rm, rv = torch.tensor([1.0, 2.0], dtype=D), torch.tensor([4.0, 8.0], dtype=D)
    y = bt.batch_norm(x, rm, rv, training=True, momentum=0.25, eps=0.0)
    # means 3 and 12; unbiased variances 4 and 12; biased 8/3 and 8
    torch.testing.assert_close(rm, torch.tensor([1.5, 4.5], dtype=D), rtol=1e-15, atol=0)
    torch.testing.assert_close(rv, torch.tensor([4.0, 9.0], dtype=D), rtol=1e-15, atol=0)
    s = math.sqrt(8.0 / 3.0)
    torch.testing.assert_close(
        y, torch.tensor([[-2 / s, -2 / math.sqrt(8)], [0.0, -2 / math.sqrt(8)],
                         [2 / s, 4 / math.sqrt(8)]], dtype=D), rtol=1e-14, atol=1e-15)


def test_channels_last_means_stored_channels_last_only():
    # contiguous tensors whose (N, *spatial, C) view is contiguous too (size-1
    # axes) are channels-first: read as they are, channel axis 1
    assert not _ops._channels_last(torch.zeros(4, 3))
    assert not _ops._channels_last(torch.zeros(4, 3, 1, 1))
    assert not _ops._channels_last(torch.zeros(4, 1, 3, 3))
    assert not _ops._channels_last(torch.zeros(4, 3, 5).transpose(0, 2))  # neither
    assert _ops._channels_last(torch.zeros(4, 3, 5, 5).contiguous(
        memory_format=torch.channels_last))


def test_defaults_are_inference_momentum_0_1_and_eps_1e_5():
    x = torch.tensor([[1.0], [3.0]], dtype=D)
    rm, rv = torch.tensor([1.0], dtype=D), torch.tensor([4.0], dtype=D)
    y = bt.batch_norm(x, rm, rv)  # inference: (x - 1) / sqrt(4 + 1e-5)
    torch.testing.assert_close(y, torch.tensor([[0.0], [2.0]], dtype=D) / math.sqrt(4 + 1e-5),
                               rtol=1e-15, atol=0)
    assert rm.tolist() == [1.0] and rv.tolist() == [4.0]
    bt.batch_norm(x, rm, rv, training=True)  # 0.9 * 1 + 0.1 * 2, 0.9 * 4 + 0.1 * 2
    torch.testing.assert_close(rm, torch.tensor([1.1], dtype=D), rtol=1e-15, atol=0)
    torch.testing.assert_close(rv, torch.tensor([3.8], dtype=D), rtol=1e-15, atol=0)


def test_the_fallback_passes_every_argument_on(monkeypatch):
    monkeypatch.setattr(_ops, "_warned", set())
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(6, 3, generator=gen) * 2 + 1).to(torch.bfloat16)
    w, b = torch.linspace(0.5, 2.0, 3), torch.linspace(-1.0, 1.0, 3)
    args = [t.to(torch.bfloat16) for t in (w, b)]
    ours = [torch.zeros(3, dtype=torch.bfloat16), torch.ones(3, dtype=torch.bfloat16)]
    theirs = [t.clone() for t in ours]
    with pytest.warns(RuntimeWarning):
        y = bt.batch_norm(x, *ours, *args, training=True, momentum=0.5, eps=0.25)
    want = F.batch_norm(x, *theirs, *args, training=True, momentum=0.5, eps=0.25)
    assert torch.equal(y, want)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert not torch.equal(ours[0], torch.zeros(3, dtype=torch.bfloat16))  # updated


def test_the_statistics_outputs_are_not_differentiable():
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    w = torch.ones(3, dtype=D, requires_grad=True)
    rm, rv = torch.zeros(3, dtype=D), torch.ones(3, dtype=D)
    for op in (_ops._forward_op, _ops._EagerBatchNorm.apply):
        out = op(x, w, None, rm, rv, True, 0.1, 1e-5)
        assert out[0].requires_grad
        assert [t.requires_grad for t in out[1:]] == [False] * 4


def test_first_derivatives_with_create_graph_are_the_plain_ones():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(6, 3, generator=gen, dtype=D, requires_grad=True)
    w = torch.linspace(0.5, 2.0, 3, dtype=D).requires_grad_()
    b = torch.linspace(-1.0, 1.0, 3, dtype=D).requires_grad_()
    g = torch.randn(6, 3, generator=gen, dtype=D)
    for training in (True, False):
        rm, rv = torch.zeros(3, dtype=D), torch.full((3,), 2.0, dtype=D)
        y = bt.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training)
        graph = torch.autograd.grad(y, (x, w, b), g, create_graph=True)
        y = bt.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training)
        plain = torch.autograd.grad(y, (x, w, b), g)
        for a, c in zip(graph, plain, strict=True):
            assert torch.equal(a, c)


def test_double_backward_message_literally():
    x = torch.randn(6, 3, dtype=D, requires_grad=True)
    (gx,) = torch.autograd.grad((bt.batch_norm(x, None, None, training=True) ** 3).sum(), x,
                                create_graph=True)
    with pytest.raises(RuntimeError) as info:
        gx.sum().backward()
    assert ("bnproof.torch.batch_norm has no second derivative (its backward is one kernel); "
            "for double backward (gradient penalties, Hessian-vector products) use "
            "torch.nn.functional.batch_norm or PyTorch's nn.BatchNorm modules") in str(info.value)


def test_an_empty_2d_batch_is_still_checked():
    # (0, 3) is an (N, C) batch: its arguments are checked as any other's
    with pytest.raises(ValueError, match=r"^weight has shape \(2,\)"):
        bt.batch_norm(torch.empty(0, 3), None, None, torch.ones(2), training=True)
    with pytest.raises(TypeError, match="^momentum must be a float"):
        bt.batch_norm(torch.empty(0, 3), None, None, training=True, momentum="fast")
