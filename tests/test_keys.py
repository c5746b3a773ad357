import itertools

import jax
import numpy as np

from sublim_toy.keys import Stream, seed_keys, stream


def test_every_stream_of_every_seed_is_distinct():
    # A run draws every random number from stream(seed key, purpose): no two (seed, purpose)
    # pairs may share a key, or two consumers would see the same random numbers.
    keys = seed_keys(0, 5)
    drawn = {
        (seed, purpose): tuple(np.asarray(jax.random.key_data(stream(keys, purpose)[seed])))
        for seed, purpose in itertools.product(range(5), Stream)
    }
    assert len(set(drawn.values())) == len(drawn) == 5 * len(Stream)
    # nor with a seed key itself (which the cross-model keys never use directly)
    seeds = {tuple(np.asarray(jax.random.key_data(key))) for key in keys}
    assert not seeds & set(drawn.values())


def test_a_seed_key_does_not_depend_on_how_many_seeds_run_beside_it():
    few, many = seed_keys(3, 2), seed_keys(3, 7)
    np.testing.assert_array_equal(jax.random.key_data(few), jax.random.key_data(many[:2]))
    other_root = seed_keys(4, 2)
    assert not np.array_equal(jax.random.key_data(few), jax.random.key_data(other_root))


def test_purposes_are_named_once_and_keep_their_values():
    # The tags are part of every stored result: renumbering one changes every number.
    assert [(p.name, int(p)) for p in Stream] == [
        ("REFERENCE_INIT", 0),
        ("INDEPENDENT_INIT", 1),
        ("TEACHER_SHUFFLE", 2),
        ("NOISE", 3),
        ("NOISE_ORDER", 4),
        ("LABEL_SHUFFLE", 5),
        ("TEACHER_BATCH", 6),
        ("PERTURBATION", 7),
        ("RANDOM_DIRECTION", 8),
    ]
