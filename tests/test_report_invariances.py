"""The report's invariance section: the table as MathML, each cell linked to its proof."""

from bnproof.report._collect import ClaimResult
from bnproof.report._document import Heading, ItemList, Math, Para
from bnproof.report._html import _math
from bnproof.report._invariances import invariance_blocks, invariance_data
from bnproof.symbolic import CLAIMS


def test_section_links_every_cell_to_its_derivation(table_proofs):
    results = [ClaimResult(CLAIMS[cid], proof) for cid, proof in table_proofs.items()]
    data = invariance_data(results)
    blocks = invariance_blocks(data)
    assert blocks[0] == Heading(2, "Invariances of the normalization family", "invariances")
    links = {kind[5:] for b in blocks if isinstance(b, ItemList) for item in b.items
             for para in item if isinstance(para, Para) for kind, _ in para.runs
             if kind.startswith("link:")}
    assert {f"claim-{cid}" for cid in table_proofs} <= links
    formula = next(b for b in blocks if isinstance(b, Math))
    html = _math(formula)
    assert html.startswith("<math") and "<mtable>" in html
    assert html.count("<mtr>") == 7  # a header row and six normalizations
    intro = blocks[1].runs[0][1]
    assert "every invariant cell is also proved for symbolic sizes" in intro
    words = [text for b in blocks if isinstance(b, ItemList) for item in b.items
             for para in item for kind, text in para.runs if kind == "link:claim-batch-bias-shared"]
    assert words == ["bias-shared invariant (any eps >= 0; symbolic sizes)"]


def test_section_says_which_cells_are_concrete_only(table_proofs):
    import dataclasses

    proofs = dict(table_proofs)
    proofs["layer-bias-shared"] = dataclasses.replace(proofs["layer-bias-shared"],
                                                      symbolic_n=False)
    results = [ClaimResult(CLAIMS[cid], proof) for cid, proof in proofs.items()]
    blocks = invariance_blocks(invariance_data(results))
    assert "29 of the 30 invariant cells are also proved" in blocks[1].runs[0][1]
    words = [text for b in blocks if isinstance(b, ItemList) for item in b.items
             for para in item for kind, text in para.runs if kind == "link:claim-layer-bias-shared"]
    assert words == ["bias-shared invariant (any eps >= 0; concrete sizes only)"]


def test_section_says_when_the_table_was_not_run():
    blocks = invariance_blocks(None)
    assert "not proved" in blocks[1].runs[0][1]
    assert invariance_data([]) is None
