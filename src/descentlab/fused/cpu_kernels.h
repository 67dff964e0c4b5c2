/* One streaming pass per optimizer step over many tensors: the element-wise kernels of the CPU fused path.
 *
 * Included twice by cpu_kernels.c, with T = float / SUF = f32 and T = double / SUF = f64.
 * Every kernel has the signature of dl_kernel_fn (cpu_kernels.c) and works in two phases:
 *
 *   1. serial, per tensor: advance the step counter (a 0-d tensor, float32 or float64 as torch keeps it)
 *      and compute the step-dependent scalars (bias corrections, Adagrad's decayed rate, NAdam's μ_t and
 *      Π, ASGD's η_t and μ_t) in double, exactly as the Python rule computes them. The 0-d state beside the
 *      step (``extra``: E entries per tensor, tensor-major, extra[t·E + e]) is float32 or float64 as bit
 *      1 + e of step_f64 says;
 *   2. parallel, per element: the concatenation of all tensors is split into one contiguous range per
 *      thread, so 2 000 tiny tensors and one huge tensor balance alike and the whole step is one
 *      OpenMP region. The element math mirrors the reference rule's tensor ops in order, in the
 *      tensor's dtype, with the Python scalars cast to it (as torch casts a Python float argument),
 *      and with a fused multiply-add exactly where torch's CPU kernels use one (measured on torch 2.13:
 *      add(alpha) = fma(b, α, a); addcmul = fma(v·t1, t2, a); lerp = fma(w, e − s, s) or
 *      fma(w − 1, e − s, e); addcdiv = a + (v·t1)/t2, mul, div, sqrt plain). So the fused path agrees
 *      with the reference rule bit for bit on most elements, within an ulp on the rest.
 *
 * The reference rules in descentlab/rules/ are the oracle; tests/test_fused_cpu.py checks every kernel
 * against them step by step.
 */

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define KERNEL(name) CAT(dl_##name, SUF)
/* The one signature of every kernel (see cpu_kernels.c). */
#define KERNEL_SIGNATURE(name)                                                                    \
    int KERNEL(name)(int64_t n, const int64_t *numel, void *const *param, void *const *grad,      \
                     void *const *s0, void *const *s1, void *const *s2, void *const *step,        \
                     void *const *extra, int step_f64, const double *hp, double grad_inv_scale,   \
                     int nthreads)

/* Phase 2 loop: the calling thread's share of the concatenated elements, tensor by tensor.
 * Inside BODY: t (tensor index), j (element index in tensor t). */
#define FOR_MY_ELEMENTS(...)                                                                      \
    {                                                                                             \
        int nth_ = omp_get_num_threads(), tid_ = omp_get_thread_num();                            \
        int64_t lo_ = (int64_t)((__int128)total * tid_ / nth_);                                   \
        int64_t hi_ = (int64_t)((__int128)total * (tid_ + 1) / nth_);                             \
        int64_t t = first_tensor(offsets, n, lo_);                                                \
        while (lo_ < hi_) {                                                                       \
            int64_t end_ = offsets[t + 1] < hi_ ? offsets[t + 1] : hi_;                            \
            int64_t j0 = lo_ - offsets[t], j1 = end_ - offsets[t];                                \
            __VA_ARGS__                                                                           \
            lo_ = end_;                                                                           \
            t++;                                                                                  \
        }                                                                                         \
    }

#define PARALLEL _Pragma("omp parallel num_threads(nthreads) if(total >= DL_MIN_PARALLEL && nthreads > 1)")

/* g ← −g if maximising;  g ← g + λ w (coupled weight decay) — rules.common.prepare_gradient. */
/* With GradScaler (grad_inv_scale ≠ 0) the gradient is unscaled first, g ← g · (1/s), and written back, as
 * GradScaler.unscale_ would have left it; the step uses that written value (rounded to a bf16 / fp16 gradient's
 * dtype), as the reference path does. */
#define PREPARE(gi, pi)                                                                           \
    T gi = LOADP(G[j]);                                                                           \
    if (unscale) { PT gs_ = STOREP(gi * inv_scale); G[j] = gs_; gi = LOADP(gs_); }                \
    if (maximize) gi = -gi;                                                                       \
    if (wd_on) gi = FMA((pi), wd, gi);
/* √(x + ε) or √x + ε — rules.common.root_with_eps. */
#define ROOT(x) (inside ? SQRT((x) + eps) : SQRT(x) + eps)
/* torch.lerp(a, b, w) for a scalar weight w, as torch evaluates it. */
#define LERP(a, b, w) ((w) < (T)0.5 ? FMA((w), (b) - (a), (a)) : FMA((w) - (T)1, (b) - (a), (b)))

/* Common prologue: offsets and totals; hp = per-group hyperparameters (doubles). */
#define PROLOGUE                                                                                  \
    int64_t *offsets = prefix_offsets(n, numel);                                                  \
    if (!offsets) return 1;                                                                       \
    int64_t total = offsets[n];                                                                   \
    const int unscale = grad_inv_scale != 0;                                                      \
    const T inv_scale = (T)grad_inv_scale;                                                        \
    (void)total;

#define EPILOGUE free(offsets); return 0;

/* A required pointer array is missing (a caller bug): refuse before touching any memory. */
#define REQUIRE(cond) if (!(cond)) { free(offsets); return 2; }

/* Advance every step counter by one (as ``state["step"] += 1``) and return tensor t's new step. */
static inline double CAT(advance, SUF)(void *const *step, int step_f64, int64_t t) {
    if (step_f64 & 1) { double *s = (double *)step[t]; *s = *s + 1.0; return *s; }
    float *s = (float *)step[t]; *s = *s + 1.0f; return (double)*s;
}

/* ------------------------------------------------------------------------------------------ SGD */
/* hp: lr, weight_decay, maximize.   w ← w − η g */
KERNEL_SIGNATURE(sgd) {
    (void)s0; (void)s1; (void)s2; (void)step; (void)extra; (void)step_f64;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad))
    const T neg_lr = (T)(-hp[0]), wd = (T)hp[1];
    const int wd_on = hp[1] != 0, maximize = hp[2] != 0;
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        for (int64_t j = j0; j < j1; j++) {
            PREPARE(g, LOADP(P[j]))
            P[j] = STOREP(FMA(g, neg_lr, LOADP(P[j])));
        }
    })
    EPILOGUE
}

/* ------------------------------------------------------------------------- momentum, sum form */
/* hp: lr, momentum β, 1 − dampening, nesterov, weight_decay, maximize, counts_steps.
 *   a ← β a + (1 − d) g;   w ← w − η a   (nesterov: w ← w − η (g + β a)) */
KERNEL_SIGNATURE(heavy_ball) {
    (void)s1; (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && (hp[6] == 0 || step)))
    const T neg_lr = (T)(-hp[0]), mom = (T)hp[1], undamped = (T)hp[2], wd = (T)hp[4];
    const int nesterov = hp[3] != 0, wd_on = hp[4] != 0, maximize = hp[5] != 0;
    if (hp[6] != 0)
        for (int64_t t = 0; t < n; t++) CAT(advance, SUF)(step, step_f64, t);
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict A = (T *)s0[t];
        for (int64_t j = j0; j < j1; j++) {
            PREPARE(g, LOADP(P[j]))
            T a = FMA(g, undamped, A[j] * mom);
            A[j] = a;
            T d = nesterov ? FMA(a, mom, g) : a;
            P[j] = STOREP(FMA(d, neg_lr, LOADP(P[j])));
        }
    })
    EPILOGUE
}

/* ------------------------------------------------------------------------- momentum, ema form */
/* hp: lr, β, nesterov, bias_correction, weight_decay, maximize, counts_steps.
 *   v ← β v + (1 − β) g;   w ← w − η/c · v  (nesterov: (1 − β) g + β v);  c = 1 − β^t or 1 */
KERNEL_SIGNATURE(ema_momentum) {
    (void)s1; (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && (hp[6] == 0 || step)))
    const double lr = hp[0], beta_d = hp[1];
    const T beta = (T)beta_d, one_minus_beta = (T)(1 - beta_d), wd = (T)hp[4];
    const int nesterov = hp[2] != 0, corrected = hp[3] != 0, wd_on = hp[4] != 0, maximize = hp[5] != 0;
    T *neg_scale = (T *)malloc(sizeof(T) * (n ? n : 1));
    if (!neg_scale) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = hp[6] != 0 ? CAT(advance, SUF)(step, step_f64, t) : 1.0;
        neg_scale[t] = (T)(-(corrected ? lr / (1.0 - pow(beta_d, s)) : lr));
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict V = (T *)s0[t];
        const T k = neg_scale[t];
        for (int64_t j = j0; j < j1; j++) {
            PREPARE(g, LOADP(P[j]))
            T v = FMA(g, one_minus_beta, V[j] * beta);
            V[j] = v;
            T d = nesterov ? FMA(v, beta, g * one_minus_beta) : v;
            P[j] = STOREP(FMA(d, k, LOADP(P[j])));
        }
    })
    free(neg_scale);
    EPILOGUE
}

/* ------------------------------------------------------------------------------------- Adagrad */
/* hp: lr, lr_decay, eps, inside, weight_decay, maximize.
 *   G ← G + g²;   w ← w − η/(1 + (t − 1) δ) · g / root(G) */
KERNEL_SIGNATURE(adagrad) {
    (void)s1; (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && step))
    const T eps = (T)hp[2], wd = (T)hp[4];
    const int inside = hp[3] != 0, wd_on = hp[4] != 0, maximize = hp[5] != 0;
    T *neg_lr = (T *)malloc(sizeof(T) * (n ? n : 1));
    if (!neg_lr) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = CAT(advance, SUF)(step, step_f64, t);
        neg_lr[t] = (T)(-(hp[0] / (1 + (s - 1) * hp[1])));
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict S = (T *)s0[t];
        const T k = neg_lr[t];
        for (int64_t j = j0; j < j1; j++) {
            PREPARE(g, LOADP(P[j]))
            T s = FMA(g, g, S[j]);
            S[j] = s;
            P[j] = STOREP(LOADP(P[j]) + (k * g) / ROOT(s));
        }
    })
    free(neg_lr);
    EPILOGUE
}

/* ------------------------------------------------------------------------------------ Adadelta */
/* hp: lr, rho, eps, inside, weight_decay, maximize.
 *   S ← ρ S + (1 − ρ) g²;   Δ = root(H) / root(S) · g;   H ← ρ H + (1 − ρ) Δ²;   w ← w − η Δ */
KERNEL_SIGNATURE(adadelta) {
    (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step))
    const T neg_lr = (T)(-hp[0]), rho = (T)hp[1], one_minus_rho = (T)(1 - hp[1]), eps = (T)hp[2], wd = (T)hp[4];
    const int inside = hp[3] != 0, wd_on = hp[4] != 0, maximize = hp[5] != 0;
    for (int64_t t = 0; t < n; t++) CAT(advance, SUF)(step, step_f64, t);
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict S = (T *)s0[t];
        T *restrict H = (T *)s1[t];
        for (int64_t j = j0; j < j1; j++) {
            PREPARE(g, LOADP(P[j]))
            T s = FMA(one_minus_rho * g, g, S[j] * rho);
            S[j] = s;
            T h = H[j];
            T delta = ROOT(h) / ROOT(s) * g;
            H[j] = FMA(one_minus_rho * delta, delta, h * rho);
            P[j] = STOREP(FMA(delta, neg_lr, LOADP(P[j])));
        }
    })
    EPILOGUE
}

/* ------------------------------------------------------------------------------------- RMSprop */
/* hp: lr, alpha, eps, inside, momentum, centered, weight_decay, maximize.
 * State: s0 = square_avg S, s1 = grad_avg ḡ (centered), s2 = momentum_buffer b (momentum > 0).
 *   S ← α S + (1 − α) g²;  centered: ḡ ← lerp(ḡ, g, 1 − α), V = max(S − ḡ², 0), else V = S
 *   D = root(V);  momentum: b ← μ b + g / D, w ← w − η b;  else w ← w − η g / D */
KERNEL_SIGNATURE(rmsprop) {
    (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && step && (hp[5] == 0 || s1) && (hp[4] <= 0 || s2)))
    const T neg_lr = (T)(-hp[0]), alpha = (T)hp[1], one_minus_alpha = (T)(1 - hp[1]), eps = (T)hp[2];
    const T mom = (T)hp[4], wd = (T)hp[6];
    const int inside = hp[3] != 0, with_momentum = hp[4] > 0, centered = hp[5] != 0;
    const int wd_on = hp[6] != 0, maximize = hp[7] != 0;
    for (int64_t t = 0; t < n; t++) CAT(advance, SUF)(step, step_f64, t);
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict S = (T *)s0[t];
        if (centered) {
            T *restrict A = (T *)s1[t];
            if (with_momentum) {
                T *restrict B = (T *)s2[t];
                for (int64_t j = j0; j < j1; j++) {
                    PREPARE(g, LOADP(P[j]))
                    T s = FMA(one_minus_alpha * g, g, S[j] * alpha); S[j] = s;
                    T a = LERP(A[j], g, one_minus_alpha); A[j] = a;
                    T v = FMA(-a, a, s); v = v < 0 ? (T)0 : v;
                    T b = B[j] * mom + g / ROOT(v); B[j] = b;
                    P[j] = STOREP(FMA(b, neg_lr, LOADP(P[j])));
                }
            } else {
                for (int64_t j = j0; j < j1; j++) {
                    PREPARE(g, LOADP(P[j]))
                    T s = FMA(one_minus_alpha * g, g, S[j] * alpha); S[j] = s;
                    T a = LERP(A[j], g, one_minus_alpha); A[j] = a;
                    T v = FMA(-a, a, s); v = v < 0 ? (T)0 : v;
                    P[j] = STOREP(LOADP(P[j]) + (neg_lr * g) / ROOT(v));
                }
            }
        } else if (with_momentum) {
            T *restrict B = (T *)s2[t];
            for (int64_t j = j0; j < j1; j++) {
                PREPARE(g, LOADP(P[j]))
                T s = FMA(one_minus_alpha * g, g, S[j] * alpha); S[j] = s;
                T b = B[j] * mom + g / ROOT(s); B[j] = b;
                P[j] = STOREP(FMA(b, neg_lr, LOADP(P[j])));
            }
        } else {
            for (int64_t j = j0; j < j1; j++) {
                PREPARE(g, LOADP(P[j]))
                T s = FMA(one_minus_alpha * g, g, S[j] * alpha); S[j] = s;
                P[j] = STOREP(LOADP(P[j]) + (neg_lr * g) / ROOT(s));
            }
        }
    })
    EPILOGUE
}

/* ---------------------------------------------------------------------------- Adam / AdamW / AMSGrad */
/* hp: lr, β1, β2, eps, inside, amsgrad, bias_correction, decoupled, weight_decay, maximize.
 * State: s0 = m, s1 = v, s2 = v_max (amsgrad).
 *   (decoupled) w ← (1 − η λ) w;  m ← lerp(m, g, 1 − β1);  v ← β2 v + (1 − β2) g²;  (amsgrad) v̂ ← max(v̂, v)
 *   D = √v / √c2 + ε  or  √(v / c2 + ε);   w ← w − η / c1 · m / D,   c_i = 1 − β_i^t (or 1) */
KERNEL_SIGNATURE(adam) {
    (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step && (hp[5] == 0 || s2)))
    const double lr = hp[0], b1 = hp[1], b2 = hp[2];
    const T one_minus_b1 = (T)(1 - b1), beta2 = (T)b2, one_minus_b2 = (T)(1 - b2), eps = (T)hp[3];
    const int inside = hp[4] != 0, ams = hp[5] != 0, corrected = hp[6] != 0, decoupled = hp[7] != 0;
    const int maximize = hp[9] != 0, wd_on = !decoupled && hp[8] != 0, decay_on = decoupled && hp[8] != 0;
    const T wd = (T)hp[8], decay = (T)(1 - lr * hp[8]);
    /* per tensor: −η/c1, √c2 (outside) or c2 (inside) */
    T *k = (T *)malloc(sizeof(T) * 2 * (n ? n : 1));
    if (!k) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = CAT(advance, SUF)(step, step_f64, t);
        double c1 = corrected ? 1.0 - pow(b1, s) : 1.0, c2 = corrected ? 1.0 - pow(b2, s) : 1.0;
        k[2 * t] = (T)(-(lr / c1));
        k[2 * t + 1] = inside ? (T)c2 : (T)sqrt(c2);
    }
    /* One loop per (amsgrad, ε placement): a loop-invariant branch around a conditional store keeps gcc
     * from vectorizing, so these two are unswitched by hand. */
#define ADAM_LOOP(AMS, INSIDE)                                                                    \
    for (int64_t j = j0; j < j1; j++) {                                                           \
        T p = LOADP(P[j]);                                                                               \
        if (decay_on) p = p * decay;                                                              \
        PREPARE(g, p)                                                                             \
        T m = LERP(M[j], g, one_minus_b1); M[j] = m;                                              \
        T v = FMA(one_minus_b2 * g, g, V[j] * beta2); V[j] = v;                                \
        if (AMS) { T x = X[j]; v = (x > v || x != x) ? x : v; X[j] = v; } /* torch.maximum: NaN wins */ \
        T d = (INSIDE) ? SQRT(v / c + eps) : SQRT(v) / c + eps;                                    \
        P[j] = STOREP(p + (neg_step * m) / d);                                                            \
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict M = (T *)s0[t];
        T *restrict V = (T *)s1[t];
        T *restrict X = ams ? (T *)s2[t] : NULL;
        const T neg_step = k[2 * t], c = k[2 * t + 1];
        if (ams) { if (inside) { ADAM_LOOP(1, 1) } else { ADAM_LOOP(1, 0) } }
        else { if (inside) { ADAM_LOOP(0, 1) } else { ADAM_LOOP(0, 0) } }
    })
#undef ADAM_LOOP
    free(k);
    EPILOGUE
}

/* --------------------------------------------------------------------------------------- NAdam */
/* hp: lr, β1, β2, eps, inside, momentum_decay ψ, decoupled, weight_decay, maximize.
 * State: s0 = m, s1 = v; extra = Π (mu_product, a 0-d tensor of the step's dtype).
 *   μ_t = β1 (1 − ½ 0.96^{tψ});  Π ← Π μ_t;  m ← lerp(m, g, 1 − β1);  v ← β2 v + (1 − β2) g²
 *   D = root(v / c2);   w ← w − η (1 − μ_t)/(1 − Π) · g / D − η μ_{t+1}/(1 − Π μ_{t+1}) · m / D */
KERNEL_SIGNATURE(nadam) {
    (void)s2;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step && extra))
    const double lr = hp[0], b1 = hp[1], b2 = hp[2], psi = hp[5];
    const T one_minus_b1 = (T)(1 - b1), beta2 = (T)b2, one_minus_b2 = (T)(1 - b2), eps = (T)hp[3];
    const int inside = hp[4] != 0, decoupled = hp[6] != 0, maximize = hp[8] != 0;
    const int wd_on = !decoupled && hp[7] != 0, decay_on = decoupled && hp[7] != 0;
    const T wd = (T)hp[7], decay = (T)(1 - lr * hp[7]);
    /* per tensor: c2, −η(1 − μ)/(1 − Π), −η μ'/(1 − Π μ') */
    T *k = (T *)malloc(sizeof(T) * 3 * (n ? n : 1));
    if (!k) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = CAT(advance, SUF)(step, step_f64, t);
        double mu = b1 * (1.0 - 0.5 * pow(0.96, s * psi));
        double mu_next = b1 * (1.0 - 0.5 * pow(0.96, (s + 1) * psi));
        double product;
        if (step_f64 & 2) { double *q = (double *)extra[t]; *q = *q * mu; product = *q; }
        else { float *q = (float *)extra[t]; *q = *q * (float)mu; product = (double)*q; }
        k[3 * t] = (T)(1.0 - pow(b2, s));
        k[3 * t + 1] = (T)(-lr * (1.0 - mu) / (1.0 - product));
        k[3 * t + 2] = (T)((-lr * mu_next) / (1.0 - product * mu_next));
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict M = (T *)s0[t];
        T *restrict V = (T *)s1[t];
        const T c2 = k[3 * t], kg = k[3 * t + 1], km = k[3 * t + 2];
        for (int64_t j = j0; j < j1; j++) {
            T p = LOADP(P[j]);
            if (decay_on) p = p * decay;
            PREPARE(g, p)
            T m = LERP(M[j], g, one_minus_b1); M[j] = m;
            T v = FMA(one_minus_b2 * g, g, V[j] * beta2); V[j] = v;
            T d = ROOT(v / c2);
            p = p + (kg * g) / d;
            P[j] = STOREP(p + (km * m) / d);
        }
    })
    free(k);
    EPILOGUE
}

/* -------------------------------------------------------------------------------------- Adamax */
/* hp: lr, β1, β2, eps, inside, decoupled, weight_decay, maximize.   State: s0 = m, s1 = u.
 *   (decoupled) w ← (1 − η λ) w;  m ← lerp(m, g, 1 − β1);
 *   inside (PyTorch):  u ← max(β2 u, |g| + ε);  w ← w − η/c1 · m / u
 *   outside (Keras):   u ← max(β2 u, |g|);      w ← w − η/c1 · m / (u + ε)      (torch.maximum: NaN wins) */
KERNEL_SIGNATURE(adamax) {
    (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step))
    const double lr = hp[0], b1 = hp[1];
    const T one_minus_b1 = (T)(1 - b1), beta2 = (T)hp[2], eps = (T)hp[3];
    const int inside = hp[4] != 0, decoupled = hp[5] != 0, maximize = hp[7] != 0;
    const int wd_on = !decoupled && hp[6] != 0, decay_on = decoupled && hp[6] != 0;
    const T wd = (T)hp[6], decay = (T)(1 - lr * hp[6]);
    T *k = (T *)malloc(sizeof(T) * (n ? n : 1)); /* per tensor: −η/c1 */
    if (!k) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) k[t] = (T)(-(lr / (1.0 - pow(b1, CAT(advance, SUF)(step, step_f64, t)))));
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict M = (T *)s0[t];
        T *restrict U = (T *)s1[t];
        const T neg_step = k[t];
        for (int64_t j = j0; j < j1; j++) {
            T p = LOADP(P[j]);
            if (decay_on) p = p * decay;
            PREPARE(g, p)
            T m = LERP(M[j], g, one_minus_b1); M[j] = m;
            T u = U[j] * beta2, a = inside ? (g < 0 ? -g : g) + eps : (g < 0 ? -g : g);
            u = (u > a || u != u) ? u : a; U[j] = u;
            P[j] = STOREP(p + (neg_step * m) / (inside ? u : u + eps));
        }
    })
    free(k);
    EPILOGUE
}

/* --------------------------------------------------------------------------------------- RAdam */
/* hp: lr, β1, β2, eps, decoupled, weight_decay, maximize.   State: s0 = m, s1 = v.
 *   m ← lerp(m, g, 1 − β1);  v ← β2 v + (1 − β2) g²;  ρ_t = ρ_∞ − 2 t β2^t / c2  (per tensor, in double)
 *   ρ_t > 5:  w ← w − (((m / c1) η) · ((√v + ε)⁻¹ √c2)) · r_t;   else  w ← w − (m / c1) η   (torch's op order) */
KERNEL_SIGNATURE(radam) {
    (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step))
    const double lr = hp[0], b1 = hp[1], b2 = hp[2];
    const T lr_t = (T)lr, one_minus_b1 = (T)(1 - b1), beta2 = (T)b2, one_minus_b2 = (T)(1 - b2), eps = (T)hp[3];
    const int decoupled = hp[4] != 0, maximize = hp[6] != 0;
    const int wd_on = !decoupled && hp[5] != 0, decay_on = decoupled && hp[5] != 0;
    const T wd = (T)hp[5], decay = (T)(1 - lr * hp[5]);
    const double rho_inf = 2 / (1 - b2) - 1;
    /* per tensor: c1, √c2, r_t (0: the un-rectified branch) */
    T *k = (T *)malloc(sizeof(T) * 3 * (n ? n : 1));
    if (!k) { free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = CAT(advance, SUF)(step, step_f64, t);
        double c1 = 1.0 - pow(b1, s), c2 = 1.0 - pow(b2, s);
        double rho = rho_inf - 2 * s * pow(b2, s) / c2;
        k[3 * t] = (T)c1;
        k[3 * t + 1] = (T)pow(c2, 0.5);
        k[3 * t + 2] = rho > 5.0 ? (T)pow((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho), 0.5)
                                 : (T)0;
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict M = (T *)s0[t];
        T *restrict V = (T *)s1[t];
        const T c1 = k[3 * t], root_c2 = k[3 * t + 1], r = k[3 * t + 2];
        if (r != (T)0) {
            for (int64_t j = j0; j < j1; j++) {
                T p = LOADP(P[j]);
                if (decay_on) p = p * decay;
                PREPARE(g, p)
                T m = LERP(M[j], g, one_minus_b1); M[j] = m;
                T v = FMA(one_minus_b2 * g, g, V[j] * beta2); V[j] = v;
                T adaptive = ((T)1 / (SQRT(v) + eps)) * root_c2;
                P[j] = STOREP(p - ((m / c1) * lr_t * adaptive) * r);
            }
        } else {
            for (int64_t j = j0; j < j1; j++) {
                T p = LOADP(P[j]);
                if (decay_on) p = p * decay;
                PREPARE(g, p)
                T m = LERP(M[j], g, one_minus_b1); M[j] = m;
                V[j] = FMA(one_minus_b2 * g, g, V[j] * beta2);
                P[j] = STOREP(p - (m / c1) * lr_t);
            }
        }
    })
    free(k);
    EPILOGUE
}

/* --------------------------------------------------------------------------------------- Rprop */
/* hp: η₋, η₊, Δ_min, Δ_max, weight_decay, maximize.   State: s0 = prev p, s1 = step_size Δ.
 *   s = sign(g p) (sign(NaN) = 0, as torch's CPU sign);  Δ ← clamp(Δ · (η₊ | η₋ | 1), Δ_min, Δ_max) (NaN stays);
 *   g ← 0 where s < 0;  w ← w − sign(g) Δ;  p ← g */
KERNEL_SIGNATURE(rprop) {
    (void)s2; (void)extra;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1 && step))
    const T etaminus = (T)hp[0], etaplus = (T)hp[1], lo = (T)hp[2], hi = (T)hp[3], wd = (T)hp[4];
    const int wd_on = hp[4] != 0, maximize = hp[5] != 0;
    for (int64_t t = 0; t < n; t++) CAT(advance, SUF)(step, step_f64, t);
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict R = (T *)s0[t];
        T *restrict D = (T *)s1[t];
        for (int64_t j = j0; j < j1; j++) {
            T p = LOADP(P[j]);
            PREPARE(g, p)
            /* selects, not branches, so that the loop vectorizes */
            T prod = g * R[j];
            T d = D[j] * (prod > 0 ? etaplus : (prod < 0 ? etaminus : (T)1));
            d = d < lo ? lo : d;  /* clamp as torch's: max, then min; a NaN fails both tests and stays */
            d = d > hi ? hi : d;
            D[j] = d;
            g = prod < 0 ? (T)0 : g;
            T neg_sign = g > 0 ? (T)-1 : (g < 0 ? (T)1 : (T)0);
            P[j] = STOREP(FMA(neg_sign, d, p));
            R[j] = g;
        }
    })
    EPILOGUE
}

/* ---------------------------------------------------------------------------------------- ASGD */
/* hp: lr η, λ (lambd), α, t₀, weight_decay, maximize.   State: s0 = ā (ax); extra = (η_t, μ_t) (eta, mu), 0-d
 * tensors of torch's default dtype (bits 1 and 2 of step_f64 say float64).
 * Per tensor, in double as the Python rule: read η_t, μ_t; then η_{t+1} = η / (1 + λ η t)^α, μ_{t+1} = 1 / max(1, t − t₀),
 * stored in the scalars' dtype (as fill_).
 *   w ← w (1 − λ η_t);  w ← w − η_t g;  ā ← ā + (w − ā) μ_t  (ā ← w while μ_t = 1) */
KERNEL_SIGNATURE(asgd) {
    (void)s1; (void)s2;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && step && extra))
    const double lr = hp[0], lambd = hp[1], alpha = hp[2], t0 = hp[3];
    const T wd = (T)hp[4];
    const int wd_on = hp[4] != 0, maximize = hp[5] != 0;
    const int eta_f64 = (step_f64 & 2) != 0, mu_f64 = (step_f64 & 4) != 0;
    /* per tensor: 1 − λ η_t, −η_t, μ_t, and whether μ_t ≠ 1 (averaging) */
    T *k = (T *)malloc(sizeof(T) * 3 * (n ? n : 1));
    unsigned char *averaging = (unsigned char *)malloc((size_t)(n ? n : 1));
    if (!k || !averaging) { free(k); free(averaging); free(offsets); return 1; }
    for (int64_t t = 0; t < n; t++) {
        double s = CAT(advance, SUF)(step, step_f64, t);
        double rate = dl_load_scalar(extra[2 * t], eta_f64), weight = dl_load_scalar(extra[2 * t + 1], mu_f64);
        k[3 * t] = (T)(1 - lambd * rate);
        k[3 * t + 1] = (T)(-rate);
        k[3 * t + 2] = (T)weight;
        averaging[t] = weight != 1;
        dl_store_scalar(extra[2 * t], eta_f64, lr / pow(1 + lambd * lr * s, alpha));
        double since_t0 = s - t0;
        dl_store_scalar(extra[2 * t + 1], mu_f64, 1 / (since_t0 > 1 ? since_t0 : 1)); /* Python's max(1, x) */
    }
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict A = (T *)s0[t];
        const T decay = k[3 * t], neg_rate = k[3 * t + 1], mu = k[3 * t + 2];
        if (averaging[t]) {
            for (int64_t j = j0; j < j1; j++) {
                T p = LOADP(P[j]);
                PREPARE(g, p)
                p = FMA(g, neg_rate, p * decay);
                P[j] = STOREP(p);
                T a = A[j];
                A[j] = a + (p - a) * mu;
            }
        } else {
            for (int64_t j = j0; j < j1; j++) {
                T p = LOADP(P[j]);
                PREPARE(g, p)
                p = FMA(g, neg_rate, p * decay);
                P[j] = STOREP(p);
                A[j] = p;
            }
        }
    })
    free(k);
    free(averaging);
    EPILOGUE
}

/* ---------------------------------------------------------------------------------------- Lion */
/* hp: lr, β1, β2, decoupled, weight_decay, maximize.   State: s0 = m (exp_avg).
 *   (decoupled) w ← (1 − η λ) w;  c = m β1 + (1 − β1) g;  w ← w − η sign(c)  (sign(NaN) = 0, as torch's);
 *   m ← m β2 + (1 − β2) g */
KERNEL_SIGNATURE(lion) {
    (void)s1; (void)s2; (void)step; (void)extra; (void)step_f64;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0))
    const double lr = hp[0], b1 = hp[1], b2 = hp[2];
    const T neg_lr = (T)(-lr), beta1 = (T)b1, one_minus_b1 = (T)(1 - b1), beta2 = (T)b2, one_minus_b2 = (T)(1 - b2);
    const int decoupled = hp[3] != 0, maximize = hp[5] != 0;
    const int wd_on = !decoupled && hp[4] != 0, decay_on = decoupled && hp[4] != 0;
    const T wd = (T)hp[4], decay = (T)(1 - lr * hp[4]);
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict M = (T *)s0[t];
        for (int64_t j = j0; j < j1; j++) {
            T p = LOADP(P[j]);
            if (decay_on) p = p * decay;
            PREPARE(g, p)
            T m = M[j];
            T c = FMA(g, one_minus_b1, m * beta1);
            T sign = c > 0 ? (T)1 : (c < 0 ? (T)-1 : (T)0);
            P[j] = STOREP(FMA(sign, neg_lr, p));
            M[j] = FMA(g, one_minus_b2, m * beta2);
        }
    })
    EPILOGUE
}

/* ----------------------------------------------------------------------------- schedule-free SGD */
/* hp: lr η, β (momentum), c (ckp1), weight_decay, maximize — η and c are the group's scalars of this step,
 * computed in Python by the optimizer's plan().   State: s0 = z.   The parameter holds y (train mode):
 *   y ← lerp(y, z, c);  y ← y + η (β (1 − c) − 1) g;  z ← z − η g */
KERNEL_SIGNATURE(schedulefree_sgd) {
    (void)s1; (void)s2; (void)step; (void)extra; (void)step_f64;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0))
    const double lr = hp[0], beta = hp[1], ckp1 = hp[2];
    const T c = (T)ckp1, k_y = (T)(lr * (beta * (1 - ckp1) - 1)), neg_lr = (T)(-lr), wd = (T)hp[3];
    const int wd_on = hp[3] != 0, maximize = hp[4] != 0;
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict Z = (T *)s0[t];
        for (int64_t j = j0; j < j1; j++) {
            T y = LOADP(P[j]);
            PREPARE(g, y)
            T z = Z[j];
            y = LERP(y, z, c);
            P[j] = STOREP(FMA(g, k_y, y));
            Z[j] = FMA(g, neg_lr, z);
        }
    })
    EPILOGUE
}

/* --------------------------------------------------------------------------- schedule-free AdamW */
/* hp: lr η, β1, β2, eps, decay λ, c (ckp1), 1 − β2^{k+1} (bias_correction2), maximize — the group's scalars of this
 * step from the optimizer's plan().   State: s0 = z, s1 = v (exp_avg_sq).   The parameter holds y:
 *   v ← β2 v + (1 − β2) g²;  d = g / (√(v / c2) + ε) + λ y;
 *   y ← lerp(y, z, c);  y ← y + η (β1 (1 − c) − 1) d;  z ← z − η d */
KERNEL_SIGNATURE(schedulefree_adamw) {
    (void)s2; (void)step; (void)extra; (void)step_f64;
    PROLOGUE
    REQUIRE(n == 0 || (numel && param && grad && s0 && s1))
    const double lr = hp[0], beta1 = hp[1], b2 = hp[2], ckp1 = hp[5];
    const T beta2 = (T)b2, one_minus_b2 = (T)(1 - b2), eps = (T)hp[3], lambda = (T)hp[4], c2 = (T)hp[6];
    const T c = (T)ckp1, k_y = (T)(lr * (beta1 * (1 - ckp1) - 1)), neg_lr = (T)(-lr);
    const int decay_on = hp[4] != 0, maximize = hp[7] != 0, wd_on = 0;
    const T wd = (T)0;
    PARALLEL
    FOR_MY_ELEMENTS({
        PT *restrict P = (PT *)param[t];
        PT *restrict G = (PT *)grad[t];
        T *restrict Z = (T *)s0[t];
        T *restrict V = (T *)s1[t];
        for (int64_t j = j0; j < j1; j++) {
            T y = LOADP(P[j]);
            PREPARE(g, y)
            T v = FMA(one_minus_b2 * g, g, V[j] * beta2); V[j] = v;
            T d = g / (SQRT(v / c2) + eps);
            if (decay_on) d = FMA(y, lambda, d);
            T z = Z[j];
            y = LERP(y, z, c);
            P[j] = STOREP(FMA(d, k_y, y));
            Z[j] = FMA(d, neg_lr, z);
        }
    })
    EPILOGUE
}

#undef KERNEL
#undef KERNEL_SIGNATURE
