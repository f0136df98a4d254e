"""Tests of the claim runner (``_runner``): its worker loop and process slots with
stand-ins for the pipe and the process (fast), and the real worker processes once.
"""

import pickle
import time

import pytest

from bnproof.symbolic import _registry, _runner
from bnproof.symbolic._proof import Claim, Proof


def _proof(cid, n_max=0):
    return Proof(cid, "proved", True, ("test",), seconds=float(n_max))


def _fail(n_max):
    raise ValueError(f"boom at {n_max}")


@pytest.fixture
def claims(monkeypatch):
    """Two claims in the registry: one proves, one raises."""
    for cid, prove in (("zz-ok", lambda n: _proof("zz-ok", n)), ("zz-bad", _fail)):
        monkeypatch.setitem(_registry._REGISTRY, cid, Claim(
            id=cid, statement="S.", latex="l", assumptions=(), expected="proved", prove=prove))


def test_time_limit_proof():
    proof = _runner.time_limit_proof("some-claim", 2.5)
    assert proof == Proof("some-claim", "unproved", False, (), seconds=2.5,
                          reason="time limit: not decided within 2.5 s")
    assert _runner.time_limit_proof("c", 10.0).reason == "time limit: not decided within 10 s"


class _Conn:
    """A pipe end: ``recv`` hands out ``incoming`` then raises EOFError."""

    def __init__(self, incoming=(), fail_send=False):
        self.incoming, self.sent, self.closed, self.fail_send = list(incoming), [], False, fail_send

    def recv(self):
        if not self.incoming:
            raise EOFError
        return self.incoming.pop(0)

    def send(self, value):
        if self.fail_send:
            raise BrokenPipeError
        self.sent.append(value)

    def close(self):
        self.closed = True


def test_worker_proves_what_it_is_sent_until_none(claims):
    conn = _Conn(["zz-ok", "zz-bad", None, "zz-ok"])
    _runner._worker(conn, 5, ())
    assert conn.sent[0] == ("ready",)
    kind, cid, data = conn.sent[1]
    assert (kind, cid) == ("done", "zz-ok") and pickle.loads(data) == _proof("zz-ok", 5)
    kind, cid, message, trace = conn.sent[2]
    assert (kind, cid, message) == ("error", "zz-bad", "ValueError: boom at 5")
    assert "Traceback" in trace and "boom at 5" in trace
    assert len(conn.sent) == 3  # it stopped at None
    assert conn.incoming == ["zz-ok"]


def test_worker_stops_quietly_when_the_pipe_closes(claims):
    conn = _Conn(["zz-ok"])
    _runner._worker(conn, 3, ())  # EOFError after the one claim: no exception
    assert [m[0] for m in conn.sent] == ["ready", "done"]


def test_worker_loads_the_claims_files_first(monkeypatch, claims):
    loaded = []
    monkeypatch.setattr(_registry, "load_claims", loaded.append)
    conn = _Conn([None])
    _runner._worker(conn, 3, ("a.py", "b.py"))
    assert loaded == ["a.py", "b.py"] and conn.sent == [("ready",)]


class _Process:
    def __init__(self, target, args, name, daemon):
        self.target, self.args, self.name, self.daemon = target, args, name, daemon
        self.events, self.alive, self.exitcode, self.stubborn = [], False, None, False

    def start(self):
        self.events.append("start")
        self.alive = True

    def is_alive(self):
        return self.alive

    def terminate(self):
        self.events.append("terminate")

    def join(self, timeout=None):
        self.events.append(("join", timeout))
        self.alive = self.alive and self.stubborn

    def kill(self):
        self.events.append("kill")
        self.alive = False


class _Context:
    def __init__(self, fail_send=False):
        self.parent, self.child = _Conn(fail_send=fail_send), _Conn()

    def Pipe(self):  # noqa: N802 (multiprocessing's name)
        return self.parent, self.child

    def Process(self, **kwargs):  # noqa: N802
        self.process = _Process(**kwargs)
        return self.process


def test_slot_starts_a_worker_process():
    ctx = _Context()
    slot = _runner._Slot(ctx, 4, ["m.py"])
    proc = ctx.process
    assert (proc.target, proc.args, proc.name, proc.daemon) == (
        _runner._worker, (ctx.child, 4, ("m.py",)), "bnproof-prover", True)
    assert proc.events == ["start"] and ctx.child.closed and not ctx.parent.closed
    assert (slot.conn, slot.process, slot.ready, slot.claim, slot.started) == (
        ctx.parent, proc, False, None, 0.0)
    before = time.perf_counter()
    slot.give("zz-ok")
    assert ctx.parent.sent == ["zz-ok"] and slot.claim == "zz-ok"
    assert before <= slot.started <= time.perf_counter()


def test_slot_stop_asks_the_worker_to_finish():
    ctx = _Context()
    slot = _runner._Slot(ctx, 4, [])
    slot.stop()
    assert ctx.parent.sent == [None] and ctx.parent.closed
    assert ctx.process.events == ["start", ("join", 5)]


def test_slot_stop_terminates_when_asked_or_when_the_pipe_is_broken():
    ctx = _Context()
    slot = _runner._Slot(ctx, 4, [])
    slot.stop(kill=True)
    assert ctx.parent.sent == [] and ctx.process.events == ["start", "terminate", ("join", 5)]
    ctx = _Context(fail_send=True)
    _runner._Slot(ctx, 4, []).stop()
    assert ctx.process.events == ["start", "terminate", ("join", 5)]


def test_slot_stop_kills_a_worker_that_does_not_end():
    ctx = _Context()
    slot = _runner._Slot(ctx, 4, [])
    ctx.process.stubborn = True
    slot.stop(kill=True)
    assert ctx.process.events == ["start", "terminate", ("join", 5), "kill", ("join", None)]
    assert ctx.parent.closed


def test_slot_stop_of_a_finished_worker_only_joins():
    ctx = _Context()
    slot = _runner._Slot(ctx, 4, [])
    ctx.process.alive = False
    slot.stop(kill=True)
    assert ctx.process.events == ["start", ("join", 5)] and ctx.parent.sent == []


def test_run_claims_here_in_order_with_progress(claims, monkeypatch):
    monkeypatch.setitem(_registry._REGISTRY, "zz-two", Claim(
        id="zz-two", statement="S.", latex="l", assumptions=(), expected="proved",
        prove=lambda n: _proof("zz-two", n + 1)))
    seen = []
    out = _runner.run_claims(["zz-two", "zz-ok"], 3,
                             progress=lambda *args: seen.append(args))
    assert out == [_proof("zz-two", 4), _proof("zz-ok", 3)]
    assert seen == [("zz-two", 1, 2), ("zz-ok", 2, 2)]
    assert _runner.run_claims(("zz-ok",), 2) == [_proof("zz-ok", 2)]


CLAIMS_FILE = '''
import os
import time

from bnproof.symbolic import register
from bnproof.symbolic._proof import Claim, Proof


def _claim(cid, prove):
    register(Claim(id=cid, statement="S.", latex="l", assumptions=(), expected="proved",
                   prove=prove), replace=True)


_claim("rp-ok", lambda n: Proof("rp-ok", "proved", True, ("t",), seconds=float(n)))
_claim("rp-slow", lambda n: time.sleep(120))
_claim("rp-bad", lambda n: 1 / 0)
_claim("rp-exit", lambda n: os._exit(3))
'''


def test_run_claims_in_worker_processes(tmp_path):
    path = tmp_path / "claims.py"
    path.write_text(CLAIMS_FILE, encoding="utf-8")
    seen = []
    out = _runner.run_claims(["rp-slow", "rp-ok", "rp-bad", "rp-exit"], 6, workers=2,
                             time_limit=8, modules=[path],
                             progress=lambda *args: seen.append(args))
    slow, ok, bad, died = out
    assert slow == _runner.time_limit_proof("rp-slow", 8)
    assert ok == Proof("rp-ok", "proved", True, ("t",), seconds=6.0)
    assert (bad.claim_id, bad.verdict) == ("rp-bad", "unproved")
    assert bad.reason == "the proof raised ZeroDivisionError: division by zero"
    assert (died.claim_id, died.verdict) == ("rp-exit", "unproved")
    assert died.reason in ("the worker process exited", "the worker exited with code 3")
    assert sorted(cid for cid, _, _ in seen) == ["rp-bad", "rp-exit", "rp-ok", "rp-slow"]
    assert {total for _, _, total in seen} == {4}
    assert sorted(s[1] for s in seen) == [1, 2, 3, 4]


def test_a_claims_file_that_fails_in_the_workers_is_an_error(tmp_path):
    # regression: the worker's pipe closes when it dies, so the runner read the end of
    # the pipe first and recorded a proof for claim "?", then failed with KeyError
    path = tmp_path / "broken.py"
    path.write_text("raise ImportError('no such thing')\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"a prover process exited with code 1 before "
                                           r"proving anything \(a claims file that fails to "
                                           r"load\?\)"):
        _runner.run_claims(["rp-ok"], 3, workers=1, time_limit=30, modules=[path])
