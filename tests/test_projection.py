"""The causal test's projection (projection.py): what it removes, and the control's direction."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu
import pytest
from conftest import write_idx

from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.experiment import run_experiment
from sublim_toy.keys import seed_keys
from sublim_toy.model import network_for
from sublim_toy.projection import fixed_directions, project_out, random_direction


def _tree(key, network):
    return network.init(key)


@pytest.mark.parametrize("seed", range(5))
def test_projection_removes_the_component_to_float32_rounding(seed):
    network = network_for(Config(hidden=(256, 256)))  # the paper's size: 270 093 numbers
    keys = jax.random.split(jax.random.key(seed), 3)
    update, direction = _tree(keys[0], network), _tree(keys[1], network)
    # an update with a large component along d, as the aux-only student's has
    update = otu.tree_add_scale(update, 3.0, direction)
    projected, removed = project_out(update, direction)
    dot = float(otu.tree_vdot(projected, direction))
    norms = float(otu.tree_norm(projected) * otu.tree_norm(direction))
    assert abs(dot) <= 1e-6 * norms
    cos_before = float(otu.tree_vdot(update, direction)) / float(
        otu.tree_norm(update) * otu.tree_norm(direction)
    )
    assert float(removed) == pytest.approx(abs(cos_before), rel=1e-5)
    # only that component goes: what is left is the update minus a multiple of d
    difference = jax.tree.map(jnp.subtract, update, projected)
    cos_difference = float(otu.tree_vdot(difference, direction)) / float(
        otu.tree_norm(difference) * otu.tree_norm(direction)
    )
    assert abs(cos_difference) == pytest.approx(1.0, abs=1e-5)
    # the update's norm squared splits into the kept and removed parts
    kept = float(otu.tree_norm(projected)) ** 2
    total = float(otu.tree_norm(update)) ** 2
    assert kept == pytest.approx(total * (1 - cos_before**2), rel=1e-4)


def test_a_zero_direction_removes_nothing():
    update = {"w": jnp.array([1.0, -2.0, 3.0])}
    projected, removed = project_out(update, {"w": jnp.zeros(3)})
    np.testing.assert_array_equal(projected["w"], update["w"])
    assert float(removed) == 0.0


def test_random_direction_has_the_norm_asked_and_differs_per_key():
    like = _tree(jax.random.key(0), network_for(Config(hidden=(32,))))
    one = random_direction(jax.random.key(1), like, 2.5)
    other = random_direction(jax.random.key(2), like, 2.5)
    assert float(otu.tree_norm(one)) == pytest.approx(2.5, rel=1e-6)
    assert abs(float(otu.tree_vdot(one, other))) < 0.05 * 2.5**2  # nearly orthogonal
    # every leaf moves, biases included
    assert all(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(one))


def test_the_controls_direction_is_per_seed_of_the_teacher_moves_norm():
    config = Config(seeds=3, hidden=(32,), project_out="random")
    keys = seed_keys(0, 3)
    network = network_for(config)
    moves = jax.vmap(network.init)(jax.random.split(jax.random.key(5), 3))
    directions = fixed_directions(config, keys, moves)
    for seed in range(3):
        norm = float(otu.tree_norm(jax.tree.map(lambda leaf, s=seed: leaf[s], directions)))
        move = float(otu.tree_norm(jax.tree.map(lambda leaf, s=seed: leaf[s], moves)))
        assert norm == pytest.approx(move, rel=1e-5)
    again = fixed_directions(config, keys, moves)  # drawn from the keys: the same every time
    for a, b in zip(jax.tree.leaves(directions), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jax.tree.leaves(directions)[0][0], jax.tree.leaves(directions)[0][1])
    assert fixed_directions(config.replace(project_out="teacher_move"), keys, moves) is moves
    assert fixed_directions(config.replace(project_out="teacher_gradient"), keys, moves) is None


# Two steps per epoch on a tiny data set (64 random training digits): the assertions below hold
# for any data, and the run costs compiles, not training.
TINY = Config(
    seeds=2,
    hidden=(32,),
    teacher_epochs=1,
    student_epochs=1,
    batch_size=32,
    noise_images=64,
    probe_every=0,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The data set of conftest's tiny_idx_dir, built once for the module."""
    directory = tmp_path_factory.mktemp("tiny-idx")
    rng = np.random.default_rng(0)
    for stem, array in {
        "train-images-idx3-ubyte": rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(64, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (32, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(32, dtype=np.uint8) % 10,
    }.items():
        write_idx(directory / stem, array)
    return load_dataset(f"idx:{directory}")


@pytest.fixture(scope="module")
def unprojected(tiny):
    return run_experiment(TINY.replace(log_every=1), tiny)


@pytest.mark.parametrize("project_out", ["teacher_move", "random", "teacher_gradient"])
def test_projected_students_move_orthogonally_and_the_others_as_before(
    tiny, unprojected, project_out
):
    plain = unprojected
    projected = run_experiment(TINY.replace(log_every=1, project_out=project_out), tiny)
    # cross-model students are never projected: identical to the unprojected run
    for name in ("cross_aux", "cross_all"):
        assert projected["accuracy"][name] == plain["accuracy"][name]
        assert projected["updates"][name]["loss"] == plain["updates"][name]["loss"]
        assert projected["updates"][name]["removed_mean"] == [0.0, 0.0]
    for name in ("student_aux", "student_all"):
        updates = projected["updates"][name]
        removed = np.asarray(updates["removed"])
        assert removed.shape == (2, 2) and np.all(removed > 0)
        if project_out == "teacher_move":
            # every update orthogonal to theta_T - theta_T(0): so is the whole displacement
            np.testing.assert_allclose(updates["cos"], 0.0, atol=1e-5)
            np.testing.assert_allclose(updates["cos_end"], 0.0, atol=1e-5)
        else:  # another direction: the update keeps some of the teacher's
            assert np.all(np.abs(updates["cos"]) > 1e-4)
        # the first step's loss is measured before any update: the same as unprojected
        np.testing.assert_allclose(
            np.asarray(updates["loss"])[:, 0], np.asarray(plain["updates"][name]["loss"])[:, 0]
        )
