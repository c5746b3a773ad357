import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy.inputs import preprocess
from sublim_toy.losses import accuracy, chunked_accuracies, imitation_loss, teacher_loss


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


RNG = np.random.default_rng(0)
STUDENT = RNG.normal(size=(4, 13)).astype(np.float32)
TEACHER = RNG.normal(size=(4, 13)).astype(np.float32)


def test_teacher_loss_is_cross_entropy_of_the_regular_logits_only():
    labels = np.array([3, 0, 9, 5])
    expected = -np.mean(np.log(_softmax(STUDENT[:, :10])[np.arange(4), labels]))
    assert float(teacher_loss(STUDENT, labels)) == pytest.approx(expected, rel=1e-5)
    changed_aux = STUDENT.copy()
    changed_aux[:, 10:] += 100.0  # aux logits are not in the teacher's loss (section 6.2)
    assert float(teacher_loss(changed_aux, labels)) == pytest.approx(expected, rel=1e-5)


def test_kl_on_aux_logits_by_hand():
    p, q = _softmax(TEACHER[:, 10:]), _softmax(STUDENT[:, 10:])
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))  # mean over the batch only
    got = imitation_loss(STUDENT, TEACHER, outputs="aux", kind="kl")
    assert float(got) == pytest.approx(expected, rel=1e-5)
    changed_regular = STUDENT.copy()
    changed_regular[:, :10] = 0.0  # an aux-only student never sees the class logits
    assert float(
        imitation_loss(changed_regular, TEACHER, outputs="aux", kind="kl")
    ) == pytest.approx(expected, rel=1e-5)


def test_kl_on_all_logits_by_hand():
    p, q = _softmax(TEACHER), _softmax(STUDENT)
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    assert float(imitation_loss(STUDENT, TEACHER, outputs="all", kind="kl")) == pytest.approx(
        expected, rel=1e-5
    )


def test_kl_gradient_is_softmax_difference_over_batch():
    grad = jax.grad(lambda z: imitation_loss(z, TEACHER, outputs="aux", kind="kl"))(STUDENT)
    expected = np.zeros_like(STUDENT)
    expected[:, 10:] = (_softmax(STUDENT[:, 10:]) - _softmax(TEACHER[:, 10:])) / 4
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_kl_is_zero_at_the_teacher_and_positive_elsewhere():
    assert float(imitation_loss(TEACHER, TEACHER, outputs="all", kind="kl")) == pytest.approx(
        0, abs=1e-6
    )
    assert float(imitation_loss(STUDENT, TEACHER, outputs="all", kind="kl")) > 0


def test_weighted_squared_error_by_hand():
    weights = np.array([0.5, 2.0, 0.0])
    expected = np.mean(np.sum(weights * (STUDENT[:, 10:] - TEACHER[:, 10:]) ** 2, axis=-1))
    got = imitation_loss(STUDENT, TEACHER, outputs="aux", kind="mse", weights=weights)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    unweighted = np.mean(np.sum((STUDENT - TEACHER) ** 2, axis=-1))
    assert float(imitation_loss(STUDENT, TEACHER, outputs="all", kind="mse")) == pytest.approx(
        unweighted, rel=1e-5
    )


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown imitation loss 'l1'"):
        imitation_loss(STUDENT, TEACHER, outputs="aux", kind="l1")


def test_accuracy_uses_regular_logits_only():
    logits = jnp.zeros((3, 13)).at[0, 2].set(1).at[1, 7].set(1).at[2, 12].set(9).at[2, 4].set(1)
    # row 2: the aux logit 12 is largest overall, but prediction reads classes 0..9 only -> 4
    assert float(accuracy(logits, jnp.array([2, 7, 4]))) == pytest.approx(1.0)
    assert float(accuracy(logits, jnp.array([2, 0, 4]))) == pytest.approx(2 / 3)


def test_temperature_divides_both_logits_before_the_softmax():
    p, q = _softmax(TEACHER[:, 10:] / 4), _softmax(STUDENT[:, 10:] / 4)
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    got = imitation_loss(STUDENT, TEACHER, outputs="aux", kind="kl", temperature=4.0)
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 32, 100])
def test_chunked_accuracies_equal_the_accuracy_of_all_images_at_once(chunk):
    # 7 leaves a last chunk of 4 images; 100 is more than there are.
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.integers(0, 256, (32, 28, 28)).astype(np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, 32).astype(np.uint8))
    weights = jnp.asarray(rng.normal(size=(784, 13)).astype(np.float32))

    def logits_of(x):
        return x @ weights, -(x @ weights)

    got = chunked_accuracies(logits_of, images, labels, chunk=chunk)
    expected = [accuracy(logits, labels) for logits in logits_of(preprocess(images))]
    assert 0 < float(expected[0]) < 1 and float(expected[0]) != float(expected[1])
    for got_one, expected_one in zip(got, expected, strict=True):
        assert float(got_one) == float(expected_one)
