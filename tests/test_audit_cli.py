"""``bnproof audit``: table, JSON, exit codes, --fix, and clear errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bnproof.cli import main

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, bias=True):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=bias)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    def biased():
        return Block()

    def clean():
        return Block(bias=False)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            if x.sum() > 0:
                return self.conv(x)
            return x

    def branchy():
        return Branchy()

    def not_a_model():
        return 3

    def broken():
        raise RuntimeError("cannot build")
    """
)


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS, encoding="utf-8")
    return path


def _needs_torch():
    pytest.importorskip("torch", reason="bnproof audit needs PyTorch")


def test_table_lists_the_dead_bias_and_exits_1(models, capsys):
    _needs_torch()
    assert main(["audit", f"{models}:biased", "--input-shape", "2,3,8,8"]) == 1
    out = capsys.readouterr().out
    assert "conv.bias" in out and "4/4" in out and "bn (BatchNorm2d)" in out
    assert "batch-bias-per-feature" in out
    assert "1 dead parameter(s): 4 of 120 trainable parameter entries" in out
    assert "effective learning rate" in out


def test_json_has_exactly_the_documented_fields(models, capsys):
    _needs_torch()
    assert main(["audit", f"{models}:biased", "--input-shape", "2,3,8,8", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"findings", "redundant_dims_total", "parameters_total"}
    assert doc["redundant_dims_total"] == 4
    assert doc["parameters_total"] == 4 * 3 * 9 + 4 + 4 + 4
    dead = [f for f in doc["findings"] if f["kind"] == "dead"]
    assert dead == [{
        "parameter": "conv.bias", "kind": "dead", "redundant_dims": 4, "dims": 4,
        "normalization": "bn (BatchNorm2d)", "through": [],
        "claims": ["batch-bias-per-feature", "bias-cancels-train", "shift-invariance"],
    }]
    for f in doc["findings"]:
        assert set(f) == {"parameter", "kind", "redundant_dims", "dims", "normalization",
                          "through", "claims"}


def test_clean_model_exits_0(models, capsys):
    _needs_torch()
    assert main(["audit", f"{models}:clean", "--input-shape", "2,3,8,8", "--dtype",
                 "float64"]) == 0
    assert "0 dead parameter(s)" in capsys.readouterr().out


def test_fix_writes_the_state_dict_without_the_dead_bias(models, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    out = tmp_path / "fixed.pt"
    assert main(["audit", f"{models}:biased", "--input-shape", "2,3,8,8", "--fix",
                 str(out)]) == 1
    state = torch.load(out)
    assert "conv.bias" not in state and "conv.weight" in state
    assert "conv.bias removed" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bnproof-")] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nofile.py:make", "--input-shape", "2,3"], "does not exist"),
        (["models_without_colon", "--input-shape", "2,3"], "is not FILE.py:FACTORY"),
        (["{models}:biased", "--input-shape", "2,x"], "comma-separated"),
        (["{models}:biased", "--input-shape", "2,0,3"], "must be >= 1"),
        (["{models}:biased", "--input-shape", "2,3", "--fix", "/no/such/dir/out.pt"],
         "does not exist"),
    ],
)
def test_usage_errors_exit_2_before_torch_is_imported(models, argv, message):
    argv = [a.replace("{models}", str(models)) for a in argv]
    code = (
        "import sys\n"
        "from bnproof.cli import main\n"
        f"rc = main(['audit', *{argv!r}])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "comma-separated" in message or "must be" in message:
        # argparse exits with 2 itself
        assert proc.returncode == 2, proc.stderr
    else:
        assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("factory", "shape", "message"),
    [
        ("branchy", "2,3,8,8", "torch.fx cannot trace the model"),
        ("not_a_model", "2,3,8,8", "not a torch.nn.Module"),
        ("broken", "2,3,8,8", "cannot build"),
        ("nope", "2,3,8,8", "has no callable nope"),
        ("biased", "2,5,8,8", "do not run through the model"),
    ],
)
def test_model_errors_exit_2_with_the_reason(models, factory, shape, message, capsys):
    _needs_torch()
    assert main(["audit", f"{models}:{factory}", "--input-shape", shape]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_torch_is_a_clear_error(models, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert main(["audit", f"{models}:biased", "--input-shape", "2,3,8,8"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err
