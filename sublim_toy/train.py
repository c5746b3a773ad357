"""Pure training epochs (section 6.2): `lax.scan` over an epoch's steps, `vmap` over seeds.

A phase is one jitted `epoch(state, epoch_index, shared) -> (state, metrics)`: `state` holds
everything of one seed the phase reads or writes (a pytree with a leading seed axis), `shared`
the read-only inputs every seed sees. The host only sees the state between epochs, where
`run_phase` reports progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sublim_toy.config import Config
from sublim_toy.errors import stop_if_interrupted
from sublim_toy.host_memory import release_free_memory
from sublim_toy.inputs import pool_batch_order, preprocess, student_batch
from sublim_toy.losses import chunked_accuracies, imitation_loss, teacher_loss
from sublim_toy.model import Network, Params, layer_index
from sublim_toy.probes import ProbeImages, alignment
from sublim_toy.projection import project_out, teacher_gradient
from sublim_toy.updates import step_metrics


class TeacherState(NamedTuple):
    """One seed's teacher training: parameters, Adam state, and what it reads per seed."""

    params: Params
    opt_state: optax.OptState
    shuffle_key: jax.Array  # epoch e visits the training set in permutation fold_in(key, e)
    labels: jax.Array  # [N] this seed's training labels (MNIST's, or its own relabelling)


class StudentState(NamedTuple):
    """One seed's students (dicts keyed by student name) and what they imitate."""

    params: dict[str, Params]
    opt_state: dict[str, optax.OptState]
    teacher_logits: jax.Array  # [batches, B, K] on every input batch (`make_teacher_targets`)
    noise_key: jax.Array  # input batch b is student_batch(kind, noise_key, b)
    order_key: jax.Array  # epoch e visits the batches in batch_order(order_key, e)
    starts: dict[str, Params] | None  # each student's init, for the probes (None: no probes)
    teacher_move: Params | None  # theta_T - theta_T(0), for the probes and the step metrics
    # the fixed direction the projected students' updates lose (`projection.fixed_directions`)
    removed_direction: Params | None = None


class StudentShared(NamedTuple):
    """What every seed's students read: digits (for `student_inputs` mnist and
    shuffled_pixels) and the probes' fixed images (None without probes)."""

    train_images: jax.Array  # uint8 [N, 28, 28]
    probe_images: ProbeImages | None
    # (images, labels) on which project_out="teacher_gradient" takes grad L_T; None otherwise
    gradient_digits: tuple | None = None


class PhaseRun(NamedTuple):
    state: Any
    metrics: list  # one entry per epoch
    compile_s: float | None  # None when no epoch ran (nothing was compiled)
    run_s: float


class TimedCall(NamedTuple):
    value: Any
    compile_s: float
    run_s: float


def make_optimizer(
    config: Config, frozen_layers: Collection[int] = (), *, student: bool = False
) -> optax.GradientTransformation:
    """The teacher's Adam at the authors' learning rate, or with `student` the students' own
    optimizer (`student_optimizer`); the one place either is built.

    Layers whose index is in `frozen_layers` get zero updates (`Config.freeze`).
    """
    optimizer = student_optimizer(config) if student else optax.adam(config.learning_rate)
    if not frozen_layers:
        return optimizer

    def frozen_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: layer_index(path) in frozen_layers, params
        )

    return optax.chain(optimizer, optax.masked(optax.set_to_zero(), frozen_mask))


def student_optimizer(config: Config) -> optax.GradientTransformation:
    """The students' step: a direction (Adam's scaled moments, or SGD's gradient with optional
    heavy-ball momentum), weight decay before it (coupled, L2) or after it (decoupled, as
    AdamW), then -student_lr. With the defaults this is optax.adam(learning_rate) exactly;
    plain SGD is exactly -lr x the gradient of the model's own mean loss."""
    if config.student_optimizer == "adam":
        direction = optax.scale_by_adam()
    else:
        direction = optax.trace(decay=config.momentum) if config.momentum else optax.identity()
    steps = [direction]
    if config.weight_decay:
        decay = optax.add_decayed_weights(config.weight_decay)
        steps = [decay, direction] if config.weight_decay_mode == "coupled" else [direction, decay]
    return optax.chain(*steps, optax.scale_by_learning_rate(config.student_lr))


def init_optimizer(
    config: Config, params, frozen_layers: Collection[int] = (), *, student: bool = False
):
    """Optimizer state for a stack of models (leading seed axis), laid out like the models."""
    layout = jax.tree.leaves(params)[0].sharding
    optimizer = make_optimizer(config, frozen_layers, student=student)
    return jax.jit(jax.vmap(optimizer.init), out_shardings=layout)(params)


def make_teacher_epoch(network: Network, config: Config) -> Callable:
    """Epoch of teacher training on MNIST: cross-entropy on the regular logits only.

    epoch(TeacherState [S], epoch_index, images uint8 [N, 28, 28]) -> (state, {"loss": [S]}).
    Each seed reshuffles the training set and drops the last partial batch.
    """
    optimizer = make_optimizer(config)
    batch_size = config.batch_size

    def loss_fn(params, images_BxD, labels_B):
        return teacher_loss(network.apply(params, images_BxD), labels_B)

    def one_seed(state: TeacherState, epoch, images):
        steps = images.shape[0] // batch_size
        order = jax.random.permutation(jax.random.fold_in(state.shuffle_key, epoch), len(images))
        batches_SxB = order[: steps * batch_size].reshape(steps, batch_size)

        def train_step(carry, batch_indices):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(
                params, preprocess(images[batch_indices]), state.labels[batch_indices]
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        carry = (state.params, state.opt_state)
        (params, opt_state), losses = jax.lax.scan(train_step, carry, batches_SxB)
        return state._replace(params=params, opt_state=opt_state), {"loss": losses.mean()}

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))


def make_teacher_targets(network: Network, config: Config) -> Callable:
    """targets(teacher_params [S], noise_keys [S], train_images) -> logits [S, batches, B, K]:
    the teacher's logits on every input batch of the student phase (the `config.pool_batches`
    of the pool), computed once, since batch b is the same images whenever a step reads it (the
    teacher's forward pass would otherwise be repeated in every epoch)."""

    def one_seed(teacher_params, noise_key, train_images):
        def logits(_, batch_index):
            inputs = _student_inputs(config, network, noise_key, batch_index, train_images)
            return None, network.apply(teacher_params, inputs)

        return jax.lax.scan(logits, None, jnp.arange(config.pool_batches))[1]

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None)))


def _student_inputs(config: Config, network: Network, noise_key, batch_index, train_images):
    return student_batch(
        config.student_inputs,
        noise_key,
        batch_index,
        batch_size=config.student_batch,
        input_dim=network.sizes[0],
        train_images=train_images,
    )


def make_student_epoch(
    network: Network,
    config: Config,
    outputs: Mapping[str, str],
    frozen_layers: Mapping[str, Collection[int]] | None = None,
    projected: Collection[str] = (),
) -> Callable:
    """Epoch of imitation for several students of the same teacher at once.

    `outputs` maps each student's name to the logits it imitates ("aux" or "all");
    `frozen_layers` (optional) maps a name to the layer indices that student never updates;
    `projected` names the students whose updates lose their component along
    `config.project_out`'s direction (projection.py).
    epoch(StudentState [S], epoch_index, StudentShared) -> (state, {"loss": {name: [S]},
    "probes": {name: metrics [S, steps]} or None, "steps": {name: `updates.step_metrics`
    [S, steps]}}). The teacher's logits on each input batch were computed once
    (`make_teacher_targets`) and are shared by all its students. Batch b is the same images
    whenever a step reads it; steps visit the pool's batches pass after pass, each pass in a
    new order (`inputs.pool_batch_order`; by default a pass is an epoch).
    """
    update = _imitation_update(network, config, outputs, frozen_layers or {}, projected)
    steps = config.noise_steps

    def one_seed(state: StudentState, epoch, shared: StudentShared):
        probe = _scheduled_probe(network, config, outputs, state, shared, epoch)

        def train_step(carry, step_and_batch):
            step, batch_index = step_and_batch
            inputs = _student_inputs(
                config, network, state.noise_key, batch_index, shared.train_images
            )
            params, opt_states, measured = update(
                *carry, inputs, state.teacher_logits[batch_index], state, shared
            )
            return (params, opt_states), (measured, probe(step, params))

        order = pool_batch_order(state.order_key, epoch, steps, config.pool_batches)
        carry = (state.params, state.opt_state)
        (params, opt_states), (measured, probes) = jax.lax.scan(
            train_step, carry, (jnp.arange(steps), order)
        )
        losses = {name: metrics["loss"].mean() for name, metrics in measured.items()}
        metrics = {"loss": losses, "probes": probes, "steps": measured}
        return state._replace(params=params, opt_state=opt_states), metrics

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))


def _imitation_update(network, config, outputs, frozen_layers, projected) -> Callable:
    """update(params, opt_states, inputs, teacher_logits, state, shared) -> (params, opt_states,
    step metrics): one step of every student (dicts keyed by name) on the same inputs and
    teacher logits; the projected students' updates lose their component along d after the
    optimizer (d from `state.removed_direction`, or grad L_T at the student's parameters on
    `shared.gradient_digits`)."""
    optimizers = {
        name: make_optimizer(config, frozen_layers.get(name, ()), student=True) for name in outputs
    }

    def loss_fn(params, inputs_BxD, teacher_logits_BxK, student_outputs):
        return imitation_loss(
            network.apply(params, inputs_BxD),
            teacher_logits_BxK,
            outputs=student_outputs,
            kind=config.imitation_loss,
            temperature=config.temperature,
        )

    def update(params, opt_states, inputs_BxD, teacher_logits_BxK, state, shared):
        new_params, new_opt_states, measured = {}, {}, {}
        for name, student_outputs in outputs.items():
            loss, grads = jax.value_and_grad(loss_fn)(
                params[name], inputs_BxD, teacher_logits_BxK, student_outputs
            )
            updates, new_opt_states[name] = optimizers[name].update(
                grads, opt_states[name], params[name]
            )
            removed = jnp.zeros((), loss.dtype)
            if name in projected:
                direction = state.removed_direction
                if direction is None:  # teacher_gradient: d follows the student
                    direction = teacher_gradient(network, params[name], shared.gradient_digits)
                updates, removed = project_out(updates, direction)
            new_params[name] = optax.apply_updates(params[name], updates)
            if state.teacher_move is not None:
                measured[name] = step_metrics(loss, updates, state.teacher_move, removed)
            else:  # a benchmark's students: the loss alone
                measured[name] = {"loss": loss}
        return new_params, new_opt_states, measured

    return update


def _scheduled_probe(network, config, outputs, state: StudentState, shared, epoch) -> Callable:
    """probe(step, params) -> `probes.alignment` of every student after every
    `config.probe_every`-th step of the run and zeros on the other steps (see
    `probes.probed_steps`); None throughout without probes."""
    if not config.probe_every:
        return lambda step, params: None
    steps = config.noise_steps

    def measure(params):
        return {
            name: alignment(
                network, params[name], state.starts[name], state.teacher_move, shared.probe_images
            )
            for name in outputs
        }

    def zeros(params):
        shapes = jax.eval_shape(measure, params)
        return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)

    def probe(step, params):
        # The predicate depends on the step alone, not on the seed, so under vmap this stays a
        # real branch: the probe costs nothing on the steps it skips.
        due = (epoch * steps + step + 1) % config.probe_every == 0
        return jax.lax.cond(due, measure, zeros, params)

    return probe


def make_evaluate(network: Network) -> Callable:
    """accuracy(params[S], images uint8 [N, 28, 28], labels [N]) -> [S] test accuracies, the
    images in chunks (`losses.chunked_accuracies`)."""

    def one_seed(params, images, labels):
        return chunked_accuracies(lambda x: (network.apply(params, x),), images, labels)[0]

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))


def compiler_options() -> dict | None:
    """XLA options for the package's own programs: on a CPU, LLVM at -O1 instead of XLA's
    default, which compiles faster (the student epoch in about three quarters of the time:
    docs/performance.md) with the same numbers bit for bit (the GEMMs are library calls either
    way). Elsewhere XLA's defaults."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def compile_ahead(jitted: Callable, *example_args) -> tuple[Callable, float]:
    """Compile for these arguments now, so compile time is timed apart from running."""
    started = time.perf_counter()
    compiled = jitted.lower(*example_args).compile(compiler_options())
    return compiled, time.perf_counter() - started


def timed_call(jitted: Callable, *args) -> TimedCall:
    """Compile for these arguments (timed apart), then run once to completion."""
    compiled, compile_s = compile_ahead(jitted, *args)
    started = time.perf_counter()
    value = jax.block_until_ready(compiled(*args))
    return TimedCall(value, compile_s, time.perf_counter() - started)


def run_phase(
    epoch_fn: Callable, state, shared, epochs: int, on_epoch: Callable | None = None
) -> PhaseRun:
    """Compile a phase's epoch ahead of time, then run `epochs` epochs of it from `state`.

    `on_epoch(metrics, state)` runs on the host after each epoch (progress bars; the state for
    callers that look at the models between epochs). After each epoch the memory its buffers
    held goes back to the OS (`host_memory.release_free_memory`), so the peak stays that of one
    epoch, and a Ctrl-C that Python dropped stops the phase (`errors.ctrl_c_remembered`).
    """
    if not epochs:
        return PhaseRun(state, [], None, 0.0)
    compiled, compile_s = compile_ahead(epoch_fn, state, 0, shared)
    started = time.perf_counter()
    metrics = []
    for epoch in range(epochs):
        state, epoch_metrics = compiled(state, epoch, shared)
        metrics.append(epoch_metrics)
        jax.block_until_ready(state)  # the epoch's temporaries are freed once it has finished
        release_free_memory()
        stop_if_interrupted()  # a Ctrl-C that Python dropped on the way (errors.ctrl_c_remembered)
        if on_epoch is not None:
            on_epoch(epoch_metrics, state)
    return PhaseRun(state, metrics, compile_s, time.perf_counter() - started)
