"""The Theorem 1 check as text: the eps table, one line per condition, and the verdict.

`theorem.check_theorem` computes the numbers; this module only words them.
"""

from __future__ import annotations

import numpy as np

from sublim_toy.theorem import (
    DIFFERENTIABILITY_RTOL,
    EXACTLY_LINEAR,
    MIN_WINDOW_DECADES,
    SLOPE_BAND,
)

MARKS = {True: "PASS", False: "FAIL", None: "n/a "}
NOT_APPLICABLE = {
    "vanishes": "dS.dT vanishes identically (every eps): the theorem's first alternative",
    "not_differentiable": "f is not differentiable at theta0 along dT: outside the theorem's "
    "assumptions",
    "A_zero_not_vanishing": "A = 0 but dS.dT does not vanish identically, contrary to step 3",
    "no_independent_init": "no independent init given",
}


def verdict(report: dict) -> str:
    """One line: what the check found."""
    if report["vanishes_identically"]:
        return "dS.dT vanishes identically: the student's step does not move L_T"
    if report["conditions"]["differentiable_at_theta0"]["passed"] is False:
        return "outside the assumptions: f is not differentiable at theta0 along dT"
    if report["passed"]:
        return "A > 0: dS.dT = eps A + O(eps^2) and the student's step lowers L_T for small eps"
    failed = [name for name, c in report["conditions"].items() if c["passed"] is False]
    return f"FAILED: {', '.join(failed)}"


def condition_text(name: str, condition: dict, report: dict) -> str:
    """What one condition measured, in words."""
    case = condition["case"]
    if name == "A_nonnegative":
        return f"A = {condition['A']:.6g} (step 3: u^T M u >= 0 for PSD M)"
    if name == "M_psd_null_space":
        curvature = report["curvature"]
        text = (
            f"min eigenvalue {curvature['min_eigenvalue_relative']:.2g} (relative), null space "
            f"dims {curvature['null_space_dims']} (expected "
            f"{curvature['expected_null_space_dim']})"
        )
        if curvature["kind"] == "kl":
            text += f", |1.dL_S/dz| {curvature['ones_dot_gradient_relative']:.2g}"
        return text
    if name == "M_matches_autodiff":
        return f"max |closed form - autodiff| / max|M| = {condition['error']:.2g}"
    if name == "differentiable_at_theta0":
        text = (
            f"one-sided difference quotient of f along dT vs the JVP u: gap "
            f"{condition['gap']:.2g} x max|u|"
        )
        if condition["gap"] > DIFFERENTIABILITY_RTOL:
            text += " (a kink at theta0, e.g. a ReLU unit exactly at 0)"
        return text
    if case == "vanishes" and name == "first_order_limit":
        A = condition["A"]
        return NOT_APPLICABLE[case] + (
            "; A = 0 as it must" if condition["passed"] else f"; but A = {A:.3g}"
        )
    if case in NOT_APPLICABLE:
        if name == "different_init_limit_nonzero" and case == "vanishes":
            return "dS.dT vanishes identically: L_S does not reach the parameters L_T moves"
        return NOT_APPLICABLE[case]
    if name == "first_order_limit":
        return (
            f"|dS.dT/eps - A|/A = {condition['relative_error']:.2g} at eps = "
            f"{condition['eps']:.0e}; {_fit_text(condition)}"
        )
    if name == "teacher_loss_decreases":
        return (
            f"L_T(theta_S) - L_T(theta_S0) = {condition['change']:.3g} at eps = "
            f"{condition['eps']:.0e}, {condition['ratio']:.6f} x (-eps alpha A)"
        )
    return (
        f"dS(0).dT = {condition['limit']:.3g} (dS.dT at eps = {condition['eps']:.0e}: "
        f"{condition['at_smallest']:.3g}; shared init: {condition['shared_at_smallest']:.3g}); "
        f"negative for {condition['fraction_negative']:.0%} of {condition['n_inits']} inits"
    )


def _fit_text(condition: dict) -> str:
    if condition["case"] == "exactly_linear":
        return (
            f"remainder <= {EXACTLY_LINEAR:g} x eps A (float64 rounding) for eps <= "
            f"{condition['linear_up_to']:.1e}: dS.dT is exactly linear in eps there"
        )
    fit = condition["fit"]
    return (
        f"remainder ~ eps^{_slope(fit['slope'])} over {_window(fit)} (want "
        f"slope {SLOPE_BAND[0]}..{SLOPE_BAND[1]} over >= {MIN_WINDOW_DECADES:g} decade)"
    )


def _slope(slope: float | None) -> str:
    return "n/a" if slope is None else f"{slope:.3f}"


def _window(fit: dict) -> str:
    if fit["window"] is None:
        return "no eps window"
    low, high = fit["window"]
    return f"eps {low:.1e}..{high:.1e} ({fit['window_decades']:.1f} decades)"


def format_report(report: dict) -> str:
    """The eps table (dS.dT/eps -> A, remainder, teacher-loss change, cos) and the conditions,
    each with its role (`theorem.CONDITION_ROLES`: sanity, premise or evidence)."""
    lines = [*_header(report), "", *_eps_table(report), "", *_fits(report), ""]
    for name, condition in report["conditions"].items():
        mark, role = MARKS[condition["passed"]], condition["role"]
        lines.append(f"  {mark}  {name} [{role}]: {condition_text(name, condition, report)}")
    lines.append(f"verdict: {verdict(report)}")
    return "\n".join(lines)


def _header(report: dict) -> list[str]:
    setting = report["setting"]
    return [
        f"Theorem 1 check: {'-'.join(map(str, setting['sizes']))} {setting['activation']} MLP "
        f"({setting['n_params']} params, {setting['dtype']}), L_S = {setting['kind']} on "
        f"{setting['outputs']} outputs, {setting['inputs']} inputs, alpha = {setting['alpha']:g}",
        f"A = E[u^T M u] = {report['A']:.6e}   |dT| = {report['teacher_update_norm']:.4g}",
    ]


def _eps_table(report: dict) -> list[str]:
    shared, cross = report["shared_init"], report["different_init"]
    slopes = [None, *shared["remainder_local_slopes"]]
    lines = [
        f"{'eps':>7} {'dS.dT/eps':>13} {'A':>13} {'|dS.dT-eps A|':>13} {'slope':>5} "
        f"{'dL_T':>10} {'-eps a A':>10} {'cos':>7}" + (f" {'dS.dT indep':>11}" if cross else "")
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
    return lines


def _fits(report: dict) -> list[str]:
    shared, cross = report["shared_init"], report["different_init"]
    fit, loss_fit = shared["remainder_fit"], shared["loss_change_remainder_fit"]
    lines = [
        f"remainder |dS.dT - eps A| ~ eps^{_slope(fit['slope'])} over {_window(fit)}; "
        f"teacher-loss remainder ~ eps^{_slope(loss_fit['slope'])} over {_window(loss_fit)}",
        f"|dS.dT| ~ eps^{_slope(shared['dot_slope'])} with the shared init"
        + (f", eps^{_slope(cross['dot_slope'])} with an independent one" if cross else ""),
    ]
    if cross:
        limits = np.asarray(cross["limits"])
        lines.append(
            f"independent inits: lim dS.dT = dS(0).dT over {cross['n_inits']} inits from "
            f"{limits.min():.3g} to {limits.max():.3g}, negative for "
            f"{cross['fraction_negative']:.0%}: nothing fixes its sign"
        )
    return lines
