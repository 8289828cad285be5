#include "estimator.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gumbel.h"
#include "layers.h"
#include "util.h"

/* Slots at the head of est_state.persist (see estimator.h). */
enum { P_MEAN, P_VAR, P_SEEN, P_ADAM_T, P_HEADER };

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
    o->baseline_lr = 1e-3f;
    o->baseline_seed = 0;
}

/* ---- pieces shared by the estimators ---- */

/* Draw the relaxed sample into s->soft: Gumbel-Softmax for categorical
 * codes, Binary Concrete for Bernoulli ones. */
static void relaxed_sample(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    size_t n = (size_t)c->B * vae_zdim(cfg);
    const float *logits = vae_logits(c->m, c->a);
    if (cfg->latent == LATENT_CATEGORICAL) {
        gumbel_noise(c->s->noise, n, c->r);
        gumbel_softmax_forward(c->s->soft, logits, c->s->noise, c->B * cfg->N, cfg->K, c->tau);
    } else {
        logistic_noise(c->s->noise, n, c->r);
        binary_concrete_forward(c->s->soft, logits, c->s->noise, n, c->tau);
    }
}

/* d(soft)/d(logits) applied to dz: the relaxation's backward. */
static void relaxed_backward(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    size_t n = (size_t)c->B * vae_zdim(cfg);
    if (cfg->latent == LATENT_CATEGORICAL)
        gumbel_softmax_backward(c->a->dlogits, c->s->soft, c->a->dz, c->B * cfg->N, cfg->K,
                                c->tau);
    else
        binary_concrete_backward(c->a->dlogits, c->s->soft, c->a->dz, n, c->tau);
}

/* Decode z, record the loss, backpropagate the mean loss to a->dz. */
static void decode_and_backward(est_ctx *c, const float *z)
{
    vae_decode(c->m, c->a, z, c->B);
    vae_recon_loss(c->m, c->a, c->x, c->B);
    vae_decode_backward(c->m, c->a, c->x, z, c->B, 1.0f / (float)c->B);
}

/* The probabilities of q(z|x) at slope 1/tau into p: softmax(l / tau) per
 * variable, or sigmoid(l / tau) per unit.  At tau = 1 this is q itself, the
 * mean of a hard sample. */
static void probs_at(const est_ctx *c, float tau, float *p)
{
    const vae_config *cfg = &c->m->cfg;
    const float *logits = vae_logits(c->m, c->a);
    size_t n = (size_t)c->B * vae_zdim(cfg);
    if (cfg->latent == LATENT_CATEGORICAL && tau == 1.0f) {
        for (size_t i = 0; i < n; i++)
            p[i] = expf(c->a->logq[i]);
    } else if (cfg->latent == LATENT_CATEGORICAL) {
        /* softmax((l + 0) / tau): the Gumbel-Softmax forward without noise. */
        memset(c->s->noise, 0, n * sizeof(float));
        gumbel_softmax_forward(p, logits, c->s->noise, c->B * cfg->N, cfg->K, tau);
    } else {
        for (size_t i = 0; i < n; i++)
            p[i] = sigmoidf_stable(logits[i] / tau);
    }
}

/* out = J^T v with J = d probs_at(l, tau) / dl and p = probs_at(l, tau):
 * (1/tau) p (v - <v, p>) per variable, or (1/tau) p (1 - p) v per unit. */
static void probs_backward(const est_ctx *c, float *out, const float *p, const float *v,
                           float tau)
{
    const vae_config *cfg = &c->m->cfg;
    if (cfg->latent == LATENT_CATEGORICAL)
        gumbel_softmax_backward(out, p, v, c->B * cfg->N, cfg->K, tau);
    else
        binary_concrete_backward(out, p, v, (size_t)c->B * cfg->N, tau);
}

/* A true sample of q(z|x) into a->z. */
static void hard_sample(est_ctx *c)
{
    est_sample_hard(&c->m->cfg, vae_logits(c->m, c->a), c->B, c->s->noise, c->a->z, c->r);
}

/* ---- the learning signal of the score-function family ---- */

static float *bl_params(est_state *s)
{
    return s->persist + P_HEADER;
}

/* C(x) for the batch into s->bl_out. */
static void baseline_forward(est_ctx *c)
{
    est_state *s = c->s;
    int H = s->bl_hidden, D = c->m->cfg.D;
    const float *W1 = bl_params(s), *b1 = W1 + (size_t)H * D, *w2 = b1 + H, *b2 = w2 + H;
    linear_forward(s->bl_h, c->x, W1, b1, c->B, D, H, 0);
    for (size_t i = 0; i < (size_t)c->B * H; i++)
        s->bl_h[i] = tanhf(s->bl_h[i]);
    linear_forward(s->bl_out, s->bl_h, w2, b2, c->B, H, 1, 0);
}

/* One Adam step on (1/2B) sum_b (C(x_b) - target_b)^2 with the target
 * f_b - mean, given u[b] = f_b - C(x_b) from baseline_forward's outputs:
 * the residual C(x_b) - (f_b - mean) is mean - u[b]. */
static void baseline_train(est_ctx *c, const double *u, double mean)
{
    est_state *s = c->s;
    int H = s->bl_hidden, D = c->m->cfg.D, B = c->B;
    float *W1 = bl_params(s), *b1 = W1 + (size_t)H * D, *w2 = b1 + H;
    float *gW1 = s->bl_grads, *gb1 = gW1 + (size_t)H * D, *gw2 = gb1 + H, *gb2 = gw2 + H;
    memset(s->bl_grads, 0, s->nbl * sizeof(float));
    for (int b = 0; b < B; b++)
        s->bl_dout[b] = (float)((mean - u[b]) / B);
    linear_backward(s->bl_dh, gw2, gb2, s->bl_dout, s->bl_out, s->bl_h, w2, B, H, 1, 0);
    for (size_t i = 0; i < (size_t)B * H; i++)
        s->bl_dh[i] *= 1.0f - s->bl_h[i] * s->bl_h[i];
    linear_backward(NULL, gW1, gb1, s->bl_dh, s->bl_h, c->x, W1, B, D, H, 0);
    /* The step count lives in persist so that a checkpoint carries it. */
    s->bl_adam.t = (long)s->persist[P_ADAM_T];
    adam_update(&s->bl_adam, W1, s->bl_grads, s->bl_lr);
    s->persist[P_ADAM_T] = (float)s->bl_adam.t;
}

/* Centre the per-example learning signal u in place, NVIL style:
 * u - C(x) - c, divided by max(1, sqrt(v)) when var_norm is set, with c and
 * v the moving mean and variance of u - C(x).  c and v come from earlier
 * batches only and are updated after use (NVIL's Algorithm 1 folds the
 * current batch in first), so the centring never depends on the sample it
 * centres and the estimator stays unbiased; the very first batch is left
 * uncentred.  The network is fitted to u - c by squared error.
 *
 * The divisor goes into s->enc_scale as well: the rest of the encoder's
 * gradient (the analytic KL, MuProp's analytic term) must be divided by it
 * too.  NVIL's signal holds the whole bound, so its normalisation rescales
 * the whole encoder gradient; dividing only the reconstruction's score
 * term would let the KL outweigh it by the signal's standard deviation
 * (tens of nats) and collapse q(z|x) onto the prior. */
static void centre_signal(est_ctx *c, double *u)
{
    est_state *s = c->s;
    int B = c->B;
    s->enc_scale = 1.0f;
    if (s->baseline == EST_BASELINE_NONE)
        return;
    float *p = s->persist;
    int seen = p[P_SEEN] != 0.0f;
    double mean = seen ? p[P_MEAN] : 0.0;
    double scale = seen && s->var_norm ? 1.0 / fmax(1.0, sqrt((double)p[P_VAR])) : 1.0;
    s->enc_scale = (float)scale;
    if (s->baseline == EST_BASELINE_LEARNED) {
        baseline_forward(c);
        for (int b = 0; b < B; b++)
            u[b] -= s->bl_out[b];
    }
    if (!s->frozen) {
        double bm = 0.0, bv = 0.0;
        for (int b = 0; b < B; b++)
            bm += u[b];
        bm /= B;
        for (int b = 0; b < B; b++)
            bv += (u[b] - bm) * (u[b] - bm);
        bv /= B;
        /* u is the caller's s->signal: the residuals are formed inside
         * baseline_train so that u itself is left as it is. */
        if (s->baseline == EST_BASELINE_LEARNED)
            baseline_train(c, u, mean);
        double a = EST_BASELINE_DECAY;
        p[P_MEAN] = (float)(seen ? a * p[P_MEAN] + (1.0 - a) * bm : bm);
        p[P_VAR] = (float)(seen ? a * p[P_VAR] + (1.0 - a) * bv : bv);
        p[P_SEEN] = 1.0f;
    }
    for (int b = 0; b < B; b++)
        u[b] = (u[b] - mean) * scale;
}

/* dlogits += (u[b] / B) (z - q): the score term, d log q(z|x) / dl = z - q
 * for one-hot z and softmax q per variable, and for a bit z and sigmoid q. */
static void add_score_term(est_ctx *c, const double *u, const float *z, const float *q)
{
    int zdim = vae_zdim(&c->m->cfg);
    for (int b = 0; b < c->B; b++) {
        float w = (float)(u[b] / c->B);
        size_t o = (size_t)b * zdim;
        for (int j = 0; j < zdim; j++)
            c->a->dlogits[o + j] += w * (z[o + j] - q[o + j]);
    }
}

/* ---- the estimators ---- */

/* Gumbel-Softmax: the decoder sees the relaxed sample; the gradient flows
 * through the softmax. */
static void run_gumbel(est_ctx *c)
{
    relaxed_sample(c);
    decode_and_backward(c, c->s->soft);
    relaxed_backward(c);
}

/* Straight-through Gumbel-Softmax: the decoder sees the one-hot argmax of
 * the relaxed sample (a true categorical sample); the backward pass treats
 * it as the soft one. */
static void run_st_gumbel(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    relaxed_sample(c);
    if (cfg->latent == LATENT_CATEGORICAL)
        onehot_argmax(c->a->z, c->s->soft, c->B * cfg->N, cfg->K);
    else
        threshold_half(c->a->z, c->s->soft, (size_t)c->B * cfg->N);
    decode_and_backward(c, c->a->z);
    relaxed_backward(c);
}

/* Score function: the decoder's gradient from one hard sample, the
 * encoder's from (f(z) - baseline) d log q(z|x)/dl. */
static void run_sf(est_ctx *c)
{
    est_state *s = c->s;
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    for (int b = 0; b < c->B; b++)
        s->signal[b] = c->a->recon[b];
    centre_signal(c, s->signal);
    probs_at(c, 1.0f, s->zbar);
    memset(c->a->dlogits, 0, (size_t)c->B * vae_zdim(&c->m->cfg) * sizeof(float));
    add_score_term(c, s->signal, c->a->z, s->zbar);
}

/* MuProp: the control variate b(z) = f(zbar) + f'(zbar) . (z - zbar) at the
 * mean-field point zbar = q, whose mean E[b(z) d log q] = J_q^T f'(zbar) is
 * added analytically (Gu et al. 2016, Eq. 3-5).  The mean-field pass only
 * supplies f(zbar) and f'(zbar); its parameter gradients are discarded. */
static void run_muprop(est_ctx *c)
{
    est_state *s = c->s;
    vae_model *m = c->m;
    vae_acts *a = c->a;
    int B = c->B, zdim = vae_zdim(&m->cfg);
    size_t n = (size_t)B * zdim;
    probs_at(c, 1.0f, s->zbar);
    vae_decode(m, a, s->zbar, B);
    vae_recon_loss(m, a, c->x, B);
    memcpy(s->fbar, a->recon, (size_t)B * sizeof(double));
    size_t dec0 = m->dec[0].w;
    memset(s->grad_discard + dec0, 0, (m->nparams - dec0) * sizeof(float));
    vae_decode_backward_rows(m, a, c->x, s->zbar, B, NULL, 1.0f, s->grad_discard, s->dzbar);

    hard_sample(c);
    decode_and_backward(c, a->z);
    for (int b = 0; b < B; b++) {
        const float *z = a->z + (size_t)b * zdim, *zb = s->zbar + (size_t)b * zdim;
        const float *g = s->dzbar + (size_t)b * zdim;
        double lin = 0.0;
        for (int j = 0; j < zdim; j++)
            lin += (double)g[j] * (z[j] - zb[j]);
        s->signal[b] = a->recon[b] - s->fbar[b] - lin;
    }
    centre_signal(c, s->signal);
    /* The analytic term J^T f'(zbar) / B, normalised as the signal is, then
     * the score term on top. */
    float inv_b = s->enc_scale / (float)B;
    for (size_t i = 0; i < n; i++)
        s->dzbar[i] *= inv_b;
    probs_backward(c, a->dlogits, s->zbar, s->dzbar, 1.0f);
    add_score_term(c, s->signal, a->z, s->zbar);
}

/* DARN (Gregor et al. 2014), as the Gumbel-Softmax paper (Sec. 3.2) and
 * MuProp describe it: the baseline b = f(z) - f'(z)(z - zbar) with
 * zbar = 1/2, i.e. the learning signal f(z) - b = f'(z)(z - 1/2) linearises
 * f around the sample, per unit, and the correction term is dropped.  For a
 * Bernoulli unit this gives (z - 1/2)(z - q) f'(z), whose mean is
 * q(1-q) (f'(1) + f'(0))/2: exact when f is quadratic, biased otherwise.
 * Categorical analogue: per variable, zbar = 1/K (the centre of the
 * simplex, which is 1/2 again for K = 2), signal f'(z) . (z - 1/K), times
 * z - q; for K = 2 it reduces to the Bernoulli form exactly. */
static void run_darn(est_ctx *c)
{
    const vae_config *cfg = &c->m->cfg;
    vae_acts *a = c->a;
    est_state *s = c->s;
    hard_sample(c);
    decode_and_backward(c, a->z); /* a->dz = f'(z) / B */
    probs_at(c, 1.0f, s->zbar);
    if (cfg->latent == LATENT_CATEGORICAL) {
        int K = cfg->K;
        float inv_k = 1.0f / (float)K;
        for (int g = 0; g < c->B * cfg->N; g++) {
            size_t o = (size_t)g * K;
            float sig = 0.0f;
            for (int k = 0; k < K; k++)
                sig += a->dz[o + k] * (a->z[o + k] - inv_k);
            for (int k = 0; k < K; k++)
                a->dlogits[o + k] = sig * (a->z[o + k] - s->zbar[o + k]);
        }
    } else {
        for (size_t i = 0; i < (size_t)c->B * cfg->N; i++)
            a->dlogits[i] = a->dz[i] * (a->z[i] - 0.5f) * (a->z[i] - s->zbar[i]);
    }
}

/* Straight-through (Bengio et al. 2013): the decoder sees a hard sample of
 * q; the backward pass takes dz/dl as d q / dl, q = softmax(l) per variable
 * or sigmoid(l) per unit. */
static void run_st(est_ctx *c)
{
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    probs_at(c, 1.0f, c->s->zbar);
    probs_backward(c, c->a->dlogits, c->s->zbar, c->a->dz, 1.0f);
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
    hard_sample(c);
    decode_and_backward(c, c->a->z);
    probs_at(c, c->tau, c->s->soft);
    probs_backward(c, c->a->dlogits, c->s->soft, c->a->dz, c->tau);
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
    est_state *s = c->s;
    const vae_config *cfg = &m->cfg;
    int B = c->B, zdim = vae_zdim(cfg), D = cfg->D, K = cfg->K, N = cfg->N;
    const float *logits = vae_logits(m, a);
    long total = s->exact_configs * B;
    memset(s->acc_fz, 0, (size_t)B * zdim * sizeof(double));
    memset(s->acc_f, 0, (size_t)B * sizeof(double));
    for (long p0 = 0; p0 < total; p0 += s->max_batch) {
        int R = total - p0 < s->max_batch ? (int)(total - p0) : s->max_batch;
        for (int r = 0; r < R; r++) {
            long p = p0 + r, code = p / B;
            int b = (int)(p % B);
            float *z = s->rows_z + (size_t)r * zdim;
            memset(z, 0, (size_t)zdim * sizeof(float));
            double logw = 0.0;
            for (int i = 0; i < N; i++) {
                if (cfg->latent == LATENT_CATEGORICAL) {
                    int d = (int)(code % K);
                    code /= K;
                    z[i * K + d] = 1.0f;
                    logw += a->logq[(size_t)b * zdim + i * K + d];
                } else {
                    int bit = (int)(code & 1);
                    code >>= 1;
                    float l = logits[(size_t)b * N + i];
                    z[i] = (float)bit;
                    logw -= softplusf_stable(bit ? -l : l);
                }
            }
            s->row_w[r] = exp(logw);
            s->row_scale[r] = (float)(s->row_w[r] / B);
            memcpy(s->rows_x + (size_t)r * D, c->x + (size_t)b * D, (size_t)D * sizeof(float));
        }
        vae_decode(m, a, s->rows_z, R);
        vae_recon_loss(m, a, s->rows_x, R);
        vae_decode_backward_rows(m, a, s->rows_x, s->rows_z, R, s->row_scale, 1.0f, m->grads,
                                 NULL);
        for (int r = 0; r < R; r++) {
            int b = (int)((p0 + r) % B);
            double wf = s->row_w[r] * a->recon[r];
            const float *z = s->rows_z + (size_t)r * zdim;
            s->acc_f[b] += wf;
            for (int j = 0; j < zdim; j++)
                if (z[j] != 0.0f)
                    s->acc_fz[(size_t)b * zdim + j] += wf;
        }
    }
    probs_at(c, 1.0f, s->zbar);
    for (int b = 0; b < B; b++) {
        a->recon[b] = s->acc_f[b];
        for (int j = 0; j < zdim; j++) {
            size_t o = (size_t)b * zdim + j;
            a->dlogits[o] = (float)((s->acc_fz[o] - s->zbar[o] * s->acc_f[b]) / B);
        }
    }
}

static const estimator table[] = {
    {"gumbel", "Gumbel-Softmax (Concrete) relaxation; reparameterised gradient through the "
               "soft sample at temperature tau",
     run_gumbel, 0},
    {"st-gumbel", "straight-through Gumbel-Softmax: one-hot argmax forward, soft sample's "
                  "gradient backward (alias --hard)",
     run_st_gumbel, 0},
    {"sf", "score function (REINFORCE), (f(z) - baseline) dlog q(z|x); --baseline: NVIL moving "
           "average (decay 0.8) [+ MLP on x, 100 tanh], variance-normalised",
     run_sf, 1},
    {"darn", "DARN (Gregor et al. 2014): signal f'(z)(z - 1/2) per unit (categorical: "
             "f'(z).(z - 1/K) per variable) times dlog q; no correction term, so biased",
     run_darn, 0},
    {"muprop", "MuProp (Gu et al. 2016): score function minus the Taylor control variate at "
               "the mean q, plus its analytic mean; --baseline centres the residual",
     run_muprop, 1},
    {"st", "straight-through: hard sample forward, d softmax(l)/dl backward (Bernoulli: "
           "d sigmoid(l)/dl)",
     run_st, 0},
    {"annealed-st", "slope-annealed straight-through (Chung et al. 2016): as st with backward "
                    "d softmax(l/tau)/dl, slope 1/tau from the tau schedule",
     run_annealed_st, 0},
    {"exact", "exact expectation: sum of q(z|x) recon(z) over all K^N (2^N) codes; tiny "
              "codes only (at most 65536)",
     run_exact, 0},
    {NULL, NULL, NULL, 0},
};

const estimator *estimator_list(void)
{
    return table;
}

const estimator *estimator_find(const char *name)
{
    for (const estimator *e = table; e->name; e++)
        if (!strcmp(e->name, name))
            return e;
    return NULL;
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
    if (e->run == run_exact && est_count_configs(c) < 0) {
        char lat[64];
        vae_format_latent(c, lat, sizeof lat);
        return errf(err, "--estimator exact: a %s %s code has more than %ld configurations; "
                         "exact enumeration needs a tiny code, e.g. --latent 2x3",
                    lat, vae_latent_name(c->latent), EST_EXACT_MAX_CONFIGS);
    }
    return 0;
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
    s->baseline = opts->baseline;
    s->var_norm = opts->var_norm;
    s->bl_lr = opts->baseline_lr;
    const vae_config *cfg = &m->cfg;
    size_t B = (size_t)max_batch, zdim = (size_t)vae_zdim(cfg), D = (size_t)cfg->D;
    size_t n = B * zdim;
    int ok = 1;
#define ALLOC(p, count, type) ok &= ((p) = xcalloc((count), sizeof(type), err, "estimator state")) != NULL
    ALLOC(s->noise, n, float);
    ALLOC(s->soft, n, float);
    ALLOC(s->signal, B, double);
    ALLOC(s->fbar, B, double);
    ALLOC(s->zbar, n, float);
    ALLOC(s->dzbar, n, float);
    ALLOC(s->grad_discard, m->nparams, float);
    if (s->baseline == EST_BASELINE_LEARNED) {
        s->bl_hidden = EST_BASELINE_HIDDEN;
        size_t H = (size_t)s->bl_hidden;
        s->nbl = H * D + H + H + 1;
        ALLOC(s->bl_h, B * H, float);
        ALLOC(s->bl_dh, B * H, float);
        ALLOC(s->bl_out, B, float);
        ALLOC(s->bl_dout, B, float);
        ALLOC(s->bl_grads, s->nbl, float);
    }
    s->npersist = P_HEADER + 3 * s->nbl;
    ALLOC(s->persist, s->npersist, float);
    s->exact_configs = est_count_configs(cfg);
    if (s->exact_configs > 0) {
        ALLOC(s->rows_z, n, float);
        ALLOC(s->rows_x, B * D, float);
        ALLOC(s->row_scale, B, float);
        ALLOC(s->row_w, B, double);
        ALLOC(s->acc_fz, n, double);
        ALLOC(s->acc_f, B, double);
    }
#undef ALLOC
    if (!ok) {
        est_state_free(s);
        return -1;
    }
    if (s->baseline == EST_BASELINE_LEARNED) {
        /* Glorot-uniform first layer from the baseline's own seed (the run's
         * generator is left untouched); a zero output layer, so C(x) = 0
         * until it has learned something. */
        rng_t r;
        rng_seed(&r, opts->baseline_seed);
        linear_init_glorot(bl_params(s), D, s->bl_hidden, &r);
        s->bl_adam.n = s->nbl;
        s->bl_adam.m = s->persist + P_HEADER + s->nbl;
        s->bl_adam.v = s->persist + P_HEADER + 2 * s->nbl;
        s->bl_adam.beta1 = 0.9f;
        s->bl_adam.beta2 = 0.999f;
        s->bl_adam.eps = 1e-8f;
    }
    return 0;
}

void est_state_free(est_state *s)
{
    free(s->noise);
    free(s->soft);
    free(s->signal);
    free(s->fbar);
    free(s->zbar);
    free(s->dzbar);
    free(s->grad_discard);
    free(s->bl_h);
    free(s->bl_dh);
    free(s->bl_out);
    free(s->bl_dout);
    free(s->bl_grads);
    free(s->persist);
    free(s->rows_z);
    free(s->rows_x);
    free(s->row_scale);
    free(s->row_w);
    free(s->acc_fz);
    free(s->acc_f);
    memset(s, 0, sizeof *s);
}

double est_elbo_gradient(const estimator *e, est_ctx *c)
{
    vae_zero_grads(c->m);
    vae_encode(c->m, c->a, c->x, c->B);
    c->s->enc_scale = 1.0f;
    e->run(c);
    vae_kl(c->m, c->a, c->B);
    vae_kl_backward(c->m, c->a, c->B, c->s->enc_scale / (float)c->B);
    vae_encode_backward(c->m, c->a, c->x, c->B);
    double loss = 0.0;
    for (int b = 0; b < c->B; b++)
        loss += c->a->recon[b] + c->a->kl[b];
    return loss / c->B;
}

void est_sample_hard(const vae_config *cfg, const float *logits, int B, float *noise, float *z,
                     rng_t *r)
{
    size_t n = (size_t)B * vae_zdim(cfg);
    if (cfg->latent == LATENT_CATEGORICAL) {
        gumbel_noise(noise, n, r);
        for (size_t i = 0; i < n; i++)
            noise[i] += logits[i];
        onehot_argmax(z, noise, B * cfg->N, cfg->K);
    } else {
        for (size_t i = 0; i < n; i++)
            z[i] = rng_uniformf_open(r) < sigmoidf_stable(logits[i]) ? 1.0f : 0.0f;
    }
}
