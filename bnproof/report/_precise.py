"""The report's section on population statistics (reads :func:`precise_study`'s data).

:func:`precise_section` turns the plain data that
:func:`bnproof.torch.precise_study` returns into format-neutral blocks. It
formats numbers and computes nothing; without the data (no PyTorch, or the
study not run) it says so.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._document import Block, Heading, Para, _table, fmt, text

__all__ = ["precise_section"]

#: Estimators in the order the table shows them.
ESTIMATORS = ("update_bn", "mean of batch variances", "population, buffer dtype",
              "bnproof precise_bn")


def precise_section(study: Mapping | None) -> list[Block]:
    """Return the blocks of the "Population statistics" section.

    Parameters
    ----------
    study : Mapping or None
        What :func:`bnproof.torch.precise_study` returned, or None when it
        was not run (the section then says so).

    Returns
    -------
    list of Block
        A heading, the setup, one table of errors and test accuracies, one
        table for the eval-consistent mode and the timing.
    """
    blocks: list[Block] = [Heading(2, "Population statistics after training", "precise")]
    if not study:
        blocks.append(text("The population-statistics study was not run for this report "
                           "(it needs PyTorch)."))
        return blocks
    blocks.append(text(
        "After training, the running statistics of a batch norm are an exponential average "
        "of stale batches; PreciseBN (Wu & Johnson 2021, arXiv:2105.07576) recomputes them "
        "with the final weights. Each estimator below sets the buffers of the same trained "
        "model from the same batches; the errors are against the exact statistics of the "
        "concatenated inputs."))
    for key, value in (study.get("setup") or {}).items():
        if isinstance(value, Mapping):
            value = "; ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        blocks.append(Para((("strong", f"{key.replace('_', ' ').capitalize()}: "),
                            ("text", str(value)))))
    rows = [
        [str(r.get("dtype")), str(r.get("batches")), str(r.get("estimator")),
         fmt(r.get("mean_error")), fmt(r.get("var_error")), fmt(r.get("test_accuracy"))]
        for r in study.get("rows", [])
    ]
    blocks.append(_table(
        ["dtype", "batches", "estimator", "mean error", "variance error", "test accuracy"],
        rows, "Largest relative error of the running statistics, and the test accuracy",
        numeric=[False, False, False, True, True, True]))
    if study.get("baseline_accuracy") is not None:
        blocks.append(text("Test accuracy with the running averages of training:",
                           fmt(study["baseline_accuracy"]) + "."))
    eval_rows = study.get("eval_consistent") or []
    if eval_rows:
        blocks.append(Heading(3, "Eval-consistent statistics", "precise-eval"))
        blocks.append(text(
            "Training-mode statistics are measured while the batch norms before a layer "
            "normalize with batch statistics; at inference they use their running "
            "statistics. The eval-consistent mode computes each batch norm's statistics "
            "with the ones before it already in inference mode, at one pass per batch "
            "norm. Errors of the running variance against what inference feeds each "
            "batch norm (sorted batches, float32):"))
        width = max(len(r.get("var_error_per_layer", [])) for r in eval_rows)
        blocks.append(_table(
            ["mode", "passes"] + [f"batch norm {i + 1}" for i in range(width)]
            + ["test accuracy"],
            [[str(r.get("mode")), fmt(r.get("passes"))]
             + [fmt(e) for e in r.get("var_error_per_layer", [])]
             + [fmt(r.get("test_accuracy"))] for r in eval_rows],
            "Variance error per batch norm against inference",
            numeric=[False] + [True] * (width + 2)))
    timing = study.get("timing")
    if timing:
        blocks.append(text(
            f"Cost: update_bn {fmt(timing.get('update_bn_s', 0) * 1e3)} ms, precise_bn "
            f"{fmt(timing.get('precise_bn_s', 0) * 1e3)} ms on the same batches "
            f"(best of {fmt(timing.get('repeats'))}), a ratio of {fmt(timing.get('ratio'))}."))
    return blocks
