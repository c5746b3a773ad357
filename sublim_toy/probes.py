"""Alignment along real distillation: does Theorem 1's one-step picture persist over training?

Every `Config.probe_every` student steps, a probe measures per seed the cosine between the
student's displacement from its init and the teacher's displacement from its init (per layer
and overall), the teacher's loss at the student and the student's accuracy on fixed images.
Probes only observe: the trained models are the same with and without them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.inputs import preprocess
from sublim_toy.losses import accuracy, teacher_loss
from sublim_toy.model import Network

# Fixed MNIST images on which the probes measure L_T and accuracy: a slice of each split,
# small enough that a probe costs about one training step.
PROBE_IMAGES = 1024
METRICS = ("cos", "cos_layers", "teacher_loss", "accuracy")


class ProbeImages(NamedTuple):
    """The fixed images every probe reads, shared by all seeds."""

    train_x: jax.Array  # [PROBE_IMAGES, D] in [-1, 1]
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array


def probe_images(dataset: Dataset) -> ProbeImages:
    return ProbeImages(
        preprocess(jnp.asarray(dataset.train_images[:PROBE_IMAGES])),
        jnp.asarray(dataset.train_labels[:PROBE_IMAGES]),
        preprocess(jnp.asarray(dataset.test_images[:PROBE_IMAGES])),
        jnp.asarray(dataset.test_labels[:PROBE_IMAGES]),
    )


def layer_cosines(displacement, reference_displacement):
    """cos between two parameter displacements, layer by layer ([L]) and over all layers."""
    per_layer = [
        _cosine(displacement["layers"][i], reference_displacement["layers"][i])
        for i in range(len(displacement["layers"]))
    ]
    return jnp.stack(per_layer), _cosine(displacement, reference_displacement)


def _cosine(a, b):
    return otu.tree_vdot(a, b) / (otu.tree_norm(a) * otu.tree_norm(b))


def alignment(network: Network, params, start, teacher_move, images: ProbeImages) -> dict:
    """One student's probe: cos(theta_S(t) - theta_S(0), theta_T - theta_T(0)) per layer and
    overall, the teacher's loss L_T(theta_S(t)) (regular-logit cross-entropy on the fixed
    training images) and the accuracy on the fixed test images.

    For shared-init students theta_S(0) = theta_T(0); for cross-model ones it is their own init.
    """
    move = jax.tree.map(jnp.subtract, params, start)
    cos_layers, cos_all = layer_cosines(move, teacher_move)
    return {
        "cos_layers": cos_layers,
        "cos": cos_all,
        "teacher_loss": teacher_loss(network.apply(params, images.train_x), images.train_y),
        "accuracy": accuracy(network.apply(params, images.test_x), images.test_y),
    }


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


def alignment_record(config: Config, probes_per_epoch: list, names) -> dict:
    """Probe metrics of every epoch as {"steps": [T], name: {metric: [seeds][T](...)}}."""
    steps, rows = [], []
    for epoch, probes in enumerate(probes_per_epoch):
        for index, step in probed_steps(config, epoch):
            rows.append(jax.tree.map(lambda leaf, i=index: leaf[:, i], probes))
            steps.append(step)
    record = {"steps": steps, "probe_images": PROBE_IMAGES}
    for name in names:
        record[name] = {
            metric: np.stack([row[name][metric] for row in rows], axis=1).tolist() if rows else []
            for metric in METRICS
        }
    return record
