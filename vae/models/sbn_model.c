/* sbn_model.c: the two-layer stochastic binary network of sbn.h, its
 * gradient estimators and its S-sample evaluation. */
#include "sbn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "gumbel.h"
#include "layers.h"
#include "util.h"

int sbn_zdim(const sbn_config *c)
{
    return c->latent == LATENT_CATEGORICAL ? c->N * c->K : c->N;
}

int sbn_init(sbn_model *m, const sbn_config *c, rng_t *r, char *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    int Z = sbn_zdim(c);
    size_t off = vae_linear_place(&m->lay[SBN_A1], c->D_in, Z, 0);
    off = vae_linear_place(&m->lay[SBN_A2], Z, Z, off);
    off = vae_linear_place(&m->lay[SBN_A3], Z, c->D_out, off);
    m->nparams = off;
    m->params = xcalloc(off, sizeof(float), err, "SBN parameters");
    m->grads = xcalloc(off, sizeof(float), err, "SBN gradients");
    if (!m->params || !m->grads) {
        sbn_free(m);
        return -1;
    }
    for (int i = 0; i < SBN_NLAYERS; i++)
        linear_init_glorot(m->params + m->lay[i].w, m->lay[i].in, m->lay[i].out, r);
    return 0;
}

void sbn_free(sbn_model *m)
{
    free(m->params);
    free(m->grads);
    m->params = m->grads = NULL;
}

/* ---- workspaces ---- */

int sbn_ws_init(sbn_ws *w, const sbn_model *m, int max_batch, int max_samples, char *err)
{
    memset(w, 0, sizeof *w);
    w->max_batch = max_batch;
    w->max_samples = max_samples;
    const sbn_config *c = &m->cfg;
    size_t B = (size_t)max_batch, R = B * (size_t)max_samples, Z = (size_t)sbn_zdim(c);
    size_t Di = (size_t)c->D_in, Do = (size_t)c->D_out;
    int ok = 1;
#define ALLOC(p, count, type) ok &= ((p) = xcalloc((count), sizeof(type), err, "SBN activations")) != NULL
    ALLOC(w->xin, B * Di, float);
    ALLOC(w->xout, B * Do, float);
    ALLOC(w->l1, B * Z, float);
    ALLOC(w->dl1, B * Z, float);
    for (int i = 0; i < 2; i++) {
        sbn_layer *L = &w->lay[i];
        ALLOC(L->logits, R * Z, float);
        ALLOC(L->probs, R * Z, float);
        ALLOC(L->pt, R * Z, float);
        ALLOC(L->noise, R * Z, float);
        ALLOC(L->soft, R * Z, float);
        ALLOC(L->h, R * Z, float);
        ALLOC(L->dh, R * Z, float);
        ALLOC(L->dl, R * Z, float);
        ALLOC(w->signal[i], B, double);
    }
    ALLOC(w->out, R * Do, float);
    ALLOC(w->dout, R * Do, float);
    ALLOC(w->ell, R, double);
    ALLOC(w->weight, R, double);
    ALLOC(w->loss, B, double);
    ALLOC(w->mf_x1, B * Z, float);
    ALLOC(w->mf_l2, B * Z, float);
    ALLOC(w->mf_x2, B * Z, float);
    ALLOC(w->mf_out, B * Do, float);
    ALLOC(w->mf_dout, B * Do, float);
    ALLOC(w->mf_g1, B * Z, float);
    ALLOC(w->mf_g2, B * Z, float);
    ALLOC(w->mf_dl2, B * Z, float);
    ALLOC(w->mf_f, B, double);
#undef ALLOC
    if (!ok) {
        sbn_ws_free(w);
        return -1;
    }
    return 0;
}

void sbn_ws_free(sbn_ws *w)
{
    float *fl[] = {w->xin, w->xout, w->l1, w->dl1, w->out, w->dout, w->mf_x1, w->mf_l2,
                   w->mf_x2, w->mf_out, w->mf_dout, w->mf_g1, w->mf_g2, w->mf_dl2};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        free(fl[i]);
    for (int i = 0; i < 2; i++) {
        sbn_layer *L = &w->lay[i];
        free(L->logits);
        free(L->probs);
        free(L->pt);
        free(L->noise);
        free(L->soft);
        free(L->h);
        free(L->dh);
        free(L->dl);
        free(w->signal[i]);
    }
    free(w->ell);
    free(w->weight);
    free(w->loss);
    free(w->mf_f);
    memset(w, 0, sizeof *w);
}

int sbn_eval_ws_init(sbn_eval_ws *w, const sbn_model *m, int rows, char *err)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    const sbn_config *c = &m->cfg;
    size_t R = (size_t)rows, Z = (size_t)sbn_zdim(c);
    int ok = 1;
#define ALLOC(p, count, type) ok &= ((p) = xcalloc((count), sizeof(type), err, "SBN evaluation")) != NULL
    ALLOC(w->xin, R * c->D_in, float);
    ALLOC(w->xout, R * c->D_out, float);
    ALLOC(w->l1, R * Z, float);
    ALLOC(w->q1, R * Z, float);
    ALLOC(w->h1, R * Z, float);
    ALLOC(w->l2, R * Z, float);
    ALLOC(w->q2, R * Z, float);
    ALLOC(w->h2, R * Z, float);
    ALLOC(w->out, R * c->D_out, float);
    ALLOC(w->example, R, int);
#undef ALLOC
    if (!ok) {
        sbn_eval_ws_free(w);
        return -1;
    }
    return 0;
}

void sbn_eval_ws_free(sbn_eval_ws *w)
{
    free(w->xin);
    free(w->xout);
    free(w->l1);
    free(w->q1);
    free(w->h1);
    free(w->l2);
    free(w->q2);
    free(w->h2);
    free(w->out);
    free(w->example);
    memset(w, 0, sizeof *w);
}

/* ---- one stochastic layer ---- */

/* p = sigmoid(l / tau) per unit, or softmax(l / tau) per group of K, for R
 * rows.  At tau = 1 this is the layer's mean. */
static void layer_probs(const sbn_config *c, const float *l, int R, float tau, float *p)
{
    float s = 1.0f / tau;
    if (c->latent == LATENT_BERNOULLI) {
        size_t n = (size_t)R * c->N;
        for (size_t i = 0; i < n; i++)
            p[i] = sigmoidf_stable(l[i] * s);
        return;
    }
    int K = c->K;
    for (long g = 0; g < (long)R * c->N; g++) {
        const float *lg = l + (size_t)g * K;
        float *pg = p + (size_t)g * K;
        float mx = lg[0] * s;
        for (int k = 1; k < K; k++)
            mx = fmaxf(mx, lg[k] * s);
        float sum = 0.0f;
        for (int k = 0; k < K; k++) {
            pg[k] = expf(lg[k] * s - mx);
            sum += pg[k];
        }
        float inv = 1.0f / sum;
        for (int k = 0; k < K; k++)
            pg[k] *= inv;
    }
}

/* out = J^T v, J the Jacobian of layer_probs(., tau) at p = layer_probs(l, tau):
 * (1/tau) p (1 - p) v per unit, (1/tau) p (v - <v, p>) per group. */
static void probs_backward(const sbn_config *c, float *out, const float *p, const float *v, int R,
                           float tau)
{
    if (c->latent == LATENT_CATEGORICAL)
        gumbel_softmax_backward(out, p, v, R * c->N, c->K, tau);
    else
        binary_concrete_backward(out, p, v, (size_t)R * c->N, tau);
}

/* A true sample of each row's distribution p (layer_probs at tau = 1):
 * u < p per unit, or one uniform through the cumulative sum per group
 * (one draw per variable instead of Gumbel-max's K, the same law).  A NaN
 * probability gives a NaN sample, so that a diverged layer reaches the
 * loss and its NaN check instead of hiding behind a comparison. */
static void sample_hard(const sbn_config *c, const float *p, int R, float *h, rng_t *r)
{
    if (c->latent == LATENT_BERNOULLI) {
        size_t n = (size_t)R * c->N;
        for (size_t i = 0; i < n; i++) {
            float u = rng_uniformf_open(r);
            h[i] = u < p[i] ? 1.0f : p[i] == p[i] ? 0.0f : p[i];
        }
        return;
    }
    int K = c->K;
    for (long g = 0; g < (long)R * c->N; g++) {
        const float *pg = p + (size_t)g * K;
        float *hg = h + (size_t)g * K;
        float u = rng_uniformf_open(r), acc = 0.0f, total = 0.0f;
        for (int k = 0; k < K; k++)
            total += pg[k];
        if (total != total) {
            for (int k = 0; k < K; k++)
                hg[k] = total;
            continue;
        }
        int pick = K - 1;
        for (int k = 0; k < K - 1; k++) {
            acc += pg[k];
            if (u < acc) {
                pick = k;
                break;
            }
        }
        /* Rounding can leave u above the float total: take the last class
         * with mass, never one of probability 0. */
        while (pick > 0 && pg[pick] == 0.0f)
            pick--;
        for (int k = 0; k < K; k++)
            hg[k] = k == pick ? 1.0f : 0.0f;
    }
}

/* The relaxed sample of layer L at temperature tau into L->soft: Gumbel-
 * Softmax per group, Binary Concrete per unit. */
static void sample_relaxed(const sbn_config *c, sbn_layer *L, int R, float tau, rng_t *r)
{
    size_t n = (size_t)R * sbn_zdim(c);
    if (c->latent == LATENT_CATEGORICAL) {
        gumbel_noise(L->noise, n, r);
        gumbel_softmax_forward(L->soft, L->logits, L->noise, R * c->N, c->K, tau);
    } else {
        logistic_noise(L->noise, n, r);
        binary_concrete_forward(L->soft, L->logits, L->noise, n, tau);
    }
}

/* L->h from L->logits and L->probs, as the estimator's forward pass asks. */
static void draw(sbn_ctx *c, sbn_layer *L, int R)
{
    const sbn_config *cfg = &c->m->cfg;
    size_t n = (size_t)R * sbn_zdim(cfg);
    switch (c->e->sample) {
    case SBN_SAMPLE_RELAXED:
        sample_relaxed(cfg, L, R, c->tau, c->r);
        memcpy(L->h, L->soft, n * sizeof(float));
        break;
    case SBN_SAMPLE_ST_RELAXED:
        /* The argmax of a Gumbel-Softmax sample (the sign of l + logistic
         * noise) is a true sample of the layer. */
        sample_relaxed(cfg, L, R, c->tau, c->r);
        if (cfg->latent == LATENT_CATEGORICAL)
            onehot_argmax(L->h, L->soft, R * cfg->N, cfg->K);
        else
            threshold_half(L->h, L->soft, n);
        break;
    case SBN_SAMPLE_HARD:
        sample_hard(cfg, L->probs, R, L->h, c->r);
        break;
    }
}

/* din[B][C] = dout[B][OC] w[OC][C]: the input gradient of an affine map
 * alone, for passes whose parameter gradients must not count. */
static void matmul_din(float *din, const float *dout, const float *w, int B, int C, int OC)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, OC, 1.0f, dout, OC, w, C, 0.0f,
                din, C);
}

/* ---- learning signals of the score-function family ---- */

static void centre(sbn_baseline *bl, int slot, double *u, int B)
{
    if (!bl || !bl->centre)
        return;
    int seen = bl->seen[slot];
    double mean = seen ? bl->mean[slot] : 0.0;
    double scale = seen && bl->var_norm ? 1.0 / fmax(1.0, sqrt(bl->var[slot])) : 1.0;
    bl->scale[slot] = scale;
    if (!bl->frozen) {
        double bm = 0.0, bv = 0.0;
        for (int b = 0; b < B; b++)
            bm += u[b];
        bm /= B;
        for (int b = 0; b < B; b++)
            bv += (u[b] - bm) * (u[b] - bm);
        bv /= B;
        /* NVIL (Mnih & Gregor 2014, Sec. 3.3): alpha = 0.8. */
        const double a = 0.8;
        bl->mean[slot] = seen ? a * bl->mean[slot] + (1.0 - a) * bm : bm;
        bl->var[slot] = seen ? a * bl->var[slot] + (1.0 - a) * bv : bv;
        bl->seen[slot] = 1;
    }
    for (int b = 0; b < B; b++)
        u[b] = (u[b] - mean) * scale;
}

/* L->dl += (u[b] / B) (h - p), the score d log p(h)/dl of every row. */
static void add_score(const sbn_ctx *c, sbn_layer *L, const double *u)
{
    int Z = sbn_zdim(&c->m->cfg), S = c->S;
    for (int r = 0; r < c->B * S; r++) {
        float s = (float)(u[r / S] / c->B);
        size_t o = (size_t)r * Z;
        for (int k = 0; k < Z; k++)
            L->dl[o + k] += s * (L->h[o + k] - L->probs[o + k]);
    }
}

/* The mean-field network of MuProp (Gu et al. 2016, Sec. 3.1): the means,
 * not samples, propagated through both layers, its loss f(xbar) and the
 * gradients G2 = df/dx2bar and G1 = df/dx1bar, per example. */
static void mean_field_pass(sbn_ctx *c)
{
    const sbn_model *m = c->m;
    sbn_ws *w = c->w;
    const sbn_config *cfg = &m->cfg;
    int B = c->B, Z = sbn_zdim(cfg), Do = cfg->D_out;
    const vae_linear *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    layer_probs(cfg, w->l1, B, 1.0f, w->mf_x1);
    linear_forward(w->mf_l2, w->mf_x1, m->params + a2->w, m->params + a2->b, B, Z, Z, 0);
    layer_probs(cfg, w->mf_l2, B, 1.0f, w->mf_x2);
    linear_forward(w->mf_out, w->mf_x2, m->params + a3->w, m->params + a3->b, B, Z, Do, 0);
    bce_logits_forward(w->mf_f, w->mf_out, w->xout, B, Do);
    bce_logits_backward(w->mf_dout, w->mf_out, w->xout, B, Do, 1.0f);
    matmul_din(w->mf_g2, w->mf_dout, m->params + a3->w, B, Z, Do);
    probs_backward(cfg, w->mf_dl2, w->mf_x2, w->mf_g2, B, 1.0f);
    matmul_din(w->mf_g1, w->mf_dl2, m->params + a2->w, B, Z, Z);
}

/* The learning signals of both layers into w->signal, centred. */
static void learning_signals(sbn_ctx *c)
{
    sbn_ws *w = c->w;
    int B = c->B, S = c->S, Z = sbn_zdim(&c->m->cfg);
    for (int i = 0; i < 2; i++) {
        for (int b = 0; b < B; b++) {
            double u = w->loss[b];
            if (c->e->mean_field) {
                /* Subtract the first-order Taylor expansion of the S-sample
                 * loss around the mean-field point, where every sample sits
                 * at xbar and dL/dh^(j) = G / S. */
                const float *xbar = (i ? w->mf_x2 : w->mf_x1) + (size_t)b * Z;
                const float *G = (i ? w->mf_g2 : w->mf_g1) + (size_t)b * Z;
                double lin = 0.0;
                for (int j = 0; j < S; j++) {
                    const float *h = w->lay[i].h + (size_t)(b * S + j) * Z;
                    for (int k = 0; k < Z; k++)
                        lin += (double)G[k] * (h[k] - xbar[k]);
                }
                u -= w->mf_f[b] + lin / S;
            }
            w->signal[i][b] = u;
        }
        centre(c->bl, i, w->signal[i], B);
    }
}

/* ---- the per-layer backward of each estimator: L->dh (or the signal) to L->dl ---- */

static void bw_relaxed(sbn_ctx *c, int i)
{
    const sbn_config *cfg = &c->m->cfg;
    sbn_layer *L = &c->w->lay[i];
    int R = c->B * c->S;
    if (cfg->latent == LATENT_CATEGORICAL)
        gumbel_softmax_backward(L->dl, L->soft, L->dh, R * cfg->N, cfg->K, c->tau);
    else
        binary_concrete_backward(L->dl, L->soft, L->dh, (size_t)R * cfg->N, c->tau);
}

static void bw_st(sbn_ctx *c, int i)
{
    sbn_layer *L = &c->w->lay[i];
    probs_backward(&c->m->cfg, L->dl, L->probs, L->dh, c->B * c->S, 1.0f);
}

/* Slope-annealed ST (Chung et al. 2016): the backward of softmax(l / tau)
 * (sigmoid), slope 1/tau; the forward sample stays a sample of the layer. */
static void bw_annealed_st(sbn_ctx *c, int i)
{
    const sbn_config *cfg = &c->m->cfg;
    sbn_layer *L = &c->w->lay[i];
    int R = c->B * c->S;
    layer_probs(cfg, L->logits, R, c->tau, L->pt);
    probs_backward(cfg, L->dl, L->pt, L->dh, R, c->tau);
}

/* DARN's 1/2 estimator (Gregor et al. 2014; Gu et al. 2016, Eq. 5-7), per
 * layer as estimator.c defines it: signal f'(h)(h - 1/2) per unit times
 * dlog p/dl = h - p, or per variable f'(h).(h - 1/K) times h - p.  At the
 * lower layer f'(h1) is the upper layer's estimate backpropagated through
 * A2, as MuProp's Sec. 4.2 describes for deep networks. */
static void bw_darn(sbn_ctx *c, int i)
{
    const sbn_config *cfg = &c->m->cfg;
    sbn_layer *L = &c->w->lay[i];
    int R = c->B * c->S;
    if (cfg->latent == LATENT_CATEGORICAL) {
        int K = cfg->K;
        float inv_k = 1.0f / (float)K;
        for (long g = 0; g < (long)R * cfg->N; g++) {
            size_t o = (size_t)g * K;
            float sig = 0.0f;
            for (int k = 0; k < K; k++)
                sig += L->dh[o + k] * (L->h[o + k] - inv_k);
            for (int k = 0; k < K; k++)
                L->dl[o + k] = sig * (L->h[o + k] - L->probs[o + k]);
        }
    } else {
        for (size_t k = 0; k < (size_t)R * cfg->N; k++)
            L->dl[k] = L->dh[k] * (L->h[k] - 0.5f) * (L->h[k] - L->probs[k]);
    }
}

static void bw_sf(sbn_ctx *c, int i)
{
    sbn_layer *L = &c->w->lay[i];
    memset(L->dl, 0, (size_t)c->B * c->S * sbn_zdim(&c->m->cfg) * sizeof(float));
    add_score(c, L, c->w->signal[i]);
}

/* MuProp (Gu et al. 2016, Eq. 3 and Algorithm 1): the score term of the
 * residual signal plus the control variate's analytic mean, G . dE[h]/dl =
 * J_p^T G / S per row, with p the layer's mean given the sampled layer
 * below (so the upper layer's correction uses mu_2(h1), as the algorithm's
 * stochastic pass does).  The analytic term takes the signal's variance
 * normalisation too: scaling the residual alone would change the
 * estimator's mean, not only its size. */
static void bw_muprop(sbn_ctx *c, int i)
{
    sbn_ws *w = c->w;
    sbn_layer *L = &w->lay[i];
    int S = c->S, R = c->B * S, Z = sbn_zdim(&c->m->cfg);
    const float *G = i ? w->mf_g2 : w->mf_g1;
    double norm = c->bl && c->bl->centre ? c->bl->scale[i] : 1.0;
    float scale = (float)(norm / ((double)S * c->B));
    /* dh is free here (no pathwise gradient flows in this estimator). */
    for (int r = 0; r < R; r++)
        for (int k = 0; k < Z; k++)
            L->dh[(size_t)r * Z + k] = G[(size_t)(r / S) * Z + k] * scale;
    probs_backward(&c->m->cfg, L->dl, L->probs, L->dh, R, 1.0f);
    add_score(c, L, w->signal[i]);
}

static const sbn_estimator table[] = {
    {"gumbel", "Gumbel-Softmax / Binary Concrete samples at both layers; pathwise gradient "
               "through the relaxation at temperature tau",
     SBN_SAMPLE_RELAXED, bw_relaxed, 1, 0, 0},
    {"st-gumbel", "straight-through Gumbel-Softmax: the argmax of the relaxed sample forward, "
                  "the relaxed sample's gradient backward, at both layers",
     SBN_SAMPLE_ST_RELAXED, bw_relaxed, 1, 0, 0},
    {"sf", "score function: (L - baseline) (dlog p(h1|x) + dlog p(h2|h1)), L the S-sample "
           "loss; --baseline / --var-norm as NVIL",
     SBN_SAMPLE_HARD, bw_sf, 0, 1, 0},
    {"darn", "DARN's 1/2 estimator per layer: f'(h)(h - 1/2) (categorical: f'(h).(h - 1/K)) "
             "times dlog p; lower layer gets the upper's estimate backpropagated; biased",
     SBN_SAMPLE_HARD, bw_darn, 1, 0, 0},
    {"muprop", "MuProp: sf minus the first-order Taylor control variate around the mean-field "
               "pass through both layers, plus its analytic mean",
     SBN_SAMPLE_HARD, bw_muprop, 0, 1, 1},
    {"st", "straight-through: hard samples forward, d mean/d logits backward at both layers",
     SBN_SAMPLE_HARD, bw_st, 1, 0, 0},
    {"annealed-st", "slope-annealed straight-through: as st with backward d sigmoid(l/tau)/dl "
                    "(softmax), slope 1/tau from the tau schedule",
     SBN_SAMPLE_HARD, bw_annealed_st, 1, 0, 0},
    {NULL, NULL, SBN_SAMPLE_HARD, NULL, 0, 0, 0},
};

const sbn_estimator *sbn_estimator_list(void)
{
    return table;
}

const sbn_estimator *sbn_estimator_find(const char *name)
{
    for (const sbn_estimator *e = table; e->name; e++)
        if (!strcmp(e->name, name))
            return e;
    return NULL;
}

/* ---- forward and backward of a batch ---- */

/* Split rows of D_in + D_out into x_in and x_out. */
static void split_rows(const sbn_config *c, const float *x, int first, int n, float *xin,
                       float *xout)
{
    size_t Dx = (size_t)c->D_in + c->D_out;
    for (int k = 0; k < n; k++) {
        const float *row = x + (size_t)(first + k) * Dx;
        memcpy(xin + (size_t)k * c->D_in, row, (size_t)c->D_in * sizeof(float));
        memcpy(xout + (size_t)k * c->D_out, row + c->D_in, (size_t)c->D_out * sizeof(float));
    }
}

double sbn_gradient(sbn_ctx *c)
{
    sbn_model *m = c->m;
    sbn_ws *w = c->w;
    const sbn_config *cfg = &m->cfg;
    const sbn_estimator *e = c->e;
    int B = c->B, S = c->S, R = B * S, Z = sbn_zdim(cfg), Di = cfg->D_in, Do = cfg->D_out;
    const vae_linear *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    sbn_layer *L1 = &w->lay[0], *L2 = &w->lay[1];
    memset(m->grads, 0, m->nparams * sizeof(float));
    split_rows(cfg, c->x, 0, B, w->xin, w->xout);

    /* Forward: A1 once per example, then every sample row. */
    linear_forward(w->l1, w->xin, m->params + a1->w, m->params + a1->b, B, Di, Z, 0);
    for (int r = 0; r < R; r++)
        memcpy(L1->logits + (size_t)r * Z, w->l1 + (size_t)(r / S) * Z, (size_t)Z * sizeof(float));
    layer_probs(cfg, L1->logits, R, 1.0f, L1->probs);
    draw(c, L1, R);
    linear_forward(L2->logits, L1->h, m->params + a2->w, m->params + a2->b, R, Z, Z, 0);
    layer_probs(cfg, L2->logits, R, 1.0f, L2->probs);
    draw(c, L2, R);
    linear_forward(w->out, L2->h, m->params + a3->w, m->params + a3->b, R, Z, Do, 0);
    for (int r = 0; r < R; r++)
        bce_logits_forward(&w->ell[r], w->out + (size_t)r * Do, w->xout + (size_t)(r / S) * Do, 1,
                           Do);

    /* L = -logsumexp_j(-ell_j) + log S; dL/dell_j = softmax_j(-ell). */
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const double *ell = w->ell + (size_t)b * S;
        double mx = -ell[0];
        for (int j = 1; j < S; j++)
            mx = fmax(mx, -ell[j]);
        double sum = 0.0;
        for (int j = 0; j < S; j++) {
            w->weight[b * S + j] = exp(-ell[j] - mx);
            sum += w->weight[b * S + j];
        }
        for (int j = 0; j < S; j++)
            w->weight[b * S + j] /= sum;
        w->loss[b] = -(mx + log(sum)) + log((double)S);
        total += w->loss[b];
    }
    if (!isfinite(total))
        return NAN;

    /* Backward: the output map is differentiable for every estimator. */
    for (int r = 0; r < R; r++)
        bce_logits_backward(w->dout + (size_t)r * Do, w->out + (size_t)r * Do,
                            w->xout + (size_t)(r / S) * Do, 1, Do, (float)(w->weight[r] / B));
    linear_backward(L2->dh, m->grads + a3->w, m->grads + a3->b, w->dout, w->out, L2->h,
                    m->params + a3->w, R, Z, Do, 0);
    if (e->mean_field)
        mean_field_pass(c);
    if (e->uses_baseline)
        learning_signals(c);
    e->layer_backward(c, 1);
    linear_backward(e->pathwise ? L1->dh : NULL, m->grads + a2->w, m->grads + a2->b, L2->dl,
                    L2->logits, L1->h, m->params + a2->w, R, Z, Z, 0);
    e->layer_backward(c, 0);
    memset(w->dl1, 0, (size_t)B * Z * sizeof(float));
    for (int r = 0; r < R; r++)
        for (int k = 0; k < Z; k++)
            w->dl1[(size_t)(r / S) * Z + k] += L1->dl[(size_t)r * Z + k];
    linear_backward(NULL, m->grads + a1->w, m->grads + a1->b, w->dl1, w->l1, w->xin,
                    m->params + a1->w, B, Di, Z, 0);
    return total / B;
}

/* ---- evaluation ---- */

/* The hard forward pass of w->example's rows: x_in and x_out of examples
 * first .. first+E-1 are copied in, every row draws h1 and h2 from the
 * model and gets its pixel logits in w->out. */
static void eval_forward(const sbn_model *m, sbn_eval_ws *w, const float *x, int first, int E,
                         int rows, rng_t *r)
{
    const sbn_config *cfg = &m->cfg;
    int Z = sbn_zdim(cfg);
    const vae_linear *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    split_rows(cfg, x, first, E, w->xin, w->xout);
    linear_forward(w->l1, w->xin, m->params + a1->w, m->params + a1->b, E, cfg->D_in, Z, 0);
    layer_probs(cfg, w->l1, E, 1.0f, w->q1);
    for (int row = 0; row < rows; row++)
        sample_hard(cfg, w->q1 + (size_t)w->example[row] * Z, 1, w->h1 + (size_t)row * Z, r);
    linear_forward(w->l2, w->h1, m->params + a2->w, m->params + a2->b, rows, Z, Z, 0);
    layer_probs(cfg, w->l2, rows, 1.0f, w->q2);
    sample_hard(cfg, w->q2, rows, w->h2, r);
    linear_forward(w->out, w->h2, m->params + a3->w, m->params + a3->b, rows, Z, cfg->D_out, 0);
}

double sbn_eval_nll(const sbn_model *m, sbn_eval_ws *w, const float *x, int n, int M,
                    rng_t *r, double *per_example)
{
    int Do = m->cfg.D_out;
    int e = 0, j = 0, done = 0, count = 0;
    double total = 0.0, mx = -INFINITY, sum = 0.0, logM = log((double)M);
    while (e < n) {
        /* Rows of (example, sample) pairs, example-major, that fit. */
        int rows = 0, first = e;
        while (rows < w->rows && e < n) {
            int take = M - j < w->rows - rows ? M - j : w->rows - rows;
            for (int t = 0; t < take; t++)
                w->example[rows + t] = e - first;
            rows += take;
            j += take;
            if (j == M) {
                e++;
                j = 0;
            }
        }
        int E = w->example[rows - 1] + 1;
        eval_forward(m, w, x, first, E, rows, r);
        for (int row = 0; row < rows; row++) {
            double ell;
            bce_logits_forward(&ell, w->out + (size_t)row * Do,
                               w->xout + (size_t)w->example[row] * Do, 1, Do);
            /* Running log-sum-exp of log p = -ell over the example's samples. */
            double v = -ell;
            if (v > mx) {
                sum = sum * exp(mx - v) + 1.0;
                mx = v;
            } else {
                sum += exp(v - mx);
            }
            if (++count == M) {
                double nll = -(mx + log(sum) - logM);
                if (per_example)
                    per_example[done] = nll;
                total += nll;
                done++;
                count = 0;
                mx = -INFINITY;
                sum = 0.0;
            }
        }
    }
    return total / n;
}

void sbn_predict(const sbn_model *m, sbn_eval_ws *w, const float *x, int n, int S, rng_t *r,
                 float *means)
{
    int Do = m->cfg.D_out;
    int per_chunk = w->rows / S;
    for (int first = 0; first < n; first += per_chunk) {
        int E = n - first < per_chunk ? n - first : per_chunk, rows = E * S;
        for (int row = 0; row < rows; row++)
            w->example[row] = row / S;
        eval_forward(m, w, x, first, E, rows, r);
        float *dst = means + (size_t)first * S * Do;
        for (size_t i = 0; i < (size_t)rows * Do; i++)
            dst[i] = sigmoidf_stable(w->out[i]);
    }
}
