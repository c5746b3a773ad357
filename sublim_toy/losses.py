"""The losses of section 6: the teacher's cross-entropy and the student's imitation loss.

Each is the mean over a batch of one model's examples. Under `vmap` over seeds every model
keeps its own mean, so nothing is divided by the number of models (docs/pitfalls.md, pitfall 2) and
the gradients are those Theorem 1 talks about.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sublim_toy.inputs import preprocess
from sublim_toy.model import select_outputs


def teacher_loss(logits_BxK, labels_B):
    """Cross-entropy of the 10 regular logits against digit labels; aux logits are ignored."""
    regular = select_outputs(logits_BxK, "regular")
    return optax.softmax_cross_entropy_with_integer_labels(regular, labels_B).mean()


def imitation_loss(
    student_logits_BxK,
    teacher_logits_BxK,
    *,
    outputs: str,
    kind: str,
    weights=None,
    temperature: float = 1.0,
):
    """L_S of Theorem 1 on the chosen outputs ("aux" or "all"), averaged over the batch.

    kind="kl": KL(softmax(y) || softmax(z)), the paper's loss; it differs from the softmax
    cross-entropy -sum softmax(y) log softmax(z) by the entropy of softmax(y), a term free of
    the student, so both have the same gradients.
    With a temperature T (kl only) both softmaxes read logits / T.
    kind="mse": sum_i w_i (z_i - y_i)^2 with weights w (default 1).
    The teacher's logits y are left differentiable: the theorem check needs d^2 L_S / dy dz.
    """
    z = select_outputs(student_logits_BxK, outputs)
    y = select_outputs(teacher_logits_BxK, outputs)
    if kind == "kl":
        per_example = optax.losses.kl_divergence_with_log_targets(
            jax.nn.log_softmax(z / temperature), jax.nn.log_softmax(y / temperature)
        )
    elif kind == "mse":
        w = jnp.ones(z.shape[-1], z.dtype) if weights is None else jnp.asarray(weights, z.dtype)
        per_example = ((z - y) ** 2) @ w
    else:
        raise ValueError(f"unknown imitation loss {kind!r}: choose kl or mse")
    return per_example.mean()


# Test images an evaluation reads at once. All 10 000 at once, under vmap over seeds, make the
# largest temporaries of a run (a JVP's activations, hundreds of MB at 8 seeds) and would set
# its peak memory; chunks of 1000 need under a quarter of that (tests/test_first_order.py).
EVAL_CHUNK = 1000


def accuracy(logits_BxK, labels_B):
    """Fraction of examples whose largest regular logit is the label (section 6.2's metric)."""
    predicted = jnp.argmax(select_outputs(logits_BxK, "regular"), axis=-1)
    return jnp.mean(predicted == labels_B)


def chunked_accuracies(logits_of, images_uint8, labels_N, chunk: int = EVAL_CHUNK) -> tuple:
    """(`accuracy` of each logits array in the tuple `logits_of(x)` returns, ...) over all the
    images, `chunk` images at a time (`jax.lax.map`; a last smaller chunk where `chunk` does
    not divide N). `logits_of` maps inputs [B, D] scaled to [-1, 1] to a tuple of [B, K]."""

    def hits(image_and_label):  # one image; lax.map vmaps it over each chunk
        image, label = image_and_label
        return tuple(accuracy(logits, label) for logits in logits_of(preprocess(image)))

    per_image = jax.lax.map(hits, (images_uint8, labels_N), batch_size=min(chunk, len(labels_N)))
    return tuple(correct.mean() for correct in per_image)
