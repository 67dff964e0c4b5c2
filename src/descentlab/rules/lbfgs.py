"""L-BFGS (Nocedal 1980; Liu & Nocedal 1989) over the whole parameter vector, as torch.optim.LBFGS computes it.

Unlike the element-wise rules this acts on the flat vector ``x`` of all parameters and needs the loss ``f`` and
gradient ``g`` at points it chooses (a closure). Symbols: ``s_k = x_{k+1} − x_k``, ``y_k = g_{k+1} − g_k``,
``ρ_k = 1 / (y_kᵀ s_k)``, memory of the last ``m`` = ``history_size`` pairs, ``γ`` = ``H_diag``::

    memory:     keep (y, s) only when yᵀs > 1e-10 (curvature condition), then γ ← yᵀs / yᵀy
    direction:  q ← −g;   for i = newest … oldest:  a_i ← ρ_i s_iᵀ q;  q ← q − a_i y_i
                r ← γ q;  for i = oldest … newest:  b_i ← ρ_i y_iᵀ r;  r ← r + (a_i − b_i) s_i;   d = r
                (first iteration: d = −g)
    step:       x ← x + t d, with t = η (first iteration: min(1, 1/‖g‖₁) η), or t from a strong-Wolfe line
                search (line_search_fn="strong_wolfe": f(x + t d) ≤ f + c₁ t gᵀd and |g(x + t d)ᵀd| ≤ c₂ |gᵀd|,
                c₁ = 1e-4, c₂ = 0.9, bracketing then zooming with cubic interpolation)

One ``step(closure)`` runs up to ``max_iter`` such iterations (``max_eval`` closure calls), stopping early when
``max|g| ≤ tolerance_grad``, ``gᵀd > −tolerance_change``, ``max|t d| ≤ tolerance_change`` or
``|f − f_prev| < tolerance_change``. These functions are torch's, operation by operation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

#: ``line_search_fn`` values (torch.optim.LBFGS): ``None`` (a fixed step ``t``) or ``"strong_wolfe"``.
LINE_SEARCHES: tuple[str | None, ...] = (None, "strong_wolfe")


def cubic_interpolate(x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any,
                      bounds: tuple[Any, Any] | None = None) -> Any:
    """The minimiser of the cubic through ``(x1, f1, f1' = g1)`` and ``(x2, f2, g2)``, clipped to ``bounds``
    (default: the interval between the points); the midpoint when the cubic has no real minimiser."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt()
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func: Callable[[Any, Any, Tensor], tuple[float, Tensor]], x: Any, t: Any, d: Tensor, f: float,
                 g: Tensor, gtd: Tensor, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                 max_ls: int = 25) -> tuple[float, Tensor, Any, int]:
    """A step ``t`` along ``d`` meeting the strong Wolfe conditions: ``(f_new, g_new, t, evaluations)``.
    ``obj_func(x, t, d)`` returns the loss and flat gradient at ``x + t d``."""
    d_norm = d.abs().max()
    g = g.clone(memory_format=torch.contiguous_format)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)
    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list[Any] = []
    bracket_f: list[Any] = []
    bracket_g: list[Tensor] = []
    bracket_gtd: list[Any] = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone(memory_format=torch.contiguous_format)]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev = tmp, f_new
        g_prev = g_new.clone(memory_format=torch.contiguous_format)
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:  # reached the maximum number of iterations
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: refine the bracket until a point meets the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:  # the bracket is too small
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # t close to a boundary: insufficient progress, or t at the boundary, moves it 0.1·|bracket| inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not met, or not lower than the lowest point
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True  # Wolfe conditions met
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high becomes the new low
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            # the new point becomes the new low
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos] = g_new.clone(memory_format=torch.contiguous_format)
            bracket_gtd[low_pos] = gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def remember(y: Tensor, s: Tensor, old_dirs: list[Tensor], old_stps: list[Tensor], ro: list[Any],
             history_size: int, H_diag: Any) -> Any:  # noqa: N803 - torch's state key
    """Add the pair ``(y, s)`` to the memory when ``yᵀs > 1e-10`` (dropping the oldest beyond ``history_size``)
    and return the new ``γ = yᵀs / yᵀy``; otherwise leave both and return ``H_diag`` unchanged."""
    ys = y.dot(s)
    if ys > 1e-10:
        if len(old_dirs) == history_size:
            old_dirs.pop(0)
            old_stps.pop(0)
            ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        H_diag = ys / y.dot(y)
    return H_diag


def two_loop_direction(flat_grad: Tensor, old_dirs: list[Tensor], old_stps: list[Tensor], ro: list[Any],
                       H_diag: Any, al: list[Any]) -> Tensor:  # noqa: N803 - torch's state key
    """The L-BFGS direction ``d = −H g`` by the two-loop recursion (``al`` holds the ``a_i``, torch's buffer)."""
    num_old = len(old_dirs)
    q = flat_grad.neg()
    for i in range(num_old - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q.add_(old_dirs[i], alpha=-al[i])
    d = r = torch.mul(q, H_diag)
    for i in range(num_old):
        be_i = old_dirs[i].dot(r) * ro[i]
        r.add_(old_stps[i], alpha=al[i] - be_i)
    return d
