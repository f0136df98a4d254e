"""Models built to make the audit call a live parameter dead; it must not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bnproof.audit import audit  # noqa: E402
from bnproof.audit._confirm import confirm  # noqa: E402
from bnproof.audit._records import Finding  # noqa: E402


def _claimed_dead(parameter: str, size: int) -> Finding:
    """A (wrong) claim that the whole of ``parameter`` is dead."""
    return Finding(parameter=parameter, kind="dead", shape=(size,), redundant_dims=size,
                   dims=size, normalization="bn (BatchNorm1d)", through=(), claims=(),
                   why="planted", blocks=(0,) * size)


class _LiveWithBigOutput(nn.Module):
    """A live bias plus a second, large and unrelated output."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(x), x.sum() * 1e7


def test_confirmation_compares_each_output_on_its_own_scale():
    torch.manual_seed(0)
    model = _LiveWithBigOutput().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    kept, problems = confirm(model, [x], [_claimed_dead("lin.bias", 4)])
    assert kept == [] and len(problems) == 1


def test_confirmation_perturbs_on_the_scale_of_the_activations():
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):  # the bias is live: the product is not a shift
            y = self.lin(x)
            return self.bn(y[:, :2] * y[:, 2:])

    model = Model().double()
    x = torch.randn(6, 3, dtype=torch.float64) * 1e7  # activations of size 1e7
    kept, problems = confirm(model, [x], [_claimed_dead("lin.bias", 4)])
    assert kept == [] and len(problems) == 1


def test_confirmation_still_keeps_a_true_finding_next_to_a_big_output():
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.lin(x)), x.sum() * 1e7

    model = Model().double()
    x = torch.randn(6, 3, dtype=torch.float64) * 1e7
    report = audit(model, x)
    assert sorted((f.parameter, f.kind) for f in report.findings) == [
        ("lin.bias", "dead"), ("lin.weight", "scale-invariant")]
