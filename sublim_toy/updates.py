"""What every student update did: its size, its angle to the teacher's move, what a projection
removed from it, and the imitation loss it started from.

Theorem 1 (section 6.1) is about one small step; these numbers follow every step of a real run.
The per-step update norm is what the step-size boundary of the theorem is set beside
(boundary.py); the sign of cos(update, theta_T - theta_T(0)) says whether each step, not only
the displacement the probes measure, goes the teacher's way; the loss curves show whether a
projected student (projection.py) still imitates as fast as an unprojected one. Computed inside
the training step for every step (a few dot products over the parameters); summarised per
student and seed in every results file, and kept step by step every `Config.log_every` steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu

from sublim_toy.config import Config
from sublim_toy.probes import layer_cosines

STEP_METRICS = ("loss", "update_norm", "cos", "removed")


def step_metrics(loss, update, teacher_move, removed) -> dict:
    """One student's step: its loss, |update|, cos(update, theta_T - theta_T(0)) (0 where either
    is zero) and the removed fraction |cos(update before projection, d)| (0 unprojected)."""
    norm = otu.tree_norm(update)
    norms = norm * otu.tree_norm(teacher_move)
    dot = otu.tree_vdot(update, teacher_move)
    cos = jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)
    return {"loss": loss, "update_norm": norm, "cos": cos, "removed": removed}


@jax.jit
def move_cosines(params, start, teacher_move):
    """[S] and [S, L]: cos(theta_S(T) - theta_S(0), theta_T - theta_T(0)) at the end of the run,
    over all parameters and per layer, for a stack of seeds."""

    def one_seed(params, start, move):
        per_layer, overall = layer_cosines(jax.tree.map(jnp.subtract, params, start), move)
        return overall, per_layer

    return jax.vmap(one_seed)(params, start, teacher_move)


def updates_record(config: Config, epochs: list[dict], cos_end: dict, names) -> dict:
    """Per student: the summaries of every step (mean and largest update norm, fraction of
    steps with cos(update, teacher move) > 0, mean removed fraction, first and last loss) per
    seed, the displacement's cosine with the teacher's move at the end (overall and per layer),
    and with `config.log_every` the metrics of every log_every-th step [seeds][steps].

    `epochs` holds each epoch's step metrics {name: {metric: [S, steps]}} as host arrays.
    """
    logged = []
    total = config.student_epochs * config.noise_steps
    if config.log_every:
        logged = list(range(config.log_every, total + 1, config.log_every))
    record = {"log_every": config.log_every, "steps": logged}
    for name in names:
        per_step = {
            metric: np.concatenate([epoch[name][metric] for epoch in epochs], axis=1)
            if epochs
            else np.zeros((len(cos_end[name][0]), 0))
            for metric in STEP_METRICS
        }
        cos, norm = per_step["cos"], per_step["update_norm"]
        summary = {
            "update_norm_mean": _per_seed(np.mean, norm),
            "update_norm_max": _per_seed(np.max, norm),
            "cos_positive_fraction": _per_seed(np.mean, cos > 0),
            "removed_mean": _per_seed(np.mean, per_step["removed"]),
            "loss_first": _per_seed(lambda row: row[0], per_step["loss"]),
            "loss_last": _per_seed(lambda row: row[-1], per_step["loss"]),
            "cos_end": np.asarray(cos_end[name][0]).tolist(),
            "cos_end_layers": np.asarray(cos_end[name][1]).tolist(),
        }
        columns = np.asarray(logged, dtype=int) - 1
        record[name] = {
            **summary,
            **{metric: values[:, columns].tolist() for metric, values in per_step.items()},
        }
    return record


def _per_seed(reduce, values_SxT) -> list:
    """reduce over each seed's steps; None for a run without steps."""
    values_SxT = np.asarray(values_SxT, dtype=np.float64)
    if values_SxT.shape[1] == 0:
        return [None] * values_SxT.shape[0]
    return [float(reduce(row)) for row in values_SxT]
