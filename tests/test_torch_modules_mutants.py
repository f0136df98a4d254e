"""bnproof's BatchNorm modules against PyTorch's in every mode, and convert, literally.

Small cases for ``bnproof/torch/_modules.py`` (``benchmarks/mutation.py
modules``): every combination of training flag, running statistics and
momentum that PyTorch's ``_BatchNorm.forward`` distinguishes, checked against
PyTorch's own module, plus hand-worked values for the cumulative average.
"""

import copy
import itertools

import pytest

torch = pytest.importorskip("torch")

import bnproof.torch as bt  # noqa: E402

nn = torch.nn
D = torch.float64
#: float64: the two differ only in summation order.
TOL = dict(rtol=1e-10, atol=1e-12)


def _pair(momentum, affine, track):
    # eps 1e-3, not PyTorch's default: a forward that dropped it would show
    ref = nn.BatchNorm1d(3, eps=1e-3, momentum=momentum, affine=affine,
                         track_running_stats=track).double()
    if affine:
        with torch.no_grad():
            ref.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            ref.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    if track:
        with torch.no_grad():
            ref.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
            ref.running_var.copy_(torch.tensor([2.0, 3.0, 4.0]))
    return ref, bt.convert(copy.deepcopy(ref))


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize(("momentum", "affine", "track", "change"), [
    c for c in itertools.product((0.25, None), (True, False), (True, False),
                                 (None, "untrack", "no count"))
    if c[2] or not c[3]
])
def test_every_mode_matches_pytorch(momentum, affine, track, change):
    ref, ours = _pair(momentum, affine, track)
    if change == "untrack":  # buffers kept, statistics no longer tracked (PyTorch allows it)
        ref.track_running_stats = ours.track_running_stats = False
    if change == "no count":  # no batch counter (PyTorch then uses momentum 0 if None)
        ref.num_batches_tracked = ours.num_batches_tracked = None
    gen = torch.Generator().manual_seed(11)
    for training in (True, True, False, True, False):
        ref.train(training)
        ours.train(training)
        x = torch.randn(5, 3, 4, generator=gen, dtype=D) * 2 + 1
        torch.testing.assert_close(ours(x), ref(x), **TOL)
        a, b = _state(ours), _state(ref)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], **TOL)


def test_cumulative_average_and_batch_count_literally():
    # momentum=None: running mean after k batches is the plain average of the
    # k batch means, over the initial 0 replaced at the first batch
    bn = bt.BatchNorm1d(1, momentum=None, affine=False).double()
    batches = [[[1.0], [3.0]], [[5.0], [9.0]], [[0.0], [0.0]]]
    means, variances = [2.0, 7.0, 0.0], [2.0, 8.0, 0.0]  # unbiased variances
    for k, batch in enumerate(batches, start=1):
        bn(torch.tensor(batch, dtype=D))
        assert int(bn.num_batches_tracked) == k
        torch.testing.assert_close(bn.running_mean,
                                   torch.tensor([sum(means[:k]) / k], dtype=D), rtol=1e-15,
                                   atol=0)
        torch.testing.assert_close(bn.running_var,
                                   torch.tensor([sum(variances[:k]) / k], dtype=D),
                                   rtol=1e-15, atol=0)
    bn.eval()
    y = bn(torch.tensor([[3.0]], dtype=D))  # (3 - 3) / sqrt(10/3 + eps), 3 rounded
    torch.testing.assert_close(y, torch.zeros(1, 1, dtype=D), rtol=0, atol=1e-15)
    assert int(bn.num_batches_tracked) == 3  # inference does not count


def test_momentum_update_and_count_literally():
    bn = bt.BatchNorm1d(1, momentum=0.5, affine=False).double()
    bn(torch.tensor([[1.0], [3.0]], dtype=D))
    # 0.5 * 0 + 0.5 * 2 and 0.5 * 1 + 0.5 * 2 (unbiased variance of 1, 3)
    assert torch.equal(bn.running_mean, torch.tensor([1.0], dtype=D))
    assert torch.equal(bn.running_var, torch.tensor([1.5], dtype=D))
    assert int(bn.num_batches_tracked) == 1


def test_no_running_statistics_normalizes_with_the_batch_in_inference():
    bn = bt.BatchNorm1d(1, affine=False, track_running_stats=False, eps=0.0).double().eval()
    y = bn(torch.tensor([[1.0], [3.0]], dtype=D))
    assert torch.equal(y, torch.tensor([[-1.0], [1.0]], dtype=D))  # (x - 2) / 1
    assert bn.num_batches_tracked is None


@pytest.mark.parametrize("missing", ["running_mean", "running_var"])
def test_inference_with_one_running_buffer_is_refused(missing):
    bn = bt.BatchNorm1d(2).eval()
    setattr(bn, missing, None)
    other = "running_var" if missing == "running_mean" else "running_mean"
    with pytest.raises(ValueError, match=f"^only {other} was given; pass both"):
        bn(torch.randn(4, 2))
    with pytest.raises(RuntimeError, match=f"{missing} must be defined"):  # PyTorch too
        ref = nn.BatchNorm1d(2).eval()
        setattr(ref, missing, None)
        ref(torch.randn(4, 2))


def test_the_input_rank_is_checked_as_pytorch_does():
    with pytest.raises(ValueError, match="expected 4D input"):
        bt.BatchNorm2d(3)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bt.BatchNorm1d(3)(torch.randn(2, 3, 4, 4))


def test_converted_modules_have_their_own_containers():
    bn = nn.BatchNorm2d(3)
    new = bt.convert(bn)
    assert type(new) is bt.BatchNorm2d and new is not bn
    assert new.weight is bn.weight and new.running_mean is bn.running_mean
    new.register_buffer("extra", torch.zeros(1))
    new.register_forward_hook(lambda *a: None)
    assert "extra" not in bn._buffers and not bn._forward_hooks
    assert bt.convert(new) is new  # already converted: returned as it is


def test_convert_reaches_nested_children_and_keeps_the_rest():
    inner = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model = nn.Sequential(inner, nn.ReLU(), nn.BatchNorm1d(3))
    linear, relu = inner[0], model[1]
    assert bt.convert(model) is model
    assert type(model[0][1]) is bt.BatchNorm1d and type(model[2]) is bt.BatchNorm1d
    assert model[0] is inner and model[0][0] is linear and model[1] is relu
    with pytest.raises(TypeError, match="^convert expects a torch.nn.Module, got list$"):
        bt.convert([model])
