"""The report's second process, and the proofs shared out between it and this one.

On a first run it proves claims (one at a time, taken from a shared
counter) after compiling the float32 kernels and running the accuracy
experiment; on later runs, with the proofs reused, it runs the drift
experiment and renders its figures.

:class:`_Prover` starts it, forwards its progress, and proves here the
claims it has not taken once this process's own stages are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._figures import figure_caption, render_figure

#: Seconds between checks that the proof worker is still alive while waiting.
_WORKER_POLL_SECONDS = 0.5


def _drift_job(drift: dict, figures: bool, queue) -> None:
    """Run the drift experiment (and render its figures) and send the results."""
    from bnproof.experiments.drift import run_drift

    start = time.perf_counter()
    queue.put(("drift-progress", 0, 1, "in a second process"))
    result = run_drift(**drift, progress=lambda stage, done, total: queue.put(
        ("drift-progress", done, total, stage)))
    seconds = time.perf_counter() - start
    rendered = []
    if figures:
        from bnproof import plots

        start = time.perf_counter()
        drawn = plots.drift_figures(result)
        for done, (name, fig) in enumerate(drawn.items()):
            queue.put(("figure-progress", done, len(drawn), name))
            rendered.append(render_figure(fig, name, figure_caption(name, fig)))
        figure_seconds = time.perf_counter() - start
    else:
        figure_seconds = 0.0
    queue.put(("drift", result, seconds, tuple(rendered), figure_seconds))


def _take(counter, total: int) -> int | None:
    """Return the next claim index to prove from the shared ``counter``, or None."""
    with counter.get_lock():
        index = counter.value
        if index >= total:
            return None
        counter.value = index + 1
        return index


def _prove_worker(n_max: int, queue, modules=(), accuracy: dict | None = None,
                  prove: bool = True, drift: dict | None = None,
                  drift_figures: bool = False, counter=None, ids=None) -> None:
    """Prove the registered claims and send each proof back as it is done.

    The claims are taken one at a time from the shared ``counter`` (an index
    into the registry), so the main process can prove the remaining ones
    beside this one once its own stages are done; with ``counter=None``
    this process proves them all. ``ids`` are the claims to prove, in the
    main process's registry order (default: this registry's).

    ``modules`` are a user's claims files (``bnproof report --claims``),
    loaded first. With ``accuracy`` (keyword arguments of
    :func:`bnproof.experiments.accuracy.accuracy_vs_offset`), first compile
    the float32 kernels and run that experiment, in this process, while the
    main process compiles the float64 ones: a first run keeps both cores
    busy, and compiles each kernel once (the main process's drift
    experiment then loads the float32 kernels from the disk cache). With
    ``prove=False`` (the proofs were reused from an earlier run) and
    ``drift`` (keyword arguments of
    :func:`bnproof.experiments.drift.run_drift`), run the drift experiment
    here instead, and render its figures with ``drift_figures``.
    """
    import traceback

    try:
        if not prove:
            if drift is not None:
                _drift_job(drift, drift_figures, queue)
            return
        from bnproof.symbolic import CLAIMS, load_claims, prove_all, to_bytes

        for path in modules:  # a user's claims files (bnproof report --claims)
            load_claims(path)

        if accuracy is not None:
            # before the proofs: the main process needs these results first
            # (for a figure), and its drift experiment the float32 kernels
            from bnproof.experiments.accuracy import accuracy_vs_offset
            from bnproof.kernels import warm_up

            queue.put(("accuracy-start",))
            start = time.perf_counter()
            warm_up(["float32"])
            result = accuracy_vs_offset(**accuracy)
            queue.put(("accuracy", result, time.perf_counter() - start))
        if counter is None:
            import multiprocessing

            counter = multiprocessing.Value("l", 0)
        ids = list(CLAIMS) if ids is None else list(ids)
        missing = [cid for cid in ids if cid not in CLAIMS]
        if missing:
            raise ValueError(
                f"claim(s) {', '.join(missing)} are registered in the calling process only; "
                "a second process sees the built-in claims and claims files: put them in a "
                "file and pass it as claims_files (bnproof report --claims FILE.py), or "
                "use parallel=False")
        queue.put(("proofs-start", time.monotonic()))
        while (index := _take(counter, len(ids))) is not None:
            # as bytes that load without evaluating anything again (to_bytes)
            queue.put(("proof", index, to_bytes(prove_all([ids[index]], n_max=n_max)[0])))
        queue.put(("done",))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # reported to the parent, which re-raises
        queue.put(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class _Prover:
    """The proofs, run in a separate process (``parallel``) or here when asked for.

    SymPy runs on one core; in a separate process it overlaps with the
    numeric stages (Numba compilation, experiments, figures) on the other.
    The claims are shared out one at a time, so when this process has
    finished its own stages, :meth:`result` proves the ones the worker has
    not taken yet, beside it.
    """

    def __init__(self, n_max: int, parallel: bool, report: Callable, modules=(),
                 accuracy: dict | None = None, *, prove: bool = True,
                 drift: dict | None = None, drift_figures: bool = False) -> None:
        import threading

        self.n_max = n_max
        self.report = report
        #: The proofs received so far, by index in the registry.
        self.proofs: dict[int, object] = {}
        self.ids: list[str] = []
        #: ``time.monotonic()`` when the first proof began; whether the worker took its last claim.
        self.proofs_started: float | None = None
        self.worker_done = False
        self.counter = None
        #: ``(result, seconds)`` of the accuracy experiment run by the worker.
        self.accuracy: tuple | None = None
        #: ``(result, seconds, figures, figure seconds)`` of the worker's drift run.
        self.drift: tuple | None = None
        self.prove = prove
        self.runs_accuracy = parallel and accuracy is not None
        self.runs_drift = parallel and not prove and drift is not None
        self.process = self.queue = None
        # re-entrant: handling a message reports progress, which may poll again
        self._lock = threading.RLock()
        self._polling = False
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._forwarder = None
        if parallel:
            import multiprocessing

            # "spawn": a fresh interpreter, safe whatever threads this one runs.
            ctx = multiprocessing.get_context("spawn")
            self.queue = ctx.Queue()
            if prove:
                from bnproof.symbolic import CLAIMS

                self.ids = list(CLAIMS)
                # claims are shared out one at a time: the next index to prove
                self.counter = ctx.Value("l", 0)
            self.process = ctx.Process(
                target=_prove_worker, args=(n_max, self.queue, tuple(modules), accuracy,
                                            prove, drift, drift_figures, self.counter,
                                            tuple(self.ids)),
                name="bnproof-proofs" if prove else "bnproof-drift", daemon=True,
            )
            self.process.start()
            # Forward the proofs' progress while this process is busy (a first
            # run compiles kernels here for a minute without reporting).
            self._forwarder = threading.Thread(target=self._forward, name="bnproof-proof-progress",
                                               daemon=True)
            self._forwarder.start()

    def _forward(self) -> None:
        while not self._stop.wait(_WORKER_POLL_SECONDS):
            try:
                self.poll()
            except BaseException as exc:  # re-raised by result()
                self._failure = exc
                return

    def _stop_forwarding(self) -> None:
        self._stop.set()
        if self._forwarder is not None:
            self._forwarder.join()

    def _handle(self, message: tuple) -> None:
        if message[0] == "proof":
            import pickle

            self._keep(message[1], pickle.loads(message[2]))
        elif message[0] == "proofs-start":
            self._started(message[1])
        elif message[0] == "done":
            self.worker_done = True
        elif message[0] == "accuracy-start":
            self.report("accuracy", 0, 1,
                        "compiling kernels (first run only) in the proofs' process")
        elif message[0] == "accuracy":
            self.accuracy = (message[1], message[2])
            self.report("accuracy", 1, 1)
        elif message[0] == "drift-progress":
            self.report("drift", message[1], message[2], message[3])
        elif message[0] == "figure-progress":
            self.report("figures", message[1], message[2], f"{message[3]} (second process)")
        elif message[0] == "drift":
            self.drift = message[1:]
        else:
            raise RuntimeError(f"the proofs failed: {message[1]}\n{message[2]}")

    def poll(self) -> None:
        """Forward the worker's progress so far, without waiting."""
        import queue as queue_module

        with self._lock:
            if self._polling:  # called back from _handle's progress report
                return
            self._polling = True
            try:
                while self.queue is not None and not self._finished():
                    try:
                        self._handle(self.queue.get_nowait())
                    except queue_module.Empty:
                        return
            finally:
                self._polling = False

    def _started(self, when: float) -> None:
        if self.proofs_started is None or when < self.proofs_started:
            self.proofs_started = when

    def _keep(self, index: int, proof) -> None:
        """Keep the proof of claim ``index`` and report the count so far."""
        if proof.claim_id != self.ids[index]:
            raise RuntimeError(f"the proofs' process proved {proof.claim_id} as claim {index}, "
                               f"which is {self.ids[index]} here: the registries differ")
        self.proofs[index] = proof
        self.report("proofs", len(self.proofs), len(self.ids), proof.claim_id)

    def result(self) -> tuple[list, float]:
        """Return ``(proofs, seconds)``; prove here the claims the worker has not taken.

        The seconds are the wall time from the first proof's start to the
        last one's end, whichever process proved them.
        """
        if self.process is None:
            from bnproof.symbolic import prove_all

            start = time.perf_counter()
            proofs = prove_all(
                n_max=self.n_max,
                progress=lambda cid, done, total: self.report("proofs", done, total, cid),
            )
            return proofs, time.perf_counter() - start

        from bnproof.symbolic import prove_all

        while (index := _take(self.counter, len(self.ids))) is not None:
            self._started(time.monotonic())
            proof = prove_all([self.ids[index]], n_max=self.n_max)[0]
            with self._lock:
                self._keep(index, proof)
        self._wait(self._finished)
        proofs = [self.proofs[i] for i in range(len(self.ids))]
        started = self.proofs_started if self.proofs_started is not None else time.monotonic()
        return proofs, time.monotonic() - started

    def drift_result(self) -> tuple[dict, float, tuple, float]:
        """Return the worker's ``(drift result, seconds, figures, figure seconds)``."""
        self._wait(lambda: self.drift is not None)
        return self.drift

    def accuracy_result(self) -> tuple[dict, float]:
        """Return the worker's ``(accuracy result, seconds)``, waiting for them."""
        self._wait(lambda: self.accuracy is not None)
        return self.accuracy

    def _wait(self, done: Callable[[], bool]) -> None:
        """Handle the worker's messages here until ``done()``."""
        import queue as queue_module

        self._stop_forwarding()
        if self._failure is not None:
            raise self._failure
        while not done():
            try:
                message = self.queue.get(timeout=_WORKER_POLL_SECONDS)
            except queue_module.Empty:
                if not self.process.is_alive():
                    self.poll()
                    if not done():
                        raise RuntimeError(
                            f"the proof process exited with code {self.process.exitcode} "
                            "before finishing; run with parallel=False to see why"
                        ) from None
                continue
            with self._lock:
                self._polling = True  # progress reports must not poll from inside
                try:
                    self._handle(message)
                finally:
                    self._polling = False

    def _finished(self) -> bool:
        """Whether every job of the worker has sent its result."""
        return ((not self.prove or self.worker_done)
                and (not self.runs_accuracy or self.accuracy is not None)
                and (not self.runs_drift or self.drift is not None))

    def close(self) -> None:
        """Stop the worker if it is still running (error or interruption)."""
        if self.process is None:
            return
        self._stop_forwarding()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.queue.close()
        self.queue.join_thread()
