"""Shared fixtures: every test gets a seeded random generator."""

import numpy as np
import pytest

#: One seed for the whole suite, so that a failure reproduces.
SEED = 20150211


@pytest.fixture(autouse=True)
def _seed_legacy_numpy():
    """Seed NumPy's legacy global generator for code that still uses it."""
    np.random.seed(SEED)  # noqa: NPY002 (legacy global state is what this fixture pins)


@pytest.fixture
def rng():
    """A seeded ``numpy.random.Generator``."""
    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def table_proofs():
    """Every cell of the invariance table, proved once for the whole session."""
    from bnproof.symbolic import cells, prove_all

    ids = [cid for _, _, cid in cells()]
    return {p.claim_id: p for p in prove_all(ids, workers=2)}


@pytest.fixture(autouse=True)
def _private_result_cache(tmp_path_factory, monkeypatch):
    """Give each test an empty result cache (bnproof._cache), never the user's."""
    monkeypatch.setenv("BNPROOF_CACHE_DIR", str(tmp_path_factory.mktemp("bnproof-cache")))
