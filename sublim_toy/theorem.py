"""Theorem 1 of Cloud, Le et al. (arXiv:2507.14805, section 6.1, Appendix C), checked numerically.

A teacher takes one gradient step from theta0 (theta_T = theta0 + eps dT, dT = -grad L_T), its
outputs become labels, and a student takes one imitation step (theta_S = theta_S0 + alpha dS).
With a shared init (theta_S0 = theta0) the proof's expansion is dS.dT = eps A + O(eps^2) with
A = E_x[u^T M u] >= 0, so the student's step lowers the teacher's loss L_T. Here A is computed
exactly (a JVP for u, M in closed form) and compared with dS.dT along an eps sweep; a student from
an independent init shows what the shared init buys. Statement, proof and the map from proof
steps to these functions: proofs/theorem1.md.

All of it runs in float64, or the O(eps^2) remainder drowns in float32 rounding: call these
functions inside `with jax.enable_x64(True):` on float64 parameters (`Network(...,
param_dtype=jnp.float64)`). `mnist_check` does both and leaves the process's x64 setting as it
found it. The steps that touch the network are jitted with the network, loss and outputs as
static arguments, so a sweep compiles once and then reruns one call per eps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from optax import tree_utils as otu

from sublim_toy.config import N_CLASSES, Config
from sublim_toy.data import Dataset, noise_batch
from sublim_toy.losses import accuracy, imitation_loss, teacher_loss
from sublim_toy.model import Network, Params, network_for, preprocess, select_outputs

Objective = Callable[[Params], jax.Array]  # a loss as a function of the parameters only

# Teacher step sizes, half a decade apart. The O(eps^2) remainder is visible between float64
# rounding (it sinks below ~1e-18 absolute near eps = 1e-7) and, for ReLU, the first eps at which
# some pre-activation on the inputs changes sign (~2e-4 for the paper's MLP on 256 noise images):
# beyond it the network is not smooth along the path and the remainder jumps.
DEFAULT_EPS = tuple(float(eps) for eps in np.logspace(-7, -2, 11))
# float64 rounding floors: below these, a quantity counts as zero.
ZERO_COSINE = 1e-10  # |cos(dS, dT)| of two vectors that are orthogonal up to rounding
ZERO_RELATIVE = 1e-12  # A, or an eigenvalue of M, relative to the scale it is built from
# pass bands of the conditions
SLOPE_BAND = (1.8, 2.2)  # log-log slope of a remainder that should be O(eps^2)
MIN_WINDOW_DECADES = 1.0  # the remainder must fall like eps^2 over at least this span of eps
CURVATURE_EXAMPLES = 32  # inputs on which M is checked against autodiff and for PSD
FIRST_ORDER_RTOL = 1e-4  # |dS.dT / eps - A| / A at the smallest eps
LOSS_CHANGE_RTOL = 1e-2  # |change / (-eps alpha A) - 1| at the smallest eps
# A remainder below this fraction of eps A at every eps is rounding: dS.dT is exactly linear in
# eps (e.g. ReLU, one hidden layer, MSE on outputs whose last layer L_T leaves alone).
EXACTLY_LINEAR = 1e-7
# Step 2 needs f differentiable at theta0 along dT. A ReLU unit sitting exactly at 0 (zero biases
# and a dead layer below it) is not: the one-sided difference quotient over this step then
# disagrees with the JVP (relu'(0) = 0) by more than this fraction of max|u|.
DIFFERENTIABILITY_STEP = 1e-7
DIFFERENTIABILITY_RTOL = 1e-4
# fold_in tags of mnist_check's root key, one per purpose (adding one shifts no other stream)
REFERENCE_INIT = 0
TEACHER_BATCH = 1
NOISE = 2
INDEPENDENT_INIT = 3


def require_float64(params: Params) -> None:
    """Refuse parameters that are not all float64 (x64 off, or a float32 network)."""
    dtypes = {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(params)}
    if dtypes != {jnp.dtype(jnp.float64)}:
        raise ValueError(
            f"the theorem check needs float64 parameters, got {sorted(map(str, dtypes))}: build "
            "Network(..., param_dtype=jnp.float64) and call inside `with jax.enable_x64(True):`"
        )


def _check_kind_outputs(kind: str, outputs: str) -> None:
    if kind not in ("kl", "mse"):
        raise ValueError(f"unknown imitation loss {kind!r}: choose kl or mse")
    if outputs not in ("all", "aux"):
        raise ValueError(f"outputs={outputs!r}: the student distils 'all' or 'aux' outputs")


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


@functools.partial(jax.jit, static_argnames=("network", "kind", "outputs"))
def student_update(
    network: Network,
    student_params: Params,
    teacher_params: Params,
    inputs_BxD,
    *,
    kind: str,
    outputs: str,
    weights=None,
) -> Params:
    """Statement: dS = -grad_theta E_x[L_S(f_theta(x), y(x))] at theta_S0, y(x) = f_theta_T(x).

    E_x is the mean over `inputs_BxD` (any input law D: noise by default). L_S is
    `imitation_loss` of `kind` ("kl" or "mse") on the distilled `outputs` ("all" or "aux").
    """
    labels = jax.lax.stop_gradient(network.apply(teacher_params, inputs_BxD))

    def imitation_objective(params):
        return imitation_loss(
            network.apply(params, inputs_BxD), labels, outputs=outputs, kind=kind, weights=weights
        )

    return otu.tree_scale(-1.0, jax.grad(imitation_objective)(student_params))


# ---- the first-order coefficient (proof steps 2 and 3) --------------------------------------


@functools.partial(jax.jit, static_argnames=("network", "outputs"))
def output_velocity(network: Network, params: Params, dT: Params, inputs_BxD, *, outputs: str):
    """Proof step 2: u(x) = J(x) dT [B, K'], the distilled outputs' velocity along dT (one JVP).

    u(x) = d/d eps f_{theta0 + eps dT}(x) at eps = 0: how the labels move as the teacher steps.
    """
    _, velocity_BxK = jax.jvp(lambda p: network.apply(p, inputs_BxD), (params,), (dT,))
    return select_outputs(velocity_BxK, outputs)


@functools.partial(jax.jit, static_argnames=("network", "outputs"))
def _velocity_and_quotient(network, params, dT, inputs_BxD, *, outputs):
    h = DIFFERENTIABILITY_STEP
    moved = select_outputs(network.apply(step(params, dT, h), inputs_BxD), outputs)
    start = select_outputs(network.apply(params, inputs_BxD), outputs)
    return output_velocity(network, params, dT, inputs_BxD, outputs=outputs), (moved - start) / h


def one_sided_velocity_gap(
    network: Network, params: Params, dT: Params, inputs_BxD, *, outputs: str
) -> float:
    """Proof step 2's premise: max |(f(theta0 + h dT) - f(theta0)) / h - u| / max |u|.

    Small (O(h)) when f is differentiable at theta0 along dT; order one at a kink, where the
    eps > 0 side of the sweep follows the one-sided derivative and the JVP does not.
    """
    return _relative_gap(*_velocity_and_quotient(network, params, dT, inputs_BxD, outputs=outputs))


def _relative_gap(u_BxK, quotient_BxK) -> float:
    u_BxK, quotient_BxK = np.asarray(u_BxK), np.asarray(quotient_BxK)
    gap = float(np.max(np.abs(quotient_BxK - u_BxK)))
    scale = float(np.max(np.abs(u_BxK)))
    if scale == 0.0:
        return 0.0 if gap == 0.0 else 1.0  # u = 0 but f moves: a kink at theta0
    return gap / scale


def linearised_logits(network: Network, start_params: Params, params: Params, inputs_BxD):
    """f(theta0, x) + J(theta0, x) (theta - theta0): the logits to first order around theta0.

    The expansion behind Theorem 1 (Appendix C, step 2), applied to a whole run's update rather
    than one step: how much of what the student's outputs became is the linear image, through
    the Jacobian at its init, of how far its parameters moved. One JVP; any float dtype.
    """
    displacement = jax.tree.map(jnp.subtract, params, start_params)
    logits, change = jax.jvp(
        lambda p: network.apply(p, inputs_BxD), (start_params,), (displacement,)
    )
    return logits + change


def linearised_accuracy(network: Network, start_params, params, inputs_BxD, labels_B):
    """Test accuracy of `linearised_logits`' regular logits: the first-order prediction."""
    return accuracy(linearised_logits(network, start_params, params, inputs_BxD), labels_B)


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


@functools.partial(jax.jit, static_argnames=("network", "kind", "outputs"))
def first_order_coefficient(
    network: Network,
    params: Params,
    dT: Params,
    inputs_BxD,
    *,
    kind: str,
    outputs: str,
    weights=None,
) -> jax.Array:
    """Proof step 2: A = E_x[u(x)^T M(x) u(x)], the eps-coefficient of dS.dT with shared init.

    M is taken at the labels of eps = 0, y = f_theta0(x), where the expansion is made.
    """
    u_BxK = output_velocity(network, params, dT, inputs_BxD, outputs=outputs)
    labels_BxK = select_outputs(network.apply(params, inputs_BxD), outputs)
    M_BxKxK = jax.vmap(functools.partial(curvature, kind=kind, weights=weights))(labels_BxK)
    return jnp.mean(jnp.einsum("bi,bij,bj->b", u_BxK, M_BxKxK, u_BxK))


def _single_example_loss(kind: str, outputs: str, weights):
    # imitation_loss of one example (a batch of one, so the batch mean is that example's loss)
    def loss(student_logits_K, teacher_logits_K):
        return imitation_loss(
            student_logits_K[None],
            teacher_logits_K[None],
            outputs=outputs,
            kind=kind,
            weights=weights,
        )

    return loss


def autodiff_curvature(
    student_logits_K, teacher_logits_K, *, kind: str, outputs: str, weights=None
):
    """Proof step 3, independently: -d^2 L_S / (dy dz) of `imitation_loss` by autodiff [K', K'].

    Takes full logit vectors (z, y) of one example and returns the block of the distilled outputs.
    """
    loss = _single_example_loss(kind, outputs, weights)
    hessian_KxK = jax.jacfwd(jax.grad(loss, argnums=0), argnums=1)(
        student_logits_K, teacher_logits_K
    )  # [i, j] = d^2 L_S / (dz_i dy_j)
    block = select_outputs(select_outputs(hessian_KxK, outputs).T, outputs).T
    return -block


def imitation_gradient(
    student_logits_K, teacher_logits_K, *, kind: str, outputs: str, weights=None
):
    """Proof step 1: dL_S/dz [K'] of one example, on the distilled outputs (autodiff)."""
    loss = _single_example_loss(kind, outputs, weights)
    return select_outputs(jax.grad(loss)(student_logits_K, teacher_logits_K), outputs)


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


# ---- sweeps (proof steps 1, 2, 4, 5) ----------------------------------------------------------


def eps_sweep(
    network: Network,
    params: Params,
    student_init: Params,
    dT: Params,
    inputs_BxD,
    *,
    kind: str,
    outputs: str,
    weights=None,
    teacher_objective: Objective | None = None,
    eps: Sequence[float] = DEFAULT_EPS,
    alpha: float = 1.0,
) -> dict[str, np.ndarray]:
    """Proof steps 1, 2 and 4 along eps: dS(eps).dT, cos(dS, dT) and the teacher-loss change.

    The teacher is theta0 + eps dT (theta0 = `params`); the student starts at `student_init`
    (`params` itself for the shared init). With `teacher_objective` also
    L_T(theta_S0 + alpha dS) - L_T(theta_S0), which step 4 predicts to be -eps alpha A + O(eps^2).
    """
    teacher_norm = _norm(dT)
    dots, cosines, loss_changes = [], [], []
    for size in eps:
        dot, student_norm, loss_change = _sweep_point(
            network,
            params,
            student_init,
            dT,
            inputs_BxD,
            size,
            alpha,
            weights,
            kind=kind,
            outputs=outputs,
            teacher_objective=teacher_objective,
        )
        norms = float(student_norm) * teacher_norm
        dots.append(float(dot))
        cosines.append(float(dot) / norms if norms > 0 else 0.0)
        loss_changes.append(float(loss_change))
    sweep = {"eps": np.asarray(eps, np.float64), "dot": np.array(dots), "cos": np.array(cosines)}
    if teacher_objective is not None:
        sweep["teacher_loss_change"] = np.array(loss_changes)
    return sweep


@functools.partial(jax.jit, static_argnames=("network", "kind", "outputs", "teacher_objective"))
def _sweep_point(
    network,
    params,
    student_init,
    dT,
    inputs_BxD,
    size,
    alpha,
    weights,
    *,
    kind,
    outputs,
    teacher_objective,
):
    # one eps of the sweep in one compiled call: dS.dT, |dS|, L_T(theta_S) - L_T(theta_S0)
    dS = student_update(
        network,
        student_init,
        step(params, dT, size),
        inputs_BxD,
        kind=kind,
        outputs=outputs,
        weights=weights,
    )
    loss_change = jnp.nan
    if teacher_objective is not None:
        loss_change = teacher_objective(step(student_init, dS, alpha)) - teacher_objective(
            student_init
        )
    return otu.tree_vdot(dS, dT), otu.tree_norm(dS), loss_change


def _norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(leaf) ** 2) for leaf in jax.tree.leaves(tree))))


def limit_dot(
    network: Network,
    params: Params,
    student_init: Params,
    dT: Params,
    inputs_BxD,
    *,
    kind: str,
    outputs: str,
    weights=None,
) -> float:
    """Proof step 5: lim_{eps -> 0} dS.dT = dS(0).dT, dS(0) being the step towards theta0 itself.

    Zero with a shared init (dL_S/dz = 0 at z = y); with an independent init, nothing makes it
    zero or fixes its sign.
    """
    dot, _, _ = _sweep_point(
        network,
        params,
        student_init,
        dT,
        inputs_BxD,
        0.0,
        0.0,
        weights,
        kind=kind,
        outputs=outputs,
        teacher_objective=None,
    )
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


# ---- the whole check ------------------------------------------------------------------------


def _json_floats(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _condition(passed: bool | None, detail: str) -> dict:
    return {"passed": passed, "detail": detail}


@functools.partial(jax.jit, static_argnames=("network", "kind", "outputs"))
def _curvatures(network, student_params, teacher_params, inputs_BxD, *, kind, outputs, weights):
    # per example: M in closed form, M by autodiff, dL_S/dz
    student_logits_BxK = network.apply(student_params, inputs_BxD)
    teacher_logits_BxK = network.apply(teacher_params, inputs_BxD)
    options = dict(kind=kind, outputs=outputs, weights=weights)
    closed_form = jax.vmap(functools.partial(curvature, kind=kind, weights=weights))(
        select_outputs(teacher_logits_BxK, outputs)
    )
    by_autodiff = jax.vmap(functools.partial(autodiff_curvature, **options))(
        student_logits_BxK, teacher_logits_BxK
    )
    gradient = jax.vmap(functools.partial(imitation_gradient, **options))(
        student_logits_BxK, teacher_logits_BxK
    )
    return closed_form, by_autodiff, gradient


def real_output_curvature(
    network: Network,
    student_params: Params,
    teacher_params: Params,
    inputs_BxD,
    *,
    kind: str,
    outputs: str,
    weights=None,
) -> dict:
    """Proof step 3 on real outputs: `curvature_check` at (z, y) = (student, teacher) outputs,
    plus the largest gap between the closed-form M and `autodiff_curvature`."""
    closed_form, by_autodiff, gradient = map(
        np.asarray,
        _curvatures(
            network,
            student_params,
            teacher_params,
            inputs_BxD,
            kind=kind,
            outputs=outputs,
            weights=weights,
        ),
    )
    check = curvature_check(closed_form, gradient, kind=kind)
    scale = float(np.max(np.abs(closed_form))) or 1.0
    check["autodiff_max_error_relative"] = float(np.max(np.abs(closed_form - by_autodiff))) / scale
    return check


def _window_summary(eps, remainder) -> dict:
    window = asymptotic_window(eps, remainder)
    if window is None:
        return {"window": None, "window_decades": 0.0, "slope": None}
    lo, hi = window
    return {
        "window": [float(eps[lo]), float(eps[hi])],
        "window_decades": float(np.log10(eps[hi] / eps[lo])),
        "slope": loglog_slope(eps[lo : hi + 1], remainder[lo : hi + 1]),
    }


def check_theorem(
    network: Network,
    params: Params,
    teacher_objective: Objective,
    inputs_BxD,
    *,
    kind: str = "kl",
    outputs: str = "all",
    weights=None,
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
    _check_kind_outputs(kind, outputs)
    require_float64(params)
    for other in different_inits:
        require_float64(other)
    eps = np.sort(np.asarray(eps, np.float64))
    if eps.size < 3 or eps[0] <= 0:
        raise ValueError("eps: give at least 3 positive step sizes")
    options = dict(kind=kind, outputs=outputs, weights=weights)

    dT = teacher_update(teacher_objective, params)
    A = float(first_order_coefficient(network, params, dT, inputs_BxD, **options))
    u_BxK, quotient_BxK = _velocity_and_quotient(network, params, dT, inputs_BxD, outputs=outputs)
    u_scale = float(np.mean(np.sum(np.asarray(u_BxK) ** 2, axis=-1)))  # E|u|^2, A's unit
    # A <= E|u|^2 * largest eigenvalue of M (<= 1 for KL, 2 max w for MSE): A's natural scale
    m_bound = 1.0 if kind == "kl" else 2.0 * (1.0 if weights is None else float(np.max(weights)))
    A_is_zero = abs(A) <= ZERO_RELATIVE * u_scale * m_bound
    velocity_gap = _relative_gap(u_BxK, quotient_BxK)

    shared = eps_sweep(
        network,
        params,
        params,
        dT,
        inputs_BxD,
        teacher_objective=teacher_objective,
        eps=eps,
        alpha=alpha,
        **options,
    )
    predicted_change = -eps * alpha * A
    remainder = np.abs(shared["dot"] - eps * A)
    loss_remainder = np.abs(shared["teacher_loss_change"] - predicted_change)
    vanishes = bool(np.all(np.abs(shared["cos"]) <= ZERO_COSINE))

    report: dict[str, Any] = {
        "setting": {
            "sizes": list(network.sizes),
            "activation": network.activation,
            "n_params": int(sum(leaf.size for leaf in jax.tree.leaves(params))),
            "kind": kind,
            "outputs": outputs,
            "weights": None if weights is None else [float(w) for w in np.ravel(weights)],
            "inputs": int(inputs_BxD.shape[0]),
            "alpha": float(alpha),
            "dtype": "float64",
        },
        "A": A,
        "teacher_update_norm": _norm(dT),
        "mean_u_squared": u_scale,
        "one_sided_velocity_gap": velocity_gap,
        "eps": eps.tolist(),
        "shared_init": {
            "dot": shared["dot"].tolist(),
            "dot_over_eps": (shared["dot"] / eps).tolist(),
            "remainder": remainder.tolist(),
            "remainder_local_slopes": _json_floats(local_slopes(eps, remainder)),
            "remainder_fit": _window_summary(eps, remainder),
            "dot_slope": loglog_slope(eps, shared["dot"]),
            "cos": shared["cos"].tolist(),
            "teacher_loss_change": shared["teacher_loss_change"].tolist(),
            "predicted_loss_change": predicted_change.tolist(),
            "loss_change_remainder": loss_remainder.tolist(),
            "loss_change_remainder_fit": _window_summary(eps, loss_remainder),
        },
        "different_init": None,
        "vanishes_identically": vanishes,
    }
    if different_inits:
        cross = eps_sweep(
            network, params, different_inits[0], dT, inputs_BxD, eps=eps, alpha=alpha, **options
        )
        limits = np.array(
            [
                limit_dot(network, params, other, dT, inputs_BxD, **options)
                for other in different_inits
            ]
        )
        report["different_init"] = {
            "dot": cross["dot"].tolist(),
            "cos": cross["cos"].tolist(),
            "dot_slope": loglog_slope(eps, cross["dot"]),
            "limits": limits.tolist(),  # dS(0).dT, one per independent init
            "fraction_negative": float(np.mean(limits < 0)),
            "n_inits": len(different_inits),
        }
    # z far from y (an independent student, when given) so that dL_S/dz is far from zero
    report["curvature"] = real_output_curvature(
        network,
        different_inits[0] if different_inits else params,
        step(params, dT, float(eps[-1])),
        np.asarray(inputs_BxD)[:CURVATURE_EXAMPLES],
        **options,
    )
    report["conditions"] = _conditions(report, A_is_zero)
    report["passed"] = all(c["passed"] is not False for c in report["conditions"].values())
    report["verdict"] = _verdict(report)
    return report


def _conditions(report: dict, A_is_zero: bool) -> dict:
    A, eps, shared = report["A"], report["eps"], report["shared_init"]
    conditions = {}
    conditions["A_nonnegative"] = _condition(
        A >= 0 or A_is_zero, f"A = {A:.6g} (step 3: u^T M u >= 0 for PSD M)"
    )
    curv = report["curvature"]
    orthogonal = (
        f", |1.dL_S/dz| {curv['ones_dot_gradient_relative']:.2g}" if curv["kind"] == "kl" else ""
    )
    conditions["M_psd_null_space"] = _condition(
        curv["passed"],
        f"min eigenvalue {curv['min_eigenvalue_relative']:.2g} (relative), null space dims "
        f"{curv['null_space_dims']} (expected {curv['expected_null_space_dim']}){orthogonal}",
    )
    conditions["M_matches_autodiff"] = _condition(
        curv["autodiff_max_error_relative"] <= 1e-10,
        f"max |closed form - autodiff| / max|M| = {curv['autodiff_max_error_relative']:.2g}",
    )
    gap = report["one_sided_velocity_gap"]
    differentiable = gap <= DIFFERENTIABILITY_RTOL
    conditions["differentiable_at_theta0"] = _condition(
        differentiable,
        f"one-sided difference quotient of f along dT vs the JVP u: gap {gap:.2g} x max|u|"
        + ("" if differentiable else " (a kink at theta0, e.g. a ReLU unit exactly at 0)"),
    )
    if report["vanishes_identically"]:
        detail = "dS.dT vanishes identically (every eps): the theorem's first alternative"
        conditions["first_order_limit"] = _condition(
            A_is_zero, detail + ("; A = 0 as it must" if A_is_zero else f"; but A = {A:.3g}")
        )
        conditions["teacher_loss_decreases"] = _condition(None, detail)
    elif not differentiable:
        detail = "f is not differentiable at theta0 along dT: outside the theorem's assumptions"
        conditions["first_order_limit"] = _condition(None, detail)
        conditions["teacher_loss_decreases"] = _condition(None, detail)
    elif A_is_zero:
        # step 3: A = 0 puts u(x) in the null space of M(x), which is orthogonal to dL_S/dz, so
        # dS.dT = -E[dL_S/dz . u] would vanish at every eps; it does not, so something is wrong
        detail = "A = 0 but dS.dT does not vanish identically, contrary to step 3"
        conditions["first_order_limit"] = _condition(False, detail)
        conditions["teacher_loss_decreases"] = _condition(None, detail)
    else:
        relative_error = abs(shared["dot_over_eps"][0] - A) / A
        fit = shared["remainder_fit"]
        fit_ok = fit["window_decades"] >= MIN_WINDOW_DECADES
        fit_detail = (
            f"remainder ~ eps^{_fmt_slope(fit['slope'])} over {_fmt_window(fit)} (want "
            f"slope {SLOPE_BAND[0]}..{SLOPE_BAND[1]} over >= {MIN_WINDOW_DECADES:g} decade)"
        )
        linear_up_to = _exactly_linear_up_to(eps, shared["remainder"], A)
        if not fit_ok and linear_up_to / eps[0] >= 10**MIN_WINDOW_DECADES:
            fit_ok = True
            fit_detail = (
                f"remainder <= {EXACTLY_LINEAR:g} x eps A (float64 rounding) for eps <= "
                f"{linear_up_to:.1e}: dS.dT is exactly linear in eps there"
            )
        conditions["first_order_limit"] = _condition(
            relative_error <= FIRST_ORDER_RTOL and fit_ok,
            f"|dS.dT/eps - A|/A = {relative_error:.2g} at eps = {eps[0]:.0e}; {fit_detail}",
        )
        change, predicted = shared["teacher_loss_change"][0], shared["predicted_loss_change"][0]
        ratio = change / predicted
        conditions["teacher_loss_decreases"] = _condition(
            change < 0 and abs(ratio - 1) <= LOSS_CHANGE_RTOL,
            f"L_T(theta_S) - L_T(theta_S0) = {change:.3g} at eps = {eps[0]:.0e}, "
            f"{ratio:.6f} x (-eps alpha A)",
        )
    cross = report["different_init"]
    if cross is None:
        conditions["different_init_limit_nonzero"] = _condition(None, "no independent init given")
    elif report["vanishes_identically"]:
        conditions["different_init_limit_nonzero"] = _condition(
            None, "dS.dT vanishes identically: L_S does not reach the parameters L_T moves"
        )
    else:
        limit, at_smallest = cross["limits"][0], cross["dot"][0]
        nonzero = abs(cross["cos"][0]) > ZERO_COSINE
        # the limit is approached, not jumped to: dS.dT at the smallest eps is within 1 % of it
        continuous = abs(at_smallest - limit) <= 1e-2 * abs(limit)
        conditions["different_init_limit_nonzero"] = _condition(
            nonzero and continuous,
            f"dS(0).dT = {limit:.3g} (dS.dT at eps = {eps[0]:.0e}: {at_smallest:.3g}; shared "
            f"init: {shared['dot'][0]:.3g}); negative for {cross['fraction_negative']:.0%} of "
            f"{cross['n_inits']} inits",
        )
    return conditions


def _exactly_linear_up_to(eps, remainder, A: float) -> float:
    """Largest eps below which every remainder is within rounding of zero (0 if none)."""
    linear = np.asarray(remainder) <= EXACTLY_LINEAR * np.asarray(eps) * A
    if not linear[0]:
        return 0.0
    first_not = int(np.argmin(linear)) if not linear.all() else len(linear)
    return float(eps[first_not - 1])


def _verdict(report: dict) -> str:
    if report["vanishes_identically"]:
        return "dS.dT vanishes identically: the student's step does not move L_T"
    if report["conditions"]["differentiable_at_theta0"]["passed"] is False:
        return "outside the assumptions: f is not differentiable at theta0 along dT"
    if report["passed"]:
        return "A > 0: dS.dT = eps A + O(eps^2) and the student's step lowers L_T for small eps"
    failed = [name for name, c in report["conditions"].items() if c["passed"] is False]
    return f"FAILED: {', '.join(failed)}"


def _fmt_slope(slope: float | None) -> str:
    return "n/a" if slope is None else f"{slope:.3f}"


def _fmt_window(fit: dict) -> str:
    if fit["window"] is None:
        return "no eps window"
    low, high = fit["window"]
    return f"eps {low:.1e}..{high:.1e} ({fit['window_decades']:.1f} decades)"


def format_report(report: dict) -> str:
    """The eps table (dS.dT/eps -> A, remainder, teacher-loss change, cos) and the conditions."""
    shared, cross = report["shared_init"], report["different_init"]
    setting = report["setting"]
    slopes = [None, *shared["remainder_local_slopes"]]
    lines = [
        f"Theorem 1 check: {'-'.join(map(str, setting['sizes']))} {setting['activation']} MLP "
        f"({setting['n_params']} params, {setting['dtype']}), L_S = {setting['kind']} on "
        f"{setting['outputs']} outputs, {setting['inputs']} inputs, alpha = {setting['alpha']:g}",
        f"A = E[u^T M u] = {report['A']:.6e}   |dT| = {report['teacher_update_norm']:.4g}",
        "",
        f"{'eps':>7} {'dS.dT/eps':>13} {'A':>13} {'|dS.dT-eps A|':>13} {'slope':>5} "
        f"{'dL_T':>10} {'-eps a A':>10} {'cos':>7}" + (f" {'dS.dT indep':>11}" if cross else ""),
    ]
    for i, size in enumerate(report["eps"]):
        slope = "" if slopes[i] is None else f"{slopes[i]:.2f}"
        row = (
            f"{size:7.1e} {shared['dot_over_eps'][i]:13.6e} {report['A']:13.6e} "
            f"{shared['remainder'][i]:13.3e} {slope:>5} {shared['teacher_loss_change'][i]:10.3e} "
            f"{shared['predicted_loss_change'][i]:10.3e} {shared['cos'][i]:7.4f}"
        )
        if cross:
            row += f" {cross['dot'][i]:11.4e}"
        lines.append(row)
    lines.append("")
    fit, loss_fit = shared["remainder_fit"], shared["loss_change_remainder_fit"]
    lines.append(
        f"remainder |dS.dT - eps A| ~ eps^{_fmt_slope(fit['slope'])} over {_fmt_window(fit)}; "
        f"teacher-loss remainder ~ eps^{_fmt_slope(loss_fit['slope'])} over "
        f"{_fmt_window(loss_fit)}"
    )
    lines.append(
        f"|dS.dT| ~ eps^{_fmt_slope(shared['dot_slope'])} with the shared init"
        + (f", eps^{_fmt_slope(cross['dot_slope'])} with an independent one" if cross else "")
    )
    if cross:
        limits = np.asarray(cross["limits"])
        lines.append(
            f"independent inits: lim dS.dT = dS(0).dT over {cross['n_inits']} inits from "
            f"{limits.min():.3g} to {limits.max():.3g}, negative for "
            f"{cross['fraction_negative']:.0%}: nothing fixes its sign"
        )
    lines.append("")
    for name, condition in report["conditions"].items():
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[condition["passed"]]
        lines.append(f"  {mark}  {name}: {condition['detail']}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


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
    (`noise_batch`), as for the paper's students. Runs under x64 and restores the caller's setting.
    """
    config = Config(seed=seed, aux=aux, hidden=tuple(hidden), imitation_loss=kind)
    if different_inits < 1:
        raise ValueError("different_inits must be >= 1")
    with jax.enable_x64(True):
        network = network_for(config, dataset.input_dim, param_dtype=jnp.float64)
        root = jax.random.key(seed)
        init = jax.jit(network.init)
        params = init(jax.random.fold_in(root, REFERENCE_INIT))
        independent = jax.random.fold_in(root, INDEPENDENT_INIT)
        others = [init(jax.random.fold_in(independent, i)) for i in range(different_inits)]
        n_train = len(dataset.train_labels)
        chosen = np.asarray(
            jax.random.choice(
                jax.random.fold_in(root, TEACHER_BATCH),
                n_train,
                (min(batch_size, n_train),),
                replace=False,
            )
        )
        images = preprocess(dataset.train_images[chosen]).astype(jnp.float64)
        labels = jnp.asarray(dataset.train_labels[chosen], jnp.int32)
        noise = noise_batch(
            jax.random.fold_in(root, NOISE), 0, batch_size=batch_size, input_dim=dataset.input_dim
        )
        report = check_theorem(
            network,
            params,
            classification_objective(network, images, labels),
            noise,
            kind=kind,
            outputs=outputs,
            eps=eps,
            alpha=alpha,
            different_inits=others,
        )
    report["setting"].update(
        seed=seed,
        teacher_loss=f"teacher_loss on {len(chosen)} MNIST training digits",
        student_inputs="U(-1, 1) noise",
        data_source=dataset.source,
        data_sha256=dataset.sha256,
        n_classes=N_CLASSES,
    )
    return report
