import jax
import numpy as np
import pytest

from sublim_toy.inputs import batch_order, noise_batch, preprocess, student_batch


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
