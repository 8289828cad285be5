/* semisup_model.c: the M2 model of semisup.h: parameters, forward and
 * backward of the exact and Gumbel-Softmax objectives, evaluation. */
#include "semisup.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "gumbel.h"
#include "layers.h"
#include "parallel.h"
#include "stochastic.h"
#include "util.h"

/* The workspace's scratch, at the head of its block: E examples (B_l +
 * B_u), R encoder/decoder rows, W the widest layer, F the encoder's
 * features of an image (MLP: the D pixels). */
struct ss_scratch {
    float *cls_act[SS_MAX_HIDDEN + 1];   /* [E][cls[i].out]; the last holds the logits */
    float *yrel;                         /* [B_u][K] relaxed samples y~ (gumbel) */
    float *xy;                           /* [R][F+K] encoder input (MLP: [x, y]) */
    float *enc_act[SS_MAX_HIDDEN + 1];   /* [R][enc[i].out]; the last is [R][2Z] */
    float *zy;                           /* [R][Z+K] decoder input */
    float *dec_act[SS_MAX_HIDDEN + 1];   /* [R][dec[i].out]; the last holds the pixel logits */
    double *rec, *klz;                   /* [R] per row losses (nats) */
    double *klq;                         /* [E] KL(q(y|x) || uniform) */
    float *coef;                         /* [R] weight of each row's loss */
    float *grad_a, *grad_b;              /* [max(R, E)][W] backward scratch */
    float *dzy;                          /* [R][Z+K] */
    float *dy;                           /* [B_u][K] gradient at y~ */
    float *dlogits;                      /* [E][K] */
    /* conv only */
    float *dxy;                          /* [R][F+K] gradient at the encoder head's input */
    float *dfeat;                        /* [E][F] gradient at the trunk's features */
    net_ws cls_ws, trunk_ws;             /* batches of E */
    net_ws head_ws, dec_ws;              /* batches of R */
};

/* The convolutional networks of results/semisup/networks.md. */
static const net_layer_spec conv_trunk_spec[2] = {
    {.kind = NET_CONV, .out = 32, .ks = 3, .stride = 2, .relu = 1},
    {.kind = NET_CONV, .out = 64, .ks = 3, .stride = 2, .relu = 1},
};
static const net_layer_spec conv_dec_spec[4] = {
    {.kind = NET_LINEAR, .out = 32, .out_h = 7, .out_w = 7, .relu = 1},
    {.kind = NET_CONVT, .out = 64, .ks = 3, .stride = 2, .pad = 1, .out_pad = 1, .relu = 1},
    {.kind = NET_CONVT, .out = 32, .ks = 3, .stride = 2, .pad = 1, .out_pad = 1, .relu = 1},
    {.kind = NET_CONVT, .out = 1, .ks = 3, .stride = 1, .pad = 1},
};
#define SS_CONV_SIDE 28

/* The class variable of B_u rows as stochastic.h sees it. */
static stoch_layer class_layer(const ss_config *c)
{
    return (stoch_layer){LATENT_CATEGORICAL, 1, c->K};
}

/* The hidden layers' activation as layers.h names it. */
static mlp_act hidden_act(const ss_model *m)
{
    return m->cfg.act == SS_ACT_RELU ? MLP_RELU : MLP_SOFTPLUS;
}

int ss_activation_parse(const char *s, ss_activation *out)
{
    if (!strcmp(s, "softplus"))
        *out = SS_ACT_SOFTPLUS;
    else if (!strcmp(s, "relu"))
        *out = SS_ACT_RELU;
    else
        return -1;
    return 0;
}

int ss_net_parse(const char *s, ss_net *out)
{
    if (!strcmp(s, "mlp"))
        *out = SS_NET_MLP;
    else if (!strcmp(s, "conv"))
        *out = SS_NET_CONV;
    else
        return -1;
    return 0;
}

int ss_estimator_parse(const char *s, stoch_estimator *out)
{
    stoch_estimator e;
    if (stoch_estimator_parse(s, &e) != 0 || !(SS_ESTIMATORS & (1u << e)))
        return -1;
    *out = e;
    return 0;
}

const char *ss_estimator_name(stoch_estimator e)
{
    return stoch_estimator_name(e);
}

long ss_rows(const ss_config *c, int B_l, int B_u, stoch_estimator est)
{
    return (long)B_l + (long)B_u * (est == STOCH_EXACT ? c->K : 1);
}

/* The four networks of the conv model, shaped, placed one after another
 * in one allocation, Glorot-initialised in order. */
static int conv_init(ss_model *m, rng_t *r, char *err)
{
    const ss_config *c = &m->cfg;
    if (c->D != SS_CONV_SIDE * SS_CONV_SIDE || c->K < 2 || c->Z < 1)
        return errf(err, "semisup conv model: bad shape (D %d, K %d, Z %d): needs 28 x 28 images",
                    c->D, c->K, c->Z);
    net_layer_spec cls[3] = {conv_trunk_spec[0], conv_trunk_spec[1], {.kind = NET_LINEAR, .out = c->K}};
    const net_layer_spec head = {.kind = NET_LINEAR, .out = 2 * c->Z};
    net_t *nets[4] = {&m->cls_net, &m->enc_trunk, &m->enc_head, &m->dec_net};
    if (net_init(&m->cls_net, 1, SS_CONV_SIDE, SS_CONV_SIDE, cls, 3, err) != 0 ||
        net_init(&m->enc_trunk, 1, SS_CONV_SIDE, SS_CONV_SIDE, conv_trunk_spec, 2, err) != 0)
        return -1;
    m->F = (int)m->enc_trunk.out_size;
    if (net_init(&m->enc_head, m->F + c->K, 1, 1, &head, 1, err) != 0 ||
        net_init(&m->dec_net, c->Z + c->K, 1, 1, conv_dec_spec, 4, err) != 0)
        return -1;
    size_t off[4], total = 0;
    for (int i = 0; i < 4; i++) {
        off[i] = total;
        total += nets[i]->nparams;
    }
    m->nparams = total;
    if (params_alloc(&m->params, &m->grads, total, err, "semisup parameters") != 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        net_bind(nets[i], m->params + off[i], m->grads + off[i]);
        net_init_glorot(nets[i], r);
    }
    return 0;
}

int ss_init(ss_model *m, const ss_config *c, double init_std, rng_t *r, char *err)
{
    memset(m, 0, sizeof *m);
    if (c->net == SS_NET_CONV) {
        m->cfg = *c;
        return conv_init(m, r, err);
    }
    if (c->nhidden < 1 || c->nhidden > SS_MAX_HIDDEN || c->D < 1 || c->K < 2 || c->Z < 1)
        return errf(err, "semisup model: bad shape (D %d, K %d, Z %d, %d hidden layers)", c->D,
                    c->K, c->Z, c->nhidden);
    m->cfg = *c;
    m->F = c->D;
    int nh = c->nhidden;
    m->nlayers = nh + 1;
    size_t off = 0;
    int in = c->D;
    for (int i = 0; i < nh; i++) {
        off = linear_place(&m->cls[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = linear_place(&m->cls[nh], in, c->K, off);
    in = c->D + c->K;
    for (int i = 0; i < nh; i++) {
        off = linear_place(&m->enc[i], in, c->hidden[i], off);
        in = c->hidden[i];
    }
    off = linear_place(&m->enc[nh], in, 2 * c->Z, off);
    in = c->Z + c->K;
    for (int i = 0; i < nh; i++) {
        off = linear_place(&m->dec[i], in, c->hidden[nh - 1 - i], off);
        in = c->hidden[nh - 1 - i];
    }
    off = linear_place(&m->dec[nh], in, c->D, off);
    m->nparams = off;
    if (params_alloc(&m->params, &m->grads, off, err, "semisup parameters") != 0)
        return -1;
    /* Weights only; the biases stay at zero. */
    const linear_layer *nets[3] = {m->cls, m->enc, m->dec};
    for (int n = 0; n < 3; n++)
        for (int i = 0; i < m->nlayers; i++) {
            const linear_layer *l = &nets[n][i];
            for (size_t j = 0; j < (size_t)l->in * l->out; j++)
                m->params[l->w + j] = (float)(init_std * rng_normal(r));
        }
    return 0;
}

void ss_free(ss_model *m)
{
    params_free(&m->params, &m->grads);
}

static int widest_layer(const ss_model *m)
{
    const ss_config *c = &m->cfg;
    int w = c->D;
    if (c->Z + c->K > w)
        w = c->Z + c->K;
    if (2 * c->Z > w)
        w = 2 * c->Z;
    if (c->K > w)
        w = c->K;
    for (int i = 0; i < c->nhidden; i++)
        if (c->hidden[i] > w)
            w = c->hidden[i];
    return w;
}

int ss_ws_init(ss_ws *w, const ss_model *m, int max_examples, long max_rows, char *err)
{
    memset(w, 0, sizeof *w);
    if (max_examples <= 0 || max_rows <= 0)
        return errf(err, "semisup workspace: %d examples, %ld rows: both must be positive",
                    max_examples, max_rows);
    const ss_config *c = &m->cfg;
    if (max_rows > INT_MAX)
        return errf(err, "semisup workspace: %ld rows, more than %d", max_rows, INT_MAX);
    size_t E = (size_t)max_examples, R = (size_t)max_rows, K = (size_t)c->K, F = (size_t)m->F;
    size_t scratch_rows = (R > E ? R : E) * (size_t)widest_layer(m);
    int conv = c->net == SS_NET_CONV;
    w->max_examples = max_examples;
    w->max_rows = max_rows;
    ss_scratch t = {0};
    enum { FIXED = 18 };
    ws_buf bufs[FIXED + 3 * (SS_MAX_HIDDEN + 1)] = {
        WS_BUF(w->logq, E * K),   WS_BUF(w->eps, R * c->Z), WS_BUF(w->gnoise, E * K),
        WS_BUF(w->ex_loss, E),    WS_BUF(t.yrel, E * K),    WS_BUF(t.xy, R * (F + K)),
        WS_BUF(t.zy, R * (c->Z + K)), WS_BUF(t.rec, R),     WS_BUF(t.klz, R),
        WS_BUF(t.klq, E),         WS_BUF(t.coef, R),        WS_BUF(t.grad_a, scratch_rows),
        WS_BUF(t.grad_b, scratch_rows), WS_BUF(t.dzy, R * (c->Z + K)),
        WS_BUF(t.dy, E * K),      WS_BUF(t.dlogits, E * K),
        WS_BUF(t.dxy, conv ? R * (F + K) : 0), WS_BUF(t.dfeat, conv ? E * F : 0),
    };
    /* Layers past nlayers get no buffer: their pointers stay NULL. */
    for (int i = 0; i <= SS_MAX_HIDDEN; i++) {
        int used = i < m->nlayers;
        bufs[FIXED + 3 * i] = (ws_buf)WS_BUF(t.cls_act[i], used ? E * m->cls[i].out : 0);
        bufs[FIXED + 3 * i + 1] = (ws_buf)WS_BUF(t.enc_act[i], used ? R * m->enc[i].out : 0);
        bufs[FIXED + 3 * i + 2] = (ws_buf)WS_BUF(t.dec_act[i], used ? R * m->dec[i].out : 0);
    }
    w->ws = ws_alloc(bufs, WS_COUNT(bufs), &t, sizeof t, err, "semisup workspace");
    if (!w->ws)
        return -1;
    ss_scratch *sc = w->ws;
    if (conv && (net_ws_init(&sc->cls_ws, &m->cls_net, max_examples, err) != 0 ||
                 net_ws_init(&sc->trunk_ws, &m->enc_trunk, max_examples, err) != 0 ||
                 net_ws_init(&sc->head_ws, &m->enc_head, (int)max_rows, err) != 0 ||
                 net_ws_init(&sc->dec_ws, &m->dec_net, (int)max_rows, err) != 0)) {
        ss_ws_free(w);
        return -1;
    }
    return 0;
}

void ss_ws_free(ss_ws *w)
{
    if (w->ws) {
        net_ws_free(&w->ws->cls_ws);
        net_ws_free(&w->ws->trunk_ws);
        net_ws_free(&w->ws->head_ws);
        net_ws_free(&w->ws->dec_ws);
    }
    free(w->ws);
    memset(w, 0, sizeof *w);
}

/* ---- the three networks, MLP or conv ---- */

/* Logits [E][K] of q(y|x). */
static const float *classifier_forward(const ss_model *m, ss_scratch *sc, const float *x, int E)
{
    if (m->cfg.net == SS_NET_CONV)
        return net_forward(&m->cls_net, &sc->cls_ws, x, E);
    mlp_forward(m->cls, m->nlayers, hidden_act(m), m->params, sc->cls_act, x, E);
    return sc->cls_act[m->nlayers - 1];
}

/* Undoes classifier_forward; dlogits [E][K] (overwritten). */
static void classifier_backward(ss_model *m, ss_scratch *sc, const float *x, float *dlogits,
                                int E)
{
    if (m->cfg.net == SS_NET_CONV)
        net_backward(&m->cls_net, &sc->cls_ws, NULL, x, dlogits, E);
    else
        mlp_backward(m->cls, m->nlayers, hidden_act(m), m->params, m->grads, sc->cls_act, x,
                     dlogits, NULL, sc->grad_a, sc->grad_b, E);
}

/* The encoder's features of each image before y joins, [E][F]: the
 * pixels themselves (MLP) or the convolutional trunk's output. */
static const float *encoder_features(const ss_model *m, ss_scratch *sc, const float *x, int E)
{
    if (m->cfg.net == SS_NET_CONV)
        return net_forward(&m->enc_trunk, &sc->trunk_ws, x, E);
    return x;
}

/* [R][2Z] mean and log-variance from the rows of sc->xy. */
static const float *encoder_forward(const ss_model *m, ss_scratch *sc, long R)
{
    if (m->cfg.net == SS_NET_CONV)
        return net_forward(&m->enc_head, &sc->head_ws, sc->xy, (int)R);
    mlp_forward(m->enc, m->nlayers, hidden_act(m), m->params, sc->enc_act, sc->xy, (int)R);
    return sc->enc_act[m->nlayers - 1];
}

static const float *encoder_output(const ss_model *m, const ss_scratch *sc)
{
    return m->cfg.net == SS_NET_CONV ? sc->head_ws.act[0] : sc->enc_act[m->nlayers - 1];
}

/* [R][D] pixel logits from the rows of sc->zy. */
static const float *decoder_forward(const ss_model *m, ss_scratch *sc, long R)
{
    if (m->cfg.net == SS_NET_CONV)
        return net_forward(&m->dec_net, &sc->dec_ws, sc->zy, (int)R);
    mlp_forward(m->dec, m->nlayers, hidden_act(m), m->params, sc->dec_act, sc->zy, (int)R);
    return sc->dec_act[m->nlayers - 1];
}

static const float *decoder_output(const ss_model *m, const ss_scratch *sc)
{
    return m->cfg.net == SS_NET_CONV ? sc->dec_ws.act[m->dec_net.nlayers - 1]
                                     : sc->dec_act[m->nlayers - 1];
}

/* Undoes decoder_forward: dout [R][D] (overwritten) to sc->dzy [R][Z+K]. */
static void decoder_backward(ss_model *m, ss_scratch *sc, float *dout, long R)
{
    if (m->cfg.net == SS_NET_CONV)
        net_backward(&m->dec_net, &sc->dec_ws, sc->dzy, sc->zy, dout, (int)R);
    else
        mlp_backward(m->dec, m->nlayers, hidden_act(m), m->params, m->grads, sc->dec_act, sc->zy,
                     dout, sc->dzy, sc->grad_a, sc->grad_b, (int)R);
}

/* The image whose features and pixels row r holds. */
static long row_image(long r, int B_l, stoch_estimator est, int K)
{
    return r < B_l || est != STOCH_EXACT ? r : B_l + (r - B_l) / K;
}

/* Undoes encoder_forward (and encoder_features) from dmulv [R][2Z]
 * (overwritten); writes sc->dy [B_u][K], the gradient at the y of the
 * unlabelled rows, when est is not exact. */
static void encoder_backward(ss_model *m, ss_scratch *sc, const float *x, float *dmulv, int B_l,
                             int B_u, stoch_estimator est)
{
    const ss_config *c = &m->cfg;
    const int K = c->K, F = m->F, ldxy = F + K;
    const long R = ss_rows(c, B_l, B_u, est);
    if (c->net == SS_NET_CONV) {
        net_backward(&m->enc_head, &sc->head_ws, sc->dxy, sc->xy, dmulv, (int)R);
        if (est != STOCH_EXACT)
            for (int b = 0; b < B_u; b++)
                memcpy(sc->dy + (size_t)b * K, sc->dxy + (size_t)(B_l + b) * ldxy + F,
                       sizeof(float) * K);
        /* Each image's feature gradient sums over its rows. */
        memset(sc->dfeat, 0, sizeof(float) * (size_t)(B_l + B_u) * F);
        for (long r = 0; r < R; r++)
            cblas_saxpy(F, 1.0f, sc->dxy + (size_t)r * ldxy, 1,
                        sc->dfeat + (size_t)row_image(r, B_l, est, K) * F, 1);
        net_backward(&m->enc_trunk, &sc->trunk_ws, NULL, x, sc->dfeat, B_l + B_u);
        return;
    }
    /* The encoder's input gradient is wanted only at the relaxed y of the
     * gumbel rows: computed below from the first layer's gradient, not
     * over all D + K inputs of every row. */
    const float *d0 = mlp_backward(m->enc, m->nlayers, hidden_act(m), m->params, m->grads,
                                   sc->enc_act, sc->xy, dmulv, NULL, sc->grad_a, sc->grad_b,
                                   (int)R);
    if (est != STOCH_EXACT && B_u > 0) {
        /* dL/dy~ from the encoder: its first layer's gradient times W0[:, D:]. */
        const linear_layer *l0 = &m->enc[0];
        par_sgemm(0, 0, B_u, K, l0->out, 1.0f,
                    d0 + (size_t)B_l * l0->out, l0->out, m->params + l0->w + F, ldxy, 0.0f,
                    sc->dy, K);
    }
}

/* ---- the objective ---- */

static void set_row(float *row, const float *x, int D, const float *y, int onehot, int K)
{
    memcpy(row, x, sizeof(float) * D);
    if (y)
        memcpy(row + D, y, sizeof(float) * K);
    else {
        memset(row + D, 0, sizeof(float) * K);
        row[D + onehot] = 1.0f;
    }
}

double ss_forward(const ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l,
                  int B_u, stoch_estimator est, float tau, const ss_weights *wt, ss_parts *parts)
{
    const ss_config *c = &m->cfg;
    const stoch_layer cl = class_layer(c);
    ss_scratch *sc = w->ws;
    const int D = c->D, K = c->K, Z = c->Z, F = m->F, E = B_l + B_u, ldxy = F + K, ldzy = Z + K;
    const long R = ss_rows(c, B_l, B_u, est);
    const double logK = log((double)K);
    assert(E <= w->max_examples && R <= w->max_rows);

    const float *logits = classifier_forward(m, sc, x, E);
    log_softmax_forward(w->logq, logits, E, K);
    kl_categorical_forward(sc->klq, w->logq, E, 1, K);

    /* Encoder rows [features of the image, y]. */
    const float *feat = encoder_features(m, sc, x, E);
    for (int b = 0; b < B_l; b++)
        set_row(sc->xy + (size_t)b * ldxy, feat + (size_t)b * F, F, NULL, y[b], K);
    if (est == STOCH_EXACT) {
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                set_row(sc->xy + (size_t)(B_l + (long)b * K + j) * ldxy,
                        feat + (size_t)(B_l + b) * F, F, NULL, j, K);
    } else if (B_u > 0) {
        /* st-gumbel feeds the one-hot argmax of y~ (a sample of q(y|x), by
         * the Gumbel-Max trick) forward; y~ stays for the backward pass. */
        stoch_relaxed_forward(&cl, sc->yrel, logits + (size_t)B_l * K, w->gnoise, B_u, tau);
        for (int b = 0; b < B_u; b++) {
            const float *yb = sc->yrel + (size_t)b * K;
            int j = 0;
            if (est == STOCH_ST_GUMBEL)
                argmax_rows(&j, yb, 1, K);
            set_row(sc->xy + (size_t)(B_l + b) * ldxy, feat + (size_t)(B_l + b) * F, F,
                    est == STOCH_GUMBEL ? yb : NULL, j, K);
        }
    }

    /* z = mu + exp(lv / 2) eps, and the analytic KL to N(0, I). */
    const float *mulv = encoder_forward(m, sc, R);
    for (long r = 0; r < R; r++) {
        const float *mu = mulv + (size_t)r * 2 * Z, *lv = mu + Z, *e = w->eps + (size_t)r * Z;
        float *zr = sc->zy + (size_t)r * ldzy;
        double kl = 0.0;
        for (int i = 0; i < Z; i++) {
            float ev = expf(lv[i]);
            zr[i] = mu[i] + sqrtf(ev) * e[i];
            kl += 0.5 * ((double)mu[i] * mu[i] + ev - 1.0 - lv[i]);
        }
        memcpy(zr + Z, sc->xy + (size_t)r * ldxy + F, sizeof(float) * K);
        sc->klz[r] = kl;
    }
    const float *xl = decoder_forward(m, sc, R);
    for (long r = 0; r < R; r++)
        bce_logits_forward(&sc->rec[r], xl + (size_t)r * D,
                           x + (size_t)row_image(r, B_l, est, K) * D, 1, D);
    w->enc_rows = w->dec_rows = R;

    double lab = 0.0, nll = 0.0, unl = 0.0;
    for (int b = 0; b < B_l; b++) {
        w->ex_loss[b] = sc->rec[b] + sc->klz[b] + logK;
        lab += w->ex_loss[b];
        nll -= w->logq[(size_t)b * K + y[b]];
    }
    for (int b = 0; b < B_u; b++) {
        double u;
        if (est == STOCH_EXACT) {
            const float *lq = w->logq + (size_t)(B_l + b) * K;
            long r0 = B_l + (long)b * K;
            u = 0.0;
            for (int j = 0; j < K; j++)
                u += exp((double)lq[j]) * (sc->rec[r0 + j] + sc->klz[r0 + j]);
        } else {
            u = sc->rec[B_l + b] + sc->klz[B_l + b];
        }
        u += sc->klq[B_l + b];
        w->ex_loss[B_l + b] = u;
        unl += u;
    }
    ss_parts p = {0.0, B_l ? lab / B_l : 0.0, B_l ? nll / B_l : 0.0, B_u ? unl / B_u : 0.0};
    p.loss = wt->labelled * p.lab_neg_elbo + wt->alpha * p.class_nll + wt->unlabelled * p.unl_loss;
    if (parts)
        *parts = p;
    return p.loss;
}

void ss_backward(ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l, int B_u,
                 stoch_estimator est, float tau, const ss_weights *wt)
{
    const ss_config *c = &m->cfg;
    const stoch_layer cl = class_layer(c);
    ss_scratch *sc = w->ws;
    const int D = c->D, K = c->K, Z = c->Z, E = B_l + B_u, ldzy = Z + K;
    const long R = ss_rows(c, B_l, B_u, est);
    const float s_l = B_l ? (float)(wt->labelled / B_l) : 0.0f;
    const float s_u = B_u ? (float)(wt->unlabelled / B_u) : 0.0f;
    const float s_a = B_l ? (float)(wt->alpha / B_l) : 0.0f;

    /* Each row's (recon + KL_z) enters the loss with weight coef[r]. */
    for (int b = 0; b < B_l; b++)
        sc->coef[b] = s_l;
    if (est == STOCH_EXACT)
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                sc->coef[B_l + (long)b * K + j] = s_u * expf(w->logq[(size_t)(B_l + b) * K + j]);
    else
        for (int b = 0; b < B_u; b++)
            sc->coef[B_l + b] = s_u;

    /* Decoder, from the pixel logits to [z, y]. */
    const float *xl = decoder_output(m, sc);
    for (long r = 0; r < R; r++)
        bce_logits_backward(sc->grad_a + (size_t)r * D, xl + (size_t)r * D,
                            x + (size_t)row_image(r, B_l, est, K) * D, 1, D, sc->coef[r]);
    decoder_backward(m, sc, sc->grad_a, R);

    /* Through z = mu + exp(lv/2) eps and KL_z to the encoder's outputs. */
    const float *mulv = encoder_output(m, sc);
    for (long r = 0; r < R; r++) {
        const float *mu = mulv + (size_t)r * 2 * Z, *lv = mu + Z, *e = w->eps + (size_t)r * Z;
        const float *dz = sc->dzy + (size_t)r * ldzy;
        float *g = sc->grad_a + (size_t)r * 2 * Z, cf = sc->coef[r];
        for (int i = 0; i < Z; i++) {
            float ev = expf(lv[i]);
            g[i] = dz[i] + cf * mu[i];
            g[Z + i] = 0.5f * (dz[i] * e[i] * sqrtf(ev) + cf * (ev - 1.0f));
        }
    }
    encoder_backward(m, sc, x, sc->grad_a, B_l, B_u, est);

    /* Classifier logits. */
    for (int b = 0; b < B_l; b++) {
        const float *lq = w->logq + (size_t)b * K;
        float *d = sc->dlogits + (size_t)b * K;
        for (int j = 0; j < K; j++)
            d[j] = s_a * (expf(lq[j]) - (j == y[b] ? 1.0f : 0.0f));
    }
    if (B_u > 0 && est == STOCH_EXACT) {
        /* d/dl_j sum_i q_i L_i = q_j (L_j - sum_i q_i L_i) */
        for (int b = 0; b < B_u; b++) {
            const float *lq = w->logq + (size_t)(B_l + b) * K;
            float *d = sc->dlogits + (size_t)(B_l + b) * K;
            long r0 = B_l + (long)b * K;
            double mean = 0.0;
            for (int j = 0; j < K; j++)
                mean += exp((double)lq[j]) * (sc->rec[r0 + j] + sc->klz[r0 + j]);
            for (int j = 0; j < K; j++)
                d[j] = s_u * expf(lq[j]) * (float)(sc->rec[r0 + j] + sc->klz[r0 + j] - mean);
        }
    } else if (B_u > 0) {
        /* dL/dy~ = the encoder's (encoder_backward wrote it) + the decoder's. */
        for (int b = 0; b < B_u; b++)
            for (int j = 0; j < K; j++)
                sc->dy[(size_t)b * K + j] += sc->dzy[(size_t)(B_l + b) * ldzy + Z + j];
        /* Undoes ss_forward's stoch_relaxed_forward. */
        stoch_probs_backward(&cl, sc->dlogits + (size_t)B_l * K, sc->yrel, sc->dy, B_u, tau);
    }
    if (B_u > 0)
        kl_categorical_backward(sc->dlogits + (size_t)B_l * K, w->logq + (size_t)B_l * K, B_u, 1,
                                K, s_u);
    classifier_backward(m, sc, x, sc->dlogits, E);
}

void ss_draw_noise(const ss_model *m, ss_ws *w, int B_l, int B_u, stoch_estimator est, rng_t *r)
{
    size_t n = (size_t)ss_rows(&m->cfg, B_l, B_u, est) * m->cfg.Z;
    for (size_t i = 0; i < n; i++)
        w->eps[i] = (float)rng_normal(r);
    const stoch_layer cl = class_layer(&m->cfg);
    if (est != STOCH_EXACT)
        stoch_noise(&cl, w->gnoise, B_u, r);
}

double ss_train_step(ss_model *m, ss_ws *w, adam_state *adam, const float *x, const uint8_t *y,
                     int B_l, int B_u, stoch_estimator est, float tau, const ss_weights *wt,
                     float lr, rng_t *r, ss_parts *parts)
{
    memset(m->grads, 0, sizeof(float) * m->nparams);
    ss_draw_noise(m, w, B_l, B_u, est, r);
    double loss = ss_forward(m, w, x, y, B_l, B_u, est, tau, wt, parts);
    if (!isfinite(loss))
        return loss;
    ss_backward(m, w, x, y, B_l, B_u, est, tau, wt);
    adam_update(adam, m->params, m->grads, lr);
    return loss;
}

void ss_encode_mean(const ss_model *m, ss_ws *w, const float *x, const int *cls, int n,
                    float *mu)
{
    const int F = m->F, K = m->cfg.K, Z = m->cfg.Z;
    ss_scratch *sc = w->ws;
    assert(n <= w->max_examples && n <= w->max_rows);
    const float *feat = encoder_features(m, sc, x, n);
    for (int b = 0; b < n; b++)
        set_row(sc->xy + (size_t)b * (F + K), feat + (size_t)b * F, F, NULL, cls[b], K);
    const float *mulv = encoder_forward(m, sc, n);
    for (int b = 0; b < n; b++)
        memcpy(mu + (size_t)b * Z, mulv + (size_t)b * 2 * Z, sizeof(float) * Z);
}

void ss_decode(const ss_model *m, ss_ws *w, const float *z, const int *cls, int R, float *mean)
{
    const int D = m->cfg.D, K = m->cfg.K, Z = m->cfg.Z;
    ss_scratch *sc = w->ws;
    assert(R <= w->max_rows);
    for (int r = 0; r < R; r++)
        set_row(sc->zy + (size_t)r * (Z + K), z + (size_t)r * Z, Z, NULL, cls[r], K);
    const float *xl = decoder_forward(m, sc, R);
    for (size_t i = 0; i < (size_t)R * D; i++)
        mean[i] = sigmoidf_stable(xl[i]);
}

void ss_evaluate(const ss_model *m, ss_ws *w, const float *x, const uint8_t *labels, int n,
                 rng_t *r, ss_eval_result *out)
{
    const int D = m->cfg.D, K = m->cfg.K;
    int chunk = (int)(w->max_rows / K);
    if (chunk > w->max_examples)
        chunk = w->max_examples;
    const ss_weights wt = {0.0, 1.0, 0.0};
    const ss_scratch *sc = w->ws;
    double neg_elbo = 0.0, nll = 0.0;
    long correct = 0, gen_correct = 0, agree = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int B = n - i0 < chunk ? n - i0 : chunk;
        ss_draw_noise(m, w, 0, B, STOCH_EXACT, r);
        ss_forward(m, w, x + (size_t)i0 * D, NULL, 0, B, STOCH_EXACT, 1.0f, &wt, NULL);
        for (int b = 0; b < B; b++) {
            const float *lq = w->logq + (size_t)b * K;
            int best;
            argmax_rows(&best, lq, 1, K);
            correct += best == labels[i0 + b];
            nll -= lq[labels[i0 + b]];
            neg_elbo += w->ex_loss[b];
            /* Rows b*K .. b*K + K-1 hold y = e_0 .. e_{K-1} (no labelled rows). */
            const long r0 = (long)b * K;
            int gen = 0;
            for (int j = 1; j < K; j++)
                if (sc->rec[r0 + j] + sc->klz[r0 + j] < sc->rec[r0 + gen] + sc->klz[r0 + gen])
                    gen = j;
            gen_correct += gen == labels[i0 + b];
            agree += gen == best;
        }
    }
    out->neg_elbo = n ? neg_elbo / n : NAN;
    out->class_nll = n ? nll / n : NAN;
    out->accuracy = n ? (double)correct / n : NAN;
    out->gen_accuracy = n ? (double)gen_correct / n : NAN;
    out->agreement = n ? (double)agree / n : NAN;
}
