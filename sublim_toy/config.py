"""Every knob of a run in one frozen dataclass (section 6.2; defaults from the authors' script)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from sublim_toy.errors import ConfigError, UserError

N_CLASSES = 10  # MNIST digits: outputs 0..9 are the regular logits.
INIT_SCHEMES = ("normal", "lecun", "he", "torch")
# Each init scheme's weight sd in units of 1/sqrt(d_in), at init_scale 1 (model.py draws them).
WEIGHT_SD = {"normal": 1.0, "lecun": 1.0, "he": math.sqrt(2.0), "torch": 1 / math.sqrt(3.0)}
# "identity" makes a deep linear network: the closed-form toy (linear_toy.py) and its exercise
ACTIVATIONS = ("relu", "tanh", "gelu", "identity")
IMITATION_LOSSES = ("kl", "mse")
TEACHER_LABELS = ("true", "shuffled")
STUDENT_INPUTS = ("uniform", "gaussian", "mnist", "shuffled_pixels")
HIDDEN_INITS = ("shared", "independent")
HEAD_INITS = ("shared", "independent", "trained")
FREEZE = ("none", "hidden", "head")
STUDENT_OPTIMIZERS = ("adam", "sgd")
WEIGHT_DECAY_MODES = ("decoupled", "coupled")
PROJECT_OUT = ("none", "teacher_move", "teacher_gradient", "random")
PERTURB = ("none", "head", "hidden", "all")


@dataclass(frozen=True)
class Config:
    """One experiment: models, training and randomness. Validated on construction."""

    # Independent runs trained side by side under vmap. The paper used 100; 24 take a few
    # minutes on 2 CPU cores (README) and already give CIs that separate every pair of bars.
    seeds: int = 24
    # Root PRNG seed. Seed i of a run draws everything random from fold_in(key(seed), i), so
    # its inits, data order and noise do not depend on how many seeds run beside it (its
    # trained numbers do only to rounding: docs/getting-started.md, "Reproducibility, exactly").
    seed: int = 0
    # m, the number of auxiliary logits appended to the 10 regular ones (paper: m = 3).
    aux: int = 3
    # Hidden layer widths (paper: 784 -> 256 -> 256 -> 10 + m).
    hidden: tuple[int, ...] = (256, 256)
    # The students' hidden widths (empty: the teacher's). Another architecture trains through
    # the same code; its shared-init students share with the teacher's init what can be
    # shared: the first layer if the first widths match, the head if the last ones do, every
    # layer only if all do (`experiment.shared_layers`, recorded in the results).
    student_hidden: tuple[int, ...] = ()
    # Hidden nonlinearity (paper: ReLU). Others exist for the theorem's property tests, and
    # "identity" for the deep linear toy.
    activation: str = "relu"
    # Weight init. "normal" is N(0, 1/d_in) with zero biases, the authors' choice; the effect
    # size depends strongly on it (docs/pitfalls.md, pitfall 3), so it is never left to Flax's
    # default.
    init: str = "normal"
    # Epochs of teacher training on MNIST (cross-entropy on the regular logits only).
    teacher_epochs: int = 5
    # Epochs of student imitation on noise.
    student_epochs: int = 5
    # Adam with the authors' learning rate and batch.
    learning_rate: float = 3e-4
    batch_size: int = 1024
    # Noise images per student epoch, the same images every epoch (authors: one fixed set of
    # 60 000 per model). Drawn from keys per batch, never materialised as a whole.
    noise_images: int = 60_000
    # The noise budget, apart from the steps per epoch: the students' batches come from a pool
    # of noise_pool // batch_size fixed batches, visited pass after pass (each pass in a new
    # order) for the same student_epochs x noise_steps steps. 0: one epoch's batches (the
    # paper's fixed set, reused every epoch). A pool as large as the whole run is fresh noise:
    # no batch is ever seen twice (a larger one is the same run: the run sees no more).
    noise_pool: int = 0
    # Imitation loss: "kl" = KL(softmax(teacher) || softmax(student)) as in the paper, or
    # "mse" = squared error on the logits.
    imitation_loss: str = "kl"
    # Student steps between alignment probes during distillation (0: none). A probe costs about
    # one training step per student, so twice an epoch adds ~3 %.
    probe_every: int = 29

    # ---- controls the paper lacks (defaults are the paper's setup) ----
    # Multiplies every initial weight (biases too for "torch"); the effect size depends on it.
    init_scale: float = 1.0
    # "true" MNIST labels, or "shuffled": one fixed random relabelling of the training set per
    # seed, so the teacher can only memorise (does the student learn the teacher's training?).
    teacher_labels: str = "true"
    # What the students see: "uniform" U(-1, 1) noise (paper), "gaussian" N(0, 1) noise,
    # "mnist" training digits, or "shuffled_pixels" (training digits, each with its pixels in
    # a random order: MNIST's pixel statistics without the digits).
    student_inputs: str = "uniform"
    # Softmax temperature of the KL imitation loss on both teacher and student logits.
    temperature: float = 1.0
    # Angle phi in degrees of the shared-init students' start,
    # cos(phi) theta_T0 + sin(phi) theta_indep: 0 is the paper's shared init, 90 an independent
    # init like the cross-model students'.
    init_angle: float = 0.0
    # Gaussian noise added to the shared-init students' start, to ask how exactly they must
    # share the teacher's init and whether the head or the hidden layers are the more sensitive:
    # on the output layer ("head"), every hidden layer ("hidden") or both ("all"). Each
    # parameter gets noise of sd perturb_std x the sd of its own init draw (1.0: noise as large
    # as the init; biases initialised to zero stay zero). Unlike init_angle, which keeps the
    # variance, the noise grows it by 1 + perturb_std**2. The cross-model students stay
    # unperturbed: they are the control.
    perturb: str = "none"
    perturb_std: float = 0.0
    # Where the shared-init students' layers start:
    # the hidden layers from the teacher's init ("shared", at init_angle) or an independent one;
    # the output layer from the teacher's init, an independent one, or the trained teacher's
    # final values ("trained"). The cross-model students stay independent in every layer.
    hidden_init: str = "shared"
    head_init: str = "shared"
    # Layers the shared-init students never update ("hidden": all hidden layers, "head": the
    # output layer), to ask which layers must move for the signal to arrive.
    freeze: str = "none"

    # ---- the students' optimizer (the teacher keeps Adam at learning_rate and batch_size) ----
    # "adam" (the authors') or "sgd", which steps exactly -lr x the gradient of each model's own
    # mean loss (docs/pitfalls.md, pitfall 2), so that its step size means what it says.
    student_optimizer: str = "adam"
    # The students' step size; None: learning_rate, as in the authors' script.
    student_learning_rate: float | None = None
    # SGD's heavy-ball momentum (0: plain SGD). Adam keeps its own (b1 = 0.9); refused with it.
    momentum: float = 0.0
    # The students' weight decay, and how it enters: "decoupled" shrinks every parameter by
    # lr x weight_decay per step beside the optimizer's step (AdamW), "coupled" adds
    # weight_decay x theta to the gradient before the optimizer (L2; torch.optim.Adam's
    # weight_decay), where Adam rescales it like any gradient. Replications mean either.
    weight_decay: float = 0.0
    weight_decay_mode: str = "decoupled"
    # The students' batch of input images; None: batch_size. At a fixed number of epochs it
    # sets the student steps per epoch, noise_images // student_batch_size.
    student_batch_size: int | None = None

    # ---- the causal test of the alignment ----
    # After the optimizer, remove from every update of the shared-init students its component
    # along a direction d, u <- u - (u.d) d / |d|^2: "teacher_move" d = theta_T - theta_T(0)
    # (so their displacement stays orthogonal to the teacher's), "teacher_gradient" d = grad L_T
    # at the student's current parameters (on the probes' 1024 fixed training digits),
    # "random" a fixed Gaussian direction per seed of the norm of theta_T - theta_T(0) (the
    # control). Cross-model students are never projected: they stay the control.
    project_out: str = "none"
    # Record every N-th student step's imitation loss, update norm, cosine with the teacher's
    # move and removed fraction, per student and seed (0: only their summaries). Off by default
    # to keep results files small; the causal study's loss curves need it.
    log_every: int = 0

    def __post_init__(self) -> None:
        _check_int("seeds", self.seeds, minimum=1)
        check_seed(self.seed)
        _check_int("aux", self.aux, minimum=1)
        if not self.hidden or not all(_is_int(width) and width >= 1 for width in self.hidden):
            raise ConfigError("the MLP needs one or more hidden widths >= 1", hidden=self.hidden)
        if not all(_is_int(width) and width >= 1 for width in self.student_hidden):
            raise ConfigError(
                "the students' hidden widths must be integers >= 1 (empty: the teacher's)",
                student_hidden=self.student_hidden,
            )
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("init", self.init, INIT_SCHEMES)
        _check_int("teacher_epochs", self.teacher_epochs, minimum=0)
        _check_int("student_epochs", self.student_epochs, minimum=0)
        _check_positive("learning_rate", self.learning_rate)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("noise_images", self.noise_images, minimum=1)
        if self.student_batch_size is not None:
            _check_int("student_batch_size", self.student_batch_size, minimum=1)
        batch_field = "batch_size" if self.student_batch_size is None else "student_batch_size"
        if self.noise_images < self.student_batch:
            raise ConfigError(
                "a student epoch needs at least one full batch of noise images "
                f"({batch_field} <= noise_images)",
                **{batch_field: self.student_batch, "noise_images": self.noise_images},
            )
        _check_int("noise_pool", self.noise_pool, minimum=0)
        if 0 < self.noise_pool < self.student_batch:
            raise ConfigError(
                f"a pool needs at least one full batch of noise images ({batch_field} <= "
                "noise_pool; 0 is one epoch's noise_images)",
                **{"noise_pool": self.noise_pool, batch_field: self.student_batch},
            )
        _check_choice("imitation_loss", self.imitation_loss, IMITATION_LOSSES)
        _check_int("probe_every", self.probe_every, minimum=0)
        _check_positive("init_scale", self.init_scale)
        _check_choice("teacher_labels", self.teacher_labels, TEACHER_LABELS)
        _check_choice("student_inputs", self.student_inputs, STUDENT_INPUTS)
        _check_positive("temperature", self.temperature)
        if self.temperature != 1.0 and self.imitation_loss != "kl":
            raise ConfigError(
                "a temperature applies to the kl loss only",
                temperature=self.temperature,
                imitation_loss=self.imitation_loss,
            )
        if not (_is_number(self.init_angle) and 0 <= self.init_angle <= 90):
            raise ConfigError("must be a number of degrees in [0, 90]", init_angle=self.init_angle)
        _check_choice("perturb", self.perturb, PERTURB)
        if not (_is_number(self.perturb_std) and self.perturb_std >= 0):
            raise ConfigError("must be a finite number >= 0", perturb_std=self.perturb_std)
        if self.perturb == "none" and self.perturb_std != 0:
            raise ConfigError(
                "noise needs layers to go to: perturb=head, hidden or all",
                perturb_std=self.perturb_std,
                perturb=self.perturb,
            )
        _check_choice("hidden_init", self.hidden_init, HIDDEN_INITS)
        _check_choice("head_init", self.head_init, HEAD_INITS)
        _check_choice("freeze", self.freeze, FREEZE)
        self._check_student_optimizer()
        _check_choice("project_out", self.project_out, PROJECT_OUT)
        if self.project_out != "none" and self.freeze != "none":
            # the projection adds a multiple of d to every layer, frozen ones included
            raise ConfigError(
                "a projected update would move the frozen layers; use one or the other",
                project_out=self.project_out,
                freeze=self.freeze,
            )
        _check_int("log_every", self.log_every, minimum=0)
        if self.head_init == "trained" and self.student_widths[-1] != self.hidden[-1]:
            raise ConfigError(
                "the trained teacher's head does not fit the students' last hidden layer",
                head_init=self.head_init,
                student_hidden=self.student_hidden,
                hidden=self.hidden,
            )
        if self.imitation_loss == "kl" and self.aux == 1:
            # softmax of a single logit is constant: the aux-only KL has zero gradient
            # (docs/pitfalls.md, pitfall 4), so such a student could never learn anything.
            raise ConfigError(
                "the softmax of one logit is constant, so the aux-only student gets zero "
                "gradient; use aux >= 2 or imitation_loss='mse'",
                aux=self.aux,
                imitation_loss=self.imitation_loss,
            )

    def _check_student_optimizer(self) -> None:
        _check_choice("student_optimizer", self.student_optimizer, STUDENT_OPTIMIZERS)
        if self.student_learning_rate is not None:
            _check_positive("student_learning_rate", self.student_learning_rate)
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError("must be a number in [0, 1)", momentum=self.momentum)
        if self.momentum and self.student_optimizer != "sgd":
            raise ConfigError(
                "momentum is SGD's; Adam has its own",
                momentum=self.momentum,
                student_optimizer=self.student_optimizer,
            )
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("must be a finite number >= 0", weight_decay=self.weight_decay)
        _check_choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)

    @property
    def student_lr(self) -> float:
        """The students' step size: student_learning_rate, else learning_rate."""
        if self.student_learning_rate is None:
            return self.learning_rate
        return self.student_learning_rate

    @property
    def student_batch(self) -> int:
        """The students' batch: student_batch_size, else batch_size."""
        return self.batch_size if self.student_batch_size is None else self.student_batch_size

    @property
    def n_outputs(self) -> int:
        """Regular plus auxiliary logits."""
        return N_CLASSES + self.aux

    @property
    def student_widths(self) -> tuple[int, ...]:
        """The students' hidden widths: `student_hidden`, or the teacher's."""
        return tuple(self.student_hidden) or tuple(self.hidden)

    @property
    def noise_steps(self) -> int:
        """Student steps per epoch; a partial last batch is dropped, as for the teacher."""
        return self.noise_images // self.student_batch

    @property
    def pool_batches(self) -> int:
        """Distinct student input batches (`noise_pool`): at most one per step of the run, as
        a larger pool is never seen beyond that (at least one, so a run of 0 epochs is valid)."""
        if not self.noise_pool:
            return self.noise_steps
        run_steps = self.student_epochs * self.noise_steps
        return max(1, min(self.noise_pool // self.student_batch, run_steps))

    def replace(self, **changes) -> Config:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def weight_sd(scheme: str, scale: float = 1.0) -> float:
    """The initial weights' sd in units of 1/sqrt(d_in): what the `init` study is sorted by."""
    return scale * WEIGHT_SD[scheme]


def value_label(value) -> str:
    """A config value as written on the command line: hidden widths as 256x256."""
    return "x".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


# A few-minute preset: fewer seeds and epochs, still far above chance for the aux-only student.
QUICK = dict(seeds=8, teacher_epochs=2, student_epochs=3)
# A lab-session preset: the effect visible in under a minute on 2 CPU cores (docs/lab.md has the
# measurements). The paper's model, m = 3 and optimizer; only fewer seeds and epochs.
LAB = dict(seeds=4, teacher_epochs=1, student_epochs=3)
# The presets by flag (--quick, --lab): at most one per command, layered over the defaults.
PRESETS = {"quick": QUICK, "lab": LAB}


# Every field's default, and so its type: what command-line text is parsed into.
DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)}
FIELDS = tuple(DEFAULTS)
# Fields whose default None means "as another field": the type of their other values.
OPTIONAL_TYPES = {
    field.name: {"float | None": float, "int | None": int}[field.type]
    for field in dataclasses.fields(Config)
    if field.default is None
}
# jax.random.key takes the seed as 32 bits: larger seeds would silently alias smaller ones.
SEED_LIMIT = 2**32


def parse_value(field: str, text: str):
    """One value of Config field `field` from text as typed on the command line: the one
    parser for every flag and every --set. Hidden widths are written 256x256."""
    if field not in FIELDS:
        raise UserError(f"unknown config field {field!r}; fields: {', '.join(FIELDS)}")
    default = DEFAULTS[field]
    if default is None:  # None, or a value of the field's other type
        if text.strip().lower() == "none":
            return None
        default = OPTIONAL_TYPES[field]()
    kinds = {tuple: "widths like 256x256", list: "widths like 256x256", int: "an integer"}
    try:
        if isinstance(default, tuple | list):  # "" is no widths (student_hidden's default)
            return tuple(int(width) for width in text.split("x")) if text else ()
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = kinds.get(type(default), "a number")
        raise ConfigError(f"expected {kind}", **{field: text}) from None
    return text


def split_assignment(text: str) -> tuple[str, list[str]]:
    """'aux=2,3,5' -> ("aux", ["2", "3", "5"]); the field must exist."""
    field, sep, values_text = text.partition("=")
    if not sep or not values_text:
        raise UserError("write FIELD=VALUE[,VALUE...], e.g. aux=2,3,5")
    if field not in FIELDS:
        raise UserError(f"unknown config field {field!r}; fields: {', '.join(FIELDS)}")
    return field, [item.strip() for item in values_text.split(",")]


def parse_assignment(text: str) -> tuple[str, tuple]:
    """'aux=2,3,5' -> ("aux", (2, 3, 5)): a field and its values, each parsed by parse_value."""
    field, items = split_assignment(text)
    return field, tuple(parse_value(field, item) for item in items)


def check_seed(seed) -> None:
    """A root seed must fit jax's 32-bit keys: 2**32 would give exactly the numbers of 0."""
    _check_int("seed", seed, minimum=0, maximum=SEED_LIMIT - 1)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_int(name: str, value, *, minimum: int, maximum: int | None = None) -> None:
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"must be an integer {bound}", **{name: value})


def _check_positive(name: str, value) -> None:
    if not (_is_number(value) and value > 0):
        raise ConfigError("must be a finite positive number", **{name: value})


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"choose one of {', '.join(choices)}", **{name: value})
