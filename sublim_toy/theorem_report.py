"""The Theorem 1 check as text: the eps table, one line per condition, and the verdict.

`theorem.check_theorem` computes the numbers; this module only words them.
"""

from __future__ import annotations

import numpy as np

from sublim_toy.stats import ci_text, number_text
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
    if report.get("boundary"):
        lines += ["", *boundary_lines(report["boundary"])]
    return "\n".join(lines)


def boundary_lines(boundary: dict, *, table: bool = True) -> list[str]:
    """The step-size boundary (`theorem.step_size_boundary`): where dS.dT / eps departs from A
    by each tolerance, and where dS.dT and the teacher-loss drop change sign; with `table`,
    the sweep itself (every other eps)."""
    eps = boundary["eps"]
    lines = [
        f"step-size boundary (eps {eps[0]:.0e}..{eps[-1]:.0e}, {len(eps)} steps, "
        f"|dT| = {boundary['teacher_update_norm']:.3g}): {boundary_summary(boundary)}"
    ]
    if table:
        lines.append(f"{'eps':>8} {'dS.dT/eps':>12} {'|dS.dT/eps-A|/A':>16} {'dL_T':>11}")
        for i in range(0, len(eps), 2):
            departure = boundary["relative_departure"][i]
            departure = "-" if departure is None else f"{departure:.3g}"
            lines.append(
                f"{eps[i]:8.2e} {boundary['dot_over_eps'][i]:12.4e} {departure:>16} "
                f"{boundary['teacher_loss_change'][i]:11.3e}"
            )
    return lines


def boundary_summary(boundary: dict) -> str:
    """'|dS.dT/eps - A|/A exceeds 10 % at eps = 0.12 (a step of 0.23), ...' in one line."""
    parts = []
    for crossing in boundary["departures"]:
        percent = f"{crossing['tolerance']:.0%}"
        if crossing["eps"] is None:
            parts.append(f"stays within {percent} up to eps = {boundary['eps'][-1]:.3g}")
        elif crossing["below_sweep"]:
            parts.append(f"exceeds {percent} already at eps = {crossing['eps']:.3g}")
        else:
            parts.append(
                f"exceeds {percent} at eps = {crossing['eps']:.3g} (a step of "
                f"{crossing['distance']:.3g} along dT)"
            )
    text = "|dS.dT/eps - A|/A " + ", ".join(parts)
    flips = (("dS.dT", "dot_sign_flip"), ("the teacher-loss drop", "loss_change_sign_flip"))
    for name, key in flips:
        flip = boundary[key]["eps"]
        text += f"; {name} " + (
            "keeps its sign" if flip is None else f"changes sign at eps = {flip:.3g}"
        )
    return text


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


def format_boundary_scan(scan: dict, rows: list[dict] | None = None) -> str:
    """The step-size boundary over init scales and along real training
    (`boundary.boundary_scan`), and, given `rows` (`boundary.updates_beside_boundary`), each
    study point's per-step update in units of |dT| beside it."""
    header = (
        f"{'|dT|':>8} {'A':>10} {'10 %: eps':>10} {'(step)':>8} {'50 %: eps':>10} "
        f"{'(step)':>8} {'dS.dT < 0 at':>13} {'dL_T > 0 at':>12}"
    )
    lines = [
        f"step-size boundary at fresh inits (seed {scan['seed']}):",
        f"{'init_scale':<12}{header}",
    ]
    lines += [f"{b['init_scale']:<12g}{_boundary_row(b)}" for b in scan["init_scales"]]
    run = scan["run"]
    lines += [
        "",
        "along real training: the aux-only shared-init student after k steps (teacher "
        f"{run['accuracy']['teacher']:.3f}, student {run['accuracy']['student_aux']:.3f} at the "
        "end), the teacher step taken from there:",
        f"{'k':<12}{header}",
    ]
    lines += [f"{b['step']:<12d}{_boundary_row(b)}" for b in scan["training"]]
    start = scan["training"][0]
    step, largest = run["step_norm_mean"], run["step_norm_max"]
    lines.append(
        f"this run's aux-only student (Adam {run['config']['learning_rate']:g}): mean step |du| = "
        f"{step:.3g}, largest {largest:.3g}; in units of |dT| at its init, eps_step = "
        f"{step / start['teacher_update_norm']:.3g} (largest "
        f"{largest / start['teacher_update_norm']:.3g}), against the 10 % boundary at eps = "
        f"{number_text(start['departures'][0]['eps'], '.3g')}"
    )
    if rows:
        width = max(len(row["label"]) for row in rows) + 2
        lines += [
            "",
            "the aux-only students' mean step |du| (mean over seeds) in units of |dT| at the "
            "fresh init of their scale, eps_step = |du| / |dT|, beside that init's boundary:",
            f"{'point':<{width}}{'accuracy':>22}{'gain vs cross':>25}{'|du|':>9}{'eps_step':>10}"
            f"{'largest':>9}{'beyond 10 %':>12}{'beyond 50 %':>12}",
        ]
        for row in rows:
            beyond = row["beyond"] or {}
            lines.append(
                f"{row['label']:<{width}}{ci_text(row['accuracy'], '.3f'):>22}"
                f"{ci_text(row['paired_gain'], '+.3f'):>25}"
                f"{number_text(row['step_norm'], '.3g'):>9}"
                f"{number_text(row['eps_step'], '.3g'):>10}"
                f"{number_text(row['eps_largest_step'], '.3g'):>9}"
                f"{_yes(beyond.get('0.1')):>12}{_yes(beyond.get('0.5')):>12}"
            )
    return "\n".join(lines)


def _boundary_row(boundary: dict) -> str:
    ten, fifty = boundary["departures"][:2]
    return (
        f"{boundary['teacher_update_norm']:8.3g} {boundary['A']:10.3e} {_crossing(ten)} "
        f"{_crossing(fifty)} {_flip(boundary['dot_sign_flip']):>13} "
        f"{_flip(boundary['loss_change_sign_flip']):>12}"
    )


def _crossing(crossing: dict) -> str:
    if crossing["eps"] is None:
        return f"{'never':>10} {'':>8}"
    mark = "<" if crossing["below_sweep"] else ""
    return f"{mark + format(crossing['eps'], '.3g'):>10} {crossing['distance']:8.3g}"


def _flip(flip: dict) -> str:
    return "never" if flip["eps"] is None else f"{flip['eps']:.3g}"


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "no")
