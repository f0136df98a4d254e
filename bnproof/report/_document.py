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

from . import _explain, _question
from ._collect import FigureData, ReportData
from ._invariances import invariance_blocks
from ._mathml import is_latex_label

__all__ = ["SECTIONS", "Block", "Details", "Figure", "Heading", "ItemList", "Math", "Para", "Table",
           "build"]

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
    #: Anchor each row's first cell links to ("" for none); empty for no links.
    links: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Figure:
    """A rendered figure."""

    data: FigureData


@dataclass(frozen=True)
class Details:
    """Blocks folded away behind a one-line summary (``<details>`` in HTML).

    The PDF cannot fold: LaTeX prints the summary as a small heading and the
    blocks beneath it.
    """

    summary: str
    blocks: tuple[object, ...]


Block = Heading | Para | Math | ItemList | Table | Figure | Details


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
           numeric: Sequence[bool] = (), links: Sequence[str] = ()) -> Table:
    return Table(
        tuple(headers),
        tuple(tuple(c if isinstance(c, str) else fmt(c) for c in row) for row in rows),
        caption,
        tuple(numeric) or tuple(False for _ in headers),
        tuple(links),
    )


# --------------------------------------------------------------------------- #
# sections: each builder takes the ReportData and returns a list of blocks
# --------------------------------------------------------------------------- #


#: The claims the short answer and the training-versus-inference contrast state.
_ANSWER_RESTS_ON = ("bias-cancels-train", "bias-survives-eval", "outside-gradient-drift",
                    "loss-grad-bias-zero")


def _by_id(data: ReportData) -> dict:
    return {c.claim.id: c for c in data.claims}


def _answer_section(data: ReportData) -> list[Block]:
    """Return the question, the short answer and the reason in three lines of maths."""
    blocks: list[Block] = [
        Heading(2, "The question", "question"),
        text(_question.QUESTION, style="quote"),
        Heading(3, "Short answer", "answer"),
        text(_question.SHORT_ANSWER, style="answer"),
    ]
    missed = [cid for cid in _ANSWER_RESTS_ON
              if cid in _by_id(data) and not _by_id(data)[cid].as_expected]
    if missed:
        blocks.append(text(
            "This answer rests on claims that did not reach their expected verdict in this "
            "run: " + ", ".join(missed) + ". See their derivations below before relying on it.",
            style="fail"))
    blocks.append(Heading(3, "Why, in three lines", "reason"))
    items = tuple((text(sentence), Math(None, latex)) for sentence, latex in _explain.REASON)
    blocks.append(ItemList(items, ordered=True))
    blocks.append(text(
        "Here \u016b is the mean of the u_k, s = \u221a(\u03c3\u00b2 + \u03b5), "
        "g_i = \u2202L/\u2202y_i and \u03b7 the learning rate. Lines 1 and 2 are the paper's "
        "section 3 remark (b \u201ccan be ignored\u201d); line 3 is its section 2 warning. "
        "Batch normalization differentiates through \u03bc and \u03c3\u00b2, so it gets the "
        "0 of line 2 and b never moves.", style="note"))
    blocks.append(Details("The passages of the paper the question is about", (
        text(f"Asked by {_question.SOURCE}, about this passage of section 2:"),
        text(_question.PAPER_SECTION_2, style="quote"),
        text("and this remark of section 3.2:"),
        text(_question.PAPER_SECTION_3, style="quote"),
    )))
    return blocks


def _claims_summary(data: ReportData) -> list[Block]:
    """Return one row per claim: what it says in a few words and its verdict."""
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
            f"All {len(data.claims)} claims reached the expected verdict, each proved for a "
            "symbolic batch size N where marked and checked again by exact expansion at "
            "concrete N. The negative control (a normalization under which the bias must not "
            "cancel) is expected to be refuted, and was.", style="ok"))
    # One screen: the claims about the bias paragraph (and the reader's own);
    # the rest of the family and the invariance table have their own section.
    shown = [c for c in data.claims if getattr(c.claim, "group", "catalogue")
             in ("catalogue", "user")]
    rows = [
        (c.claim.id, _explain.SHORT.get(c.claim.id, c.claim.statement), c.proof.verdict,
         c.claim.expected, fmt(c.proof.symbolic_n))
        for c in shown
    ]
    blocks.append(_table(
        ("claim", "says", "verdict", "expected", "symbolic N"), rows,
        links=tuple(f"claim-{c.claim.id}" for c in shown)))
    others = len(data.claims) - len(shown)
    if others:
        blocks.append(Para((
            ("text", f"{others} more claims cover the rest of the normalization family "
                     "(layer, RMS, group, instance and weight normalization, Batch "
                     "Renormalization) and the rules the model audit rests on; see "),
            ("link:invariances", "the invariance table"),
            ("text", " and the derivations."),
        )))
    return blocks


def _claim_section(result) -> list[Block]:
    """Return a claim's argument in the paper's notation, the prover's work folded."""
    claim, proof = result.claim, result.proof
    blocks: list[Block] = [
        Heading(3, claim.id, f"claim-{claim.id}"),
        text(claim.statement),
    ]
    meta = []
    if claim.section:
        meta.append(("Where", claim.section))
    if claim.assumptions:
        meta.append(("Assumptions", "; ".join(claim.assumptions)))
    for label, value in meta:
        blocks.append(Para((("strong", f"{label}: "), ("text", value))))
    human = _explain.STEPS.get(claim.id)
    if human:
        blocks.append(ItemList(tuple((text(sentence), Math(None, latex))
                                     for sentence, latex in human), ordered=True))
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
    if proof.steps:
        items = []
        for step in proof.steps:
            item: list[Block] = [Para((("text", step.title),))]
            if step.expr is not None:
                item.append(Math(step.expr))
            if step.note:
                item.append(Para((("text", step.note),), "note"))
            items.append(tuple(item))
        summary = ("The prover's derivation, step by step (raw SymPy)" if human
                   else "The prover's derivation, step by step")
        steps_block = ItemList(tuple(items), ordered=True)
        blocks.append(Details(summary, (steps_block,)) if human else steps_block)
    if proof.checks:
        passed = sum(1 for c in proof.checks if c.passed)
        blocks.append(Details(
            f"The independent checks ({passed} of {len(proof.checks)} passed)",
            (_table(("check", "passed", "detail"),
                    [(c.method, fmt(c.passed), c.detail) for c in proof.checks]),)))
    return blocks


def _derivations_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "The derivations", "derivations")]
    if not data.claims:
        blocks.append(text("The proofs were not run for this report."))
        return blocks
    blocks.append(text(
        "Each claim in the notation of Algorithm 1: x_i = u_i + b, \u03bc the batch mean, "
        "\u03c3\u00b2 the biased batch variance, x\u0302_i = (x_i \u2212 \u03bc)/s with "
        "s = \u221a(\u03c3\u00b2 + \u03b5), y_i = \u03b3x\u0302_i + \u03b2. The numbered steps are "
        "the argument written for a reader; the verdict comes from the prover, whose own "
        "steps (raw SymPy, for a symbolic N) and independent checks (exact expansion and "
        "exact rational values at N = 2, 3, ...) are folded beneath each claim."))
    for result in data.claims:
        blocks += _claim_section(result)
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
    rows = result.get("rows", [])
    failed = [r for r in rows if not r.get("passed", False)]
    blocks.append(text(
        f"{len(rows) - len(failed)} of {len(rows)} rows passed.",
        style="fail" if failed or not rows else "ok"))
    table: list[Block] = []
    setup = result.get("setup")
    if isinstance(setup, Mapping) and setup:
        table.append(Para((("strong", "Setup: "), ("text", "; ".join(
            f"{k}: {_plain_value(v)}" for k, v in setup.items())))))
    table.append(_table(
        ("n", "quantity", "max |kernel - SymPy|", "max |finite-diff error|",
         "tolerance (SymPy)", "passed"),
        [(r.get("n"), str(r.get("quantity")), r.get("max_abs_err_symbolic"),
          r.get("max_abs_err_finite_diff"), r.get("tolerance"), r.get("passed"))
         for r in rows],
        numeric=(True, False, True, True, True, False)))
    blocks.append(Details(f"The {len(rows)} rows", tuple(table)))
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
        "of section 2 is such an offset: it shifts every value of a channel, and in exact "
        "arithmetic cancels; in floating point a large b costs digits unless the statistics "
        "are computed carefully."))
    blocks.extend(Figure(f) for f in data.figures if f.name == "accuracy")
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
    blocks.append(Details("The same errors in absolute terms", (
        _table(headers, table_rows, "Largest absolute error", numeric=[True] * len(headers)),)))
    return blocks


def _plain_value(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_plain_value(v)}" for k, v in value.items())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return fmt(value, 6)
    return str(value)


def _line_fit(run: Mapping) -> str:
    """How far b's path is from the straight line b_0 + t Delta b, in words a reader can use."""
    s = run.get("summary", {})
    mode = run.get("mode")
    moved = s.get("b_displacement_final_max_abs")
    per_step = s.get("b_drift_per_step_max_abs")
    if mode == "exact":
        return f"does not apply: b moved {fmt(moved)} in all, rounding only"
    if mode == "outside":
        units = s.get("linear_residual_in_rounding_units")
        return f"on the line to {fmt(units)} rounding units"
    rel = s.get("linear_residual_relative_to_displacement")
    if rel is None or per_step is None:
        return "n/a"
    return f"off the line by {fmt(rel)} of the distance moved"


def _drift_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "The drift of section 2, measured", "drift")]
    drift = data.drift
    if drift is None:
        blocks.append(text("The drift experiment was not run for this report."))
        return blocks
    blocks.append(text(
        "A small network x = uW + b, normalization, tanh, softmax cross-entropy, trained "
        "by plain gradient descent on scikit-learn's handwritten digits (and a synthetic "
        "task). Three ways to take the gradient step: exact (batch statistics, gradient "
        "through them: batch normalization), outside (batch statistics treated as constants "
        "by the gradient: the paper's failure) and running (moving averages used during "
        "training, as one answer to the question suggests). Two normalizations: center "
        "(x \u2212 \u03bc, as in section 2) and center-scale (batch normalization)."))
    bias = drift.get("bias-only")
    if isinstance(bias, Mapping):
        blocks.append(Heading(3, "Only b trains", "drift-bias-only"))
        blocks.extend(Figure(f) for f in data.figures if f.name == "bias-only")
        checks = bias.get("checks") or []
        failed = [c for c in checks if not c.get("passed")]
        if failed:
            blocks.append(Para((("text", f"{len(failed)} of {len(checks)} runs do not show "
                                 "the expected outcome: " + "; ".join(
                                     f"{c['norm']} {c['mode']} {c['dtype']} ({c['expectation']})"
                                     for c in failed) + "."),), style="fail"))
        elif checks:
            blocks.append(Para((("text", f"All {len(checks)} runs show the expected outcome "
                                 "(checked on the numbers below: outside mode drifts on the "
                                 "line with the loss fixed, exact mode stays put, and the "
                                 "running-mode control moves the loss)."),), style="ok"))
        rows = []
        for run in bias.get("runs", []):
            s = run.get("summary", {})
            rows.append((run.get("norm"), run.get("mode"), run.get("dtype"),
                         s.get("b_drift_per_step_max_abs"),
                         s.get("b_displacement_final_max_abs"), _line_fit(run),
                         s.get("loss_change_max_abs_nats"), s.get("db_max_abs")))
        blocks.append(_table(
            ("norm", "mode", "dtype", "max |\u0394b| per step", "max |b_T - b_0|",
             "straight line b_0 + t\u0394b?", "max |loss change| (nats)", "max |dL/db|"),
            rows, "b after each step: linear drift with the loss fixed, or no motion",
            numeric=(False, False, False, True, True, False, True, True)))
        blocks.append(text(
            "How to read the line column: in outside mode b moves by the same \u0394b every "
            "step, so its distance from the line b_0 + t\u0394b is pure rounding, given in "
            "rounding units of the run's float type (the check allows a few dozen). In exact "
            "mode b does not move at all (its gradient is zero up to rounding), so there is "
            "no line to fit and no ratio is shown. In running mode the moving averages lag "
            "b, so the step changes from one step to the next: the deviation is given as a "
            "fraction of how far b went.", style="note"))
        setup = bias.get("setup", {})
        blocks.append(Details("Setup of the b-only runs", (text(
            f"{bias.get('description', '')}. "
            + "; ".join(f"{k}: {_plain_value(v)}" for k, v in setup.items()) + "."),)))
    train = drift.get("train-all")
    if isinstance(train, Mapping):
        blocks.append(Heading(3, "Every parameter trains", "drift-train-all"))
        blocks.extend(Figure(f) for f in data.figures if f.name.startswith("train-all"))
        setup = train.get("setup", {})
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
        detail: list[Block] = []
        for key in ("network", "optimizer", "init", "digits_inputs", "synthetic_inputs",
                    "evaluation"):
            if key in setup:
                label = key.replace("_", " ").capitalize()
                detail.append(Para((("strong", f"{label}: "), ("text", str(setup[key])))))
        outcomes = setup.get("outcomes")
        if isinstance(outcomes, Mapping):
            detail.append(ItemList(tuple(
                (Para((("code", str(k)), ("text", f": {v}"))),) for k, v in outcomes.items())))
        rows = []
        for run in train.get("curves", []):
            s = run.get("summary", {})
            rows.append((run.get("dataset"), run.get("batching"), run.get("norm"),
                         run.get("mode"), run.get("dtype"), s.get("outcome"),
                         s.get("steps_completed"), s.get("initial_loss_nats"),
                         s.get("final_loss_nats"), s.get("final_accuracy_fraction"),
                         s.get("final_b_norm"), s.get("final_W_norm")))
        detail.append(_table(
            ("data", "batches", "norm", "mode", "dtype", "outcome", "steps", "initial loss",
             "final loss", "final accuracy", "final |b|", "final |W|"),
            rows, f"Training curves at learning rate {fmt(setup.get('curve_lr'))}",
            numeric=(False,) * 6 + (True,) * 6))
        blocks.append(Details("Setup, outcome classes and the training curves' numbers",
                              tuple(detail)))
    params = drift.get("parameters")
    if isinstance(params, Mapping):
        runs: list[tuple[str, str]] = []
        if _get(params, "quick"):
            runs.append(("text", "These runs follow the experiment's quick plan (few steps, "
                                 "full batches, one seed); "))
            runs += [("code", "bnproof drift"),
                     ("text", " runs the full plan, with minibatches and more seeds and "
                              "steps. ")]
        keep = ("hidden_units", "eps", "momentum", "momentum_convention", "nonlinearity", "loss",
                "dtypes")
        runs += [("strong", "Parameters: "), ("text", "; ".join(
            f"{k.replace('_', ' ')}: {_plain_value(params[k])}" for k in keep if k in params)
            + ".")]
        blocks.append(Para(tuple(runs), "note"))
    shown = {b.data.name for b in blocks if isinstance(b, Figure)}
    blocks.extend(Figure(f) for f in data.figures if f.name not in shown | {"accuracy"})
    return blocks


def _experiments_section(data: ReportData) -> list[Block]:
    """Return the measurements: the drift (the question's), then accuracy and the kernels."""
    return _drift_section(data) + _accuracy_section(data) + _crosscheck_section(data)


def _run_of(data: ReportData, norm: str, mode: str) -> Mapping | None:
    for run in (_get(data.drift, "bias-only", "runs") or []):
        if run.get("norm") == norm and run.get("mode") == mode:
            return run.get("summary", {})
    return None


def _verdict_run(result) -> tuple[str, str]:
    if result is None:
        return ("text", "not run in this report")
    word = result.proof.verdict
    return ("strong" if result.as_expected else "text",
            f"{word}" + ("" if result.as_expected else f" (expected {result.claim.expected})"))


def _accepted_answer_section(data: ReportData) -> list[Block]:
    """Return the accepted answer's two claims, checked against the proofs and runs."""
    by_id = _by_id(data)
    blocks: list[Block] = [
        Heading(2, "The accepted answer, checked", "accepted-answer"),
        text("The answer the reader accepted makes two claims. Here is each, against the "
             "proofs and the runs above."),
        Heading(3, "\u201cThey normalize with respect to the whole training data, through "
                   "moving averages\u201d", "accepted-moving-averages"),
        text(_question.ANSWER_CLAIM_1, style="quote"),
        text("Not the paper's fix. Section 2's E[x] over the training set is the set-up of the "
             "thought experiment, not the remedy. The remedy (section 3) is to compute \u03bc "
             "and \u03c3\u00b2 on the mini-batch and to take the gradient through them; moving "
             "averages appear only in section 3.1, for inference, after training. Statistics "
             "that do not move with b during the step are exactly what section 2 warns "
             "against.", style="answer"),
    ]
    evidence: list[tuple[Block, ...]] = []
    for cid, what in (
        ("bias-cancels-train", "with the gradient taken through the batch statistics, "
                               "\u2202y_i/\u2202b = 0: nothing for a step to chase"),
        ("bias-survives-eval", "with fixed (moving-average) statistics, \u2202y_i/\u2202b = "
                               "\u03b3/\u221a(\u03c3_R\u00b2 + \u03b5) \u2260 0: b is live "
                               "again"),
    ):
        result = by_id.get(cid)
        evidence.append((Para((("code", cid), ("text", ": " + what + ". Verdict: "),
                               _verdict_run(result), ("text", ".")),),))
    running = _run_of(data, "center-scale", "running")
    outside = _run_of(data, "center-scale", "outside")
    exact = _run_of(data, "center-scale", "exact")
    if running and exact:
        evidence.append((Para((
            ("strong", "Drift experiment, running-mode control: "),
            ("text", "training b with moving-average statistics changed the loss by up to "
                     f"{fmt(running.get('loss_change_max_abs_nats'))} nats and moved b by "
                     f"{fmt(running.get('b_displacement_final_max_abs'))}, against "
                     f"{fmt(exact.get('b_displacement_final_max_abs'))} for batch "
                     "normalization's exact gradient"
                     + (f" and {fmt(outside.get('b_displacement_final_max_abs'))} with the "
                        "loss fixed for the outside step" if outside else "")
                     + ". The moving averages lag b, so the statistics are outside the step "
                       "again: b keeps being pushed."),
        )),))
    blocks.append(ItemList(tuple(evidence)))
    blocks += [
        Heading(3, "\u201cThe bias becomes redundant due to \u03b3 and \u03b2\u201d",
                "accepted-gamma-beta"),
        text(_question.ANSWER_CLAIM_2, style="quote"),
        text("Half right. What makes b redundant is the mean subtraction: b is gone from "
             "x_i \u2212 \u03bc before \u03b3 and \u03b2 are applied, and it would be gone with "
             "\u03b3 = 1 and \u03b2 = 0. \u03b2 then takes over b's role as the layer's learned "
             "offset (the paper: \u201cthe role of the bias is subsumed by \u03b2\u201d), so "
             "nothing is lost by dropping b. \u03b3 has nothing to do with it. The answer's "
             "sigmoid argument is right, but it explains why \u03b3 and \u03b2 exist (to let "
             "the layer represent the identity again), not why b is redundant.",
             style="answer"),
    ]
    evidence = []
    for cid, what in (
        ("bias-cancels-center-only", "centering alone, with no division by \u03c3, already "
                                     "cancels b"),
        ("shift-invariance", "BN(x + c) = BN(x) for every \u03b3 and \u03b2: the cancellation "
                             "happens before them"),
        ("rms-bias-cancels", "the control: RMS normalization has the same \u03b3 and \u03b2 "
                             "but subtracts no mean, and b does not cancel (expected verdict: "
                             "refuted)"),
    ):
        result = by_id.get(cid)
        evidence.append((Para((("code", cid), ("text", ": " + what + ". Verdict: "),
                               _verdict_run(result), ("text", ".")),),))
    blocks.append(ItemList(tuple(evidence)))
    blocks += [
        Heading(3, "Training mode versus inference mode", "train-vs-eval"),
        text(_question.TRAINING_VS_INFERENCE),
    ]
    return blocks


def _provenance_section(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Provenance", "provenance")]
    prov = dict(data.provenance)
    rows = [(str(k), _plain_value(v)) for k, v in prov.items()]
    rows += [(f"seed ({k})", str(v)) for k, v in data.seeds.items()]
    for stage, settings in data.settings.items():
        label = "report run" if stage == "quick" else f"setting ({stage})"
        if stage == "quick":
            value = ("quick (bnproof report --quick)" if settings
                     else "full (bnproof report)")
        else:
            value = _plain_value(settings)
        rows.append((label, value))
    rows += [(f"time ({k}, s)", fmt(v)) for k, v in data.timings_seconds.items()]
    blocks.append(_table(("item", "value"), rows))
    blocks.append(text(
        "Every number in this report was read from the results of bnproof.symbolic.prove_all, "
        "bnproof.experiments.crosscheck, bnproof.experiments.accuracy and "
        "bnproof.experiments.drift; the report itself computes nothing."))
    return blocks


def _invariances_section(data: ReportData) -> list[Block]:
    return invariance_blocks(data.invariances)


def _audit_section(data: ReportData) -> list[Block]:
    from ._audit import audit_blocks  # it builds with this module's blocks

    return audit_blocks(data.audit)


def _precise_section(data: ReportData) -> list[Block]:
    from ._precise import precise_section

    return precise_section(data.precise)


#: The report's sections, in order: each is ``builder(data) -> list of blocks``.
#: A new section is a function appended (or inserted) here; :func:`build`
#: adds the title and the table of contents.
SECTIONS: list = [
    _answer_section,
    _claims_summary,
    _experiments_section,
    _accepted_answer_section,
    _invariances_section,
    _audit_section,
    _precise_section,
    _derivations_section,
    _provenance_section,
]


def build(data: ReportData, sections: Sequence | None = None) -> list[Block]:
    """Return the report's content as a list of blocks.

    Parameters
    ----------
    data : ReportData
        The gathered results.
    sections : sequence of callable, optional
        Section builders, each ``builder(data) -> list of Block``; default
        :data:`SECTIONS`.

    Returns
    -------
    list of Block

    Raises
    ------
    TypeError
        If ``data`` is not a :class:`ReportData`.

    Notes
    -----
    The order follows the reader's question about sections 2 and 3.2 of
    Ioffe & Szegedy (2015): the question, the short answer and its reason in
    three lines, the verdicts, the measurements with their figures, the
    accepted answer checked, then every derivation and the provenance.
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
    blocks.append(text(subtitle, style="note"))
    built = [builder(data) for builder in (SECTIONS if sections is None else sections)]
    first, rest = built[0], [b for section in built[1:] for b in section]
    return blocks + first + _contents(first + rest) + rest


def _contents(body: list[Block]) -> list[Block]:
    """Return one line linking every section (the claims link from their table)."""
    runs: list[tuple[str, str]] = [("strong", "Contents: ")]
    for block in body:
        if isinstance(block, Heading) and block.anchor and block.level == 2:
            if len(runs) > 1:
                runs.append(("text", " \u00b7 "))
            runs.append((f"link:{block.anchor}", block.text))
    return [Para(tuple(runs), "note")]
