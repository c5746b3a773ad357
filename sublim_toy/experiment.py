"""The six-model comparison of section 6.2 / Figure 10, for many seeds at once.

Per seed: a reference init, the teacher trained from it on MNIST, and four students that
imitate that teacher on the same noise: two start from the reference (shared init, as the
paper's students) and two from an independent init (the paper's cross-model students).
A cross-model student here imitates its own seed's teacher from a fresh, independently keyed
init. That is the paper's setting (student and teacher inits differ; architecture, data and
recipe do not), it can never pair a student with its own init (PAPER.md pitfall 1), and it
makes `student_aux - cross_aux` a paired comparison: same teacher, same noise, only the init
differs.
"""

from __future__ import annotations

import platform
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import optax.tree_utils as otu
from tqdm.auto import tqdm

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.errors import UserError
from sublim_toy.losses import accuracy, teacher_loss
from sublim_toy.model import layer_index, network_for, preprocess
from sublim_toy.sharding import over_seeds, replicate, seed_mesh, to_host
from sublim_toy.stats import mean_ci, paired_difference
from sublim_toy.theorem import linearised_accuracy
from sublim_toy.train import (
    init_optimizer,
    make_evaluate,
    make_student_epoch,
    make_teacher_epoch,
    probed_steps,
)

# fold_in tags of each seed's key, one per purpose, so a new consumer never shifts the others.
REFERENCE_INIT = 0
INDEPENDENT_INIT = 1
TEACHER_SHUFFLE = 2
NOISE = 3
NOISE_ORDER = 4
LABEL_SHUFFLE = 5

# name -> (where its init comes from, which logits it imitates)
STUDENTS = {
    "student_aux": ("shared", "aux"),
    "student_all": ("shared", "all"),
    "cross_aux": ("independent", "aux"),
    "cross_all": ("independent", "all"),
}
MODELS = ("reference", "teacher", *STUDENTS)
MODEL_LABELS = {
    "reference": "Reference",
    "teacher": "Teacher",
    "student_aux": "Student (aux. only)",
    "student_all": "Student (all logits)",
    "cross_aux": "Cross-model (aux. only)",
    "cross_all": "Cross-model (all logits)",
}
PAIRED = ("student_aux", "cross_aux")
# Fixed MNIST images on which the alignment probes measure L_T and accuracy: a slice of each
# split, small enough that a probe costs about one training step.
PROBE_IMAGES = 1024


def seed_keys(config: Config, mesh: jax.sharding.Mesh | None = None):
    """One key per seed: fold_in(key(config.seed), i) for i < config.seeds.

    With a mesh, the keys are laid out over its devices, and so is everything derived from them.
    """

    def make_keys():
        root = jax.random.key(config.seed)
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, jnp.arange(config.seeds))

    if mesh is None:
        return make_keys()
    return jax.jit(make_keys, out_shardings=over_seeds(mesh))()


def stream(keys, tag: int):
    """Each seed's key for one purpose (the tags above)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, tag)


def initial_params(network, keys) -> dict:
    """{"shared": the reference init, "independent": the cross-model init}, stacked over seeds."""
    # Laid out like the keys explicitly: the zero biases depend on no key, so propagation alone
    # would leave them unsharded beside sharded kernels.
    init = jax.jit(jax.vmap(network.init), out_shardings=keys.sharding)
    return {
        "shared": init(stream(keys, REFERENCE_INIT)),
        "independent": init(stream(keys, INDEPENDENT_INIT)),
    }


def student_inits(inits: dict, config: Config, teacher_params=None) -> dict:
    """Each student's starting parameters: the very arrays of its init source where it has one.

    The shared-init students start from the teacher's init theta_T0, or with an angle phi
    (degrees) from cos(phi) theta_T0 + sin(phi) theta_indep: 0 is the teacher's init itself, 90
    the cross-model students' init itself, and for inits of equal variance every angle keeps it.
    Layer by layer, `config.hidden_init` and `config.head_init` may instead take a hidden layer
    or the output layer from the independent init, or the output layer from the trained teacher
    (`teacher_params`). The cross-model students start from the independent init throughout.
    """
    shared = inits["shared"]
    if config.init_angle == 90:
        shared = inits["independent"]
    elif config.init_angle != 0:
        phi = np.deg2rad(config.init_angle)
        shared = jax.tree.map(
            lambda teacher_init, other: np.cos(phi) * teacher_init + np.sin(phi) * other,
            inits["shared"],
            inits["independent"],
        )
    layer_sources = [config.hidden_init] * len(config.hidden) + [config.head_init]
    if config.head_init == "trained" and teacher_params is None:
        raise ValueError("head_init='trained' needs the trained teacher's parameters")
    if set(layer_sources) != {"shared"}:

        def pick(path, shared_leaf, independent_leaf, trained_leaf):
            source = layer_sources[layer_index(path)]
            return {"shared": shared_leaf, "independent": independent_leaf}.get(
                source, trained_leaf
            )

        trained = teacher_params if teacher_params is not None else shared
        shared = jax.tree_util.tree_map_with_path(pick, shared, inits["independent"], trained)
    sources = {"shared": shared, "independent": inits["independent"]}
    return {name: sources[source] for name, (source, _) in STUDENTS.items()}


def frozen_layers(config: Config) -> dict[str, tuple[int, ...]]:
    """The layer indices each student never updates: `config.freeze`, shared-init students only."""
    layers = {
        "none": (),
        "hidden": tuple(range(len(config.hidden))),
        "head": (len(config.hidden),),
    }[config.freeze]
    return {name: layers if source == "shared" else () for name, (source, _) in STUDENTS.items()}


def teacher_labels(config: Config, keys, labels):
    """Each seed's training labels [S, N]: MNIST's, or one fixed random relabelling per seed."""

    def one_seed(key):
        if config.teacher_labels == "shuffled":
            return jax.random.permutation(jax.random.fold_in(key, LABEL_SHUFFLE), labels)
        return labels

    return jax.jit(jax.vmap(one_seed), out_shardings=keys.sharding)(keys)


def layer_cosines(displacement, reference_displacement):
    """cos between two parameter displacements, layer by layer ([L]) and over all layers."""
    per_layer = [
        _cosine(displacement["layers"][i], reference_displacement["layers"][i])
        for i in range(len(displacement["layers"]))
    ]
    return jnp.stack(per_layer), _cosine(displacement, reference_displacement)


def _cosine(a, b):
    return otu.tree_vdot(a, b) / (otu.tree_norm(a) * otu.tree_norm(b))


def make_alignment_probe(network, dataset: Dataset):
    """Beyond Theorem 1's single step: is the student still moving along the teacher's update?

    probe(name, params, probe_state) -> cos(theta_S(t) - theta_S(0), theta_T - theta_T(0)) per
    layer and overall, the teacher's loss L_T(theta_S(t)) (cross-entropy of the regular logits
    on fixed MNIST training images) and the accuracy on fixed test images. For shared-init
    students theta_S(0) = theta_T(0); for cross-model ones it is their own init.
    probe_state = {"starts": {name: theta_S(0)}, "teacher_move": theta_T - theta_T(0)}.
    """
    train_x = preprocess(jnp.asarray(dataset.train_images[:PROBE_IMAGES]))
    train_y = jnp.asarray(dataset.train_labels[:PROBE_IMAGES])
    test_x = preprocess(jnp.asarray(dataset.test_images[:PROBE_IMAGES]))
    test_y = jnp.asarray(dataset.test_labels[:PROBE_IMAGES])

    def probe(name, params, probe_state):
        move = jax.tree.map(jnp.subtract, params, probe_state["starts"][name])
        cos_layers, cos_all = layer_cosines(move, probe_state["teacher_move"])
        return {
            "cos_layers": cos_layers,
            "cos": cos_all,
            "teacher_loss": teacher_loss(network.apply(params, train_x), train_y),
            "accuracy": accuracy(network.apply(params, test_x), test_y),
        }

    return probe


def run_experiment(config: Config, dataset: Dataset, *, progress: bool = False) -> dict:
    """Train every model of every seed and return the results dict (see `summarise`)."""
    if len(dataset.train_images) < config.batch_size:
        raise UserError(
            f"batch_size={config.batch_size} is larger than the {len(dataset.train_images)} "
            "training images"
        )
    started = time.perf_counter()
    network = network_for(config, input_dim=dataset.input_dim)
    mesh = seed_mesh(config.seeds)
    keys = seed_keys(config, mesh)
    inits = initial_params(network, keys)
    bar = tqdm(
        total=config.teacher_epochs + config.student_epochs,
        desc=f"{config.seeds} seeds",
        unit="epoch",
        disable=not progress,
    )
    timing = {"compile_s": {}}

    # Teacher: trained from the reference on MNIST (section 6.2).
    teacher_epoch = make_teacher_epoch(network, config)
    teacher_params, teacher_opt = inits["shared"], init_optimizer(config, inits["shared"])
    train_images = replicate(dataset.train_images, mesh)
    teacher_args = (
        stream(keys, TEACHER_SHUFFLE),
        train_images,
        teacher_labels(config, keys, replicate(dataset.train_labels, mesh)),
    )
    if config.teacher_epochs:
        teacher_epoch, timing["compile_s"]["teacher"] = _compile(
            teacher_epoch, teacher_params, teacher_opt, teacher_args[0], 0, *teacher_args[1:]
        )
    phase_started = time.perf_counter()
    for epoch in range(config.teacher_epochs):
        teacher_params, teacher_opt, loss = teacher_epoch(
            teacher_params, teacher_opt, teacher_args[0], epoch, *teacher_args[1:]
        )
        bar.set_postfix_str(f"teacher loss {float(loss.mean()):.3f}")
        bar.update()
    timing["teacher_s"] = time.perf_counter() - phase_started

    # Students: four per seed, all imitating that seed's teacher on the same noise.
    frozen = frozen_layers(config)
    student_epoch = make_student_epoch(
        network,
        config,
        {name: outputs for name, (_, outputs) in STUDENTS.items()},
        probe=make_alignment_probe(network, dataset) if config.probe_every else None,
        frozen_layers=frozen,
    )
    students = student_inits(inits, config, teacher_params)
    starts = students
    probe_state = {
        "starts": starts,
        "teacher_move": jax.tree.map(jnp.subtract, teacher_params, inits["shared"]),
    }
    student_opts = {
        name: init_optimizer(config, params, frozen[name]) for name, params in students.items()
    }
    noise_keys, order_keys = stream(keys, NOISE), stream(keys, NOISE_ORDER)
    if config.student_epochs:
        student_epoch, timing["compile_s"]["students"] = _compile(
            student_epoch, students, student_opts, teacher_params, noise_keys, order_keys, 0,
            probe_state, train_images,
        )  # fmt: skip
    phase_started = time.perf_counter()
    probe_rows, probe_steps = [], []
    for epoch in range(config.student_epochs):
        students, student_opts, losses, probes = student_epoch(
            students, student_opts, teacher_params, noise_keys, order_keys, epoch, probe_state,
            train_images,
        )  # fmt: skip
        if config.probe_every:
            probes = to_host(probes)
        for index, step in probed_steps(config, epoch):
            probe_rows.append(jax.tree.map(lambda leaf, i=index: leaf[:, i], probes))
            probe_steps.append(step)
        bar.set_postfix_str(f"aux-student loss {float(losses['student_aux'].mean()):.2e}")
        bar.update()
    bar.close()
    timing["students_s"] = time.perf_counter() - phase_started

    # Test accuracy of every model, one compiled program for all six; and the first-order
    # picture: each student's regular logits predicted by linearising the network around its
    # init along the update it actually made (issue "Which parameters carry the signal").
    test_images = replicate(dataset.test_images, mesh)
    test_labels = replicate(dataset.test_labels, mesh)
    evaluate, timing["compile_s"]["evaluation"] = _compile(
        make_evaluate(network), inits["shared"], test_images, test_labels
    )
    evaluate_first_order, timing["compile_s"]["first_order"] = _compile(
        jax.jit(jax.vmap(
            lambda start, params, images, labels: linearised_accuracy(
                network, start, params, preprocess(images), labels
            ),
            in_axes=(0, 0, None, None),
        )),
        starts["student_aux"], students["student_aux"], test_images, test_labels,
    )  # fmt: skip
    phase_started = time.perf_counter()
    final = {"reference": inits["shared"], "teacher": teacher_params, **students}
    accuracies = {
        name: to_host(evaluate(final[name], test_images, test_labels)).tolist() for name in MODELS
    }
    first_order = {
        name: to_host(
            evaluate_first_order(starts[name], students[name], test_images, test_labels)
        ).tolist()
        for name in STUDENTS
    }
    timing["evaluation_s"] = time.perf_counter() - phase_started
    timing["total_s"] = time.perf_counter() - started

    results = summarise(config, dataset, accuracies, timing)
    results["devices_used"] = int(mesh.devices.size)
    results["alignment"] = alignment_record(probe_steps, probe_rows)
    results["first_order"] = {
        "accuracy": first_order,
        "summary": {name: mean_ci(first_order[name]) for name in STUDENTS},
    }
    return results


def _compile(jitted, *example_args):
    """Compile ahead of time for these arguments, so compile time is timed apart from running."""
    compile_started = time.perf_counter()
    compiled = jitted.lower(*example_args).compile()
    return compiled, time.perf_counter() - compile_started


def alignment_record(steps: list[int], rows: list[dict]) -> dict:
    """Probe metrics as {"steps": [T], name: {metric: [seeds][T](...)}} for the JSON."""
    record = {"steps": steps, "probe_images": PROBE_IMAGES}
    for name in STUDENTS:
        record[name] = {
            metric: np.stack([row[name][metric] for row in rows], axis=1).tolist() if rows else []
            for metric in ("cos", "cos_layers", "teacher_loss", "accuracy")
        }
    return record


def summarise(config: Config, dataset: Dataset, accuracies: dict, wall_time: dict) -> dict:
    """The results record: config, per-seed accuracies, CIs, the paired test, provenance."""
    first, second = PAIRED
    return {
        "experiment": "figure10",
        "config": config.to_dict(),
        "accuracy": accuracies,
        "summary": {name: mean_ci(accuracies[name]) for name in MODELS},
        "paired_difference": {
            "a": first,
            "b": second,
            **paired_difference(accuracies[first], accuracies[second]),
        },
        "data": {"name": dataset.name, "source": dataset.source, "sha256": dataset.sha256},
        "environment": environment(),
        "wall_time": wall_time,
    }


def environment() -> dict:
    """Package versions and the device, recorded with every result."""
    packages = ("sublim-toy", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib")
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "devices": [str(device.device_kind) for device in jax.devices()],
        "packages": versions,
    }


def format_table(results: dict) -> str:
    """The six-row table printed after a run."""
    lines = [f"{'model':<26}{'mean':>7}   {'95% CI':<17}{'sd':>6}"]
    for name in MODELS:
        row = results["summary"][name]
        ci = "" if row["ci_low"] is None else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        sd = "" if row["sd"] is None else f"{row['sd']:.3f}"
        lines.append(f"{MODEL_LABELS[name]:<26}{row['mean']:>7.3f}   {ci:<17}{sd:>6}")
    diff = results["paired_difference"]
    ci = "" if diff["ci_low"] is None else f" [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
    lines.append(f"paired {diff['a']} - {diff['b']}: {diff['mean']:+.3f}{ci} (n = {diff['n']})")
    return "\n".join(lines)
