"""The rules the audit cites, by claim id, in one place.

Every algebraic step of a finding is a claim of :data:`bnproof.symbolic.CLAIMS`
proved by the prover: the cancellations (which constant pattern a
normalization removes, from the normalization-family table) and the
pass-through rules (:mod:`bnproof.symbolic._passthrough`). Structural
operations only move values between positions; they are bookkeeping of which
axis is the channel, documented in :data:`STRUCTURAL` and not cited as
claims.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "CANCELLATION",
    "CITED",
    "NEGATIVE",
    "PASSTHROUGH",
    "SCALE_INVARIANT",
    "STOPS",
    "STRUCTURAL",
]

#: Normalization -> the claims that say which constant pattern it cancels.
#: Batch normalization in training mode cancels a per-channel constant; layer
#: normalization only a constant shared by every normalized feature; group
#: normalization a constant per group; instance normalization a per-channel one.
CANCELLATION = MappingProxyType(
    {
        "batch": ("batch-bias-per-feature", "bias-cancels-train", "shift-invariance"),
        "layer": ("layer-bias-shared",),
        "group": ("group-bias-per-group",),
        "instance": ("instance-bias-per-feature",),
    }
)

#: Why only part of a per-channel constant cancels (expected ``refuted``):
#: a per-feature bias before layer or group normalization, a shared bias
#: before RMS normalization (which cancels nothing, so the audit stops there).
NEGATIVE = MappingProxyType(
    {
        "layer": ("layer-bias-per-feature",),
        "group": ("group-bias-per-feature",),
        "rms": ("rms-bias-shared", "rms-bias-cancels"),
    }
)

#: Scale invariance of the weights feeding a normalization (at eps = 0).
SCALE_INVARIANT = MappingProxyType(
    {
        "batch": ("batch-weight-vector-rescaling", "scale-invariance", "weight-grad-orthogonal"),
        "layer": ("layer-weight-matrix-rescaling",),
        "group": ("group-weight-matrix-rescaling",),
        "instance": ("instance-weight-vector-rescaling",),
    }
)

#: Operation -> the pass-through claim that lets a constant through it.
PASSTHROUGH = MappingProxyType(
    {
        "linear": "passthrough-linear",
        "conv": "passthrough-conv-no-padding",
        "avgpool": "passthrough-avgpool",
        "maxpool": "passthrough-maxpool",
        "add": "passthrough-residual-add",
        "upsample": "passthrough-upsample-nearest",
        "scalar": "passthrough-scalar-multiple",
    }
)

#: The negative controls of the pass-through rules (expected ``refuted``):
#: the audit stops at these operations.
STOPS = MappingProxyType(
    {
        "relu": "passthrough-relu",
        "pad": "passthrough-zero-padding-after",
        "avgpool-padding": "passthrough-avgpool-counting-padding",
        "dropout": "passthrough-dropout-training",
    }
)

#: Structural rules: bookkeeping, not algebra. Each moves values without
#: combining them, so a constant pattern moves with its axis.
STRUCTURAL = MappingProxyType(
    {
        "structural-reshape": "view/reshape/flatten: an axis whose prefix size and length "
        "are unchanged keeps its values in order; other axes carried no variation",
        "structural-transpose": "transpose/permute: the axes are renumbered",
        "structural-concat": "cat: each input occupies its own slice of the axis; the "
        "channel offset is recorded",
        "structural-getitem": "indexing with slices and integers: positions are selected, "
        "values are not combined",
        "structural-identity": "contiguous, clone, Identity, Dropout with p = 0",
    }
)


def _expected() -> dict[str, str]:
    out = {}
    for ids in (*CANCELLATION.values(), *SCALE_INVARIANT.values()):
        out.update(dict.fromkeys(ids, "proved"))
    for ids in NEGATIVE.values():
        out.update(dict.fromkeys(ids, "refuted"))
    out.update(dict.fromkeys(PASSTHROUGH.values(), "proved"))
    out.update(dict.fromkeys(STOPS.values(), "refuted"))
    return out


#: Every cited claim id -> the verdict the audit relies on.
CITED = MappingProxyType(_expected())
