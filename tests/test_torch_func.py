"""bnproof.torch.batch_norm under torch.func transforms and forward-mode AD.

Reverse mode through autograd is the supported way to differentiate the op.
Under torch.func.grad PyTorch refused the op with a message about
``setup_context``, and under torch.func.jvp it silently returned zero
tangents: both are now refused with a message that names the alternative.
vmap and functionalize run the op; inputs no transform tracks are computed
as constants.
"""

import warnings

import pytest

torch = pytest.importorskip("torch")

import torch.autograd.forward_ad as fwAD  # noqa: E402

import bnproof.torch as bt  # noqa: E402

F = torch.nn.functional

#: PyTorch loads its forward-mode decompositions with torch.jit.script, which warns
JIT_DEPRECATED = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture
def x():
    return torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def bn(a):
    return bt.batch_norm(a, None, None, training=True)


@pytest.mark.parametrize("transform", [
    lambda f, x: torch.func.grad(lambda a: f(a).pow(3).sum())(x),
    lambda f, x: torch.func.jacrev(f)(x),
    lambda f, x: torch.func.vjp(f, x),
], ids=["grad", "jacrev", "vjp"])
def test_reverse_mode_transforms_are_refused_with_the_alternative(x, transform):
    with pytest.raises(RuntimeError, match=r"torch\.func\.grad.*torch\.nn\.functional"):
        transform(bn, x)
    transform(lambda a: F.batch_norm(a, None, None, training=True), x)  # the alternative runs


@pytest.mark.parametrize("transform", [
    lambda f, x: torch.func.jvp(f, (x,), (x,)),
    lambda f, x: torch.func.jacfwd(f)(x),
    lambda f, x: torch.func.hessian(lambda a: f(a).pow(3).sum())(x),
], ids=["jvp", "jacfwd", "hessian"])
@JIT_DEPRECATED
def test_forward_mode_transforms_are_refused_not_zero(x, transform):
    # PyTorch ran the op and dropped the tangents: jvp gave exact zeros
    with pytest.raises(RuntimeError, match=r"no forward-mode derivative.*torch\.nn\.functional"):
        transform(bn, x)


@JIT_DEPRECATED
def test_dual_tensors_are_refused(x):
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match=r"forward_ad.*torch\.nn\.functional"):
            bn(dual)


def test_vmap_and_functionalize_run_the_op(x):
    xs = x.reshape(2, 4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's note that vmap loops over the batch
        got = torch.func.vmap(bn)(xs)
    want = torch.func.vmap(lambda a: F.batch_norm(a, None, None, training=True))(xs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.func.functionalize(bn)(x),
                               F.batch_norm(x, None, None, training=True),
                               rtol=1e-12, atol=1e-12)


def test_inputs_no_transform_tracks_are_constants(x):
    # grad with respect to a weight applied after the batch norm: the batch
    # norm's input is a constant of the transform, and its running buffers
    # are updated as outside it
    w = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    ours_rm, ref_rm = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    ours_rv, ref_rv = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)

    def loss(fn, rm, rv):
        return lambda w: (fn(x, rm, rv, training=True) * w).pow(3).sum()

    got = torch.func.grad(loss(bt.batch_norm, ours_rm, ours_rv))(w)
    want = torch.func.grad(loss(F.batch_norm, ref_rm, ref_rv))(w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got.abs().min() > 0  # not zeros
    torch.testing.assert_close(ours_rm, ref_rm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_rv, ref_rv, rtol=1e-12, atol=1e-12)


def test_reverse_mode_autograd_still_runs(x):
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(bn(a).pow(3).sum(), a)
    (gb,) = torch.autograd.grad(F.batch_norm(b, None, None, training=True).pow(3).sum(), b)
    torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


class _PassThrough(torch.utils._python_dispatch.TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _Sub(torch.Tensor):
    pass


@JIT_DEPRECATED
@pytest.mark.parametrize("route", ["dispatch-mode", "subclass", "compile"])
def test_forward_mode_off_the_eager_route_is_refused_not_zero(x, route):
    # These take the registered op, which PyTorch runs without its autograd
    # formula when no input requires grad: the tangents were dropped silently.
    import torch.autograd.forward_ad as fwAD

    w = torch.rand(3, dtype=torch.float64) + 0.5
    match = r"no forward-mode derivative.*torch\.nn\.functional"
    if route == "compile":
        fn = torch.compile(lambda a: torch.func.jvp(
            lambda b: bt.batch_norm(b, None, None, w, None, True), (a,), (a,)),
            backend="aot_eager")
        with pytest.raises(RuntimeError, match=match):
            fn(x)
        return
    with fwAD.dual_level():
        if route == "subclass":
            weight = fwAD.make_dual(w.as_subclass(_Sub), torch.ones_like(w))
            with pytest.raises(RuntimeError, match=match):
                bt.batch_norm(x, None, None, weight, None, True)
        else:
            dual = fwAD.make_dual(x, torch.ones_like(x))
            with _PassThrough(), pytest.raises(RuntimeError, match=match):
                bn(dual)
