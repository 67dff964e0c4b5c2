"""Deliberately naive float64 references, written from formulas.md (not from descentlab's code).

Each function takes the current weights ``w`` and gradient ``g`` (NumPy float64 arrays), a state
dict it updates, the 1-based step ``t`` and the hyperparameters, and returns the new weights.
State keys use torch's names so they can be compared with the optimizers' state.
"""

from __future__ import annotations

import numpy as np


def _root(x, eps, placement):
    return np.sqrt(x + eps) if placement == "inside" else np.sqrt(x) + eps


def _grad(w, g, weight_decay=0.0, maximize=False):
    g = -g if maximize else g
    return g + weight_decay * w


def _decayed(w, g, lr, weight_decay, maximize, decoupled):
    """(w, g) after maximize and weight decay: coupled g + λw, or decoupled w − ηλw (Keras, AdamW)."""
    if decoupled:
        return w - lr * weight_decay * w, (-g if maximize else g)
    return w, _grad(w, g, weight_decay, maximize)


def sgd(w, g, s, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
        momentum_form="sum", lr_in_buffer=False, decoupled_weight_decay=False):
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    if momentum == 0:
        return w - lr * g
    if lr_in_buffer:
        # Keras: m ← μm − ηg; w ← w + m (nesterov: w ← w + μm − ηg), with b = −m
        b = momentum * s.get("momentum_buffer", 0.0) + lr * g
        s["momentum_buffer"] = b
        return w - (momentum * b + lr * g) if nesterov else w - b
    if momentum_form == "sum":
        # PyTorch: the buffer is g itself on the first step, then a = β a + (1 − d) g
        a = g.copy() if t == 1 else momentum * s["momentum_buffer"] + (1 - dampening) * g
        s["momentum_buffer"] = a
        d = g + momentum * a if nesterov else a
    else:
        v = momentum * s.get("momentum_buffer", 0.0) + (1 - momentum) * g
        s["momentum_buffer"] = v
        d = (1 - momentum) * g + momentum * v if nesterov else v
    return w - lr * d


def momentum(w, g, s, t, lr, beta=0.9, form="ema", bias_correction=False, weight_decay=0.0, maximize=False,
             decoupled_weight_decay=False):
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    buf = s.get("momentum_buffer", np.zeros_like(w))
    if form == "ema":
        buf = beta * buf + (1 - beta) * g
        step = buf / (1 - beta**t) if bias_correction else buf
    else:
        buf = beta * buf + g
        step = buf
    s["momentum_buffer"] = buf
    s["step"] = t
    return w - lr * step


def nesterov(w, g, s, t, lr, beta=0.9, weight_decay=0.0, maximize=False, decoupled_weight_decay=False):
    """Stored look-ahead form: a ← βa + g; u ← u − η(g + βa)."""
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    a = beta * s.get("momentum_buffer", np.zeros_like(w)) + g
    s["momentum_buffer"] = a
    return w - lr * (g + beta * a)


def adagrad(w, g, s, t, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
            maximize=False, eps_placement="outside", decoupled_weight_decay=False):
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    G = s.get("sum", np.full_like(w, initial_accumulator_value)) + g * g
    s["sum"] = G
    s["step"] = t
    return w - lr / (1 + (t - 1) * lr_decay) * g / _root(G, eps, eps_placement)


def adadelta(w, g, s, t, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False, eps_placement="inside",
             decoupled_weight_decay=False):
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    G = rho * s.get("square_avg", np.zeros_like(w)) + (1 - rho) * g * g
    H = s.get("acc_delta", np.zeros_like(w))
    delta = _root(H, eps, eps_placement) / _root(G, eps, eps_placement) * g
    s["square_avg"] = G
    s["acc_delta"] = rho * H + (1 - rho) * delta * delta
    s["step"] = t
    return w - lr * delta


def rmsprop(w, g, s, t, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
            maximize=False, eps_placement="outside", lr_in_buffer=False, nesterov=False, initial_scale=0.0,
            decoupled_weight_decay=False):
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    S = alpha * s.get("square_avg", np.full_like(w, initial_scale)) + (1 - alpha) * g * g
    s["square_avg"] = S
    if centered:
        gbar = alpha * s.get("grad_avg", np.zeros_like(w)) + (1 - alpha) * g
        s["grad_avg"] = gbar
        S = S - gbar * gbar
    D = _root(S, eps, eps_placement)
    s["step"] = t
    if momentum > 0:
        # the buffer accumulates the scaled gradient g/D (PyTorch) or the step ηg/D (Keras, optax)
        scale = lr if lr_in_buffer else 1.0
        b = momentum * s.get("momentum_buffer", np.zeros_like(w)) + scale * g / D
        s["momentum_buffer"] = b
        direction = scale * g / D + momentum * b if nesterov else b
        return w - (direction if lr_in_buffer else lr * direction)
    return w - lr * g / D


def adam(w, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
         decoupled_weight_decay=False, eps_placement="outside", bias_correction=True, efficient_form=False,
         amsgrad_max="raw"):
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        w = w - lr * weight_decay * w
    else:
        g = g + weight_decay * w
    m = b1 * s.get("exp_avg", np.zeros_like(w)) + (1 - b1) * g
    v = b2 * s.get("exp_avg_sq", np.zeros_like(w)) + (1 - b2) * g * g
    s["exp_avg"], s["exp_avg_sq"], s["step"] = m, v, t
    c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
    if amsgrad and amsgrad_max == "corrected":
        # optax: the running maximum of the corrected v̂
        v_hat = np.maximum(s.get("max_corrected_exp_avg_sq", np.zeros_like(w)), v / c2)
        s["max_corrected_exp_avg_sq"] = v_hat
        return w - lr * (m / c1) / _root(v_hat, eps, eps_placement)
    if amsgrad:
        v = np.maximum(s.get("max_exp_avg_sq", np.zeros_like(w)), v)
        s["max_exp_avg_sq"] = v
    if efficient_form:
        # the paper's efficient form (Keras): w ← w − η √c₂/c₁ · m/(√v + ε̂)
        return w - lr * np.sqrt(c2) / c1 * m / (np.sqrt(v) + eps)
    m_hat, v_hat = m / c1, v / c2
    return w - lr * m_hat / _root(v_hat, eps, eps_placement)


def adamw(w, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
          eps_placement="outside", bias_correction=True, efficient_form=False, amsgrad_max="raw"):
    return adam(w, g, s, t, lr, betas, eps, weight_decay, amsgrad, maximize, True, eps_placement, bias_correction,
                efficient_form, amsgrad_max)


def nadam(w, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
          decoupled_weight_decay=False, maximize=False, eps_placement="outside", mu_product_dtype=None):
    """μ_t = β₁(1 − ½·0.96^(tψ)) (ψ = inf: μ_t = β₁); Π kept in float64 whatever mu_product_dtype says."""
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        w = w - lr * weight_decay * w
    else:
        g = g + weight_decay * w
    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    prod = s.get("mu_product", 1.0) * mu
    m = b1 * s.get("exp_avg", np.zeros_like(w)) + (1 - b1) * g
    v = b2 * s.get("exp_avg_sq", np.zeros_like(w)) + (1 - b2) * g * g
    s["exp_avg"], s["exp_avg_sq"], s["mu_product"], s["step"] = m, v, prod, t
    D = _root(v / (1 - b2**t), eps, eps_placement)
    return w - lr * (1 - mu) / (1 - prod) * g / D - lr * mu_next / (1 - prod * mu_next) * m / D


def adamax(w, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False,
           eps_placement="inside", decoupled_weight_decay=False):
    """m ← β₁m + (1−β₁)g;  u ← max(β₂u, |g| + ε);  w ← w − η/(1 − β₁ᵗ) · m/u.
    ε outside (Keras): u ← max(β₂u, |g|);  w ← w − η/(1 − β₁ᵗ) · m/(u + ε)."""
    b1, b2 = betas
    w, g = _decayed(w, g, lr, weight_decay, maximize, decoupled_weight_decay)
    m = b1 * s.get("exp_avg", np.zeros_like(w)) + (1 - b1) * g
    inside = eps if eps_placement == "inside" else 0.0
    u = np.maximum(b2 * s.get("exp_inf", np.zeros_like(w)), np.abs(g) + inside)
    s["exp_avg"], s["exp_inf"], s["step"] = m, u, t
    return w - lr / (1 - b1**t) * m / (u + (eps - inside))


def radam(w, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
          maximize=False):
    """Adam's moments; ρ_t = ρ_∞ − 2tβ₂ᵗ/(1 − β₂ᵗ): ρ_t > 5: w ← w − η m̂ r_t √(1 − β₂ᵗ)/(√v + ε), else w ← w − η m̂."""
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        w = w - lr * weight_decay * w
    else:
        g = g + weight_decay * w
    m = b1 * s.get("exp_avg", np.zeros_like(w)) + (1 - b1) * g
    v = b2 * s.get("exp_avg_sq", np.zeros_like(w)) + (1 - b2) * g * g
    s["exp_avg"], s["exp_avg_sq"], s["step"] = m, v, t
    m_hat = m / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho > 5:
        r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return w - lr * m_hat * r * np.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
    return w - lr * m_hat


def rprop(w, g, s, t, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), maximize=False, weight_decay=0.0):
    """Per coordinate: same sign as last time → Δ·η₊, opposite → Δ·η₋ and g := 0, Δ clipped; w ← w − sign(g)Δ."""
    g = _grad(w, g, weight_decay, maximize)
    prev = s.get("prev", np.zeros_like(w))
    delta = s.get("step_size", np.full_like(w, lr))
    product = g * prev
    factor = np.where(product > 0, etas[1], np.where(product < 0, etas[0], 1.0))
    delta = np.clip(delta * factor, step_sizes[0], step_sizes[1])
    g = np.where(product < 0, 0.0, g)
    s["prev"], s["step_size"], s["step"] = g, delta, t
    return w - np.sign(g) * delta


def asgd(w, g, s, t, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False):
    """w ← w(1 − λη_t) − η_t g;  ā ← ā + μ_t(w − ā);  η_{t+1} = η/(1 + ληt)^α, μ_{t+1} = 1/max(1, t − t₀).
    η_t and μ_t are state that torch keeps in its scalar dtype (float32): rounded so here."""
    g = _grad(w, g, weight_decay, maximize)
    eta, mu = s.get("eta", float(np.float32(lr))), s.get("mu", 1.0)
    w = w * (1 - lambd * eta) - eta * g
    ax = s.get("ax", np.zeros_like(w))
    s["ax"] = ax + mu * (w - ax)
    s["eta"] = float(np.float32(lr / (1 + lambd * lr * t) ** alpha))
    s["mu"] = float(np.float32(1 / max(1, t - t0)))
    s["step"] = t
    return w


def _rms(x):
    return np.sqrt(np.mean(x * x)) if x.size else 0.0


def adafactor(w, g, s, t, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False):
    """β̂₂ = 1 − t^τ;  ρ = min(η, 1/√t);  α = max(ε₂, RMS(w))·ρ;  w ← w(1 − ηλ);
    matrix: R ← β̂₂R + (1−β̂₂)·rowmean(g²),  C ← β̂₂C + (1−β̂₂)·colmean(g²),  V̂ = R·C / max(mean(R), ε₁);
    vector: V ← β̂₂V + (1−β̂₂)g²,  V̂ = V;   U = g / max(√V̂, ε₁);   w ← w − α/max(1, RMS(U)/d) · U."""
    eps1 = np.finfo(np.float64).eps if eps[0] is None else eps[0]
    g = -g if maximize else g
    beta2 = 1 - t**beta2_decay
    alpha = max(eps[1], _rms(w)) * min(lr, 1 / np.sqrt(t))
    w = w * (1 - lr * weight_decay)
    if w.ndim >= 2:
        R = beta2 * s.get("row_var", 0.0) + (1 - beta2) * np.mean(g * g, axis=-1, keepdims=True)
        C = beta2 * s.get("col_var", 0.0) + (1 - beta2) * np.mean(g * g, axis=-2, keepdims=True)
        s["row_var"], s["col_var"] = R, C
        V = R * C / np.maximum(np.mean(R, axis=-2, keepdims=True), eps1)
    else:
        V = beta2 * s.get("variance", np.zeros_like(w)) + (1 - beta2) * g * g
        s["variance"] = V
    U = g / np.maximum(np.sqrt(V), eps1)
    s["step"] = t
    return w - alpha / max(1.0, _rms(U) / d) * U


def muon(w, g, s, t, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
         ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None, ns_dtype=None):
    """B ← μB + (1−μ)g;  U = (1−μ)g + μB (nesterov) or B;  X = U/max(‖U‖_F, ε) (transposed when m > n);
    k times: A = XXᵀ, X ← aX + (bA + cA²)X;  w ← w(1 − ηλ) − η'·X,  η' = η√max(1, m/n) or 0.2η√max(m, n).
    Computed in float64 throughout (compare with ns_dtype=torch.float64)."""
    a, b, c = ns_coefficients
    B = momentum * s.get("momentum_buffer", np.zeros_like(w)) + (1 - momentum) * g
    s["momentum_buffer"] = B
    U = (1 - momentum) * g + momentum * B if nesterov else B
    m, n = w.shape
    X = U.T if m > n else U
    X = X / max(np.linalg.norm(X), eps)
    for _ in range(ns_steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    X = X.T if m > n else X
    scale = 0.2 * np.sqrt(max(m, n)) if adjust_lr_fn == "match_rms_adamw" else np.sqrt(max(1.0, m / n))
    return w * (1 - lr * weight_decay) - lr * scale * X


def sparse_adam(w, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
    """Adam on the coordinates the sparse gradient holds (``g`` is NaN where it holds none); the others keep
    w, m and v:  m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  w ← w − η√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε)."""
    b1, b2 = betas
    hit = ~np.isnan(g)
    g = np.where(hit, -g if maximize else g, 0.0)
    m, v = s.get("exp_avg", np.zeros_like(w)).copy(), s.get("exp_avg_sq", np.zeros_like(w)).copy()
    m[hit] = b1 * m[hit] + (1 - b1) * g[hit]
    v[hit] = b2 * v[hit] + (1 - b2) * g[hit] ** 2
    s["exp_avg"], s["exp_avg_sq"], s["step"] = m, v, t
    w = w.copy()
    w[hit] -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[hit] / (np.sqrt(v[hit]) + eps)
    return w


def lbfgs(x, f_and_grad, s, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
          history_size=100, line_search_fn=None):
    """One ``step(closure)`` of L-BFGS with a fixed step (line_search_fn=None): up to ``max_iter`` iterations
    of  d = −H g  (two-loop recursion over the last ``history_size`` pairs s = tΔd, y = Δg kept when yᵀs > 1e-10,
    H₀ = yᵀs/yᵀy; d = −g on the very first iteration),  t = min(1, 1/‖g‖₁)·η then η,  x ← x + t d;  stopping at
    max|g| ≤ tolerance_grad, gᵀd > −tolerance_change, max|t d| ≤ tolerance_change, |Δf| < tolerance_change or
    after ``max_eval`` evaluations. ``f_and_grad(x)`` returns (f, g); ``s`` keeps the state between calls."""
    assert line_search_fn is None, "the naive reference has no line search"
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    f, g = f_and_grad(x)
    evals = 1
    if np.abs(g).max() <= tolerance_grad:
        return x
    for n in range(1, max_iter + 1):
        s["n_iter"] = s.get("n_iter", 0) + 1
        if s["n_iter"] == 1:
            d, s["pairs"], s["H"] = -g, [], 1.0
        else:
            y, step = g - s["prev_g"], s["d"] * s["t"]
            if y @ step > 1e-10:
                s["pairs"] = (s["pairs"] + [(step, y)])[-history_size:]
                s["H"] = (y @ step) / (y @ y)
            q, alphas = -g, []
            for sp, yp in reversed(s["pairs"]):
                alphas.append((sp @ q) / (yp @ sp))
                q = q - alphas[-1] * yp
            r = s["H"] * q
            for (sp, yp), a in zip(s["pairs"], reversed(alphas)):
                r = r + (a - (yp @ r) / (yp @ sp)) * sp
            d = r
        s["prev_g"], prev_f = g, f
        t = min(1.0, 1.0 / np.abs(g).sum()) * lr if s["n_iter"] == 1 else lr
        s["d"], s["t"] = d, t
        if g @ d > -tolerance_change:
            break
        x = x + t * d
        if n != max_iter:
            f, g = f_and_grad(x)
            evals += 1
        if n == max_iter or evals >= max_eval or np.abs(g).max() <= tolerance_grad:
            break
        if np.abs(t * d).max() <= tolerance_change or abs(f - prev_f) < tolerance_change:
            break
    return x


def lion(w, g, s, t, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, decoupled_weight_decay=False, maximize=False,
         use_triton=False):
    """Lion (Chen et al. 2023): c = β₁m + (1 − β₁)g, w ← w(1 − ηλ) − η sign(c), m ← β₂m + (1 − β₂)g; with
    lion-pytorch's decoupled_weight_decay=True, λ is divided by the initial rate (here the constant lr)."""
    g = -g if maximize else g
    b1, b2 = betas
    lam = weight_decay / lr if decoupled_weight_decay else weight_decay
    m = s.get("exp_avg", np.zeros_like(w))
    w = w * (1 - lr * lam) - lr * np.sign(b1 * m + (1 - b1) * g)
    s["exp_avg"] = b2 * m + (1 - b2) * g
    return w


def _schedule_free_weight(t, lr, warmup_steps, r, weight_lr_power):
    """c_t = w_t / Σ_{i ≤ t} w_i with w_i = i^r · (max_{j ≤ i} γ_j)^p and γ_j = lr · min(1, j / warmup), summed
    from scratch; and γ_t."""
    gamma = [lr * (min(1.0, j / warmup_steps) if warmup_steps else 1.0) for j in range(1, t + 1)]
    weights = [i**r * max(gamma[:i]) ** weight_lr_power for i in range(1, t + 1)]
    total = sum(weights)
    return (weights[-1] / total if total else 0.0), gamma[-1]


def _schedule_free_step(w, d_of_y, s, t, lr, beta, warmup_steps, r, weight_lr_power):
    """The paper's three sequences (Defazio et al. 2024): with y the parameter and x recovered from it,
    z ← z − γ d(y),  x ← (1 − c) x + c z,  y = (1 − β) z + β x."""
    z = s.get("z", w.copy())
    x = (w - (1 - beta) * z) / beta  # y = (1 − β) z + β x
    c, gamma = _schedule_free_weight(t, lr, warmup_steps, r, weight_lr_power)
    z = z - gamma * d_of_y(w)
    x = (1 - c) * x + c * z
    s["z"] = z
    return (1 - beta) * z + beta * x


def schedulefree_adamw(w, g, s, t, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0,
                       r=0.0, weight_lr_power=2.0, maximize=False, foreach=True):
    """Schedule-free AdamW: v ← β₂v + (1 − β₂)g², d = g / (√(v / (1 − β₂ᵗ)) + ε) + λy."""
    g = -g if maximize else g
    v = betas[1] * s.get("exp_avg_sq", np.zeros_like(w)) + (1 - betas[1]) * g**2
    s["exp_avg_sq"] = v
    d = g / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return _schedule_free_step(w, lambda y: d + weight_decay * y, s, t, lr, betas[0], warmup_steps, r,
                               weight_lr_power)


def schedulefree_sgd(w, g, s, t, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0,
                     maximize=False, foreach=True):
    """Schedule-free SGD: d = g + λy."""
    g = -g if maximize else g
    return _schedule_free_step(w, lambda y: g + weight_decay * y, s, t, lr, momentum, warmup_steps, r,
                               weight_lr_power)
