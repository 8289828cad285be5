#include "estimator.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"
#include "layers.h"
#include "stochastic.h"
#include "surrogate.h"
#include "util.h"

/* Slots at the head of est_state.persist (see estimator.h). */
enum { P_MEAN, P_VAR, P_SEEN, P_ADAM_T, P_HEADER };

/* The scratch of est_state, at the head of its one block; B = max_batch,
 * Z = zdim, D pixels, H = EST_BASELINE_HIDDEN. */
struct est_scratch {
    float *noise;         /* [B][Z] noise of the last relaxed or Gumbel-Max sample */
    float *soft;          /* [B][Z] the relaxed sample (annealed-st: q at slope 1/tau) */
    double *signal;       /* [B] the learning signal per example */
    double *fbar;         /* [B] f at the mean-field point (muprop), at the
                           * antithetic partner bt (arm, disarm) */
    float *zpair;         /* [B][Z] the antithetic partner bt (arm, disarm) */
    float *zbar;          /* [B][Z] the mean-field point q */
    float *dzbar;         /* [B][Z] f'(zbar) per example */
    float *grad_discard;  /* [nparams] parameter gradients of passes that must not count */

    /* Baseline network C(x) (baseline.h), its nbl
     * parameters in persist (baseline learned only; else NULL, 0). */
    int bl_hidden;        /* H */
    size_t nbl;           /* H D + H + H + 1 */
    bnet_ws bl;           /* h, dh [B][H]; out, dout [B]; grads [nbl] */
    adam_state bl_adam;   /* m and v point into persist */
    float bl_lr;

    /* The K-sample bound (vimco), R = B K rows, row b K + k the k-th sample
     * of example b; NULL when samples is 1. */
    float *k_logits;      /* [R][Z] each example's logits, K times */
    float *k_noise;       /* [R][Z] Gumbel-Max noise */
    float *k_z;           /* [R][Z] the samples */
    float *k_x;           /* [R][D] each example's image, K times */
    float *k_scale;       /* [R] the decoder's row weight w~ / B */
    double *k_logw;       /* [R] log w = log p(x|z) + log p(z) - log q(z|x) */
    double *k_coef;       /* [R] a row's signal (encoder), then -w~ (prior) */
    double *k_wn;         /* [R] the normalised importance weights w~ */
    double *k_loo;        /* [K] one example's log w with one left out */
    float *k_dl;          /* [R][Z] d log(p(y)/q(y)) / dl of a relaxed row (gumbel) */
    float *prior_p;       /* [Z] the learned prior's probabilities */

    /* REBAR (learns_cv), [B][Z] each: the logistic pre-activation z and
     * the conditional resample zt with d zt / dl, the uniforms of zt, a
     * relaxed code and its decoder gradient, the pathwise terms of the two
     * relaxed passes, a scratch estimate; f of the resample per example.
     * eta, log lambda and their Adam state live in persist at rb_off. */
    float *rb_z, *rb_zt, *rb_dzt, *rb_v, *rb_y, *rb_dy, *rb_dl1, *rb_dl2, *rb_g;
    double *rb_ft;        /* [B] */
    size_t rb_off;
    adam_state rb_adam;
    int cv;               /* EST_CV_*: what persist has room for */
    float *cv_grad;       /* [2 + nrx] d sum g^2 / d (eta, log lambda, r's parameters) */

    /* RELAX (EST_CV_RELAX): the surrogate r at z (1) and at zt (2), H =
     * EST_RELAX_HIDDEN: squashed inputs [B][Z], tanh units [B][H], outputs
     * [B], input gradients [B][Z] and w2 (1 - h^2) [B][H]; corr [B][Z]
     * d r(z)/dl - d r(zt)/dl per unit; the variance gradient's weights
     * alpha [B] and v [B][Z] and its scratch sv [B][Z], t and da [B][H].
     * r's nrx parameters and their Adam state live in persist at rx_off. */
    int rx_hidden;
    size_t nrx, rx_off;
    float *rx_s1, *rx_h1, *rx_r1, *rx_dz1, *rx_u1;
    float *rx_s2, *rx_h2, *rx_r2, *rx_dz2, *rx_u2;
    float *rx_corr, *rx_alpha, *rx_v, *rx_sv, *rx_t, *rx_da;
    adam_state rx_adam;

    /* Enumeration scratch of `exact` (NULL when too many codes). */
    long exact_configs;   /* K^N or 2^N, -1 past EST_EXACT_MAX_CONFIGS */
    float *rows_z;        /* [B][Z] codes of a chunk of (example, code) rows */
    float *rows_x;        /* [B][D] their images */
    float *row_scale;     /* [B] q(code | x) / B */
    double *row_w;        /* [B] q(code | x) of each row */
    double *acc_fz;       /* [B][Z] sum over codes of q f z */
    double *acc_f;        /* [B] sum over codes of q f */
};

int est_baseline_parse(const char *s, est_baseline *out)
{
    if (!strcmp(s, "none"))
        *out = EST_BASELINE_NONE;
    else if (!strcmp(s, "mean"))
        *out = EST_BASELINE_MEAN;
    else if (!strcmp(s, "learned"))
        *out = EST_BASELINE_LEARNED;
    else
        return -1;
    return 0;
}

const char *est_baseline_name(est_baseline b)
{
    return b == EST_BASELINE_NONE ? "none" : b == EST_BASELINE_MEAN ? "mean" : "learned";
}

void est_options_default(est_options *o)
{
    o->baseline = EST_BASELINE_MEAN;
    o->var_norm = 1;
    o->norm_signal = 0;
    o->baseline_lr = 1e-3f;
    o->baseline_seed = 0;
    o->samples = 1;
    o->relaxed_kl = 0;
    o->darn_point = STOCH_DARN_CENTRE;
    o->learns_cv = 0;
}

/* ---- pieces shared by the estimators ---- */

/* Draw the relaxed sample into soft: Gumbel-Softmax for categorical codes,
 * Binary Concrete for Bernoulli ones. */
static void relaxed_sample(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    est_scratch *w = c->s->ws;
    stoch_relaxed_sample(&code, w->soft, w->noise, vae_logits(c->m, c->a), c->B, c->tau, c->r);
}

/* Decode z, record the loss, backpropagate the mean loss to a->dz. */
static void decode_and_backward(est_ctx *c, const float *z)
{
    vae_decode(c->m, c->a, z, c->B);
    vae_recon_loss(c->m, c->a, c->x, c->B);
    vae_decode_backward(c->m, c->a, c->x, z, c->B, 1.0f / (float)c->B);
}

/* The probabilities of q(z|x) at slope 1/tau into p.  At tau = 1 this is q
 * itself, the mean of a hard sample; for a categorical code that q is
 * exp(log q) of the encoder's log-softmax, the q of the analytic KL. */
static void probs_at(const est_ctx *c, float tau, float *p)
{
    const vae_config *cfg = &c->m->cfg;
    stoch_layer code = vae_code(cfg);
    if (cfg->latent == LATENT_CATEGORICAL && tau == 1.0f) {
        for (size_t i = 0; i < (size_t)c->B * vae_zdim(cfg); i++)
            p[i] = expf(c->a->logq[i]);
        return;
    }
    stoch_probs_forward(&code, p, vae_logits(c->m, c->a), c->B, tau);
}

/* a->dlogits = J^T v, J the Jacobian of probs_at(., tau) at its output p
 * (the relaxed sample's backward too, with p = soft). */
static void probs_backward(est_ctx *c, const float *p, const float *v, float tau)
{
    stoch_layer code = vae_code(&c->m->cfg);
    stoch_probs_backward(&code, c->a->dlogits, p, v, c->B, tau);
}

/* A true sample of q(z|x) into a->z. */
static void hard_sample(est_ctx *c)
{
    est_sample_hard(&c->m->cfg, vae_logits(c->m, c->a), c->B, c->s->ws->noise, c->a->z, c->r);
}

/* ---- the learning signal of the score-function family ---- */

static float *bl_params(const est_state *s)
{
    return s->persist + P_HEADER;
}

/* C(x) for the batch into bl.out (baseline.h). */
static void baseline_forward(est_ctx *c)
{
    est_scratch *w = c->s->ws;
    bnet_forward(bl_params(c->s), c->x, c->B, c->m->cfg.D, w->bl_hidden, &w->bl);
}

/* One Adam step of the network towards the signal less mean (bnet_fit),
 * given u[b] = f_b - C(x_b) from baseline_forward's outputs. */
static void baseline_train(est_ctx *c, const double *u, double mean)
{
    est_state *s = c->s;
    est_scratch *w = s->ws;
    bnet_fit(bl_params(s), &w->bl_adam, s->persist + P_ADAM_T, w->bl_lr, c->x, u, mean, c->B,
             c->m->cfg.D, w->bl_hidden, &w->bl);
}

/* Centre the per-example learning signal u in place, NVIL style
 * (stoch_nvil_centre), with the moving statistics kept in persist as
 * floats: u - C(x) - c, divided by max(1, sqrt(v)) when var_norm is set,
 * c and v the moving mean and variance of u - C(x) from earlier batches.
 * The network is fitted to u - c by squared error.
 *
 * The divisor goes into s->enc_scale as well: the rest of the encoder's
 * gradient (the analytic KL, MuProp's analytic term) must be divided by it
 * too.  NVIL's signal holds the whole bound, so its normalisation rescales
 * the whole encoder gradient; dividing only the reconstruction's score
 * term would let the KL outweigh it by the signal's standard deviation
 * (tens of nats) and collapse q(z|x) onto the prior.  est_state.norm_signal
 * does that, as a variant to measure (the paper does not say what its
 * normalisation divided). */
static void centre_signal(est_ctx *c, double *u)
{
    est_state *s = c->s;
    s->enc_scale = 1.0f;
    if (s->baseline == EST_BASELINE_NONE)
        return;
    float *p = s->persist;
    stoch_nvil stats = {p[P_MEAN], p[P_VAR], p[P_SEEN] != 0.0f};
    if (s->baseline == EST_BASELINE_LEARNED) {
        baseline_forward(c);
        for (int b = 0; b < c->B; b++)
            u[b] -= s->ws->bl.out[b];
        /* u is left as it is: the residuals are formed inside. */
        if (!s->frozen)
            baseline_train(c, u, stoch_nvil_offset(&stats));
    }
    s->enc_scale = (float)stoch_nvil_centre(&stats, u, c->B, s->var_norm, s->frozen);
    /* norm_signal: the divisor stays in the score term's signal alone. */
    if (s->norm_signal)
        s->enc_scale = 1.0f;
    if (!s->frozen) {
        p[P_MEAN] = (float)stats.mean;
        p[P_VAR] = (float)stats.var;
        p[P_SEEN] = 1.0f;
    }
}

/* dlogits += (u[b] / B) (z - q): the score term of one hard sample per
 * example. */
static void add_score_term(est_ctx *c, const double *u, const float *z, const float *q)
{
    stoch_layer code = vae_code(&c->m->cfg);
    stoch_score_add(&code, c->a->dlogits, z, q, u, c->B, 1, c->B);
}

/* Under a learned temperature, its gradient through the relaxed sample of
 * the last relaxed_sample: d loss / d log tau from a->dlogits, the
 * sample's backward (before the KL adds to it), into the log tau slot. */
static void learned_tau_backward(est_ctx *c)
{
    vae_model *m = c->m;
    if (!(m->cfg.learned_tau0 > 0))
        return;
    stoch_layer code = vae_code(&m->cfg);
    m->grads[m->log_tau] += (float)stoch_relaxed_dlog_tau(&code, vae_logits(m, c->a),
                                                          c->s->ws->noise, c->a->dlogits, c->B);
}

/* ---- the estimators ---- */

/* The relaxed K-sample bound, beside VIMCO's below. */
static void run_gumbel_bound(est_ctx *c);

/* Gumbel-Softmax: the decoder sees the relaxed sample; the gradient flows
 * through the softmax (and, when it is learned, to the temperature). */
static void run_gumbel(est_ctx *c)
{
    if (c->s->samples > 1 || c->s->relaxed_kl) {
        run_gumbel_bound(c);
        return;
    }
    const float *soft = c->s->ws->soft;
    relaxed_sample(c);
    decode_and_backward(c, soft);
    probs_backward(c, soft, c->a->dz, c->tau); /* undoes relaxed_sample */
    learned_tau_backward(c);
}

/* Straight-through Gumbel-Softmax: the decoder sees the one-hot argmax of
 * the relaxed sample (a true categorical sample); the backward pass treats
 * it as the soft one, a learned temperature's included. */
static void run_st_gumbel(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    const float *soft = c->s->ws->soft;
    relaxed_sample(c);
    stoch_hard_from_relaxed(&code, c->a->z, soft, c->B);
    decode_and_backward(c, c->a->z);
    probs_backward(c, soft, c->a->dz, c->tau); /* undoes relaxed_sample */
    learned_tau_backward(c);
}

/* Score function: the decoder's gradient from one hard sample, the
 * encoder's from (f(z) - baseline) d log q(z|x)/dl. */
static void run_sf(est_ctx *c)
{
    est_scratch *w = c->s->ws;
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    for (int b = 0; b < c->B; b++)
        w->signal[b] = c->a->recon[b];
    centre_signal(c, w->signal);
    probs_at(c, 1.0f, w->zbar);
    memset(c->a->dlogits, 0, (size_t)c->B * vae_zdim(&c->m->cfg) * sizeof(float));
    add_score_term(c, w->signal, c->a->z, w->zbar);
}

/* MuProp: the control variate b(z) = f(zbar) + f'(zbar) . (z - zbar) at the
 * mean-field point zbar = q, whose mean E[b(z) d log q] = J_q^T f'(zbar) is
 * added analytically (Gu et al. 2016, Eq. 3-5).  The mean-field pass only
 * supplies f(zbar) and f'(zbar); its parameter gradients are discarded. */
static void run_muprop(est_ctx *c)
{
    est_scratch *w = c->s->ws;
    vae_model *m = c->m;
    vae_acts *a = c->a;
    int B = c->B, zdim = vae_zdim(&m->cfg);
    size_t n = (size_t)B * zdim;
    probs_at(c, 1.0f, w->zbar);
    vae_decode(m, a, w->zbar, B);
    vae_recon_loss(m, a, c->x, B);
    memcpy(w->fbar, a->recon, (size_t)B * sizeof(double));
    size_t dec0 = m->dec[0].w;
    memset(w->grad_discard + dec0, 0, (m->nparams - dec0) * sizeof(float));
    vae_decode_backward_rows(m, a, c->x, w->zbar, B, NULL, 1.0f, w->grad_discard, w->dzbar);

    hard_sample(c);
    decode_and_backward(c, a->z);
    for (int b = 0; b < B; b++) {
        const float *z = a->z + (size_t)b * zdim, *zb = w->zbar + (size_t)b * zdim;
        const float *g = w->dzbar + (size_t)b * zdim;
        double lin = 0.0;
        for (int j = 0; j < zdim; j++)
            lin += (double)g[j] * (z[j] - zb[j]);
        w->signal[b] = a->recon[b] - w->fbar[b] - lin;
    }
    centre_signal(c, w->signal);
    /* The analytic term J^T f'(zbar) / B, normalised as the signal is, then
     * the score term on top. */
    float inv_b = c->s->enc_scale / (float)B;
    for (size_t i = 0; i < n; i++)
        w->dzbar[i] *= inv_b;
    probs_backward(c, w->zbar, w->dzbar, 1.0f);
    add_score_term(c, w->signal, a->z, w->zbar);
}

/* DARN (Gregor et al. 2014), as the Gumbel-Softmax paper (Sec. 3.2) and
 * MuProp describe it: the baseline b = f(z) - f'(z)(z - zbar) with
 * zbar = 1/2, i.e. the learning signal f(z) - b = f'(z)(z - 1/2) linearises
 * f around the sample, per unit, and the correction term is dropped.  For a
 * Bernoulli unit this gives (z - 1/2)(z - q) f'(z), whose mean is
 * q(1-q) (f'(1) + f'(0))/2: exact when f is quadratic, biased otherwise.
 * Categorical analogue: per variable, zbar = 1/K (the centre of the
 * simplex, which is 1/2 again for K = 2), signal f'(z) . (z - 1/K), times
 * z - q (stoch_darn_backward); est_options.darn_point sets another zbar
 * for every entry (1/2: the Bernoulli point, entry by entry), since the
 * paper defines zbar for Bernoulli units only. */
static void run_darn(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    float *zbar = c->s->ws->zbar;
    hard_sample(c);
    decode_and_backward(c, c->a->z); /* a->dz = f'(z) / B */
    probs_at(c, 1.0f, zbar);
    stoch_darn_backward(&code, c->a->dlogits, c->a->z, zbar, c->a->dz, c->B, c->s->darn_point);
}

/* Straight-through (Bengio et al. 2013): the decoder sees a hard sample of
 * q; the backward pass takes dz/dl as d q / dl, q = softmax(l) per variable
 * or sigmoid(l) per unit. */
static void run_st(est_ctx *c)
{
    float *zbar = c->s->ws->zbar;
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    probs_at(c, 1.0f, zbar);
    probs_backward(c, zbar, c->a->dz, 1.0f);
}

/* Slope-annealed straight-through (Chung et al. 2016): as st, but the
 * backward pass takes d softmax(alpha l)/dl (sigmoid for Bernoulli) with
 * the slope alpha = 1/tau growing as the temperature schedule falls.  The
 * forward sample stays a sample of q(z|x) itself, so the analytic KL and
 * the evaluation see the posterior that was trained; as in Chung et al.'s
 * deterministic binarizer, where round(hard_sigm(alpha a)) does not depend
 * on alpha, the slope acts on the backward pass only. */
static void run_annealed_st(est_ctx *c)
{
    float *pt = c->s->ws->soft;
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    probs_at(c, c->tau, pt);
    probs_backward(c, pt, c->a->dz, c->tau);
}

/* The antithetic pair of ARM and DisARM for Bernoulli codes: one uniform
 * u per unit (into noise), b = 1[u < q] into a->z and bt = 1[1 - u < q]
 * into zpair, both decoded; the decoder's gradient is the mean of the two
 * passes' (each an unbiased estimate).  a->recon is left holding f(b),
 * fbar f(bt), signal f(b) - f(bt), zbar q. */
static void antithetic_pass(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    est_scratch *w = c->s->ws;
    vae_model *m = c->m;
    vae_acts *a = c->a;
    int B = c->B;
    float half = 0.5f / (float)B;
    probs_at(c, 1.0f, w->zbar);
    stoch_antithetic_pair(&code, a->z, w->zpair, w->noise, w->zbar, B, c->r);
    vae_decode(m, a, w->zpair, B);
    vae_recon_loss(m, a, c->x, B);
    vae_decode_backward(m, a, c->x, w->zpair, B, half);
    memcpy(w->fbar, a->recon, (size_t)B * sizeof(double));
    vae_decode(m, a, a->z, B);
    vae_recon_loss(m, a, c->x, B);
    vae_decode_backward(m, a, c->x, a->z, B, half);
    for (int b = 0; b < B; b++)
        w->signal[b] = a->recon[b] - w->fbar[b];
}

/* ARM (Yin & Zhou 2019), Bernoulli codes: per unit
 * (f(bt) - f(b)) (u - 1/2) with the pair's shared u and f the example's
 * whole reconstruction loss (stoch_arm_backward).  a->recon reports f(b),
 * b = 1[u < q] (a true sample of q). */
static void run_arm(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    est_scratch *w = c->s->ws;
    antithetic_pass(c);
    stoch_arm_backward(&code, c->a->dlogits, w->noise, w->signal, c->B, 1.0f / (float)c->B);
}

/* DisARM (Dong et al. 2020), Bernoulli codes: ARM's pair with u
 * integrated out given (b, bt), per unit
 * (f(b) - f(bt))/2 (-1)^bt 1[b != bt] sigmoid(|l|) (stoch_disarm_backward).
 * a->recon reports f(b), b = 1[u < q]. */
static void run_disarm(est_ctx *c)
{
    stoch_layer code = vae_code(&c->m->cfg);
    est_scratch *w = c->s->ws;
    antithetic_pass(c);
    stoch_disarm_backward(&code, c->a->dlogits, c->a->z, w->zpair, w->zbar, w->signal, c->B,
                          1.0f / (float)c->B);
}

/* log (1/K) sum_k exp(v[k]), the max subtracted. */
static double log_mean_exp(const double *v, int K)
{
    double mx = v[0], s = 0.0;
    for (int k = 1; k < K; k++)
        mx = fmax(mx, v[k]);
    for (int k = 0; k < K; k++)
        s += exp(v[k] - mx);
    return mx + log(s / K);
}

/* One example's K log-weights lw into its VIMCO signals (Mnih & Rezende
 * 2016, Sec. 3): with L = log mean w and w~ the normalised weights, the
 * gradient of -L at the logits is sum_k (w~_k - (L - L_-k)) d log q(z_k),
 * L_-k the bound with log w_k replaced by the mean of the others' (their
 * geometric mean).  coef[k] gets w~_k - (L - L_-k), wn[k] w~_k; tmp is K
 * doubles of scratch; returns L. */
static double vimco_signals(const double *lw, int K, double *coef, double *wn, double *tmp)
{
    double L = log_mean_exp(lw, K), sum = 0.0;
    for (int k = 0; k < K; k++) {
        sum += lw[k];
        wn[k] = exp(lw[k] - L) / K;
        tmp[k] = lw[k];
    }
    for (int k = 0; k < K; k++) {
        tmp[k] = (sum - lw[k]) / (K - 1);
        coef[k] = wn[k] - (L - log_mean_exp(tmp, K));
        tmp[k] = lw[k];
    }
    return L;
}

/* K copies of each example's logits and image into k_logits and k_x, for
 * a K-sample bound's R = B K rows (row b K + k: sample k of example b). */
static void replicate_rows(est_ctx *c)
{
    est_scratch *w = c->s->ws;
    const vae_config *cfg = &c->m->cfg;
    int K = c->s->samples, R = c->B * K, Z = vae_zdim(cfg), D = cfg->D;
    /* K = 1 only for gumbel's relaxed KL; the buffers exist for either. */
    assert((K >= 2 || c->s->relaxed_kl) && c->a->max_batch >= R && w->k_logits);
    const float *logits = vae_logits(c->m, c->a);
    for (int r = 0; r < R; r++) {
        int b = r / K;
        memcpy(w->k_logits + (size_t)r * Z, logits + (size_t)b * Z, (size_t)Z * sizeof(float));
        memcpy(w->k_x + (size_t)r * D, c->x + (size_t)b * D, (size_t)D * sizeof(float));
    }
}

/* VIMCO on the K-sample bound L = log (1/K) sum_k w_k, w_k = p(x|z_k) p(z_k)
 * / q(z_k|x), z_1..z_K independent samples of q: the decoder's (and a
 * learned prior's) gradient is the pathwise sum_k w~_k d log p(x, z_k); the
 * encoder's the multi-sample score term with VIMCO's leave-one-out
 * baseline (vimco_signals), whose w~_k part is the pathwise term of
 * -log q(z_k|x) inside log w_k.  Every quantity of -L / B; see
 * estimator.k_sample for what it reports. */
static void run_vimco(est_ctx *c)
{
    vae_model *m = c->m;
    vae_acts *a = c->a;
    est_scratch *w = c->s->ws;
    const vae_config *cfg = &m->cfg;
    stoch_layer lay = vae_code(cfg);
    int B = c->B, K = c->s->samples, R = B * K, Z = vae_zdim(cfg);
    const float *logits = vae_logits(m, a);
    replicate_rows(c);
    stoch_sample_logits(&lay, w->k_z, w->k_logits, w->k_noise, R, c->r);
    vae_decode(m, a, w->k_z, R);
    vae_recon_loss(m, a, w->k_x, R);
    for (int r = 0; r < R; r++) {
        int b = r / K;
        const float *z = w->k_z + (size_t)r * Z;
        w->k_logw[r] = -a->recon[r] + vae_log_prior(m, a, z) -
                       stoch_log_prob(&lay, logits + (size_t)b * Z, a->logq + (size_t)b * Z, z);
    }
    for (int b = 0; b < B; b++) {
        double *wn = w->k_wn + (size_t)b * K;
        double L = vimco_signals(w->k_logw + (size_t)b * K, K, w->k_coef + (size_t)b * K, wn,
                                 w->k_loo);
        double recon = 0.0;
        for (int k = 0; k < K; k++) {
            w->k_scale[b * K + k] = (float)(wn[k] / B);
            recon += wn[k] * a->recon[b * K + k];
        }
        /* Rows b K.. of recon are read by now and later examples' rows lie
         * beyond b, so the per-example figures can overwrite the front. */
        a->kl[b] = -L - recon;
        a->recon[b] = recon;
    }
    vae_decode_backward_rows(m, a, w->k_x, w->k_z, R, w->k_scale, 1.0f, m->grads, NULL);
    float *dl = a->dlogits;
    probs_at(c, 1.0f, w->zbar);
    memset(dl, 0, (size_t)B * Z * sizeof(float));
    stoch_score_sum(&lay, dl, w->k_z, w->zbar, w->k_coef, B, K, 1.0 / B);
    if (cfg->prior == VAE_PRIOR_LEARNED) {
        /* d(-L)/d eta = -sum_k w~_k d log p(z_k)/d eta, the prior's score. */
        for (int r = 0; r < R; r++)
            w->k_coef[r] = -(double)w->k_scale[r];
        stoch_probs_forward(&lay, w->prior_p, vae_prior_logits(m), 1, 1.0f);
        stoch_score_sum(&lay, m->grads + m->prior, w->k_z, w->prior_p, w->k_coef, 1, R, 1.0);
    }
}

/* One relaxed pass of REBAR: y = the code's probabilities of pre at
 * temperature lambda (sigmoid(pre / lambda) per unit, softmax(pre /
 * lambda) per variable) decoded, f(y) per example into f, and its
 * pathwise gradient at the logits into dl: f'(y) through y's backward,
 * then through d pre / dl, the identity (dpre NULL: pre = l + noise) or
 * the conditional resample's Jacobian (dpre its dzt).  The decoder's
 * parameter gradients go to the discard buffer; a->recon is
 * overwritten. */
static void rebar_relaxed(est_ctx *c, const float *pre, const float *dpre, float lambda,
                          double *f, float *dl)
{
    vae_model *m = c->m;
    vae_acts *a = c->a;
    est_scratch *w = c->s->ws;
    stoch_layer code = vae_code(&m->cfg);
    stoch_probs_forward(&code, w->rb_y, pre, c->B, lambda);
    vae_decode(m, a, w->rb_y, c->B);
    vae_recon_loss(m, a, c->x, c->B);
    if (f)
        memcpy(f, a->recon, (size_t)c->B * sizeof(double));
    vae_decode_backward_rows(m, a, c->x, w->rb_y, c->B, NULL, 1.0f, w->grad_discard, w->rb_dy);
    stoch_probs_backward(&code, dl, w->rb_y, w->rb_dy, c->B, lambda);
    if (dpre)
        stoch_rebar_conditional_backward(&code, dl, dpre, w->zbar, dl, c->B);
}

/* REBAR's estimate (Tucker et al. 2017, Eq. 5 with the conditional
 * resample of Sec. 3) into g, per unit of example b:
 *   ([f(b) - eta f(s(zt))] (b - p) + eta (dl1 - dl2)) / B
 * with s the relaxation at lambda (rebar_relaxed), dl1 = d f(s(z)) / dl,
 * dl2 = d f(s(zt)) / dl
 * (zt through its reparameterisation); returns sum g^2.  RELAX (rt not
 * NULL) adds its surrogate r to the control variate: -rt[b] (b - p) + corr
 * with rt = r(zt) and corr = d r(z)/dl - d r(zt)/dl (relax_surrogate). */
static double rebar_assemble(est_ctx *c, float eta, const double *fb, const double *ft,
                             const float *dl1, const float *dl2, const float *rt,
                             const float *corr, float *g)
{
    est_scratch *w = c->s->ws;
    int Z = vae_zdim(&c->m->cfg);
    double ss = 0.0, inv_b = 1.0 / c->B;
    for (int b = 0; b < c->B; b++)
        for (int j = 0; j < Z; j++) {
            size_t i = (size_t)b * Z + j;
            double signal = fb[b] - eta * ft[b] - (rt ? rt[b] : 0.0);
            double path = eta * ((double)dl1[i] - dl2[i]) + (rt ? corr[i] : 0.0);
            double v = (signal * (c->a->z[i] - w->zbar[i]) + path) * inv_b;
            g[i] = (float)v;
            ss += v * v;
        }
    return ss;
}

/* sum g^2 of REBAR's (relax: RELAX's) estimate on this draw at temperature
 * lambda (eta and the surrogate fixed), for the central difference in log
 * lambda. */
static double rebar_sumsq_at(est_ctx *c, float eta, float lambda, int relax)
{
    est_scratch *w = c->s->ws;
    rebar_relaxed(c, w->rb_z, NULL, lambda, NULL, w->rb_dl1);
    rebar_relaxed(c, w->rb_zt, w->rb_dzt, lambda, w->rb_ft, w->rb_dl2);
    return rebar_assemble(c, eta, w->fbar, w->rb_ft, w->rb_dl1, w->rb_dl2,
                          relax ? w->rx_r2 : NULL, w->rx_corr, w->rb_g);
}

static float *relax_params(const est_state *s)
{
    return s->persist + s->ws->rx_off;
}

/* RELAX's surrogate on this draw: r and its input gradient at z (rb_z)
 * and at zt (rb_zt), and corr = d r(z)/dl - d r(zt)/dl per unit (z moves
 * one for one with l; zt by the conditional resample's Jacobian, whose
 * product leaves rx_dz2 holding d r(zt)/dl). */
static void relax_surrogate(est_ctx *c)
{
    est_scratch *w = c->s->ws;
    const float *P = relax_params(c->s);
    stoch_layer code = vae_code(&c->m->cfg);
    int B = c->B, Z = stoch_dim(&code), D = c->m->cfg.D, H = w->rx_hidden;
    surr_forward(P, &code, D, H, w->rb_z, c->x, B, w->rx_s1, w->rx_h1, w->rx_r1);
    surr_input_grad(P, &code, D, H, w->rx_s1, w->rx_h1, B, w->rx_u1, w->rx_dz1);
    surr_forward(P, &code, D, H, w->rb_zt, c->x, B, w->rx_s2, w->rx_h2, w->rx_r2);
    surr_input_grad(P, &code, D, H, w->rx_s2, w->rx_h2, B, w->rx_u2, w->rx_dz2);
    stoch_rebar_conditional_backward(&code, w->rx_dz2, w->rb_dzt, w->zbar, w->rx_dz2, B);
    for (size_t i = 0; i < (size_t)B * Z; i++)
        w->rx_corr[i] = w->rx_dz1[i] - w->rx_dz2[i];
}

/* d sum_i g_i^2 / d (r's parameters) into grad, g the estimate in
 * a->dlogits.  r enters g = (... - r(zt)) (b - p) / B + (dr(z)/dz -
 * J^T dr(zt)/dzt) / B, J = d zt / dl, so 2 g . dg is the parameter
 * gradient of
 *   sum_b [alpha_b r(zt_b) + v1_b . dr(z_b)/dz + v2_b . dr(zt_b)/dzt]
 * with alpha_b = -(2/B) sum_i g_i (b_i - p_i), v1 = (2/B) g and
 * v2 = -(2/B) J g (stoch_rebar_conditional_tangent; per unit -(2/B) g dzt
 * for Bernoulli units): surr_param_grad at z and at zt. */
static void relax_variance_grad(est_ctx *c, float *grad)
{
    est_scratch *w = c->s->ws;
    const float *P = relax_params(c->s), *g = c->a->dlogits;
    stoch_layer code = vae_code(&c->m->cfg);
    int B = c->B, Z = stoch_dim(&code), D = c->m->cfg.D, H = w->rx_hidden;
    float two_b = 2.0f / (float)B;
    memset(grad, 0, w->nrx * sizeof(float));
    for (int b = 0; b < B; b++) {
        double sum = 0.0;
        for (int j = 0; j < Z; j++) {
            size_t i = (size_t)b * Z + j;
            sum += (double)g[i] * (c->a->z[i] - w->zbar[i]);
            w->rx_v[i] = two_b * g[i];
        }
        w->rx_alpha[b] = (float)(-two_b * sum);
    }
    surr_param_grad(P, &code, D, H, w->rx_s1, c->x, w->rx_h1, w->rx_u1, NULL, w->rx_v, B,
                    w->rx_sv, w->rx_t, w->rx_da, grad);
    for (size_t i = 0; i < (size_t)B * Z; i++)
        w->rx_v[i] = -two_b * g[i];
    stoch_rebar_conditional_tangent(&code, w->rx_v, w->rb_dzt, w->zbar, w->rx_v, B);
    surr_param_grad(P, &code, D, H, w->rx_s2, c->x, w->rx_h2, w->rx_u2, w->rx_alpha, w->rx_v, B,
                    w->rx_sv, w->rx_t, w->rx_da, grad);
}

/* REBAR (Tucker et al. 2017): z = l + logistic noise per Bernoulli unit
 * (b = H(z), its sign) or l + Gumbel noise per categorical class (b the
 * one-hot argmax per variable, Gumbel-Max), b a true sample, decoded for
 * the decoder's gradient and a->recon; zt ~ z | b (stoch_rebar_conditional;
 * the relaxation sigma_lambda is the code's probabilities at temperature
 * lambda: sigmoid, or softmax per variable); the encoder's estimate is
 * rebar_assemble's, unbiased for any eta and lambda.  Unless frozen, one
 * Adam step then lowers sum g^2 (the estimate's second moment; its mean
 * does not depend on eta or lambda, so this is its variance): in eta by
 * the exact derivative 2 g . dg/deta, in log lambda by a central
 * difference of step EST_REBAR_FD_STEP on the same draw.
 *
 * relax: RELAX (Grathwohl et al. 2018, its estimator for discrete codes)
 * with the control variate c(z) = eta f(sigma_lambda(z)) + r(z; x), r the
 * surrogate network of surrogate.h with the example's image x as its
 * context: the estimate [f(b) - c(zt)] d log p(b)/dl + dc(z)/dl - dc(zt)/dl,
 * unbiased for any eta, lambda and r; its own Adam step (at the same rate
 * as eta's) moves r's parameters down sum g^2 by relax_variance_grad's
 * exact gradient, beside REBAR's on eta and log lambda. */
static void run_rebar_family(est_ctx *c, int relax)
{
    vae_model *m = c->m;
    vae_acts *a = c->a;
    est_state *s = c->s;
    est_scratch *w = s->ws;
    stoch_layer lay = vae_code(&m->cfg);
    int B = c->B, Z = vae_zdim(&m->cfg);
    size_t n = (size_t)B * Z;
    const float *logits = vae_logits(m, a);
    /* est_options.learns_cv: REBAR's slots, and RELAX's beyond them. */
    assert(w->cv >= (relax ? EST_CV_RELAX : EST_CV_REBAR));
    float *rb = s->persist + w->rb_off;
    float eta = rb[0], lambda = expf(rb[1]);
    probs_at(c, 1.0f, w->zbar);
    if (lay.type == LATENT_CATEGORICAL)
        stoch_sample_logits(&lay, a->z, logits, w->rb_z, B, c->r);
    else
        for (size_t i = 0; i < n; i++) {
            float u = rng_uniformf_open(c->r);
            w->rb_z[i] = logits[i] + logf(u) - log1pf(-u);
            a->z[i] = w->rb_z[i] > 0.0f ? 1.0f : w->rb_z[i] == w->rb_z[i] ? 0.0f : w->rb_z[i];
        }
    for (size_t i = 0; i < n; i++)
        w->rb_v[i] = rng_uniformf_open(c->r);
    stoch_rebar_conditional(&lay, w->rb_zt, w->rb_dzt, a->z, logits, w->rb_v, B);
    decode_and_backward(c, a->z);
    memcpy(w->fbar, a->recon, (size_t)B * sizeof(double));
    size_t dec0 = m->dec[0].w;
    memset(w->grad_discard + dec0, 0, (m->nparams - dec0) * sizeof(float));
    rebar_relaxed(c, w->rb_z, NULL, lambda, NULL, w->rb_dl1);
    rebar_relaxed(c, w->rb_zt, w->rb_dzt, lambda, w->rb_ft, w->rb_dl2);
    if (relax)
        relax_surrogate(c);
    rebar_assemble(c, eta, w->fbar, w->rb_ft, w->rb_dl1, w->rb_dl2, relax ? w->rx_r2 : NULL,
                   w->rx_corr, a->dlogits);
    if (!s->frozen) {
        double d_eta = 0.0;
        for (int b = 0; b < B; b++)
            for (int j = 0; j < Z; j++) {
                size_t i = (size_t)b * Z + j;
                double dg = (-w->rb_ft[b] * (a->z[i] - w->zbar[i]) + w->rb_dl1[i] -
                             w->rb_dl2[i]) / B;
                d_eta += 2.0 * a->dlogits[i] * dg;
            }
        if (relax)
            relax_variance_grad(c, w->cv_grad + 2);
        double h = EST_REBAR_FD_STEP;
        double up = rebar_sumsq_at(c, eta, lambda * (float)exp(h), relax);
        double down = rebar_sumsq_at(c, eta, lambda * (float)exp(-h), relax);
        w->cv_grad[0] = (float)d_eta;
        w->cv_grad[1] = (float)((up - down) / (2 * h));
        adam_persist_step(&w->rb_adam, rb, w->cv_grad, w->bl_lr, rb + 6);
        if (relax)
            adam_persist_step(&w->rx_adam, relax_params(s), w->cv_grad + 2, w->bl_lr,
                              relax_params(s) + 3 * w->nrx);
    }
    memcpy(a->recon, w->fbar, (size_t)B * sizeof(double));
}

static void run_rebar(est_ctx *c)
{
    run_rebar_family(c, 0);
}

static void run_relax(est_ctx *c)
{
    run_rebar_family(c, 1);
}

/* Gumbel-Softmax on the K-sample bound (Maddison et al. 2017's relaxed
 * importance-weighted bound): K relaxed samples y_k per example, log w_k =
 * log p(x|y_k) + log p(y_k) - log q(y_k|x) with Concrete densities at the
 * same temperature (stoch_relaxed_log_ratio), L = log mean w, all of it
 * differentiated pathwise: d(-L) = -sum_k w~_k d log w_k, through the
 * decoder at y_k (the relaxed sample's backward) and through the ratio.
 * With K = 1 (est_options.relaxed_kl) it is the ELBO whose KL is the
 * one-sample estimate log q(y|x) - log p(y) under the Concrete densities
 * (Maddison et al.'s relaxed objective) instead of the discrete code's
 * analytic KL.  Reports as estimator.k_sample says. */
static void run_gumbel_bound(est_ctx *c)
{
    vae_model *m = c->m;
    vae_acts *a = c->a;
    est_scratch *w = c->s->ws;
    const vae_config *cfg = &m->cfg;
    stoch_layer lay = vae_code(cfg);
    int B = c->B, K = c->s->samples, R = B * K, Z = vae_zdim(cfg);
    const float *eta = vae_prior_logits(m);
    replicate_rows(c);
    /* k_z holds the relaxed samples y, k_dl the ratio's d/dl per row. */
    stoch_relaxed_sample(&lay, w->k_z, w->k_noise, w->k_logits, R, c->tau, c->r);
    vae_decode(m, a, w->k_z, R);
    vae_recon_loss(m, a, w->k_x, R);
    for (int r = 0; r < R; r++) {
        size_t o = (size_t)r * Z;
        w->k_logw[r] = -a->recon[r] + stoch_relaxed_log_ratio(&lay, w->k_logits + o, eta,
                                                              w->k_noise + o, w->k_dl + o);
    }
    for (int b = 0; b < B; b++) {
        double *wn = w->k_wn + (size_t)b * K;
        double L = log_mean_exp(w->k_logw + (size_t)b * K, K), recon = 0.0;
        for (int k = 0; k < K; k++) {
            wn[k] = exp(w->k_logw[b * K + k] - L) / K;
            w->k_scale[b * K + k] = (float)(wn[k] / B);
            recon += wn[k] * a->recon[b * K + k];
        }
        a->kl[b] = -L - recon;
        a->recon[b] = recon;
    }
    /* dz = (w~ / B) f'(y) per row, then the relaxed sample's backward into
     * k_logits (no longer needed as logits). */
    vae_decode_backward_rows(m, a, w->k_x, w->k_z, R, w->k_scale, 1.0f, m->grads, a->dz);
    stoch_probs_backward(&lay, w->k_logits, w->k_z, a->dz, R, c->tau);
    float *dl = a->dlogits, *dprior = eta ? m->grads + m->prior : NULL;
    memset(dl, 0, (size_t)B * Z * sizeof(float));
    for (int r = 0; r < R; r++) {
        float s = w->k_scale[r];
        for (int j = 0; j < Z; j++) {
            size_t o = (size_t)r * Z + j;
            /* -w~/B d ratio/dl; a learned prior gets the opposite sign. */
            dl[(size_t)(r / K) * Z + j] += w->k_logits[o] - s * w->k_dl[o];
            if (dprior)
                dprior[j] += s * w->k_dl[o];
        }
    }
}

/* The code of index `code` into z (Z units): variable i takes digit i of
 * code in base K (bit i for Bernoulli units), one-hot. */
static void code_of_index(const vae_config *cfg, long code, float *z)
{
    memset(z, 0, (size_t)vae_zdim(cfg) * sizeof(float));
    for (int i = 0; i < cfg->N; i++) {
        if (cfg->latent == LATENT_CATEGORICAL) {
            z[i * cfg->K + (int)(code % cfg->K)] = 1.0f;
            code /= cfg->K;
        } else {
            z[i] = (float)(code & 1);
            code >>= 1;
        }
    }
}

/* Exact: E_q[f] = sum over every code z of q(z|x) f(z), decoded in chunks of
 * max_batch (example, code) rows.  The decoder's gradient is the
 * q-weighted sum of the per-code gradients; the encoder's is the score form
 * sum_z q(z) f(z) (z - q), exact because it is a finite sum.  a->recon gets
 * the expected reconstruction loss. */
static void run_exact(est_ctx *c)
{
    vae_model *m = c->m;
    vae_acts *a = c->a;
    est_scratch *w = c->s->ws;
    const vae_config *cfg = &m->cfg;
    stoch_layer lay = vae_code(cfg);
    int B = c->B, zdim = vae_zdim(cfg), D = cfg->D, chunk = c->s->max_batch;
    const float *logits = vae_logits(m, a);
    long total = w->exact_configs * B;
    memset(w->acc_fz, 0, (size_t)B * zdim * sizeof(double));
    memset(w->acc_f, 0, (size_t)B * sizeof(double));
    for (long p0 = 0; p0 < total; p0 += chunk) {
        int R = total - p0 < chunk ? (int)(total - p0) : chunk;
        for (int r = 0; r < R; r++) {
            long p = p0 + r;
            int b = (int)(p % B);
            float *z = w->rows_z + (size_t)r * zdim;
            code_of_index(cfg, p / B, z);
            w->row_w[r] = exp(stoch_log_prob(&lay, logits + (size_t)b * zdim,
                                             a->logq + (size_t)b * zdim, z));
            w->row_scale[r] = (float)(w->row_w[r] / B);
            memcpy(w->rows_x + (size_t)r * D, c->x + (size_t)b * D, (size_t)D * sizeof(float));
        }
        vae_decode(m, a, w->rows_z, R);
        vae_recon_loss(m, a, w->rows_x, R);
        vae_decode_backward_rows(m, a, w->rows_x, w->rows_z, R, w->row_scale, 1.0f, m->grads,
                                 NULL);
        for (int r = 0; r < R; r++) {
            int b = (int)((p0 + r) % B);
            double wf = w->row_w[r] * a->recon[r];
            const float *z = w->rows_z + (size_t)r * zdim;
            w->acc_f[b] += wf;
            for (int j = 0; j < zdim; j++)
                if (z[j] != 0.0f)
                    w->acc_fz[(size_t)b * zdim + j] += wf;
        }
    }
    probs_at(c, 1.0f, w->zbar);
    for (int b = 0; b < B; b++) {
        a->recon[b] = w->acc_f[b];
        for (int j = 0; j < zdim; j++) {
            size_t o = (size_t)b * zdim + j;
            a->dlogits[o] = (float)((w->acc_fz[o] - w->zbar[o] * w->acc_f[b]) / B);
        }
    }
}

/* Indexed by stoch_estimator, in the list's order; run NULL ends it. */
static const estimator table[] = {
    [STOCH_GUMBEL] = {STOCH_GUMBEL, run_gumbel, 0, EST_K_OPTIONAL},
    [STOCH_ST_GUMBEL] = {STOCH_ST_GUMBEL, run_st_gumbel, 0},
    [STOCH_SF] = {STOCH_SF, run_sf, 1},
    [STOCH_DARN] = {STOCH_DARN, run_darn, 0},
    [STOCH_MUPROP] = {STOCH_MUPROP, run_muprop, 1},
    [STOCH_ST] = {STOCH_ST, run_st, 0},
    [STOCH_ANNEALED_ST] = {STOCH_ANNEALED_ST, run_annealed_st, 0},
    [STOCH_EXACT] = {STOCH_EXACT, run_exact, 0},
    [STOCH_ARM] = {STOCH_ARM, run_arm, 0},
    [STOCH_DISARM] = {STOCH_DISARM, run_disarm, 0},
    [STOCH_VIMCO] = {STOCH_VIMCO, run_vimco, 0, EST_K_REQUIRED, 0},
    [STOCH_REBAR] = {STOCH_REBAR, run_rebar, 0, 0, EST_CV_REBAR},
    [STOCH_RELAX] = {STOCH_RELAX, run_relax, 0, 0, EST_CV_RELAX},
    [STOCH_NESTIMATORS] = {STOCH_NESTIMATORS, NULL, 0},
};

const estimator *estimator_list(void)
{
    return table;
}

const estimator *estimator_get(stoch_estimator id)
{
    assert(id >= 0 && id < STOCH_NESTIMATORS && table[id].id == id);
    return &table[id];
}

const estimator *estimator_find(const char *name)
{
    stoch_estimator id;
    return stoch_estimator_parse(name, &id) == 0 ? estimator_get(id) : NULL;
}

long est_count_configs(const vae_config *c)
{
    long base = c->latent == LATENT_CATEGORICAL ? c->K : 2, n = 1;
    for (int i = 0; i < c->N; i++) {
        if (n > EST_EXACT_MAX_CONFIGS / base)
            return -1;
        n *= base;
    }
    return n;
}

int est_check(const estimator *e, const vae_config *c, char *err)
{
    if (stoch_estimator_check(e->id, VAE_ESTIMATORS, "vae", c->latent, err) != 0)
        return -1;
    if (e->id == STOCH_EXACT && est_count_configs(c) < 0) {
        char lat[64];
        vae_format_latent(c, lat, sizeof lat);
        return errf(err, "--estimator exact: a %s %s code has more than %ld configurations; "
                         "exact enumeration needs a tiny code, e.g. --latent 2x3",
                    lat, stoch_latent_name(c->latent), EST_EXACT_MAX_CONFIGS);
    }
    return 0;
}

/* The baseline network's initial weights and its Adam state over persist. */
static void baseline_init(est_state *s, int D, uint64_t seed)
{
    est_scratch *w = s->ws;
    /* Glorot-uniform first layer from the baseline's own seed (the run's
     * generator is left untouched); a zero output layer, so C(x) = 0 until
     * it has learned something. */
    rng_t r;
    rng_seed(&r, seed);
    bnet_init(bl_params(s), D, w->bl_hidden, &r);
    adam_persist_init(&w->bl_adam, s->persist + P_HEADER + w->nbl, w->nbl);
}

/* REBAR's eta and log lambda at their starting values, and the Adam state
 * over them in persist: [eta, log lambda][m 2][v 2][steps]. */
static void rebar_init(est_state *s)
{
    est_scratch *w = s->ws;
    float *rb = s->persist + w->rb_off;
    rb[0] = EST_REBAR_ETA0;
    rb[1] = logf(EST_REBAR_LAMBDA0);
    adam_persist_init(&w->rb_adam, rb + 2, 2);
}

/* RELAX's surrogate at its start (surr_init from its own generator, seeded
 * from the baseline's seed: r = 0, so RELAX starts as REBAR) and the Adam
 * state over it in persist: [params nrx][m nrx][v nrx][steps]. */
static void relax_init(est_state *s, const stoch_layer *code, int D, uint64_t seed)
{
    est_scratch *w = s->ws;
    rng_t r;
    rng_seed(&r, seed ^ 0x72656c6178000000ull);
    surr_init(relax_params(s), code, D, w->rx_hidden, &r);
    adam_persist_init(&w->rx_adam, relax_params(s) + w->nrx, w->nrx);
}

int est_state_init(est_state *s, const vae_model *m, int max_batch, const est_options *opts,
                   char *err)
{
    est_options defaults;
    if (!opts) {
        est_options_default(&defaults);
        opts = &defaults;
    }
    memset(s, 0, sizeof *s);
    s->enc_scale = 1.0f;
    s->max_batch = max_batch;
    s->samples = opts->samples;
    s->relaxed_kl = opts->relaxed_kl;
    s->baseline = opts->baseline;
    s->var_norm = opts->var_norm;
    s->norm_signal = opts->norm_signal;
    s->darn_point = opts->darn_point;
    const vae_config *cfg = &m->cfg;
    size_t B = (size_t)max_batch, Z = (size_t)vae_zdim(cfg), D = (size_t)cfg->D;
    est_scratch t = {.bl_lr = opts->baseline_lr, .exact_configs = est_count_configs(cfg)};
    int learned = s->baseline == EST_BASELINE_LEARNED;
    t.bl_hidden = learned ? EST_BASELINE_HIDDEN : 0;
    size_t H = (size_t)t.bl_hidden;
    t.nbl = learned ? bnet_nparams((int)D, (int)H) : 0;
    s->npersist = P_HEADER + 3 * t.nbl;
    t.cv = opts->learns_cv;
    t.rb_off = s->npersist;
    if (t.cv >= EST_CV_REBAR)
        s->npersist += 2 * 3 + 1;
    t.rx_hidden = t.cv >= EST_CV_RELAX ? EST_RELAX_HIDDEN : 0;
    stoch_layer code = vae_code(cfg);
    t.nrx = t.cv >= EST_CV_RELAX ? surr_nparams(&code, (int)D, t.rx_hidden) : 0;
    t.rx_off = s->npersist;
    if (t.cv >= EST_CV_RELAX)
        s->npersist += 3 * t.nrx + 1;
    size_t RB = t.cv >= EST_CV_REBAR ? B * Z : 0;
    size_t RX = t.nrx ? B * Z : 0, RH = t.nrx ? B * (size_t)t.rx_hidden : 0;
    size_t E = t.exact_configs > 0 ? B : 0; /* rows of the exact scratch */
    /* rows of the K-sample bound */
    size_t KR = opts->samples > 1 || opts->relaxed_kl ? B * (size_t)opts->samples : 0;
    ws_buf bufs[] = {
        WS_BUF(s->persist, s->npersist),
        WS_BUF(t.noise, B * Z),       WS_BUF(t.soft, B * Z),
        WS_BUF(t.signal, B),          WS_BUF(t.fbar, B),
        WS_BUF(t.zpair, cfg->latent == LATENT_BERNOULLI ? B * Z : 0),
        WS_BUF(t.zbar, B * Z),        WS_BUF(t.dzbar, B * Z),
        WS_BUF(t.grad_discard, m->nparams),
        WS_BUF(t.bl.h, B * H),        WS_BUF(t.bl.dh, B * H),
        WS_BUF(t.bl.out, learned ? B : 0), WS_BUF(t.bl.dout, learned ? B : 0),
        WS_BUF(t.bl.grads, t.nbl),
        WS_BUF(t.rows_z, E * Z),      WS_BUF(t.rows_x, E * D),
        WS_BUF(t.row_scale, E),       WS_BUF(t.row_w, E),
        WS_BUF(t.acc_fz, E * Z),      WS_BUF(t.acc_f, E),
        WS_BUF(t.k_logits, KR * Z),   WS_BUF(t.k_noise, KR * Z),
        WS_BUF(t.k_z, KR * Z),        WS_BUF(t.k_x, KR * D),
        WS_BUF(t.k_scale, KR),        WS_BUF(t.k_logw, KR),
        WS_BUF(t.k_coef, KR),         WS_BUF(t.prior_p, KR ? Z : 0),
        WS_BUF(t.k_wn, KR),           WS_BUF(t.k_loo, KR ? (size_t)opts->samples : 0),
        WS_BUF(t.k_dl, KR * Z),
        WS_BUF(t.rb_z, RB),           WS_BUF(t.rb_zt, RB),
        WS_BUF(t.rb_dzt, RB),         WS_BUF(t.rb_v, RB),
        WS_BUF(t.rb_y, RB),           WS_BUF(t.rb_dy, RB),
        WS_BUF(t.rb_dl1, RB),         WS_BUF(t.rb_dl2, RB),
        WS_BUF(t.rb_g, RB),           WS_BUF(t.rb_ft, RB ? B : 0),
        WS_BUF(t.cv_grad, RB ? 2 + t.nrx : 0),
        WS_BUF(t.rx_s1, RX),          WS_BUF(t.rx_h1, RH),
        WS_BUF(t.rx_r1, RX ? B : 0),  WS_BUF(t.rx_dz1, RX),
        WS_BUF(t.rx_u1, RH),          WS_BUF(t.rx_s2, RX),
        WS_BUF(t.rx_h2, RH),          WS_BUF(t.rx_r2, RX ? B : 0),
        WS_BUF(t.rx_dz2, RX),         WS_BUF(t.rx_u2, RH),
        WS_BUF(t.rx_corr, RX),        WS_BUF(t.rx_alpha, RX ? B : 0),
        WS_BUF(t.rx_v, RX),           WS_BUF(t.rx_sv, RX),
        WS_BUF(t.rx_t, RH),           WS_BUF(t.rx_da, RH),
    };
    s->ws = ws_alloc(bufs, WS_COUNT(bufs), &t, sizeof t, err, "estimator state");
    if (!s->ws)
        return -1;
    if (learned)
        baseline_init(s, cfg->D, opts->baseline_seed);
    if (t.cv >= EST_CV_REBAR)
        rebar_init(s);
    if (t.cv >= EST_CV_RELAX)
        relax_init(s, &code, (int)D, opts->baseline_seed);
    return 0;
}

void est_state_free(est_state *s)
{
    free(s->ws);
    memset(s, 0, sizeof *s);
}

const float *est_last_noise(const est_state *s)
{
    return s->ws->noise;
}

const float *est_last_relaxed(const est_state *s)
{
    return s->ws->soft;
}

const float *est_last_bound_noise(const est_state *s)
{
    return s->ws->k_noise;
}

const float *est_last_cv_grad(const est_state *s)
{
    return s->ws->cv_grad;
}

double est_elbo_gradient(const estimator *e, est_ctx *c)
{
    vae_zero_grads(c->m);
    vae_encode(c->m, c->a, c->x, c->B);
    c->s->enc_scale = 1.0f;
    c->tau = vae_tau(c->m, c->tau);
    e->run(c);
    int bound = c->s->samples > 1 || (c->s->relaxed_kl && e->k_sample == EST_K_OPTIONAL);
    if (!bound) {
        vae_kl(c->m, c->a, c->B);
        /* The encoder's half carries the estimator's scale (see enc_scale);
         * a learned prior's half is an exact gradient, like the decoder's. */
        vae_kl_backward(c->m, c->a, c->B, c->s->enc_scale / (float)c->B, 1.0f / (float)c->B);
    }
    vae_encode_backward(c->m, c->a, c->x, c->B);
    double loss = 0.0;
    for (int b = 0; b < c->B; b++)
        loss += c->a->recon[b] + c->a->kl[b];
    return loss / c->B;
}

void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r)
{
    stoch_layer code = vae_code(cfg);
    stoch_sample_logits(&code, z, logits, noise, B, r);
}
