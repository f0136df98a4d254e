"""Confirm each finding numerically in float64 training mode."""

from __future__ import annotations

import copy

import torch

from ._records import Finding

__all__ = ["DEAD_RTOL", "LIVE_RTOL", "confirm", "outputs"]

#: A dead direction may move an output by at most this, relative to that
#: output's own largest entry (each output on its own scale, so a large
#: unrelated output cannot hide a change). A cancelled shift of size about 1 leaves float64
#: rounding, which normalizations over few values amplify: a ResNet-50 at
#: batch 2 and 32x32 inputs (1x1 positions in its last stage) shows up to
#: 2e-8. A live bias of that size moves outputs by about 1e-2 to 1.
DEAD_RTOL = 1e-6
#: A live direction must move some output by more than this (same scale).
LIVE_RTOL = 1e-4
#: The eps scale-invariant weights are confirmed at. The invariance holds at
#: eps = 0, which PyTorch refuses in training; at this eps the residual
#: (relative size eps / variance) is far below float64 rounding.
CONFIRM_EPS = 1e-30
#: Seed of the perturbation directions (the audit is deterministic).
_SEED = 1234


def outputs(result) -> list[torch.Tensor]:
    """Every tensor in a model's output (tensors, tuples, lists, dicts)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for v in result.values() for t in outputs(v)]
    if isinstance(result, list | tuple):
        return [t for v in result for t in outputs(v)]
    return []


def _forward(model, inputs) -> list[torch.Tensor]:
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [t.detach().clone() for t in outputs(model(*inputs))]


def _moved(a: list, b: list) -> float:
    """Largest change of any output, each relative to its own largest entry."""
    if any(not bool(torch.isfinite(t).all()) for t in b):
        return float("inf")
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if not x.numel():
            continue
        change = float((x - y).abs().max())
        scale = float(x.abs().max())
        if change == 0.0:
            continue
        worst = max(worst, change / scale if scale > 0.0 else float("inf"))
    return worst


def _activation_scales(work, inputs, names) -> dict[str, float]:
    """1 + the largest output entry of each named module (where its bias is added)."""
    scales, handles = dict.fromkeys(names, 1.0), []

    def hook(name):
        def record(_module, _args, out):
            for t in outputs(out):
                if t.numel():
                    scales[name] = max(scales[name], 1.0 + float(t.detach().abs().max()))
        return record

    for name in names:
        handles.append(work.get_submodule(name).register_forward_hook(hook(name)))
    try:
        _forward(work, inputs)
    finally:
        for h in handles:
            h.remove()
    return scales


def _owner(parameter: str) -> str:
    return parameter.rpartition(".")[0]


def _dead_direction(labels, shape, gen) -> torch.Tensor:
    values = torch.randn(max(labels) + 1, generator=gen, dtype=torch.float64)
    index = torch.tensor([max(lab, 0) for lab in labels])
    mask = torch.tensor([lab >= 0 for lab in labels], dtype=torch.float64)
    return (values[index] * mask).reshape(shape)


def _live_direction(labels, shape, gen) -> torch.Tensor:
    r = torch.randn(len(labels), generator=gen, dtype=torch.float64)
    out = r.clone()
    for lab in set(labels) - {-1}:
        members = [k for k, v in enumerate(labels) if v == lab]
        out[members] -= r[members].mean()
    return out.reshape(shape)


def _group_moved(work, inputs, base, group, perturb) -> dict[str, float]:
    """How far the outputs move when ``group`` is perturbed; bisect when they do.

    All findings of a group are perturbed at once (each along its own random
    direction); when no output moves, each is confirmed with that one
    forward pass. When some output moves, the group is split in halves until
    the findings that move it are isolated, so a dropped finding is always
    one that moved an output on its own.
    """
    originals = {f.parameter: work.get_parameter(f.parameter).detach().clone() for f in group}
    with torch.no_grad():
        for f in group:
            perturb(f, work.get_parameter(f.parameter))
    moved = _moved(base, _forward(work, inputs))
    with torch.no_grad():
        for f in group:
            work.get_parameter(f.parameter).copy_(originals[f.parameter])
    if moved <= DEAD_RTOL or len(group) == 1:
        return dict.fromkeys(originals, moved)
    half = len(group) // 2
    return {**_group_moved(work, inputs, base, group[:half], perturb),
            **_group_moved(work, inputs, base, group[half:], perturb)}


def _norm_name(finding: Finding) -> str:
    return finding.normalization.split(" (")[0]


def confirm(model, example_inputs, findings) -> tuple[list[Finding], list[str]]:
    """Keep the findings that the numbers agree with; describe the others.

    Parameters
    ----------
    model : torch.nn.Module
        The original model (copied, never modified).
    example_inputs : sequence of torch.Tensor
        The inputs; used in float64.
    findings : list of Finding

    Returns
    -------
    (list of Finding, list of str)
        The confirmed findings and a sentence per dropped one.
    """
    inputs = [x.detach().to(torch.float64) for x in example_inputs]
    gen = torch.Generator().manual_seed(_SEED)
    kept, problems = [], []
    dead = [f for f in findings if f.kind == "dead"]
    scale = [f for f in findings if f.kind == "scale-invariant"]
    if not findings:
        return kept, problems
    work = copy.deepcopy(model).double().train()
    # Each perturbation is as large as the activations its parameter is added
    # to, so a large input cannot make a live change look like rounding.
    sizes = _activation_scales(work, inputs, {_owner(f.parameter) for f in dead})
    directions = {}
    for f in dead:
        p = work.get_parameter(f.parameter)
        directions[f.parameter] = (_dead_direction(f.blocks, p.shape, gen)
                                   * sizes[_owner(f.parameter)])
    if dead:
        base = _forward(work, inputs)

        def shift(f, p):
            p.add_(directions[f.parameter])

        moved = _group_moved(work, inputs, base, dead, shift)
        for f in dead:
            live = None
            if f.partial and moved[f.parameter] <= DEAD_RTOL:
                p = work.get_parameter(f.parameter)
                original = p.detach().clone()
                with torch.no_grad():
                    p.add_(_live_direction(f.blocks, p.shape, gen)
                           * sizes[_owner(f.parameter)])
                live = _moved(base, _forward(work, inputs))
                with torch.no_grad():
                    p.copy_(original)
            if moved[f.parameter] > DEAD_RTOL:
                problems.append(f"{f.parameter}: the rules say dead, yet moving it along the "
                                f"dead subspace moved an output by {moved[f.parameter]:.3g} "
                                "(relative); dropped")
            elif live is not None and live <= LIVE_RTOL:
                problems.append(f"{f.parameter}: the live part did not move any output "
                                f"({live:.3g}); the partial finding is dropped")
            else:
                kept.append(f)
    if scale:
        saved = {}
        for f in scale:
            module = work.get_submodule(_norm_name(f))
            saved.setdefault(module, module.eps)
            module.eps = CONFIRM_EPS
        factors = {}
        for f in scale:
            p = work.get_parameter(f.parameter)
            values = torch.exp(torch.rand(max(f.blocks) + 1, generator=gen,
                                          dtype=torch.float64) * 1.4 - 0.7)
            factors[f.parameter] = values[list(f.blocks)].reshape((-1,) + (1,) * (p.ndim - 1))
        base = _forward(work, inputs)

        def rescale(f, p):
            p.mul_(factors[f.parameter])

        moved = _group_moved(work, inputs, base, scale, rescale)
        for module, eps in saved.items():
            module.eps = eps
        for f in scale:
            if moved[f.parameter] > DEAD_RTOL:
                problems.append(f"{f.parameter}: rescaling it moved an output by "
                                f"{moved[f.parameter]:.3g} (relative) at eps = 0; dropped")
            else:
                kept.append(f)
    return kept, problems
