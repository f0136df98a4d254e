"""Figures of the drift and accuracy experiments (matplotlib, no pyplot).

Every function takes an experiment's plain-data result and returns
:class:`matplotlib.figure.Figure` objects built with the object-oriented API:
no global state, no display, nothing saved. Saving is the caller's job
(``fig.savefig(path)`` picks the format from the file name).

The figures are sized for a column about 700 pixels wide (7 inches at 100
dpi). In every drift figure the colour is the gradient mode and the line
style the floating-point type; the columns are the two normalizations.
Values that a logarithmic axis cannot show (zero, or ``None`` for a
non-finite result) are left out of the line, and the axis label says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["accuracy_figure", "drift_figures"]

#: Figure width in inches: about 700 pixels at 100 dpi.
WIDTH_IN = 7.0
#: Height of one row of panels, in inches.
ROW_IN = 2.1

#: Colour of each gradient mode (colour-blind-safe Okabe-Ito colours).
MODE_COLORS = {"exact": "#0072B2", "outside": "#D55E00", "running": "#009E73"}
#: Line style of each floating-point type.
DTYPE_STYLES = {"float64": "-", "float32": "--"}
#: Colour of each accuracy method.
METHOD_COLORS = {
    "bnproof": "#0072B2",
    "two-pass-float32": "#E69F00",
    "one-pass-float32": "#D55E00",
    "torch": "#CC79A7",
}
_FALLBACK_COLORS = ("#56B4E9", "#F0E442", "#000000", "#999999")


def _figure(rows: int, cols: int, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 0.6 + ROW_IN * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    fig.suptitle(title, fontsize="medium")
    return fig, axes


def _positive(values) -> list[float]:
    """Map ``None``, non-finite and non-positive values to NaN (gaps on log axes)."""
    out = []
    for v in values:
        v = math.nan if v is None else float(v)
        out.append(v if math.isfinite(v) and v > 0.0 else math.nan)
    return out


def _log_if_decades(ax) -> None:
    """Use a log y axis when the plotted positive values span more than a decade."""
    ys = [y for line in ax.get_lines() for y in line.get_ydata()
          if math.isfinite(y) and y > 0.0]
    if ys and max(ys) > 10.0 * min(ys):
        ax.set_yscale("log")


def _finite(values) -> list[float]:
    out = []
    for v in values:
        v = math.nan if v is None else float(v)
        out.append(v if math.isfinite(v) else math.nan)
    return out


def _norms(runs) -> list[str]:
    seen: list[str] = []
    for run in runs:
        if run["norm"] not in seen:
            seen.append(run["norm"])
    return seen


def _style(run: Mapping) -> dict:
    return {
        "color": MODE_COLORS.get(run["mode"], "#000000"),
        "linestyle": DTYPE_STYLES.get(run["dtype"], ":"),
        "linewidth": 1.4 if run["dtype"] == "float64" else 1.1,
        "label": f"{run['mode']}, {run['dtype']}",
    }


def _legend(fig, axes) -> None:
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3),
                   fontsize="small", frameon=False)


def _bias_only_figure(scenario: Mapping):
    runs = scenario["runs"]
    norms = _norms(runs)
    setup = scenario.get("setup", {})
    fig, axes = _figure(
        3, len(norms),
        f"Only b trains (digits, full batch, lr {setup.get('lr', '?')}): "
        "b drifts in outside mode, the loss does not move",
    )
    for col, norm in enumerate(norms):
        axes[0, col].set_title(f"normalization: {norm}", fontsize="small")
        for run in (r for r in runs if r["norm"] == norm):
            s = run["series"]
            style = _style(run)
            axes[0, col].plot(s["step"], _positive(s["b_displacement_max_abs"]), **style)
            axes[1, col].plot(s["step"], _positive(s["linear_residual_max_abs"]), **style)
            axes[2, col].plot(s["step"], _positive([abs(v) if v is not None else None
                                                    for v in s["loss_change_nats"]]), **style)
        for row in range(3):
            axes[row, col].set_yscale("log")
            axes[row, col].grid(True, which="major", alpha=0.3)
        axes[2, col].set_xlabel("step (gradient steps)")
    axes[0, 0].set_ylabel("max |b_t − b_0|\n(units of x; 0 not shown)", fontsize="small")
    axes[1, 0].set_ylabel("max |b_t − b_0 − tΔb|\n(units of x; 0 not shown)", fontsize="small")
    axes[2, 0].set_ylabel("|loss_t − loss_0|\n(nats; 0 not shown)", fontsize="small")
    _legend(fig, axes)
    return fig


def _curves_figure(runs: list, dataset: str, batching: str, lr):
    norms = _norms(runs)
    fig, axes = _figure(
        4, len(norms),
        f"Every parameter trains: {dataset}, "
        f"{'full batch' if batching == 'full' else batching + 'es'}, lr {lr}",
    )
    for col, norm in enumerate(norms):
        axes[0, col].set_title(f"normalization: {norm}", fontsize="small")
        for run in (r for r in runs if r["norm"] == norm):
            s = run["series"]
            style = _style(run)
            axes[0, col].plot(s["step"], _positive(s["loss_nats"]), **style)
            axes[1, col].plot(s["step"], _finite(s["accuracy_fraction"]), **style)
            axes[2, col].plot(s["step"], _positive(s["b_norm"]), **style)
            axes[3, col].plot(s["step"], _positive(s["W_norm"]), **style)
        axes[2, col].set_yscale("log")  # exact mode keeps b at rounding level
        for row in (0, 3):
            _log_if_decades(axes[row, col])
        for row in range(4):
            axes[row, col].grid(True, which="major", alpha=0.3)
        axes[1, col].set_ylim(0.0, 1.02)
        axes[3, col].set_xlabel("step (gradient steps)")
    axes[0, 0].set_ylabel("training loss\n(nats)", fontsize="small")  # log if > 1 decade
    axes[1, 0].set_ylabel("training accuracy\n(fraction)", fontsize="small")
    axes[2, 0].set_ylabel("‖b‖\n(units of x; 0 not shown)", fontsize="small")
    axes[3, 0].set_ylabel("‖W‖ (Frobenius,\nunits of x per input)", fontsize="small")
    _legend(fig, axes)
    return fig


def _sweep_figure(scenario: Mapping):
    table = scenario["sweep"]["table"]
    runs = scenario["sweep"]["runs"]
    setup = scenario.get("setup", {})
    norms = _norms(table)
    fig, axes = _figure(
        3, len(norms),
        f"Learning-rate sweep ({setup.get('sweep_dataset', '?')}, "
        f"{setup.get('sweep_steps', '?')} steps, median over "
        f"{len(setup.get('sweep_seeds', [])) or '?'} seeds); x: blew up in every seed",
    )
    initial = sorted(r["summary"]["initial_loss_nats"] for r in runs
                     if r["summary"]["initial_loss_nats"] is not None)
    for col, norm in enumerate(norms):
        axes[0, col].set_title(f"normalization: {norm}", fontsize="small")
        keys = []
        for row in table:
            if row["norm"] == norm and (row["mode"], row["dtype"]) not in keys:
                keys.append((row["mode"], row["dtype"]))
        for mode, dtype in keys:
            rows = sorted((r for r in table
                           if r["norm"] == norm and r["mode"] == mode and r["dtype"] == dtype),
                          key=lambda r: r["lr"])
            lrs = [r["lr"] for r in rows]
            style = _style({"mode": mode, "dtype": dtype})
            for i, key in enumerate(("final_loss_nats_median", "final_W_norm_median",
                                     "final_b_norm_median")):
                ys = _positive([r[key] for r in rows])
                axes[i, col].plot(lrs, ys, marker="o", markersize=3, **style)
                blown = [(x, y) for x, y, r in zip(lrs, ys, rows, strict=True)
                         if r["blew_up"] == r["runs"] and math.isfinite(y)]
                if blown:
                    axes[i, col].plot(*zip(*blown, strict=True), linestyle="none", marker="x",
                                      markersize=7, color=style["color"])
        if initial:
            axes[0, col].axhline(initial[len(initial) // 2], color="0.4", linestyle=":",
                                 linewidth=1.0, label="initial loss")
        for row in range(3):
            axes[row, col].set_xscale("log")
            axes[row, col].set_yscale("log")
            axes[row, col].grid(True, which="major", alpha=0.3)
        axes[2, col].set_xlabel("learning rate (per step)")
    axes[0, 0].set_ylabel("final loss\n(nats)", fontsize="small")
    axes[1, 0].set_ylabel("final ‖W‖\n(units of x per input)", fontsize="small")
    axes[2, 0].set_ylabel("final ‖b‖\n(units of x)", fontsize="small")
    _legend(fig, axes)
    return fig


def _check_result(result: object, name: str) -> Mapping:
    if not isinstance(result, Mapping):
        raise TypeError(f"{name} must be the dict an experiment returned, got "
                        f"{type(result).__name__}")
    return result


def drift_figures(result: dict) -> dict:
    """Draw the drift experiment's figures.

    Parameters
    ----------
    result : dict
        The result of :func:`bnproof.experiments.drift.run_drift` (any
        subset of its scenarios).

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``"bias-only"`` (displacement of b, its distance from a straight
        line and the change of the loss, per step), one
        ``"train-all-<dataset>-<batching>"`` per training-curve setting
        (loss, accuracy, ``‖b‖`` and ``‖W‖`` per step), ``"train-all-sweep"``
        (final loss, ``‖W‖`` and ``‖b‖`` against the learning rate) and
        ``"precision"`` (see :func:`accuracy_figure`), for the scenarios
        present in ``result``.

    Raises
    ------
    TypeError
        If ``result`` is not a mapping.
    ValueError
        If ``result`` holds none of the drift scenarios.

    Notes
    -----
    Ioffe & Szegedy (2015), section 2: the figures show the drift of ``b``
    with the loss fixed when the normalization is outside the gradient step,
    and what happens when every parameter trains.
    """
    result = _check_result(result, "result")
    scenarios = [s for s in ("bias-only", "train-all", "precision") if s in result]
    if not scenarios:
        raise ValueError(
            "result has none of the scenarios 'bias-only', 'train-all', 'precision'; "
            "pass the dict returned by bnproof.experiments.drift.run_drift"
        )
    figures = {}
    if "bias-only" in result:
        figures["bias-only"] = _bias_only_figure(result["bias-only"])
    if "train-all" in result:
        train = result["train-all"]
        groups: dict[tuple[str, str], list] = {}
        for run in train["curves"]:
            groups.setdefault((run["dataset"], run["batching"]), []).append(run)
        for (dataset, batching), runs in groups.items():
            figures[f"train-all-{dataset}-{batching}"] = _curves_figure(
                runs, dataset, batching, train.get("setup", {}).get("curve_lr", "?"))
        if train["sweep"]["table"]:
            figures["train-all-sweep"] = _sweep_figure(train)
    if "precision" in result:
        figures["precision"] = accuracy_figure(result["precision"]["accuracy"])
    return figures


def accuracy_figure(result: dict):
    """Draw the float32 error of each method against the offset ``|mean| / std``.

    Parameters
    ----------
    result : dict
        The result of
        :func:`bnproof.experiments.accuracy.accuracy_vs_offset`.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels against ``|mean| / std`` (symmetric-log axis, so the
        offset 0 shows): the largest error in float32 ulp, with the goal as
        a dotted line when the result states one, and the largest absolute
        error.

    Raises
    ------
    TypeError
        If ``result`` is not a mapping.
    ValueError
        If ``result`` has no rows.

    Notes
    -----
    Ioffe & Szegedy (2015), Algorithm 1: ``x - mu`` loses the digits of
    ``x`` that ``mu`` shares, so the error grows with ``|mean| / std`` unless
    the statistics and the output are computed in wider precision.
    """
    result = _check_result(result, "result")
    rows = result.get("rows")
    if not rows:
        raise ValueError(
            "result has no rows; pass the dict returned by "
            "bnproof.experiments.accuracy.accuracy_vs_offset"
        )
    methods: list[str] = []
    for row in rows:
        if row["method"] not in methods:
            methods.append(row["method"])
    setup = result.get("setup", {})
    shape = setup.get("shape")
    fig, axes = _figure(
        2, 1,
        "float32 output error against an exact reference"
        + (f" ({shape[0]} x {shape[1]} batch, std {setup.get('std', '?')})" if shape else ""),
    )
    fallback = iter(_FALLBACK_COLORS * 4)
    for method in methods:
        mine = sorted((r for r in rows if r["method"] == method),
                      key=lambda r: r["offset_over_std"])
        xs = [r["offset_over_std"] for r in mine]
        color = METHOD_COLORS.get(method) or next(fallback)
        for ax, key in zip(axes[:, 0], ("max_err_ulp", "max_abs_err"), strict=True):
            ax.plot(xs, _positive([r[key] for r in mine]), marker="o", markersize=3.5,
                    color=color, label=method)
    goal = setup.get("goal_ulp")
    if goal is not None:
        axes[0, 0].axhline(goal, color="0.4", linestyle=":", linewidth=1.0,
                           label=f"goal ({goal:g} ulp)")
    for ax in axes[:, 0]:
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(left=0.0)  # offsets are >= 0: no empty negative half
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 0].set_ylabel("max error\n(float32 ulp)", fontsize="small")
    axes[1, 0].set_ylabel("max |error|\n(units of the output)", fontsize="small")
    axes[1, 0].set_xlabel("offset |mean| / std (dimensionless; symmetric log, 0 at the left)")
    _legend(fig, axes)
    return fig
