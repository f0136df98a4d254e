"""bnproof.kernels.warm_up compiles what two-axis batches use, and refuses bad input."""

import pytest

from bnproof import kernels

_SCRIPT = """
import json, sys
import numpy as np
from bnproof import kernels
from bnproof.kernels import _jit

names = ("moments_rc", "normalize_rc", "backward_sums_rc", "backward_dx_rc")
def signatures():
    return {n: sorted(map(str, getattr(_jit, n).signatures)) for n in names}
dtype = sys.argv[1]
fresh = signatures()
kernels.warm_up([dtype])
warmed = signatures()
rng = np.random.default_rng(0)
for shape in ((300, 20), (7, 2), (64, 1024)):  # tiled, flat and wide channel paths
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    c = shape[1]
    w, b = np.ones(c, dtype), np.zeros(c, dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    y, mean, invstd = kernels.batch_norm_forward(x, w, b, rm, rv)
    kernels.batch_norm_backward(np.ones_like(x), x, w, mean, invstd)
    kernels.batch_norm_forward(x, w, b, rm, rv, training=False)
    kernels.batch_norm_moments(x)
print(json.dumps({"fresh": fresh, "warmed": warmed, "after": signatures()}))
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_after_warm_up_two_axis_batches_compile_nothing_new(dtype):
    # in a new process: no kernel is loaded before warm_up, each has its
    # signature after it, and batches of other sizes add none
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _SCRIPT, dtype], capture_output=True,
                         text=True, check=True, timeout=600)
    got = json.loads(out.stdout)
    assert not any(got["fresh"].values())
    assert all(len(sigs) == 1 and dtype in sigs[0] for sigs in got["warmed"].values())
    assert got["after"] == got["warmed"]


def test_warm_up_refuses_what_is_not_a_list_of_float_types():
    with pytest.raises(TypeError, match="list of names"):
        kernels.warm_up("float32")
    with pytest.raises(TypeError, match="list of names"):
        kernels.warm_up(32)
    with pytest.raises(ValueError, match=r"\['float16'\] are not float32 or float64"):
        kernels.warm_up(["float64", "float16"])
    assert kernels.warm_up([]) >= 0.0  # nothing to prepare
