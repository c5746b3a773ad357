"""The deep linear toy in closed form: what a frozen-head student recovers of its teacher.

Not in the paper: a solvable case of its MNIST setting (section 6.2) that shows Theorem 1's
mechanism (section 6.1, Appendix C; proofs/theorem1.md, "Intuition") through a whole run.

The network is x -> h = x K + b (one hidden layer of k units, identity activation) ->
z = h H + c, with 10 regular and m auxiliary outputs. Write W = [K; b], the hidden layer as
one [d + 1, k] matrix acting on (x, 1). The student keeps its head (H, c) frozen and trains W
by gradient descent to imitate the teacher's m auxiliary logits on noise. Every gradient of W
is X^T R B^T (X the inputs with a column of ones, R the loss's gradient in the auxiliary
logits, B = H[:, 10:] the head's auxiliary columns), so the student moves only inside
W0 + {Y B^T}; with KL the rows of R sum to zero (a softmax ignores a shift shared by all its
logits), R = R C with C = I - 11^T/m, and the span shrinks to that of B C. Its limit is the
point of that affine subspace whose auxiliary logits equal the teacher's on every input
(modulo that shift with KL), which is also the one closest to W0 (in Frobenius norm):

  W_limit = W0 + (T - W0 Bc) Bc^+,  Bc = B (squared error) or B C (KL),
  T = W_T Bc_T + e (c_T - c) (times C with KL),

T the teacher's auxiliary pre-logits as the student's head must produce them (Bc_T the
teacher's auxiliary columns, centred alike; c, c_T the auxiliary output biases, whose
difference the bias row e absorbs; ^+ the pseudo-inverse). When the student shares the
teacher's init, the teacher has never moved its auxiliary columns or biases (its loss reads
the regular logits only: B_T = B, c_T = c), and this is

  W_limit = W0 + (W_T - W0) P,  P = Bc Bc^+,

P the orthogonal projection of R^k onto the span of the auxiliary columns: the student ends at
the teacher's change of the hidden layer (bias row included) projected onto an m-dimensional
subspace of the k hidden units (m - 1 dimensional with KL). How much of the change that is
depends on the head. Draw the head with i.i.d. entries symmetric about zero (every init
scheme here), independently of the teacher's change (true at a shared init: the teacher's
gradients reach W through the regular columns only): flipping the sign of a row of B flips
the sign of the off-diagonal entries of P in that row and column, permuting rows permutes
P's diagonal, and trace P = rank Bc, so E[P] = (rank Bc / k) I. The student then recovers
on average exactly m/k of the squared norm of the teacher's change ((m - 1)/k with KL; all
of it once the span is all of R^k).

What the closed form assumes:
- the inputs' second moment E[(x, 1)^T (x, 1)] is positive definite (U(-1, 1) noise: diag(1/3,
  ..., 1/3, 1)), so matching the logits on the inputs means matching them as linear maps;
- the teacher's auxiliary logits are reachable through the student's head: always with a
  shared head (W_T itself reaches them), otherwise when Bc has rank m (m - 1 with KL, as its
  columns then sum to zero), which needs m <= k;
- an optimiser whose updates stay in the span of the gradients (gradient descent, SGD,
  momentum) and converges; Adam rescales each coordinate, leaves the span, and ends elsewhere
  on the set of exact imitators (tests/test_linear_toy.py checks that it does).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from sublim_toy.config import IMITATION_LOSSES, N_CLASSES
from sublim_toy.inputs import noise_batch
from sublim_toy.losses import imitation_loss
from sublim_toy.model import Network, Params, layer_index


def check_network(network: Network) -> None:
    """The closed form covers one hidden layer with the identity activation."""
    if network.activation != "identity" or len(network.sizes) != 3:
        raise ValueError(
            "the linear toy needs one hidden layer and the identity activation, got "
            f"sizes {network.sizes} with {network.activation!r}"
        )


def _check_kind(kind: str) -> None:
    if kind not in IMITATION_LOSSES:
        raise ValueError(f"unknown imitation loss {kind!r}: choose {', '.join(IMITATION_LOSSES)}")


def _head(params: Params) -> dict:
    layers = params["layers"]
    if len(layers) != 2:
        raise ValueError(f"the linear toy has two layers (hidden, head), got {len(layers)}")
    return layers[1]


def aux_columns(params: Params, kind: str):
    """Bc [k, m]: the head's auxiliary columns B, centred across the m outputs for KL (B C)."""
    _check_kind(kind)
    columns_KxM = _head(params)["kernel"][...][:, N_CLASSES:]
    if kind == "kl":
        columns_KxM = columns_KxM - columns_KxM.mean(axis=1, keepdims=True)
    return columns_KxM


def projection(params: Params, kind: str):
    """P [k, k] = Bc Bc^+: the orthogonal projection of R^k onto the span of the head's
    auxiliary columns as the loss sees them (module docstring)."""
    columns_KxM = aux_columns(params, kind)
    return columns_KxM @ jnp.linalg.pinv(columns_KxM)


def hidden_layer(params: Params):
    """W = [K; b] [d + 1, k]: the hidden layer as one matrix acting on (x, 1)."""
    layer = params["layers"][0]
    return jnp.concatenate([layer["kernel"][...], layer["bias"][...][None]], axis=0)


def with_hidden_layer(params: Params, hidden_D1xK) -> Params:
    """`params` with its hidden layer replaced by W = [K; b] [d + 1, k]."""
    replacement = {"kernel": hidden_D1xK[:-1], "bias": hidden_D1xK[-1]}
    # a leaf's path is ("layers", layer, "kernel" or "bias", value)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: replacement[path[2].key] if layer_index(path) == 0 else leaf, params
    )


def limit(student_init: Params, teacher: Params, kind: str) -> Params:
    """Where gradient descent on the hidden layer ends: the student's parameters at the limit.

    W0 + (T - W0 Bc) Bc^+ (module docstring), the head left at `student_init`'s. T holds the
    teacher's auxiliary pre-logits as the student's head must produce them, its bias row
    carrying any difference of the auxiliary output biases. At a shared init this is
    W0 + (W_T - W0) P. Assumes what the module docstring lists: the identity activation
    (`check_network`), logits the student's head can reach, an optimiser like SGD.
    """
    student_columns, teacher_columns = aux_columns(student_init, kind), aux_columns(teacher, kind)
    start_D1xK = hidden_layer(student_init)
    target_D1xM = hidden_layer(teacher) @ teacher_columns
    bias_gap_M = (
        _head(teacher)["bias"][...][N_CLASSES:] - _head(student_init)["bias"][...][N_CLASSES:]
    )
    if kind == "kl":  # a shift shared by every auxiliary logit is invisible to the softmax
        bias_gap_M = bias_gap_M - bias_gap_M.mean()
    target_D1xM = target_D1xM.at[-1].add(bias_gap_M)
    inverse_MxK = jnp.linalg.pinv(student_columns)
    moved_D1xK = start_D1xK + (target_D1xM - start_D1xK @ student_columns) @ inverse_MxK
    return with_hidden_layer(student_init, moved_D1xK)


def hidden_move(start: Params, end: Params):
    """W(end) - W(start) [d + 1, k]: a move of the hidden layer, bias row included."""
    return hidden_layer(end) - hidden_layer(start)


def recovered_fraction(init: Params, teacher: Params, kind: str):
    """|dW P|^2 / |dW|^2, dW the teacher's move of the hidden layer from the shared `init`: the
    share of its squared norm that the student's limit recovers. As P is an orthogonal
    projection it is also (student's move . teacher's move) / |teacher's move|^2 and the
    squared cosine of the two moves. A scalar array, so it vmaps over heads."""
    move_D1xK = hidden_move(init, teacher)
    projected_D1xK = move_D1xK @ projection(init, kind)
    return jnp.sum(projected_D1xK**2) / jnp.sum(move_D1xK**2)


def expected_fraction(aux: int, hidden_width: int, kind: str) -> float:
    """The mean of `recovered_fraction` over heads with i.i.d. entries symmetric about zero,
    drawn independently of the teacher's move (module docstring): m/k for squared error,
    (m - 1)/k for KL, capped at 1 (the span is then all of R^k)."""
    _check_kind(kind)
    span = aux - 1 if kind == "kl" else aux
    return min(span, hidden_width) / hidden_width


def make_imitate(
    network: Network, optimizer: optax.GradientTransformation, *, kind: str, batch_size: int
) -> Callable:
    """imitate(student, teacher, noise_key, steps) -> student: `steps` updates of the hidden
    layer only (the head frozen), each on a fresh U(-1, 1) batch `noise_batch(noise_key, step)`,
    minimising `imitation_loss` on the auxiliary logits. Jitted; `steps` is static. The closed
    form (`limit`) is its end point for `optax.sgd`, not for `optax.adam`."""
    check_network(network)
    _check_kind(kind)

    def loss_fn(hidden_D1xK, student, inputs_BxD, teacher_logits_BxK):
        logits = network.apply(with_hidden_layer(student, hidden_D1xK), inputs_BxD)
        return imitation_loss(logits, teacher_logits_BxK, outputs="aux", kind=kind)

    def imitate(student, teacher, noise_key, steps):
        def step(carry, batch_index):
            hidden_D1xK, opt_state = carry
            inputs_BxD = noise_batch(
                noise_key, batch_index, batch_size=batch_size, input_dim=network.sizes[0]
            )
            targets = network.apply(teacher, inputs_BxD)
            grads = jax.grad(loss_fn)(hidden_D1xK, student, inputs_BxD, targets)
            updates, opt_state = optimizer.update(grads, opt_state, hidden_D1xK)
            return (optax.apply_updates(hidden_D1xK, updates), opt_state), None

        start_D1xK = hidden_layer(student)
        carry = (start_D1xK, optimizer.init(start_D1xK))
        (hidden_D1xK, _), _ = jax.lax.scan(step, carry, jnp.arange(steps))
        return with_hidden_layer(student, hidden_D1xK)

    return jax.jit(imitate, static_argnames="steps")
