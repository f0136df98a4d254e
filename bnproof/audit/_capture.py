"""Capture a model's graph with torch.fx and record every value's shape."""

from __future__ import annotations

import contextlib
import copy
import io
import logging

import torch
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["CaptureError", "capture", "check_model"]


class CaptureError(ValueError):
    """The model's graph could not be captured; the message says why."""


def check_model(model, example_inputs) -> None:
    """Raise a clear TypeError for a model or inputs the audit cannot use."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; pass the module "
            "itself (e.g. the result of a factory function)"
        )
    if not example_inputs:
        raise TypeError(
            "audit needs at least one example input, e.g. audit(model, torch.randn(2, 3, 32, 32))"
        )
    for k, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"example input {k} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"example input {k} has dtype {x.dtype}; the audit perturbs in float64, "
                "so pass floating-point inputs"
            )


@contextlib.contextmanager
def _quiet():
    """Silence what tracing prints or logs on failure (the error says why)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def capture(model: nn.Module, example_inputs) -> tuple[torch.fx.GraphModule, str]:
    """Trace a copy of ``model`` in training mode and propagate shapes.

    Returns
    -------
    (GraphModule, str)
        The graph module (sharing no state with ``model``) and how it was
        captured.

    Raises
    ------
    CaptureError
        When torch.fx cannot trace the model (data-dependent control flow,
        for instance) or the example inputs do not run through it. The
        message names the reason. ``torch.export`` is tried as well, to
        say whether the model is capturable at all; its ATen-level graph
        has no module structure for the rules to read, so the audit needs
        a torch.fx graph.
    """
    work = copy.deepcopy(model).train()
    try:
        gm = torch.fx.symbolic_trace(work)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported, not raised
        reason = _first_line(exc)
        try:
            with _quiet():
                torch.export.export(copy.deepcopy(model).train(), tuple(example_inputs))
            exported = (
                "torch.export can capture it, but only as ATen operations without the module "
                "structure the audit's rules read"
            )
        except Exception as exc2:  # noqa: BLE001
            exported = f"torch.export failed too ({_first_line(exc2)})"
        raise CaptureError(
            f"torch.fx cannot trace the model ({reason}); {exported}. Move data-dependent "
            "control flow out of forward(), or audit the submodules that trace"
        ) from None
    try:
        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(0)
            ShapeProp(gm).propagate(*example_inputs)
    except Exception as exc:  # noqa: BLE001
        raise CaptureError(
            f"the example inputs do not run through the model ({_first_line(exc)}); check "
            "--input-shape (one per input of forward, batch first)"
        ) from None
    return gm, "torch.fx"
