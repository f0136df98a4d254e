"""The report section auditing the built-in example model (blocks from plain data)."""

from __future__ import annotations

import pytest

from bnproof.report._audit import audit_blocks, collect_audit
from bnproof.report._document import Heading, Para, Table

#: The fix promise of the audit: outputs unchanged to 1e-10 in float64.
FIX_TOL = 1e-10


def test_section_without_torch_says_so():
    blocks = audit_blocks(None)
    assert isinstance(blocks[0], Heading) and blocks[0].anchor == "audit"
    assert any("PyTorch is not installed" in run[1] for b in blocks if isinstance(b, Para)
               for run in b.runs)


def test_example_model_findings_match_the_hand_derivation():
    pytest.importorskip("torch", reason="the example is audited with PyTorch")
    data = collect_audit()
    dead = {f["parameter"]: (f["redundant_dims"], f["dims"])
            for f in data["report"]["findings"] if f["kind"] == "dead"}
    # By hand (see ExampleNet): BatchNorm cancels all 8, GroupNorm(2) 2 of 8,
    # LayerNorm over 6 features 1 of 6.
    assert dead == {"conv1.bias": (8, 8), "conv2.bias": (2, 8), "fc.bias": (1, 6)}
    assert data["inconsistencies"] == []
    assert data["fix"]["train_max_change"] < FIX_TOL
    assert data["fix"]["eval_max_change"] < FIX_TOL
    blocks = audit_blocks(data)
    table = next(b for b in blocks if isinstance(b, Table))
    assert [r[0] for r in table.rows] == [f["parameter"] for f in data["report"]["findings"]]
    assert "11 of" in table.caption
    assert blocks[-1].style == "ok"
