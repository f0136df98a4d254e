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
