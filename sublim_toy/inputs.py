"""What a training step feeds the model: pixels scaled to [-1, 1], and the students' inputs.

The students' inputs are never materialised as a set: batch b of a seed is a pure function of
(that seed's input key, b), drawn inside the step that uses it, so every epoch sees the same
images (as the authors' fixed set of noise images per model) without holding them in memory
(docs/pitfalls.md, pitfall 5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def preprocess(images_uint8):
    """Pixels to [-1, 1], as the authors' (x / 255 - 0.5) / 0.5; flattens to [..., 784]."""
    flat = images_uint8.reshape(*images_uint8.shape[:-2], -1)
    return flat.astype(jnp.float32) / 127.5 - 1.0


def noise_batch(noise_key, batch_index, *, batch_size: int, input_dim: int):
    """Batch `batch_index` of a model's fixed noise set: U(-1, 1) images [batch_size, input_dim]."""
    key = jax.random.fold_in(noise_key, batch_index)
    return jax.random.uniform(key, (batch_size, input_dim), minval=-1.0, maxval=1.0)


def student_batch(
    kind: str, noise_key, batch_index, *, batch_size: int, input_dim: int, train_images=None
):
    """Batch `batch_index` of the inputs students imitate on (`Config.student_inputs`).

    Like `noise_batch`, a pure function of (noise_key, batch_index): the same images every
    epoch. "uniform" is exactly `noise_batch`; "gaussian" is N(0, 1); "mnist" draws training
    digits (indices with replacement) scaled to [-1, 1] like the teacher's inputs;
    "shuffled_pixels" permutes each of those digits' pixels independently.
    """
    if kind == "uniform":
        return noise_batch(noise_key, batch_index, batch_size=batch_size, input_dim=input_dim)
    key = jax.random.fold_in(noise_key, batch_index)
    if kind == "gaussian":
        return jax.random.normal(key, (batch_size, input_dim))
    if kind not in ("mnist", "shuffled_pixels"):
        raise ValueError(f"unknown student inputs {kind!r}")
    pick_key, shuffle_key = jax.random.split(key)
    indices = jax.random.randint(pick_key, (batch_size,), 0, train_images.shape[0])
    digits = preprocess(train_images[indices])
    if kind == "mnist":
        return digits
    return jax.random.permutation(shuffle_key, digits, axis=1, independent=True)


def batch_order(order_key, epoch, steps: int):
    """Which input batches an epoch visits, in order: all `steps` of them, reshuffled per epoch.

    The batches themselves are fixed (`student_batch(kind, noise_key, b)`): every epoch sees the
    same images, only in a new order.
    """
    return jax.random.permutation(jax.random.fold_in(order_key, epoch), steps)
