"""Capture a model's graph with torch.fx and record every value's shape."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import operator

import torch
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ._propagate import COMPILED_MARK, has_own_hooks

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


def _compiled_as_is(module: nn.Module) -> bool:
    """Whether ``module`` holds no ``_compiled_call_impl``, or the one ``Module.compile`` sets.

    ``Module.compile`` stores ``torch.compile(module._call_impl)``, which
    computes what the class says; any other callable there replaces it.
    """
    compiled = vars(module).get("_compiled_call_impl")
    return compiled is None or getattr(compiled, "_torchdynamo_orig_callable", None) == (
        module._call_impl)


def _check_calls_visible(model: nn.Module) -> None:
    """Refuse a model whose computation torch.fx would trace past.

    torch.fx traces the root's *class* ``forward`` (not hooks on the root,
    nor a ``forward`` set on it), and calls the ``forward`` of the modules it
    traces through, not their ``_call_impl`` or ``_compiled_call_impl``. A
    rule would then reason about code that does not run; since the audit's
    numeric check runs on a deep copy (which drops ``_compiled_call_impl``,
    and whose copied closures still read the original), it could miss that.
    Modules traced as one call (convolutions, batch norms, ...) are checked
    where the rules meet them instead (``has_hooks``), which makes them
    opaque rather than refusing the model.
    """
    tracer = torch.fx.Tracer()
    for name, module in model.named_modules():
        root = module is model
        if not root and tracer.is_leaf_module(module, name):
            continue  # seen by the rules as a call of the module
        where = "the model" if root else f"its submodule {name!r}"
        replaced = [k for k in ("_call_impl", "_wrapped_call_impl") if k in vars(module)]
        if not _compiled_as_is(module):
            replaced.append("_compiled_call_impl")
        if root and "forward" in vars(module):
            replaced.append("forward")
        hooked = root and has_own_hooks(module)
        if replaced or hooked:
            what = (f"{', '.join(replaced)} set on the instance" if replaced
                    else "forward hooks on it")
            raise CaptureError(
                f"{where} has {what}; torch.fx traces the class's forward and would not "
                "see it, so the audit cannot say what the model computes. Audit it "
                "without them (remove the hooks with the handles their registration "
                "returned, or delete the instance attribute)"
            )


def _keep_compiled_marks(model: nn.Module, work: nn.Module) -> None:
    """Mark the modules of ``work`` (a deep copy) whose originals had their call replaced.

    ``copy.deepcopy`` drops ``_compiled_call_impl``, which code can set on an
    instance to replace what calling it runs: the copy would look like a
    plain module of its class to the rules. ``Module.compile``'s own
    ``_compiled_call_impl`` computes what the class says and is not marked.
    """
    pairs = zip(model.named_modules(remove_duplicate=False),
                work.named_modules(remove_duplicate=False), strict=True)
    for (_, original), (_, copied) in pairs:
        if not _compiled_as_is(original):
            copied.__dict__[COMPILED_MARK] = True


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
        message names the reason. When torch.fx fails, ``torch.export``
        is tried: its ATen operations are mapped back to the modules they
        come from (:func:`_modules_from_export`); an operation that cannot be
        mapped stays as it is and stops the propagation.
    """
    _check_calls_visible(model)
    try:
        work = copy.deepcopy(model).train()
    except Exception as exc:  # noqa: BLE001 - whatever stops the copy is reported
        raise CaptureError(
            f"the model cannot be copied ({_first_line(exc)}); the audit works on a copy "
            "so that the model itself is never changed. Make it copyable (the old "
            "torch.nn.utils.weight_norm is a common cause: "
            "torch.nn.utils.parametrizations.weight_norm copies)"
        ) from None
    _keep_compiled_marks(model, work)
    how = "torch.fx"
    try:
        gm = torch.fx.symbolic_trace(work)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported, not raised
        reason = _first_line(exc)
        try:
            with _quiet():
                exported = torch.export.export(copy.deepcopy(model).train(),
                                               tuple(example_inputs))
            gm = _modules_from_export(exported.module(), work)
            how = "torch.export"
        except Exception as exc2:  # noqa: BLE001
            raise CaptureError(
                f"torch.fx cannot trace the model ({reason}); torch.export failed too "
                f"({_first_line(exc2)}). Move data-dependent control flow out of forward(), "
                "or audit the submodules that trace"
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
    return gm, how


_ATEN = torch.ops.aten
_F = torch.nn.functional


def _pair(value, n: int) -> tuple:
    if isinstance(value, list | tuple):
        return tuple(value) if len(value) == n else tuple(value) * n
    return (value,) * n


def _owner(node, root: nn.Module, attr: str):
    """Return the module whose parameter ``attr`` a get_attr node reads, or None."""
    if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
        return None, None
    path, _, name = str(node.target).rpartition(".")
    if name != attr:
        return None, None
    try:
        return path, root.get_submodule(path)
    except AttributeError:
        return None, None


def _module_call(node, root: nn.Module):
    """Return ``(module path, input)`` when an ATen call is exactly a module's forward."""
    target, args = node.target, node.args
    conv = {_ATEN.conv1d.default: (nn.Conv1d, 1), _ATEN.conv2d.default: (nn.Conv2d, 2),
            _ATEN.conv3d.default: (nn.Conv3d, 3)}
    if target in conv:
        kind, n = conv[target]
        path, module = _owner(args[1], root, "weight")
        if type(module) is not kind or isinstance(module.padding, str):
            return None
        bias = args[2] if len(args) > 2 else node.kwargs.get("bias")
        given = list(args[3:7]) + [1, 0, 1, 1][len(args[3:7]):]
        want = (_pair(given[0], n), _pair(given[1], n), _pair(given[2], n), given[3])
        have = (module.stride, module.padding, module.dilation, module.groups)
        same_bias = (bias is None) == (module.bias is None)
        if bias is not None:
            same_bias = _owner(bias, root, "bias")[0] == path
        if want == have and same_bias and module.padding_mode == "zeros":
            return path, args[0]
        return None
    if target is _ATEN.linear.default:
        path, module = _owner(args[1], root, "weight")
        bias = args[2] if len(args) > 2 else None
        if type(module) is nn.Linear and ((bias is None) == (module.bias is None)) and (
            bias is None or _owner(bias, root, "bias")[0] == path
        ):
            return path, args[0]
        return None
    if target is _ATEN.batch_norm.default:
        path, module = _owner(args[1], root, "weight")
        if module is None or norm_type(module) != "batch":
            return None
        batch_stats = module.training or not module.track_running_stats
        if _owner(args[2], root, "bias")[0] == path and bool(args[5]) == batch_stats:
            return path, args[0]
        return None
    if target is _ATEN.layer_norm.default:
        path, module = _owner(args[2] if len(args) > 2 else None, root, "weight")
        if type(module) is nn.LayerNorm and tuple(args[1]) == tuple(module.normalized_shape):
            if len(args) > 3 and _owner(args[3], root, "bias")[0] == path:
                return path, args[0]
        return None
    if target is _ATEN.group_norm.default:
        path, module = _owner(args[2] if len(args) > 2 else None, root, "weight")
        if type(module) is nn.GroupNorm and args[1] == module.num_groups:
            if len(args) > 3 and _owner(args[3], root, "bias")[0] == path:
                return path, args[0]
        return None
    return None


def norm_type(module) -> str | None:
    """``batch`` for the BatchNorm modules, else None."""
    return "batch" if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) else None


#: ATen operation -> the function the rules know, with the same positional arguments.
_SAME_ARGS = {
    _ATEN.add.Tensor: operator.add,
    _ATEN.sub.Tensor: operator.sub,
    _ATEN.mul.Tensor: operator.mul,
    _ATEN.div.Tensor: operator.truediv,
    _ATEN.neg.default: operator.neg,
    _ATEN.view.default: torch.reshape,
    _ATEN.reshape.default: torch.reshape,
    _ATEN.transpose.int: torch.transpose,
    _ATEN.permute.default: torch.permute,
    _ATEN.cat.default: torch.cat,
    _ATEN.unsqueeze.default: torch.unsqueeze,
    _ATEN.flatten.using_ints: torch.flatten,
    _ATEN.mean.dim: torch.mean,
    _ATEN.max_pool1d.default: _F.max_pool1d,
    _ATEN.max_pool2d.default: _F.max_pool2d,
    _ATEN.max_pool3d.default: _F.max_pool3d,
    _ATEN.avg_pool1d.default: _F.avg_pool1d,
    _ATEN.avg_pool2d.default: _F.avg_pool2d,
    _ATEN.avg_pool3d.default: _F.avg_pool3d,
    _ATEN.adaptive_avg_pool1d.default: _F.adaptive_avg_pool1d,
    _ATEN.adaptive_avg_pool2d.default: _F.adaptive_avg_pool2d,
}


def _modules_from_export(exported: torch.fx.GraphModule, root: nn.Module) -> torch.fx.GraphModule:
    """Rewrite an exported ATen graph into module calls the rules read.

    An ATen call whose weight and bias are exactly a module's parameters, with
    the module's own settings, becomes a call of that module; a few ATen
    operations become the Python functions they implement (same arguments).
    Everything else stays as it is, which the rules treat as unknown.
    """
    graph = exported.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and not node.users:
            graph.erase_node(node)  # the shape guards of the export
            continue
        if node.op != "call_function":
            continue
        found = _module_call(node, root)
        if found is not None:
            path, source = found
            with graph.inserting_after(node):
                new = graph.call_module(path, (source,))
        elif node.target in _SAME_ARGS and not node.kwargs:
            with graph.inserting_after(node):
                new = graph.call_function(_SAME_ARGS[node.target], node.args)
        else:
            continue
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(root, graph)
