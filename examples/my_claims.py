"""Claims of your own, proved by ``bnproof prove --claims examples/my_claims.py``.

Each claim is a builder ``build(batch, indices)`` that returns what must hold
(:class:`~bnproof.symbolic.Identity`) and what must not vanish
(:class:`~bnproof.symbolic.Nonzero`), written once for a batch of symbolic
size N and for concrete batches x_1..x_n.
"""

import sympy

from bnproof.symbolic import Identity, beta, gamma, register_claim, training

k = sympy.Symbol("k", integer=True)


def mean_output_is_beta(batch, indices):
    """Claim: the batch mean of the outputs of batch normalization is beta."""
    model = training(batch)
    mean_y = batch.total(model.y, k) / batch.size
    return [Identity(sympy.Symbol("mean(y)"), mean_y, beta)]


def mean_output_is_gamma(batch, indices):
    """Claim a false variant (negative control): the mean is gamma."""
    model = training(batch)
    mean_y = batch.total(model.y, k) / batch.size
    return [Identity(sympy.Symbol("mean(y)"), mean_y, gamma)]


register_claim(
    "my-mean-output-is-beta",
    "The batch mean of the batch-normalized outputs is beta, for a symbolic N.",
    mean_output_is_beta,
    replace=True,
)
register_claim(
    "my-mean-output-is-gamma",
    "Negative control: the batch mean of the outputs is gamma (false).",
    mean_output_is_gamma,
    expected="refuted",
    replace=True,
)
