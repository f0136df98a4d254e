"""The report reuses stored proofs only under the same code digest, and says so."""

import pytest

import bnproof.symbolic
from bnproof import _cache
from bnproof.report import collect
from bnproof.report._collect import proofs_key


@pytest.fixture
def counted_prove_all(monkeypatch):
    """Replace prove_all by a cheap stand-in (one proof per claim) that counts its calls."""
    from bnproof.symbolic import CLAIMS, Proof

    calls = []

    def fake(ids=None, n_max=8, progress=None, **kwargs):
        calls.append(n_max)
        return [Proof(cid, "unproved", False, (), reason=f"stand-in at N <= {n_max}")
                for cid in CLAIMS]

    monkeypatch.setattr(bnproof.symbolic, "prove_all", fake)
    return calls


def _proofs(**kwargs):
    return collect(stages=("proofs",), parallel=False, **kwargs)


def test_second_run_reuses_and_says_so_fresh_recomputes(counted_prove_all):
    first = _proofs(quick=True)
    assert first.settings["proofs"]["source"] == "computed in this run"
    second = _proofs(quick=True)
    assert counted_prove_all == [4]  # the second run proved nothing
    key = proofs_key(4)
    assert second.settings["proofs"]["source"].startswith("reused from ")
    assert f"same code digest {key[:12]}" in second.settings["proofs"]["source"]
    assert [c.proof.summary() for c in second.claims] == [c.proof.summary()
                                                        for c in first.claims]
    third = _proofs(quick=True, fresh=True)
    assert counted_prove_all == [4, 4]
    assert third.settings["proofs"]["source"] == "computed in this run"


def test_a_different_n_max_misses(counted_prove_all):
    _proofs(quick=True)  # n_max 4
    data = _proofs(quick=False)  # n_max 8: another digest
    assert counted_prove_all == [4, 8]
    assert data.settings["proofs"]["source"] == "computed in this run"
    assert proofs_key(4) != proofs_key(8)


def test_a_modified_claims_file_changes_the_digest(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("# my claims\n")
    before = proofs_key(8, [str(f)])
    assert proofs_key(8, [str(f)]) == before  # deterministic
    f.write_text("# my claims, edited\n")
    assert proofs_key(8, [str(f)]) != before
    assert proofs_key(8) != before


def test_a_corrupt_cache_file_is_recomputed_without_a_traceback(counted_prove_all, capsys):
    _proofs(quick=True)
    entries = list(_cache.cache_dir().glob("proofs-*.pickle"))
    assert len(entries) == 1
    entries[0].write_bytes(b"\x80\x05not a pickle at all")
    data = _proofs(quick=True)
    assert counted_prove_all == [4, 4]
    assert data.settings["proofs"]["source"] == "computed in this run"
    assert "Traceback" not in capsys.readouterr().err
    # the recomputed proofs replaced the corrupt entry
    assert _proofs(quick=True).settings["proofs"]["source"].startswith("reused from ")
    assert counted_prove_all == [4, 4]


def test_an_entry_for_other_claims_is_not_reused(counted_prove_all):
    from bnproof.symbolic import Proof

    assert _cache.store("proofs", proofs_key(4), [Proof("x", "proved", True, ())])
    assert _proofs(quick=True).settings["proofs"]["source"] == "computed in this run"
    assert counted_prove_all == [4]


def test_an_unwritable_cache_folder_only_means_no_reuse(counted_prove_all, tmp_path,
                                                        monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BNPROOF_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    for _ in range(2):
        assert _proofs(quick=True).settings["proofs"]["source"] == "computed in this run"
    assert counted_prove_all == [4, 4]


def test_cli_fresh_flag_reaches_collect(tmp_path, monkeypatch):
    from test_report import sample_data

    import bnproof.report
    from bnproof.cli import main

    seen = []

    def fake(*, quick, seed, progress, **kwargs):
        seen.append(kwargs)
        return sample_data()

    monkeypatch.setattr(bnproof.report, "collect", fake)
    assert main(["report", "--out", str(tmp_path / "a"), "--fresh"]) == 0
    assert main(["report", "--out", str(tmp_path / "b")]) == 0
    assert seen == [{"fresh": True}, {}]


@pytest.mark.slow
def test_a_cache_hit_gives_the_same_proofs_as_the_run_that_stored_them():
    fresh = _proofs(quick=True)
    hit = _proofs(quick=True)
    assert hit.settings["proofs"]["source"].startswith("reused from ")
    assert [c.proof.summary() for c in hit.claims] == [c.proof.summary() for c in fresh.claims]
    assert [[str(s) for s in c.proof.steps] for c in hit.claims] == [
        [str(s) for s in c.proof.steps] for c in fresh.claims]
    assert [c.as_expected for c in hit.claims] == [c.as_expected for c in fresh.claims]


def _without_clock(value):
    """The value without wall times and dates (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items()
                if k not in ("timings_seconds", "date", "seconds")}
    if isinstance(value, (list, tuple)):
        return [_without_clock(v) for v in value]
    return value


@pytest.mark.slow
def test_with_the_proofs_reused_the_drift_runs_in_a_second_process_with_the_same_results():
    seen = []
    there = collect(quick=True, seed=3, stages=("accuracy", "drift", "figures"), parallel=True,
                    progress=lambda *args: seen.append(args))
    here = collect(quick=True, seed=3, stages=("accuracy", "drift", "figures"),
                   parallel=False)
    assert there.settings["drift"]["separate_process"] is True
    assert here.settings["drift"]["separate_process"] is False
    assert ("drift", 0, 1, "in a second process") in seen
    assert repr(_without_clock(there.drift)) == repr(_without_clock(here.drift))
    assert [f.name for f in there.figures] == [f.name for f in here.figures]
    assert [f.svg for f in there.figures] == [f.svg for f in here.figures]


def test_crosscheck_reused_derivations_give_the_same_rows_and_say_so():
    from bnproof.experiments import crosscheck

    crosscheck._derivation.cache_clear()
    computed = crosscheck.cross_check((2, 3), seed=4, reuse=True)  # stores the code
    assert computed["setup"]["derivations_reused"] == []
    crosscheck._derivation.cache_clear()
    reused = crosscheck.cross_check((2, 3), seed=4, reuse=True)
    assert reused["setup"]["derivations_reused"] == [2, 3]
    crosscheck._derivation.cache_clear()
    fresh = crosscheck.cross_check((2, 3), seed=4)
    assert reused["rows"] == fresh["rows"] == computed["rows"]  # bit for bit
    assert crosscheck._derivation_key(2) != crosscheck._derivation_key(3)


def test_a_corrupt_derivation_entry_is_derived_again(capsys):
    from bnproof.experiments import crosscheck

    crosscheck._derivation.cache_clear()
    crosscheck.cross_check((2,), seed=4, reuse=True)
    (entry,) = _cache.cache_dir().glob("crosscheck-derivation-*.pickle")
    for garbage in (b"garbage", None):
        if garbage is None:  # a readable entry whose code does not compile
            assert _cache.store("crosscheck-derivation", crosscheck._derivation_key(2), "def (")
        else:
            entry.write_bytes(garbage)
        crosscheck._derivation.cache_clear()
        result = crosscheck.cross_check((2,), seed=4, reuse=True)
        assert result["setup"]["derivations_reused"] == []
        assert all(row["passed"] for row in result["rows"])
    assert "Traceback" not in capsys.readouterr().err


def test_the_written_report_says_where_the_proofs_came_from(tmp_path):
    import dataclasses

    from test_report import sample_data

    from bnproof.report import write_markdown

    for source in ("computed in this run",
                   "reused from 2026-01-02 03:04:05 UTC, same code digest 0123456789ab"):
        data = sample_data()
        data = dataclasses.replace(data, settings={**data.settings,
                                                   "proofs": {"n_max": 8, "source": source}})
        out = tmp_path / source[:8]
        out.mkdir()
        write_markdown(data, out)
        assert source in (out / "report.md").read_text(encoding="utf-8")
