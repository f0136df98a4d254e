"""bnproof.torch: the custom op, its autograd formula, the modules and convert."""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bnproof.torch as bt  # noqa: E402
from bnproof import kernels  # noqa: E402
from bnproof.torch import _ops  # noqa: E402

F = torch.nn.functional
nn = torch.nn

#: float64 agreement with PyTorch: different summation orders only.
TOL64 = dict(rtol=1e-10, atol=1e-12)
#: float32: PyTorch's output is evaluated in float32 (about 1e-6 relative).
TOL32 = dict(rtol=1e-5, atol=2e-5)


def _tol(dtype):
    return TOL64 if dtype == torch.float64 else TOL32


def _both(shape, dtype, memory_format=torch.contiguous_format, affine=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = (torch.randn(shape, generator=gen, dtype=dtype) * 2 + 3).contiguous(
        memory_format=memory_format)
    w = torch.randn(c, generator=gen, dtype=dtype) if affine else None
    b = torch.randn(c, generator=gen, dtype=dtype) if affine else None
    rm, rv = torch.randn(c, generator=gen, dtype=dtype), torch.rand(c, generator=gen,
                                                                      dtype=dtype) + 0.5
    return x, w, b, rm, rv


def _grad_run(fn, x, w, b, rm, rv, training, g):
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    w = None if w is None else w.clone().requires_grad_(True)
    b = None if b is None else b.clone().requires_grad_(True)
    rm, rv = rm.clone(), rv.clone()
    y = fn(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-4)
    leaves = [t for t in (x, w, b) if t is not None]
    grads = torch.autograd.grad(y, leaves, g)
    return y, rm, rv, grads


LAYOUTS = [((16, 5), torch.contiguous_format), ((4, 3, 5, 6), torch.contiguous_format),
           ((4, 3, 5, 6), torch.channels_last), ((2, 3, 4, 5, 6), torch.channels_last_3d),
           ((4, 20, 33, 34), torch.channels_last), ((4, 3, 7), torch.contiguous_format)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "fmt"), LAYOUTS)
def test_batch_norm_matches_pytorch(shape, fmt, dtype, training):
    x, w, b, rm, rv = _both(shape, dtype, fmt)
    g = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    want = _grad_run(F.batch_norm, x, w, b, rm, rv, training, g)
    got = _grad_run(bt.batch_norm, x, w, b, rm, rv, training, g)
    tol = _tol(dtype)
    for a, c in zip(got[:3], want[:3], strict=True):
        torch.testing.assert_close(a, c, **tol)
    for a, c in zip(got[3], want[3], strict=True):
        torch.testing.assert_close(a, c, **tol)
    # channels-last in, channels-last out (as PyTorch's CPU kernel)
    assert got[0].is_contiguous(memory_format=fmt)


def test_bias_without_weight_gets_its_gradient():
    x, _, b, rm, rv = _both((8, 3, 4), torch.float64)
    g = torch.randn(8, 3, 4, dtype=torch.float64)
    for training in (True, False):
        want = _grad_run(F.batch_norm, x, None, b, rm, rv, training, g)
        got = _grad_run(bt.batch_norm, x, None, b, rm, rv, training, g)
        for a, c in zip(got[3], want[3], strict=True):
            torch.testing.assert_close(a, c, **TOL64)


def test_channels_last_reaches_the_kernels_without_a_copy(monkeypatch):
    x, w, b, rm, rv = _both((4, 8, 6, 6), torch.float32, torch.channels_last)
    seen = {}
    real = kernels.batch_norm_forward

    def spy(arr, *args, **kwargs):
        seen["shares"] = np.shares_memory(arr, x.detach().numpy())
        seen["contiguous"] = arr.flags.c_contiguous
        seen["axis"] = kwargs["channel_axis"]
        return real(arr, *args, **kwargs)

    monkeypatch.setattr(kernels, "batch_norm_forward", spy)
    y = bt.batch_norm(x, rm, rv, w, b, training=True)
    assert seen == {"shares": True, "contiguous": True, "axis": -1}
    assert y.is_contiguous(memory_format=torch.channels_last)
    seen.clear()
    bt.batch_norm(x.contiguous(), rm, rv, w, b, training=True)
    assert seen["axis"] == 1 and seen["shares"] is False  # another tensor: a new buffer


def test_running_buffers_are_updated_in_place():
    x, w, b, rm, rv = _both((8, 3), torch.float32)
    ptr_mean, ptr_var = rm.data_ptr(), rv.data_ptr()
    before = rm.clone()
    bt.batch_norm(x, rm, rv, w, b, training=True, momentum=0.5)
    assert rm.data_ptr() == ptr_mean and rv.data_ptr() == ptr_var
    torch.testing.assert_close(rm, 0.5 * before + 0.5 * x.mean(0))


def test_empty_batch_keeps_buffers_and_gives_zero_gradients():
    x = torch.empty(0, 3, 4, requires_grad=True)
    w = torch.ones(3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    rm, rv = torch.arange(3.0), torch.ones(3)
    y = bt.batch_norm(x, rm, rv, w, b, training=True)
    assert y.shape == (0, 3, 4)
    y.sum().backward()
    torch.testing.assert_close(rm, torch.arange(3.0))
    assert torch.equal(w.grad, torch.zeros(3)) and torch.equal(b.grad, torch.zeros(3))


def test_one_value_per_channel_is_pytorch_error():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        bt.batch_norm(torch.ones(1, 3), None, None, training=True)


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        bt.batch_norm(np.ones((4, 3)), None, None, training=True)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        bt.batch_norm(torch.ones(4, 3), None, None, weight=[1.0, 1.0, 1.0], training=True)
    with pytest.raises(TypeError, match="input has dtype torch.float32"):  # mixed dtypes
        bt.batch_norm(torch.ones(4, 3), None, None, weight=torch.ones(3, dtype=torch.float64),
                      training=True)
    with pytest.raises(ValueError, match=r"running_mean has shape \(2,\) but input"):
        bt.batch_norm(torch.randn(4, 3), torch.zeros(2), torch.ones(2), training=True)
    with pytest.raises(ValueError, match="needs \\(N, C\\)"):
        bt.batch_norm(torch.randn(3), torch.zeros(3), torch.ones(3))
    rm, rv = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="weight has shape"):
        bt.batch_norm(torch.randn(4, 3), rm, rv, weight=torch.ones(2), training=True)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


def test_double_backward_names_the_alternative():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = bt.batch_norm(x, None, None, training=True)
    (gx,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="torch.nn.functional.batch_norm"):
        gx.sum().backward()


def test_other_dtypes_and_devices_fall_back_to_pytorch_with_one_warning(monkeypatch):
    monkeypatch.setattr(_ops, "_warned", set())
    x = torch.randn(8, 3, dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="dtypes other than float32 and float64"):
        y = bt.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(y, F.batch_norm(x, None, None, training=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bt.batch_norm(x, None, None, training=True)  # once per process
    meta = torch.empty(8, 3, device="meta")
    with pytest.warns(RuntimeWarning, match="meta tensors"):
        assert bt.batch_norm(meta, None, None, training=True).device.type == "meta"


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False])
def test_opcheck(training):
    # torch.library's own checks: schema, fake function, autograd registration
    x, w, b, rm, rv = _both((4, 3, 5, 5), torch.float64)
    op = torch.ops.bnproof.batch_norm_forward.default
    torch.library.opcheck(op, (x.requires_grad_(), w, b, rm, rv, training, 0.1, 1e-5))
    xc, _, _, rm32, rv32 = _both((4, 3, 5, 5), torch.float32, torch.channels_last)
    torch.library.opcheck(op, (xc, None, None, rm32, rv32, training, 0.1, 1e-5))


# --------------------------------------------------------------------------- #
# modules and convert
# --------------------------------------------------------------------------- #


def _cnn(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, momentum=None)), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 6), nn.BatchNorm1d(6), nn.SyncBatchNorm(6),
    ).to(dtype)


def test_convert_swaps_batch_norm_in_place_sharing_tensors():
    model = _cnn()
    params = {name: p for name, p in model.named_parameters()}
    buffers = {name: p for name, p in model.named_buffers()}
    out = bt.convert(model)
    assert out is model
    assert type(model[1]) is bt.BatchNorm2d and type(model[3][1]) is bt.BatchNorm2d
    assert type(model[6]) is bt.BatchNorm1d
    assert type(model[7]) is nn.SyncBatchNorm  # reduces across processes: left alone
    assert isinstance(model[1], nn.BatchNorm2d) and model[3][1].momentum is None
    for name, p in model.named_parameters():
        assert p is params[name]
    for name, t in model.named_buffers():
        assert t is buffers[name]
    before = copy.deepcopy(model.state_dict())
    assert bt.convert(model) is model  # converting twice changes nothing
    assert type(model[1]) is bt.BatchNorm2d
    assert model.state_dict().keys() == before.keys()


def test_convert_a_bare_module_and_reject_non_modules():
    bn = nn.BatchNorm3d(3, affine=False, track_running_stats=False).double()
    new = bt.convert(bn)
    assert type(new) is bt.BatchNorm3d and type(bn) is nn.BatchNorm3d
    assert new.weight is None and new.running_mean is None
    x = torch.randn(2, 3, 2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(new(x), bn(x), **TOL64)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        bt.convert("model")


def test_subclasses_and_lazy_modules_are_not_converted():
    class Custom(nn.BatchNorm2d):
        pass

    model = nn.Sequential(Custom(3), nn.LazyBatchNorm2d())
    bt.convert(model)
    assert type(model[0]) is Custom and type(model[1]) is nn.LazyBatchNorm2d


def test_modules_state_dict_round_trip_with_pytorch():
    ref = nn.BatchNorm2d(5, momentum=None).double()
    ours = bt.BatchNorm2d(5, momentum=None).double()
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    ref(x)
    ours.load_state_dict(ref.state_dict())
    assert int(ours.num_batches_tracked) == 1
    ref(x + 1)
    ours(x + 1)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, **TOL64)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), **TOL64)


def test_rejected_batch_leaves_the_module_unchanged():
    bn = bt.BatchNorm1d(3)
    state = copy.deepcopy(bn.state_dict())
    with pytest.raises(ValueError, match="Expected more than 1 value"):
        bn(torch.ones(1, 3))
    for key, value in state.items():
        assert torch.equal(bn.state_dict()[key], value), key


def test_compile_treats_the_op_as_opaque():
    model = bt.convert(_cnn()[:7])
    ref = copy.deepcopy(model)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
    with warnings.catch_warnings():
        # momentum=None reads num_batches_tracked as a Python float, which
        # PyTorch's own module does too: a graph break, logged, not an error
        warnings.simplefilter("ignore")
        y = compiled(x)
        y.sum().backward()
    y_ref = ref(x)
    y_ref.sum().backward()
    torch.testing.assert_close(y, y_ref, **TOL64)
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **TOL64, msg=name)
    for (name, t), u in zip(model.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(t, u, **TOL64, msg=name)


def test_compile_graph_keeps_the_custom_op():
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes)
        return gm.forward

    fn = torch.compile(lambda x, rm, rv: bt.batch_norm(x, rm, rv, training=True),
                       backend=backend, fullgraph=True)
    torch._dynamo.reset()
    fn(torch.randn(4, 3), torch.zeros(3), torch.ones(3))
    assert any("bnproof.batch_norm_forward" in s for s in seen), seen


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("os").environ.get("BNPROOF_TEST_INDUCTOR") != "1",
    reason="the inductor backend compiles C++ for about 75 s on a 2-core machine (measured); "
    "aot_eager above covers the op's registration; set BNPROOF_TEST_INDUCTOR=1 to run it",
)
def test_inductor_compiles_around_the_op():
    model = bt.convert(_cnn()[:7])
    ref = copy.deepcopy(model)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # momentum=None: a logged graph break, as in PyTorch
        y = torch.compile(model, backend="inductor")(x)
        y.sum().backward()
    y_ref = ref(x)
    y_ref.sum().backward()
    torch.testing.assert_close(y, y_ref, **TOL64)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **TOL64)


def test_readme_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Inside PyTorch models", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    model, x = namespace["model"], namespace["x"]
    assert type(model[1]) is bt.BatchNorm2d and model[0].weight.grad is not None
    assert namespace["y"].is_contiguous(memory_format=torch.channels_last)
    assert namespace["y"].shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_eager_route_and_the_registered_op_give_the_same_bits(dtype, channels_last,
                                                                  monkeypatch):
    # eager calls skip torch.library's dispatch (_EagerBatchNorm); forcing the
    # op must change nothing: outputs, all three gradients, running buffers
    calls = []
    real = _ops._EagerBatchNorm.apply
    monkeypatch.setattr(_ops._EagerBatchNorm, "apply",
                        lambda *a: calls.append(1) or real(*a))
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 4, 3, 3, generator=gen, dtype=dtype) * 3 + 7
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    g = torch.randn(5, 4, 3, 3, generator=gen, dtype=dtype)
    results = []
    for force_op in (False, True):
        if force_op:
            monkeypatch.setattr(_ops, "_eager", lambda tensors: False)
        x = x0.clone().requires_grad_()
        w = torch.linspace(0.5, 2.0, 4, dtype=dtype).requires_grad_()
        b = torch.linspace(-1.0, 1.0, 4, dtype=dtype).requires_grad_()
        rm, rv = torch.zeros(4, dtype=dtype), torch.ones(4, dtype=dtype)
        y = bt.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
        y.backward(g)
        results.append((y.detach(), x.grad, w.grad, b.grad, rm, rv, y.stride()))
    assert calls == [1]  # the first call took the eager route, the forced one did not
    for eager, op in zip(*results, strict=True):
        if isinstance(eager, tuple):
            assert eager == op
        else:
            assert torch.equal(eager, op)


def test_tracing_records_the_registered_op():
    # under a dispatch mode (make_fx, export's tracer) the eager route must not
    # run NumPy on the traced tensors: the graph calls the op
    from torch.fx.experimental.proxy_tensor import make_fx

    def fn(x, rm, rv):
        return bt.batch_norm(x, rm, rv, training=True)

    gm = make_fx(fn)(torch.randn(4, 3), torch.zeros(3), torch.ones(3))
    targets = [str(n.target) for n in gm.graph.nodes]
    assert any("bnproof.batch_norm_forward" in t for t in targets), targets


def test_fallback_warning_stacklevel_points_at_the_caller(monkeypatch):
    # (not in the mutation run: mutmut's trampolines add frames between the two)
    monkeypatch.setattr(_ops, "_warned", set())
    with pytest.warns(RuntimeWarning, match="dtypes other than") as caught:
        bt.batch_norm(torch.randn(4, 3, dtype=torch.float16), None, None, training=True)
    assert caught[0].filename == __file__
