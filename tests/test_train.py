import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sublim_toy.config import Config
from sublim_toy.inputs import noise_batch, pool_batch_order, preprocess
from sublim_toy.losses import imitation_loss
from sublim_toy.model import network_for
from sublim_toy.train import (
    StudentShared,
    StudentState,
    TeacherState,
    init_optimizer,
    make_evaluate,
    make_optimizer,
    make_student_epoch,
    make_teacher_epoch,
    make_teacher_targets,
    run_phase,
)

CONFIG = Config(hidden=(32,), batch_size=64, noise_images=256, learning_rate=3e-3, probe_every=0)


def _toy_digits(n=512, seed=0):
    """Images whose label is written in which pixel block is bright: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 255
    return jnp.asarray(images), jnp.asarray(labels)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _index(tree, i):
    return jax.tree.map(lambda leaf: leaf[i], tree)


def _teacher_state(params, shuffle_keys, labels):
    return TeacherState(params, init_optimizer(CONFIG, params), shuffle_keys, labels)


def test_teacher_learns_and_vmap_over_seeds_equals_one_seed_at_a_time():
    network = network_for(CONFIG)
    images, labels = _toy_digits()
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(network.init)(keys)
    shuffle_keys = jax.random.split(jax.random.key(1), 2)
    epoch = make_teacher_epoch(network, CONFIG)
    evaluate = make_evaluate(network)
    before = evaluate(params, images, labels)

    seed_labels = jnp.stack([labels, labels])
    start = _teacher_state(params, shuffle_keys, seed_labels)
    trained = run_phase(epoch, start, images, epochs=2)
    assert np.all(evaluate(trained.state.params, images, labels) > 0.9) and np.all(before < 0.3)
    assert len(trained.metrics) == 2 and trained.metrics[0]["loss"].shape == (2,)

    together, _ = epoch(start, 0, images)
    for i in range(2):
        alone = _teacher_state(
            _index(params, slice(i, i + 1)), shuffle_keys[i : i + 1], seed_labels[:1]
        )
        alone_trained, _ = epoch(alone, 0, images)
        for a, b in zip(
            jax.tree.leaves(alone_trained.params), jax.tree.leaves(together.params), strict=True
        ):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-5, atol=1e-6)


def _student_state(config, students, teacher, frozen=None):
    seeds = jax.tree.leaves(teacher)[0].shape[0]
    frozen = frozen or {}
    noise_keys = jax.random.split(jax.random.key(2), seeds)
    return StudentState(
        params=students,
        opt_state={
            name: init_optimizer(config, params, frozen.get(name, ()), student=True)
            for name, params in students.items()
        },
        teacher_logits=make_teacher_targets(network_for(config), config)(teacher, noise_keys, None),
        noise_key=noise_keys,
        order_key=jax.random.split(jax.random.key(3), seeds),
        starts=None,
        teacher_move=jax.tree.map(jnp.subtract, teacher, students[next(iter(students))]),
    )


def _student_epoch_setup(config, outputs, teacher, students):
    epoch = make_student_epoch(network_for(config), config, outputs)
    state, metrics = epoch(_student_state(config, students, teacher), 0, StudentShared(None, None))
    return state.params, metrics["loss"]


def test_students_move_towards_their_teacher():
    network = network_for(CONFIG)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    stranger = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 2))
    outputs = {"aux": "aux", "all": "all"}
    students = {"aux": stranger, "all": stranger}
    config = CONFIG.replace(noise_images=32 * 64)
    trained, _ = _student_epoch_setup(config, outputs, teacher, students)

    probe = jax.random.uniform(jax.random.key(9), (256, 784), minval=-1, maxval=1)
    for name in outputs:

        def distance(params, name=name):
            return jax.vmap(
                lambda p, t: imitation_loss(
                    network.apply(p, probe),
                    network.apply(t, probe),
                    outputs=outputs[name],
                    kind="kl",
                )
            )(params, teacher)

        assert np.all(distance(trained[name]) < 0.5 * distance(students[name]))


def test_a_student_at_its_teacher_gets_zero_gradient_and_stays_there():
    # Squared error at z = y has an exactly zero gradient, and Adam then moves nothing.
    # (With KL the gradient p_z - p_y is zero only up to rounding, which Adam would rescale.)
    config = CONFIG.replace(imitation_loss="mse")
    teacher = jax.vmap(network_for(config).init)(jax.random.split(jax.random.key(0), 2))
    trained, losses = _student_epoch_setup(config, {"copy": "all"}, teacher, {"copy": teacher})
    for a, b in zip(jax.tree.leaves(trained["copy"]), jax.tree.leaves(teacher), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(losses["copy"], 0.0)


def test_evaluate_matches_numpy_argmax():
    network = network_for(CONFIG)
    images, labels = _toy_digits(64)
    params = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 3))
    got = make_evaluate(network)(params, images, labels)
    for i in range(3):
        logits = np.asarray(network.apply(_index(params, i), preprocess(images)))
        assert float(got[i]) == pytest.approx(
            np.mean(logits[:, :10].argmax(-1) == np.asarray(labels))
        )


@pytest.mark.parametrize(("frozen", "moving"), [((0,), (1,)), ((1,), (0,)), ((), (0, 1))])
def test_frozen_layers_never_move_and_the_others_do(frozen, moving):
    config = CONFIG.replace(noise_images=4 * 64)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    student = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 2))
    epoch = make_student_epoch(network, config, {"s": "all"}, frozen_layers={"s": frozen})
    state = _student_state(config, {"s": student}, teacher, {"s": frozen})
    trained = epoch(state, 0, StudentShared(None, None))[0].params["s"]
    for layer in range(2):
        for leaf in ("kernel", "bias"):
            before = np.asarray(student["layers"][layer][leaf][...])
            after = np.asarray(trained["layers"][layer][leaf][...])
            assert np.array_equal(before, after) == (layer in frozen), (layer, leaf)


def test_teacher_targets_are_the_teacher_logits_on_every_input_batch():
    config = CONFIG.replace(noise_images=3 * 64)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    noise_keys = jax.random.split(jax.random.key(4), 2)
    targets = make_teacher_targets(network, config)(teacher, noise_keys, None)
    assert targets.shape == (2, 3, 64, config.n_outputs)
    for seed in range(2):
        for batch in range(3):
            inputs = noise_batch(noise_keys[seed], batch, batch_size=64, input_dim=784)
            np.testing.assert_allclose(
                targets[seed, batch], network.apply(_index(teacher, seed), inputs), atol=1e-5
            )


# ---- the students' optimizer ------------------------------------------------------------------


def _one_student_step(config, student, teacher, outputs="aux"):
    """One student step on the first input batch: (params after, loss gradient at the start)."""
    network = network_for(config)
    epoch = make_student_epoch(network, config, {"s": outputs})
    state = _student_state(config, {"s": student}, teacher)
    trained = epoch(state, 0, StudentShared(None, None))[0].params["s"]
    inputs = noise_batch(state.noise_key[0], 0, batch_size=config.student_batch, input_dim=784)

    def mean_loss(params):  # one model's mean over its own batch: nothing else divides it
        return imitation_loss(
            network.apply(params, inputs),
            state.teacher_logits[0, 0],
            outputs=outputs,
            kind=config.imitation_loss,
        )

    return _index(trained, 0), jax.grad(mean_loss)(_index(student, 0))


def _models(config, seeds=1):
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), seeds))
    student = jax.vmap(network.init)(jax.random.split(jax.random.key(1), seeds))
    return teacher, student


def test_sgd_steps_exactly_minus_lr_times_the_gradient_of_the_models_own_mean_loss():
    # one step per epoch; a batchmean-style division (docs/pitfalls.md, pitfall 2) would scale
    # the step by batch / models
    config = CONFIG.replace(student_optimizer="sgd", student_learning_rate=2.5, noise_images=64)
    teacher, student = _models(config)
    trained, grads = _one_student_step(config, student, teacher)
    for after, before, grad in zip(
        jax.tree.leaves(trained),
        jax.tree.leaves(_index(student, 0)),
        jax.tree.leaves(grads),
        strict=True,
    ):
        # float32 rounding of the parameters themselves (|theta| < 1) is below 1e-7 x 0.5
        np.testing.assert_allclose(after - before, -2.5 * grad, rtol=1e-3, atol=5e-8)
    moved = jax.tree.map(jnp.subtract, trained, _index(student, 0))
    ratio = float(optax.tree_utils.tree_norm(moved) / optax.tree_utils.tree_norm(grads))
    assert ratio == pytest.approx(2.5, rel=1e-4)


def test_the_default_student_optimizer_is_the_authors_adam_bit_for_bit():
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    grads = {"w": jnp.linspace(-1.0, 2.0, 6).reshape(2, 3)}
    ours, adam = make_optimizer(CONFIG, student=True), optax.adam(CONFIG.learning_rate)
    state_ours, state_adam = ours.init(params), adam.init(params)
    for _ in range(3):
        step_ours, state_ours = ours.update(grads, state_ours, params)
        step_adam, state_adam = adam.update(grads, state_adam, params)
        np.testing.assert_array_equal(step_ours["w"], step_adam["w"])
    # the student's learning rate is the teacher's unless set
    faster = make_optimizer(CONFIG.replace(student_learning_rate=1e-2), student=True)
    step, _ = faster.update(grads, faster.init(params), params)
    np.testing.assert_allclose(step["w"], step_ours["w"] * 1e-2 / CONFIG.learning_rate, rtol=1e-5)
    teacher = make_optimizer(CONFIG.replace(student_optimizer="sgd"))  # the teacher keeps Adam
    np.testing.assert_array_equal(
        teacher.update(grads, adam.init(params), params)[0]["w"],
        adam.update(grads, adam.init(params), params)[0]["w"],
    )


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_is_decoupled_or_coupled_as_named(optimizer):
    params = {"w": jnp.linspace(-2.0, 3.0, 6).reshape(2, 3)}
    grads = {"w": jnp.linspace(-1.0, 0.5, 6).reshape(2, 3)}
    base = CONFIG.replace(student_optimizer=optimizer, student_learning_rate=0.1)
    momentum = {"momentum": 0.9} if optimizer == "sgd" else {}
    plain = make_optimizer(base.replace(**momentum), student=True)

    def two_steps(optimizer_, grads_fn):
        state, p, steps = optimizer_.init(params), params, []
        for _ in range(2):
            step, state = optimizer_.update(grads_fn(p), state, p)
            p = optax.apply_updates(p, step)
            steps.append(step["w"])
        return steps

    wd = 0.3
    decoupled = make_optimizer(base.replace(weight_decay=wd, **momentum), student=True)
    coupled = make_optimizer(
        base.replace(weight_decay=wd, weight_decay_mode="coupled", **momentum), student=True
    )
    # decoupled: the optimizer's own step on the loss gradient, minus lr * wd * theta beside it
    plain_state, p = plain.init(params), params
    decoupled_state = decoupled.init(params)
    for _ in range(2):
        plain_step, plain_state = plain.update(grads, plain_state, p)
        step, decoupled_state = decoupled.update(grads, decoupled_state, p)
        np.testing.assert_allclose(step["w"], plain_step["w"] - 0.1 * wd * p["w"], rtol=1e-5)
        p = optax.apply_updates(p, step)
    # coupled (L2): the optimizer sees grad + wd * theta as its gradient
    np.testing.assert_allclose(
        two_steps(coupled, lambda p: grads),
        two_steps(plain, lambda p: {"w": grads["w"] + wd * p["w"]}),
        rtol=1e-5,
    )


def test_the_student_batch_sets_the_student_steps_and_leaves_the_teacher_alone():
    config = Config(student_batch_size=64)
    assert (config.noise_steps, config.batch_size, config.student_batch) == (937, 1024, 64)
    assert Config().noise_steps == 58
    targets = make_teacher_targets(network_for(CONFIG), CONFIG.replace(student_batch_size=32))
    teacher, _ = _models(CONFIG, seeds=2)
    logits = targets(teacher, jax.random.split(jax.random.key(4), 2), None)
    assert logits.shape == (2, 256 // 32, 32, CONFIG.n_outputs)


def test_a_noise_pool_of_two_batches_is_all_a_student_ever_reads():
    # 4 steps per epoch from a pool of 2 batches: replayed by hand from the pool's order, the
    # same images and the same teacher logits give the very same student, step for step
    config = CONFIG.replace(noise_pool=128, imitation_loss="mse")
    assert (config.noise_steps, config.pool_batches) == (4, 2)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 1))
    student = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 1))
    state = _student_state(config, {"s": student}, teacher)
    assert state.teacher_logits.shape == (1, 2, 64, config.n_outputs)  # one per pool batch
    epoch = make_student_epoch(network, config, {"s": "all"})
    params = _index(student, 0)
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)

    @jax.jit  # one program for the replay's 8 steps (step by step, eager ops cost seconds)
    def replay_step(params, opt_state, noise_key, batch):
        inputs = noise_batch(noise_key, batch, batch_size=64, input_dim=784)
        target = network.apply(_index(teacher, 0), inputs)

        def loss(p):
            return imitation_loss(network.apply(p, inputs), target, outputs="all", kind="mse")

        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for epoch_index in range(2):
        state = epoch(state, epoch_index, StudentShared(None, None))[0]
        order = pool_batch_order(state.order_key[0], epoch_index, 4, 2)
        for batch in np.asarray(order):
            params, opt_state = replay_step(params, opt_state, state.noise_key[0], batch)
        for a, b in zip(
            jax.tree.leaves(_index(state.params["s"], 0)), jax.tree.leaves(params), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_phases_compile_at_llvm_o1_on_a_cpu_and_that_changes_no_number(monkeypatch):
    requested = []
    compile_ = jax.stages.Lowered.compile

    def recording(self, compiler_options=None, **kwargs):
        requested.append(compiler_options)
        return compile_(self, compiler_options, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", recording)
    network = network_for(CONFIG)
    images, labels = _toy_digits()
    params = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    start = _teacher_state(params, jax.random.split(jax.random.key(1), 2), jnp.stack([labels] * 2))
    epoch = make_teacher_epoch(network, CONFIG)
    trained = run_phase(epoch, start, images, epochs=1)
    assert jax.default_backend() == "cpu"
    assert requested == [{"xla_backend_optimization_level": 1}]
    at_xla_default, _ = epoch.lower(start, 0, images).compile()(start, 0, images)
    for a, b in zip(
        jax.tree.leaves(trained.state.params), jax.tree.leaves(at_xla_default.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
