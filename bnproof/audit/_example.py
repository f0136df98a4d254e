"""A built-in example model for the report and the notes, audited end to end."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._audit import audit
from ._confirm import outputs
from ._fix import fix, fix_notes

__all__ = ["EXAMPLE_INPUT_SHAPE", "ExampleNet", "audit_example"]

#: Batch of 4 RGB images of 8x8 pixels.
EXAMPLE_INPUT_SHAPE = (4, 3, 8, 8)


class ExampleNet(nn.Module):
    """conv -> BN -> ReLU -> max-pool -> 1x1 conv -> GroupNorm(2) -> ReLU -> linear -> LayerNorm.

    Written the way much public code is: every layer keeps its default bias.
    By hand: ``conv1.bias`` cancels in BatchNorm (8 of 8 dimensions),
    ``conv2.bias`` only by its per-group means in GroupNorm(2) (2 of 8),
    ``fc.bias`` only by its mean in LayerNorm (1 of 6); ``bn1.bias`` and
    ``gn.bias`` reach ReLU and stay live.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.gn = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8 * 4 * 4, 6)
        self.ln = nn.LayerNorm(6)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.gn(self.conv2(x)))
        return self.ln(self.fc(x.flatten(1)))


def _max_change(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ya, yb = outputs(a(x)), outputs(b(x))
    return max(float((u - v).abs().max()) for u, v in zip(ya, yb, strict=True))


def audit_example(seed: int = 0) -> dict:
    """Audit :class:`ExampleNet`, fix it, and check the fix; return plain data.

    Returns
    -------
    dict
        ``model`` (a description), ``input_shape``, ``report`` (the JSON of
        ``bnproof audit --json``), ``why`` (parameter -> sentence),
        ``inconsistencies``, ``fix`` (``notes`` and the largest output change
        in float64 after one training step, in training and inference mode).
    """
    torch.manual_seed(seed)
    model = ExampleNet().double()
    x = torch.randn(*EXAMPLE_INPUT_SHAPE, dtype=torch.float64)
    with torch.no_grad():
        model.train()(x)  # one batch through, so the running means are not zero
    report = audit(model, x)
    fixed = fix(model, report, x)
    changes = {}
    for mode in ("train", "eval"):
        a, b = copy.deepcopy(model), copy.deepcopy(fixed)
        getattr(a, mode)()
        getattr(b, mode)()
        changes[mode] = _max_change(a, b, x)
    return {
        "model": (ExampleNet.__doc__ or "").splitlines()[0],
        "input_shape": list(EXAMPLE_INPUT_SHAPE),
        "report": report.to_json(),
        "why": {f.parameter: f.why for f in report.findings},
        "inconsistencies": list(report.inconsistencies),
        "fix": {
            "notes": [
                {"parameter": n.parameter, "action": n.action, "detail": n.detail}
                for n in fix_notes(model, report)
            ],
            "train_max_change": changes["train"],
            "eval_max_change": changes["eval"],
        },
    }
