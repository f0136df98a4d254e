"""bnproof.kernels at run time: threads (counts, concurrency, threading layers) and
the packaging of the kernels (nothing compiled on import, shared options, the
on-disk cache and its invalidation, array subclasses, floating-point settings).
"""

import os
import platform
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from test_kernels import make  # the same inputs as the results tests

from bnproof.kernels import (
    Moments,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_moments,
    merge_moments,
)

# --------------------------------------------------------------------------- #
# threads: determinism and concurrent calls
# --------------------------------------------------------------------------- #


def test_results_are_bit_identical_for_any_thread_count(rng, monkeypatch):
    numba = pytest.importorskip("numba")
    from bnproof.kernels import _batch_norm

    # every size runs on the whole pool here (small inputs normally use one thread)
    monkeypatch.setattr(_batch_norm, "PARALLEL_MIN_SIZE", 0)
    cases = [((300, 20, 70), 1), ((40000, 3), 1), ((64, 6, 6, 40), -1), ((4, 4, 40000), 1),
             ((128, 24, 32), 1), ((3, 300, 300), 1), ((8, 20, 1100), 1), ((40001, 5), 1)]
    saved = numba.get_num_threads()
    try:
        for shape, axis in cases:
            x, w, b = make(rng, shape, axis, np.float32, offset=100.0)
            dy = rng.standard_normal(shape).astype(np.float32)
            results = []
            for threads in (1, 2):
                numba.set_num_threads(threads)
                y, mean, invstd = batch_norm_forward(x, w, b, channel_axis=axis)
                grads = batch_norm_backward(dy, x, w, mean, invstd, channel_axis=axis)
                m = batch_norm_moments(x, channel_axis=axis)
                results.append((y, mean, invstd, *grads, m.mean, m.m2))
            for a, c in zip(*results, strict=True):
                np.testing.assert_array_equal(a, c)
    finally:
        numba.set_num_threads(saved)


def test_small_inputs_leave_the_thread_count_alone(rng):
    numba = pytest.importorskip("numba")
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        batch_norm_forward(rng.standard_normal((8, 3)))
        assert numba.get_num_threads() == 2
        with pytest.raises(ValueError):
            batch_norm_forward(np.ones((1, 3)))
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(saved)


def test_concurrent_calls_from_python_threads(rng):
    # two inputs above PARALLEL_MIN_SIZE (parallel regions), one below
    inputs = [make(rng, shape, 1, np.float32) for shape in [(64, 32, 128), (4000, 40), (8, 20, 30)]]
    expected = [batch_norm_forward(x, w, b)[0] for x, w, b in inputs]
    errors = []

    def work(k):
        try:
            for _ in range(20):
                x, w, b = inputs[k % 3]
                y, mean, invstd = batch_norm_forward(x, w, b)
                np.testing.assert_array_equal(y, expected[k % 3])
                batch_norm_backward(np.ones_like(x), x, w, mean, invstd)
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


#: Where the ``test`` extra installs Intel TBB (pyproject.toml's marker).
TBB_IN_TEST_EXTRA = sys.platform == "linux" and platform.machine() == "x86_64"


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_concurrent_calls_never_abort_under_any_threading_layer(layer, tmp_path):
    # a fresh process per layer: the layer is chosen once per process; the
    # input is above PARALLEL_MIN_SIZE so every call launches a parallel region
    code = (
        "import threading, numpy as np, numba\n"
        "from bnproof.kernels import batch_norm_backward, batch_norm_forward\n"
        "x = np.random.default_rng(0).standard_normal((64, 16, 256)).astype(np.float32)\n"
        "want = batch_norm_forward(x)[0]\n"
        "bad = []\n"
        "def work():\n"
        "    for _ in range(20):\n"
        "        y, mean, invstd = batch_norm_forward(x)\n"
        "        if not np.array_equal(y, want): bad.append(1)\n"
        "        batch_norm_backward(np.ones_like(x), x, None, mean, invstd)\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(numba.threading_layer(), len(bad))\n"
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    if layer == "tbb":
        # pip puts libtbb in the environment's lib/, which the loader does not search
        lib = os.path.join(sys.prefix, "lib")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    if proc.returncode != 0 and "No threading layer could be loaded" in proc.stderr:
        if os.environ.get("CI") and layer == "tbb" and TBB_IN_TEST_EXTRA:
            pytest.fail(f"the test extra installs tbb here, yet it did not load:\n{proc.stderr}")
        pytest.skip(f"threading layer {layer} is not installed")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [layer, "0"]


# --------------------------------------------------------------------------- #
# packaging of the kernels
# --------------------------------------------------------------------------- #


def test_importing_kernels_compiles_nothing():
    code = (
        "import sys, bnproof.kernels; "
        "print('numba' in sys.modules, 'bnproof.kernels._jit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


#: Kernels without a reduction, compiled without ``reassoc`` (see ``_config``).
ELEMENTWISE_KERNELS = {
    "_ncm_channel_normalize", "_ncm_channel_dx", "_dx_coefficients", "_two_sum", "normalize_rc",
    "backward_dx_rc", "normalize_ncm", "backward_dx_ncm",
}


def test_every_kernel_uses_the_shared_options():
    from bnproof.kernels import _config, _copy, _jit_ncm, _jit_parts, _jit_rc, _stream

    modules = (_jit_parts, _jit_rc, _jit_ncm, _stream, _copy)
    dispatchers = [v for m in modules for v in vars(m).values()
                   if hasattr(v, "targetoptions") and v.py_func.__module__ == m.__name__]
    assert len(dispatchers) >= 13
    for d in dispatchers:
        opts = d.targetoptions
        expected = dict(
            _config.PARALLEL_JIT_OPTIONS if opts.get("parallel") else _config.JIT_OPTIONS
        )
        if d.__name__ in ELEMENTWISE_KERNELS:
            expected["fastmath"] = _config.ELEMENTWISE_FASTMATH
        # cache=True shows as an on-disk cache, not as a target option
        assert expected.pop("cache") is True
        assert type(d._cache).__name__ == "FunctionCache", d.__name__
        assert set(opts) - {"nopython"} == set(expected), d.__name__
        for key, value in expected.items():
            assert opts[key] == (set(value) if isinstance(value, frozenset) else value), (
                d.__name__, key)
        assert not {"nnan", "ninf", "fast"} & set(opts["fastmath"]), d.__name__


def _run_toy(root, module):
    code = f"from toypkg import {module}; print({module}.kernel())"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_a_changed_dependency_empties_the_kernel_cache(tmp_path):
    # Numba keys a cached kernel on its own file: edit only the module it
    # calls into and the cached kernel still runs the old code. `plain` shows
    # that (the negative control); `guarded` calls drop_stale_caches as
    # _jit.py and _stream.py do, and must pick up the edit.
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    dep = pkg / "dep.py"
    dep.write_text("import numba\n\n@numba.njit(cache=True)\ndef value():\n    return 1\n")
    kernel = (
        "import numba\n"
        "from bnproof.kernels._config import drop_stale_caches\n"
        "from . import dep\n\n"
        "@numba.njit(cache=True)\n"
        "def kernel():\n"
        "    return dep.value()\n"
    )
    (pkg / "plain.py").write_text(kernel)
    (pkg / "guarded.py").write_text(kernel + "\ndrop_stale_caches(globals(), [dep])\n")
    assert _run_toy(tmp_path, "plain") == 1
    assert _run_toy(tmp_path, "guarded") == 1

    dep.write_text(dep.read_text().replace("return 1", "return 2"))
    stat = dep.stat()  # a later mtime, whatever the file system's granularity
    os.utime(dep, (stat.st_atime + 10, stat.st_mtime + 10))
    assert _run_toy(tmp_path, "plain") == 1  # stale: the hazard is real
    assert _run_toy(tmp_path, "guarded") == 2


def test_array_subclasses_are_read_as_their_memory(rng):
    # a subclass's own shape cannot reach the kernels (it would read out of
    # bounds), and running buffers are written without its hooks (a hook that
    # raised after running_mean was written left the buffers half-updated)
    class Liar(np.ndarray):
        @property
        def shape(self):
            return (16,)

    x = rng.standard_normal((2, 16, 1024)).astype(np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(1,\) but x has 16 channels"):
        batch_norm_forward(x, np.ones(1, np.float32).view(Liar))

    class Hooked(np.ndarray):
        def __setitem__(self, key, value):
            raise RuntimeError("hook")

    rm = np.zeros(16, np.float32)
    rv = np.ones(16, np.float32).view(Hooked)
    y, mean, _ = batch_norm_forward(x, None, None, rm, rv)
    np.testing.assert_allclose(rm, 0.1 * mean, rtol=1e-6)
    assert not np.all(rv.view(np.ndarray) == 1.0)  # both updated
    m = batch_norm_moments(x)
    lying = Moments(m.count, m.mean, np.zeros(1).view(Liar))
    with pytest.raises(ValueError, match=r"m2 has shape \(1,\)"):
        merge_moments(m, lying)


def _toy_package(root, signature, value):
    """``toypkg`` with ``dep.X = 1`` and ``guarded.{signature}`` returning ``value``, guarded."""
    pkg = root / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "dep.py").write_text("X = 1\n")
    (pkg / "guarded.py").write_text(
        "import numba\n"
        "from bnproof.kernels._config import drop_stale_caches\n"
        "from . import dep\n\n"
        "@numba.njit(cache=True)\n"
        f"def {signature}:\n"
        f"    return {value}\n"
        "\ndrop_stale_caches(globals(), [dep])\n"
    )
    return pkg


def test_a_process_with_old_code_does_not_save_kernels_after_an_update(tmp_path):
    # P imports, the dependency changes, Q imports (recording the new digest),
    # then P compiles a new specialization with the code it imported: that
    # kernel must not be saved, or every later process would load it
    pkg = _toy_package(tmp_path, "kernel(v)", "v + dep.X")
    dep = pkg / "dep.py"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "from toypkg import guarded; print(guarded.kernel({}), flush=True)"
    later = "print(guarded.kernel(1.0), flush=True)"  # a new specialization, after the update
    p = subprocess.Popen(
        [sys.executable, "-c", code.format("1") + "; input(); " + later],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert p.stdout.readline().strip() == "2"
        dep.write_text("X = 2\n")
        q = subprocess.run([sys.executable, "-c", code.format("1")], capture_output=True,
                           text=True, env=env, cwd=tmp_path, check=True)
        assert q.stdout.strip() == "3"
        out, _ = p.communicate("\n", timeout=120)
    finally:
        p.kill()
    assert out.strip() == "2.0"  # P runs the code it imported
    r = subprocess.run([sys.executable, "-c", code.format("1.0")], capture_output=True,
                       text=True, env=env, cwd=tmp_path, check=True)
    assert r.stdout.strip() == "3.0"  # not P's kernel


def test_a_truncated_cache_file_is_recompiled(tmp_path):
    pkg = _toy_package(tmp_path, "kernel()", "dep.X")
    assert _run_toy(tmp_path, "guarded") == 1
    (index,) = pkg.glob("__pycache__/guarded.kernel-*.nbi")
    index.write_bytes(index.read_bytes()[:20])  # a killed process, a full disk
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "from toypkg import guarded; "
                           "print(guarded.kernel())"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["1"], proc.stderr
    assert "damaged" in proc.stderr
    assert _run_toy(tmp_path, "guarded") == 1  # saved again, readable


def test_a_damaged_digest_file_counts_as_stale(tmp_path):
    # bytes that are not text in the recorded digest: the cache is emptied and
    # the digest rewritten, never an exception at import
    pkg = _toy_package(tmp_path, "kernel()", "dep.X")
    assert _run_toy(tmp_path, "guarded") == 1
    (stamp,) = pkg.glob("__pycache__/guarded.deps-sha256")
    stamp.write_bytes(b"\xff\xfe not a digest")
    assert _run_toy(tmp_path, "guarded") == 1
    assert len(stamp.read_bytes().strip()) == 64  # a SHA-256 digest again


def test_kernels_compile_without_a_cache_folder(monkeypatch):
    # a read-only installation with no writable user cache folder: Numba has
    # no locator, and the kernels must still compile (uncached, with a warning)
    from numba.core.caching import CacheImpl

    from bnproof.kernels import _config

    monkeypatch.setattr(CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(_config, "_UNCACHED", [])

    def twice(v):
        return 2 * v

    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        kernel = _config.jit()(twice)
    assert kernel(21) == 42 and _config._UNCACHED == ["twice"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process, not per kernel
        assert _config.jit()(twice)(1) == 2


def test_a_new_process_loads_the_kernels_from_the_cache(tmp_path):
    # the digest check must not empty the cache when nothing has changed
    # (nor may a kernel's cache key change from one process to the next, as
    # it did for copies defined inside a function: see kernels._copy)
    code = (
        "import numpy as np\n"
        "from bnproof.kernels import _copy, _jit, batch_norm_forward\n"
        "batch_norm_forward(np.ones((8, 4, 9), np.float32))\n"
        "_copy.stream_copy(np.ones(9), np.empty(9))\n"
        "for kernel in (_jit.moments_ncm_rows, _copy.stream_copy):\n"
        "    stats = kernel.stats\n"
        "    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.split() for _ in range(2)]
    assert runs[1] == ["1", "0", "1", "0"], runs


@pytest.mark.parametrize("strict", ["errstate", "warnings"])
def test_floating_point_settings_cannot_interrupt_a_call(strict):
    # inf and NaN are results here (a running variance that overflows float32,
    # eps=0 with a constant channel); with the caller's errors switched on, the
    # call must still complete and update both buffers, not raise halfway
    import warnings

    x = np.array([[-3e38, 1.0, 5.0], [3e38, 2.0, 5.0]], np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise" if strict == "errstate" else "warn"):
        if strict == "warnings":
            warnings.simplefilter("error")
        y, mean, invstd = batch_norm_forward(x, running_mean=rm, running_var=rv)
        y0, _, invstd0 = batch_norm_forward(x, eps=0.0)
        dx, dw, db = batch_norm_backward(np.ones_like(x), x, np.ones(3, np.float32), mean, invstd)
        batch_norm_forward(x, running_mean=rm, running_var=-rv, training=False)
    assert np.isinf(rv[0]) and np.isfinite(rv[1:]).all()  # both buffers written
    np.testing.assert_allclose(rm, 0.1 * x.astype(np.float64).mean(axis=0), rtol=1e-6)
    assert np.isinf(invstd0[2]) and np.isnan(y0[:, 2]).all()  # as documented
    assert np.isfinite(y[:, 1]).all() and np.isfinite(dx[:, 1]).all()


def test_two_sum_keeps_the_rounding_error():
    # compiled with reassoc, LLVM would fold the error term to 0
    from bnproof.kernels import _jit

    assert _jit._two_sum(1e16, 1.0) == (1e16, 1.0)
    assert _jit._two_sum(8388607.0, 1 / 1086) == (8388607.0 + 1 / 1086,
                                                  (8388607.0 - (8388607.0 + 1 / 1086)) + 1 / 1086)
    hi, lo = _jit._two_sum(8388607.0, 1 / 1086)
    assert lo != 0.0 and hi + lo == hi
