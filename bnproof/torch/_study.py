"""The usual population-statistics estimators against the exact ones, measured.

:func:`precise_study` trains a small CNN on scikit-learn's handwritten digits
(bundled, offline) and compares ``torch.optim.swa_utils.update_bn``, two
estimators re-implemented from the description of fvcore's
``update_bn_stats`` (fvcore is not a dependency) and :func:`precise_bn`
against the exact statistics of the concatenated inputs. It returns plain
data (the research note and the report only read it).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from ._precise import precise_bn

__all__ = ["ESTIMATORS", "exact_statistics", "mean_of_batch_variances",
           "population_in_buffer_dtype", "precise_study"]

#: Names of the batch norms of the study's CNN (positions in the Sequential).
BN_NAMES = ("1", "4", "9")


def make_cnn() -> nn.Sequential:
    """Return the study's CNN for 8 x 8 digits (three batch norms).

    The first convolution has no padding, so a constant added to every pixel
    adds a per-channel constant to its output, which a batch norm with
    correct statistics removes exactly.
    """
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 3 * 3, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def _bns(model):
    return {n: m for n, m in model.named_modules() if n in BN_NAMES}


def _reduce_dims(x):
    return [d for d in range(x.dim()) if d != 1]


def _per_batch(model, batches, stat):
    """Run the model in training mode; call ``stat(name, x)`` on each batch norm's input."""
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: stat(n, a[0].detach()))
             for n, m in _bns(model).items()]
    model.train()
    try:
        with torch.no_grad():
            for b in batches:
                model(b)
    finally:
        for h in hooks:
            h.remove()


def mean_of_batch_variances(model, batches) -> None:
    """Set the buffers to fvcore's default estimate (equal weights per batch).

    The mean of the per-batch means and the mean of the unbiased per-batch
    variances, in the buffers' dtype.
    """
    means, variances = {n: [] for n in BN_NAMES}, {n: [] for n in BN_NAMES}

    def stat(n, x):
        means[n].append(x.mean(_reduce_dims(x)))
        variances[n].append(x.var(_reduce_dims(x), unbiased=True))

    _per_batch(model, batches, stat)
    with torch.no_grad():
        for n, m in _bns(model).items():
            m.running_mean.copy_(torch.stack(means[n]).mean(0))
            m.running_var.copy_(torch.stack(variances[n]).mean(0))


def population_in_buffer_dtype(model, batches) -> None:
    """Set the buffers to fvcore's population estimate.

    Batches weighted by their size, the variance formed as
    ``(E[x^2] - E[x]^2) N / (N - 1)`` in the buffers' dtype.
    """
    sums = {n: [0, 0.0, 0.0] for n in BN_NAMES}

    def stat(n, x):
        dims = _reduce_dims(x)
        count = x.numel() // x.shape[1]
        s = sums[n]
        s[0] += count
        s[1] = s[1] + count * x.mean(dims)
        s[2] = s[2] + count * (x * x).mean(dims)

    _per_batch(model, batches, stat)
    with torch.no_grad():
        for n, m in _bns(model).items():
            count, total, total_sq = sums[n]
            mean = total / count
            m.running_mean.copy_(mean)
            m.running_var.copy_((total_sq / count - mean * mean) * (count / (count - 1)))


def exact_statistics(model, batches, *, training=True) -> dict:
    """Mean and unbiased variance of each batch norm's concatenated inputs.

    Two passes in extended precision (``np.longdouble``, a 64-bit
    significand on x86-64) over the inputs recorded from a copy of the model
    (in training mode, or in inference mode with ``training=False``), so
    that the reference is well below float64 rounding even far from zero.
    """
    seen = {n: [] for n in BN_NAMES}
    work = copy.deepcopy(model)
    for n, m in _bns(work).items():  # hooks on the copy only
        m.register_forward_pre_hook(
            lambda m, a, n=n: seen[n].append(a[0].detach().double().clone())
        )
    work.train(training)
    with torch.no_grad():
        for b in batches:
            work(b)
    out = {}
    for n, parts in seen.items():
        x = torch.cat(parts).numpy().astype(np.longdouble)
        axes = tuple(d for d in range(x.ndim) if d != 1)
        shape = [1 if d in axes else s for d, s in enumerate(x.shape)]
        mu = x.mean(axis=axes)
        var = ((x - mu.reshape(shape)) ** 2).sum(axis=axes) / (x.size // x.shape[1] - 1)
        out[n] = (mu, var)
    return out


#: The estimators compared, each setting the buffers of the model it is given.
ESTIMATORS = {
    "update_bn": lambda model, batches: update_bn(batches, model),
    "mean of batch variances": mean_of_batch_variances,
    "population, buffer dtype": population_in_buffer_dtype,
    "bnproof precise_bn": lambda model, batches: precise_bn(model, batches, progress=False),
}


def _errors(model, exact):
    """Largest relative errors of the mean (to |mean| + std) and of the variance."""
    err_mu, err_var = 0.0, 0.0
    for n, m in _bns(model).items():
        mu, var = exact[n]
        rm = m.running_mean.double().numpy().astype(np.longdouble)
        rv = m.running_var.double().numpy().astype(np.longdouble)
        err_mu = max(err_mu, float(np.max(np.abs(rm - mu) / (np.abs(mu) + np.sqrt(var)))))
        err_var = max(err_var, float(np.max(np.abs(rv - var) / var)))
    return err_mu, err_var


def precise_study(*, epochs=4, batch_size=128, offset=300.0, timing_repeats=5) -> dict:
    """Measure the estimators on the digits CNN; return plain data.

    Parameters
    ----------
    epochs : int, default 4
        Training epochs (Adam, batches of 64).
    batch_size : int, default 128
        Batch size of the statistics passes (1300 training images: the last
        batch is short unless ``batch_size`` divides 1300).
    offset : float, default 300
        Added to every pixel (training and test images) in the ``offset``
        batching.
    timing_repeats : int, default 5
        Best-of count of the timing of ``precise_bn`` against ``update_bn``.

    Returns
    -------
    dict
        ``setup`` (text), ``baseline_accuracy`` (the running averages of
        training), ``rows`` (per dtype, batching and estimator: the largest
        relative error of the mean and of the variance over every batch norm
        and channel, and the test accuracy), ``eval_consistent`` (per mode:
        passes, the variance error per batch norm against what inference
        feeds it, test accuracy) and ``timing`` (seconds and ratio).

    Notes
    -----
    Wu & Johnson (2021), "Rethinking 'Batch' in BatchNorm",
    arXiv:2105.07576, section 3 (PreciseBN); Ioffe & Szegedy (2015),
    section 3.1 (population statistics).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target
    perm = np.random.default_rng(0).permutation(len(images))
    train_idx, test_idx = perm[:1300], perm[1300:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors; one thread is as fast and deterministic
    try:
        trained = make_cnn()
        opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
        xt, yt = torch.from_numpy(images[train_idx]), torch.from_numpy(labels[train_idx])
        gen = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                j = order[i:i + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(trained(xt[j]), yt[j]).backward()
                opt.step()

        def accuracy(model, shift=0.0, dtype=torch.float32):
            model.eval()
            x = torch.from_numpy(images[test_idx] + np.float32(shift)).to(dtype)
            with torch.no_grad():
                return float((model(x).argmax(1).numpy() == labels[test_idx]).mean())

        def batchings(dtype):
            shuffled = np.random.default_rng(1).permutation(train_idx)
            by_label = train_idx[np.argsort(labels[train_idx], kind="stable")]
            out = {}
            for name, idx, shift in (("iid", shuffled, 0.0), ("sorted", by_label, 0.0),
                                     ("offset", shuffled, offset)):
                xs = torch.from_numpy(images[idx] + np.float32(shift)).to(dtype)
                out[name] = ([xs[i:i + batch_size] for i in range(0, len(xs), batch_size)],
                             shift)
            return out

        rows = []
        for dtype in (torch.float32, torch.float64):
            for scenario, (batches, shift) in batchings(dtype).items():
                base = copy.deepcopy(trained).to(dtype)
                exact = exact_statistics(base, batches)
                for name, estimate in ESTIMATORS.items():
                    model = copy.deepcopy(base)
                    estimate(model, batches)
                    e_mu, e_var = _errors(model, exact)
                    rows.append(dict(dtype=str(dtype).removeprefix("torch."),
                                     batches=scenario, estimator=name, mean_error=e_mu,
                                     var_error=e_var,
                                     test_accuracy=accuracy(model, shift, dtype)))

        sorted_batches = batchings(torch.float32)["sorted"][0]
        eval_rows = []
        for mode in ("train", "eval-consistent"):
            model = copy.deepcopy(trained)
            result = precise_bn(model, sorted_batches, mode=mode, progress=False)
            seen = exact_statistics(model, sorted_batches, training=False)
            per_layer = []
            for n, m in _bns(model).items():
                var = seen[n][1]
                rv = m.running_var.double().numpy().astype(np.longdouble)
                per_layer.append(float(np.max(np.abs(rv - var) / var)))
            eval_rows.append(dict(mode=mode, passes=result.passes,
                                  var_error_per_layer=per_layer,
                                  test_accuracy=accuracy(model)))

        iid = batchings(torch.float32)["iid"][0]
        model = copy.deepcopy(trained)

        def best(fn):
            times = []
            for _ in range(timing_repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return min(times)

        t_update = best(lambda: update_bn(iid, model))
        t_precise = best(lambda: precise_bn(model, iid, progress=False))
        baseline = accuracy(trained)
    finally:
        torch.set_num_threads(threads)

    return {
        "setup": {
            "data": (f"scikit-learn digits: {len(train_idx)} training and {len(test_idx)} "
                     f"test images, batches of {batch_size} (the last one "
                     f"{len(train_idx) % batch_size or batch_size})"),
            "model": ("conv 3x3 (16) - BN - ReLU - conv 3x3 (32) - BN - ReLU - max pool - "
                      f"linear (64) - BN - ReLU - linear (10), trained {epochs} epochs"),
            "batchings": {"iid": "shuffled", "sorted": "sorted by label",
                          "offset": f"shuffled, every pixel plus {offset:g}"},
            "errors": ("largest over the batch norms and channels: |error of the mean| / "
                       "(|mean| + std) and |error of the variance| / variance, against "
                       "the concatenated inputs in extended precision"),
            "batch_norms": list(BN_NAMES),
            "test_images": int(len(test_idx)),
        },
        "baseline_accuracy": baseline,
        "rows": rows,
        "eval_consistent": eval_rows,
        "timing": {"update_bn_s": t_update, "precise_bn_s": t_precise,
                   "ratio": t_precise / t_update, "repeats": timing_repeats},
    }
