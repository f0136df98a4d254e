"""precise_bn across ranks: gloo on local processes, a file:// rendezvous in tmp_path.

Every rank reads its own shard of the same non-iid, unequal batches; the
buffers must equal the statistics of all batches concatenated on every rank,
whatever the number of ranks, and a failure on one rank must leave every rank
unchanged.
"""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from bnproof.torch import precise_bn  # noqa: E402

pytestmark = pytest.mark.slow

#: The issue's acceptance: 1e-12 relative against the concatenated inputs'
#: statistics (merging in another order changes only float64 rounding).
RTOL64 = 1e-12

SIZES = (16, 16, 16, 16, 16, 16, 9, 5)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5),
    ).double()


def _batches():
    rng = np.random.default_rng(7)
    return [
        torch.from_numpy(rng.standard_normal((n, 3, 8, 8)) * (1 + i) + 2.0 * i)
        for i, n in enumerate(SIZES)
    ]


def _shard(batches, rank, world):
    # Unequal shards: rank r reads batches r, r + world, ...
    return batches[rank::world]


def _buffers(model):
    return {k: (model[k].running_mean.numpy().copy(), model[k].running_var.numpy().copy())
            for k in (1, 5)}


def _worker(rank, world, init_file, out_dir, modes):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        result = {}
        shard = _shard(_batches(), rank, world)
        for mode in modes:
            model = _model()
            precise_bn(model, shard, progress=False, mode=mode)
            result[mode] = _buffers(model)
        # A rank whose data breaks: no rank writes anything.
        fresh = _model()
        before = _buffers(fresh)

        def broken():
            yield shard[0]
            if rank == world - 1:
                raise RuntimeError("rank data broke")
            yield from shard[1:]

        try:
            precise_bn(fresh, list(broken()) if rank != world - 1 else broken(),
                       progress=False)
            result["failure"] = None
        except RuntimeError as error:
            result["failure"] = str(error)
        after = _buffers(fresh)
        result["unchanged"] = all(
            np.array_equal(before[k][i], after[k][i]) for k in before for i in (0, 1)
        )
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(result, f)
    finally:
        dist.destroy_process_group()


def _run(tmp_path, world, modes):
    mp.spawn(_worker, args=(world, str(tmp_path / "rendezvous"), str(tmp_path), modes),
             nprocs=world, join=True)
    results = []
    for rank in range(world):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


def _single_process(mode):
    model = _model()
    precise_bn(model, _batches(), progress=False, mode=mode)
    return _buffers(model)


def _exact_train_stats():
    model = _model()
    seen = {1: [], 5: []}
    for k in seen:
        model[k].register_forward_pre_hook(lambda m, a, k=k: seen[k].append(a[0].clone()))
    model.train()
    with torch.no_grad():
        for b in _batches():
            model(b)
    stats = {}
    for k, parts in seen.items():
        x = torch.cat(parts).numpy()
        axes = tuple(i for i in range(x.ndim) if i != 1)
        stats[k] = (x.mean(axis=axes), x.var(axis=axes, ddof=1))
    return stats


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(
    ("world", "modes"), [(2, ("train", "eval-consistent")), (3, ("train",))]
)
def test_ranks_agree_with_the_concatenated_batches(tmp_path, world, modes):
    exact = _exact_train_stats()
    results = _run(tmp_path, world, modes)
    for r in results:
        for k, (mu, var) in exact.items():
            assert _rel(r["train"][k][0], mu) < RTOL64
            assert _rel(r["train"][k][1], var) < RTOL64
        # Every rank holds the same bits.
        for mode in modes:
            for k in exact:
                for i in (0, 1):
                    assert np.array_equal(r[mode][k][i], results[0][mode][k][i])
        # The broken rank raises its own error, the others say another rank failed,
        # and nobody wrote anything.
        assert r["failure"] is not None and r["unchanged"]
    assert "rank data broke" in results[-1]["failure"]
    assert all("another rank" in r["failure"] for r in results[:-1])
    if "eval-consistent" in modes:
        single = _single_process("eval-consistent")
        for k, (mu, var) in single.items():
            assert _rel(results[0]["eval-consistent"][k][0], mu) < RTOL64
            assert _rel(results[0]["eval-consistent"][k][1], var) < RTOL64
