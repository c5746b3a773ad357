"""The six-model comparison of section 6.2 / Figure 10, for many seeds at once.

Per seed: a reference init, the teacher trained from it on MNIST, and four students that
imitate that teacher on the same noise: two start from the reference (shared init, as the
paper's students) and two from an independent init (the paper's cross-model students; see
`results.STUDENTS`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.errors import ConfigError
from sublim_toy.first_order import make_first_order_evaluate
from sublim_toy.keys import Stream, seed_keys, stream
from sublim_toy.model import Network, init_sd, layer_index, network_for, student_network_for
from sublim_toy.probes import alignment_record, probe_images
from sublim_toy.projection import fixed_directions, gradient_digits, projected_students
from sublim_toy.results import MODELS, STUDENT_OUTPUTS, STUDENTS, record
from sublim_toy.sharding import over_seeds, padded_seed_count, replicate, seed_mesh, to_host
from sublim_toy.train import (
    StudentShared,
    StudentState,
    TeacherState,
    compile_ahead,
    init_optimizer,
    make_evaluate,
    make_student_epoch,
    make_teacher_epoch,
    make_teacher_targets,
    run_phase,
    timed_call,
)
from sublim_toy.updates import move_cosines, updates_record

# Matmuls in true float32 on every backend: on recent GPUs JAX's default would use TensorFloat-32
# (10-bit mantissas), and the numbers would depend on the hardware. On the CPU it changes nothing.
MATMUL_PRECISION = "float32"


def at_experiment_precision(function):
    """Run `function` with every matmul at MATMUL_PRECISION."""

    @functools.wraps(function)
    def at_precision(*args, **kwargs):
        with jax.default_matmul_precision(MATMUL_PRECISION):
            return function(*args, **kwargs)

    return at_precision


@at_experiment_precision
def run_experiment(
    config: Config,
    dataset: Dataset,
    *,
    progress: bool = False,
    on_student_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train every model of every seed and return the results record (`results.record`).

    `on_student_epoch(params)` (optional) sees every student's parameters {name: [S']} after
    each student epoch, S' being the seed axis as trained (padded to a multiple of the devices,
    `sharding.padded_seed_count`; the first `config.seeds` are the run's seeds).
    """
    if len(dataset.train_images) < config.batch_size:
        raise ConfigError(
            f"larger than the {len(dataset.train_images)} training images",
            batch_size=config.batch_size,
        )
    started = time.perf_counter()
    network = network_for(config, input_dim=dataset.input_dim)
    student_network = student_network_for(config, input_dim=dataset.input_dim)
    mesh = seed_mesh()
    keys = seed_keys(config.seed, padded_seed_count(config.seeds), over_seeds(mesh))
    inits = initial_params(network, keys, student_network)
    train_images = replicate(dataset.train_images, mesh)
    bar = EpochBar(config, enabled=progress)

    # Teacher: the reference trained on MNIST, cross-entropy on the regular logits only.
    teacher = run_phase(
        make_teacher_epoch(network, config),
        teacher_state(config, keys, inits["shared"], replicate(dataset.train_labels, mesh)),
        train_images,
        config.teacher_epochs,
        bar.teacher_epoch,
    )
    teacher_params = teacher.state.params

    # Students: four per seed, all imitating that seed's teacher on the same noise.
    starts = perturbed_starts(student_inits(inits, config, teacher_params), config, keys)
    noise_keys = stream(keys, Stream.NOISE)
    targets = timed_call(
        make_teacher_targets(network, config), teacher_params, noise_keys, train_images
    )
    teacher_move = teacher_move_for_students(
        config, jax.tree.map(jnp.subtract, teacher_params, inits["shared"]), inits["independent"]
    )
    students = run_phase(
        make_student_epoch(
            student_network,
            config,
            STUDENT_OUTPUTS,
            frozen_layers(config),
            projected_students(config),
        ),
        student_state(config, keys, starts, targets.value, teacher_move),
        StudentShared(
            train_images,
            probe_images(dataset) if config.probe_every else None,
            gradient_digits(config, dataset),
        ),
        config.student_epochs,
        bar.student_epoch if on_student_epoch is None else bar.student_epoch_and(on_student_epoch),
    )
    bar.close()

    # Test accuracy of all six models, and each student's first-order prediction.
    final = {"reference": inits["shared"], "teacher": teacher_params, **students.state.params}
    accuracies, at_start, first_order, evaluation = evaluate(
        network, final, starts, dataset, mesh, config.seeds, student_network
    )
    probes = (
        [to_host(m["probes"], config.seeds) for m in students.metrics] if config.probe_every else []
    )
    cos_end = {
        name: to_host(move_cosines(final[name], starts[name], teacher_move), config.seeds)
        for name in STUDENTS
    }
    steps = [to_host(m["steps"], config.seeds) for m in students.metrics]
    results = record(
        config,
        dataset,
        accuracies,
        wall_time(started, teacher, targets, students, evaluation),
        devices_used=int(mesh.devices.size),
        alignment=alignment_record(config, probes, STUDENTS),
        first_order=first_order,
        at_start=at_start,
        diverged=diverged_seeds(final, config.seeds),
        updates=updates_record(config, steps, cos_end, STUDENTS),
    )
    return {**results, "student_layers": student_layers_record(config, network, student_network)}


def student_layers_record(config: Config, network: Network, student_network: Network) -> dict:
    """What the results say about the students' layers: both architectures, which teacher layer
    each student layer is paired with (null: none), and where each student's layers start."""
    pairs = shared_layers(config)
    return {
        "teacher_sizes": list(network.sizes),
        "student_sizes": list(student_network.sizes),
        "teacher_layer": [pairs.get(layer) for layer in range(len(student_network.sizes) - 1)],
        "sources": layer_sources(config),
    }


def diverged_seeds(final: dict, seeds: int) -> dict[str, list[int]]:
    """{model: seed indices whose parameters are not all finite}, for the models that have any:
    a diverged run is reported as such, never as an accuracy of chance."""
    finite = {name: to_host(_all_finite(params), seeds) for name, params in final.items()}
    return {name: np.flatnonzero(~ok).tolist() for name, ok in finite.items() if not ok.all()}


@jax.jit
def _all_finite(params):
    """[S] bools: every parameter of the seed finite."""
    per_leaf = [
        jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(1) for leaf in jax.tree.leaves(params)
    ]
    return jnp.stack(per_leaf).all(0)


class EpochBar:
    """One progress bar over the epochs of both phases, with the last loss beside it."""

    def __init__(self, config: Config, *, enabled: bool):
        total = config.teacher_epochs + config.student_epochs
        # leave=None: kept when alone, cleared when nested under a sweep's bar of points
        self.bar = tqdm(
            total=total, desc=f"{config.seeds} seeds", unit="epoch", disable=not enabled, leave=None
        )

    def teacher_epoch(self, metrics: dict, state=None) -> None:
        self.bar.set_postfix_str(f"teacher loss {float(metrics['loss'].mean()):.3f}")
        self.bar.update()

    def student_epoch(self, metrics: dict, state=None) -> None:
        loss = float(metrics["loss"]["student_aux"].mean())
        self.bar.set_postfix_str(f"aux-student loss {loss:.2e}")
        self.bar.update()

    def student_epoch_and(self, on_params: Callable[[dict], None]) -> Callable:
        """A run_phase callback that also hands the students' parameters to `on_params`."""

        def after_epoch(metrics: dict, state: StudentState) -> None:
            self.student_epoch(metrics, state)
            on_params(state.params)

        return after_epoch

    def close(self) -> None:
        self.bar.close()


def wall_time(started: float, teacher, targets, students, evaluation: dict) -> dict:
    """Seconds per phase, compile times apart, as recorded with the results. The teacher's
    logits on the noise (`targets`) are part of the student phase."""
    phases = {"teacher": teacher, "targets": targets, "students": students}
    compiled = {name: run.compile_s for name, run in phases.items() if run.compile_s is not None}
    return {
        "compile_s": {**compiled, **evaluation["compile_s"]},
        "teacher_s": teacher.run_s,
        "students_s": targets.run_s + students.run_s,
        "evaluation_s": evaluation["run_s"],
        "total_s": time.perf_counter() - started,
    }


def initial_params(network: Network, keys, student_network: Network | None = None) -> dict:
    """{"shared": the reference init, "independent": the cross-model init}, stacked over seeds;
    the independent init has the students' architecture (`student_network`, default the
    teacher's)."""
    student_network = student_network or network
    return {
        "shared": _batched_init(network, keys)(stream(keys, Stream.REFERENCE_INIT)),
        "independent": _batched_init(student_network, keys)(stream(keys, Stream.INDEPENDENT_INIT)),
    }


def _batched_init(network: Network, keys):
    """One architecture's init, vmapped over keys laid out like `keys`."""
    return _compiled_init(
        network, jax.ShapeDtypeStruct(keys.shape, keys.dtype, sharding=keys.sharding)
    )


@functools.lru_cache(maxsize=8)
def _compiled_init(network: Network, keys_like: jax.ShapeDtypeStruct):
    """Compiled once per process and key layout (compiling it costs seconds on a CPU, and every
    point of a study draws two inits). Laid out like the keys explicitly: the zero biases
    depend on no key, so propagation alone would leave them unsharded beside sharded kernels."""
    jitted = jax.jit(jax.vmap(network.init), out_shardings=keys_like.sharding)
    return compile_ahead(jitted, keys_like)[0]


def shared_layers(config: Config) -> dict[int, int]:
    """{student layer: teacher layer} for the layers whose init a shared-init student can take
    from the teacher's: every layer when the students have the teacher's widths; else the first
    layer when the first widths match and the head when the last ones do (the layers between
    have no counterpart of the same place and shape)."""
    student, teacher = config.student_widths, tuple(config.hidden)
    if student == teacher:
        return {layer: layer for layer in range(len(teacher) + 1)}
    pairs = {}
    if student[0] == teacher[0]:
        pairs[0] = 0
    if student[-1] == teacher[-1]:
        pairs[len(student)] = len(teacher)
    return pairs


def layer_sources(config: Config) -> dict[str, list[str]]:
    """Where each layer of each student starts: "shared" (the teacher's init, at init_angle),
    "independent" (the cross-model init) or "trained" (the trained teacher's head). The
    shared-init students follow `hidden_init` and `head_init` where `shared_layers` allows and
    start independent elsewhere; the cross-model students start independent throughout.
    Recorded with the results (`student_layers`), before any perturbation."""
    pairs = shared_layers(config)
    hidden = len(config.student_widths)
    wanted = [config.hidden_init] * hidden + [config.head_init]
    shared = [source if layer in pairs else "independent" for layer, source in enumerate(wanted)]
    return {
        name: shared if source == "shared" else ["independent"] * (hidden + 1)
        for name, (source, _) in STUDENTS.items()
    }


def student_inits(inits: dict, config: Config, teacher_params=None) -> dict:
    """Each student's starting parameters: the very arrays of its init source where it has one.

    The shared-init students start from the teacher's init theta_T0, or with an angle phi
    (degrees) from cos(phi) theta_T0 + sin(phi) theta_indep: 0 is the teacher's init itself, 90
    the cross-model students' init itself, and for inits of equal variance every angle keeps it.
    Layer by layer (`layer_sources`), `config.hidden_init` and `config.head_init` may instead
    take a hidden layer or the output layer from the independent init, or the output layer from
    the trained teacher (`teacher_params`); with another architecture (`Config.student_hidden`)
    only the layers `shared_layers` pairs with the teacher's come from it. The cross-model
    students start from the independent init throughout.
    """
    sources = layer_sources(config)
    shared_sources = next(sources[name] for name, (src, _) in STUDENTS.items() if src == "shared")
    if "trained" in shared_sources and teacher_params is None:
        raise ValueError("head_init='trained' needs the trained teacher's parameters")
    pairs = shared_layers(config)
    teacher = {"shared": _leaves(inits["shared"]), "trained": _leaves(teacher_params)}
    phi = np.deg2rad(config.init_angle)

    def pick(path, independent):
        layer, name = layer_index(path), path[2].key
        source = shared_sources[layer]
        if source == "independent":
            return independent
        teacher_leaf = teacher[source][pairs[layer], name]
        if source == "trained" or config.init_angle == 0:
            return teacher_leaf
        if config.init_angle == 90:
            return independent
        return np.cos(phi) * teacher_leaf + np.sin(phi) * independent

    shared = jax.tree_util.tree_map_with_path(pick, inits["independent"])
    by_source = {"shared": shared, "independent": inits["independent"]}
    return {name: by_source[source] for name, (source, _) in STUDENTS.items()}


def _leaves(params) -> dict[tuple[int, str], jax.Array]:
    """{(layer, "kernel" | "bias"): leaf} of a parameter tree ({} for None)."""
    if params is None:
        return {}
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {(layer_index(path), path[2].key): leaf for path, leaf in flat}


def teacher_move_for_students(config: Config, teacher_move, student_start):
    """The teacher's move theta_T - theta_T(0) laid out like a student (for the probes): each
    student layer paired with a teacher layer (`shared_layers`) holds that layer's move, the
    others zeros (their cosine with the teacher's move is then undefined, and recorded as such).
    With the teacher's widths it is the teacher's move itself."""
    if config.student_widths == tuple(config.hidden):
        return teacher_move
    pairs, moves = shared_layers(config), _leaves(teacher_move)

    def pick(path, leaf):
        layer = layer_index(path)
        if layer not in pairs:
            return jnp.zeros_like(leaf)
        return moves[pairs[layer], path[2].key]

    return jax.tree_util.tree_map_with_path(pick, student_start)


def perturbed_starts(starts: dict, config: Config, keys) -> dict:
    """The students' starts with `Config.perturb`'s Gaussian noise added to the shared-init
    students' named layers (the cross-model students keep their independent init: the control).

    Each parameter of a perturbed layer gets N(0, (perturb_std x sd of its own init draw)^2)
    (`model.init_sd`), drawn per seed from its own stream (`Stream.PERTURBATION`, one key per
    layer and leaf); std 0 is the unperturbed start itself, array for array.
    """
    if config.perturb == "none" or config.perturb_std == 0:
        return starts
    shared = [name for name, (source, _) in STUDENTS.items() if source == "shared"]
    start = starts[shared[0]]  # the shared-init students share one start
    head = len(start["layers"]) - 1
    layers = {"head": {head}, "hidden": set(range(head)), "all": set(range(head + 1))}
    perturbed = layers[config.perturb]
    fan_in = {i: start["layers"][i]["kernel"][...].shape[-2] for i in range(head + 1)}
    perturb_keys = stream(keys, Stream.PERTURBATION)

    def add_noise(path, leaf):
        layer, name = layer_index(path), path[2].key
        if layer not in perturbed:
            return leaf
        sd = config.perturb_std * init_sd(config.init, fan_in[layer], config.init_scale)[name]
        if sd == 0:  # a zero-initialised bias
            return leaf

        def draw(key):  # one seed's noise, keyed by (layer, leaf)
            leaf_key = jax.random.fold_in(key, 2 * layer + (name == "bias"))
            return jax.random.normal(leaf_key, leaf.shape[1:], leaf.dtype)

        noise = jax.vmap(draw)(perturb_keys)
        return leaf + sd * noise

    noisy = jax.tree_util.tree_map_with_path(add_noise, start)
    return {name: noisy if name in shared else params for name, params in starts.items()}


def frozen_layers(config: Config) -> dict[str, tuple[int, ...]]:
    """The layer indices each student never updates: `config.freeze`, shared-init students only."""
    hidden = len(config.student_widths)
    layers = {"none": (), "hidden": tuple(range(hidden)), "head": (hidden,)}[config.freeze]
    return {name: layers if source == "shared" else () for name, (source, _) in STUDENTS.items()}


def teacher_labels(config: Config, keys, labels):
    """Each seed's training labels [S, N]: MNIST's, or one fixed random relabelling per seed."""

    def one_seed(key):
        if config.teacher_labels == "shuffled":
            return jax.random.permutation(key, labels)
        return labels

    shuffle_keys = stream(keys, Stream.LABEL_SHUFFLE)
    return jax.jit(jax.vmap(one_seed), out_shardings=keys.sharding)(shuffle_keys)


def teacher_state(config: Config, keys, reference, labels) -> TeacherState:
    """The teacher phase's start: the reference init, fresh Adam, each seed's keys and labels."""
    return TeacherState(
        params=reference,
        opt_state=init_optimizer(config, reference),
        shuffle_key=stream(keys, Stream.TEACHER_SHUFFLE),
        labels=teacher_labels(config, keys, labels),
    )


def student_state(config: Config, keys, starts, teacher_logits, teacher_move) -> StudentState:
    """The student phase's start: each student's init and fresh optimizer state, the teacher's
    logits on every input batch, the input keys, the teacher's move theta_T - theta_T(0) (for
    the step metrics and the probes), with probes the starts, and the fixed direction a
    projection removes (`projection.fixed_directions`)."""
    frozen = frozen_layers(config)
    probing = bool(config.probe_every)
    removed = None if teacher_move is None else fixed_directions(config, keys, teacher_move)
    return StudentState(
        params=starts,
        opt_state={
            name: init_optimizer(config, params, frozen[name], student=True)
            for name, params in starts.items()
        },
        teacher_logits=teacher_logits,
        noise_key=stream(keys, Stream.NOISE),
        order_key=stream(keys, Stream.NOISE_ORDER),
        starts=starts if probing else None,
        teacher_move=teacher_move,
        removed_direction=removed,
    )


def evaluate(
    network: Network,
    final: dict,
    starts: dict,
    dataset: Dataset,
    mesh,
    seeds: int,
    student_network: Network | None = None,
):
    """Test accuracy of every model, of every student at step 0, and the first-order prediction
    of every student, per seed; one compiled program each for all models of an architecture
    (the students' `student_network`, default the teacher's), and one for every student's
    accuracy at step 0 with its first-order prediction."""
    test_images = replicate(dataset.test_images, mesh)
    test_labels = replicate(dataset.test_labels, mesh)
    student = next(iter(STUDENTS))
    student_network = student_network or network
    accuracy, accuracy_compile_s = compile_ahead(
        make_evaluate(network), final["reference"], test_images, test_labels
    )
    student_accuracy = accuracy
    if student_network != network:
        student_accuracy, student_compile_s = compile_ahead(
            make_evaluate(student_network), final[student], test_images, test_labels
        )
        accuracy_compile_s += student_compile_s
    start_and_predicted, predicted_compile_s = compile_ahead(
        make_first_order_evaluate(student_network),
        starts[student],
        final[student],
        test_images,
        test_labels,
    )
    started = time.perf_counter()
    accuracies = {
        name: to_host(
            (student_accuracy if name in STUDENTS else accuracy)(
                final[name], test_images, test_labels
            ),
            seeds,
        ).tolist()
        for name in MODELS
    }
    # a student's start can already classify (head_init=trained): gains are also measured
    # from there, not only from chance
    at_start, first_order = {}, {}
    for name in STUDENTS:
        start, predicted = start_and_predicted(starts[name], final[name], test_images, test_labels)
        at_start[name] = to_host(start, seeds).tolist()
        first_order[name] = to_host(predicted, seeds).tolist()
    timing = {
        "compile_s": {"evaluation": accuracy_compile_s, "first_order": predicted_compile_s},
        "run_s": time.perf_counter() - started,
    }
    return accuracies, at_start, first_order, timing
