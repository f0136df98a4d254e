"""The audit on a zoo of real architectures, with findings derived by hand.

Each model below states, in ``EXPECTED``, which parameters are dead and how
many dimensions of each cancel, derived by hand from the architecture:

* a per-channel constant cancels under BatchNorm / InstanceNorm in training;
* before GroupNorm(G) only the per-group mean of a per-channel bias cancels
  (G dimensions), before LayerNorm over D features only the mean (1);
* a constant passes max pooling, average pooling that does not count
  padding, nearest upsampling, residual additions, concatenation,
  transposes, and convolutions without padding; it does not pass ReLU (or
  any nonlinearity), zero padding applied after it, dropout in training,
  or average pooling that counts padding.

Every expectation is then checked numerically *here*, independently of the
package: the hand-derived dead directions move no output in float64
training mode, and every bias the audit leaves alone moves some output.
"""

from __future__ import annotations

import copy
import types

import pytest

torch = pytest.importorskip("torch", reason="the audit needs PyTorch")
nn = torch.nn
F = torch.nn.functional

from bnproof.audit import CaptureError, audit, fix  # noqa: E402

#: A dead direction may move an output by at most this (relative to
#: 1 + max|output|): float64 rounding through a few layers is ~1e-15.
DEAD_TOL = 1e-9
#: A live direction must move an output by more than this.
LIVE_TOL = 1e-6
#: The issue's promise for fix: outputs unchanged to 1e-10 in float64.
FIX_TOL = 1e-10


# --------------------------------------------------------------------------- #
# the zoo
# --------------------------------------------------------------------------- #


def vgg(cin, cout, bias=True):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNet(nn.Module):
    """A small UNet of VGG blocks (conv biases before BatchNorm), pooling, skip concat."""

    def __init__(self, bias=True):
        super().__init__()
        self.enc = vgg(3, 4, bias)
        self.pool = nn.MaxPool2d(2)
        self.mid = vgg(4, 8, bias)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = vgg(12, 4, bias)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        skip = self.enc(x)
        y = self.up(self.mid(self.pool(skip)))
        return self.head(self.dec(torch.cat([y, skip], dim=1)))


class BasicBlock(nn.Module):
    """ResNet basic block with a projection shortcut; conv biases on."""

    def __init__(self, cin=4, cout=6, bias=True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=bias), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.down(x)
        return self.relu(out)


class Separable(nn.Module):
    """Depthwise-separable blocks: dw -> BN -> pw (no padding) -> BN, and dw -> pw -> BN."""

    def __init__(self, c=4, bias=True):
        super().__init__()
        self.dw1 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=bias)
        self.bn_dw = nn.BatchNorm2d(c)
        self.pw1 = nn.Conv2d(c, 2 * c, 1, bias=bias)
        self.bn_pw = nn.BatchNorm2d(2 * c)
        self.dw2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=bias)
        self.pw2 = nn.Conv2d(2 * c, c, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn_pw(self.pw1(self.bn_dw(self.dw1(x)))))
        return F.relu(self.bn2(self.pw2(self.dw2(y))))


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder block on tokens (N, L, D), attention by hand."""

    def __init__(self, d=8, bias=True):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d, bias=bias)
        self.ln1 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, 2 * d)
        self.ff2 = nn.Linear(2 * d, d, bias=bias)
        self.ln2 = nn.LayerNorm(d)

    def forward(self, x):
        att = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / 8**0.5, dim=-1)
        x = self.ln1(x + self.out(att @ self.v(x)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class DiffusionBlock(nn.Module):
    """Diffusion-UNet residual block: GN -> SiLU -> conv -> + time embedding -> GN -> ..."""

    def __init__(self, c=8, groups=2, t=5, bias=True):
        super().__init__()
        self.gn1 = nn.GroupNorm(groups, c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.temb = nn.Linear(t, c, bias=bias)
        self.gn2 = nn.GroupNorm(groups, c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, t):
        h = self.conv1(F.silu(self.gn1(x)))
        h = h + self.temb(t)[:, :, None, None]
        return x + self.conv2(F.silu(self.gn2(h)))


class Conv1dBN(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3, bias=bias)
        self.bn = nn.BatchNorm1d(5)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class TokensBN(nn.Module):
    """Tokens (N, L, D) -> Linear -> transpose -> BatchNorm1d over D -> transpose back."""

    def __init__(self, bias=True):
        super().__init__()
        self.proj = nn.Linear(6, 6, bias=bias)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x):
        return self.bn(self.proj(x).transpose(1, 2)).transpose(1, 2)


class Between(nn.Module):
    """conv(bias) -> [op] -> BatchNorm: negative and positive controls of one op."""

    def __init__(self, op):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.op = op
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.op(self.conv(x)))


class PadAfter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(F.pad(self.conv(x), (1, 1, 1, 1)))


class PaddedConvAfter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv2(self.conv(x)))


class AlsoDirect(nn.Module):
    """The bias reaches BatchNorm and, by a second path, the output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class RMS(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.RMSNorm(6)

    def forward(self, x):
        return self.norm(self.fc(x))


def img(n=4, c=3, s=8):
    return (torch.randn(n, c, s, s, dtype=torch.float64),)


#: name -> (factory, inputs, {parameter: (redundant_dims, dims)}) derived by hand.
EXPECTED = {
    "unet": (UNet, lambda: img(), {
        # Every conv inside a VGG block feeds its BatchNorm directly; the head
        # conv and every BatchNorm beta end in ReLU or the output.
        **{f"{b}.{k}.bias": (c, c) for b, c in (("enc", 4), ("mid", 8), ("dec", 4))
           for k in (0, 3)},
    }),
    "resnet-basic": (BasicBlock, lambda: img(c=4), {
        "conv1.bias": (6, 6), "conv2.bias": (6, 6), "down.0.bias": (6, 6),
    }),
    "separable": (Separable, lambda: img(c=4), {
        # dw1 -> bn_dw; bn_dw's beta -> pw1 (1x1, no padding) -> bn_pw; pw1 -> bn_pw;
        # dw2 -> pw2 (no padding) -> bn2; pw2 -> bn2.
        "dw1.bias": (4, 4), "bn_dw.bias": (4, 4), "pw1.bias": (8, 8),
        "dw2.bias": (8, 8), "pw2.bias": (4, 4),
    }),
    "transformer": (EncoderLayer, lambda: (torch.randn(3, 5, 8, dtype=torch.float64),), {
        # out and ff2 biases reach a LayerNorm over D = 8 through a residual
        # addition: only their mean (1 of 8 dimensions) cancels.
        "out.bias": (1, 8), "ff2.bias": (1, 8),
    }),
    "diffusion": (DiffusionBlock, lambda: (*img(c=8), torch.randn(4, 5, dtype=torch.float64)), {
        # conv1 and the time embedding reach GroupNorm(2, 8): 2 of 8 cancel.
        "conv1.bias": (2, 8), "temb.bias": (2, 8),
    }),
    "conv1d-bn1d": (Conv1dBN, lambda: (torch.randn(4, 3, 9, dtype=torch.float64),), {
        "conv.bias": (5, 5),
    }),
    "tokens-transpose-bn1d": (TokensBN, lambda: (torch.randn(3, 5, 6, dtype=torch.float64),), {
        "proj.bias": (6, 6),
    }),
    "maxpool-between": (lambda: Between(nn.MaxPool2d(2)), img, {"conv.bias": (4, 4)}),
    "avgpool-no-padding": (lambda: Between(nn.AvgPool2d(3, 1, padding=1,
                                                       count_include_pad=False)),
                           img, {"conv.bias": (4, 4)}),
    "upsample-between": (lambda: Between(nn.Upsample(scale_factor=2)), img,
                         {"conv.bias": (4, 4)}),
    # Negative controls: nothing is dead.
    "relu-between": (lambda: Between(nn.ReLU()), img, {}),
    "dropout-between": (lambda: Between(nn.Dropout(0.5)), img, {}),
    "avgpool-counting-padding": (lambda: Between(nn.AvgPool2d(3, 1, padding=1)), img, {}),
    # No rule (yet) for bilinear upsampling: nothing reported (see MISSED).
    "bilinear-between": (lambda: Between(nn.Upsample(scale_factor=2, mode="bilinear")),
                         img, {}),
    "zero-padding-after": (PadAfter, img, {}),
    "padded-conv-after": (PaddedConvAfter, img, {}),
    "also-reaches-output": (AlsoDirect, img, {}),
    "rmsnorm": (RMS, lambda: (torch.randn(4, 6, dtype=torch.float64),), {}),
}

#: Dead parameters the audit does not find (no rule covers the operation):
#: the audit is sound, not complete. The key bias of attention adds q . b_k,
#: the same for every key of a query, which softmax ignores.
MISSED = {"transformer": {"k.bias"}, "bilinear-between": {"conv.bias"}}

#: The same architectures written the recommended way (bias=False before each
#: normalization): no dead parameter.
CLEAN = {
    "unet": (lambda: UNet(bias=False), lambda: img()),
    "resnet-basic": (lambda: BasicBlock(bias=False), lambda: img(c=4)),
    "transformer": (lambda: EncoderLayer(bias=False),
                    lambda: (torch.randn(3, 5, 8, dtype=torch.float64),)),
    "conv1d-bn1d": (lambda: Conv1dBN(bias=False),
                    lambda: (torch.randn(4, 3, 9, dtype=torch.float64),)),
    "tokens-transpose-bn1d": (lambda: TokensBN(bias=False),
                              lambda: (torch.randn(3, 5, 6, dtype=torch.float64),)),
}


# --------------------------------------------------------------------------- #
# independent numeric checks (no code from the package)
# --------------------------------------------------------------------------- #


def _outputs(result):
    return list(result) if isinstance(result, tuple | list) else [result]


def _run(model, inputs):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _outputs(model(*inputs))


def _moved(model, inputs, name, direction):
    model = copy.deepcopy(model).train()
    base = _run(model, inputs)
    with torch.no_grad():
        model.get_parameter(name).add_(direction)
    after = _run(model, inputs)
    scale = 1 + max(float(b.abs().max()) for b in base)
    return max(float((a - b).abs().max()) for a, b in zip(after, base, strict=True)) / scale


def _hand_dead_direction(name, redundant, dims, module):
    """The dead subspace derived by hand: everything, per group, or the mean."""
    if redundant == dims:
        return torch.randn(dims, dtype=torch.float64) * 3
    if redundant == 1:
        return torch.full((dims,), 2.5, dtype=torch.float64)
    per = dims // redundant  # GroupNorm: constant over each group of channels
    return torch.randn(redundant, dtype=torch.float64).repeat_interleave(per) * 3


def _built(name):
    factory, inputs, expected = EXPECTED[name]
    torch.manual_seed(7)
    return factory().double(), inputs(), expected


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", list(EXPECTED))
def test_zoo_model_gives_exactly_its_expected_findings(name):
    model, inputs, expected = _built(name)
    report = audit(model, *inputs)
    dead = {f.parameter: (f.redundant_dims, f.dims) for f in report.findings if f.kind == "dead"}
    assert dead == expected
    assert report.inconsistencies == ()
    assert report.redundant_dims_total == sum(r for r, _ in expected.values())
    for f in report.findings:
        assert f.claims, f.parameter


@pytest.mark.parametrize("name", list(EXPECTED))
def test_expected_findings_hold_numerically_and_the_rest_is_live(name):
    model, inputs, expected = _built(name)
    for pname, (redundant, dims) in expected.items():
        direction = _hand_dead_direction(pname, redundant, dims, model)
        assert _moved(model, inputs, pname, direction) < DEAD_TOL, pname
    # Every bias the audit leaves alone (or the live part of a partial one) moves an output.
    for pname, p in model.named_parameters():
        if not pname.endswith("bias"):
            continue
        direction = torch.randn(p.shape, dtype=torch.float64)
        if pname in expected and expected[pname][0] == 1:
            direction -= direction.mean()
        elif pname in expected and expected[pname][0] < expected[pname][1]:
            r = expected[pname][0]
            direction = direction.reshape(r, -1)
            direction = (direction - direction.mean(dim=1, keepdim=True)).reshape(-1)
        elif pname in expected:
            continue
        if pname in MISSED.get(name, ()):
            assert _moved(model, inputs, pname, direction) < DEAD_TOL, pname
            continue
        assert _moved(model, inputs, pname, direction) > LIVE_TOL, pname


@pytest.mark.parametrize("name", list(CLEAN))
def test_blocks_written_the_recommended_way_come_out_clean(name):
    factory, inputs = CLEAN[name]
    report = audit(factory().double(), *inputs())
    assert [f.parameter for f in report.findings if f.kind == "dead"] == []
    assert report.redundant_dims_total == 0


@pytest.mark.parametrize("name", ["unet", "separable", "diffusion", "transformer",
                                  "tokens-transpose-bn1d", "resnet-basic"])
def test_fix_keeps_outputs_and_gradients_in_both_modes(name):
    model, inputs, expected = _built(name)
    # Train one step first so the running statistics are not the defaults.
    with torch.no_grad():
        model.train()(*inputs)
    report = audit(model, *inputs)
    before = copy.deepcopy(model.state_dict())
    fixed = fix(model, report, *inputs)
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key]), key
    for pname, (redundant, dims) in expected.items():
        module = fixed.get_submodule(pname.rsplit(".", 1)[0])
        if redundant == dims:
            assert module.bias is None, pname
    for mode in ("train", "eval"):
        a = copy.deepcopy(model)
        b = copy.deepcopy(fixed)
        getattr(a, mode)()
        getattr(b, mode)()
        ya, yb = _outputs(a(*inputs)), _outputs(b(*inputs))
        for u, v in zip(ya, yb, strict=True):
            assert float((u - v).detach().abs().max()) < FIX_TOL, mode
        if mode == "train":
            sum(y.square().sum() for y in ya).backward()
            sum(y.square().sum() for y in yb).backward()
            grads_b = dict(b.named_parameters())
            for pname, p in a.named_parameters():
                if pname in grads_b:
                    gb = grads_b[pname].grad
                    assert float((p.grad - gb).abs().max()) < FIX_TOL, pname


def test_partial_finding_projection_keeps_only_the_live_part():
    model, inputs, _ = _built("diffusion")
    fixed = fix(model, audit(model, *inputs), *inputs)
    bias = fixed.conv1.bias.detach().reshape(2, 4)
    assert float(bias.mean(dim=1).abs().max()) < 1e-12
    original = model.conv1.bias.detach().reshape(2, 4)
    assert torch.allclose(bias, original - original.mean(dim=1, keepdim=True))


def test_scale_invariant_weights_are_their_own_kind():
    model, inputs, _ = _built("resnet-basic")
    report = audit(model, *inputs)
    scale = {f.parameter: f for f in report.findings if f.kind == "scale-invariant"}
    # Each conv feeds its BatchNorm directly: every output row scales freely.
    assert set(scale) == {"conv1.weight", "conv2.weight", "down.0.weight"}
    assert scale["conv1.weight"].redundant_dims == 6
    assert "effective learning rate" in scale["conv1.weight"].why
    assert "weight decay" in scale["conv1.weight"].why
    # Not counted among the dead dimensions.
    assert report.redundant_dims_total == 18


# --------------------------------------------------------------------------- #
# adversarial: ways to make the audit call a live parameter dead
# --------------------------------------------------------------------------- #


class CalledTwice(nn.Module):
    """The same conv feeds BatchNorm and, a second time, the output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


class Tied(nn.Module):
    """Two convs share one bias: one before BatchNorm, one before the output."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)
        self.b.bias = self.a.bias
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.a(x)) + self.b(x)


class ReadDirectly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv.bias.sum()


class InPlaceAfterRead(nn.Module):
    """An in-place ReLU changes the value BatchNorm reads after it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        z = y.relu_()
        return self.bn(y) + 0 * z


class Frozen(nn.Module):
    """A model that keeps its BatchNorm in eval mode (running statistics) when trained."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def train(self, mode=True):
        super().train(mode)
        self.bn.eval()
        return self

    def forward(self, x):
        return self.bn(self.conv(x))


class CatBatch(nn.Module):
    """Concatenating along the batch: the constant covers only half the samples."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(torch.cat([self.conv(x), x], dim=0))


class ChannelSliceGN(nn.Module):
    """A per-channel bias on half the channels of a GroupNorm group."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.gn = nn.GroupNorm(1, 5)

    def forward(self, x):
        return self.gn(torch.cat([self.conv(x), x], dim=1))


class Gated(nn.Module):
    """Multiplication by data: (x + c) * g is not x * g + constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x) * torch.sigmoid(x))


class Spatial(nn.Module):
    """A bias expanded along a spatial axis then mixed by a padded conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 1)
        self.conv2 = nn.Conv1d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.conv2(self.conv(x)))


def hooked():
    """A forward hook applies ReLU to the conv's output; the graph does not show it."""
    model = Between(nn.Identity())
    model.conv.register_forward_hook(lambda module, args, out: torch.relu(out))
    return model


def forward_replaced():
    """The batch norm's forward is replaced on the instance (here by a shift and
    ReLU); its class still says BatchNorm2d, and the graph shows a module call."""
    model = Between(nn.Identity())
    bn = model.bn
    model.bn.forward = lambda x: torch.relu(x - bn.running_mean[None, :, None, None])
    return model


def _relu_conv(self, x):
    return torch.relu(nn.Conv2d.forward(self, x))


def call_replaced(attribute):
    """A method ``Module.__call__`` or the conv's forward reads, replaced on the
    instance by one that applies ReLU. ``_compiled_call_impl`` (what
    ``Module.compile`` sets) is dropped by ``copy.deepcopy``, so the copy the
    audit checks numerically is a plain conv: only the rules can refuse it."""
    def factory():
        model = Between(nn.Identity())
        conv = model.conv
        if attribute == "_conv_forward":
            conv._conv_forward = lambda x, w, b: torch.relu(F.conv2d(x, w, b))
        elif attribute == "closure":
            conv._call_impl = lambda x: torch.relu(F.conv2d(x, conv.weight, conv.bias))
        else:
            setattr(conv, attribute, types.MethodType(_relu_conv, conv))
        return model
    return factory


#: name -> (factory, inputs, biases that are live: checked numerically here).
ADVERSARIAL = {
    "called-twice": (CalledTwice, img, ("conv.bias",)),
    "tied": (Tied, img, ("a.bias",)),
    "read-directly": (ReadDirectly, img, ("conv.bias",)),
    "in-place-after-read": (InPlaceAfterRead, img, ("conv.bias",)),
    "frozen-bn": (Frozen, img, ("conv.bias",)),
    "cat-along-batch": (CatBatch, img, ("conv.bias",)),
    "channel-slice-groupnorm": (ChannelSliceGN, img, ("conv.bias",)),
    "gated": (Gated, img, ("conv.bias",)),
    "forward-hook": (hooked, img, ("conv.bias",)),
    "forward-replaced": (forward_replaced, img, ("conv.bias",)),
    "call-impl-replaced": (call_replaced("_call_impl"), img, ("conv.bias",)),
    "conv-forward-replaced": (call_replaced("_conv_forward"), img, ("conv.bias",)),
    "padded-conv1d": (Spatial, lambda: (torch.randn(4, 3, 7, dtype=torch.float64),),
                      ("conv.bias",)),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_models_report_no_live_parameter(name):
    factory, inputs, live = ADVERSARIAL[name]
    torch.manual_seed(3)
    model, xs = factory().double(), inputs()
    report = audit(model, *xs)
    dead = {f.parameter for f in report.findings if f.kind == "dead"}
    # The rules alone say nothing false: the numeric confirmation dropped nothing.
    assert report.inconsistencies == ()
    for f in report.findings:
        if f.kind != "dead":
            continue
        # Whatever is reported must be dead: check by hand along the reported subspace.
        p = model.get_parameter(f.parameter)
        labels = torch.tensor([max(b, 0) for b in f.blocks])
        mask = torch.tensor([b >= 0 for b in f.blocks], dtype=torch.float64)
        direction = torch.randn(max(f.blocks) + 1, dtype=torch.float64)[labels] * mask
        assert _moved(model, xs, f.parameter, direction.reshape(p.shape)) < DEAD_TOL
    for pname in live:
        p = model.get_parameter(pname)
        assert _moved(model, xs, pname, torch.randn(p.shape, dtype=torch.float64)) > LIVE_TOL
        assert pname not in dead


@pytest.mark.parametrize("attribute", ["forward", "_call_impl", "_compiled_call_impl",
                                       "_conv_forward", "closure"])
def test_a_conv_computing_otherwise_than_its_class_gets_no_finding(attribute):
    # The copy the audit confirms on (and _moved perturbs) does not always
    # compute like the model: copy.deepcopy drops _compiled_call_impl, and the
    # closure keeps reading the original conv. So liveness is checked on the
    # model itself here, and the rules must not claim anything about the conv.
    torch.manual_seed(3)
    if attribute == "forward":
        model = Between(nn.Identity())
        model.conv.forward = types.MethodType(_relu_conv, model.conv)
    else:
        model = call_replaced(attribute)()
    model, xs = model.double().train(), img()
    bias = model.conv.bias
    with torch.no_grad():
        before = model(*xs).clone()
        bias.add_(3.0)
        moved = float((model(*xs) - before).abs().max())
        bias.sub_(3.0)
    assert moved > 1e-3  # the bias is live
    report = audit(model, *xs)
    assert [f.parameter for f in report.findings if f.parameter.startswith("conv.")] == []
    assert report.inconsistencies == ()
    # negative control: the same model without the replacement has a dead bias
    plain = audit(Between(nn.Identity()).double(), *xs)
    assert ("dead", "conv.bias") in {(f.kind, f.parameter) for f in plain.findings}


def _root_hooked(model):
    model.register_forward_hook(lambda mod, i, out: out + model[0].bias.view(1, -1, 1, 1))


def _root_forward(model):
    plain = model.forward
    model.forward = lambda x: plain(x) + model[0].bias.view(1, -1, 1, 1)


def _inner_compiled(model):
    # a non-leaf module: torch.fx traces through it and would not call this
    model[0]._compiled_call_impl = lambda x: model[0][0](x) + model[0][0].bias.view(1, -1, 1, 1)


def _inner_call_impl(model):
    model[0]._call_impl = lambda x: model[0][0](x) + model[0][0].bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("change, flat", [
    (_root_hooked, True), (_root_forward, True), (_inner_compiled, False),
    (_inner_call_impl, False)])
def test_code_torch_fx_would_not_see_is_refused(change, flat):
    # Each reads the conv's bias outside the traced graph, so the bias is live;
    # the numeric check (on a deep copy) could not tell, so the audit refuses.
    torch.manual_seed(3)
    conv_bn = [nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)]
    model = (nn.Sequential(*conv_bn) if flat else nn.Sequential(nn.Sequential(*conv_bn)))
    model = model.double().train()
    change(model)
    xs = img()
    bias = model.get_parameter("0.bias" if flat else "0.0.bias")
    with torch.no_grad():
        before = model(*xs).clone()
        bias.add_(1.0)
        assert float((model(*xs) - before).abs().max()) > 1e-3  # live
        bias.sub_(1.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CaptureError, match="torch.fx traces the class's forward"):
        audit(model, *xs)
    for k, v in model.state_dict().items():  # the model is left as it was
        assert torch.equal(v, state[k]), k


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated")
def test_a_model_that_cannot_be_copied_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).double()
    model[0] = torch.nn.utils.weight_norm(model[0])  # the old API: deepcopy fails
    xs = img()
    model(*xs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CaptureError, match="cannot be copied.*parametrizations.weight_norm"):
        audit(model, *xs)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


# compiling imports parts of PyTorch that warn about torch.jit's deprecation
@pytest.mark.filterwarnings("ignore:`torch.jit.script.*is deprecated:DeprecationWarning")
def test_a_real_module_compile_is_audited_as_the_class_computes():
    torch.manual_seed(3)
    plain = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), nn.ReLU())
    want = {(f.kind, f.parameter) for f in audit(copy.deepcopy(plain).double(), *img()).findings}
    assert ("dead", "0.0.bias") in want
    for target in ("", "0"):  # the whole model, then the inner block
        model = copy.deepcopy(plain).double()
        model.get_submodule(target).compile()
        assert {(f.kind, f.parameter) for f in audit(model, *img()).findings} == want


def test_channel_slice_groupnorm_is_reported_only_where_it_cancels():
    # Negative control of the adversarial check: the same concat with GroupNorm(5, 5)
    # (one channel per group) cancels the slice's bias completely.
    class PerChannel(ChannelSliceGN):
        def __init__(self):
            super().__init__()
            self.gn = nn.GroupNorm(5, 5)

    model = PerChannel().double()
    report = audit(model, *img())
    assert {f.parameter: f.redundant_dims for f in report.findings if f.kind == "dead"} == {
        "conv.bias": 2
    }


class ShapeBranch(nn.Module):
    """A branch on the input's shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 5)
        self.ln = nn.LayerNorm(5)

    def forward(self, x):
        if x.shape[0] > 1:
            x = F.max_pool2d(self.bn(self.conv(x)), 2)
        z = self.gn(self.conv2(x))
        return self.ln(self.fc(z.mean((2, 3))))


@pytest.mark.slow
def test_export_fallback_maps_aten_calls_back_to_modules():
    torch.manual_seed(5)
    model = ShapeBranch().double()
    report = audit(model, *img())
    assert report.capture == "torch.export"
    dead = {f.parameter: (f.redundant_dims, f.dims) for f in report.findings if f.kind == "dead"}
    # By hand: conv -> bn (all 4), conv2 -> GroupNorm(2) (2 of 4), fc -> LayerNorm (1 of 5);
    # bn's beta passes max-pool and conv2 (a mix of channels) into GroupNorm: live.
    assert dead == {"conv.bias": (4, 4), "conv2.bias": (2, 4), "fc.bias": (1, 5)}
    assert report.inconsistencies == ()
    assert _moved(model, img(), "bn.bias", torch.randn(4, dtype=torch.float64)) > LIVE_TOL


def test_bad_input_is_a_clear_error_and_changes_nothing():
    model, inputs, _ = _built("conv1d-bn1d")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        audit("not a model", *inputs)
    with pytest.raises(TypeError, match="at least one example input"):
        audit(model)
    with pytest.raises(TypeError, match="floating-point"):
        audit(model, torch.ones(4, 3, 9, dtype=torch.long))
    report = audit(model, *inputs)
    other, _, _ = _built("tokens-transpose-bn1d")
    with pytest.raises(ValueError, match="does not match the model"):
        fix(other, report, *inputs)
    with pytest.raises(ValueError, match="needs the example inputs"):
        fix(model, report)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.conv.bias is not None
