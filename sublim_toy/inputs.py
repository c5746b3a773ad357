"""What a training step feeds the model: pixels scaled to [-1, 1], and the students' inputs.

The students' inputs are never materialised as a set: batch b of a seed is a pure function of
(that seed's input key, b), drawn inside the step that uses it, so every epoch sees the same
images (as the authors' fixed set of noise images per model) without holding them in memory
(docs/pitfalls.md, pitfall 5). How many distinct batches there are (`Config.noise_pool`) is
apart from how many steps an epoch takes: `pool_batch_order` says which batch each step reads.

The uniform noise comes from Threefry-2x32 (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC 2011; 20 rounds, JAX's own generator, bit for bit) used as a counter-based
generator: element f of batch b is one block encrypted under the seed's key,
Threefry_key(2**31 | f, b). It is the same function `jax.random` applies to its counters, but
written here in plain uint32 arithmetic that XLA fuses into the step, where `jax.random.uniform`
costs several times more (BENCHMARKS.md times both).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Threefry-2x32's rotation constants and key-schedule parity (Random123; as in JAX)
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
PARITY = 0x1BD11BDA
# Set in every counter's first word: `jax.random` itself encrypts counters whose first word is
# below 2**31 (fold_in encrypts (0, d); random_bits counts from 0), so ours never meet them.
DOMAIN = 0x80000000


def _rotate_left(x, r: int):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry_2x32(k0, k1, x0, x1):
    """Threefry-2x32-20 of the counter (x0, x1) under the key (k0, k1): a keyed bijection of
    64-bit blocks (every round and key injection is invertible), so distinct counters never
    collide, and the key enters every fourth round, never only once into the counter (which
    would make two keys' streams shifted copies of each other)."""
    schedule = (k0, k1, k0 ^ k1 ^ jnp.uint32(PARITY))
    x0, x1 = x0 + schedule[0], x1 + schedule[1]
    for r in range(20):
        x0 = x0 + x1
        x1 = _rotate_left(x1, ROTATIONS[r % 8]) ^ x0
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = x0 + schedule[s % 3]
            x1 = x1 + schedule[(s + 1) % 3] + jnp.uint32(s)
    return x0, x1


def uniform_from_bits(bits):
    """uint32 -> float32 k / 2**22 - 1 in [-1, 1), k = bits >> 9: 23 random mantissa bits."""
    one_to_two = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32)
    return one_to_two * 2.0 - 3.0  # exact: 2 * [1, 2) lies on the 2**-22 grid of [2, 4)


def counter_bits(key, batch_index, shape: tuple[int, ...]):
    """uint32 [shape]: element f (row-major) of batch `batch_index` under a typed JAX key,
    y0 ^ y1 of Threefry_key(2**31 | f, batch_index)."""
    k0, k1 = jax.random.key_data(key)
    size = math.prod(shape)
    if size > 2**31:
        raise ValueError(f"a batch of {size} elements is more than the 2**31 counters")
    element = jax.lax.iota(jnp.uint32, size).reshape(shape) | jnp.uint32(DOMAIN)
    batch = jnp.broadcast_to(jnp.asarray(batch_index).astype(jnp.uint32), shape)
    y0, y1 = threefry_2x32(k0, k1, element, batch)
    return y0 ^ y1


def preprocess(images_uint8):
    """Pixels to [-1, 1], as the authors' (x / 255 - 0.5) / 0.5; flattens to [..., 784]."""
    flat = images_uint8.reshape(*images_uint8.shape[:-2], -1)
    return flat.astype(jnp.float32) / 127.5 - 1.0


def noise_batch(noise_key, batch_index, *, batch_size: int, input_dim: int):
    """Batch `batch_index` of a model's fixed noise set: U(-1, 1) images [batch_size, input_dim]
    (on the 2**-22 grid), from `counter_bits`."""
    return uniform_from_bits(counter_bits(noise_key, batch_index, (batch_size, input_dim)))


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


def pool_batch_order(order_key, epoch, steps: int, pool_batches: int):
    """Which of the pool's `pool_batches` fixed batches each of an epoch's `steps` steps reads
    (`Config.noise_pool`): the run visits the pool pass after pass, pass p in the order
    `batch_order(order_key, p, pool_batches)`. With a pool of one epoch's batches (the default)
    a pass is an epoch and this is `batch_order` itself; a pool of one batch per step of the run
    is fresh noise (one pass: no batch twice).
    """
    run_step = epoch * steps + jnp.arange(steps)
    passes, slots = run_step // pool_batches, run_step % pool_batches
    return jax.vmap(lambda p, slot: batch_order(order_key, p, pool_batches)[slot])(passes, slots)
