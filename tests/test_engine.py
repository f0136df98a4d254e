"""What the two-way checker records: its verdicts, steps, checks and reasons."""

import sympy

from bnproof.symbolic import Check
from bnproof.symbolic._engine import Identity, Nonzero, establish
from bnproof.symbolic._models import x

z = sympy.Symbol("z")
w = sympy.Symbol("w")


# ---- regressions: what the concrete checks say ------------------------------ #


def test_each_concrete_check_names_only_its_own_failures():
    # both checks once shared one list: a passed rationals check showed
    # "expansion not 0", a failed expansion the rationals' counterexample
    r2, r3, r6 = (sympy.sqrt(v, evaluate=False) for v in (2, 3, 6))

    def build(batch, idx):
        v = batch.item(x, 1)
        return [Identity(z, sympy.Mul(r2, r3, evaluate=False), r6),  # expansion fails only
                Identity(w, (batch.size - 2) * (batch.size - 3) * v + v, v)]  # false at N = 4

    proof = establish("own-failures", build, n_max=4, symbolic=False)
    checks = {c.method: c for c in proof.checks}
    assert checks["rationals-N=2"] == Check("rationals-N=2", True, "")
    assert checks["expand-N=2"] == Check("expand-N=2", False, "z at any index: expansion not 0")
    assert checks["expand-N=4"].detail == ("z at any index: expansion not 0; "
                                           "w at any index: expansion not 0")
    assert checks["rationals-N=4"].passed is False
    assert checks["rationals-N=4"].detail.startswith("N = 4, any index: w - (x_1) = ")


def test_texts_without_indices_or_symbols_read_plainly():
    # no free index: "any index", never "z at : ..."; no symbol: no "at" and
    # no trailing comma after N
    proof = establish("constant", lambda b, i: [Identity(z, 1, 0)], n_max=2)
    assert proof.reason == "counterexample: N = 2, any index: z = 1, not 0"

    def late(batch, idx):
        return [Identity(z, (batch.size - 2) * (batch.size - 3), 0)]

    proof = establish("constant-late", late, n_max=4, symbolic=False)
    assert proof.reason == "counterexample: N = 4, any index: z = 2, not 0"
    proof = establish("witness-n", lambda b, i: [Nonzero(z, b.size + 1)], n_max=2)
    (witness,) = [s for s in proof.steps if s.title.startswith("Witness")]
    assert witness.note == "N = 2"
