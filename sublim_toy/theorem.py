"""Theorem 1 of Cloud, Le et al. (arXiv:2507.14805, section 6.1, Appendix C), checked numerically.

A teacher takes one gradient step from theta0 (theta_T = theta0 + eps dT, dT = -grad L_T), its
outputs become labels, and a student takes one imitation step (theta_S = theta_S0 + alpha dS).
With a shared init (theta_S0 = theta0) the proof's expansion is dS.dT = eps A + O(eps^2) with
A = E_x[u^T M u] >= 0, so the student's step lowers the teacher's loss L_T. Here A is computed
exactly (a JVP for u, M in closed form) and compared with dS.dT along an eps sweep; a student from
an independent init shows what the shared init buys. Statement, proof and the map from proof
steps to these functions: proofs/theorem1.md. This module computes numbers; their text is in
theorem_report.py.

All of it runs in float64, or the O(eps^2) remainder drowns in float32 rounding: call these
functions inside `with jax.enable_x64(True):` on float64 parameters (`Network(...,
param_dtype=jnp.float64)`). `mnist_check` does both and leaves the process's x64 setting as it
found it. The steps that touch the network are jitted with the `Imitation` setting as a static
argument, so a sweep compiles once and then reruns one call per eps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from optax import tree_utils as otu

from sublim_toy.config import IMITATION_LOSSES, N_CLASSES, Config
from sublim_toy.data import Dataset
from sublim_toy.inputs import noise_batch, preprocess
from sublim_toy.keys import Stream, seed_keys, stream
from sublim_toy.losses import imitation_loss, teacher_loss
from sublim_toy.model import Network, Params, network_for, select_outputs

Objective = Callable[[Params], jax.Array]  # a loss as a function of the parameters only

# Teacher step sizes, half a decade apart. The O(eps^2) remainder is visible between float64
# rounding (it sinks below ~1e-18 absolute near eps = 1e-7) and, for ReLU, the first eps at which
# some pre-activation on the inputs changes sign (~2e-4 for the paper's MLP on 256 noise images):
# beyond it the network is not smooth along the path and the remainder jumps.
DEFAULT_EPS = tuple(float(eps) for eps in np.logspace(-7, -2, 11))
# The step-size boundary: teacher steps from inside the O(eps^2) regime to past where the
# expansion fails (|dT| ~ 2 for the paper's MLP, so eps = 10 moves theta0 by ~20), 4 per decade,
# and the relative departures of dS.dT / eps from A it reports the eps of.
BOUNDARY_EPS = tuple(float(eps) for eps in np.logspace(-4, 1, 21))
BOUNDARY_TOLERANCES = (0.1, 0.5)
# float64 rounding floors: below these, a quantity counts as zero.
ZERO_COSINE = 1e-10  # |cos(dS, dT)| of two vectors that are orthogonal up to rounding
ZERO_RELATIVE = 1e-12  # A, or an eigenvalue of M, relative to the scale it is built from
# pass bands of the conditions
SLOPE_BAND = (1.8, 2.2)  # log-log slope of a remainder that should be O(eps^2)
MIN_WINDOW_DECADES = 1.0  # the remainder must fall like eps^2 over at least this span of eps
CURVATURE_EXAMPLES = 32  # inputs on which M is checked against autodiff and for PSD
FIRST_ORDER_RTOL = 1e-4  # |dS.dT / eps - A| / A at the smallest eps
LOSS_CHANGE_RTOL = 1e-2  # |change / (-eps alpha A) - 1| at the smallest eps
AUTODIFF_RTOL = 1e-10  # max |closed-form M - autodiff M| / max |M|
# A remainder below this fraction of eps A at every eps is rounding: dS.dT is exactly linear in
# eps (e.g. ReLU, one hidden layer, MSE on outputs whose last layer L_T leaves alone).
EXACTLY_LINEAR = 1e-7
# Step 2 needs f differentiable at theta0 along dT. A ReLU unit sitting exactly at 0 (zero biases
# and a dead layer below it) is not: the one-sided difference quotient over this step then
# disagrees with the JVP (relu'(0) = 0) by more than this fraction of max|u|.
DIFFERENTIABILITY_STEP = 1e-7
DIFFERENTIABILITY_RTOL = 1e-4
# What a condition can tell. "sanity": holds by construction of the closed forms (A >= 0 from a
# PSD M built as diag(p) - pp^T or 2 diag(w)), so it catches a coding slip, not a false theorem.
# "premise": checks an assumption of the theorem. "evidence": compares independent computations
# (closed form against autodiff, the eps -> 0 limit, the actual loss change).
CONDITION_ROLES = {
    "A_nonnegative": "sanity",
    "M_psd_null_space": "sanity",
    "M_matches_autodiff": "evidence",
    "differentiable_at_theta0": "premise",
    "first_order_limit": "evidence",
    "teacher_loss_decreases": "evidence",
    "different_init_limit_nonzero": "evidence",
}


@dataclass(frozen=True)
class Imitation:
    """The student's side of Theorem 1: the network, L_S (`kind`, with optional MSE weights w)
    and the distilled `outputs` ("all", or "aux" after the regular ones). Hashable, so jitted
    functions take it as one static argument."""

    network: Network
    kind: str = "kl"
    outputs: str = "all"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in IMITATION_LOSSES:
            raise ValueError(f"unknown imitation loss {self.kind!r}: choose kl or mse")
        if self.outputs not in ("all", "aux"):
            raise ValueError(f"outputs={self.outputs!r}: the student distils 'all' or 'aux'")
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in np.ravel(self.weights)))

    def loss(self, student_logits, teacher_logits):
        """L_S: `imitation_loss` of this kind on the distilled outputs, mean over the batch."""
        return imitation_loss(
            student_logits,
            teacher_logits,
            outputs=self.outputs,
            kind=self.kind,
            weights=self.weights,
        )

    def distilled(self, logits):
        return select_outputs(logits, self.outputs)


def require_float64(params: Params) -> None:
    """Refuse parameters that are not all float64 (x64 off, or a float32 network)."""
    dtypes = {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(params)}
    if dtypes != {jnp.dtype(jnp.float64)}:
        raise ValueError(
            f"the theorem check needs float64 parameters, got {sorted(map(str, dtypes))}: build "
            "Network(..., param_dtype=jnp.float64) and call inside `with jax.enable_x64(True):`"
        )


# ---- the two updates (theorem statement) ------------------------------------------------------


def classification_objective(network: Network, images_BxD, labels_B) -> Objective:
    """L_T of the MNIST experiment: `teacher_loss` (cross-entropy, regular logits) on one batch."""
    return lambda params: teacher_loss(network.apply(params, images_BxD), labels_B)


@functools.partial(jax.jit, static_argnames=("teacher_objective",))
def teacher_update(teacher_objective: Objective, params: Params) -> Params:
    """Statement: dT = -grad L_T(theta0), so the teacher is theta_T = theta0 + eps dT."""
    return otu.tree_scale(-1.0, jax.grad(teacher_objective)(params))


@jax.jit
def step(params: Params, direction: Params, size) -> Params:
    """theta + size * direction: the teacher theta0 + eps dT, or the student theta_S0 + alpha dS."""
    return otu.tree_add_scale(params, size, direction)


@functools.partial(jax.jit, static_argnames=("imitation",))
def student_update(
    imitation: Imitation, student_params: Params, teacher_params: Params, inputs_BxD
) -> Params:
    """Statement: dS = -grad_theta E_x[L_S(f_theta(x), y(x))] at theta_S0, y(x) = f_theta_T(x).

    E_x is the mean over `inputs_BxD` (any input law D: noise by default).
    """
    network = imitation.network
    labels = jax.lax.stop_gradient(network.apply(teacher_params, inputs_BxD))

    def imitation_objective(params):
        return imitation.loss(network.apply(params, inputs_BxD), labels)

    return otu.tree_scale(-1.0, jax.grad(imitation_objective)(student_params))


# ---- the first-order coefficient (proof steps 2 and 3) --------------------------------------


@functools.partial(jax.jit, static_argnames=("imitation",))
def output_velocity(imitation: Imitation, params: Params, dT: Params, inputs_BxD):
    """Proof step 2: u(x) = J(x) dT [B, K'], the distilled outputs' velocity along dT (one JVP).

    u(x) = d/d eps f_{theta0 + eps dT}(x) at eps = 0: how the labels move as the teacher steps.
    """
    _, velocity_BxK = jax.jvp(lambda p: imitation.network.apply(p, inputs_BxD), (params,), (dT,))
    return imitation.distilled(velocity_BxK)


@functools.partial(jax.jit, static_argnames=("imitation",))
def velocity_and_quotient(imitation: Imitation, params, dT, inputs_BxD):
    """u(x) and the one-sided difference quotient (f(theta0 + h dT) - f(theta0)) / h."""
    h = DIFFERENTIABILITY_STEP
    apply = imitation.network.apply
    moved = imitation.distilled(apply(step(params, dT, h), inputs_BxD))
    start = imitation.distilled(apply(params, inputs_BxD))
    return output_velocity(imitation, params, dT, inputs_BxD), (moved - start) / h


def one_sided_velocity_gap(imitation: Imitation, params: Params, dT: Params, inputs_BxD) -> float:
    """Proof step 2's premise: max |(f(theta0 + h dT) - f(theta0)) / h - u| / max |u|.

    Small (O(h)) when f is differentiable at theta0 along dT; order one at a kink, where the
    eps > 0 side of the sweep follows the one-sided derivative and the JVP does not.
    """
    return _relative_gap(*velocity_and_quotient(imitation, params, dT, inputs_BxD))


def _relative_gap(u_BxK, quotient_BxK) -> float:
    u_BxK, quotient_BxK = np.asarray(u_BxK), np.asarray(quotient_BxK)
    gap = float(np.max(np.abs(quotient_BxK - u_BxK)))
    scale = float(np.max(np.abs(u_BxK)))
    if scale == 0.0:
        return 0.0 if gap == 0.0 else 1.0  # u = 0 but f moves: a kink at theta0
    return gap / scale


def curvature(labels_K, *, kind: str, weights=None):
    """Proof step 3: M = -d^2 L_S / (dy dz) [K', K'] of one example, in closed form.

    M depends on the labels y (distilled outputs) only: diag(p) - p p^T with p = softmax(y) for
    KL / softmax cross-entropy (the covariance of a one-hot draw from p), 2 diag(w) for the
    weighted squared error (w = 1 by default).
    """
    if kind == "kl":
        p = jax.nn.softmax(labels_K)
        return jnp.diag(p) - jnp.outer(p, p)
    if kind == "mse":
        n = labels_K.shape[-1]
        w = jnp.ones(n, labels_K.dtype) if weights is None else jnp.asarray(weights, labels_K.dtype)
        return 2.0 * jnp.diag(w)
    raise ValueError(f"unknown imitation loss {kind!r}: choose kl or mse")


@functools.partial(jax.jit, static_argnames=("imitation",))
def first_order_coefficient(imitation: Imitation, params: Params, dT: Params, inputs_BxD):
    """Proof step 2: A = E_x[u(x)^T M(x) u(x)], the eps-coefficient of dS.dT with shared init.

    M is taken at the labels of eps = 0, y = f_theta0(x), where the expansion is made.
    """
    u_BxK = output_velocity(imitation, params, dT, inputs_BxD)
    labels_BxK = imitation.distilled(imitation.network.apply(params, inputs_BxD))
    M_BxKxK = jax.vmap(
        functools.partial(curvature, kind=imitation.kind, weights=imitation.weights)
    )(labels_BxK)
    return jnp.mean(jnp.einsum("bi,bij,bj->b", u_BxK, M_BxKxK, u_BxK))


def _single_example_loss(imitation: Imitation):
    # L_S of one example (a batch of one, so the batch mean is that example's loss)
    return lambda student_logits_K, teacher_logits_K: imitation.loss(
        student_logits_K[None], teacher_logits_K[None]
    )


def autodiff_curvature(imitation: Imitation, student_logits_K, teacher_logits_K):
    """Proof step 3, independently: -d^2 L_S / (dy dz) of `imitation_loss` by autodiff [K', K'].

    Takes full logit vectors (z, y) of one example and returns the block of the distilled outputs.
    """
    loss = _single_example_loss(imitation)
    hessian_KxK = jax.jacfwd(jax.grad(loss, argnums=0), argnums=1)(
        student_logits_K, teacher_logits_K
    )  # [i, j] = d^2 L_S / (dz_i dy_j)
    return -imitation.distilled(imitation.distilled(hessian_KxK).T).T


def imitation_gradient(imitation: Imitation, student_logits_K, teacher_logits_K):
    """Proof step 1: dL_S/dz [K'] of one example, on the distilled outputs (autodiff)."""
    loss = _single_example_loss(imitation)
    return imitation.distilled(jax.grad(loss)(student_logits_K, teacher_logits_K))


def curvature_check(M_BxKxK, gradient_BxK, *, kind: str) -> dict:
    """Proof step 3: M is symmetric PSD with the stated null space, on a batch of examples.

    Null space: span(1) for KL / cross-entropy, and 1 is orthogonal to dL_S/dz (softmax outputs
    sum to one); {0} for squared error with w > 0. Returns the worst case over the batch.
    """
    M = np.asarray(M_BxKxK, np.float64)
    gradient = np.asarray(gradient_BxK, np.float64)
    scale = float(np.max(np.abs(M))) or 1.0
    asymmetry = float(np.max(np.abs(M - np.swapaxes(M, -1, -2)))) / scale
    eigenvalues = np.linalg.eigvalsh((M + np.swapaxes(M, -1, -2)) / 2) / scale
    null_dims = np.sum(eigenvalues <= ZERO_RELATIVE * M.shape[-1], axis=-1)
    ones = np.ones(M.shape[-1])
    ones_residual = float(np.max(np.abs(M @ ones))) / scale
    gradient_scale = float(np.max(np.abs(gradient))) or 1.0
    ones_dot_gradient = float(np.max(np.abs(gradient @ ones))) / gradient_scale
    expected_null_dim = 1 if kind == "kl" else 0
    passed = (
        asymmetry <= ZERO_RELATIVE
        and float(eigenvalues.min()) >= -ZERO_RELATIVE * M.shape[-1]
        and bool(np.all(null_dims == expected_null_dim))
    )
    if kind == "kl":
        passed = passed and ones_residual <= ZERO_RELATIVE and ones_dot_gradient <= 1e-10
    return {
        "kind": kind,
        "examples": int(M.shape[0]),
        "relative_asymmetry": asymmetry,
        "min_eigenvalue_relative": float(eigenvalues.min()),
        "null_space_dims": sorted({int(d) for d in null_dims}),
        "expected_null_space_dim": expected_null_dim,
        "ones_residual_relative": ones_residual,  # |M 1|: 1 in the null space (KL)
        "ones_dot_gradient_relative": ones_dot_gradient,  # |1 . dL_S/dz|
        "passed": bool(passed),
    }


@functools.partial(jax.jit, static_argnames=("imitation",))
def _curvatures(imitation: Imitation, student_params, teacher_params, inputs_BxD):
    # per example: M in closed form, M by autodiff, dL_S/dz
    student_logits_BxK = imitation.network.apply(student_params, inputs_BxD)
    teacher_logits_BxK = imitation.network.apply(teacher_params, inputs_BxD)
    closed_form = jax.vmap(
        functools.partial(curvature, kind=imitation.kind, weights=imitation.weights)
    )(imitation.distilled(teacher_logits_BxK))
    pairs = (student_logits_BxK, teacher_logits_BxK)
    by_autodiff = jax.vmap(functools.partial(autodiff_curvature, imitation))(*pairs)
    gradient = jax.vmap(functools.partial(imitation_gradient, imitation))(*pairs)
    return closed_form, by_autodiff, gradient


def real_output_curvature(
    imitation: Imitation, student_params: Params, teacher_params: Params, inputs_BxD
) -> dict:
    """Proof step 3 on real outputs: `curvature_check` at (z, y) = (student, teacher) outputs,
    plus the largest gap between the closed-form M and `autodiff_curvature`."""
    closed_form, by_autodiff, gradient = map(
        np.asarray, _curvatures(imitation, student_params, teacher_params, inputs_BxD)
    )
    check = curvature_check(closed_form, gradient, kind=imitation.kind)
    scale = float(np.max(np.abs(closed_form))) or 1.0
    check["autodiff_max_error_relative"] = float(np.max(np.abs(closed_form - by_autodiff))) / scale
    return check


# ---- sweeps (proof steps 1, 2, 4, 5) ----------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("imitation", "teacher_objective"))
def _sweep_point(imitation, params, student_init, dT, inputs_BxD, size, alpha, teacher_objective):
    # one eps of the sweep in one compiled call: dS.dT, |dS|, L_T(theta_S) - L_T(theta_S0)
    dS = student_update(imitation, student_init, step(params, dT, size), inputs_BxD)
    loss_change = jnp.nan
    if teacher_objective is not None:
        moved = teacher_objective(step(student_init, dS, alpha))
        loss_change = moved - teacher_objective(student_init)
    return otu.tree_vdot(dS, dT), otu.tree_norm(dS), loss_change


def eps_sweep(
    imitation: Imitation,
    params: Params,
    student_init: Params,
    dT: Params,
    inputs_BxD,
    *,
    teacher_objective: Objective | None = None,
    eps: Sequence[float] = DEFAULT_EPS,
    alpha: float = 1.0,
) -> dict[str, np.ndarray]:
    """Proof steps 1, 2 and 4 along eps: dS(eps).dT, cos(dS, dT) and the teacher-loss change.

    The teacher is theta0 + eps dT (theta0 = `params`); the student starts at `student_init`
    (`params` itself for the shared init). With `teacher_objective` also
    L_T(theta_S0 + alpha dS) - L_T(theta_S0), which step 4 predicts to be -eps alpha A + O(eps^2).
    """
    teacher_norm = float(otu.tree_norm(dT))
    dots, cosines, loss_changes = [], [], []
    for size in eps:
        dot, student_norm, loss_change = _sweep_point(
            imitation, params, student_init, dT, inputs_BxD, size, alpha, teacher_objective
        )
        norms = float(student_norm) * teacher_norm
        dots.append(float(dot))
        cosines.append(float(dot) / norms if norms > 0 else 0.0)
        loss_changes.append(float(loss_change))
    sweep = {"eps": np.asarray(eps, np.float64), "dot": np.array(dots), "cos": np.array(cosines)}
    if teacher_objective is not None:
        sweep["teacher_loss_change"] = np.array(loss_changes)
    return sweep


def limit_dot(
    imitation: Imitation, params: Params, student_init: Params, dT: Params, inputs_BxD
) -> float:
    """Proof step 5: lim_{eps -> 0} dS.dT = dS(0).dT, dS(0) being the step towards theta0 itself.

    Zero with a shared init (dL_S/dz = 0 at z = y); with an independent init, nothing makes it
    zero or fixes its sign.
    """
    dot, _, _ = _sweep_point(imitation, params, student_init, dT, inputs_BxD, 0.0, 0.0, None)
    return float(dot)


def loglog_slope(eps, values) -> float | None:
    """Least-squares slope of log|values| against log eps over the nonzero values (None if < 2)."""
    eps, values = np.asarray(eps, np.float64), np.abs(np.asarray(values, np.float64))
    keep = values > 0
    if keep.sum() < 2:
        return None
    return float(np.polyfit(np.log(eps[keep]), np.log(values[keep]), 1)[0])


def local_slopes(eps, values) -> np.ndarray:
    """Log-log slope between consecutive eps (nan where a value is zero)."""
    eps, values = np.asarray(eps, np.float64), np.abs(np.asarray(values, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(values > 0, np.log(values), np.nan)
    return np.diff(logs) / np.diff(np.log(eps))


def asymptotic_window(eps, remainder, band: tuple[float, float] = SLOPE_BAND):
    """Proof step 2's O(eps^2) regime: the longest run of consecutive eps (indices lo..hi) whose
    remainder falls with local log-log slopes all inside `band`; None if there is no such pair.

    Below it float64 rounding flattens the remainder, above it O(eps^3) terms or ReLU kinks bend
    it. An error delta in A leaves a term delta eps A of slope 1, which hides the eps^2 term
    B eps^2 for all eps below delta A / B.
    """
    inside = np.nan_to_num(local_slopes(eps, remainder), nan=-np.inf)
    inside = (inside >= band[0]) & (inside <= band[1])
    best, start = None, None
    for i, ok in enumerate([*inside, False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)  # slopes start..i-1 join points start..i
            start = None
    return best


def window_summary(eps, remainder) -> dict:
    """`asymptotic_window` as JSON: its eps range, width in decades and fitted slope."""
    window = asymptotic_window(eps, remainder)
    if window is None:
        return {"window": None, "window_decades": 0.0, "slope": None}
    lo, hi = window
    return {
        "window": [float(eps[lo]), float(eps[hi])],
        "window_decades": float(np.log10(eps[hi] / eps[lo])),
        "slope": loglog_slope(eps[lo : hi + 1], remainder[lo : hi + 1]),
    }


def exactly_linear_up_to(eps, remainder, A: float) -> float:
    """Largest eps below which every remainder is within rounding of zero (0 if none)."""
    linear = np.asarray(remainder) <= EXACTLY_LINEAR * np.asarray(eps) * A
    if not linear[0]:
        return 0.0
    first_not = int(np.argmin(linear)) if not linear.all() else len(linear)
    return float(eps[first_not - 1])


def _json_floats(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in values]


# ---- where the small-step condition stops holding ---------------------------------------------


def first_crossing(eps, relative_error, tolerance: float) -> dict:
    """The first eps at which `relative_error` exceeds `tolerance`, interpolated on log-log axes
    between the last eps within it and the first beyond (exact for a power law, as the O(eps^2)
    remainder makes the error ~ eps). {"eps": None} if it never does within the sweep;
    "below_sweep" when it already does at the smallest eps."""
    eps, error = np.asarray(eps, np.float64), np.asarray(relative_error, np.float64)
    beyond = np.flatnonzero(~(error <= tolerance))  # nan counts as beyond
    if beyond.size == 0:
        return {"tolerance": tolerance, "eps": None, "bracket": None, "below_sweep": False}
    i = int(beyond[0])
    if i == 0:
        return {"tolerance": tolerance, "eps": float(eps[0]), "bracket": None, "below_sweep": True}
    lo, hi = error[i - 1], error[i]
    crossing = float(eps[i])
    if lo > 0 and np.isfinite(hi) and hi > lo:
        fraction = (np.log(tolerance) - np.log(lo)) / (np.log(hi) - np.log(lo))
        crossing = float(np.exp(np.log(eps[i - 1]) + fraction * np.log(eps[i] / eps[i - 1])))
    bracket = [float(eps[i - 1]), float(eps[i])]
    return {"tolerance": tolerance, "eps": crossing, "bracket": bracket, "below_sweep": False}


def sign_flip(eps, values) -> dict:
    """The first eps at which `values` leaves the sign it has at the smallest eps (linear
    interpolation in eps between the bracketing points); {"eps": None} if it never does."""
    eps, values = np.asarray(eps, np.float64), np.asarray(values, np.float64)
    start = np.sign(values[0])
    flipped = np.flatnonzero(np.sign(values) != start)
    if start == 0 or flipped.size == 0:
        return {"eps": None, "bracket": None}
    i = int(flipped[0])
    lo, hi = values[i - 1], values[i]
    crossing = float(eps[i - 1] + lo * (eps[i] - eps[i - 1]) / (lo - hi)) if lo != hi else eps[i]
    return {"eps": crossing, "bracket": [float(eps[i - 1]), float(eps[i])]}


def step_size_boundary(
    imitation: Imitation,
    params: Params,
    teacher_objective: Objective,
    inputs_BxD,
    *,
    eps: Sequence[float] = BOUNDARY_EPS,
    tolerances: Sequence[float] = BOUNDARY_TOLERANCES,
) -> dict:
    """Where Theorem 1's small-step condition stops holding at theta0 = `params`.

    Along a wide sweep of teacher steps eps, the relative departure |dS.dT / eps - A| / A, the
    eps at which it first exceeds each tolerance (`first_crossing`), and the first eps at which
    dS.dT, and the teacher-loss change L_T(theta_S) - L_T(theta_S0) (alpha = 1), change sign
    (`sign_flip`). The same eps in parameter distance is eps |dT|: the size of a step along dT
    beyond which the first-order picture no longer describes what the student's step does.
    """
    require_float64(params)
    eps = np.sort(np.asarray(eps, np.float64))
    dT = teacher_update(teacher_objective, params)
    A = float(first_order_coefficient(imitation, params, dT, inputs_BxD))
    sweep = eps_sweep(
        imitation, params, params, dT, inputs_BxD, teacher_objective=teacher_objective, eps=eps
    )
    dot_over_eps = sweep["dot"] / eps
    relative = np.abs(dot_over_eps - A) / A if A > 0 else np.full(eps.shape, np.nan)
    norm = float(otu.tree_norm(dT))
    crossings = [first_crossing(eps, relative, tolerance) for tolerance in tolerances]
    for crossing in crossings:
        crossing["distance"] = None if crossing["eps"] is None else crossing["eps"] * norm
    return {
        "A": A,
        "teacher_update_norm": norm,
        "eps": eps.tolist(),
        "dot_over_eps": dot_over_eps.tolist(),
        "relative_departure": _json_floats(relative),
        "teacher_loss_change": sweep["teacher_loss_change"].tolist(),
        "departures": crossings,
        "dot_sign_flip": sign_flip(eps, sweep["dot"]),
        "loss_change_sign_flip": sign_flip(eps, -sweep["teacher_loss_change"]),
    }


# ---- the whole check ------------------------------------------------------------------------


def check_theorem(
    imitation: Imitation,
    params: Params,
    teacher_objective: Objective,
    inputs_BxD,
    *,
    eps: Sequence[float] = DEFAULT_EPS,
    alpha: float = 1.0,
    different_inits: Sequence[Params] = (),
) -> dict:
    """Theorem 1 end to end: lemma, theorem and every proof step, as a JSON-able report.

    `params` is theta0 (teacher and shared-init student), `teacher_objective` is L_T, inputs are
    draws x ~ D. `different_inits` are independent student inits: the first gets the whole eps
    sweep, all of them the eps -> 0 limit of dS.dT (step 5). Conditions are True / False / None
    (not applicable); `passed` is False iff some condition is False.
    """
    for tree in (params, *different_inits):
        require_float64(tree)
    eps = np.sort(np.asarray(eps, np.float64))
    if eps.size < 3 or eps[0] <= 0:
        raise ValueError("eps: give at least 3 positive step sizes")
    dT = teacher_update(teacher_objective, params)
    report: dict[str, Any] = {
        "setting": _setting(imitation, params, inputs_BxD, alpha),
        **_shared_init(imitation, params, dT, inputs_BxD, teacher_objective, eps, alpha),
        "different_init": None,
    }
    if different_inits:
        report["different_init"] = _different_init(
            imitation, params, dT, inputs_BxD, different_inits, eps, alpha
        )
    # z far from y (an independent student, when given) so that dL_S/dz is far from zero
    report["curvature"] = real_output_curvature(
        imitation,
        different_inits[0] if different_inits else params,
        step(params, dT, float(eps[-1])),
        np.asarray(inputs_BxD)[:CURVATURE_EXAMPLES],
    )
    report["conditions"] = conditions(report)
    report["passed"] = all(c["passed"] is not False for c in report["conditions"].values())
    return report


def _setting(imitation: Imitation, params, inputs_BxD, alpha: float) -> dict:
    network = imitation.network
    return {
        "sizes": list(network.sizes),
        "activation": network.activation,
        "n_params": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
        "kind": imitation.kind,
        "outputs": imitation.outputs,
        "weights": None if imitation.weights is None else list(imitation.weights),
        "inputs": int(inputs_BxD.shape[0]),
        "alpha": float(alpha),
        "dtype": "float64",
    }


def _shared_init(imitation, params, dT, inputs_BxD, teacher_objective, eps, alpha) -> dict:
    """A, the premise of step 2, and the shared-init eps sweep with its remainders."""
    A = float(first_order_coefficient(imitation, params, dT, inputs_BxD))
    u_BxK, quotient_BxK = velocity_and_quotient(imitation, params, dT, inputs_BxD)
    u_scale = float(np.mean(np.sum(np.asarray(u_BxK) ** 2, axis=-1)))  # E|u|^2, A's unit
    # A <= E|u|^2 * largest eigenvalue of M (<= 1 for KL, 2 max w for MSE): A's natural scale
    weights = imitation.weights
    m_bound = 1.0 if imitation.kind == "kl" else 2.0 * (max(weights) if weights else 1.0)
    shared = eps_sweep(
        imitation,
        params,
        params,
        dT,
        inputs_BxD,
        teacher_objective=teacher_objective,
        eps=eps,
        alpha=alpha,
    )
    predicted_change = -eps * alpha * A
    remainder = np.abs(shared["dot"] - eps * A)
    loss_remainder = np.abs(shared["teacher_loss_change"] - predicted_change)
    return {
        "A": A,
        "A_is_zero": abs(A) <= ZERO_RELATIVE * u_scale * m_bound,
        "teacher_update_norm": float(otu.tree_norm(dT)),
        "mean_u_squared": u_scale,
        "one_sided_velocity_gap": _relative_gap(u_BxK, quotient_BxK),
        "eps": eps.tolist(),
        "shared_init": {
            "dot": shared["dot"].tolist(),
            "dot_over_eps": (shared["dot"] / eps).tolist(),
            "remainder": remainder.tolist(),
            "remainder_local_slopes": _json_floats(local_slopes(eps, remainder)),
            "remainder_fit": window_summary(eps, remainder),
            "exactly_linear_up_to": exactly_linear_up_to(eps, remainder, A),
            "dot_slope": loglog_slope(eps, shared["dot"]),
            "cos": shared["cos"].tolist(),
            "teacher_loss_change": shared["teacher_loss_change"].tolist(),
            "predicted_loss_change": predicted_change.tolist(),
            "loss_change_remainder": loss_remainder.tolist(),
            "loss_change_remainder_fit": window_summary(eps, loss_remainder),
        },
        "vanishes_identically": bool(np.all(np.abs(shared["cos"]) <= ZERO_COSINE)),
    }


def _different_init(imitation, params, dT, inputs_BxD, others, eps, alpha) -> dict:
    """Proof step 5: the eps sweep from the first independent init, the limit from all."""
    cross = eps_sweep(imitation, params, others[0], dT, inputs_BxD, eps=eps, alpha=alpha)
    limits = np.array([limit_dot(imitation, params, other, dT, inputs_BxD) for other in others])
    return {
        "dot": cross["dot"].tolist(),
        "cos": cross["cos"].tolist(),
        "dot_slope": loglog_slope(eps, cross["dot"]),
        "limits": limits.tolist(),  # dS(0).dT, one per independent init
        "fraction_negative": float(np.mean(limits < 0)),
        "n_inits": len(others),
    }


def _condition(name: str, passed: bool | None, case: str = "checked", **values) -> dict:
    """One condition: passed (None: not applicable), the case that decided it, its numbers."""
    return {"passed": passed, "role": CONDITION_ROLES[name], "case": case, **values}


def conditions(report: dict) -> dict:
    """Every condition of the check, as numbers (their text: theorem_report.condition_text)."""
    A, curvature_report = report["A"], report["curvature"]
    gap = report["one_sided_velocity_gap"]
    found = {
        "A_nonnegative": _condition("A_nonnegative", A >= 0 or report["A_is_zero"], A=A),
        "M_psd_null_space": _condition("M_psd_null_space", curvature_report["passed"]),
        "M_matches_autodiff": _condition(
            "M_matches_autodiff",
            curvature_report["autodiff_max_error_relative"] <= AUTODIFF_RTOL,
            error=curvature_report["autodiff_max_error_relative"],
        ),
        "differentiable_at_theta0": _condition(
            "differentiable_at_theta0", gap <= DIFFERENTIABILITY_RTOL, gap=gap
        ),
    }
    found.update(_expansion_conditions(report, differentiable=gap <= DIFFERENTIABILITY_RTOL))
    found["different_init_limit_nonzero"] = _different_init_condition(report)
    return found


def _expansion_conditions(report: dict, *, differentiable: bool) -> dict:
    """first_order_limit and teacher_loss_decreases: steps 2 and 4 at the smallest eps."""
    A, A_is_zero, shared = report["A"], report["A_is_zero"], report["shared_init"]
    names = ("first_order_limit", "teacher_loss_decreases")
    if report["vanishes_identically"]:
        # the theorem's first alternative: then A must be 0 too
        return {
            "first_order_limit": _condition(names[0], A_is_zero, "vanishes", A=A),
            "teacher_loss_decreases": _condition(names[1], None, "vanishes"),
        }
    if not differentiable:
        return {name: _condition(name, None, "not_differentiable") for name in names}
    if A_is_zero:
        # step 3: A = 0 puts u(x) in the null space of M(x), which is orthogonal to dL_S/dz, so
        # dS.dT = -E[dL_S/dz . u] would vanish at every eps; it does not, so something is wrong
        return {
            "first_order_limit": _condition(names[0], False, "A_zero_not_vanishing", A=A),
            "teacher_loss_decreases": _condition(names[1], None, "A_zero_not_vanishing"),
        }
    eps = report["eps"]
    relative_error = abs(shared["dot_over_eps"][0] - A) / A
    fit = shared["remainder_fit"]
    linear_up_to = shared["exactly_linear_up_to"]
    window_ok = fit["window_decades"] >= MIN_WINDOW_DECADES
    linear_ok = not window_ok and linear_up_to / eps[0] >= 10**MIN_WINDOW_DECADES
    change, predicted = shared["teacher_loss_change"][0], shared["predicted_loss_change"][0]
    ratio = change / predicted
    return {
        "first_order_limit": _condition(
            names[0],
            relative_error <= FIRST_ORDER_RTOL and (window_ok or linear_ok),
            "exactly_linear" if linear_ok else "remainder_fit",
            eps=eps[0],
            relative_error=relative_error,
            fit=fit,
            linear_up_to=linear_up_to,
        ),
        "teacher_loss_decreases": _condition(
            names[1],
            change < 0 and abs(ratio - 1) <= LOSS_CHANGE_RTOL,
            eps=eps[0],
            change=change,
            ratio=ratio,
        ),
    }


def _different_init_condition(report: dict) -> dict:
    name, cross = "different_init_limit_nonzero", report["different_init"]
    if cross is None:
        return _condition(name, None, "no_independent_init")
    if report["vanishes_identically"]:
        return _condition(name, None, "vanishes")
    limit, at_smallest = cross["limits"][0], cross["dot"][0]
    nonzero = abs(cross["cos"][0]) > ZERO_COSINE
    # the limit is approached, not jumped to: dS.dT at the smallest eps is within 1 % of it
    continuous = abs(at_smallest - limit) <= 1e-2 * abs(limit)
    return _condition(
        name,
        nonzero and continuous,
        eps=report["eps"][0],
        limit=limit,
        at_smallest=at_smallest,
        shared_at_smallest=report["shared_init"]["dot"][0],
        fraction_negative=cross["fraction_negative"],
        n_inits=cross["n_inits"],
    )


# ---- the MNIST setting (section 6.2) ----------------------------------------------------------


def mnist_check(
    dataset: Dataset,
    *,
    seed: int = 0,
    kind: str = "kl",
    outputs: str = "aux",
    aux: int = 3,
    hidden: tuple[int, ...] = (256, 256),
    batch_size: int = 256,
    different_inits: int = 16,
    eps: Sequence[float] = DEFAULT_EPS,
    alpha: float = 1.0,
) -> dict:
    """Theorem 1 on the paper's MLP (784-256-256-13, float64, fresh N(0, 1/d_in) init).

    L_T is `teacher_loss` on a fixed batch of MNIST training digits; D is U(-1, 1) noise
    (`noise_batch`), as for the paper's students. Keys are drawn as for seed 0 of a run with root
    seed `seed` (`keys.Stream`). Runs under x64 and restores the caller's setting.
    """
    config = Config(seed=seed, aux=aux, hidden=tuple(hidden), imitation_loss=kind)
    if different_inits < 1:
        raise ValueError("different_inits must be >= 1")
    with jax.enable_x64(True):
        setting = _mnist_setting(dataset, config, outputs, batch_size)
        init = jax.jit(setting.network.init)
        independent = setting.purpose(Stream.INDEPENDENT_INIT)
        params = init(setting.purpose(Stream.REFERENCE_INIT))
        report = check_theorem(
            setting.imitation,
            params,
            setting.teacher_objective,
            setting.inputs,
            eps=eps,
            alpha=alpha,
            different_inits=[
                init(jax.random.fold_in(independent, i)) for i in range(different_inits)
            ],
        )
        report["boundary"] = step_size_boundary(
            setting.imitation, params, setting.teacher_objective, setting.inputs
        )
    labels = setting.labels
    report["setting"].update(
        seed=seed,
        teacher_loss=f"teacher_loss on {len(labels)} MNIST training digits",
        student_inputs="U(-1, 1) noise",
        data_source=dataset.source,
        data_sha256=dataset.sha256,
        n_classes=N_CLASSES,
    )
    return report


@dataclass(frozen=True)
class _MnistSetting:
    """What the MNIST check builds around theta0: network (float64), L_S, L_T and inputs."""

    network: Network
    imitation: Imitation
    teacher_objective: Objective
    inputs: Any  # [batch, D] U(-1, 1) noise
    labels: Any  # the digits' labels behind L_T
    key: Any  # seed 0's key of a run with this root seed

    def purpose(self, tag: Stream):
        return stream(self.key, tag)[0]


def _mnist_setting(dataset: Dataset, config: Config, outputs: str, batch_size: int):
    """The MNIST setting of `mnist_check`, keyed like seed 0 of a run (call under x64): L_T the
    cross-entropy of the regular logits on a fixed batch of training digits, L_S on U(-1, 1)."""
    network = network_for(config, dataset.input_dim, param_dtype=jnp.float64)
    key = seed_keys(config.seed, 1)
    digit_key, noise_key = (stream(key, tag)[0] for tag in (Stream.TEACHER_BATCH, Stream.NOISE))
    images, labels = _digit_batch(dataset, digit_key, batch_size)
    return _MnistSetting(
        network=network,
        imitation=Imitation(network, config.imitation_loss, outputs),
        teacher_objective=classification_objective(network, images, labels),
        inputs=noise_batch(noise_key, 0, batch_size=batch_size, input_dim=dataset.input_dim),
        labels=labels,
        key=key,
    )


def mnist_boundary(
    dataset: Dataset,
    *,
    seed: int = 0,
    init_scale: float = 1.0,
    params: Params | None = None,
    kind: str = "kl",
    outputs: str = "aux",
    aux: int = 3,
    hidden: tuple[int, ...] = (256, 256),
    batch_size: int = 256,
    eps: Sequence[float] = BOUNDARY_EPS,
) -> dict:
    """`step_size_boundary` in the setting of `mnist_check` (same L_T digits, same noise), at
    theta0 = `params` (any float dtype: a student along a real run, say) or, without, at a
    fresh init of scale `init_scale`. Runs under x64 and restores the caller's setting."""
    config = Config(
        seed=seed, aux=aux, hidden=tuple(hidden), imitation_loss=kind, init_scale=init_scale
    )
    with jax.enable_x64(True):
        setting = _mnist_setting(dataset, config, outputs, batch_size)
        if params is None:
            params = jax.jit(setting.network.init)(setting.purpose(Stream.REFERENCE_INIT))
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        found = step_size_boundary(
            setting.imitation, params, setting.teacher_objective, setting.inputs, eps=eps
        )
    return {"seed": seed, "init_scale": init_scale, **found}


def _digit_batch(dataset: Dataset, key, batch_size: int):
    """A fixed batch of distinct training digits (float64, in [-1, 1]) and their labels."""
    n_train = len(dataset.train_labels)
    chosen = np.asarray(jax.random.choice(key, n_train, (min(batch_size, n_train),), replace=False))
    images = preprocess(dataset.train_images[chosen]).astype(jnp.float64)
    return images, jnp.asarray(dataset.train_labels[chosen], jnp.int32)
