"""The report's section on auditing a model: collect plain data, then build blocks.

:func:`collect_audit` runs :func:`bnproof.audit.audit_example` (PyTorch is
imported there, only when it is installed) and returns plain data;
:func:`audit_blocks` turns that data into format-neutral blocks and never
computes anything. Without PyTorch the section says so.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._document import Block, Heading, Para, _table, fmt, text

__all__ = ["audit_blocks", "collect_audit"]

ANCHOR = "audit"


def collect_audit() -> dict | None:
    """Audit the built-in example model; None when PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    from bnproof.audit._example import audit_example

    return audit_example()


def audit_blocks(data: Mapping | None) -> list[Block]:
    """Return the section's blocks for the data of :func:`collect_audit`."""
    blocks: list[Block] = [Heading(2, "Auditing a model: dead biases, proved", ANCHOR)]
    blocks.append(text(
        "bnproof audit traces a PyTorch model and carries every bias through the graph as "
        "a constant. A bias is dead when every path from it ends in a normalization that "
        "subtracts it, through operations proved to keep a constant a constant (each step "
        "cites a claim of the catalogue); an operation without a proved rule stops the "
        "search. Each finding is then confirmed in float64 training mode."
    ))
    if data is None:
        blocks.append(text("PyTorch is not installed, so the example was not audited "
                           "(pip install torch).", style="note"))
        return blocks
    report = data["report"]
    blocks.append(Para((
        ("text", "Example model: "),
        ("code", str(data["model"])),
        ("text", f", inputs of shape {tuple(data['input_shape'])}."),
    )))
    rows = [
        (
            f["parameter"],
            f["kind"],
            f"{f['redundant_dims']} of {f['dims']}",
            f["normalization"],
            " -> ".join(f["through"]) or "direct",
            ", ".join(f["claims"]),
        )
        for f in report["findings"]
    ]
    blocks.append(_table(
        ("parameter", "kind", "dead dimensions", "normalization", "path", "claims"),
        rows,
        caption=(f"{report['redundant_dims_total']} of {report['parameters_total']} trainable "
                 "parameter entries are dead in training mode."),
        numeric=(False, False, True, False, False, False),
    ))
    for parameter, why in data["why"].items():
        blocks.append(Para((("code", parameter), ("text", ": " + why))))
    for problem in data["inconsistencies"]:
        blocks.append(text("Dropped (the numbers disagreed with the rules): " + problem,
                           style="fail"))
    fixed = data["fix"]
    actions = "; ".join(f"{n['parameter']} {n['action']}" for n in fixed["notes"])
    blocks.append(text(
        f"bnproof.audit.fix removes what is dead ({actions}) and shifts the running means "
        "the removed biases fed. Largest output change in float64: "
        f"{fmt(fixed['train_max_change'])} in training mode, "
        f"{fmt(fixed['eval_max_change'])} in inference mode.",
        style="ok" if max(fixed["train_max_change"], fixed["eval_max_change"]) < 1e-10
        else "fail",
    ))
    return blocks
