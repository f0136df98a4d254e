"""The question the report answers, and the paper's passages it is about (text only)."""

from __future__ import annotations

#: Where the question was asked (a reader's question about the paper).
SOURCE = "a reader of Ioffe & Szegedy (2015), arXiv:1502.03167"

#: The passage of section 2 the question is about (quoted from the paper).
PAPER_SECTION_2 = (
    "For example, consider a layer with the input u that adds the learned bias b, and "
    "normalizes the result by subtracting the mean of the activation computed over the "
    "training data: x\u0302 = x \u2212 E[x] where x = u + b, \U0001d4b3 = {x_1\u2026N} is "
    "the set of values of x over the training set, and E[x] = (1/N) \u03a3 x_i. If a "
    "gradient descent step ignores the dependence of E[x] on b, then it will update "
    "b \u2190 b + \u0394b, where \u0394b \u221d \u2212\u2202l/\u2202x\u0302. Then "
    "u + (b + \u0394b) \u2212 E[u + (b + \u0394b)] = u + b \u2212 E[u + b]. Thus, the "
    "combination of the update to b and subsequent change in normalization led to no "
    "change in the output of the layer nor, consequently, the loss. As the training "
    "continues, b will grow indefinitely while the loss remains fixed. This problem can "
    "get worse if the normalization not only centers but also scales the activations. "
    "We have observed this empirically in initial experiments, where the model blows up "
    "when the normalization parameters are computed outside the gradient descent step."
)

#: The passage of section 3.2 the reader contrasts it with.
PAPER_SECTION_3 = (
    "Note that, since we normalize Wu+b, the bias b can be ignored since its effect will "
    "be canceled by the subsequent mean subtraction (the role of the bias is subsumed by "
    "\u03b2 in Alg. 1). Thus, z = g(Wu + b) is replaced with z = g(BN(Wu))."
)

#: The reader's question, in their words.
QUESTION = (
    "What's the point of having b anyway? Later in the paper, it says that b is removed "
    "during batch normalization, so what's the aim of the math shown in this paragraph, "
    "and how is this math different from the one that we do during actual batch "
    "normalization?"
)

#: The answer the rest of the report backs up, claim by claim.
SHORT_ANSWER = (
    "The paragraph of section 2 is not a layer anyone should build: it is the paper's "
    "argument for making the normalization part of what the gradient sees. If the mean "
    "is recomputed after each step but the step treats it as a constant, the step moves "
    "b, the new mean absorbs the move, the output and the loss stay the same, and the same "
    "step repeats: b drifts without bound while nothing is learned. Batch normalization "
    "differentiates through the batch mean and variance instead. Then the gradient with "
    "respect to b is exactly zero, b never moves, and it can be dropped (\u03b2 takes over "
    "its role). The two passages are one fact seen from two sides: the mean subtraction "
    "removes b."
)

#: The accepted answer's first claim, in its words.
ANSWER_CLAIM_1 = (
    "Instead of normalizing by the mean of activations in a single batch, they normalize "
    "with respect to the whole training data. The way they achieve this is by using moving "
    "averages that get updated for each mini-batch during training."
)

#: The accepted answer's second claim, in its words.
ANSWER_CLAIM_2 = (
    "The reason why the bias term becomes redundant is due to learned scale and shift "
    "variables \u03b3 and \u03b2. Without these, the normalization would squash everything "
    "which could limit what a non-linearity activation function can represent."
)

#: The contrast the reader asked about, stated plainly.
TRAINING_VS_INFERENCE = (
    "The bias cancels only while the mean is computed from the batch being normalized. "
    "In training mode (batch statistics, gradient taken through them) the output does "
    "not depend on b at all: dy_i/db = 0 for every i and every \u03b5 \u2265 0, hence "
    "dL/db = 0 for any loss. In inference mode (fixed running mean and variance) the "
    "statistics no longer move with b, and dy_i/db = \u03b3/\u221a(\u03c3_R\u00b2 + "
    "\u03b5), which is not zero: at inference a bias added before the normalization "
    "shifts every output. Training with running statistics in place of batch statistics "
    "computes the normalization outside the gradient step again: the drift experiment "
    "measures what it does."
)
