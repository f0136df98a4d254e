"""The report's second process, its messages and their handling, without starting one."""

import multiprocessing
import pickle
import queue

import pytest

import bnproof.experiments.accuracy
import bnproof.experiments.drift
import bnproof.kernels
import bnproof.plots
import bnproof.symbolic
from bnproof.report import _second_process as sp
from bnproof.symbolic import CLAIMS, Proof


class _Queue(list):
    def put(self, item):
        self.append(item)


def _proof(cid):
    return Proof(cid, "proved", False, ())


def test_take_counts_up_to_the_total():
    counter = multiprocessing.Value("l", 0)
    assert [sp._take(counter, 2) for _ in range(3)] == [0, 1, None]
    assert counter.value == 2
    assert sp._take(multiprocessing.Value("l", 5), 5) is None


def _fake_drift(monkeypatch):
    def run_drift(progress, **kw):
        progress("bias-only", 1, 2)
        return {"kw": kw}

    monkeypatch.setattr(bnproof.experiments.drift, "run_drift", run_drift)
    monkeypatch.setattr(bnproof.plots, "drift_figures",
                        lambda result: {"a": f"fig a of {result['kw']}", "b": "fig b"})
    monkeypatch.setattr(sp, "render_figure", lambda fig, name, caption: (fig, name, caption))
    monkeypatch.setattr(sp, "figure_caption", lambda name, fig: f"about {name}, {fig}")


def test_drift_job_sends_progress_then_the_results(monkeypatch):
    _fake_drift(monkeypatch)
    q = _Queue()
    sp._drift_job({"seed": 3}, True, q)
    assert q[:5] == [("drift-progress", 0, 1, "in a second process"),
                     ("drift-progress", 1, 2, "bias-only"),
                     ("figure-progress", 0, 2, "a"), ("figure-progress", 1, 2, "b"),
                     q[4]]
    kind, result, seconds, rendered, figure_seconds = q[4]
    assert kind == "drift" and result == {"kw": {"seed": 3}} and 0 <= seconds < 5
    assert rendered == (("fig a of {'seed': 3}", "a", "about a, fig a of {'seed': 3}"),
                        ("fig b", "b", "about b, fig b")) and 0 <= figure_seconds < 5
    assert len(q) == 5
    q = _Queue()
    sp._drift_job({"seed": 3}, False, q)
    assert [m[0] for m in q] == ["drift-progress", "drift-progress", "drift"]
    assert q[-1][3:] == ((), 0.0)


def test_worker_runs_the_drift_or_nothing_without_proofs(monkeypatch):
    _fake_drift(monkeypatch)
    q = _Queue()
    sp._prove_worker(0, q, prove=False, drift={"seed": 1}, drift_figures=False)
    assert [m[0] for m in q] == ["drift-progress", "drift-progress", "drift"]
    q = _Queue()
    sp._prove_worker(0, q, prove=False, drift={"seed": 1})  # no figures unless asked
    assert [m[0] for m in q] == ["drift-progress", "drift-progress", "drift"]
    q = _Queue()
    sp._prove_worker(0, q, prove=False, drift={"seed": 1}, drift_figures=True)
    assert [m[0] for m in q] == ["drift-progress", "drift-progress", "figure-progress",
                                 "figure-progress", "drift"]
    q = _Queue()
    sp._prove_worker(0, q, prove=False)
    assert q == []


def test_worker_proves_the_claims_it_takes(monkeypatch):
    ids = list(CLAIMS)[:2]
    proved = []

    def prove_all(which, n_max):
        proved.append((list(which), n_max))
        return [_proof(which[0])]

    monkeypatch.setattr(bnproof.symbolic, "prove_all", prove_all)
    q = _Queue()
    counter = multiprocessing.Value("l", 1)  # the main process took claim 0
    sp._prove_worker(3, q, counter=counter, ids=ids)
    assert [m[0] for m in q] == ["proofs-start", "proof", "done"]
    assert q[1][1] == 1 and pickle.loads(q[1][2]).claim_id == ids[1]
    assert proved == [([ids[1]], 3)]
    q = _Queue()
    proved.clear()
    sp._prove_worker(2, q, ids=ids)  # no counter: this process proves them all
    assert [m[:2] for m in q[1:3]] == [("proof", 0), ("proof", 1)]
    assert proved == [([ids[0]], 2), ([ids[1]], 2)]
    q = _Queue()
    proved.clear()
    # no ids: this registry's claims, in order (the counter is at the last one)
    sp._prove_worker(2, q, counter=multiprocessing.Value("l", len(CLAIMS) - 1))
    assert proved == [([list(CLAIMS)[-1]], 2)]
    assert q[1][1] == len(CLAIMS) - 1


def test_worker_runs_the_accuracy_first(monkeypatch):
    warmed, ran = [], []
    monkeypatch.setattr(bnproof.kernels, "warm_up", lambda dtypes: warmed.append(dtypes))
    monkeypatch.setattr(bnproof.experiments.accuracy, "accuracy_vs_offset",
                        lambda **kw: ran.append(kw) or {"rows": []})
    monkeypatch.setattr(bnproof.symbolic, "prove_all", lambda which, n_max: [_proof(which[0])])
    q = _Queue()
    sp._prove_worker(2, q, accuracy={"seed": 4}, counter=multiprocessing.Value("l", 1),
                     ids=list(CLAIMS)[:1])
    assert warmed == [["float32"]] and ran == [{"seed": 4}]
    assert q[0] == ("accuracy-start",)
    assert q[1][:2] == ("accuracy", {"rows": []}) and 0 <= q[1][2] < 5
    assert [m[0] for m in q[2:]] == ["proofs-start", "done"]


def test_worker_reports_claims_it_does_not_know():
    q = _Queue()
    sp._prove_worker(2, q, ids=["nowhere", "nor-here"])
    [(kind, text, trace)] = q
    assert kind == "error"
    assert text == ("ValueError: claim(s) nowhere, nor-here are registered in the calling "
                    "process only; a second process sees the built-in claims and claims "
                    "files: put them in a file and pass it as claims_files (bnproof report "
                    "--claims FILE.py), or use parallel=False")
    assert "Traceback" in trace


def test_worker_loads_the_claims_files_first(tmp_path):
    q = _Queue()
    sp._prove_worker(2, q, modules=[str(tmp_path / "missing.py")])
    assert len(q) == 1 and q[0][0] == "error" and "missing.py" in q[0][1]


# --------------------------------------------------------------------------- #
# _Prover without a process
# --------------------------------------------------------------------------- #


def _prover(**kw):
    seen = []
    p = sp._Prover(4, False, lambda *a: seen.append(a), **kw)
    return p, seen


def test_a_prover_here_has_no_process():
    p, _ = _prover(accuracy={"seed": 1}, drift={"seed": 1})
    assert p.process is None and p.queue is None and p.ids == [] and p.proofs == {}
    assert p.runs_accuracy is False and p.runs_drift is False and p.prove is True
    assert p.n_max == 4 and p.proofs_started is None and p.worker_done is False
    p.poll()  # nothing to poll
    p.close()  # nothing to stop


def test_handle_every_message():
    p, seen = _prover()
    p.ids = ["a", "b"]
    p._handle(("proofs-start", 5.0))
    p._handle(("proofs-start", 7.0))
    p._handle(("proofs-start", 3.0))
    assert p.proofs_started == 3.0
    p._handle(("proof", 1, pickle.dumps(_proof("b"))))
    assert list(p.proofs) == [1] and p.proofs[1].claim_id == "b"
    p._handle(("accuracy-start",))
    p._handle(("accuracy", {"rows": 1}, 2.5))
    assert p.accuracy == ({"rows": 1}, 2.5)
    p._handle(("drift-progress", 1, 4, "train-all"))
    p._handle(("figure-progress", 0, 2, "curves"))
    p._handle(("drift", {"r": 1}, 1.5, ("f",), 0.5))
    assert p.drift == ({"r": 1}, 1.5, ("f",), 0.5)
    assert p.worker_done is False
    p._handle(("done",))
    assert p.worker_done is True
    assert seen == [("proofs", 1, 2, "b"),
                    ("accuracy", 0, 1, "compiling kernels (first run only) in the proofs' "
                                       "process"),
                    ("accuracy", 1, 1), ("drift", 1, 4, "train-all"),
                    ("figures", 0, 2, "curves (second process)")]
    with pytest.raises(RuntimeError, match=r"^the proofs failed: ValueError: x\ntrace$"):
        p._handle(("error", "ValueError: x", "trace"))


def test_keep_refuses_a_different_registry():
    p, _ = _prover()
    p.ids = ["a", "b"]
    with pytest.raises(RuntimeError, match=r"^the proofs' process proved b as claim 0, which "
                                           r"is a here: the registries differ$"):
        p._keep(0, _proof("b"))
    assert p.proofs == {}


def test_finished():
    p, _ = _prover()
    assert p._finished() is False
    p.worker_done = True
    assert p._finished() is True
    p.runs_accuracy = True
    assert p._finished() is False
    p.accuracy = ({}, 1.0)
    assert p._finished() is True
    p.runs_drift = True
    assert p._finished() is False
    p.drift = ({}, 1.0, (), 0.0)
    assert p._finished() is True
    q, _ = _prover(prove=False)
    assert q._finished() is True


def test_poll_handles_what_has_arrived_until_finished():
    p, seen = _prover()
    p.ids = ["a"]
    p.queue = queue.Queue()
    for message in (("proofs-start", 1.0), ("proof", 0, pickle.dumps(_proof("a"))), ("done",),
                    ("drift-progress", 1, 2, "left for later")):
        p.queue.put(message)
    p.poll()
    assert p.worker_done is True and seen == [("proofs", 1, 1, "a")]
    assert p.queue.get_nowait() == ("drift-progress", 1, 2, "left for later")
    p.worker_done = False
    p.poll()  # empty queue: returns
    assert p._polling is False


def test_poll_from_inside_a_report_does_not_recurse():
    p, _ = _prover()
    p.ids = ["a", "b"]
    p.queue = queue.Queue()
    calls = []

    def report(*args):
        calls.append(args)
        p.poll()  # a progress callback that polls again

    p.report = report
    p.queue.put(("proof", 0, pickle.dumps(_proof("a"))))
    p.queue.put(("proof", 1, pickle.dumps(_proof("b"))))
    p.poll()
    assert [c[1] for c in calls] == [1, 2]


class _Process:
    def __init__(self, alive, exitcode=None):
        self.alive, self.exitcode = alive, exitcode

    def is_alive(self):
        return self.alive


def test_wait_reads_the_queue_until_done(monkeypatch):
    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)
    p, seen = _prover()
    p.queue = queue.Queue()
    p.process = _Process(True)
    p.runs_accuracy = True
    p.queue.put(("drift-progress", 0, 1, "x"))
    p.queue.put(("accuracy", {"rows": 2}, 1.5))
    assert p.accuracy_result() == ({"rows": 2}, 1.5)
    assert seen == [("drift", 0, 1, "x"), ("accuracy", 1, 1)]
    p.queue.put(("drift", {"d": 1}, 2.0, (), 0.0))
    assert p.drift_result() == ({"d": 1}, 2.0, (), 0.0)


def test_wait_names_a_dead_worker(monkeypatch):
    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)
    p, _ = _prover()
    p.queue = queue.Queue()
    p.process = _Process(False, exitcode=-9)
    with pytest.raises(RuntimeError, match=r"^the proof process exited with code -9 before "
                                           r"finishing; run with parallel=False to see why$"):
        p.accuracy_result()
    # a worker that sent its result just before exiting is not an error
    p.queue.put(("accuracy", {"rows": 3}, 1.0))
    p.queue.put(("drift", {"d": 1}, 2.0, (), 0.0))
    p.runs_accuracy = False
    assert p.accuracy_result() == ({"rows": 3}, 1.0)


def test_wait_raises_the_forwarders_failure():
    p, _ = _prover()
    p._failure = KeyError("from the forwarding thread")
    with pytest.raises(KeyError, match="from the forwarding thread"):
        p.accuracy_result()


def test_result_here_proves_every_claim(monkeypatch):
    calls = []

    def prove_all(n_max, progress):
        calls.append(n_max)
        progress("x", 1, 2)
        return ["proofs"]

    monkeypatch.setattr(bnproof.symbolic, "prove_all", prove_all)
    p, seen = _prover()
    proofs, seconds = p.result()
    assert proofs == ["proofs"] and calls == [4] and 0 <= seconds < 5
    assert seen == [("proofs", 1, 2, "x")]


def test_result_with_a_worker_proves_the_rest_here(monkeypatch):
    import time

    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)
    asked = []

    def prove_all(which, n_max):
        asked.append(n_max)
        return [_proof(which[0])]

    monkeypatch.setattr(bnproof.symbolic, "prove_all", prove_all)
    p, seen = _prover()
    p.ids = ["a", "b", "c"]
    p.counter = multiprocessing.Value("l", 1)  # the worker took "a"
    p.queue = queue.Queue()
    p.process = _Process(True)
    p.queue.put(("proofs-start", time.monotonic() - 1.0))  # the worker began a second ago
    p.queue.put(("proof", 0, pickle.dumps(_proof("a"))))
    p.queue.put(("done",))
    proofs, seconds = p.result()
    assert [x.claim_id for x in proofs] == ["a", "b", "c"] and asked == [4, 4]
    assert 1.0 <= seconds < 3.0  # from the worker's start
    assert sorted(c[1] for c in seen) == [1, 2, 3]


def test_result_times_from_this_process_when_it_began_first(monkeypatch):
    import time

    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)

    def prove_all(which, n_max):
        time.sleep(0.2)
        return [_proof(which[0])]

    monkeypatch.setattr(bnproof.symbolic, "prove_all", prove_all)
    p, _ = _prover()
    p.ids = ["a"]
    p.counter = multiprocessing.Value("l", 0)
    p.queue = queue.Queue()
    p.process = _Process(True)
    p.queue.put(("done",))  # the worker found nothing left
    proofs, seconds = p.result()
    assert [x.claim_id for x in proofs] == ["a"] and 0.2 <= seconds < 2.0
    # nothing to prove at all: no start time, zero-ish seconds
    q, _ = _prover()
    q.counter = multiprocessing.Value("l", 0)
    q.queue = queue.Queue()
    q.process = _Process(True)
    q.queue.put(("done",))
    proofs, seconds = q.result()
    assert proofs == [] and 0.0 <= seconds < 0.5


class _SlowQueue:
    """A queue whose ``get`` first times out (the worker is still busy)."""

    def __init__(self, *items):
        self.items = list(items)

    def get(self, timeout):
        item = self.items.pop(0)
        if item is None:
            raise queue.Empty
        return item

    def get_nowait(self):
        if not self.items:
            raise queue.Empty
        return self.items.pop(0)


def test_wait_keeps_waiting_while_the_worker_lives():
    p, _ = _prover()
    p.process = _Process(True)
    p.queue = _SlowQueue(None, None, ("accuracy", {"rows": 5}, 2.0))
    assert p.accuracy_result() == ({"rows": 5}, 2.0)


def test_reports_made_while_handling_do_not_handle_more():
    # a progress callback that polls (as collect's does) must not handle the
    # next message inside the report of this one, in poll or in _wait
    for how in ("poll", "wait"):
        p, _ = _prover()
        p.ids = ["a", "b"]
        p.process = _Process(True)
        depth, seen = [0], []

        def report(*args, p=p, depth=depth, seen=seen):
            depth[0] += 1
            seen.append((args[1], depth[0]))
            p.poll()
            depth[0] -= 1

        p.report = report
        p.queue = _SlowQueue(("proof", 0, pickle.dumps(_proof("a"))),
                             ("proof", 1, pickle.dumps(_proof("b"))),
                             ("accuracy", {}, 1.0))
        if how == "poll":
            p.poll()
        else:
            p.runs_accuracy = True
            p.accuracy_result()
        assert seen[:2] == [(1, 1), (2, 1)], how
        # and afterwards polling works again
        p.queue = _SlowQueue(("done",))
        p.poll()
        assert p.worker_done is True, how


def test_forwarding_stops_on_the_first_failure(monkeypatch):
    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)
    p, _ = _prover()
    calls = []

    def poll():
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("lost")

    p.poll = poll
    p._forward()  # returns once poll failed
    assert len(calls) == 2 and isinstance(p._failure, KeyError)
    p, _ = _prover()
    p.poll = poll
    p._stop.set()
    p._forward()  # stopped: never polls
    assert len(calls) == 2 and p._failure is None


class _Context:
    """Stands in for multiprocessing's "spawn" context: records the process it is asked for."""

    def __init__(self):
        self.processes = []

    def Queue(self):  # noqa: N802 (multiprocessing's name)
        return queue.Queue()

    def Value(self, typecode, value):  # noqa: N802
        return multiprocessing.Value(typecode, value)

    def Process(self, **kw):  # noqa: N802
        ctx = self

        class Process:
            def __init__(self):
                self.kw, self.started = kw, False
                ctx.processes.append(self)

            def start(self):
                self.started = True

            def is_alive(self):
                return False

            def join(self):
                pass

        return Process()


def _parallel(monkeypatch, **kw):
    ctx = _Context()
    asked = []
    monkeypatch.setattr(multiprocessing, "get_context",
                        lambda method: asked.append(method) or ctx)
    p = sp._Prover(6, True, lambda *a: None, ("claims.py",), **kw)
    p._stop_forwarding()
    assert asked == ["spawn"]
    [process] = ctx.processes
    return p, process


def test_a_parallel_prover_starts_one_worker(monkeypatch):
    p, process = _parallel(monkeypatch, accuracy={"seed": 2})
    assert process.started and process.kw["target"] is sp._prove_worker
    assert process.kw["name"] == "bnproof-proofs" and process.kw["daemon"] is True
    args = process.kw["args"]
    assert args[:7] == (6, p.queue, ("claims.py",), {"seed": 2}, True, None, False)
    assert args[7] is p.counter and args[8] == tuple(CLAIMS)
    assert isinstance(p.queue, queue.Queue) and p.ids == list(CLAIMS)
    assert p.counter.value == 0 and p.counter.get_obj()._type_ == "l"
    assert p.runs_accuracy is True and p.runs_drift is False
    thread = p._forwarder
    assert thread.name == "bnproof-proof-progress" and thread.daemon is True
    assert not thread.is_alive()  # stopped above: it ran _forward until told to stop


def test_a_parallel_drift_worker(monkeypatch):
    p, process = _parallel(monkeypatch, prove=False, drift={"seed": 1}, drift_figures=True)
    assert process.kw["name"] == "bnproof-drift"
    assert process.kw["args"] == (6, p.queue, ("claims.py",), None, False, {"seed": 1}, True,
                                  None, ())
    assert p.ids == [] and p.counter is None
    assert p.runs_drift is True and p.runs_accuracy is False
    p, process = _parallel(monkeypatch, prove=False, drift={"seed": 1})
    assert process.kw["args"][6] is False  # no figures unless asked
    p, _ = _parallel(monkeypatch)
    assert p.runs_accuracy is False and p.runs_drift is False  # proofs only
    p, _ = _parallel(monkeypatch, drift={"seed": 1})
    assert p.runs_drift is False  # proving: the drift is not this worker's
    q, _ = _prover(prove=False, drift={"seed": 1})
    assert q.runs_drift is False and q.counter is None  # not parallel: no worker


def test_the_forwarder_polls_while_this_process_is_busy(monkeypatch):
    monkeypatch.setattr(sp, "_WORKER_POLL_SECONDS", 0.01)
    import time

    ctx = _Context()
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: ctx)
    seen = []
    p = sp._Prover(6, True, lambda *a: seen.append(a), prove=False, drift={"seed": 1})
    p.queue.put(("drift-progress", 1, 3, "bias-only"))
    for _ in range(200):
        if seen:
            break
        time.sleep(0.01)
    p._stop_forwarding()
    assert seen == [("drift", 1, 3, "bias-only")]
