"""PyTorch's own test samples through bnproof.torch, compared with PyTorch's results.

The OpInfo entries of ``nn.functional.batch_norm`` (``op_db``) and the
BatchNorm module inputs (``module_db``) for the CPU in float32 and float64:
outputs, running buffers (and ``num_batches_tracked``) and the gradients of
every input that requires one must agree with PyTorch's.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch.testing._internal imports it

import bnproof.torch as bt  # noqa: E402

F = torch.nn.functional

#: float64: both compute in float64 with different summation orders.
TOL64 = dict(rtol=1e-10, atol=1e-12)
#: float32: PyTorch evaluates the output in float32 (about 1e-6 relative),
#: bnproof in float64 rounded once.
TOL32 = dict(rtol=1e-5, atol=1e-5)

#: Samples the bridge still rejects, with the reason: (op or module, description).
#: Empty: every sample PyTorch accepts on the CPU in float32/float64 runs.
REJECTED: dict[tuple[str, str], str] = {}


def _tol(dtype):
    return TOL64 if dtype == torch.float64 else TOL32


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    return value


def _op_samples():
    from torch.testing._internal.common_methods_invocations import op_db

    for op in op_db:
        if op.name != "nn.functional.batch_norm":
            continue
        for dtype in (torch.float32, torch.float64):
            for i, sample in enumerate(op.sample_inputs("cpu", dtype, requires_grad=True)):
                yield f"{op.variant_test_name or 'default'}-{dtype}-{i}", dtype, sample


def _leaves(args):
    return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]


def _run(fn, sample):
    inp = _clone(sample.input)
    args = [_clone(a) for a in sample.args]
    kwargs = {k: _clone(v) for k, v in sample.kwargs.items()}
    y = fn(inp, *args, **kwargs)
    leaves = _leaves([inp, *args])
    grads = []
    if leaves and y.requires_grad:
        gen = torch.Generator().manual_seed(7)
        g = torch.randn(y.shape, generator=gen, dtype=y.dtype)
        grads = torch.autograd.grad(y, leaves, g, allow_unused=True)
    return y, [a for a in args if isinstance(a, torch.Tensor)], grads


def _compare(name, dtype, sample, fn):
    """Run ``sample`` through ``fn`` and PyTorch; assert outputs, buffers and grads agree."""
    want_y, want_args, want_grads = _run(F.batch_norm, sample)
    y, args, grads = _run(fn, sample)
    tol = _tol(dtype)
    torch.testing.assert_close(y, want_y, **tol, msg=lambda m: f"{name}: output {m}")
    for a, b in zip(args, want_args, strict=True):  # running buffers, weight, bias
        torch.testing.assert_close(a, b, **tol, equal_nan=True,
                                   msg=lambda m: f"{name}: buffers {m}")
    assert len(grads) == len(want_grads), name
    for a, b in zip(grads, want_grads, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: grad {m}")


@pytest.mark.slow
def test_functional_op_info_samples_match_pytorch():
    ran, rejected = 0, {}
    for name, dtype, sample in _op_samples():
        try:
            _compare(name, dtype, sample, bt.batch_norm)
        except (ValueError, TypeError, RuntimeError) as exc:
            rejected[("nn.functional.batch_norm", name)] = str(exc)
            continue
        ran += 1
    assert set(rejected) == set(REJECTED), rejected
    assert ran >= 40, ran  # op_db had 48 CPU float32/float64 samples with torch 2.13


def test_functional_op_info_samples_in_half_precision_run_pytorchs_op():
    # float16 and bfloat16 are not the kernels' dtypes: the bridge hands every
    # such sample to PyTorch's own op (one warning), so results are identical
    import warnings

    from torch.testing._internal.common_methods_invocations import op_db

    ran = 0
    for op in op_db:
        if op.name != "nn.functional.batch_norm" or op.variant_test_name:
            continue
        for dtype in (torch.float16, torch.bfloat16):
            for sample in op.sample_inputs("cpu", dtype, requires_grad=True):
                want_y, want_args, want_grads = _run(F.batch_norm, sample)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # the one-time notice
                    y, args, grads = _run(bt.batch_norm, sample)
                torch.testing.assert_close(y, want_y, rtol=0, atol=0)
                for a, b in zip([*args, *grads], [*want_args, *want_grads], strict=True):
                    if a is None or b is None:
                        assert a is None and b is None
                    else:
                        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
                ran += 1
    assert ran >= 20, ran  # op_db had 24 CPU float16/bfloat16 samples with torch 2.13


@pytest.mark.parametrize("change", ["momentum", "eps"])
def test_comparison_catches_a_wrong_bridge(change):
    # negative control: a bridge off in momentum (buffers) or eps (outputs)
    # must fail the comparison on the samples that use them
    def wrong(input, running_mean, running_var, weight=None, bias=None, training=False,
              momentum=0.1, eps=1e-5):
        if change == "momentum":
            momentum = momentum * 0.5
        else:
            eps = eps * 2
        return bt.batch_norm(input, running_mean, running_var, weight, bias, training,
                             momentum, eps)

    name, dtype, sample = next((n, d, s) for n, d, s in _op_samples()
                               if s.kwargs.get("training") and s.args[0] is not None
                               and s.input.numel() > 0)
    with pytest.raises(AssertionError):
        _compare(name, dtype, sample, wrong)
    _compare(name, dtype, sample, bt.batch_norm)  # and the real one passes


def _module_samples():
    from torch.testing._internal.common_modules import module_db

    for info in module_db:
        if info.module_cls not in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d,
                                   torch.nn.BatchNorm3d):
            continue
        for dtype in (torch.float32, torch.float64):
            for training in (True, False):
                inputs = info.module_inputs_func(info, device="cpu", dtype=dtype,
                                                 requires_grad=True, training=training)
                for i, mi in enumerate(inputs):
                    name = f"{info.module_cls.__name__}-{dtype}-{training}-{i}-{mi.desc}"
                    yield name, dtype, training, info.module_cls, mi


@pytest.mark.slow
def test_module_info_samples_match_pytorch():
    ran = 0
    for name, dtype, training, cls, mi in _module_samples():
        torch.manual_seed(0)
        ref = cls(*mi.constructor_input.args, **mi.constructor_input.kwargs).to(dtype)
        ref.train(training)
        ours = bt.convert(copy.deepcopy(ref))
        assert type(ours) is not cls and isinstance(ours, cls), name
        outputs = []
        for module in (ref, ours):
            x = _clone(mi.forward_input.args[0])
            ys = [module(x) for _ in range(2)]  # twice: momentum=None averages
            loss = sum((y * torch.arange(y.numel(), dtype=dtype).reshape(y.shape)).sum()
                       for y in ys)
            leaves = [x, *[p for p in module.parameters() if p.requires_grad]]
            grads = torch.autograd.grad(loss, leaves) if loss.requires_grad else []
            outputs.append((ys, module.state_dict(), grads))
        tol = _tol(dtype)
        (ys_ref, sd_ref, g_ref), (ys, sd, g) = outputs
        for a, b in zip(ys, ys_ref, strict=True):
            torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: output {m}")
        assert sd.keys() == sd_ref.keys(), name
        for key in sd:
            torch.testing.assert_close(sd[key], sd_ref[key], **tol,
                                       msg=lambda m, n=name, k=key: f"{n}: {k} {m}")
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: grad {m}")
        ran += 1
    assert ran >= 80, ran  # module_db gave 92 CPU float32/float64 inputs with torch 2.13
