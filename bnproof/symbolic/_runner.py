"""Prove claims over several processes, each claim within a time budget.

SymPy cannot be interrupted reliably from another thread (a signal reaches
only the main thread, and a long C-level or pure-Python reduction may not
look at it for minutes), so a claim that must stop at a time limit runs in
a worker process that is terminated when its time is up; its verdict is
then ``unproved`` with the reason ``time limit``. Each worker has its own
pipe, so terminating one never touches another's channel.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ._proof import Proof

__all__ = ["run_claims", "time_limit_proof"]

#: Seconds between polls of the workers.
_POLL_SECONDS = 0.05


def time_limit_proof(claim_id: str, seconds: float) -> Proof:
    """Return the proof record of a claim stopped at its time limit: ``unproved``."""
    return Proof(claim_id, "unproved", False, (), seconds=seconds,
                 reason=f"time limit: not decided within {seconds:g} s")


def _worker(conn, n_max: int, modules: Sequence[str]) -> None:
    """Prove the claims the parent sends, one at a time, until it sends None."""
    import traceback

    try:
        from . import _registry
        from ._pickling import to_bytes
        from ._registry import load_claims

        for path in modules:
            load_claims(path)
        conn.send(("ready",))
        while True:
            cid = conn.recv()
            if cid is None:
                return
            try:
                # as bytes that load without evaluating anything again
                conn.send(("done", cid, to_bytes(_registry.CLAIMS[cid].prove(n_max))))
            except Exception as exc:  # reported as unproved by the parent
                conn.send(("error", cid, f"{type(exc).__name__}: {exc}",
                           traceback.format_exc()))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


class _Slot:
    """One worker process, its pipe and the claim it is proving."""

    def __init__(self, ctx, n_max: int, modules: Sequence[str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, n_max, tuple(modules)),
                                   name="bnproof-prover", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.claim: str | None = None
        self.started = 0.0

    def give(self, cid: str) -> None:
        self.conn.send(cid)
        self.claim, self.started = cid, time.perf_counter()

    def stop(self, kill: bool = False) -> None:
        if kill and self.process.is_alive():
            self.process.terminate()
        elif self.process.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _exited_early(slot: _Slot) -> str:
    return (f"a prover process exited with code {slot.process.exitcode} before proving "
            "anything (a claims file that fails to load?)")


def run_claims(
    ids: Sequence[str],
    n_max: int,
    *,
    workers: int = 1,
    time_limit: float | None = None,
    modules: Sequence[str | Path] = (),
    progress: Callable[[str, int, int], object] | None = None,
) -> list[Proof]:
    """Prove registered claims, in parallel and within a time budget if asked.

    Parameters
    ----------
    ids : sequence of str
        Registered claim ids (checked by the caller).
    n_max : int
        Passed to each claim's ``prove``.
    workers : int, default 1
        Worker processes. With 1 and no ``time_limit`` the claims run here,
        one after another.
    time_limit : float or None
        Seconds each claim may take; a claim still running then is stopped
        and reported ``unproved`` (reason ``time limit``).
    modules : sequence of paths
        User claim files the workers load first (see
        :func:`bnproof.symbolic.load_claims`).
    progress : callable or None
        ``progress(claim_id, done, total)`` after each claim.

    Returns
    -------
    list of Proof
        In the order of ``ids``.
    """
    from ._registry import CLAIMS

    ids = list(ids)
    if workers == 1 and time_limit is None:
        out = []
        for done, cid in enumerate(ids, 1):
            out.append(CLAIMS[cid].prove(n_max))
            if progress is not None:
                progress(cid, done, len(ids))
        return out
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker
    modules = [str(Path(m).resolve()) for m in modules]
    pending = list(ids)
    results: dict[str, Proof] = {}
    slots: list[_Slot] = []
    try:
        while len(results) < len(ids):
            while len(slots) < min(workers, len(pending) + sum(s.claim is not None
                                                                for s in slots)):
                slots.append(_Slot(ctx, n_max, modules))
            for slot in list(slots):
                finished = None
                if slot.conn.poll():
                    try:
                        message = slot.conn.recv()
                    except (EOFError, OSError):
                        message = ("died",)
                    if message[0] == "ready":
                        slot.ready = True
                    elif message[0] == "done":
                        finished = pickle.loads(message[2])
                    elif message[0] == "error":
                        finished = Proof(message[1], "unproved", False, (),
                                         reason=f"the proof raised {message[2]}")
                    elif slot.claim is not None:
                        finished = Proof(slot.claim, "unproved", False, (),
                                         reason="the worker process exited")
                    else:  # its pipe closed before it took a claim: it failed to start
                        slot.process.join(5)
                        if pending:
                            raise RuntimeError(_exited_early(slot))
                        slot.stop()
                        slots.remove(slot)
                        continue
                elif not slot.process.is_alive():
                    if slot.claim is not None:
                        finished = Proof(
                            slot.claim, "unproved", False, (),
                            reason=f"the worker exited with code {slot.process.exitcode}")
                    elif not pending:
                        slots.remove(slot)
                        continue
                    else:
                        raise RuntimeError(_exited_early(slot))
                elif (slot.claim is not None and time_limit is not None
                      and time.perf_counter() - slot.started > time_limit):
                    cid = slot.claim
                    slot.stop(kill=True)
                    slots.remove(slot)
                    results[cid] = time_limit_proof(cid, time_limit)
                    if progress is not None:
                        progress(cid, len(results), len(ids))
                    continue
                if finished is not None:
                    results[finished.claim_id] = finished
                    slot.claim = None
                    if progress is not None:
                        progress(finished.claim_id, len(results), len(ids))
                    if not slot.process.is_alive():
                        slot.stop()
                        slots.remove(slot)
                        continue
                if slot.ready and slot.claim is None:
                    if pending:
                        slot.give(pending.pop(0))
                    else:
                        slot.stop()
                        slots.remove(slot)
            time.sleep(_POLL_SECONDS)
    finally:
        for slot in slots:
            slot.stop(kill=True)
    return [results[cid] for cid in ids]
