"""The population-statistics section of the report, from plain data (no PyTorch needed)."""

from bnproof.report import _markdown
from bnproof.report._document import Heading, Table
from bnproof.report._precise import precise_section


def _study():
    rows = [
        dict(dtype="float32", batches="sorted", estimator=name, mean_error=err,
             var_error=err * 2, test_accuracy=acc)
        for name, err, acc in (("update_bn", 0.108, 0.992), ("bnproof precise_bn", 3e-8, 0.994))
    ]
    return {
        "setup": {"data": "digits", "batchings": {"sorted": "sorted by label"},
                  "batch_norms": ["1", "4"]},
        "baseline_accuracy": 0.99,
        "rows": rows,
        "eval_consistent": [
            dict(mode="train", passes=1, var_error_per_layer=[5e-8, 0.41], test_accuracy=0.99),
            dict(mode="eval-consistent", passes=2, var_error_per_layer=[5e-8, 6e-8],
                 test_accuracy=0.99),
        ],
        "timing": {"update_bn_s": 0.05, "precise_bn_s": 0.06, "ratio": 1.2, "repeats": 5},
    }


def test_section_shows_every_row_and_figure_from_the_data():
    blocks = precise_section(_study())
    assert isinstance(blocks[0], Heading) and blocks[0].anchor == "precise"
    tables = [b for b in blocks if isinstance(b, Table)]
    assert len(tables) == 2
    assert tables[0].rows == (
        ("float32", "sorted", "update_bn", "0.108", "0.216", "0.992"),
        ("float32", "sorted", "bnproof precise_bn", "3e-08", "6e-08", "0.994"),
    )
    assert tables[1].rows[0] == ("train", "1", "5e-08", "0.41", "0.99")
    markdown = "\n".join(_markdown._block(b, "figures") for b in blocks)
    assert "bnproof precise\\_bn" in markdown and "ratio of 1.2" in markdown
    assert "sorted: sorted by label" in markdown


def test_without_data_the_section_says_so():
    blocks = precise_section(None)
    assert len(blocks) == 2
    assert "not run" in blocks[1].runs[0][1]
    # Negative control: with data the sentence is absent.
    assert not any("not run" in str(getattr(b, "runs", "")) for b in precise_section(_study()))
