"""Pure training steps (section 6.2): `lax.scan` over the steps of an epoch, `vmap` over seeds.

Each `make_*_epoch` returns one jitted function that runs a whole epoch for every seed at once;
the host only sees the state between epochs (where the progress bar moves).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import jax
import jax.numpy as jnp
import optax

from sublim_toy.config import Config
from sublim_toy.data import student_batch
from sublim_toy.losses import accuracy, imitation_loss, teacher_loss
from sublim_toy.model import Network, layer_index, preprocess


def make_optimizer(
    config: Config, frozen_layers: Collection[int] = ()
) -> optax.GradientTransformation:
    """Adam at the authors' learning rate, for teacher and students alike.

    Layers whose index is in `frozen_layers` get zero updates (`Config.freeze`).
    """
    adam = optax.adam(config.learning_rate)
    if not frozen_layers:
        return adam

    def frozen_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: layer_index(path) in frozen_layers, params
        )

    return optax.chain(adam, optax.masked(optax.set_to_zero(), frozen_mask))


def init_optimizer(config: Config, params, frozen_layers: Collection[int] = ()):
    """Optimizer state for a stack of models (leading seed axis), laid out like the models."""
    layout = jax.tree.leaves(params)[0].sharding
    optimizer = make_optimizer(config, frozen_layers)
    return jax.jit(jax.vmap(optimizer.init), out_shardings=layout)(params)


def noise_batch_order(order_key, epoch, steps: int):
    """Which noise batches an epoch visits, in order: all `steps` of them, reshuffled per epoch.

    The batches themselves are fixed (`data.student_batch(kind, noise_key, b)`): every epoch sees
    the same noise images, as the authors' fixed set, only in a new order.
    """
    return jax.random.permutation(jax.random.fold_in(order_key, epoch), steps)


def make_teacher_epoch(network: Network, config: Config) -> Callable:
    """Epoch of teacher training on MNIST: cross-entropy on the regular logits only.

    Returns epoch(params, opt_state, shuffle_keys, epoch, images, labels) ->
    (params, opt_state, mean_loss): params/opt_state/shuffle_keys and labels [S, N] have a
    leading seed axis (each seed may learn its own labelling), images uint8 [N, 28, 28] are
    shared by every seed. Each seed reshuffles with fold_in(shuffle_key, epoch) and drops the
    last partial batch.
    """
    optimizer = make_optimizer(config)
    batch_size = config.batch_size

    def loss_fn(params, images_BxD, labels_B):
        return teacher_loss(network.apply(params, images_BxD), labels_B)

    def one_seed(params, opt_state, shuffle_key, epoch, images, labels):
        steps = images.shape[0] // batch_size
        order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), images.shape[0])
        batches_SxB = order[: steps * batch_size].reshape(steps, batch_size)

        def train_step(carry, batch_indices):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(
                params, preprocess(images[batch_indices]), labels[batch_indices]
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(train_step, (params, opt_state), batches_SxB)
        return params, opt_state, losses.mean()

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, None, None, 0)))


def make_student_epoch(
    network: Network,
    config: Config,
    outputs: Mapping[str, str],
    probe: Callable | None = None,
    frozen_layers: Mapping[str, Collection[int]] | None = None,
) -> Callable:
    """Epoch of imitation on noise for several students of the same teacher at once.

    `outputs` maps each student's name to the logits it imitates ("aux" or "all");
    `frozen_layers` (optional) maps a name to the layer indices that student never updates.
    Returns epoch(students, opt_states, teacher_params, noise_keys, order_keys, epoch,
    probe_state, train_images) -> (students, opt_states, mean_losses, probes), with dicts
    keyed by student name and a leading seed axis everywhere but `train_images` (read only
    when `config.student_inputs` uses digits). The teacher's logits on each input batch are
    computed once and shared by all its students. Batch b of every epoch is the same images
    (`data.student_batch(kind, noise_key, b)`); only the order of the batches changes.

    `probe(name, student_params, probe_state) -> metrics` (optional) runs after every
    `config.probe_every`-th step of the run; `probes` holds its metrics for every step of the
    epoch (zeros where it did not run: see `probed_steps`).
    """
    frozen_layers = frozen_layers or {}
    optimizers = {name: make_optimizer(config, frozen_layers.get(name, ())) for name in outputs}
    steps = config.noise_steps

    def loss_fn(params, noise_BxD, teacher_logits_BxK, student_outputs):
        student_logits = network.apply(params, noise_BxD)
        return imitation_loss(
            student_logits,
            teacher_logits_BxK,
            outputs=student_outputs,
            kind=config.imitation_loss,
            temperature=config.temperature,
        )

    def probe_all(students, probe_state):
        return {name: probe(name, students[name], probe_state) for name in outputs}

    def one_seed(
        students, opt_states, teacher_params, noise_key, order_key, epoch, probe_state, images
    ):
        def train_step(carry, step_and_batch):
            students, opt_states = carry
            step, batch_index = step_and_batch
            noise = student_batch(
                config.student_inputs,
                noise_key,
                batch_index,
                batch_size=config.batch_size,
                input_dim=network.sizes[0],
                train_images=images,
            )
            teacher_logits = network.apply(teacher_params, noise)
            new_students, new_opt_states, losses = {}, {}, {}
            for name, student_outputs in outputs.items():
                losses[name], grads = jax.value_and_grad(loss_fn)(
                    students[name], noise, teacher_logits, student_outputs
                )
                updates, new_opt_states[name] = optimizers[name].update(
                    grads, opt_states[name], students[name]
                )
                new_students[name] = optax.apply_updates(students[name], updates)
            if probe is None:
                return (new_students, new_opt_states), (losses, None)
            # The predicate depends on the step alone, not on the seed, so under vmap this
            # stays a real branch: the probe costs nothing on the steps it skips.
            metrics = jax.lax.cond(
                (epoch * steps + step + 1) % config.probe_every == 0,
                probe_all,
                lambda s, p: jax.tree.map(
                    lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), jax.eval_shape(probe_all, s, p)
                ),
                new_students,
                probe_state,
            )
            return (new_students, new_opt_states), (losses, metrics)

        batch_order = noise_batch_order(order_key, epoch, steps)
        (students, opt_states), (losses, probes) = jax.lax.scan(
            train_step, (students, opt_states), (jnp.arange(steps), batch_order)
        )
        return students, opt_states, jax.tree.map(jnp.mean, losses), probes

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, 0, 0, None, 0, None)))


def probed_steps(config: Config, epoch: int) -> list[tuple[int, int]]:
    """(index within the epoch, step count of the run) of each probe that ran in `epoch`."""
    if not config.probe_every:
        return []
    steps = config.noise_steps
    return [
        (i, epoch * steps + i + 1)
        for i in range(steps)
        if (epoch * steps + i + 1) % config.probe_every == 0
    ]


def make_evaluate(network: Network) -> Callable:
    """accuracy(params[S], images uint8 [N, 28, 28], labels [N]) -> [S] test accuracies."""

    def one_seed(params, images, labels):
        return accuracy(network.apply(params, preprocess(images)), labels)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))
