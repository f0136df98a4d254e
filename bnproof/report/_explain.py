r"""The derivations in the paper's notation, sized for a person (text and LaTeX only).

The prover's own steps (:attr:`bnproof.symbolic.Proof.steps`) are what
establishes each verdict, but they are raw SymPy: nested sums of 1/N and a
final "= 0". Here each claim's argument is written the way a teacher would
write it on a board, in the notation of Algorithm 1 of Ioffe & Szegedy
(2015):

    x_i = u_i + b,  mu = (1/N) sum_k x_k,  sigma^2 = (1/N) sum_k (x_k - mu)^2,
    xhat_i = (x_i - mu) / sqrt(sigma^2 + eps),  y_i = gamma xhat_i + beta,

with ``ubar`` the mean of the u_k and ``s = sqrt(sigma^2 + eps)``. The report
shows these steps first and keeps the prover's steps and checks folded
beneath them. Nothing here is computed; a claim without an entry is shown
with the prover's steps only.
"""

from __future__ import annotations

__all__ = ["REASON", "SHORT", "STEPS"]

#: The reason in three lines: (what the line says, LaTeX).
REASON: tuple[tuple[str, str], ...] = (
    ("Mean subtraction removes b, before the variance is even formed:",
     r"x_i - \mu = u_i + b - \frac{1}{N}\sum_{k=1}^{N} (u_k + b) = u_i - \bar{u}"),
    ("The variance is formed from what is left, so the output does not depend on b:",
     r"\sigma^2 = \frac{1}{N}\sum_{k=1}^{N} {(u_k - \bar{u})}^2,\quad "
     r"y_i = \gamma\,\frac{u_i - \bar{u}}{\sqrt{\sigma^2 + \epsilon}} + \beta"
     r"\quad\Rightarrow\quad \frac{\partial y_i}{\partial b} = 0"),
    ("A gradient step that holds \u03bc fixed sees \u2202y_i/\u2202b = \u03b3/s instead of 0, "
     "moves b, and the new mean absorbs the move: the same step repeats.",
     r"\Delta b = -\eta\,\frac{\gamma}{s}\sum_{i=1}^{N} g_i \neq 0,\quad "
     r"\mu \leftarrow \mu + \Delta b \quad\Rightarrow\quad b_t = b_0 + t\,\Delta b"),
)

#: A few words per claim for the one-screen table of verdicts.
SHORT: dict[str, str] = {
    "bias-cancels-train": "training mode: dy_i/db = 0",
    "bias-cancels-center-only": "centering alone: dy_i/db = 0",
    "bias-survives-eval":
        "running statistics: dy_i/db = \u03b3/\u221a(\u03c3_R\u00b2 + \u03b5) \u2260 0",
    "loss-grad-bias-zero": "any loss: dL/db = \u03a3 dL/dx_i = 0",
    "backward-closed-form": "the backward pass in closed form",
    "jacobian-form": "the Jacobian dx\u0302_i/dx_j; J1 = 0; Jx\u0302 = 0 at \u03b5 = 0 only",
    "shift-invariance": "BN(x + c) = BN(x)",
    "scale-invariance": "BN(ax) = BN(x) at \u03b5 = 0 only",
    "outside-gradient-drift": "\u03bc, s held fixed by the step: b drifts, loss fixed",
    "outside-gradient-drift-center-only": "the same for section 2's centering",
    "weight-grad-orthogonal": "\u27e8w, \u2207_w L\u27e9 = 0: |w| grows",
    "rms-bias-cancels": "control: no centering, b does not cancel",
}

_MEAN_REMOVES_B = (
    "Subtract the mean: b appears in every x_k, so it leaves with the mean.",
    r"x_i - \mu = u_i + b - \frac{1}{N}\sum_{k=1}^{N}(u_k + b) = u_i - \bar{u}",
)
_VARIANCE_WITHOUT_B = (
    "The variance is built from these differences only, so it has no b either.",
    r"\sigma^2 = \frac{1}{N}\sum_{k=1}^{N}{(x_k - \mu)}^2 = \frac{1}{N}\sum_{k=1}^{N}"
    r"{(u_k - \bar{u})}^2",
)
_JACOBIAN = (
    "Differentiate x\u0302_i through \u03bc and s, with \u2202\u03bc/\u2202x_j = 1/N and "
    "\u2202s/\u2202x_j = (x_j - \u03bc)/(N s).",
    r"J_{ij} = \frac{\partial \hat{x}_i}{\partial x_j} = \frac{1}{s}\Big(\delta_{ij} - "
    r"\frac{1}{N}\Big) - \frac{(x_i - \mu)(x_j - \mu)}{N s^3} = \frac{1}{s}\Big(\delta_{ij}"
    r" - \frac{1}{N} - \frac{\hat{x}_i \hat{x}_j}{N}\Big)",
)


def _drift(scaled: bool) -> tuple[tuple[str, str], ...]:
    slope = r"\frac{\gamma}{s}" if scaled else r"\gamma"
    return (
        ("The outside step differentiates with \u03bc" + (" and s" if scaled else "")
         + " held as constants, so it sees a slope where there is none.",
         r"\frac{\partial y_i}{\partial b}\Big|_{\mu" + (r",\,s" if scaled else "")
         + r"\ \mathrm{fixed}} = " + slope + r",\qquad \Delta b = -\eta\,"
         + slope + r"\sum_{i=1}^{N} g_i \neq 0"),
        ("After the step the statistics are recomputed: the mean moves with b"
         + (" and s does not move" if scaled else "") + ".",
         r"\mu(b + \Delta b) = \mu(b) + \Delta b,\quad x_i - \mu\ \mathrm{unchanged}"
         + (r",\quad s\ \mathrm{unchanged}" if scaled else "")),
        ("So every y_i, every g_i = \u2202L/\u2202y_i and the loss are what they were, and the "
         "next step is the same \u0394b again.",
         r"y_i(b_0 + t\,\Delta b) = y_i(b_0),\qquad b_t = b_0 + t\,\Delta b"),
        ("The true gradient, taken through the statistics, is zero: the step above is "
         "chasing a slope that the model does not have.",
         r"\frac{\partial L}{\partial b} = \sum_{i=1}^{N} g_i\,\frac{\partial y_i}{\partial b}"
         r" = 0"),
    )


#: claim id -> the argument, as (sentence, LaTeX) steps.
STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "bias-cancels-train": (
        _MEAN_REMOVES_B,
        _VARIANCE_WITHOUT_B,
        ("Normalize, scale and shift: nothing left depends on b, for any \u03b5 \u2265 0.",
         r"y_i = \gamma\,\frac{u_i - \bar{u}}{\sqrt{\sigma^2 + \epsilon}} + \beta"
         r"\quad\Rightarrow\quad \frac{\partial y_i}{\partial b} = 0"),
    ),
    "bias-cancels-center-only": (
        _MEAN_REMOVES_B,
        ("Scale and shift: nothing left depends on b.",
         r"y_i = \gamma\,(u_i - \bar{u}) + \beta \quad\Rightarrow\quad "
         r"\frac{\partial y_i}{\partial b} = 0"),
    ),
    "bias-survives-eval": (
        ("In inference mode \u03bc_R and \u03c3_R\u00b2 are fixed numbers (moving averages "
         "gathered earlier), not functions of this batch, so nothing subtracts b.",
         r"y_i = \gamma\,\frac{u_i + b - \mu_R}{\sqrt{\sigma_R^2 + \epsilon}} + \beta"),
        ("Differentiate: the slope is the scale, and it is not zero.",
         r"\frac{\partial y_i}{\partial b} = \frac{\gamma}{\sqrt{\sigma_R^2 + \epsilon}} "
         r"\neq 0\quad (\gamma \neq 0)"),
    ),
    "loss-grad-bias-zero": (
        ("Chain rule: b enters every x_i with slope 1.",
         r"\frac{\partial L}{\partial b} = \sum_{i=1}^{N}\frac{\partial L}{\partial x_i}"
         r"\,\frac{\partial x_i}{\partial b} = \sum_{i=1}^{N}\frac{\partial L}{\partial x_i}"),
        ("Adding c to every x_i changes no output (shift invariance); differentiate that in "
         "c at c = 0.",
         r"y_n(x + c\,\mathbf{1}) = y_n(x)\quad\Rightarrow\quad \sum_{i=1}^{N}"
         r"\frac{\partial y_n}{\partial x_i} = 0\quad \mathrm{for}\ \mathrm{every}\ n"),
        ("So the sum of the input gradients vanishes for any loss L of the outputs.",
         r"\sum_{i=1}^{N}\frac{\partial L}{\partial x_i} = \sum_{n=1}^{N} g_n \sum_{i=1}^{N}"
         r"\frac{\partial y_n}{\partial x_i} = 0"),
    ),
    "backward-closed-form": (
        _JACOBIAN,
        ("Chain rule through every output, with g_i = \u2202L/\u2202y_i and bars for means "
         "over the batch.",
         r"\frac{\partial L}{\partial x_j} = \gamma\sum_{i=1}^{N} g_i J_{ij} = "
         r"\frac{\gamma}{s}\Big(g_j - \bar{g} - \hat{x}_j\,\overline{g\hat{x}}\Big)"),
        ("\u03b3 and \u03b2 enter each output directly.",
         r"\frac{\partial L}{\partial \gamma} = \sum_{i=1}^{N} g_i\,\hat{x}_i,\qquad "
         r"\frac{\partial L}{\partial \beta} = \sum_{i=1}^{N} g_i"),
    ),
    "jacobian-form": (
        _JACOBIAN,
        ("J is symmetric in i and j. The normalized values sum to zero, so each row of J "
         "sums to zero: J1 = 0.",
         r"\sum_{j=1}^{N}\hat{x}_j = 0\quad\Rightarrow\quad \sum_{j=1}^{N} J_{ij} = "
         r"\frac{1}{s}\Big(1 - 1 - 0\Big) = 0"),
        ("Their squares sum to N\u03c3\u00b2/(\u03c3\u00b2 + \u03b5), so Jx\u0302 vanishes "
         "only when \u03b5 = 0.",
         r"\sum_{j=1}^{N} J_{ij}\hat{x}_j = \frac{\hat{x}_i}{s}\Big(1 - \frac{\sigma^2}"
         r"{\sigma^2 + \epsilon}\Big) = \frac{\hat{x}_i\,\epsilon}{s\,(\sigma^2 + \epsilon)}"),
    ),
    "shift-invariance": (
        ("A common shift c moves the mean by c and leaves the differences alone.",
         r"(x_i + c) - (\mu + c) = x_i - \mu"),
        ("The variance is built from the differences, so it does not move: every output is "
         "the same, for any \u03b5.",
         r"\sigma^2(x + c\,\mathbf{1}) = \sigma^2(x)\quad\Rightarrow\quad "
         r"\mathrm{BN}(x + c\,\mathbf{1}) = \mathrm{BN}(x)"),
    ),
    "scale-invariance": (
        ("A scale a > 0 multiplies the differences by a and the variance by a\u00b2.",
         r"a x_i - a\mu = a\,(x_i - \mu),\qquad \sigma^2(a x) = a^2\sigma^2"),
        ("At \u03b5 = 0 the a cancels; for \u03b5 > 0 it does not, and the residual is not "
         "zero (the prover shows a value).",
         r"\hat{x}_i(a x) = \frac{a\,(x_i - \mu)}{\sqrt{a^2\sigma^2 + \epsilon}} = "
         r"\frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon/a^2}}"),
    ),
    "outside-gradient-drift": _drift(scaled=True),
    "outside-gradient-drift-center-only": _drift(scaled=False),
    "weight-grad-orthogonal": (
        ("At \u03b5 = 0, BN(ax) = BN(x); differentiate in a at a = 1. With x = Uw, the "
         "same sum is the inner product of w with its gradient.",
         r"\sum_{p=1}^{N} x_p\,\frac{\partial L}{\partial x_p} = 0 = "
         r"\langle w, \nabla_w L\rangle"),
        ("So a gradient step only ever lengthens w.",
         r"\|w - \eta\nabla_w L\|^2 = \|w\|^2 - 2\eta\langle w, \nabla_w L\rangle + "
         r"\eta^2\|\nabla_w L\|^2 = \|w\|^2 + \eta^2\|\nabla_w L\|^2"),
    ),
    "rms-bias-cancels": (
        ("RMS normalization divides by r, the root mean square, and subtracts nothing, so "
         "b is still in the numerator (\u03b3 and \u03b2 are there and do not help).",
         r"y_i = \gamma\,\frac{u_i + b}{r} + \beta,\qquad r = \sqrt{\overline{x^2} + "
         r"\epsilon}"),
        ("Differentiate: this is not zero in general; the prover finds exact values where "
         "it is not.",
         r"\frac{\partial y_i}{\partial b} = \gamma\Big(\frac{1}{r} - \frac{x_i\,\bar{x}}"
         r"{r^3}\Big)"),
    ),
}
