"""Figures of the drift and accuracy experiments (object-oriented matplotlib)."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn", reason="the drift experiment trains on scikit-learn's digits")

from matplotlib.figure import Figure  # noqa: E402

from bnproof.experiments.drift import run_drift  # noqa: E402
from bnproof.plots import WIDTH_IN, accuracy_figure, drift_figures  # noqa: E402

#: The report embeds figures in a column about 700 pixels wide (at 100 dpi).
COLUMN_PX = 700


@pytest.fixture(scope="module")
def drift_result():
    return run_drift(["bias-only", "train-all"], quick=True, steps=3)


def _accuracy_result():
    # Made-up numbers in the shape accuracy_vs_offset returns, including a
    # non-finite error (None) and a zero, which log axes cannot show.
    rows = []
    for offset, errs in ((0.0, (0.4, 5.0)), (1e3, (0.4, 2e4)), (1e6, (0.0, None))):
        for method, err in zip(("bnproof", "one-pass-float32"), errs, strict=True):
            rows.append({"offset_over_std": offset, "method": method, "max_err_ulp": err,
                         "max_abs_err": None if err is None else err * 1e-7,
                         "within_goal": err is not None and err <= 2})
    return {"rows": rows, "setup": {"shape": [8, 2], "std": 1.0, "goal_ulp": 2.0}}


def test_drift_figures_names_and_types(drift_result):
    figures = drift_figures(drift_result)
    assert set(figures) == {"bias-only", "train-all-digits-full", "train-all-synthetic-full",
                            "train-all-sweep"}
    for fig in figures.values():
        assert isinstance(fig, Figure)
        assert fig.get_size_inches()[0] == WIDTH_IN
        assert round(fig.get_size_inches()[0] * 100) == COLUMN_PX


def test_every_panel_is_labelled_with_units(drift_result):
    figures = drift_figures(drift_result)
    figures["accuracy"] = accuracy_figure(_accuracy_result())
    for name, fig in figures.items():
        axes = fig.get_axes()
        grid = axes[0].get_subplotspec().get_gridspec()
        rows, cols = grid.get_geometry()
        for ax in axes:
            spec = ax.get_subplotspec()
            if spec.colspan.start == 0:
                assert "(" in ax.get_ylabel(), (name, ax.get_ylabel())
            if spec.rowspan.stop == rows:
                assert "(" in ax.get_xlabel(), (name, ax.get_xlabel())
            assert ax.get_lines(), name


def test_log_scales_where_values_span_decades(drift_result):
    figures = drift_figures(drift_result)
    for ax in figures["bias-only"].get_axes():
        assert ax.get_yscale() == "log"
    for ax in figures["train-all-sweep"].get_axes():
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    curves = figures["train-all-digits-full"].get_axes()
    # |b| spans rounding level (exact) to order one (outside): always log.
    assert all(ax.get_yscale() == "log" for ax in curves if "‖b‖" in ax.get_ylabel())


def test_accuracy_figure_drops_what_log_axes_cannot_show():
    fig = accuracy_figure(_accuracy_result())
    top, bottom = fig.get_axes()
    assert top.get_xscale() == "symlog" and top.get_yscale() == "log"
    (one_pass,) = [ln for ln in top.get_lines() if ln.get_label() == "one-pass-float32"]
    ys = list(one_pass.get_ydata())
    assert ys[:2] == [5.0, 2e4] and ys[2] != ys[2]  # None became a gap (NaN)
    (bnproof,) = [ln for ln in top.get_lines() if ln.get_label() == "bnproof"]
    assert list(bnproof.get_ydata())[2] != list(bnproof.get_ydata())[2]  # 0 became a gap
    assert any(ln.get_label().startswith("goal") for ln in top.get_lines())


def test_bad_inputs():
    with pytest.raises(TypeError, match="must be the dict"):
        drift_figures([1, 2])
    with pytest.raises(ValueError, match="none of the scenarios"):
        drift_figures({"seed": 0})
    with pytest.raises(ValueError, match="no rows"):
        accuracy_figure({"rows": []})


def test_pyplot_is_never_imported(drift_result, tmp_path):
    # In a fresh interpreter: draw every figure from saved results, then
    # check that pyplot (global state, a display backend) was never loaded.
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"drift": drift_result, "accuracy": _accuracy_result()}),
                    encoding="utf-8")
    code = (
        "import json, sys\n"
        "from bnproof.plots import accuracy_figure, drift_figures\n"
        f"data = json.load(open({str(path)!r}, encoding='utf-8'))\n"
        "figs = drift_figures(data['drift'])\n"
        "figs['accuracy'] = accuracy_figure(data['accuracy'])\n"
        "assert len(figs) == 5\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
