import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy.inputs import (
    DOMAIN,
    batch_order,
    counter_bits,
    noise_batch,
    pool_batch_order,
    preprocess,
    student_batch,
    uniform_from_bits,
)


def test_preprocess_maps_pixels_to_minus_one_one_as_the_authors():
    images = np.array([[[0, 255], [51, 204]]], dtype=np.uint8)
    scaled = preprocess(images)
    assert scaled.shape == (1, 4)
    np.testing.assert_allclose(
        scaled, [[-1.0, 1.0, (51 / 255 - 0.5) / 0.5, (204 / 255 - 0.5) / 0.5]], rtol=1e-6
    )


def test_noise_batch_is_a_pure_function_of_key_and_index():
    key = jax.random.key(7)
    first = noise_batch(key, 3, batch_size=512, input_dim=784)
    again = noise_batch(key, 3, batch_size=512, input_dim=784)
    other = noise_batch(key, 4, batch_size=512, input_dim=784)
    np.testing.assert_array_equal(first, again)  # the same images every epoch
    assert not np.allclose(first, other)
    assert first.shape == (512, 784)
    assert -1.0 <= float(first.min()) and float(first.max()) < 1.0
    assert abs(float(first.mean())) < 0.01
    assert float(first.var()) == pytest.approx(1 / 3, rel=0.02)  # U(-1, 1)


def test_student_batches_of_every_kind_are_fixed_per_index(mnist):
    key = jax.random.key(3)
    images = jax.numpy.asarray(mnist.train_images[:500])
    batches = {}
    for kind in ("uniform", "gaussian", "mnist", "shuffled_pixels"):

        def draw(index, kind=kind):
            return np.asarray(
                student_batch(kind, key, index, batch_size=64, input_dim=784, train_images=images)
            )

        batches[kind] = draw(2)
        np.testing.assert_array_equal(batches[kind], draw(2))
        assert not np.array_equal(batches[kind], draw(3))
        assert batches[kind].shape == (64, 784)
    np.testing.assert_array_equal(
        batches["uniform"], noise_batch(key, 2, batch_size=64, input_dim=784)
    )
    assert abs(batches["gaussian"].std() - 1) < 0.02
    digits = np.asarray(preprocess(images))
    for row in batches["mnist"]:  # every row is one of the training digits, scaled like them
        assert np.any(np.all(digits == row, axis=1))
    # shuffled pixels: the same digits (same key), each with its own pixel order
    np.testing.assert_array_equal(
        np.sort(batches["shuffled_pixels"], 1), np.sort(batches["mnist"], 1)
    )
    assert not np.array_equal(batches["shuffled_pixels"], batches["mnist"])


def test_every_epoch_visits_each_batch_once_in_a_new_order():
    order_key = jax.random.key(6)
    orders = [batch_order(order_key, epoch, 58).tolist() for epoch in range(3)]
    assert all(sorted(order) == list(range(58)) for order in orders)
    assert len({tuple(order) for order in orders}) == 3


def _run_order(order_key, epochs, steps, pool_batches):
    return np.stack(
        [np.asarray(pool_batch_order(order_key, e, steps, pool_batches)) for e in range(epochs)]
    )


def test_a_pool_of_one_epoch_is_the_epoch_order_itself():
    # the default (noise_pool=0: one epoch's batches) must visit exactly the batches it did
    # before the pool existed, in the same order
    order_key = jax.random.key(6)
    for epoch in range(3):
        np.testing.assert_array_equal(
            pool_batch_order(order_key, epoch, 58, 58), batch_order(order_key, epoch, 58)
        )


@pytest.mark.parametrize("pool_batches", [1, 4, 7, 58, 100, 290])
def test_a_pool_is_visited_pass_after_pass_each_pass_in_a_new_order(pool_batches):
    steps, epochs = 58, 5
    run = _run_order(jax.random.key(6), epochs, steps, pool_batches).ravel()
    assert run.shape == (epochs * steps,)
    assert set(run.tolist()) <= set(range(pool_batches))  # only the pool's batches
    full_passes = len(run) // pool_batches
    passes = run[: full_passes * pool_batches].reshape(full_passes, pool_batches)
    for one_pass in passes:  # each pass sees every batch of the pool exactly once
        assert sorted(one_pass.tolist()) == list(range(pool_batches))
    if pool_batches >= 4 and full_passes >= 2:  # reshuffled: not one order over and over
        assert len({tuple(p) for p in passes.tolist()}) > 1
    # the last, partial pass repeats no batch either
    rest = run[full_passes * pool_batches :]
    assert len(set(rest.tolist())) == len(rest)


def test_fresh_noise_never_repeats_a_batch_across_epochs():
    # a pool of one batch per step of the run: every step reads a batch no other step reads
    run = _run_order(jax.random.key(6), 5, 58, 5 * 58)
    assert len(set(run.ravel().tolist())) == 5 * 58


# ---- the counter-based noise: statistics and structure ----------------------------------------
# Thresholds are 6 sigma (or p < 1e-6) on fixed keys: a correct generator passes
# reproducibly, and each test fails on a generator that is broken in the way it names (a hash
# with too few rounds, a key XOR-ed into the counter, one that ignores the batch index, ...).

B, D = 1024, 784
SIGMAS = 6.0


def _key(i: int = 0):
    """Seed i's noise key as a run derives it."""
    from sublim_toy.keys import Stream, seed_keys, stream

    return stream(seed_keys(0, i + 1), Stream.NOISE)[i]


_bits = jax.jit(counter_bits, static_argnums=2)


def _raw_bits(key_data, b, shape=(B, D)) -> np.ndarray:
    key = jax.random.wrap_key_data(np.asarray(key_data, np.uint32))
    return np.asarray(_bits(key, b, shape))


def _uniform(key, b, shape=(B, D)) -> np.ndarray:
    return np.asarray(uniform_from_bits(_bits(key, b, shape)))


def _assert_uncorrelated(a, c, what):
    r = np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(c).astype(np.float64))[0, 1]
    assert abs(r) < SIGMAS / np.sqrt(np.size(a)), f"{what}: correlation {r:.2e}"


def _assert_bits_independent(u, v, what):
    """Each of the 32 bits balanced, and all 32 x 32 bit pairs of u and v uncorrelated."""
    shifts = np.arange(32, dtype=np.uint32)
    su = ((np.ravel(u)[:, None] >> shifts) & 1).astype(np.float32) * 2 - 1
    sv = ((np.ravel(v)[:, None] >> shifts) & 1).astype(np.float32) * 2 - 1
    limit = SIGMAS / np.sqrt(len(su))
    assert np.abs(su.mean(axis=0)).max() < limit, f"{what}: a bit is unbalanced"
    cross = (su.T.astype(np.float64) @ sv) / len(su)
    assert np.abs(cross).max() < limit, f"{what}: bits correlated {np.abs(cross).max():.2e}"


def _assert_no_overlap(u, v, what):
    """Two independent streams of n 32-bit values share about n^2 / 2^32 values by chance;
    a shifted or permuted copy of one another shares about n."""
    n = np.size(u)
    su, sv = np.sort(np.ravel(u)), np.sort(np.ravel(v))
    at = np.minimum(np.searchsorted(su, sv), su.size - 1)
    shared, expected = int((su[at] == sv).sum()), n * n / 2**32
    assert shared < expected + SIGMAS * np.sqrt(expected) + 5, f"{what}: {shared} shared"


def test_counter_bits_are_jax_threefry_2x32_of_the_counters():
    from jax.extend.random import threefry_2x32

    n, key = 5000, _key()
    elements = jnp.arange(n, dtype=jnp.uint32) | jnp.uint32(DOMAIN)
    counters = jnp.stack([elements, jnp.full(n, 11, jnp.uint32)])
    y0, y1 = threefry_2x32(jax.random.key_data(key), counters)
    ours = np.asarray(counter_bits(key, 11, (n,)))
    np.testing.assert_array_equal(ours, np.asarray(y0 ^ y1))
    # element f is the same draw in any shape
    np.testing.assert_array_equal(np.asarray(counter_bits(key, 11, (50, 100))).ravel(), ours)


def test_noise_values_lie_on_the_mantissa_grid_with_uniform_moments():
    x = np.concatenate([_uniform(_key(), b).ravel() for b in range(4)]).astype(np.float64)
    k = (x + 1.0) * 2.0**22  # x = k / 2^22 - 1
    assert np.array_equal(k, np.round(k)) and k.min() >= 0 and k.max() < 2**23
    n = x.size  # U(-1, 1): mean 0, E x^2 = 1/3, E x^4 = 1/5
    assert abs(x.mean()) < SIGMAS * np.sqrt(1 / 3 / n)
    assert abs((x**2).mean() - 1 / 3) < SIGMAS * np.sqrt(4 / 45 / n)
    assert abs((x**4).mean() - 1 / 5) < SIGMAS * np.sqrt((1 / 9 - 1 / 25) / n)
    # every float of the grid is reachable: the map from bits is onto it
    grid = np.arange(2**23, dtype=np.uint32)
    floats = np.asarray(uniform_from_bits(jnp.asarray(grid << 9)))
    np.testing.assert_array_equal(floats.astype(np.float64), grid / 2.0**22 - 1)


def test_noise_passes_chi_square_in_both_tails_and_kolmogorov_smirnov():
    from scipy import stats

    x = _uniform(_key(), 1).ravel()
    counts = np.bincount(((x + 1) * 512).astype(np.int64), minlength=1024)
    assert 1e-6 < stats.chisquare(counts).pvalue < 1 - 1e-6  # neither lumpy nor too regular
    assert stats.kstest(x, stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-6


def test_noise_is_uncorrelated_across_pixels_batches_and_seeds():
    key = _key()
    x = _uniform(key, 4)
    _assert_uncorrelated(x[:, :-1], x[:, 1:], "neighbouring pixels")
    _assert_uncorrelated(x[:, :-28], x[:, 28:], "the pixel below")
    _assert_uncorrelated(x[:-1], x[1:], "the same pixel of the next image")
    flat = x.ravel()
    for lag in (2, 64, 1 << 16):
        _assert_uncorrelated(flat[:-lag], flat[lag:], f"lag {lag}")
    for b in (0, 57):
        _assert_uncorrelated(_uniform(key, b), _uniform(key, b + 1), f"batch {b} and {b + 1}")
    _assert_uncorrelated(x, _uniform(_key(1), 4), "seed 0 and seed 1")
    u = np.asarray(_bits(key, 5, (B, D)))
    _assert_bits_independent(u.ravel()[:-1], u.ravel()[1:], "bits of neighbouring elements")
    _assert_bits_independent(u, np.asarray(_bits(key, 6, (B, D))), "bits of consecutive batches")


def test_no_stream_is_a_shifted_copy_of_another():
    # where designs that add or XOR the key into the counter break: keys one bit apart
    base = np.array([0x12345678, 0x9ABCDEF0], np.uint32)
    u = _raw_bits(base, 0)
    for other in (base + np.uint32([1, 0]), base ^ np.uint32([0x100, 0]), base[::-1].copy()):
        v = _raw_bits(other, 0)
        _assert_bits_independent(u, v, f"keys {base} and {other}")
        _assert_no_overlap(u, v, f"keys {base} and {other}")
    _assert_no_overlap(u, _raw_bits(base, 1), "batches 0 and 1")
    _assert_no_overlap(u, _raw_bits(base, 57), "batches 0 and 57")


def test_noise_is_the_same_per_seed_under_vmap_and_in_every_epoch():
    keys = jnp.stack([_key(i) for i in range(4)])
    batched = jax.jit(jax.vmap(lambda k: noise_batch(k, 5, batch_size=64, input_dim=D)))(keys)
    for i in range(4):
        np.testing.assert_array_equal(batched[i], _uniform(keys[i], 5, (64, D)))
    # a scan that revisits batch 7, as a later epoch does
    revisits = jax.jit(
        lambda k: jax.lax.scan(
            lambda c, b: (c, noise_batch(k, b, batch_size=8, input_dim=D)), 0, jnp.array([7, 3, 7])
        )[1]
    )(keys[0])
    np.testing.assert_array_equal(revisits[0], revisits[2])
    np.testing.assert_array_equal(revisits[0], _uniform(keys[0], 7, (8, D)))
