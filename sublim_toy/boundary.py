"""Theorem 1's step-size boundary over init scales and along real training, beside the steps the
students' optimizers actually take.

Theorem 1 (section 6.1, Appendix C) holds for one small step: dS.dT = eps A + O(eps^2).
`theorem.step_size_boundary` finds the eps at which dS.dT / eps departs from A by 10 % and 50 %
(and where dS.dT changes sign) at one theta0. Here theta0 is a fresh init of scale 0.5, 1 or 2
(drawn as a run draws it: the scale-1 init is the run's step 0), or the aux-only shared-init
student after each epoch of a real run (teacher step and student both start there), and each
point of a study (the `optimizer` study) is set beside it by the mean size of its aux-only
student's steps.

Like with like: the boundary is a distance in parameter space, eps |dT|, along the teacher's
gradient dT = -grad L_T(theta0), over which the network is close enough to linear that one
imitation step still does what the first-order picture says. A student step of norm |du| covers
the same distance at eps_step = |du| / |dT|. A step beyond the boundary leaves the regime the
theorem describes within a single update (along its own direction, which is not dT: the
comparison is of distances, not of directions).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from sublim_toy.config import Config, value_label
from sublim_toy.data import Dataset
from sublim_toy.errors import UserError
from sublim_toy.experiment import initial_params, run_experiment
from sublim_toy.keys import seed_keys
from sublim_toy.model import network_for
from sublim_toy.results import PAIRED, check_record
from sublim_toy.stats import mean_ci
from sublim_toy.theorem import mnist_boundary

SCAN_INIT_SCALES = (0.5, 1.0, 2.0)
STUDENT = PAIRED[0]  # the aux-only shared-init student


def boundary_scan(
    dataset: Dataset, *, seed: int = 0, init_scales=SCAN_INIT_SCALES, progress: bool = False
) -> dict:
    """The boundary at fresh inits of each scale, and at the aux-only student of a real run
    (the paper's recipe, seed 0 of root seed `seed`) after 0 steps and after each epoch."""
    scales = [
        mnist_boundary(dataset, seed=seed, init_scale=scale, params=_run_init(seed, scale))
        for scale in init_scales
    ]
    config = Config(seeds=1, seed=seed, probe_every=0)
    states = [_run_init(seed, config.init_scale)]

    def keep(params: dict) -> None:
        states.append(_first_seed(params[STUDENT]))

    run = run_experiment(config, dataset, progress=progress, on_student_epoch=keep)
    training = [
        {
            "step": epoch * config.noise_steps,
            "epoch": epoch,
            **mnist_boundary(dataset, seed=seed, params=params),
        }
        for epoch, params in enumerate(states)
    ]
    return {
        "seed": seed,
        "init_scales": scales,
        "training": training,
        "run": {
            "config": run["config"],
            "accuracy": {name: run["accuracy"][name][0] for name in ("teacher", STUDENT)},
            # the paper's Adam 3e-4: the size of its aux-only student's steps (|du|), to set
            # beside the boundary's distances
            "step_norm_mean": run["updates"][STUDENT]["update_norm_mean"][0],
            "step_norm_max": run["updates"][STUDENT]["update_norm_max"][0],
        },
    }


def _run_init(seed: int, init_scale: float):
    """Seed 0's shared init as a run of root seed `seed` draws it (float32; the check widens
    it to float64), so that the fresh init of scale 1 is the trained student's step 0."""
    config = Config(seeds=1, seed=seed, init_scale=init_scale)
    return _first_seed(initial_params(network_for(config), seed_keys(seed, 1))["shared"])


def _first_seed(params):
    return jax.tree.map(lambda leaf: np.asarray(leaf[0]), params)


def read_points(directory: Path) -> list[dict]:
    """The points of a study directory (points/*.json), in the order its sweep.json lists them."""
    directory = Path(directory)
    paths = sorted((directory / "points").glob("*.json"))
    if not paths:
        raise UserError(f"--updates-from {directory}: no points/*.json in it (a study directory)")
    try:
        order = json.loads((directory / "sweep.json").read_text())["points"]
        paths.sort(key=lambda path: order.index(path.stem) if path.stem in order else len(order))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable sweep.json: file order
    points = []
    for path in paths:
        try:
            point = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read {path}: {err}") from None
        check_record(point, str(path))
        if not (point.get("updates") or {}).get(STUDENT):
            raise UserError(f"{path} records no step sizes (run before they were recorded)")
        points.append(point)
    return points


def updates_beside_boundary(scan: dict, points: list[dict]) -> list[dict]:
    """Each point's aux-only student: its mean (over seeds) per-step update norm and largest
    step, both in units of |dT| at the fresh init of its scale (eps_step), against that init's
    10 % and 50 % boundaries; its accuracy and paired gain over the cross-model student."""
    by_scale = {boundary["init_scale"]: boundary for boundary in scan["init_scales"]}
    rows = []
    for point in points:
        config, updates = point["config"], point["updates"][STUDENT]
        boundary = by_scale.get(config["init_scale"])
        step = mean_ci(updates["update_norm_mean"])["mean"]
        largest = mean_ci(updates["update_norm_max"])["mean"]
        row = {
            "label": optimizer_label(config),
            "config": config,
            "step_norm": step,
            "largest_step_norm": largest,
            "accuracy": point["summary"][STUDENT],
            "paired_gain": point["paired_difference"],
            "cos_end": mean_ci(updates["cos_end"]),
            "eps_step": None,
            "eps_largest_step": None,
            "beyond": None,
        }
        if boundary is not None and step is not None:
            norm = boundary["teacher_update_norm"]
            row["eps_step"] = step / norm
            row["eps_largest_step"] = None if largest is None else largest / norm
            row["beyond"] = {
                f"{crossing['tolerance']:g}": crossing["eps"] is not None
                and step / norm > crossing["eps"]
                for crossing in boundary["departures"]
            }
        rows.append(row)
    return rows


def optimizer_label(config: dict) -> str:
    """'adam 0.0003', 'sgd 1.0 momentum 0.9', 'adam 0.0003 weight decay 0.0001 coupled',
    'adam 0.0003 batch 64': a point of the optimizer study in a few words."""
    lr = config.get("student_learning_rate") or config["learning_rate"]
    words = [config.get("student_optimizer", "adam"), value_label(lr)]
    if config.get("momentum"):
        words.append(f"momentum {value_label(config['momentum'])}")
    if config.get("weight_decay"):
        words.append(f"weight decay {value_label(config['weight_decay'])}")
        words.append(config.get("weight_decay_mode", "decoupled"))
    batch = config.get("student_batch_size")
    if batch and batch != config["batch_size"]:
        words.append(f"batch {batch}")
    return " ".join(words)
