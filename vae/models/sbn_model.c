/* sbn_model.c: the two-layer stochastic binary network of sbn.h, its
 * gradient estimators and its S-sample evaluation. */
#include "sbn.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adam.h"
#include "baseline.h"
#include "layers.h"
#include "stochastic.h"
#include "util.h"

/* One stochastic layer of the model as stochastic.h sees it. */
static stoch_layer sbn_code(const sbn_config *c)
{
    return (stoch_layer){c->latent, c->N, c->K};
}

int sbn_zdim(const sbn_config *c)
{
    stoch_layer code = sbn_code(c);
    return stoch_dim(&code);
}

/* One stochastic layer's activations over R = B S rows of Z units. */
typedef struct {
    float *logits;  /* [R][Z] */
    float *probs;   /* [R][Z] the mean: sigmoid or softmax of the logits */
    float *pt;      /* [R][Z] probs at slope 1/tau (annealed-st) */
    float *noise;   /* [R][Z] logistic or Gumbel noise of the relaxed sample */
    float *soft;    /* [R][Z] the relaxed sample */
    float *h;       /* [R][Z] what the next layer reads */
    float *dh, *dl; /* [R][Z] gradients at h and at the logits */
} sbn_layer;

/* sbn_ws's scratch, at the head of its block: B = max_batch examples,
 * R = B * max_samples rows, Z units per stochastic layer. */
struct sbn_scratch {
    float *xin, *xout;    /* [B][D_in], [B][D_out] */
    float *l1;            /* [B][Z] A1(x_in), before replication */
    float *dl1;           /* [B][Z] dl of layer 1 summed over samples */
    sbn_layer lay[2];
    float *out, *dout;    /* [R][D_out] pixel logits and their gradient */
    double *ell;          /* [R] -log p(x_out | h2) */
    double *weight;       /* [R] dL/d ell, softmax over the samples */
    double *loss;         /* [B] L */
    double *signal[2];    /* [B] learning signals of sf / muprop */
    /* The mean-field pass of muprop, B rows. */
    float *mf_x1, *mf_l2, *mf_x2;     /* [B][Z] xbar1, A2(xbar1), xbar2 */
    float *mf_out, *mf_dout;          /* [B][D_out] */
    float *mf_g1, *mf_g2, *mf_dl2;    /* [B][Z] G1, G2, G2's backward to A2's output */
    double *mf_f;                     /* [B] f(xbar) */
    /* MuProp with rollout (sbn_ctx.rollout): the upper layer's Taylor
     * point is each row's own mean q2 = mu_2(h1). */
    float *rf_out, *rf_dout;          /* [R][D_out] A3(q2) and df/d of it */
    float *rf_g;                      /* [R][Z] df/dq2 per row */
    double *rf_f, *rf_w;              /* [R] f(q2) per row; softmax_j(-f) within an example */
    /* The learned baseline's pass (sbn_learned), H = SBN_BASELINE_HIDDEN. */
    bnet_ws bl;                       /* h, dh [B][H]; out, dout [B]; grads [bnet_nparams(D_in, H)] */
};

/* sbn_eval_ws's scratch: R = rows (example, sample) rows. */
struct sbn_eval_scratch {
    float *xin, *xout;    /* [R][D_in], [R][D_out] (the first E rows used) */
    float *l1, *q1, *h1;  /* [R][Z] layer 1's logits, mean and sample */
    float *l2, *q2, *h2;  /* [R][Z] layer 2's */
    float *out;           /* [R][D_out] pixel logits */
    int *example;         /* [R] the example of each row, from the chunk's first */
};

int sbn_init(sbn_model *m, const sbn_config *c, rng_t *r, char *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    int Z = sbn_zdim(c);
    size_t off = linear_place(&m->lay[SBN_A1], c->D_in, Z, 0);
    off = linear_place(&m->lay[SBN_A2], Z, Z, off);
    off = linear_place(&m->lay[SBN_A3], Z, c->D_out, off);
    m->nparams = off;
    if (params_alloc(&m->params, &m->grads, off, err, "SBN parameters") != 0)
        return -1;
    for (int i = 0; i < SBN_NLAYERS; i++)
        linear_init_glorot(m->params + m->lay[i].w, m->lay[i].in, m->lay[i].out, r);
    return 0;
}

void sbn_free(sbn_model *m)
{
    params_free(&m->params, &m->grads);
}

/* ---- workspaces ---- */

int sbn_ws_init(sbn_ws *w, const sbn_model *m, int max_batch, int max_samples, char *err)
{
    memset(w, 0, sizeof *w);
    w->max_batch = max_batch;
    w->max_samples = max_samples;
    const sbn_config *c = &m->cfg;
    size_t B = (size_t)max_batch, R = B * (size_t)max_samples, Z = (size_t)sbn_zdim(c);
    size_t Di = (size_t)c->D_in, Do = (size_t)c->D_out, H = SBN_BASELINE_HIDDEN;
    sbn_scratch t = {0};
    sbn_layer *L1 = &t.lay[0], *L2 = &t.lay[1];
    ws_buf bufs[] = {
        WS_BUF(t.xin, B * Di),      WS_BUF(t.xout, B * Do),
        WS_BUF(t.l1, B * Z),        WS_BUF(t.dl1, B * Z),
        WS_BUF(L1->logits, R * Z),  WS_BUF(L1->probs, R * Z),  WS_BUF(L1->pt, R * Z),
        WS_BUF(L1->noise, R * Z),   WS_BUF(L1->soft, R * Z),   WS_BUF(L1->h, R * Z),
        WS_BUF(L1->dh, R * Z),      WS_BUF(L1->dl, R * Z),
        WS_BUF(L2->logits, R * Z),  WS_BUF(L2->probs, R * Z),  WS_BUF(L2->pt, R * Z),
        WS_BUF(L2->noise, R * Z),   WS_BUF(L2->soft, R * Z),   WS_BUF(L2->h, R * Z),
        WS_BUF(L2->dh, R * Z),      WS_BUF(L2->dl, R * Z),
        WS_BUF(t.out, R * Do),      WS_BUF(t.dout, R * Do),
        WS_BUF(t.ell, R),           WS_BUF(t.weight, R),       WS_BUF(t.loss, B),
        WS_BUF(t.signal[0], B),     WS_BUF(t.signal[1], B),
        WS_BUF(t.mf_x1, B * Z),     WS_BUF(t.mf_l2, B * Z),    WS_BUF(t.mf_x2, B * Z),
        WS_BUF(t.mf_out, B * Do),   WS_BUF(t.mf_dout, B * Do),
        WS_BUF(t.mf_g1, B * Z),     WS_BUF(t.mf_g2, B * Z),    WS_BUF(t.mf_dl2, B * Z),
        WS_BUF(t.mf_f, B),
        WS_BUF(t.rf_out, R * Do),   WS_BUF(t.rf_dout, R * Do), WS_BUF(t.rf_g, R * Z),
        WS_BUF(t.rf_f, R),          WS_BUF(t.rf_w, R),
        WS_BUF(t.bl.h, B * H),      WS_BUF(t.bl.dh, B * H),
        WS_BUF(t.bl.out, B),        WS_BUF(t.bl.dout, B),
        WS_BUF(t.bl.grads, bnet_nparams((int)Di, (int)H)),
    };
    w->ws = ws_alloc(bufs, WS_COUNT(bufs), &t, sizeof t, err, "SBN activations");
    return w->ws ? 0 : -1;
}

void sbn_ws_free(sbn_ws *w)
{
    free(w->ws);
    memset(w, 0, sizeof *w);
}

const float *sbn_ws_noise(const sbn_ws *w, int i)
{
    assert(i == 0 || i == 1);
    return w->ws->lay[i].noise;
}

int sbn_eval_ws_init(sbn_eval_ws *w, const sbn_model *m, int rows, char *err)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    const sbn_config *c = &m->cfg;
    size_t R = (size_t)rows, Z = (size_t)sbn_zdim(c);
    sbn_eval_scratch t = {0};
    ws_buf bufs[] = {
        WS_BUF(t.xin, R * c->D_in), WS_BUF(t.xout, R * c->D_out),
        WS_BUF(t.l1, R * Z),        WS_BUF(t.q1, R * Z),       WS_BUF(t.h1, R * Z),
        WS_BUF(t.l2, R * Z),        WS_BUF(t.q2, R * Z),       WS_BUF(t.h2, R * Z),
        WS_BUF(t.out, R * c->D_out), WS_BUF(t.example, R),
    };
    w->ws = ws_alloc(bufs, WS_COUNT(bufs), &t, sizeof t, err, "SBN evaluation");
    return w->ws ? 0 : -1;
}

void sbn_eval_ws_free(sbn_eval_ws *w)
{
    free(w->ws);
    memset(w, 0, sizeof *w);
}

/* ---- one stochastic layer ---- */

/* L->h from L->logits and L->probs, as the estimator's forward pass asks. */
static void draw(sbn_ctx *c, sbn_layer *L, int R)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    switch (c->e->sample) {
    case SBN_SAMPLE_RELAXED:
        stoch_relaxed_sample(&code, L->soft, L->noise, L->logits, R, c->tau, c->r);
        memcpy(L->h, L->soft, (size_t)R * stoch_dim(&code) * sizeof(float));
        break;
    case SBN_SAMPLE_ST_RELAXED:
        /* The argmax of a Gumbel-Softmax sample (the sign of l + logistic
         * noise) is a true sample of the layer. */
        stoch_relaxed_sample(&code, L->soft, L->noise, L->logits, R, c->tau, c->r);
        stoch_hard_from_relaxed(&code, L->h, L->soft, R);
        break;
    case SBN_SAMPLE_HARD:
        stoch_sample_probs(&code, L->h, L->probs, R, c->r);
        break;
    }
}

/* ---- learning signals of the score-function family ---- */

/* Centres layer `slot`'s signal u (B examples) with bl's running
 * statistics, NVIL style (stoch_nvil_centre); bl NULL or not centring:
 * left as it is. */
static void centre(sbn_baseline *bl, int slot, double *u, int B)
{
    if (!bl || !bl->centre)
        return;
    bl->scale[slot] = stoch_nvil_centre(&bl->stat[slot], u, B, bl->var_norm, bl->frozen);
}

/* L->dl += (u[b] / B) (h - p), the score d log p(h)/dl of every row. */
static void add_score(const sbn_ctx *c, sbn_layer *L, const double *u)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    stoch_score_add(&code, L->dl, L->h, L->probs, u, c->B * c->S, c->S, c->B);
}

/* The mean-field network of MuProp (Gu et al. 2016, Sec. 3.1): the means,
 * not samples, propagated through both layers, its loss f(xbar) and the
 * gradients G2 = df/dx2bar and G1 = df/dx1bar, per example. */
static void mean_field_pass(sbn_ctx *c)
{
    const sbn_model *m = c->m;
    sbn_scratch *w = c->w->ws;
    const sbn_config *cfg = &m->cfg;
    stoch_layer code = sbn_code(cfg);
    int B = c->B, Z = sbn_zdim(cfg), Do = cfg->D_out;
    const linear_layer *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    stoch_probs_forward(&code, w->mf_x1, w->l1, B, 1.0f);
    linear_forward(w->mf_l2, w->mf_x1, m->params + a2->w, m->params + a2->b, B, Z, Z, 0);
    stoch_probs_forward(&code, w->mf_x2, w->mf_l2, B, 1.0f);
    linear_forward(w->mf_out, w->mf_x2, m->params + a3->w, m->params + a3->b, B, Z, Do, 0);
    bce_logits_forward(w->mf_f, w->mf_out, w->xout, B, Do);
    /* Backward, undoing the lines above from the loss up to xbar1; the
     * parameter gradients of this pass do not count. */
    bce_logits_backward(w->mf_dout, w->mf_out, w->xout, B, Do, 1.0f);
    linear_backward_input(w->mf_g2, w->mf_dout, m->params + a3->w, B, Z, Do);
    stoch_probs_backward(&code, w->mf_dl2, w->mf_x2, w->mf_g2, B, 1.0f);
    linear_backward_input(w->mf_g1, w->mf_dl2, m->params + a2->w, B, Z, Z);
}

/* MuProp with rollout: the upper layer's Taylor point is each row's mean
 * q2 = mu_2(h1) given its own sampled h1.  The S-sample loss at the point,
 * Lbar = -log (1/S) sum_j exp(-f_j) with f_j = f(q2_j), and its gradient
 * w_j G_j (w = softmax_j(-f), G_j = df/dq2_j) per row. */
static void rollout_pass(sbn_ctx *c)
{
    const sbn_model *m = c->m;
    sbn_scratch *w = c->w->ws;
    int B = c->B, S = c->S, R = B * S, Z = sbn_zdim(&m->cfg), Do = m->cfg.D_out;
    const linear_layer *a3 = &m->lay[SBN_A3];
    linear_forward(w->rf_out, w->lay[1].probs, m->params + a3->w, m->params + a3->b, R, Z, Do, 0);
    for (int r = 0; r < R; r++) {
        const float *xout = w->xout + (size_t)(r / S) * Do;
        bce_logits_forward(&w->rf_f[r], w->rf_out + (size_t)r * Do, xout, 1, Do);
        bce_logits_backward(w->rf_dout + (size_t)r * Do, w->rf_out + (size_t)r * Do, xout, 1, Do,
                            1.0f);
    }
    /* Undoes A3 at the point, from the loss to q2. */
    linear_backward_input(w->rf_g, w->rf_dout, m->params + a3->w, R, Z, Do);
    for (int b = 0; b < B; b++) {
        double mx = -w->rf_f[b * S], sum = 0.0;
        for (int j = 1; j < S; j++)
            mx = fmax(mx, -w->rf_f[b * S + j]);
        for (int j = 0; j < S; j++)
            sum += w->rf_w[b * S + j] = exp(-w->rf_f[b * S + j] - mx);
        for (int j = 0; j < S; j++)
            w->rf_w[b * S + j] /= sum;
        /* Lbar of example b, kept in its first row's f. */
        w->rf_f[b * S] = -(mx + log(sum / S));
    }
}

/* ---- the learned baseline (sbn_learned) ---- */

size_t sbn_learned_floats(const sbn_config *c)
{
    return 2 * (3 * bnet_nparams(c->D_in, SBN_BASELINE_HIDDEN) + 1);
}

void sbn_learned_init(sbn_learned *lb, const sbn_config *c, float *state, float lr, rng_t *r)
{
    size_t n = bnet_nparams(c->D_in, SBN_BASELINE_HIDDEN);
    lb->H = SBN_BASELINE_HIDDEN;
    lb->lr = lr;
    lb->state = state;
    memset(state, 0, sbn_learned_floats(c) * sizeof(float));
    for (int i = 0; i < 2; i++)
        bnet_init(state + (size_t)i * (3 * n + 1), c->D_in, lb->H, r);
}

/* Subtracts C_i(x_in) from layer i's signal u (B examples) and, unless the
 * statistics are frozen, takes one Adam step of C_i towards the signal
 * less offset, the running mean the centring will subtract next
 * (bnet_fit). */
static void learned_baseline(sbn_ctx *c, int i, double *u, double offset)
{
    sbn_scratch *w = c->w->ws;
    const sbn_learned *lb = c->lb;
    int B = c->B, Di = c->m->cfg.D_in;
    size_t n = bnet_nparams(Di, lb->H);
    float *params = lb->state + (size_t)i * (3 * n + 1);
    bnet_forward(params, w->xin, B, Di, lb->H, &w->bl);
    for (int b = 0; b < B; b++)
        u[b] -= w->bl.out[b];
    if (c->bl->frozen)
        return;
    adam_state a;
    adam_persist_init(&a, params + n, n);
    bnet_fit(params, &a, params + 3 * n, lb->lr, w->xin, u, offset, B, Di, lb->H, &w->bl);
}

/* The learning signals of both layers into w->signal, centred. */
static void learning_signals(sbn_ctx *c)
{
    sbn_scratch *w = c->w->ws;
    int B = c->B, S = c->S, Z = sbn_zdim(&c->m->cfg);
    for (int i = 0; i < 2; i++) {
        for (int b = 0; b < B; b++) {
            double u = w->loss[b];
            if (c->e->mean_field && i == 1 && c->rollout) {
                /* Lbar + sum_j w_j G_j . (h2_j - q2_j): the expansion of
                 * the S-sample loss around the rows' own means. */
                double lin = 0.0;
                for (int j = 0; j < S; j++) {
                    size_t row = (size_t)(b * S + j) * Z;
                    const float *G = w->rf_g + row, *h = w->lay[1].h + row, *q = w->lay[1].probs + row;
                    double d = 0.0;
                    for (int k = 0; k < Z; k++)
                        d += (double)G[k] * (h[k] - q[k]);
                    lin += w->rf_w[b * S + j] * d;
                }
                u -= w->rf_f[b * S] + lin;
            } else if (c->e->mean_field) {
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
        if (c->lb && c->bl && c->bl->centre)
            learned_baseline(c, i, w->signal[i], stoch_nvil_offset(&c->bl->stat[i]));
        centre(c->bl, i, w->signal[i], B);
    }
}

/* ---- the per-layer backward of each estimator: L->dh (or the signal) to L->dl ---- */

/* Gumbel-Softmax and ST Gumbel-Softmax: undoes draw's
 * stoch_relaxed_sample. */
static void bw_relaxed(sbn_ctx *c, int i)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    sbn_layer *L = &c->w->ws->lay[i];
    stoch_probs_backward(&code, L->dl, L->soft, L->dh, c->B * c->S, c->tau);
}

static void bw_st(sbn_ctx *c, int i)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    sbn_layer *L = &c->w->ws->lay[i];
    stoch_probs_backward(&code, L->dl, L->probs, L->dh, c->B * c->S, 1.0f);
}

/* Slope-annealed ST (Chung et al. 2016): the backward of softmax(l / tau)
 * (sigmoid), slope 1/tau; the forward sample stays a sample of the layer. */
static void bw_annealed_st(sbn_ctx *c, int i)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    sbn_layer *L = &c->w->ws->lay[i];
    int R = c->B * c->S;
    stoch_probs_forward(&code, L->pt, L->logits, R, c->tau);
    stoch_probs_backward(&code, L->dl, L->pt, L->dh, R, c->tau);
}

/* DARN's 1/2 estimator (Gregor et al. 2014; Gu et al. 2016, Eq. 5-7), per
 * layer as estimator.c defines it (stoch_darn_backward).  At the lower
 * layer f'(h1) is the upper layer's estimate backpropagated through A2, as
 * MuProp's Sec. 4.2 describes for deep networks. */
static void bw_darn(sbn_ctx *c, int i)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    sbn_layer *L = &c->w->ws->lay[i];
    stoch_darn_backward(&code, L->dl, L->h, L->probs, L->dh, c->B * c->S, STOCH_DARN_CENTRE);
}

static void bw_sf(sbn_ctx *c, int i)
{
    sbn_layer *L = &c->w->ws->lay[i];
    memset(L->dl, 0, (size_t)c->B * c->S * sbn_zdim(&c->m->cfg) * sizeof(float));
    add_score(c, L, c->w->ws->signal[i]);
}

/* MuProp (Gu et al. 2016, Eq. 3 and Algorithm 1): the score term of the
 * residual signal plus the control variate's analytic mean, G . dE[h]/dl =
 * J_p^T G / S per row, with p the layer's mean given the sampled layer
 * below (so the upper layer's correction uses mu_2(h1), as the algorithm's
 * stochastic pass does).  The analytic term takes the signal's variance
 * normalisation too: scaling the residual alone would change the
 * estimator's mean, not only its size; c->norm_signal does that, as a
 * variant to measure (the paper does not say how it normalised). */
static void bw_muprop(sbn_ctx *c, int i)
{
    stoch_layer code = sbn_code(&c->m->cfg);
    sbn_scratch *w = c->w->ws;
    sbn_layer *L = &w->lay[i];
    int S = c->S, R = c->B * S, Z = sbn_zdim(&c->m->cfg);
    const float *G = i ? w->mf_g2 : w->mf_g1;
    double norm = c->bl && c->bl->centre && !c->norm_signal ? c->bl->scale[i] : 1.0;
    float scale = (float)(norm / ((double)S * c->B));
    /* dh is free here (no pathwise gradient flows in this estimator). */
    if (i == 1 && c->rollout) {
        /* d Lbar / dq2 of each row: w_r G_r (rollout_pass). */
        for (int r = 0; r < R; r++)
            for (int k = 0; k < Z; k++)
                L->dh[(size_t)r * Z + k] =
                    (float)(w->rf_w[r] * w->rf_g[(size_t)r * Z + k] * norm / c->B);
    } else {
        for (int r = 0; r < R; r++)
            for (int k = 0; k < Z; k++)
                L->dh[(size_t)r * Z + k] = G[(size_t)(r / S) * Z + k] * scale;
    }
    stoch_probs_backward(&code, L->dl, L->probs, L->dh, R, 1.0f);
    add_score(c, L, w->signal[i]);
}

/* In the list's order; layer_backward NULL ends it. */
static const sbn_estimator table[] = {
    {STOCH_GUMBEL, SBN_SAMPLE_RELAXED, bw_relaxed, 1, 0, 0},
    {STOCH_ST_GUMBEL, SBN_SAMPLE_ST_RELAXED, bw_relaxed, 1, 0, 0},
    {STOCH_SF, SBN_SAMPLE_HARD, bw_sf, 0, 1, 0},
    {STOCH_DARN, SBN_SAMPLE_HARD, bw_darn, 1, 0, 0},
    {STOCH_MUPROP, SBN_SAMPLE_HARD, bw_muprop, 0, 1, 1},
    {STOCH_ST, SBN_SAMPLE_HARD, bw_st, 1, 0, 0},
    {STOCH_ANNEALED_ST, SBN_SAMPLE_HARD, bw_annealed_st, 1, 0, 0},
    {STOCH_NESTIMATORS, SBN_SAMPLE_HARD, NULL, 0, 0, 0},
};

const sbn_estimator *sbn_estimator_list(void)
{
    return table;
}

const sbn_estimator *sbn_estimator_get(stoch_estimator id)
{
    for (const sbn_estimator *e = table; e->layer_backward; e++)
        if (e->id == id)
            return e;
    return NULL;
}

const sbn_estimator *sbn_estimator_find(const char *name)
{
    stoch_estimator id;
    return stoch_estimator_parse(name, &id) == 0 ? sbn_estimator_get(id) : NULL;
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

/* The forward pass of a training batch: x_in and x_out into the scratch,
 * A1 once per example, then both stochastic layers and the pixel logits
 * of every (example, sample) row, and ell = -log p(x_out | h2) per row. */
static void batch_forward(sbn_ctx *c)
{
    const sbn_model *m = c->m;
    sbn_scratch *w = c->w->ws;
    const sbn_config *cfg = &m->cfg;
    stoch_layer code = sbn_code(cfg);
    int B = c->B, S = c->S, R = B * S, Z = sbn_zdim(cfg), Di = cfg->D_in, Do = cfg->D_out;
    const linear_layer *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    sbn_layer *L1 = &w->lay[0], *L2 = &w->lay[1];
    split_rows(cfg, c->x, 0, B, w->xin, w->xout);
    linear_forward(w->l1, w->xin, m->params + a1->w, m->params + a1->b, B, Di, Z, 0);
    for (int r = 0; r < R; r++)
        memcpy(L1->logits + (size_t)r * Z, w->l1 + (size_t)(r / S) * Z, (size_t)Z * sizeof(float));
    stoch_probs_forward(&code, L1->probs, L1->logits, R, 1.0f);
    draw(c, L1, R);
    linear_forward(L2->logits, L1->h, m->params + a2->w, m->params + a2->b, R, Z, Z, 0);
    stoch_probs_forward(&code, L2->probs, L2->logits, R, 1.0f);
    draw(c, L2, R);
    linear_forward(w->out, L2->h, m->params + a3->w, m->params + a3->b, R, Z, Do, 0);
    for (int r = 0; r < R; r++)
        bce_logits_forward(&w->ell[r], w->out + (size_t)r * Do, w->xout + (size_t)(r / S) * Do, 1,
                           Do);
}

/* The S-sample loss of each example, L = -logsumexp_j(-ell_j) + log S,
 * into w->loss, and dL/dell_j = softmax_j(-ell) into w->weight; returns
 * the sum of L over the batch. */
static double sample_loss(sbn_ctx *c)
{
    sbn_scratch *w = c->w->ws;
    int B = c->B, S = c->S;
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
    return total;
}

/* The backward pass of batch_forward, its lines undone from the last: the
 * output map is differentiable for every estimator; each stochastic layer
 * is the estimator's. */
static void batch_backward(sbn_ctx *c)
{
    sbn_model *m = c->m;
    sbn_scratch *w = c->w->ws;
    const sbn_estimator *e = c->e;
    int B = c->B, S = c->S, R = B * S, Z = sbn_zdim(&m->cfg), Di = m->cfg.D_in;
    int Do = m->cfg.D_out;
    const linear_layer *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    sbn_layer *L1 = &w->lay[0], *L2 = &w->lay[1];
    /* Undoes the bce_logits_forward of each row, weighted by dL/dell. */
    for (int r = 0; r < R; r++)
        bce_logits_backward(w->dout + (size_t)r * Do, w->out + (size_t)r * Do,
                            w->xout + (size_t)(r / S) * Do, 1, Do, (float)(w->weight[r] / B));
    /* Undoes A3. */
    linear_backward(L2->dh, m->grads + a3->w, m->grads + a3->b, w->dout, w->out, L2->h,
                    m->params + a3->w, R, Z, Do, 0);
    if (e->mean_field)
        mean_field_pass(c);
    if (e->mean_field && c->rollout)
        rollout_pass(c);
    if (e->uses_baseline)
        learning_signals(c);
    /* Undoes the second draw, then A2, then the first draw. */
    e->layer_backward(c, 1);
    linear_backward(e->pathwise ? L1->dh : NULL, m->grads + a2->w, m->grads + a2->b, L2->dl,
                    L2->logits, L1->h, m->params + a2->w, R, Z, Z, 0);
    e->layer_backward(c, 0);
    /* Undoes the replication of A1's output over the samples, then A1. */
    memset(w->dl1, 0, (size_t)B * Z * sizeof(float));
    for (int r = 0; r < R; r++)
        for (int k = 0; k < Z; k++)
            w->dl1[(size_t)(r / S) * Z + k] += L1->dl[(size_t)r * Z + k];
    linear_backward(NULL, m->grads + a1->w, m->grads + a1->b, w->dl1, w->l1, w->xin,
                    m->params + a1->w, B, Di, Z, 0);
}

double sbn_gradient(sbn_ctx *c)
{
    assert(c->B <= c->w->max_batch && c->S <= c->w->max_samples);
    memset(c->m->grads, 0, c->m->nparams * sizeof(float));
    batch_forward(c);
    double total = sample_loss(c);
    if (!isfinite(total))
        return NAN;
    batch_backward(c);
    return total / c->B;
}

/* ---- evaluation ---- */

/* The hard forward pass of w->example's rows: x_in and x_out of examples
 * first .. first+E-1 are copied in, every row draws h1 and h2 from the
 * model and gets its pixel logits in w->out. */
static void eval_forward(const sbn_model *m, sbn_eval_scratch *w, const float *x, int first,
                         int E, int rows, rng_t *r)
{
    const sbn_config *cfg = &m->cfg;
    stoch_layer code = sbn_code(cfg);
    int Z = sbn_zdim(cfg);
    const linear_layer *a1 = &m->lay[SBN_A1], *a2 = &m->lay[SBN_A2], *a3 = &m->lay[SBN_A3];
    split_rows(cfg, x, first, E, w->xin, w->xout);
    linear_forward(w->l1, w->xin, m->params + a1->w, m->params + a1->b, E, cfg->D_in, Z, 0);
    stoch_probs_forward(&code, w->q1, w->l1, E, 1.0f);
    for (int row = 0; row < rows; row++)
        stoch_sample_probs(&code, w->h1 + (size_t)row * Z, w->q1 + (size_t)w->example[row] * Z, 1,
                           r);
    linear_forward(w->l2, w->h1, m->params + a2->w, m->params + a2->b, rows, Z, Z, 0);
    stoch_probs_forward(&code, w->q2, w->l2, rows, 1.0f);
    stoch_sample_probs(&code, w->h2, w->q2, rows, r);
    linear_forward(w->out, w->h2, m->params + a3->w, m->params + a3->b, rows, Z, cfg->D_out, 0);
}

double sbn_eval_nll(const sbn_model *m, sbn_eval_ws *ew, const float *x, int n, int M,
                    rng_t *r, double *per_example)
{
    sbn_eval_scratch *w = ew->ws;
    int Do = m->cfg.D_out;
    int e = 0, j = 0, done = 0, count = 0;
    double total = 0.0, mx = -INFINITY, sum = 0.0, logM = log((double)M);
    while (e < n) {
        /* Rows of (example, sample) pairs, example-major, that fit. */
        int rows = 0, first = e;
        while (rows < ew->rows && e < n) {
            int take = M - j < ew->rows - rows ? M - j : ew->rows - rows;
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
            lse_push(&mx, &sum, -ell);
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

void sbn_predict(const sbn_model *m, sbn_eval_ws *ew, const float *x, int n, int S, rng_t *r,
                 float *means)
{
    sbn_eval_scratch *w = ew->ws;
    int Do = m->cfg.D_out;
    int per_chunk = ew->rows / S;
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
