"""The report's content as a list of format-neutral blocks.

:func:`build` turns a :class:`~bnproof.report._collect.ReportData` into
headings, paragraphs, formulas, tables and figures once; the HTML, Markdown
and LaTeX writers only render these blocks, so the three formats always say
the same thing. Numbers are formatted here, never computed: every figure in
the report is read from the results.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from . import _question
from ._collect import FigureData, ReportData
from ._invariances import invariance_blocks
from ._mathml import is_latex_label

__all__ = ["Block", "Figure", "Heading", "ItemList", "Math", "Para", "Table", "build"]

TITLE = "Why the bias cancels: batch normalization, derived and checked"


@dataclass(frozen=True)
class Heading:
    """A section heading; ``level`` 1 is the title, 2 a section, 3 a subsection."""

    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    """A paragraph of runs ``(kind, text)``.

    ``kind`` is ``text``, ``strong``, ``code`` or ``link:<anchor>`` (a link
    to the heading with that anchor).

    ``style`` is ``""``, ``"quote"``, ``"answer"``, ``"note"``, ``"ok"`` or ``"fail"``.
    """

    runs: tuple[tuple[str, str], ...]
    style: str = ""


@dataclass(frozen=True)
class Math:
    """A displayed formula: a SymPy expression and/or LaTeX source."""

    expr: sympy.Basic | None = None
    latex: str = ""

    def tex(self) -> str:
        """Return the LaTeX source (printed from ``expr`` when not given)."""
        if self.latex:
            return self.latex
        # Symbols named in LaTeX (r"\Delta b") print verbatim: SymPy would
        # otherwise split their names at "_" and "^" into wrong scripts.
        names = {s: s.name for s in self.expr.atoms(sympy.Symbol) if is_latex_label(s.name)}
        return sympy.latex(self.expr, symbol_names=names)


@dataclass(frozen=True)
class ItemList:
    """A list; each item is a tuple of blocks."""

    items: tuple[tuple[object, ...], ...]
    ordered: bool = False


@dataclass(frozen=True)
class Table:
    """A table of strings; ``numeric`` marks right-aligned columns."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = field(default=())


@dataclass(frozen=True)
class Figure:
    """A rendered figure."""

    data: FigureData


Block = Heading | Para | Math | ItemList | Table | Figure


def text(*parts: str, style: str = "") -> Para:
    """Return a plain paragraph (the parts joined by spaces)."""
    return Para((("text", " ".join(parts)),), style)


def fmt(value: object, digits: int = 3) -> str:
    """Format a number for a table (``n/a`` for ``None``, ``yes``/``no`` for booleans)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(value)


def _get(mapping: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "",
           numeric: Sequence[bool] = ()) -> Table:
    return Table(
        tuple(headers),
        tuple(tuple(c if isinstance(c, str) else fmt(c) for c in row) for row in rows),
        caption,
        tuple(numeric) or tuple(False for _ in headers),
    )


# --------------------------------------------------------------------------- #
# sections
# --------------------------------------------------------------------------- #


#: The claims the short answer and the training-versus-inference contrast state.
_ANSWER_RESTS_ON = ("bias-cancels-train", "bias-survives-eval", "outside-gradient-drift",
                    "loss-grad-bias-zero")


def _question_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "The question", "question"),
        text(f"Asked by {_question.SOURCE}, about this passage of section 2:"),
        text(_question.PAPER_SECTION_2, style="quote"),
        text("and this remark of section 3.2:"),
        text(_question.PAPER_SECTION_3, style="quote"),
        text("The reader asks:"),
        text(_question.QUESTION, style="quote"),
        Heading(3, "Short answer", "answer"),
        text(_question.SHORT_ANSWER, style="answer"),
        Heading(3, "Training mode versus inference mode", "train-vs-eval"),
        text(_question.TRAINING_VS_INFERENCE, style="answer"),
    ]
    by_id = {c.claim.id: c for c in data.claims}
    missed = [cid for cid in _ANSWER_RESTS_ON if cid in by_id and not by_id[cid].as_expected]
    if missed:
        blocks.insert(-2, text(
            "This answer rests on claims that did not reach their expected verdict in this "
            "run: " + ", ".join(missed) + ". See their sections below before relying on it.",
            style="fail"))
    evidence = []
    for cid, label in (
        ("bias-cancels-train", "Training mode (batch statistics)"),
        ("bias-survives-eval", "Inference mode (running statistics)"),
        ("outside-gradient-drift", "Gradient step that ignores the dependence of E[x] on b"),
    ):
        result = by_id.get(cid)
        if result is None:
            continue
        item: list[Block] = [
            Para((("strong", f"{label}: "), ("text", result.claim.statement + " "),
                  ("text", f"Verdict: {result.proof.verdict}"),
                  ("text", " (see "), ("code", cid), ("text", ")."))),
        ]
        if result.claim.latex:
            item.append(Math(None, result.claim.latex))
        evidence.append(tuple(item))
    if evidence:
        blocks.append(text("What the proofs below establish:"))
        blocks.append(ItemList(tuple(evidence)))
    return blocks


def _claims_summary(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Claims and verdicts", "claims")]
    if not data.claims:
        blocks.append(text("The proofs were not run for this report."))
        return blocks
    failures = [c for c in data.claims if not c.as_expected]
    if failures:
        blocks.append(text(
            f"{len(failures)} of {len(data.claims)} claims did not reach the expected verdict: "
            + ", ".join(c.claim.id for c in failures) + ".", style="fail"))
    else:
        blocks.append(text(
            f"All {len(data.claims)} claims reached the expected verdict. The negative "
            "control (a normalization under which the bias must not cancel) is expected to "
            "be refuted, and was.", style="ok"))
    rows = [
        (c.claim.id, c.claim.statement, c.proof.verdict, c.claim.expected,
         fmt(c.proof.symbolic_n), f"{c.proof.seconds:.2f}")
        for c in data.claims
    ]
    blocks.append(_table(
        ("claim", "statement", "verdict", "expected", "symbolic N", "time (s)"), rows,
        numeric=(False, False, False, False, False, True)))
    return blocks


def _claim_section(result) -> list[Block]:
    claim, proof = result.claim, result.proof
    blocks: list[Block] = [
        Heading(3, claim.id, f"claim-{claim.id}"),
        text(claim.statement),
    ]
    if claim.latex:
        blocks.append(Math(None, claim.latex))
    meta = []
    if claim.section:
        meta.append(("Where", claim.section))
    if claim.assumptions:
        meta.append(("Assumptions", "; ".join(claim.assumptions)))
    for label, value in meta:
        blocks.append(Para((("strong", f"{label}: "), ("text", value))))
    if proof.steps:
        items = []
        for step in proof.steps:
            item: list[Block] = [Para((("text", step.title),))]
            if step.expr is not None:
                item.append(Math(step.expr))
            if step.note:
                item.append(Para((("text", step.note),), "note"))
            items.append(tuple(item))
        blocks.append(Para((("strong", "Derivation"),)))
        blocks.append(ItemList(tuple(items), ordered=True))
    if proof.checks:
        blocks.append(_table(
            ("check", "passed", "detail"),
            [(c.method, fmt(c.passed), c.detail) for c in proof.checks]))
    verdict = f"Verdict: {proof.verdict} (expected {claim.expected})."
    runs = [("strong", verdict)]
    if proof.reason:
        runs.append(("text", f" {proof.reason}"))
    blocks.append(Para(tuple(runs), "ok" if result.as_expected else "fail"))
    blocks.append(Para((
        ("text", "Holds for symbolic N: " + fmt(proof.symbolic_n) + ". Methods: "),
        ("code", ", ".join(proof.methods) or "none"),
        ("text", f". Time: {proof.seconds:.2f} s."),
    )))
    return blocks


def _crosscheck_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Kernels against the derivation", "cross-check")]
    result = data.crosscheck
    if result is None:
        blocks.append(text("The cross-check was not run for this report."))
        return blocks
    blocks.append(text(
        "Each kernel output (y, dx, dweight, dbias) in float64 against the lambdified SymPy "
        "derivation and against a dot-product finite-difference test, at each batch size n."))
    setup = result.get("setup")
    if isinstance(setup, Mapping) and setup:
        blocks.append(Para((("strong", "Setup: "), ("text", "; ".join(
            f"{k}: {_plain_value(v)}" for k, v in setup.items())))))
    rows = result.get("rows", [])
    blocks.append(_table(
        ("n", "quantity", "max |kernel - SymPy|", "max |finite-diff error|",
         "tolerance (SymPy)", "passed"),
        [(r.get("n"), str(r.get("quantity")), r.get("max_abs_err_symbolic"),
          r.get("max_abs_err_finite_diff"), r.get("tolerance"), r.get("passed"))
         for r in rows],
        numeric=(True, False, True, True, True, False)))
    failed = [r for r in rows if not r.get("passed", False)]
    blocks.append(text(
        f"{len(rows) - len(failed)} of {len(rows)} rows passed.",
        style="fail" if failed or not rows else "ok"))
    return blocks


def _accuracy_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Accuracy against the offset |mean| / std", "accuracy")]
    result = data.accuracy
    if result is None:
        blocks.append(text("The accuracy experiment was not run for this report."))
        return blocks
    blocks.append(text(
        "Largest error of the normalized float32 output, in units in the last place (ulp) "
        "of float32 and in absolute terms, as the inputs move away from zero. The bias b "
        "of section 2 is such an offset: it shifts every value of a channel."))
    for key in ("setup", "reference"):
        value = result.get(key)
        if value:
            label = "Setup" if key == "setup" else "Reference"
            if isinstance(value, Mapping):
                value = "; ".join(f"{k}: {_plain_value(v)}" for k, v in value.items())
            blocks.append(Para((("strong", f"{label}: "), ("text", str(value)))))
    rows = result.get("rows", [])
    methods: list[str] = []
    offsets: list[object] = []
    cells: dict[tuple[object, str], Mapping] = {}
    for row in rows:
        method, offset = str(row.get("method")), row.get("offset_over_std")
        if method not in methods:
            methods.append(method)
        if offset not in offsets:
            offsets.append(offset)
        cells[(offset, method)] = row
    headers = ["|mean| / std"] + [f"{m} (ulp)" for m in methods]
    table_rows = [
        [fmt(o)] + [fmt(_get(cells.get((o, m)), "max_err_ulp")) for m in methods]
        for o in offsets
    ]
    blocks.append(_table(headers, table_rows, "Largest error in float32 ulp",
                         numeric=[True] * len(headers)))
    headers = ["|mean| / std"] + [f"{m} (abs)" for m in methods]
    table_rows = [
        [fmt(o)] + [fmt(_get(cells.get((o, m)), "max_abs_err")) for m in methods]
        for o in offsets
    ]
    blocks.append(_table(headers, table_rows, "Largest absolute error",
                         numeric=[True] * len(headers)))
    blocks.extend(Figure(f) for f in data.figures if f.name == "accuracy")
    return blocks


def _plain_value(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain_value(v) for v in value) + "]"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return fmt(value, 6)
    return str(value)


def _drift_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "The drift of section 2, measured", "drift")]
    drift = data.drift
    if drift is None:
        blocks.append(text("The drift experiment was not run for this report."))
        return blocks
    blocks.append(text(
        "A small network x = u W + b, normalization, tanh, softmax cross-entropy, trained "
        "by plain gradient descent on scikit-learn's handwritten digits (and a synthetic "
        "task). Modes: exact (batch statistics, gradient through them: batch normalization), "
        "outside (batch statistics treated as constants by the gradient: the paper's "
        "failure), running (moving averages used during training). Normalizations: center "
        "(x - mean, as in section 2) and center-scale (batch normalization). The numbers "
        "below are what the runs measured."))
    params = drift.get("parameters")
    if _get(params, "quick"):
        blocks.append(Para((
            ("text", "These runs follow the experiment's quick plan (few steps, full batches, "
                     "one seed); "),
            ("code", "bnproof drift"),
            ("text", " runs the full plan, with minibatches and more seeds and steps."),
        )))
    if isinstance(params, Mapping):
        keep = ("hidden_units", "eps", "momentum", "momentum_convention", "nonlinearity", "loss",
                "dtypes")
        blocks.append(Para((("strong", "Parameters: "), ("text", "; ".join(
            f"{k.replace('_', ' ')}: {_plain_value(params[k])}" for k in keep if k in params)
            + "."))))
    bias = drift.get("bias-only")
    if isinstance(bias, Mapping):
        blocks.append(Heading(3, "Only b trains", "drift-bias-only"))
        setup = bias.get("setup", {})
        blocks.append(text(
            f"{bias.get('description', '')}. Setup: "
            + "; ".join(f"{k}: {_plain_value(v)}" for k, v in setup.items()) + "."))
        findings = []
        for run in bias.get("runs", []):
            s = run.get("summary", {})
            findings.append((Para((
                ("strong", f"{run.get('norm')}, {run.get('mode')}, {run.get('dtype')}: "),
                ("text", f"b moved by at most {fmt(s.get('b_displacement_final_max_abs'))} "
                         f"over {fmt(s.get('steps'))} steps "
                         f"({fmt(s.get('b_drift_per_step_max_abs'))} per step; deviation "
                         "from a straight line "
                         f"{fmt(s.get('linear_residual_relative_to_displacement'))} of the "
                         "displacement) while the loss changed by at most "
                         f"{fmt(s.get('loss_change_max_abs_nats'))} nats."),
            )),))
        if findings:
            blocks.append(ItemList(tuple(findings)))
        rows = []
        for run in bias.get("runs", []):
            s = run.get("summary", {})
            rows.append((run.get("norm"), run.get("mode"), run.get("dtype"),
                         s.get("b_drift_per_step_max_abs"),
                         s.get("b_displacement_final_max_abs"),
                         s.get("linear_residual_relative_to_displacement"),
                         s.get("loss_change_max_abs_nats"), s.get("db_max_abs"),
                         s.get("b_over_std_final_max")))
        blocks.append(_table(
            ("norm", "mode", "dtype", "max |Δb| per step", "max |b_T - b_0|",
             "residual / displacement", "max |loss change| (nats)", "max |dL/db|",
             "max |b| / std at end"),
            rows, "b after each step: linear drift with the loss fixed, or no motion",
            numeric=(False, False, False, True, True, True, True, True, True)))
        checks = bias.get("checks") or []
        failed = [c for c in checks if not c.get("passed")]
        if failed:
            blocks.append(Para((("text", f"{len(failed)} of {len(checks)} runs do not show "
                                 "the expected outcome: " + "; ".join(
                                     f"{c['norm']} {c['mode']} {c['dtype']} ({c['expectation']})"
                                     for c in failed) + "."),), style="fail"))
        elif checks:
            blocks.append(Para((("text", f"All {len(checks)} runs show the expected outcome "
                                 "(checked on the numbers above: outside mode drifts on the "
                                 "line with the loss fixed, exact mode stays put, and the "
                                 "running-mode control moves the loss)."),), style="ok"))
    train = drift.get("train-all")
    if isinstance(train, Mapping):
        blocks.append(Heading(3, "Every parameter trains", "drift-train-all"))
        setup = train.get("setup", {})
        for key in ("network", "optimizer", "init", "digits_inputs", "synthetic_inputs",
                    "evaluation"):
            if key in setup:
                label = key.replace("_", " ").capitalize()
                blocks.append(Para((("strong", f"{label}: "), ("text", str(setup[key])))))
        outcomes = setup.get("outcomes")
        if isinstance(outcomes, Mapping):
            blocks.append(ItemList(tuple(
                (Para((("code", str(k)), ("text", f": {v}"))),) for k, v in outcomes.items())))
        rows = []
        for run in train.get("curves", []):
            s = run.get("summary", {})
            rows.append((run.get("dataset"), run.get("batching"), run.get("norm"),
                         run.get("mode"), run.get("dtype"), s.get("outcome"),
                         s.get("steps_completed"), s.get("initial_loss_nats"),
                         s.get("final_loss_nats"), s.get("final_accuracy_fraction"),
                         s.get("final_b_norm"), s.get("final_W_norm")))
        blocks.append(_table(
            ("data", "batches", "norm", "mode", "dtype", "outcome", "steps", "initial loss",
             "final loss", "final accuracy", "final |b|", "final |W|"),
            rows, f"Training curves at learning rate {fmt(setup.get('curve_lr'))}",
            numeric=(False,) * 6 + (True,) * 6))
        table = _get(train, "sweep", "table")
        if isinstance(table, list) and table:
            rows = []
            for row in table:
                oc = row.get("outcomes", {})
                rows.append((row.get("mode"), row.get("norm"), row.get("dtype"), row.get("lr"),
                             row.get("runs"), oc.get("trained"), oc.get("rebounded"),
                             oc.get("rose-above-start"), oc.get("non-finite"),
                             row.get("blew_up"), row.get("final_loss_nats_median"),
                             row.get("final_b_norm_median")))
            blocks.append(_table(
                ("mode", "norm", "dtype", "lr", "runs", "trained", "rebounded",
                 "rose above start", "non-finite", "blew up", "median final loss",
                 "median final |b|"),
                rows, "Sweep over learning rate and seed: how many runs blew up",
                numeric=(False, False, False) + (True,) * 9))
    blocks.extend(Figure(f) for f in data.figures if f.name != "accuracy")
    return blocks


def _provenance_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Provenance", "provenance")]
    prov = dict(data.provenance)
    rows = [(str(k), _plain_value(v)) for k, v in prov.items()]
    rows += [(f"seed ({k})", str(v)) for k, v in data.seeds.items()]
    for stage, settings in data.settings.items():
        rows.append((f"setting ({stage})", _plain_value(settings) if not isinstance(
            settings, Mapping) else "; ".join(f"{k}: {_plain_value(v)}"
                                              for k, v in settings.items())))
    rows += [(f"time ({k}, s)", fmt(v)) for k, v in data.timings_seconds.items()]
    blocks.append(_table(("item", "value"), rows))
    blocks.append(text(
        "Every number in this report was read from the results of bnproof.symbolic.prove_all, "
        "bnproof.experiments.crosscheck, bnproof.experiments.accuracy and "
        "bnproof.experiments.drift; the report itself computes nothing."))
    return blocks


def build(data: ReportData) -> list[Block]:
    """Return the report's content as a list of blocks.

    Parameters
    ----------
    data : ReportData
        The gathered results.

    Returns
    -------
    list of Block

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.

    Notes
    -----
    The order follows the question: section 2 and 3.2 of Ioffe & Szegedy
    (2015) quoted, the answer, the claims with their derivations, the
    kernels' checks, the drift experiment, then provenance.
    """
    if not isinstance(data, ReportData):
        raise TypeError(
            f"data must be a ReportData (from bnproof.report.collect), got {type(data).__name__}"
        )
    quick = data.settings.get("quick")
    blocks: list[Block] = [Heading(1, TITLE, "top")]
    subtitle = (
        f"Generated by bnproof {data.provenance.get('bnproof', '?')} on "
        f"{data.provenance.get('date', '?')}."
    )
    if quick:
        subtitle += " Quick run: smaller batches and fewer steps than the full report."
    blocks.append(text(subtitle))
    body = _question_section(data) + _claims_summary(data)
    body += invariance_blocks(data.invariances)
    for result in data.claims:
        body += _claim_section(result)
    body += _crosscheck_section(data)
    body += _accuracy_section(data)
    body += _drift_section(data)
    body += _provenance_section(data)
    return blocks + _contents(body) + body


def _contents(body: list[Block]) -> list[Block]:
    """Return a list linking every section and its subsections (the claims, ...)."""
    sections: list[tuple[Heading, list[Heading]]] = []
    for block in body:
        if isinstance(block, Heading) and block.anchor:
            if block.level == 2:
                sections.append((block, []))
            elif block.level == 3 and sections:
                sections[-1][1].append(block)
    items = []
    for heading, subs in sections:
        item: list[Block] = [Para(((f"link:{heading.anchor}", heading.text),))]
        if subs:
            item.append(ItemList(tuple(
                (Para(((f"link:{sub.anchor}", sub.text),)),) for sub in subs)))
        items.append(tuple(item))
    return [Heading(2, "Contents", "contents"), ItemList(tuple(items))]
