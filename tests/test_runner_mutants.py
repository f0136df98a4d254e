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


# ---- the scheduling loop, with simulated workers ------------------------------------------ #


class _SimConn:
    """The parent's end of a simulated worker: the worker answers as soon as it is sent a claim."""

    def __init__(self, process):
        self.process, self.queue, self.closed = process, [], False

    def poll(self):
        return bool(self.queue)

    def recv(self):
        item = self.queue.pop(0)
        if item == "EOF":
            raise EOFError
        return item

    def send(self, cid):
        proc = self.process
        if cid is None:
            proc.alive = False
            return
        proc.given.append(cid)
        behaviour = cid.split("-")[1]
        if behaviour == "ok":
            self.queue.append(("done", cid, pickle.dumps(_proof(cid, proc.n_max))))
        elif behaviour == "bad":
            self.queue.append(("error", cid, "ValueError: boom", "Traceback ..."))
        elif behaviour == "dies":  # exits without a word
            proc.alive, proc.exitcode = False, 3
        elif behaviour == "eof":  # the pipe closes first
            self.queue.append("EOF")
            proc.alive, proc.exitcode = False, 3
        elif behaviour == "hangs":
            pass

    def close(self):
        self.closed = True


class _SimProcess:
    def __init__(self, ctx, target, args, name, daemon):
        self.ctx, self.n_max, self.given = ctx, args[1], []
        self.alive, self.exitcode = False, None
        ctx.processes.append(self)

    def start(self):
        if self.ctx.broken_start == "exit":
            self.exitcode = 1
            return
        self.alive = True
        if self.ctx.broken_start == "eof":
            self.conn.queue.append("EOF")
            self.alive, self.exitcode = False, 1
            return
        self.conn.queue.append(("ready",))

    def is_alive(self):
        return self.alive

    def terminate(self):
        self.alive, self.exitcode = False, -15
        self.ctx.terminated.append(self.given[-1] if self.given else None)

    def join(self, timeout=None):
        pass

    def kill(self):
        self.alive = False


class _SimContext:
    def __init__(self, broken_start=None):
        self.processes, self.terminated, self.broken_start = [], [], broken_start

    def Pipe(self):  # noqa: N802 (multiprocessing's name)
        self._pending = _Conn()
        return None, self._pending

    def Process(self, target, args, name, daemon):  # noqa: N802
        proc = _SimProcess(self, target, args, name, daemon)
        proc.conn = _SimConn(proc)
        self.parent = proc.conn
        return proc


@pytest.fixture
def sim(monkeypatch):
    import multiprocessing

    made = []

    def get_context(method):
        assert method == "spawn"
        made.append(_SimContext(sim_state["broken_start"]))
        return made[-1]

    sim_state = {"broken_start": None}
    monkeypatch.setattr(multiprocessing, "get_context", get_context)
    # a slot's pipe: the simulated process's connection is the parent's end
    real_init = _runner._Slot.__init__

    def init(self, ctx, n_max, modules):
        real_init(self, ctx, n_max, modules)
        self.conn = self.process.conn

    monkeypatch.setattr(_runner._Slot, "__init__", init)
    monkeypatch.setattr(_runner, "_POLL_SECONDS", 0.0)
    return made, sim_state


def test_the_loop_proves_in_order_with_every_outcome(sim):
    made, _ = sim
    seen = []
    ids = ["s-ok-1", "s-bad-2", "s-dies-3", "s-eof-4", "s-ok-5", "s-hangs-6"]
    out = _runner.run_claims(ids, 4, workers=2, time_limit=0.05,
                             progress=lambda *args: seen.append(args))
    assert [p.claim_id for p in out] == ids
    assert out[0] == _proof("s-ok-1", 4) and out[4] == _proof("s-ok-5", 4)
    assert out[1] == Proof("s-bad-2", "unproved", False, (),
                           reason="the proof raised ValueError: boom")
    assert out[2] == Proof("s-dies-3", "unproved", False, (),
                           reason="the worker exited with code 3")
    assert out[3] == Proof("s-eof-4", "unproved", False, (),
                           reason="the worker process exited")
    assert out[5] == _runner.time_limit_proof("s-hangs-6", 0.05)
    ctx = made[0]
    assert ctx.terminated == ["s-hangs-6"]  # only the claim over its time
    assert sorted(cid for cid, _, _ in seen) == sorted(ids)
    assert [done for _, done, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert {total for _, _, total in seen} == {6}
    # two at a time: a slot whose worker died is replaced, no more than needed are made
    assert len(ctx.processes) == 4
    assert all(not p.alive for p in ctx.processes)
    # two workers take claims in turn; each dies with its second claim, and a new
    # worker takes the next pending claim in its place
    assert [p.given for p in ctx.processes] == [["s-ok-1", "s-dies-3"], ["s-bad-2", "s-eof-4"],
                                                ["s-ok-5"], ["s-hangs-6"]]


def test_the_loop_starts_no_more_workers_than_claims(sim):
    made, _ = sim
    out = _runner.run_claims(["s-ok-1"], 3, workers=4)
    assert out == [_proof("s-ok-1", 3)]
    assert len(made[0].processes) == 1
    out = _runner.run_claims(["s-ok-1", "s-ok-2", "s-ok-3"], 3, workers=2)
    assert [p.claim_id for p in out] == ["s-ok-1", "s-ok-2", "s-ok-3"]
    assert len(made[1].processes) == 2 and sum(len(p.given) for p in made[1].processes) == 3


def test_the_loop_with_a_time_limit_and_one_worker_still_uses_a_worker(sim):
    made, _ = sim
    assert _runner.run_claims(["s-ok-1"], 3, time_limit=10) == [_proof("s-ok-1", 3)]
    assert len(made) == 1 and len(made[0].processes) == 1


@pytest.mark.parametrize("how", ["exit", "eof"])
def test_a_worker_that_fails_to_start_is_an_error(sim, how):
    _, state = sim
    state["broken_start"] = how
    with pytest.raises(RuntimeError, match=r"a prover process exited with code 1 before "
                                           r"proving anything \(a claims file that fails to "
                                           r"load\?\)"):
        _runner.run_claims(["s-ok-1"], 3, workers=2)
