"""Literal unit tests of the audit's rule table, confirmation, fix and records.

Each expected value is worked out by hand in the comment next to it, so a
changed line of bnproof/audit/_rules.py, _confirm.py, _fix.py or _records.py
fails here in milliseconds.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bnproof.audit import _confirm, _fix, _rules  # noqa: E402
from bnproof.audit._records import AuditReport, Finding  # noqa: E402


def _finding(parameter, kind="dead", shape=(4,), redundant=4, dims=4, norm="bn (BatchNorm1d)",
             blocks=(0, 1, 2, 3)):
    return Finding(parameter=parameter, kind=kind, shape=shape, redundant_dims=redundant,
                   dims=dims, normalization=norm, through=("a",), claims=("c",), why="w",
                   blocks=blocks)


# --- _rules ---------------------------------------------------------------------------


def test_cited_is_every_rule_with_its_verdict():
    proved = {"batch-bias-per-feature", "bias-cancels-train", "shift-invariance",
              "layer-bias-shared", "group-bias-per-group", "instance-bias-per-feature",
              "batch-weight-vector-rescaling", "scale-invariance", "weight-grad-orthogonal",
              "layer-weight-matrix-rescaling", "group-weight-matrix-rescaling",
              "instance-weight-vector-rescaling", "passthrough-linear",
              "passthrough-conv-no-padding", "passthrough-avgpool", "passthrough-maxpool",
              "passthrough-residual-add", "passthrough-upsample-nearest",
              "passthrough-scalar-multiple"}
    refuted = {"layer-bias-per-feature", "group-bias-per-feature", "rms-bias-shared",
               "rms-bias-cancels", "passthrough-relu", "passthrough-zero-padding-after",
               "passthrough-avgpool-counting-padding", "passthrough-dropout-training"}
    assert dict(_rules.CITED) == {**dict.fromkeys(proved, "proved"),
                                  **dict.fromkeys(refuted, "refuted")}


# --- _records -------------------------------------------------------------------------


def test_finding_partial_and_json():
    full = _finding("lin.bias")
    assert not full.partial
    part = _finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0))
    assert part.partial
    scale = _finding("lin.weight", kind="scale-invariant", redundant=1)
    assert not scale.partial
    assert full.to_json() == {"parameter": "lin.bias", "kind": "dead", "redundant_dims": 4,
                              "dims": 4, "normalization": "bn (BatchNorm1d)",
                              "through": ["a"], "claims": ["c"]}


def test_report_totals_count_dead_dimensions_only():
    report = AuditReport((_finding("a.bias"), _finding("b.bias", redundant=1),
                          _finding("c.weight", kind="scale-invariant", redundant=3)), 99)
    assert report.redundant_dims_total == 5  # 4 + 1; the scale-invariant 3 not counted
    assert report.capture == "torch.fx" and report.inconsistencies == ()
    doc = report.to_json()
    assert doc["redundant_dims_total"] == 5 and doc["parameters_total"] == 99
    assert [f["parameter"] for f in doc["findings"]] == ["a.bias", "b.bias", "c.weight"]
    assert set(doc) == {"findings", "redundant_dims_total", "parameters_total"}


# --- _confirm -------------------------------------------------------------------------


def test_outputs_flattens_containers():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    found = _confirm.outputs({"x": a, "y": [b, (c, "text")], "z": 3})
    assert [t.numel() for t in found] == [1, 2, 3]
    assert _confirm.outputs("text") == []
    assert _confirm.outputs(a)[0] is a


def test_moved_is_the_largest_relative_change():
    t = torch.tensor
    # |2.5 - 2| / max(|1|, |2|) = 0.25; the second output moves 1 / 10 = 0.1
    assert _confirm._moved([t([1.0, 2.0]), t([10.0])], [t([1.0, 2.5]), t([11.0])]) == 0.25
    assert _confirm._moved([t([1.0, -4.0])], [t([1.0, -3.0])]) == 0.25  # 1 / |-4|
    assert _confirm._moved([t([1.0])], [t([1.0])]) == 0.0
    assert _confirm._moved([t([0.0])], [t([0.0])]) == 0.0
    assert _confirm._moved([t([0.0], dtype=torch.float64)],
                          [t([1e-300], dtype=torch.float64)]) == float("inf")  # no scale to compare
    assert _confirm._moved([t([1.0])], [t([float("nan")])]) == float("inf")
    assert _confirm._moved([t([1.0])], [t([float("inf")])]) == float("inf")
    assert _confirm._moved([torch.zeros(0), t([2.0])], [torch.zeros(0), t([3.0])]) == 0.5
    assert _confirm._moved([t([0.5])], [t([0.75])]) == 0.5  # a scale below 1 still divides
    with pytest.raises(ValueError):  # a model whose number of outputs changed
        _confirm._moved([t([1.0])], [t([1.0]), t([2.0])])


def test_activation_scales_are_one_plus_the_largest_output():
    lin = nn.Linear(2, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -3.0]]))
        lin.bias.zero_()
    model = nn.Sequential(lin, nn.Identity())
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)  # lin(x) = (1, -6)
    scales = _confirm._activation_scales(model, [x], {"0", "1"})
    assert scales == {"0": 7.0, "1": 7.0}
    assert not lin._forward_hooks  # the hooks are removed


def test_activation_scale_is_at_least_one():
    model = nn.Sequential(nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.zero_()
    assert _confirm._activation_scales(model, [torch.ones(1, 2, dtype=torch.float64)],
                                       {"0"}) == {"0": 1.0}


def test_dead_direction_is_constant_per_label_and_zero_where_forced():
    gen = torch.Generator().manual_seed(0)
    d = _confirm._dead_direction((0, 0, -1, 1, 1), (5,), gen)
    assert d.dtype == torch.float64 and d.shape == (5,)
    assert d[0] == d[1] and d[3] == d[4] and d[2] == 0.0
    assert d[0] != 0.0 and d[3] != 0.0 and d[0] != d[3]
    gen = torch.Generator().manual_seed(0)
    assert _confirm._dead_direction((0, 1, 2, 3), (2, 2), gen).shape == (2, 2)


def test_dead_direction_draws_one_float64_value_per_label_from_the_generator():
    gen = torch.Generator().manual_seed(3)
    d = _confirm._dead_direction((1, 0, -1, 1), (4,), gen)
    ref = torch.Generator().manual_seed(3)
    values = torch.randn(2, generator=ref, dtype=torch.float64)  # labels 0 and 1
    assert d.tolist() == [values[1].item(), values[0].item(), 0.0, values[1].item()]
    # exactly two values were drawn: the generators are in step
    assert torch.equal(torch.randn(3, generator=gen), torch.randn(3, generator=ref))


def test_live_direction_has_zero_mean_per_label():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = _confirm._live_direction((0, 0, -1, 1, 1), (5,), gen)
    assert torch.allclose(d[[0, 1]].sum(), torch.tensor(0.0, dtype=torch.float64))
    assert torch.allclose(d[[3, 4]].sum(), torch.tensor(0.0, dtype=torch.float64))
    assert d[2] == r[2]  # an entry forced to 0 is left as drawn
    assert torch.allclose(d[0], (r[0] - r[1]) / 2)


def test_owner_and_norm_name():
    assert _confirm._owner("a.b.bias") == "a.b"
    assert _confirm._owner("bias") == ""
    assert _confirm._norm_name(_finding("x", norm="blk.bn (BatchNorm2d), ln (LayerNorm)")) == (
        "blk.bn")
    # a module name may hold a space (add_module only refuses dots)
    assert _confirm._norm_name(_finding("x", norm="my bn (BatchNorm1d)")) == "my bn"


class _TwoBiases(nn.Module):
    """``dead.bias`` cancels in training-mode batch norm; ``live.bias`` reaches the output."""

    def __init__(self):
        super().__init__()
        self.dead = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.live = nn.Linear(3, 4)

    def forward(self, x):
        return self.bn(self.dead(x)), self.live(x)


def test_confirm_keeps_the_dead_and_drops_the_live_in_a_group():
    torch.manual_seed(0)
    model = _TwoBiases()
    x = torch.randn(6, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    findings = [_finding("dead.bias"), _finding("live.bias")]
    kept, problems = _confirm.confirm(model, [x], findings)
    assert kept == [findings[0]]
    assert len(problems) == 1 and problems[0].startswith("live.bias: the rules say dead")
    assert "dropped" in problems[0]
    # the model itself is not touched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_confirm_with_nothing_to_confirm():
    assert _confirm.confirm(_TwoBiases(), [torch.randn(2, 3)], []) == ([], [])


def test_confirm_keeps_a_true_partial_finding_and_drops_one_whose_live_part_is_dead():
    torch.manual_seed(0)

    class Ln(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.ln = nn.LayerNorm(4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.ln(self.lin(x)), self.bn(self.lin(x))

    x = torch.randn(5, 3)
    # before layer norm alone, only the shared part (1 of 4 dimensions) cancels
    true_partial = _finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0),
                            norm="ln (LayerNorm)")

    class LnOnly(Ln):
        def forward(self, x):
            return self.ln(self.lin(x))

    kept, problems = _confirm.confirm(LnOnly(), [x], [true_partial])
    assert kept == [true_partial] and problems == []

    class BnOnly(Ln):
        def forward(self, x):
            return self.bn(self.lin(x))

    # behind batch norm the whole bias is dead: the "live" part moves nothing
    kept, problems = _confirm.confirm(BnOnly(), [x], [true_partial])
    assert kept == []
    assert len(problems) == 1 and "the live part did not move any output" in problems[0]


def test_confirm_checks_the_live_part_at_exactly_the_tolerance(monkeypatch):
    # a partial finding that moved the outputs by exactly DEAD_RTOL counts as
    # not moved: its live part is checked (and here, behind batch norm, found dead)
    torch.manual_seed(0)

    class BnOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.lin(x))

    monkeypatch.setattr(_confirm, "_group_moved",
                        lambda work, inputs, base, group, perturb:
                        {f.parameter: _confirm.DEAD_RTOL for f in group})
    partial = _finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0))
    kept, problems = _confirm.confirm(BnOnly(), [torch.randn(5, 3)], [partial])
    assert kept == [] and "the live part did not move any output" in problems[0]


def test_confirm_moves_the_live_part_on_the_scale_of_the_activations():
    # activations of size 1e7 in front of layer norm: a live move of size 1
    # would look like rounding; one of the activations' size moves the output
    torch.manual_seed(0)

    class LnOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.ln = nn.LayerNorm(4)

        def forward(self, x):
            return self.ln(self.lin(x))

    partial = _finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0), norm="ln (LayerNorm)")
    kept, problems = _confirm.confirm(LnOnly(), [torch.randn(5, 3) * 1e7], [partial])
    assert kept == [partial] and problems == []


def _stub_moved(monkeypatch, value):
    monkeypatch.setattr(_confirm, "_group_moved",
                        lambda work, inputs, base, group, perturb:
                        dict.fromkeys((f.parameter for f in group), value))


def test_confirm_keeps_findings_that_moved_exactly_the_tolerance(monkeypatch):
    _stub_moved(monkeypatch, _confirm.DEAD_RTOL)
    dead = _finding("dead.bias")
    scale = _finding("live.weight", kind="scale-invariant", shape=(4, 3), dims=12)
    kept, problems = _confirm.confirm(_TwoBiases(), [torch.randn(5, 3)], [dead, scale])
    assert kept == [dead, scale] and problems == []


def test_confirm_drops_a_partial_finding_whose_live_part_moved_exactly_live_rtol(monkeypatch):
    _stub_moved(monkeypatch, 0.0)
    monkeypatch.setattr(_confirm, "_moved", lambda a, b: _confirm.LIVE_RTOL)
    partial = _finding("dead.bias", redundant=1, blocks=(0, 0, 0, 0))
    kept, problems = _confirm.confirm(_TwoBiases(), [torch.randn(5, 3)], [partial])
    assert kept == [] and problems == [
        "dead.bias: the live part did not move any output (0.0001); the partial finding is "
        "dropped"]


def test_confirm_rescales_rows_by_factors_between_exp_minus_and_plus_0_7(monkeypatch):
    # The weight is the output (input 1): rescaling row k by f_k moves output k
    # from 1 to f_k. The factors are exp(U - 0.7), U uniform on [0, 1.4) in
    # float64, one per row, drawn from a generator seeded with 1234.
    class Weight(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 4, bias=False)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.lin(x)

    model = Weight()
    with torch.no_grad():
        model.lin.weight.fill_(1.0)
    seen = {}
    group_moved = _confirm._group_moved

    def spy(*args):
        seen.update(group_moved(*args))
        return seen

    monkeypatch.setattr(_confirm, "_group_moved", spy)
    f = _finding("lin.weight", kind="scale-invariant", shape=(4, 1), dims=4,
                 norm="bn (BatchNorm1d)", blocks=(0, 1, 2, 3))
    kept, problems = _confirm.confirm(model, [torch.ones(1, 1)], [f])
    u = torch.rand(4, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    expected = float((torch.exp(u * 1.4 - 0.7) - 1.0).abs().max())
    assert seen == {"lin.weight": expected}
    assert kept == [] and problems == [
        f"lin.weight: rescaling it moved an output by {expected:.3g} (relative) at eps = 0; "
        "dropped"]


def test_confirm_draws_the_factors_of_each_weight_in_turn():
    # two weights, each the output (input 1): the second one's factors are the
    # next 4 draws of the same generator (seeded 1234), after the first one's 4
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(1, 4, bias=False)
            self.l2 = nn.Linear(1, 4, bias=False)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.l1(x), self.l2(x)

    model = Weights()
    with torch.no_grad():
        model.l1.weight.fill_(1.0)
        model.l2.weight.fill_(1.0)
    findings = [_finding(name, kind="scale-invariant", shape=(4, 1), dims=4,
                         blocks=(0, 1, 2, 3)) for name in ("l1.weight", "l2.weight")]
    _, problems = _confirm.confirm(model, [torch.ones(1, 1)], findings)
    gen = torch.Generator().manual_seed(1234)
    moved = []
    for _ in findings:
        u = torch.rand(4, generator=gen, dtype=torch.float64)
        moved.append(float((torch.exp(u * 1.4 - 0.7) - 1.0).abs().max()))
    assert problems == [f"{name}: rescaling it moved an output by {m:.3g} (relative) at "
                        "eps = 0; dropped" for name, m in zip(("l1.weight", "l2.weight"), moved,
                                                               strict=True)]


def test_confirm_names_a_dropped_dead_finding():
    torch.manual_seed(0)
    kept, problems = _confirm.confirm(_TwoBiases(), [torch.randn(5, 3)],
                                      [_finding("live.bias")])
    assert kept == []
    assert problems[0].startswith("live.bias: the rules say dead, yet moving it along the "
                                  "dead subspace moved an output by ")
    assert problems[0].endswith(" (relative); dropped")


class _Scale(nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.lin = nn.Linear(3, 4, bias=bias)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.lin(x))


def test_confirm_scale_invariant_weights_and_restores_eps():
    torch.manual_seed(0)
    model = _Scale(bias=False)
    f = _finding("lin.weight", kind="scale-invariant", shape=(4, 3), redundant=4, dims=12,
                 norm="bn (BatchNorm1d)", blocks=(0, 1, 2, 3))
    kept, problems = _confirm.confirm(model, [torch.randn(6, 3)], [f])
    assert kept == [f] and problems == []
    assert model.bn.eps == 1e-5


def test_confirm_drops_a_weight_that_is_not_scale_invariant():
    torch.manual_seed(0)

    class Out(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4, bias=False)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.lin(x)), self.lin(x)

    f = _finding("lin.weight", kind="scale-invariant", shape=(4, 3), redundant=4, dims=12,
                 blocks=(0, 1, 2, 3))
    kept, problems = _confirm.confirm(Out(), [torch.randn(6, 3)], [f])
    assert kept == []
    assert len(problems) == 1
    assert problems[0].startswith("lin.weight: rescaling it moved an output by")


def test_group_moved_isolates_the_live_finding():
    torch.manual_seed(0)
    model = _TwoBiases().double().train()
    x = [torch.randn(6, 3, dtype=torch.float64)]
    base = _confirm._forward(model, x)
    findings = [_finding("dead.bias"), _finding("live.bias")]
    original = {n: p.detach().clone() for n, p in model.named_parameters()}

    def shift(f, p):
        p.add_(1.0)

    moved = _confirm._group_moved(model, x, base, findings, shift)
    assert set(moved) == {"dead.bias", "live.bias"}
    assert moved["dead.bias"] <= _confirm.DEAD_RTOL < moved["live.bias"]
    # every parameter is restored
    assert all(torch.equal(original[n], p) for n, p in model.named_parameters())


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self):
        return torch.cat([torch.tensor([1e6], dtype=torch.float64), self.a + self.b])


def test_group_moved_at_exactly_the_tolerance_counts_as_not_moved():
    # a + b moves by 1 next to an entry 1e6: the relative change is 1 / 1e6,
    # which rounds to the same double as DEAD_RTOL = 1e-6: not moved, no bisection
    model = _Pair()
    base = _confirm._forward(model, [])
    calls = []

    def shift(f, p):
        calls.append(f.parameter)
        p.add_(0.5)

    moved = _confirm._group_moved(model, [], base, [_finding("a", shape=(1,)),
                                                    _finding("b", shape=(1,))], shift)
    assert moved == {"a": 1e-6, "b": 1e-6} and calls == ["a", "b"]


def test_group_moved_one_pass_for_a_dead_group():
    torch.manual_seed(0)
    model = _Scale(bias=True).double().train()
    x = [torch.randn(6, 3, dtype=torch.float64)]
    base = _confirm._forward(model, x)
    calls = []

    def shift(f, p):
        calls.append(f.parameter)
        p.add_(1.0)

    moved = _confirm._group_moved(model, x, base, [_finding("lin.bias")], shift)
    assert calls == ["lin.bias"] and moved["lin.bias"] <= _confirm.DEAD_RTOL


def test_forward_is_seeded_with_0_and_detached():
    model = nn.Sequential(nn.Dropout(0.5))
    x = [torch.ones(50, requires_grad=True)]
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    a, b = _confirm._forward(model, x), _confirm._forward(model, x)
    assert torch.equal(a[0], b[0]) and not a[0].requires_grad
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator untouched
    torch.manual_seed(0)
    assert torch.equal(a[0], model(x[0]))


def test_confirm_is_deterministic_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    x = torch.randn(6, 3)

    class Mixed(_TwoBiases):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(4)

        def forward(self, x):
            return self.bn(self.dead(x)), self.live(x), self.ln(self.dead(x))

    model = Mixed()
    findings = [_finding("dead.bias", redundant=1, blocks=(0, 0, 0, 0)),
                _finding("live.bias"),
                _finding("live.weight", kind="scale-invariant", shape=(4, 3), dims=12,
                         norm="bn (BatchNorm1d)", blocks=(0, 1, 2, 3))]
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        state = torch.random.get_rng_state()
        runs.append(_confirm.confirm(model, [x], findings))
        assert torch.equal(torch.random.get_rng_state(), state)
    assert runs[0] == runs[1]
    kept, problems = runs[0]
    assert kept == [findings[0]] and len(problems) == 2


# --- _fix -----------------------------------------------------------------------------


class _Custom(nn.Module):
    """A module with a ``bias`` whose forward cannot run without it."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return x + self.bias


class _FixNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.custom = _Custom()
        self.bn = nn.BatchNorm1d(4)
        self.ln = nn.LayerNorm(4)

    def forward(self, x):
        return self.bn(self.custom(self.lin(x))), self.ln(self.lin(x))


def test_module_of():
    assert _fix._module_of("a.b.bias") == "a.b"
    assert _fix._module_of("bias") == ""


def test_fix_notes_say_removed_zeroed_projected_and_skip_weights():
    model = _FixNet()
    report = AuditReport((
        _finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0)),
        _finding("custom.bias"),
        _finding("bn.bias"),
        _finding("lin.weight", kind="scale-invariant", shape=(4, 3), dims=12),
    ), 0)
    notes = _fix.fix_notes(model, report)
    assert [(n.parameter, n.action) for n in notes] == [
        ("lin.bias", "projected"), ("custom.bias", "zeroed"), ("bn.bias", "removed")]
    assert notes[0].detail == ("1 of 4 dimensions removed: the mean over each cancelling "
                               "group is subtracted")
    assert notes[1].detail == "_Custom cannot run without it"
    assert notes[2].detail == "bias=None"


def test_fix_notes_zero_a_dead_weight_of_a_removable_module():
    report = AuditReport((_finding("lin.weight", shape=(4, 3), dims=12, redundant=12),), 0)
    (note,) = _fix.fix_notes(_FixNet(), report)
    assert note.action == "zeroed"


def test_fix_checks_its_arguments():
    model = _FixNet()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        _fix.fix("m", AuditReport((), 0))
    with pytest.raises(TypeError, match=r"report must be an AuditReport from audit\(\), got dict"):
        _fix.fix(model, {"findings": []})
    with pytest.raises(ValueError, match=r"nope\.bias with shape \(4,\) is not a parameter of "
                                         r"it; audit this model and pass that report"):
        _fix.fix(model, AuditReport((_finding("nope.bias"),), 0))
    with pytest.raises(ValueError, match=r"lin\.bias with shape \(5,\)"):
        _fix.fix(model, AuditReport((_finding("lin.bias", shape=(5,)),), 0))


def test_project_subtracts_each_label_mean():
    p = torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0])
    # labels 0: {1, 3} mean 2; 1: {5, 9} mean 7; -1 (forced to 0): 7 left alone
    _fix._project(p, _finding("b", shape=(5,), blocks=(0, 0, 1, -1, 1)))
    assert p.tolist() == [-1.0, 1.0, -2.0, 7.0, 2.0]


def test_fix_without_dead_findings_returns_a_copy():
    model = _FixNet()
    fixed = _fix.fix(model, AuditReport((), 0))
    assert fixed is not model and fixed.lin is not model.lin
    assert torch.equal(fixed.lin.bias, model.lin.bias)


def test_fix_needs_inputs_to_shift_running_means():
    model = _FixNet()
    report = AuditReport((_finding("custom.bias"),), 0)
    with pytest.raises(ValueError, match=r"running means of bn: call fix\(model, report"):
        _fix.fix(model, report)


def test_fix_removes_zeroes_and_shifts_the_running_mean():
    torch.manual_seed(0)
    model = _FixNet()
    with torch.no_grad():
        model.custom.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        model.bn.bias.copy_(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    x = torch.randn(6, 3)
    report = AuditReport((_finding("custom.bias"), _finding("bn.bias", norm="ln (LayerNorm)")),
                         0)
    fixed = _fix.fix(model, report, x)
    assert torch.equal(fixed.custom.bias, torch.zeros(4))
    assert fixed.bn.bias is None and model.bn.bias is not None
    # custom.bias added (1, 2, 3, 4) in front of bn; the running mean of the
    # fixed copy starts lower by exactly that constant
    assert torch.allclose(fixed.bn.running_mean, model.bn.running_mean
                          - torch.tensor([1.0, 2.0, 3.0, 4.0]), atol=1e-6)
    assert torch.equal(model.custom.bias, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    model.eval()
    fixed.eval()
    # inference through bn is unchanged (ln's output ignores bn.bias here? no: bn's
    # output changes by the removed beta of 0.5, which the report claimed dead)
    out_model, out_fixed = model(x)[0], fixed(x)[0]
    assert torch.allclose(out_model - 0.5, out_fixed, atol=1e-5)


def test_fix_shifts_the_mean_per_channel_of_a_3d_input():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 1)
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.bn(self.conv(x))

    model = Net()
    with torch.no_grad():
        model.conv.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    report = AuditReport((_finding("conv.bias", shape=(3,), dims=3, redundant=3,
                                   blocks=(0, 1, 2)),), 0)
    fixed = _fix.fix(model, report, torch.randn(4, 2, 5))
    assert fixed.conv.bias is None
    assert torch.allclose(fixed.bn.running_mean, torch.tensor([-1.0, 2.0, -3.0]), atol=1e-6)


def test_fix_projects_a_partial_finding():
    model = _FixNet()
    with torch.no_grad():
        model.lin.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    report = AuditReport((_finding("lin.bias", redundant=1, blocks=(0, 0, 0, 0),
                                   norm="ln (LayerNorm)"),), 0)
    fixed = _fix.fix(model, report)
    assert torch.equal(fixed.lin.bias, torch.tensor([-2.0, -1.0, 0.0, 3.0]))  # mean 3


def test_norm_inputs_run_with_seed_0():
    model = nn.Sequential(nn.Dropout(0.5), nn.Identity())
    x = torch.ones(40)
    seen = _fix._norm_inputs(model, [x], ["1"])
    torch.manual_seed(0)
    assert torch.equal(seen["1"], model[0](x))


class _TwoNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 1)
        self.add_module("my bn", nn.BatchNorm1d(3))
        self.bn2 = nn.BatchNorm1d(3)

    def forward(self, x):
        y = self.conv(x)
        return getattr(self, "my bn")(y), self.bn2(y)


def test_fix_shifts_the_running_mean_of_every_normalization_it_names():
    torch.manual_seed(0)
    model = _TwoNorms()
    with torch.no_grad():
        model.conv.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    report = AuditReport((_finding("conv.bias", shape=(3,), dims=3, redundant=3,
                                   blocks=(0, 1, 2),
                                   norm="my bn (BatchNorm1d), bn2 (BatchNorm1d)"),), 0)
    with pytest.raises(ValueError, match=r"running means of my bn, bn2: call fix"):
        _fix.fix(model, report)
    fixed = _fix.fix(model, report, torch.randn(4, 2, 5))
    shifted = torch.tensor([-1.0, 2.0, -3.0])  # minus the removed bias
    assert torch.allclose(getattr(fixed, "my bn").running_mean, shifted, atol=1e-6)
    assert torch.allclose(fixed.bn2.running_mean, shifted, atol=1e-6)


def test_norm_inputs_records_the_inputs_and_removes_hooks():
    model = nn.Sequential(nn.Linear(2, 2), nn.Identity()).double()
    x = torch.ones(1, 2, dtype=torch.float64)
    seen = _fix._norm_inputs(model, [x], ["1"])
    assert torch.equal(seen["1"], model[0](x).detach())
    assert not model[1]._forward_pre_hooks
