"""precise_bn's parts, literally: progress, refusals, packing, the ranks' merge, the passes.

Small cases for ``bnproof/torch/_precise.py`` (``benchmarks/mutation.py
precise``), with expected values worked out by hand in the comments. The
merge across ranks runs against a stand-in for ``torch.distributed`` (two
ranks in one process), so no process group is started.
"""

import io
import sys

import numba
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from bnproof.kernels import Moments  # noqa: E402
from bnproof.torch import _precise, precise_bn  # noqa: E402

D = torch.float64


# --------------------------------------------------------------------------- #
# the progress bar
# --------------------------------------------------------------------------- #


class _Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def _bar(monkeypatch, total, passes):
    clock = _Clock()
    monkeypatch.setattr(_precise, "time", clock)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    return clock, stream, _precise._Progress(True, total, passes)


def test_progress_bar_lines_literally(monkeypatch):
    clock, stream, bar = _bar(monkeypatch, total=4, passes=2)
    clock.now = 0.5
    bar.update(1, 0)  # before PROGRESS_AFTER_SECONDS (1.0): nothing
    assert stream.getvalue() == ""
    clock.now = 1.0
    bar.update(2, 0)  # a second has passed: shown; 30 * 2 / 4 = 15 marks
    first = "\rprecise_bn pass 1/2 [" + "#" * 15 + "." * 15 + "] 2/4 batches"
    assert stream.getvalue() == first
    clock.now = 1.0625
    bar.update(3, 0)  # less than 0.1 s after the last line: skipped
    assert stream.getvalue() == first
    bar.update(4, 0)  # the last batch is always shown
    second = "\rprecise_bn pass 1/2 [" + "#" * 30 + "] 4/4 batches"
    assert stream.getvalue() == first + second
    clock.now = 1.1875  # 0.125 s later
    bar.update(1, 1)  # int(30 / 4) = 7 marks
    third = "\rprecise_bn pass 2/2 [" + "#" * 7 + "." * 23 + "] 1/4 batches"
    assert stream.getvalue() == first + second + third
    clock.now = 2.0
    bar.update(9, 1)  # more than the total: a full bar
    fourth = "\rprecise_bn pass 2/2 [" + "#" * 30 + "] 9/4 batches"
    assert stream.getvalue() == first + second + third + fourth
    bar.close()
    assert stream.getvalue().endswith("batches\n")


def test_progress_without_a_total_or_a_pass_count(monkeypatch):
    clock, stream, bar = _bar(monkeypatch, total=None, passes=None)
    clock.now = 5.0
    bar.update(3, 0)
    assert stream.getvalue() == "\rprecise_bn pass 1 3 batches"
    clock.now = 5.125  # 0.125 s later: shown
    bar.update(4, 0)
    assert stream.getvalue() == "\rprecise_bn pass 1 3 batches\rprecise_bn pass 1 4 batches"


def test_progress_exactly_at_its_thresholds(monkeypatch):
    clock, stream, _ = _bar(monkeypatch, total=10, passes=None)
    clock.now = -0.875  # the bar starts here (not at 0: elapsed time is a difference)
    bar = _precise._Progress(True, 10, None)
    clock.now = 0.0
    bar.update(1, 0)  # 0.875 s: not yet
    assert stream.getvalue() == ""
    clock.now = 0.125  # exactly PROGRESS_AFTER_SECONDS (1.0) after the start: shown
    bar.update(2, 0)
    assert stream.getvalue().count("\r") == 1
    clock.now = 0.125 + 0.1  # exactly 0.1 s after the last line (exact in binary): shown
    bar.update(3, 0)
    assert stream.getvalue().count("\r") == 2


def test_a_disabled_or_unshown_bar_writes_nothing(monkeypatch):
    clock, stream, _ = _bar(monkeypatch, total=2, passes=None)
    bar = _precise._Progress(False, 2, None)
    clock.now = 10.0
    bar.update(2, 0)
    bar.close()
    shy = _precise._Progress(True, 2, None)
    shy.close()  # never shown: no newline either
    assert stream.getvalue() == ""


# --------------------------------------------------------------------------- #
# refusals and inputs
# --------------------------------------------------------------------------- #


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2), nn.BatchNorm1d(2)).double()


def test_refusals_literally():
    model = _bn_model()
    cases = [
        (dict(model=[1]), TypeError,
         "model must be a torch.nn.Module, got list (pass the network whose batch norms to "
         "update)"),
        (dict(batches=3), TypeError,
         "batches must be an iterable of batches (e.g. a DataLoader or a list of tensors), "
         "got int"),
        (dict(num_batches=True), TypeError, "num_batches must be an int >= 1 or None, got True"),
        (dict(num_batches=-1), ValueError,
         "num_batches=-1 must be >= 1 (or None to read every batch)"),
        (dict(progress=1), TypeError, "progress must be True or False, got 1"),
        (dict(mode="train "), ValueError,
         "mode='train ' is not one of 'train', 'eval-consistent'"),
        (dict(mode="eval-consistent", batches=iter([])), TypeError,
         "mode='eval-consistent' reads the batches once per depth level, but batches is a "
         "one-shot iterator (list_iterator); pass a list or a DataLoader"),
        (dict(process_group=object()), ValueError,
         "process_group was given but torch.distributed is not initialized (call "
         "torch.distributed.init_process_group first, or pass process_group=None)"),
    ]
    for change, error, message in cases:
        kwargs = dict(model=model, batches=[], num_batches=None, process_group=None,
                      progress=False, mode="train")
        kwargs.update(change)
        with pytest.raises(error) as info:
            _precise._check_args(**kwargs)
        assert str(info.value) == message
    # accepted: one batch, NumPy integers, either mode, a re-iterable
    _precise._check_args(model, [], np.int64(1), None, True, "eval-consistent")


def test_distributed_only_with_a_group_or_an_initialized_default():
    assert _precise._distributed(object()) is True
    assert _precise._distributed(None) is False  # not initialized in this process


def test_batch_input_literally():
    x = torch.zeros(2, 2)
    assert _precise._batch_input(x, 0) is x
    assert _precise._batch_input((x, "label"), 0) is x
    assert _precise._batch_input([x], 0) is x
    with pytest.raises(TypeError) as info:
        _precise._batch_input((), 3)
    assert str(info.value) == ("batch 3 is a tuple; each batch must be a tensor or a "
                               "tuple/list whose first element is the input tensor")
    with pytest.raises(TypeError, match="^batch 1 is a dict;"):
        _precise._batch_input({"x": x}, 1)


def test_as_numpy_views_copies_and_converts():
    x = torch.arange(12.0, dtype=D).reshape(3, 4)
    view, axis = _precise._as_numpy(x)
    assert axis == 1 and np.shares_memory(view, x.numpy())
    # (N, C, L) stored channels-last: the (N, L, C) view, channel axis last
    last = torch.arange(24.0, dtype=D).reshape(2, 4, 3).movedim(-1, 1)
    view, axis = _precise._as_numpy(last)
    assert axis == -1 and view.shape == (2, 4, 3)
    assert np.shares_memory(view, last.movedim(1, -1).numpy())
    # a transposed (N, C): copied, channel axis 1
    t = torch.arange(12.0, dtype=D).reshape(4, 3).t()
    copied, axis = _precise._as_numpy(t)
    assert axis == 1 and copied.shape == (3, 4) and copied.flags.c_contiguous
    assert np.array_equal(copied, t.numpy())
    # float16, bfloat16 and integers are read as float32
    for dtype in (torch.float16, torch.bfloat16, torch.int64):
        arr, _ = _precise._as_numpy(torch.ones(2, 3, dtype=dtype))
        assert arr.dtype == np.float32
    arr, _ = _precise._as_numpy(torch.ones(2, 3, dtype=torch.float32))
    assert arr.dtype == np.float32
    # gradients are not needed: a tensor that requires them is read too
    arr, _ = _precise._as_numpy(torch.ones(2, 3, requires_grad=True))
    assert arr.shape == (2, 3)


def test_an_empty_record():
    r = _precise._empty_record(3)
    assert r.count == 0
    assert np.array_equal(r.mean, np.zeros(3)) and np.array_equal(r.m2, np.zeros(3))
    assert np.array_equal(r.mean_lo, np.zeros(3))
    assert r.mean is not r.m2 and r.mean is not r.mean_lo and r.m2 is not r.mean_lo


# --------------------------------------------------------------------------- #
# packing and the merge across ranks (a stand-in for torch.distributed)
# --------------------------------------------------------------------------- #


def test_pack_and_unpack_literally():
    records = {
        "a": Moments(2, np.array([1.0, 2.0]), np.array([3.0, 4.0]),
                     mean_lo=np.array([0.5, 0.25])),
        "b": Moments(5, np.array([7.0]), np.array([8.0])),  # no mean_lo: zeros
    }
    packed = _precise._pack(records, True)
    assert packed.dtype == D
    assert packed.tolist() == [1.0, 2.0, 1.0, 2.0, 0.5, 0.25, 3.0, 4.0, 5.0, 7.0, 0.0, 8.0]
    assert _precise._pack(records, False).tolist()[0] == 0.0
    out = _precise._unpack(packed.numpy(), records)
    assert list(out) == ["a", "b"]
    assert out["a"].count == 2 and out["b"].count == 5
    assert out["a"].mean.tolist() == [1.0, 2.0] and out["a"].m2.tolist() == [3.0, 4.0]
    assert out["a"].mean_lo.tolist() == [0.5, 0.25]
    assert out["b"].mean.tolist() == [7.0] and out["b"].m2.tolist() == [8.0]
    assert out["b"].mean_lo.tolist() == [0.0]


class _TwoRanks:
    """``get_world_size`` 2 and an ``all_gather`` that puts ``other`` as rank 1."""

    def __init__(self, monkeypatch, *others):
        self.others = list(others)
        self.sent = []
        self.gathers = 0
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
        monkeypatch.setattr(torch.distributed, "all_gather", self.all_gather)

    def all_gather(self, gathered, local, group=None):
        assert len(gathered) == 2
        self.sent.append(local.clone())
        gathered[0].copy_(local)
        gathered[1].copy_(self.others.pop(0))
        self.gathers += 1


def _record(values):
    """Moments of one channel holding ``values`` (count, mean, sum of squared deviations)."""
    v = np.array(values, dtype=np.float64)
    return Moments(len(v), np.array([v.mean()]), np.array([((v - v.mean()) ** 2).sum()]))


def test_all_merge_merges_the_ranks_in_order(monkeypatch):
    mine = {"bn": _record([0.0, 2.0])}
    other = _precise._pack({"bn": _record([4.0, 6.0])}, False)
    _TwoRanks(monkeypatch, other)
    merged, failed = _precise._all_merge(mine, False, None)
    assert failed is False
    # 0, 2, 4, 6: count 4, mean 3, squared deviations 9 + 1 + 1 + 9 = 20
    assert merged["bn"].count == 4
    assert merged["bn"].mean.tolist() == [3.0] and merged["bn"].m2.tolist() == [20.0]


def test_all_merge_reports_a_failed_rank(monkeypatch):
    mine = {"bn": _record([0.0, 2.0])}
    _TwoRanks(monkeypatch, _precise._pack({"bn": _record([4.0, 6.0])}, True))
    assert _precise._all_merge(mine, False, None) == (None, True)
    _TwoRanks(monkeypatch, _precise._pack({"bn": _record([4.0, 6.0])}, False))
    assert _precise._all_merge(mine, True, None) == (None, True)


def test_layouts_must_agree_across_ranks(monkeypatch):
    records = {"a": _record([1.0, 2.0]), "b": _precise._empty_record(3)}
    _TwoRanks(monkeypatch, torch.tensor([2, 4]))
    _precise._check_layout_agrees(records, None)  # 2 modules, 1 + 3 channels: agrees
    for other in ([2, 5], [1, 4]):
        _TwoRanks(monkeypatch, torch.tensor(other))
        with pytest.raises(ValueError) as info:
            _precise._check_layout_agrees(records, None)
        assert str(info.value) == (
            "the ranks hold different batch norms (counts of modules and channels: "
            f"[[2, 4], {other}]); every rank must pass the same model")


def test_merge_ranks_raises_everywhere_if_one_rank_failed(monkeypatch):
    mine = {"bn": _record([0.0, 2.0])}
    ok = _precise._pack({"bn": _record([4.0, 6.0])}, False)
    _TwoRanks(monkeypatch, torch.tensor([1, 1]), ok)
    assert _precise._merge_ranks(mine, None, None)["bn"].count == 4
    # another rank failed: this one raises, having taken part in both gathers
    ranks = _TwoRanks(monkeypatch, torch.tensor([1, 1]),
                      _precise._pack({"bn": _record([4.0, 6.0])}, True))
    with pytest.raises(RuntimeError) as info:
        _precise._merge_ranks(mine, None, None)
    assert str(info.value) == ("precise_bn failed on another rank; no running statistics "
                               "were written")
    assert ranks.gathers == 2
    # this rank failed: its own error, after both gathers, even if the layouts differ
    ranks = _TwoRanks(monkeypatch, torch.tensor([3, 9]), ok)
    failure = KeyError("mine")
    with pytest.raises(KeyError) as info:
        _precise._merge_ranks(mine, failure, None)
    assert info.value is failure and ranks.gathers == 2
    assert ranks.sent[1][0].item() == 1.0  # the others learn that this rank failed
    # no failure but different layouts: the layout error
    _TwoRanks(monkeypatch, torch.tensor([3, 9]), ok)
    with pytest.raises(ValueError, match="different batch norms"):
        _precise._merge_ranks(mine, None, None)


def test_the_ranks_agree_on_one_order(monkeypatch):
    names = ["a", "b", "c"]
    _TwoRanks(monkeypatch, torch.tensor([-1, -1, -1]))  # rank 1 saw no data
    assert _precise._agree_order(names, ["c", "a"], None) == ["c", "a"]
    _TwoRanks(monkeypatch, torch.tensor([2, 0, -1]))  # the first rank saw none
    assert _precise._agree_order(names, [], None) == ["c", "a"]
    _TwoRanks(monkeypatch, torch.tensor([-1, -1, -1]))
    assert _precise._agree_order(names, [], None) == []
    _TwoRanks(monkeypatch, torch.tensor([0, 2, -1]))
    with pytest.raises(ValueError) as info:
        _precise._agree_order(names, ["c", "a"], None)
    assert str(info.value) == (
        "the ranks call the batch norms in different orders; mode='eval-consistent' needs one "
        "depth order (pass the same model to every rank)")


def test_precise_bn_over_two_ranks_writes_the_merged_statistics(monkeypatch):
    # rank 0 (this process) sees x, rank 1 sees x + 4: one channel, values
    # 0, 2 here and 4, 6 there: mean 3, unbiased variance 20 / 3
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    bn = nn.BatchNorm1d(1).double()
    other = _precise._pack({"": _record([4.0, 6.0])}, False)
    ranks = _TwoRanks(monkeypatch, torch.tensor([1, 1]), other)
    result = precise_bn(bn, [torch.tensor([[0.0], [2.0]], dtype=D)], progress=False)
    assert ranks.gathers == 2 and result.moments[""].count == 4
    assert bn.running_mean.tolist() == [3.0]
    torch.testing.assert_close(bn.running_var, torch.tensor([20.0 / 3.0], dtype=D),
                               rtol=1e-15, atol=0)


def test_a_failure_on_this_rank_still_takes_part_and_then_raises(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    bn = nn.BatchNorm1d(1).double()
    before = bn.running_mean.clone()
    ranks = _TwoRanks(monkeypatch, torch.tensor([1, 1]),
                      _precise._pack({"": _record([4.0, 6.0])}, False))
    with pytest.raises(TypeError, match="batch 0 is a str"):
        precise_bn(bn, ["oops"], progress=False)
    assert ranks.gathers == 2 and torch.equal(bn.running_mean, before)


# --------------------------------------------------------------------------- #
# the passes
# --------------------------------------------------------------------------- #


def _three_levels():
    """Three batch norms in a row, and a counter of how far each forward got."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2), nn.BatchNorm1d(2),
                          nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Identity()).double()
    reached = []
    for i in (1, 3, 5):
        model[i].register_forward_hook(lambda m, a, out, i=i: reached.append(i))
    return model, reached


def _data(n=3):
    gen = torch.Generator().manual_seed(2)
    return [torch.randn(4, 2, generator=gen, dtype=D) * 2 + 1 for _ in range(n)]


def test_eval_consistent_passes_stop_after_the_batch_norm_they_record():
    model, reached = _three_levels()
    result = precise_bn(model, _data(2), mode="eval-consistent", progress=False)
    assert result.passes == 3 and result.batches == 2 and result.order == ("0", "2", "4")
    # pass 1 runs the whole forward (it finds the order); pass 2 stops before
    # the third batch norm (after Linear 1 and 3); pass 3 records the last one
    # and runs on to the end
    assert reached == [1, 3, 5] * 2 + [1, 3] * 2 + [1, 3, 5] * 2


def test_train_mode_is_one_pass_with_batch_counts(monkeypatch):
    model, reached = _three_levels()
    seen = []
    real = _precise.batch_norm_moments

    def spy(x, channel_axis):
        seen.append(numba.get_num_threads())
        return real(x, channel_axis=channel_axis)

    monkeypatch.setattr(_precise, "batch_norm_moments", spy)
    threads = numba.get_num_threads()
    result = precise_bn(model, _data(3), num_batches=2, progress=False)
    assert result.passes == 1 and result.batches == 2 and reached == [1, 3, 5] * 2
    assert seen == [1] * 6  # one Numba thread for the moments, three modules, two batches
    assert numba.get_num_threads() == threads  # and the count restored
    assert result.skipped == {}
    assert [m.count for m in result.moments.values()] == [8, 8, 8]


def test_one_value_per_channel_is_refused():
    # inference accepts a batch of one; its variance cannot be estimated
    model = nn.Sequential(nn.BatchNorm1d(2)).double()
    before = model[0].running_var.clone()
    with pytest.raises(ValueError) as info:
        precise_bn(model, [torch.ones(1, 2, dtype=D)], mode="eval-consistent", progress=False)
    assert str(info.value) == (
        "batch norm '0' saw 1 value per channel; the unbiased variance needs at least 2 "
        "(pass more data; nothing was written)")
    assert torch.equal(model[0].running_var, before)


def test_two_values_are_enough_and_the_result_literally():
    model = nn.Sequential(nn.BatchNorm1d(1)).double()
    result = precise_bn(model, [torch.tensor([[1.0]], dtype=D), torch.tensor([[3.0]], dtype=D)],
                        mode="eval-consistent", progress=False)
    assert result.moments["0"].count == 2
    assert model[0].running_mean.tolist() == [2.0] and model[0].running_var.tolist() == [2.0]
    assert result.updated == ("0",) and result.passes == 1 and result.batches == 2


def test_skipped_reasons_literally():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.BatchNorm1d(2)
            self.untracked = nn.BatchNorm1d(2, track_running_stats=False)
            self.unused = nn.BatchNorm1d(2)
            self.lazy = nn.LazyBatchNorm1d()

        def forward(self, x):
            return self.untracked(self.used(x))

    model = Net().double()
    result = precise_bn(model, _data(1), progress=False)
    assert result.skipped == {
        "untracked": "no running statistics (track_running_stats=False)",
        "unused": "never called during the pass (or only with empty inputs)",
        "lazy": "not initialized yet (a lazy module: run one forward pass first)",
    }
    assert result.updated == ("used",)
    # a module whose buffers were removed by hand counts as untracked too
    model = Net().double()
    model.unused.running_var = None
    assert "unused" in precise_bn(model, _data(1), progress=False).skipped
    assert precise_bn(model, _data(1), progress=False).skipped["unused"] == (
        "no running statistics (track_running_stats=False)")


def test_no_module_and_no_data_refusals_literally():
    with pytest.raises(ValueError) as info:
        precise_bn(nn.Linear(2, 2), [torch.zeros(2, 2)], progress=False)
    assert str(info.value) == (
        "model (Linear) has no batch norm with running statistics (nothing to update; batch "
        "norms with track_running_stats=False are skipped)")
    with pytest.raises(ValueError) as info:
        precise_bn(nn.BatchNorm1d(2), [torch.zeros(0, 2)], progress=False)
    assert str(info.value) == ("batches yielded no data for any batch norm (pass a non-empty "
                               "iterable; nothing was written)")


class _Ticking:
    """A clock that advances a second at every reading: every line is shown."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        self.now += 1.0
        return self.now


def test_progress_totals(monkeypatch):
    monkeypatch.setattr(_precise, "time", _Ticking())
    cases = [
        (dict(num_batches=2), _data(3), "2/2 batches"),
        (dict(), _data(3), "3/3 batches"),
        (dict(num_batches=5), _data(3), "3/3 batches"),
        (dict(num_batches=2), iter(_data(3)), "2/2 batches"),
        (dict(), iter(_data(3)), "pass 1 3 batches"),
        (dict(mode="eval-consistent"), _data(1), "pass 3/3 ["),
    ]
    for kwargs, batches, expect in cases:
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        model, _ = _three_levels()
        precise_bn(model, batches, progress=True, **kwargs)
        assert expect in stream.getvalue(), (kwargs, stream.getvalue())


def test_the_write_is_the_mean_and_the_unbiased_variance():
    bn = nn.BatchNorm1d(2)
    _precise._write(bn, Moments(5, np.array([1.0, -2.0]), np.array([8.0, 2.0])))
    assert bn.running_mean.tolist() == [1.0, -2.0]
    assert bn.running_var.tolist() == [2.0, 0.5]  # 8 / 4 and 2 / 4
    assert bn.running_mean.dtype == torch.float32


# --------------------------------------------------------------------------- #
# more of precise_bn: defaults, order, the depth levels, two ranks in both modes
# --------------------------------------------------------------------------- #


def test_progress_is_on_by_default(monkeypatch):
    monkeypatch.setattr(_precise, "time", _Ticking())
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    model, _ = _three_levels()
    precise_bn(model, _data(2))
    assert stream.getvalue().endswith("\rprecise_bn pass 1 [" + "#" * 30 + "] 2/2 batches\n")


def test_order_is_the_call_order_not_the_registration_order():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.BatchNorm1d(2)
            self.b = nn.BatchNorm1d(2)

        def forward(self, x):
            return self.a(self.b(x))

    result = precise_bn(Backwards().double(), _data(1), progress=False)
    assert result.order == ("b", "a") and result.updated == ("b", "a")


def test_a_module_without_a_batch_counter_or_with_tracking_switched_off():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2)).double()
    model[0].num_batches_tracked = None  # as after loading an old checkpoint
    model[1].track_running_stats = False  # buffers kept, no longer tracked
    before = model[1].running_mean.clone()
    result = precise_bn(model, _data(1), progress=False)
    assert result.updated == ("0",) and model[0].num_batches_tracked is None
    assert result.skipped == {"1": "no running statistics (track_running_stats=False)"}
    assert torch.equal(model[1].running_mean, before)


def test_eval_consistent_uses_the_new_statistics_upstream():
    # two batches of one value: the first batch norm sees 1 and 3 (mean 2,
    # unbiased variance 2); in inference it then gives +-1 / sqrt(2 + eps),
    # which the second sees: mean 0, unbiased variance 2 / (2 + eps)
    model = nn.Sequential(nn.BatchNorm1d(1), nn.BatchNorm1d(1)).double()
    batches = [torch.tensor([[1.0]], dtype=D), torch.tensor([[3.0]], dtype=D)]
    precise_bn(model, batches, mode="eval-consistent", progress=False)
    assert model[0].running_mean.tolist() == [2.0] and model[0].running_var.tolist() == [2.0]
    torch.testing.assert_close(model[1].running_mean, torch.zeros(1, dtype=D), rtol=0,
                               atol=1e-15)
    torch.testing.assert_close(model[1].running_var, torch.tensor([2 / (2 + 1e-5)], dtype=D),
                               rtol=1e-14, atol=0)


def test_eval_consistent_with_a_shared_module_and_three_levels_never_stops_early():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = (nn.BatchNorm1d(2) for _ in range(3))
            self.probe = nn.Identity()

        def forward(self, x):
            return self.probe(self.a(self.c(self.b(self.a(x)))))

    model = Shared().double()
    reached = []
    model.probe.register_forward_hook(lambda *args: reached.append(1))
    result = precise_bn(model, _data(2), mode="eval-consistent", progress=False)
    assert result.order == ("a", "b", "c") and result.passes == 3
    assert reached == [1] * 6  # three full passes over two batches
    assert result.moments["a"].count == 16  # both calls of a, two batches of four


def test_eval_consistent_skips_modules_it_never_reached():
    class Spare(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.BatchNorm1d(2), nn.BatchNorm1d(2)

        def forward(self, x):
            return self.used(x)

    result = precise_bn(Spare().double(), _data(1), mode="eval-consistent", progress=False)
    assert result.updated == ("used",)
    assert result.skipped == {"spare": "never called during the pass (or only with empty "
                                        "inputs)"}


def test_eval_consistent_failing_in_the_first_pass_writes_nothing():
    model = nn.Sequential(nn.BatchNorm1d(2)).double()
    before = model[0].running_mean.clone()
    with pytest.raises(TypeError, match="batch 1 is a str"):
        precise_bn(model, [_data(1)[0], "oops"], mode="eval-consistent", progress=False)
    assert torch.equal(model[0].running_mean, before)


GROUP = object()  # a process group stand-in: passed through to every collective


class _Ranks(_TwoRanks):
    """Two ranks; every collective must be given ``GROUP``."""

    def all_gather(self, gathered, local, group=None):
        assert group is GROUP
        super().all_gather(gathered, local, group)


def _distributed_setup(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size",
                        lambda group=None: 2 if group is GROUP else 99)


def test_two_ranks_in_train_mode_with_a_group(monkeypatch):
    bn = nn.BatchNorm1d(1).double()
    ranks = _Ranks(monkeypatch, torch.tensor([1, 1]),
                   _precise._pack({"": _record([4.0, 6.0])}, False))
    _distributed_setup(monkeypatch)
    result = precise_bn(bn, [torch.tensor([[0.0], [2.0]], dtype=D)], progress=False,
                        process_group=GROUP)
    assert ranks.gathers == 2 and result.moments[""].count == 4
    assert bn.running_mean.tolist() == [3.0]


def _eval_ranks(monkeypatch, flag_first=False, flag_level=False, order=(0,)):
    """The collectives of eval-consistent mode on two ranks, one batch norm of one channel."""
    other_level = _precise._pack({"": _record([4.0, 6.0])}, flag_level)
    return _Ranks(
        monkeypatch,
        torch.tensor([0, 0]), torch.tensor([1.0 if flag_first else 0.0], dtype=D),  # pass 1
        torch.tensor(list(order)),  # the order
        torch.tensor([1, 1]), other_level,  # the level's merge
    )


def test_two_ranks_in_eval_consistent_mode(monkeypatch):
    bn = nn.BatchNorm1d(1).double()
    ranks = _eval_ranks(monkeypatch)
    _distributed_setup(monkeypatch)
    result = precise_bn(bn, [torch.tensor([[0.0], [2.0]], dtype=D)], mode="eval-consistent",
                        progress=False, process_group=GROUP)
    assert ranks.gathers == 5 and not ranks.others
    assert result.order == ("",) and result.moments[""].count == 4
    assert bn.running_mean.tolist() == [3.0]
    torch.testing.assert_close(bn.running_var, torch.tensor([20.0 / 3.0], dtype=D),
                               rtol=1e-15, atol=0)


def test_two_ranks_in_eval_consistent_mode_when_the_other_fails(monkeypatch):
    for first, level in ((True, False), (False, True)):
        bn = nn.BatchNorm1d(1).double()
        _eval_ranks(monkeypatch, flag_first=first, flag_level=level)
        _distributed_setup(monkeypatch)
        with pytest.raises(RuntimeError, match="failed on another rank"):
            precise_bn(bn, [torch.tensor([[0.0], [2.0]], dtype=D)], mode="eval-consistent",
                       progress=False, process_group=GROUP)
        assert bn.running_mean.tolist() == [0.0]


def test_two_ranks_in_eval_consistent_mode_when_this_one_fails(monkeypatch):
    # the first pass fails here: this rank still takes part in the first merge
    bn = nn.BatchNorm1d(1).double()
    ranks = _Ranks(monkeypatch, torch.tensor([0, 0]), torch.zeros(1, dtype=D))
    _distributed_setup(monkeypatch)
    with pytest.raises(TypeError, match="batch 0 is a str"):
        precise_bn(bn, ["oops"], mode="eval-consistent", progress=False, process_group=GROUP)
    assert ranks.gathers == 2

    class Breaks:
        """Re-iterable; the second pass breaks."""

        passes = 0

        def __iter__(self):
            self.passes += 1
            if self.passes == 2:
                return iter(["oops"])
            return iter([torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=D)])

    model = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2)).double()
    two = Moments(2, np.array([1.0, 2.0]), np.array([2.0, 2.0]))  # two channels
    ranks = _Ranks(monkeypatch, torch.tensor([0, 0]), torch.zeros(1, dtype=D),
                   torch.tensor([0, 1]),
                   torch.tensor([1, 2]), _precise._pack({"0": two}, False),
                   torch.tensor([1, 2]), _precise._pack({"1": two}, False))
    with pytest.raises(TypeError, match="batch 0 is a str"):
        precise_bn(model, Breaks(), mode="eval-consistent", progress=False,
                   process_group=GROUP)
    assert ranks.gathers == 7 and model[1].running_mean.tolist() == [0.0, 0.0]


def test_a_rank_without_data_writes_what_the_others_saw(monkeypatch):
    # this rank reads no batch; rank 1 saw 4 and 6: both write mean 5, variance 2
    for mode in ("train", "eval-consistent"):
        bn = nn.BatchNorm1d(1).double()
        other = _precise._pack({"": _record([4.0, 6.0])}, False)
        if mode == "train":
            ranks = _Ranks(monkeypatch, torch.tensor([1, 1]), other)
        else:
            ranks = _Ranks(monkeypatch, torch.tensor([0, 0]), torch.zeros(1, dtype=D),
                           torch.tensor([0]), torch.tensor([1, 1]), other)
        _distributed_setup(monkeypatch)
        result = precise_bn(bn, [], mode=mode, progress=False, process_group=GROUP)
        assert not ranks.others and result.batches == 0
        assert result.updated == ("",) and result.moments[""].count == 2
        assert bn.running_mean.tolist() == [5.0] and bn.running_var.tolist() == [2.0]


class _SetThreads(nn.Module):
    """Sets PyTorch's thread count (as a layer that tunes it might); runs no op itself."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def forward(self, x):
        torch.set_num_threads(self.count)
        return x


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return x


def test_pytorch_thread_count_is_restored_after_each_batch_norm_and_at_the_end():
    saved = torch.get_num_threads()
    probe = _Probe()
    # the count changes before the batch norm (its hook restores it before the
    # norm runs) and after the last one (restored when precise_bn returns)
    model = nn.Sequential(_SetThreads(saved + 1), nn.BatchNorm1d(2), probe,
                          _SetThreads(saved + 1)).double()
    try:
        precise_bn(model, _data(2), progress=False)
        assert probe.seen == [saved, saved]
        assert torch.get_num_threads() == saved
    finally:
        torch.set_num_threads(saved)
