import itertools
import json

import jax
import numpy as np
import pytest
from conftest import TINY_CONFIG

from sublim_toy.config import HEAD_INITS, HIDDEN_INITS, Config
from sublim_toy.data import Dataset, load_dataset
from sublim_toy.errors import UserError
from sublim_toy.experiment import (
    frozen_layers,
    initial_params,
    layer_sources,
    perturbed_starts,
    run_experiment,
    shared_layers,
    student_inits,
    teacher_labels,
)
from sublim_toy.keys import seed_keys
from sublim_toy.model import network_for, student_network_for
from sublim_toy.results import STUDENTS

CONFIG = Config(seeds=5, hidden=(16,))


def _keys(config):
    return seed_keys(config.seed, config.seeds)


def _kernels(params, seed):
    return [np.asarray(leaf[seed]) for leaf in jax.tree.leaves(params) if leaf.ndim == 3]


def test_shared_init_students_start_bit_identical_to_their_reference():
    inits = initial_params(network_for(CONFIG), _keys(CONFIG))
    starts = student_inits(inits, CONFIG)
    for name, (source, _) in STUDENTS.items():
        if source == "shared":
            for a, b in zip(
                jax.tree.leaves(starts[name]), jax.tree.leaves(inits["shared"]), strict=True
            ):
                np.testing.assert_array_equal(a, b)


def test_cross_model_students_never_share_an_init_with_any_teacher():
    # Every independent init differs from every reference init in every weight matrix, for every
    # pair of seeds: no fixed point as a random permutation would give
    # (docs/pitfalls.md, pitfall 1).
    inits = initial_params(network_for(CONFIG), _keys(CONFIG))
    for student_seed, teacher_seed in itertools.product(range(CONFIG.seeds), repeat=2):
        for cross, reference in zip(
            _kernels(inits["independent"], student_seed),
            _kernels(inits["shared"], teacher_seed),
            strict=True,
        ):
            assert not np.any(cross == reference)
    assert {source for source, _ in STUDENTS.values()} == {"shared", "independent"}
    for name, (source, _) in STUDENTS.items():
        assert name.startswith("cross") == (source == "independent")


def test_a_seed_gives_the_same_models_whatever_runs_beside_it():
    network = network_for(CONFIG)
    few = initial_params(network, _keys(CONFIG.replace(seeds=2)))
    many = initial_params(network, _keys(CONFIG))
    for a, b in zip(jax.tree.leaves(few), jax.tree.leaves(many), strict=True):
        np.testing.assert_array_equal(a, b[:2])
    other_root = initial_params(network, _keys(CONFIG.replace(seed=1, seeds=2)))
    assert not np.array_equal(jax.tree.leaves(other_root)[1], jax.tree.leaves(few)[1])


def test_too_small_a_training_set_is_a_clear_error():
    tiny = np.zeros((10, 28, 28), np.uint8)
    dataset = Dataset(tiny, np.zeros(10, np.uint8), tiny, np.zeros(10, np.uint8), "test", "0")
    with pytest.raises(UserError, match="batch_size=1024: larger than the 10 training images"):
        run_experiment(CONFIG, dataset)


def test_same_config_and_seed_give_the_same_numbers_and_probes_only_observe(mnist):
    config = Config(
        seeds=2, hidden=(32,), teacher_epochs=1, student_epochs=1, noise_images=4096, probe_every=2
    )
    first = run_experiment(config, mnist)
    second = run_experiment(config, mnist)
    unprobed = run_experiment(config.replace(probe_every=0), mnist)
    assert first["accuracy"] == second["accuracy"] == unprobed["accuracy"]
    # the shared-init students start from the reference itself
    assert first["start"]["accuracy"]["student_aux"] == first["accuracy"]["reference"]
    assert first["alignment"] == second["alignment"]
    assert unprobed["alignment"]["steps"] == []

    alignment = first["alignment"]
    assert alignment["steps"] == [2, 4]
    cos_layers = np.asarray(alignment["student_aux"]["cos_layers"])  # [seeds, probes, layers]
    assert cos_layers.shape == (2, 2, 2)
    # The aux-only student's head moves only in its aux columns and the teacher's only in its
    # regular ones: disjoint coordinates, so their head displacements are exactly orthogonal.
    np.testing.assert_allclose(cos_layers[:, :, -1], 0.0, atol=1e-6)
    assert np.all(np.asarray(alignment["student_all"]["cos"]) > 0.1)


def test_init_angle_interpolates_between_the_teacher_init_and_an_independent_one():
    inits = initial_params(network_for(CONFIG), _keys(CONFIG))
    for angle, (a, b) in {0: (1.0, 0.0), 90: (0.0, 1.0), 30: (np.cos(np.pi / 6), 0.5)}.items():
        starts = student_inits(inits, CONFIG.replace(init_angle=angle))
        for start, ref, other in zip(
            _kernels(starts["student_aux"], 0),
            _kernels(inits["shared"], 0),
            _kernels(inits["independent"], 0),
            strict=True,
        ):
            np.testing.assert_allclose(start, a * ref + b * other, rtol=1e-6, atol=1e-7)
        # the cross-model students keep their independent init at every angle
        np.testing.assert_array_equal(
            _kernels(starts["cross_aux"], 1)[0], _kernels(inits["independent"], 1)[0]
        )


def test_shuffled_teacher_labels_are_a_relabelling_per_seed():
    labels = jax.numpy.asarray(np.arange(200) % 10, dtype=np.uint8)
    keys = _keys(CONFIG)
    true = np.asarray(teacher_labels(CONFIG, keys, labels))
    shuffled = np.asarray(teacher_labels(CONFIG.replace(teacher_labels="shuffled"), keys, labels))
    assert true.shape == shuffled.shape == (CONFIG.seeds, 200)
    assert np.all(true == np.asarray(labels))
    for seed_labels in shuffled:
        assert sorted(seed_labels) == sorted(np.asarray(labels))
        assert np.mean(seed_labels == np.asarray(labels)) < 0.3
    assert not np.array_equal(shuffled[0], shuffled[1])


def test_at_ninety_degrees_the_shared_students_are_the_cross_model_students(mnist):
    # Same init, same teacher, same inputs: the two students must train identically. This runs
    # the angle, shuffled-label teacher and shuffled-pixel input paths end to end.
    config = Config(
        seeds=2,
        hidden=(32,),
        teacher_epochs=1,
        student_epochs=1,
        noise_images=2048,
        init_angle=90,
        teacher_labels="shuffled",
        student_inputs="shuffled_pixels",
    )
    results = run_experiment(config, mnist)
    assert results["accuracy"]["student_aux"] == results["accuracy"]["cross_aux"]
    assert results["accuracy"]["student_all"] == results["accuracy"]["cross_all"]
    assert max(results["accuracy"]["teacher"]) < 0.2  # shuffled labels teach no digits


@pytest.mark.parametrize("hidden_init", HIDDEN_INITS)
@pytest.mark.parametrize("head_init", HEAD_INITS)
@pytest.mark.parametrize("init_angle", [0.0, 30.0])
def test_each_layer_starts_exactly_from_the_source_it_names(hidden_init, head_init, init_angle):
    config = CONFIG.replace(
        hidden=(16, 8), hidden_init=hidden_init, head_init=head_init, init_angle=init_angle
    )
    inits = initial_params(network_for(config), _keys(config))
    trained = jax.tree.map(lambda leaf: leaf + 1.0, inits["shared"])  # any other tree
    shared = student_inits(inits, config.replace(hidden_init="shared", head_init="shared"))
    starts = student_inits(inits, config, trained)
    source_trees = {
        "shared": shared["student_aux"],  # the teacher's init, or the angle's interpolation
        "independent": inits["independent"],
        "trained": trained,
    }
    for name, (source, _) in STUDENTS.items():
        for layer in range(3):
            layer_source = (
                (head_init if layer == 2 else hidden_init) if source == "shared" else source
            )
            for leaf in ("kernel", "bias"):
                np.testing.assert_array_equal(
                    starts[name]["layers"][layer][leaf][...],
                    source_trees[layer_source]["layers"][layer][leaf][...],
                )
    if init_angle == 0:
        for got, teacher_init in zip(
            jax.tree.leaves(shared["student_aux"]), jax.tree.leaves(inits["shared"]), strict=True
        ):
            np.testing.assert_array_equal(got, teacher_init)


def test_freezing_names_layers_of_the_shared_init_students_only():
    config = CONFIG.replace(hidden=(16, 8))
    assert frozen_layers(config) == dict.fromkeys(STUDENTS, ())
    hidden = frozen_layers(config.replace(freeze="hidden"))
    head = frozen_layers(config.replace(freeze="head"))
    for name, (source, _) in STUDENTS.items():
        assert hidden[name] == ((0, 1) if source == "shared" else ())
        assert head[name] == ((2,) if source == "shared" else ())


def test_a_frozen_body_leaves_the_first_order_prediction_exact(mnist):
    # Only the head moves, and the logits are linear in the head: the linearisation around the
    # init is then the trained network itself, so predicted and measured accuracy must agree,
    # while the cross-model students (not frozen) move their hidden layers and may differ.
    config = Config(
        seeds=2,
        hidden=(32,),
        teacher_epochs=1,
        student_epochs=1,
        noise_images=2048,
        freeze="hidden",
        head_init="trained",
        probe_every=0,
    )
    results = run_experiment(config, mnist)
    predicted = results["first_order"]["accuracy"]
    for name in ("student_aux", "student_all"):
        np.testing.assert_allclose(predicted[name], results["accuracy"][name], atol=1e-4)
    assert set(results["first_order"]["summary"]) == set(STUDENTS)
    # their start (the trained teacher's head on the shared hidden layers) is not the reference:
    # the gain is also measured from that start, seed by seed
    start = results["start"]
    assert start["accuracy"]["student_aux"] != results["accuracy"]["reference"]
    np.testing.assert_allclose(
        start["gain"]["student_aux"]["mean"],
        np.mean(results["accuracy"]["student_aux"]) - np.mean(start["accuracy"]["student_aux"]),
        atol=1e-12,
    )
    # cross-model students start from the independent init: near chance
    assert max(start["accuracy"]["cross_aux"]) < 0.3


def test_a_seed_s_trained_numbers_follow_its_keys_not_its_neighbours_up_to_rounding(mnist):
    # What holds exactly: a seed's random draws (inits, data order, noise) do not depend on how
    # many seeds run beside it (test_a_seed_gives_the_same_models_whatever_runs_beside_it).
    # What does not: XLA picks kernels by the shape of the seed axis, so the trained numbers
    # agree only to rounding in each step, which training can grow (docs/getting-started.md,
    # "Reproducibility, exactly").
    config = Config(
        seeds=1,
        hidden=(32,),
        teacher_epochs=1,
        student_epochs=1,
        noise_images=4096,
        probe_every=0,
    )
    alone = run_experiment(config, mnist)
    beside = run_experiment(config.replace(seeds=3), mnist)
    for name in alone["accuracy"]:
        assert abs(alone["accuracy"][name][0] - beside["accuracy"][name][0]) < 0.01, name


@pytest.mark.parametrize("perturb", ["head", "hidden", "all"])
def test_perturbation_adds_noise_of_the_requested_sd_to_the_named_layers_only(perturb):
    config = CONFIG.replace(hidden=(256, 128), perturb=perturb, perturb_std=0.3)
    keys = _keys(config)
    inits = initial_params(network_for(config), keys)
    starts = student_inits(inits, config)
    perturbed = perturbed_starts(starts, config, keys)
    named = {"head": {2}, "hidden": {0, 1}, "all": {0, 1, 2}}[perturb]
    for name, (source, _) in STUDENTS.items():
        for layer in range(3):
            before = starts[name]["layers"][layer]
            after = perturbed[name]["layers"][layer]
            # zero biases stay zero: their init sd is 0
            np.testing.assert_array_equal(after["bias"][...], before["bias"][...])
            added = np.asarray(after["kernel"][...] - before["kernel"][...])
            if source == "independent" or layer not in named:
                np.testing.assert_array_equal(added, 0.0)  # the control is never touched
                continue
            fan_in = added.shape[1]
            # 5 seeds x fan_in x fan_out draws: the sd is known to better than 2 %
            assert np.std(added) * np.sqrt(fan_in) == pytest.approx(0.3, rel=0.02)
            assert abs(np.mean(added)) * np.sqrt(fan_in) < 0.01
            # fresh noise for every seed, and not the cross-model init
            assert not np.allclose(added[0], added[1])
            independent = np.asarray(inits["independent"]["layers"][layer]["kernel"][...])
            assert abs(np.corrcoef(added.ravel(), independent.ravel())[0, 1]) < 0.02
    # both shared-init students start from the same perturbed arrays
    for a, b in zip(
        jax.tree.leaves(perturbed["student_aux"]),
        jax.tree.leaves(perturbed["student_all"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_perturbation_of_std_zero_is_the_shared_init_bit_for_bit():
    keys = _keys(CONFIG)
    inits = initial_params(network_for(CONFIG), keys)
    for perturb in ("none", "head", "hidden", "all"):
        config = CONFIG.replace(perturb=perturb, perturb_std=0.0)
        starts = student_inits(inits, config)
        perturbed = perturbed_starts(starts, config, keys)
        for name, (source, _) in STUDENTS.items():
            expected = inits[source]
            for a, b in zip(
                jax.tree.leaves(perturbed[name]), jax.tree.leaves(expected), strict=True
            ):
                np.testing.assert_array_equal(a, b)


def test_perturbation_follows_the_init_scheme_and_scale():
    # torch draws its biases too, so they get noise; a scaled init gets scaled noise
    config = CONFIG.replace(
        hidden=(512,), init="torch", init_scale=2.0, perturb="hidden", perturb_std=1.0
    )
    keys = _keys(config)
    starts = student_inits(initial_params(network_for(config), keys), config)
    perturbed = perturbed_starts(starts, config, keys)
    layer_before = starts["student_aux"]["layers"][0]
    layer_after = perturbed["student_aux"]["layers"][0]
    expected = 2.0 / np.sqrt(3 * 784)  # U(+-2/sqrt(784)) has this sd, weights and biases
    for leaf, tolerance in (("kernel", 0.01), ("bias", 0.05)):
        added = np.asarray(layer_after[leaf][...] - layer_before[leaf][...])
        drawn = np.asarray(layer_before[leaf][...])
        assert np.std(added) == pytest.approx(expected, rel=tolerance)
        assert np.std(drawn) == pytest.approx(expected, rel=tolerance)  # as large as the init


def test_a_pool_of_one_epoch_is_the_default(tiny_idx_dir):
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    config = TINY_CONFIG.replace(student_epochs=2, probe_every=1)

    def numbers(**changes):
        results = run_experiment(config.replace(**changes), dataset)
        return [results[key] for key in ("accuracy", "first_order", "alignment")]

    # 0 is one epoch's batches: the same numbers, probes included
    assert numbers() == numbers(noise_pool=32)


@pytest.mark.parametrize(
    ("student_hidden", "pairs"),
    [
        ((16, 8), {0: 0, 1: 1, 2: 2}),  # the teacher's widths: every layer
        ((), {0: 0, 1: 1, 2: 2}),  # empty: the teacher's widths
        ((16,), {0: 0}),  # one hidden layer less: the first layer (the head is 16 x 13)
        ((16, 8, 8), {0: 0, 3: 2}),  # one more: the first layer and the head
        ((12, 8), {2: 2}),  # another first width: the head only
        ((12,), {}),  # nothing
    ],
)
def test_another_student_architecture_shares_its_first_layer_and_head_where_shapes_allow(
    student_hidden, pairs
):
    config = CONFIG.replace(hidden=(16, 8), student_hidden=student_hidden)
    assert shared_layers(config) == pairs
    widths = student_hidden or (16, 8)
    keys = _keys(config)
    inits = initial_params(network_for(config), keys, student_network_for(config))
    starts = student_inits(inits, config)
    sizes = (784, *widths, config.n_outputs)
    sources = layer_sources(config)
    for name, (source, _) in STUDENTS.items():
        assert len(starts[name]["layers"]) == len(sizes) - 1
        for layer, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
            for leaf in ("kernel", "bias"):
                got = np.asarray(starts[name]["layers"][layer][leaf][...])
                assert got.shape == ((5, d_in, d_out) if leaf == "kernel" else (5, d_out))
                independent = inits["independent"]["layers"][layer][leaf][...]
                if source == "shared" and layer in pairs:
                    assert sources[name][layer] == "shared"
                    teacher = inits["shared"]["layers"][pairs[layer]][leaf][...]
                    np.testing.assert_array_equal(got, teacher)
                else:
                    assert sources[name][layer] == "independent"
                    np.testing.assert_array_equal(got, independent)


def test_a_student_head_that_cannot_be_shared_starts_independent_and_freezing_follows_it():
    config = CONFIG.replace(hidden=(16, 8), student_hidden=(16, 12, 4), head_init="shared")
    assert layer_sources(config)["student_aux"] == [
        "shared",
        "independent",
        "independent",
        "independent",
    ]
    assert frozen_layers(config.replace(freeze="head"))["student_aux"] == (3,)
    assert frozen_layers(config.replace(freeze="hidden"))["student_aux"] == (0, 1, 2)
    with pytest.raises(UserError, match="the trained teacher's head does not fit"):
        config.replace(head_init="trained")


def test_a_deeper_student_trains_end_to_end_and_says_what_it_shares(tiny_idx_dir):
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    config = Config(
        seeds=2,
        hidden=(16,),
        student_hidden=(16, 8, 16),
        teacher_epochs=1,
        student_epochs=1,
        batch_size=16,
        noise_images=32,
        probe_every=1,
    )
    results = run_experiment(config, dataset)
    layers = results["student_layers"]
    assert layers["teacher_sizes"] == [784, 16, 13]
    assert layers["student_sizes"] == [784, 16, 8, 16, 13]
    assert layers["teacher_layer"] == [0, None, None, 1]
    assert layers["sources"]["student_aux"] == ["shared", "independent", "independent", "shared"]
    assert layers["sources"]["cross_aux"] == ["independent"] * 4
    # the shared-init student starts from the teacher's first layer and head on its own middle
    # layers: not the reference's function, so its start is measured, not assumed
    assert all(0 <= a <= 1 for a in results["start"]["accuracy"]["student_aux"])
    assert all(0 <= a <= 1 for a in results["first_order"]["accuracy"]["student_aux"])
    # probes compare the student's move with the teacher's on the paired layers only
    cos_layers = results["alignment"]["student_aux"]["cos_layers"]  # [seeds][probes][layers]
    assert all(row[1] is None and row[2] is None for seed in cos_layers for row in seed)
    assert all(row[0] is not None for seed in cos_layers for row in seed)
    json.dumps(results, allow_nan=False)  # strict JSON
