"""The report's invariance-table section, built from plain data.

:func:`invariance_data` keeps what the section needs from the proofs (the
table of :func:`bnproof.symbolic.table` and the cells' notes);
:func:`invariance_blocks` turns it into report blocks: the table as a
formula (MathML in HTML), and a list linking every cell to its derivation
(the claim's own section, anchor ``claim-<id>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

__all__ = ["invariance_blocks", "invariance_data"]

#: Short column names for the formula.
_SHORT = {
    "weight-matrix-rescaling": "WS",
    "weight-matrix-recentering": "WC",
    "weight-vector-rescaling": "VS",
    "dataset-rescaling": "DS",
    "dataset-recentering": "DC",
    "case-rescaling": "CS",
    "bias-shared": "BS",
    "bias-per-feature": "BF",
    "bias-per-group": "BG",
}


def invariance_data(claims: Sequence) -> dict | None:
    """Return ``{"table": ..., "notes": {id: note}}`` from the report's claim results.

    Parameters
    ----------
    claims : sequence of ClaimResult
        The proved claims (those of group ``"invariances"`` are used).

    Returns
    -------
    dict or None
        ``None`` when no cell was proved (the proofs did not run).
    """
    from bnproof.symbolic import table

    proofs = {c.proof.claim_id: c.proof for c in claims
              if getattr(c.claim, "group", "") == "invariances"}
    if not proofs:
        return None
    notes = {c.claim.id: c.claim.note for c in claims
             if getattr(c.claim, "group", "") == "invariances" and c.claim.note}
    return {"table": table(proofs), "notes": notes}


def _mark(cell: dict) -> str:
    if cell["verdict"] == "invariant":
        return "I_{0}" if cell["condition"] == "eps = 0" else "I"
    return "X" if cell["verdict"] == "not invariant" else "U"


def _words(cell: dict) -> str:
    out = cell["verdict"]
    notes = [cell["condition"]] if cell["verdict"] == "invariant" and cell["condition"] else []
    if cell["verdict"] == "invariant":
        notes.append("symbolic sizes" if cell.get("symbolic") else "concrete sizes only")
    return out + (f" ({'; '.join(notes)})" if notes else "")


def _symbolic_text(tab: dict) -> str:
    cells = [cell for row in tab.values() for cell in row.values()]
    invariant = [cell for cell in cells if cell["verdict"] == "invariant"]
    symbolic = sum(cell["symbolic"] for cell in invariant)
    if invariant and symbolic == len(invariant):
        done = "every invariant cell is also proved for symbolic sizes"
    else:
        done = (f"{symbolic} of the {len(invariant)} invariant cells are also proved for "
                "symbolic sizes")
    return (done + " (batch size N, features or channels C = G K, positions P, inputs D), "
            "under the same condition. A counterexample at concrete sizes refutes a cell at "
            "every size.")


def invariance_blocks(data: dict | None) -> list:
    """Return the section's blocks (heading, table formula, linked cells, notes).

    Parameters
    ----------
    data : dict or None
        :func:`invariance_data`'s result; ``None`` says the table was not run.

    Returns
    -------
    list of Block
    """
    from ._document import Heading, ItemList, Math, Para, text

    blocks: list = [Heading(2, "Invariances of the normalization family", "invariances")]
    if not data:
        blocks.append(text("The invariance table was not proved for this report."))
        return blocks
    tab = data["table"]
    columns = list(dict.fromkeys(c for row in tab.values() for c in row))
    blocks.append(text(
        "Is the normalized output (training mode) invariant under each transformation? "
        "The setting of Ba, Kiros & Hinton (2016), section 5.1: summed inputs a = W x, "
        "normalization, then a per-feature gain and bias. Batch, group and instance "
        "normalization act on channels x positions; layer, RMS and weight normalization "
        "on feature vectors. I: invariant for every eps >= 0; I_0: invariant at eps = 0 "
        "only; X: not invariant (a counterexample in exact rationals); U: unproved. Every "
        "cell is decided at concrete sizes, every output index checked; " + _symbolic_text(tab)))
    blocks.append(text("Columns: " + "; ".join(
        f"{_SHORT.get(c, c)} {c.replace('-', ' ')}" for c in columns) + "."))
    header = [sympy.Symbol(r"\mathrm{" + _SHORT.get(c, c) + "}") for c in columns]
    rows = [[sympy.Symbol(r"\mathrm{" + r + "}"),
             *(sympy.Symbol(_mark(cells[c])) if c in cells else sympy.Symbol("-")
               for c in columns)] for r, cells in tab.items()]
    blocks.append(Math(sympy.ImmutableMatrix([[sympy.Symbol(r"\mathrm{norm}"), *header], *rows])))
    items = []
    for r, cells in tab.items():
        runs: list[tuple[str, str]] = [("strong", f"{r}: ")]
        for k, (c, cell) in enumerate(cells.items()):
            if k:
                runs.append(("text", "; "))
            runs.append((f"link:claim-{cell['claim']}", f"{c} {_words(cell)}"))
        items.append((Para(tuple(runs)),))
    blocks.append(Para((("strong", "Each cell and its derivation"),)))
    blocks.append(ItemList(tuple(items)))
    if data.get("notes"):
        blocks.append(Para((("strong", "Against the published table"),)))
        blocks.append(ItemList(tuple(
            (Para(((f"link:claim-{cid}", cid), ("text", f": {note}"))),)
            for cid, note in data["notes"].items())))
    return blocks
