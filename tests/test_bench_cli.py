"""``bnproof bench``: argument errors and a --quick smoke run (structure, never timings)."""

import json
import re

import pytest

from bnproof.cli import main


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5"])
def test_bad_repeats_is_a_usage_error(value, capsys):
    assert main(["bench", "--repeats", value]) == 2
    err = capsys.readouterr().err
    # the message names the value itself (a bare "0" could match anything in it)
    assert re.search(rf"--repeats must be (a whole number )?>= 1, got '?{re.escape(value)}'?$",
                     err.strip().splitlines()[-1]), err


def test_unknown_case_is_a_usage_error(capsys):
    assert main(["bench", "--case", "nchw-float16"]) == 2
    err = capsys.readouterr().err
    assert "nchw-float16" in err and "nchw-float32" in err


def test_help_lists_every_case(capsys):
    from bnproof.bench import CASES

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert all(case.name in text for case in CASES)


def test_one_case_runs_alone(capsys):
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--case", "nc-float32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [c["case"] for c in result["cases"]] == ["nc-float32"]


def test_unknown_option_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--fast"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def quick_json():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", "--quick", "--json", "--repeats", "1"])
    assert code == 0
    return json.loads(buf.getvalue())


def test_quick_json_structure(quick_json):
    result = quick_json
    assert {"cases", "first_call_seconds", "threads", "setup", "provenance"} <= set(result)
    impls = set(result["setup"]["impls"])
    assert {"bnproof", "bnproof-prealloc", "numpy"} <= impls
    layouts = {c["layout"] for c in result["cases"]}
    assert layouts == {"NCHW", "NHWC", "NC"}
    assert {c["dtype"] for c in result["cases"]} == {"float32", "float64"}
    for case in result["cases"]:
        assert case["memcpy_seconds"] > 0 and case["fresh_copy_seconds"] > 0
        assert case["floor_seconds"]["backward"] == pytest.approx(
            1.5 * case["floor_seconds"]["forward"])
        assert {(r["impl"], r["op"]) for r in case["rows"]} == {
            (i, op) for i in impls for op in ("forward", "backward")}
        for row in case["rows"]:
            assert row["seconds"] > 0 and row["gb_per_s"] > 0 and row["fraction_of_floor"] > 0
            assert (row["speedup_vs_torch"] is None) == ("torch" not in impls)
            if row["impl"] == "numpy":
                assert row["speedup_vs_numpy"] == 1.0


def test_table_says_slower_when_bnproof_is_slower():
    from bnproof.commands.bench import format_table

    case = {"case": "c", "shape": [2, 2], "dtype": "float32", "layout": "NC", "rows": [],
            "memcpy_seconds": 1e-3, "memcpy_gb_per_s": 1.0, "fresh_copy_seconds": 1e-3,
            "memcpy_seconds_by_method": {"numpy": 1e-3},
            "forward_backward_speedup_vs_torch": 0.25}
    result = {"cases": [case], "threads": {"numba_threads": 2, "torch_threads": 2},
              "first_call_seconds": 0.5}
    text = format_table(result)
    assert "bnproof 4.00x slower than torch" in text and "faster" not in text


def test_quick_table(capsys):
    assert main(["bench", "--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "GB/s" in out and "memcpy" in out and "first call in a new process" in out


def test_module_rows_in_quick_run(quick_json):
    pytest.importorskip("torch")
    from bnproof.bench import MODULE_CASE_NAMES
    from bnproof.torch._bench import MODULE_CASES, STEP_CASE

    assert [c.name for c in MODULE_CASES] + [STEP_CASE] == list(MODULE_CASE_NAMES)
    rows = quick_json["modules"]
    assert [r["case"] for r in rows] == list(MODULE_CASE_NAMES[:3])
    assert {r["layout"] for r in rows} == {"NCHW", "NHWC", "NC"}
    for row in rows:
        assert row["seconds"]["torch"] > 0 and row["seconds"]["bnproof"] > 0
        assert row["speedup_vs_torch"] == pytest.approx(
            row["seconds"]["torch"] / row["seconds"]["bnproof"])
        for impl in ("torch", "bnproof"):  # a median is never below the minimum
            assert row["median_seconds"][impl] >= row["seconds"][impl]
        assert row["median_speedup_vs_torch"] == pytest.approx(
            row["median_seconds"]["torch"] / row["median_seconds"]["bnproof"])
    step = quick_json["train_step"]
    assert set(step["seconds"]) == set(step["median_seconds"]) == {
        "torch", "bnproof", "no batch norm"}
    assert all(0.0 <= share < 1.0 for share in step["batch_norm_share"].values())


def test_module_rows_are_printed_with_ratios():
    from bnproof.commands.bench import format_table

    result = {"cases": [], "threads": {"numba_threads": 2, "torch_threads": 2},
              "first_call_seconds": 0.5,
              "modules": [{"case": "module-nc-float32", "shape": [4, 2], "layout": "NC",
                           "seconds": {"torch": 3e-3, "bnproof": 1e-3},
                           "speedup_vs_torch": 3.0}],
              "train_step": {"case": "cnn-step", "shape": [8, 3, 8, 8], "dtype": "float32",
                             "seconds": {"torch": 4e-3, "bnproof": 8e-3,
                                         "no batch norm": 2e-3},
                             "batch_norm_share": {"torch": 0.5, "bnproof": 0.75},
                             "speedup_vs_torch": 0.5}}
    text = format_table(result)
    assert "module-nc-float32" in text and "bnproof 3.00x faster than torch" in text
    assert "bnproof 2.00x slower than torch" in text
    assert "torch 50%, bnproof 75%" in text
    assert "median torch" not in text  # none were measured
    result["modules"][0].update(median_seconds={"torch": 5e-3, "bnproof": 4e-3},
                                median_speedup_vs_torch=1.25)
    result["train_step"].update(median_seconds={"torch": 6e-3, "bnproof": 3e-3,
                                                "no batch norm": 2e-3},
                                median_speedup_vs_torch=2.0)
    text = format_table(result)
    assert ("median torch 5.00 ms, bnproof 4.00 ms: bnproof 1.25x faster than torch"
            in text)
    assert "median torch 6.00 ms, bnproof 3.00 ms: bnproof 2.00x faster than torch" in text


def test_module_case_runs_alone(capsys):
    pytest.importorskip("torch")
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--case",
                 "module-nc-float32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cases"] == [] and [r["case"] for r in result["modules"]] == [
        "module-nc-float32"]
    assert result["train_step"] is None


def test_module_case_without_torch_is_a_usage_error(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["bench", "--quick", "--case", "cnn-step"]) == 2
    assert "needs PyTorch" in capsys.readouterr().err
