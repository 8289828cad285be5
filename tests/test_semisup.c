/* test_semisup.c: the semi-supervised M2 model (vae/models/semisup.h) and
 * `gsvae train --task semisup`.
 *
 * Gradients: the whole loss of a tiny model (6 pixels, 3 classes, 2 latent
 * units, hidden 5,4 or 5) is written again here in double precision with
 * plain loops, reading the weights from a double copy of m->params and the
 * noise (Gaussian eps, Gumbel g) from the workspace, held fixed.  Central
 * differences of that reference, step FD_STEP = 1e-5, are compared with
 * m->grads from ss_forward + ss_backward, one block per layer's weights and
 * biases:
 *     |a - n| / max(|a| + |n|, REL_FLOOR * max_block max(|a_j|, |n_j|)) < GRAD_TOL
 * with GRAD_TOL = 1e-3 and REL_FLOOR = 1e-2, the bound of test_layers.c and
 * test_model.c for the same reason (float rounding is relative to the
 * block's largest gradient).  Measured errors stay below 1e-4 (printed with
 * GSVAE_TEST_VERBOSE=1); a wrong term (a missing q(y|x) weight, a gradient
 * that skips the relaxed y's path into the encoder or the decoder, a
 * misplaced row) gives errors of order 1.  The loss values themselves must
 * agree to LOSS_TOL = 1e-5 relative.  ReLU variants redraw the weights until
 * every pre-activation is RELU_MARGIN from the kink.
 *
 * The exact unlabelled loss is compared with a brute-force sum over the
 * classes (one labelled pass per class with the same noise); the mean of the
 * gumbel unlabelled loss over Gumbel draws at tau = 0.01 with it (4 standard
 * errors + 0.2%), and that of st-gumbel (a true sample forward) with no
 * allowance at all; st-gumbel's gradient is checked against the surrogate
 * one-hot + y~ - y~(fixed), whose differences give the straight-through
 * gradient; the row counts show that gumbel runs one encoder/decoder
 * row per unlabelled example where exact runs K; and the command is run end
 * to end on real MNIST (learning, outputs, repeatability, the NaN stop, bad
 * flags).  Timing is left to benchmarks. */
#include "pngio.h"
#include "rng.h"
#include "semisup.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_STEP 1e-5
#define GRAD_TOL 1e-3
#define REL_FLOOR 1e-2
#define LOSS_TOL 1e-5
#define RELU_MARGIN 2e-3

enum { D = 6, K = 3, Z = 2, MAXB = 8, MAXW = 16 };

/* ---- the tiny model ---- */

static void tiny_model(ss_model *m, ss_activation act, int nhidden, uint64_t seed)
{
    ss_config c = {D, K, Z, nhidden, {5, 4}, act, SS_NET_MLP};
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, seed);
    ck_assert_msg(ss_init(m, &c, 0.7, &r, err) == 0, "%s", err);
    /* Nonzero biases too, so that their gradients are exercised. */
    const linear_layer *nets[3] = {m->cls, m->enc, m->dec};
    for (int n = 0; n < 3; n++)
        for (int i = 0; i < m->nlayers; i++)
            for (int j = 0; j < nets[n][i].out; j++)
                m->params[nets[n][i].b + j] = (float)(rng_uniform_open(&r) - 0.5);
}

static void tiny_batch(float *x, uint8_t *y, int B_l, int B_u, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < (B_l + B_u) * D; i++)
        x[i] = rng_uniform_open(&r) < 0.4 ? 1.0f : 0.0f;
    for (int b = 0; b < B_l; b++)
        y[b] = (uint8_t)rng_below(&r, K);
}

/* ---- the double-precision reference ---- */

typedef struct {
    const ss_model *m;   /* layout only */
    double *p;           /* parameters */
    const float *x;
    const uint8_t *y;
    int B_l, B_u;
    stoch_estimator est;
    double tau;
    ss_weights wt;
    const float *eps, *gnoise;
    double min_margin;
    double ex_loss[MAXB];
    /* st-gumbel: the soft samples at the first call's parameters, held as
     * constants so that the reference is the surrogate
     * one-hot + y~(p) - y~(p_first): its value is the one-hot's loss and
     * its gradient the straight-through one. */
    double soft0[MAXB][K];
    int have_soft0[MAXB];
} ref_ss;

static double softplus_ref(double v)
{
    return fmax(v, 0.0) + log1p(exp(-fabs(v)));
}

static void log_softmax_ref(double *o, const double *l, int n)
{
    double mx = l[0], s = 0;
    for (int k = 1; k < n; k++)
        mx = fmax(mx, l[k]);
    for (int k = 0; k < n; k++)
        s += exp(l[k] - mx);
    for (int k = 0; k < n; k++)
        o[k] = l[k] - mx - log(s);
}

/* out = the MLP of layers L on in (one example). */
static void ref_mlp(ref_ss *R, const linear_layer *L, const double *in, double *out)
{
    double h[MAXW], t[MAXW];
    memcpy(h, in, sizeof(double) * L[0].in);
    for (int i = 0; i < R->m->nlayers; i++) {
        const double *w = R->p + L[i].w, *bias = R->p + L[i].b;
        int hidden = i < R->m->nlayers - 1;
        for (int o = 0; o < L[i].out; o++) {
            double s = bias[o];
            for (int c = 0; c < L[i].in; c++)
                s += w[(size_t)o * L[i].in + c] * h[c];
            if (hidden) {
                R->min_margin = fmin(R->min_margin, fabs(s));
                s = R->m->cfg.act == SS_ACT_RELU ? fmax(s, 0.0) : softplus_ref(s);
            }
            t[o] = s;
        }
        memcpy(h, t, sizeof(double) * L[i].out);
    }
    memcpy(out, h, sizeof(double) * L[R->m->nlayers - 1].out);
}

/* -log p(x|y,z) + KL(q(z|x,y) || N(0,I)) for one row: y a vector of K. */
static double ref_row(ref_ss *R, const float *x, const double *y, const float *eps)
{
    double xy[D + K], mulv[2 * Z], zy[Z + K], logits[D];
    for (int d = 0; d < D; d++)
        xy[d] = x[d];
    memcpy(xy + D, y, sizeof(double) * K);
    ref_mlp(R, R->m->enc, xy, mulv);
    double kl = 0;
    for (int i = 0; i < Z; i++) {
        double mu = mulv[i], lv = mulv[Z + i];
        zy[i] = mu + exp(0.5 * lv) * eps[i];
        kl += 0.5 * (mu * mu + exp(lv) - 1 - lv);
    }
    memcpy(zy + Z, y, sizeof(double) * K);
    ref_mlp(R, R->m->dec, zy, logits);
    double rec = 0;
    for (int d = 0; d < D; d++)
        rec += softplus_ref(logits[d]) - x[d] * logits[d];
    return rec + kl;
}

static double ref_loss(ref_ss *R)
{
    R->min_margin = INFINITY;
    double lab = 0, nll = 0, unl = 0, logK = log((double)K);
    for (int b = 0; b < R->B_l + R->B_u; b++) {
        const float *x = R->x + (size_t)b * D;
        double xd[D], logits[K], lq[K], y[K];
        for (int d = 0; d < D; d++)
            xd[d] = x[d];
        ref_mlp(R, R->m->cls, xd, logits);
        log_softmax_ref(lq, logits, K);
        double klq = 0;
        for (int j = 0; j < K; j++)
            klq += exp(lq[j]) * (lq[j] + logK);
        if (b < R->B_l) {
            for (int j = 0; j < K; j++)
                y[j] = j == R->y[b];
            R->ex_loss[b] = ref_row(R, x, y, R->eps + (size_t)b * Z) + logK;
            lab += R->ex_loss[b];
            nll -= lq[R->y[b]];
            continue;
        }
        int u = b - R->B_l;
        double U = klq;
        if (R->est == STOCH_EXACT) {
            for (int j = 0; j < K; j++) {
                for (int i = 0; i < K; i++)
                    y[i] = i == j;
                U += exp(lq[j]) * ref_row(R, x, y, R->eps + (size_t)(R->B_l + u * K + j) * Z);
            }
        } else {
            double a[K];
            for (int j = 0; j < K; j++)
                a[j] = (logits[j] + R->gnoise[u * K + j]) / R->tau;
            log_softmax_ref(a, a, K);
            for (int j = 0; j < K; j++)
                y[j] = exp(a[j]);
            if (R->est == STOCH_ST_GUMBEL) {
                double *s0 = R->soft0[u];
                if (!R->have_soft0[u]) {
                    memcpy(s0, y, sizeof y);
                    R->have_soft0[u] = 1;
                }
                int top = 0;
                for (int j = 1; j < K; j++)
                    if (s0[j] > s0[top])
                        top = j;
                for (int j = 0; j < K; j++)
                    y[j] = (j == top) + (y[j] - s0[j]);
            }
            U += ref_row(R, x, y, R->eps + (size_t)(R->B_l + u) * Z);
        }
        R->ex_loss[b] = U;
        unl += U;
    }
    double loss = 0;
    if (R->B_l)
        loss += R->wt.labelled * lab / R->B_l + R->wt.alpha * nll / R->B_l;
    if (R->B_u)
        loss += R->wt.unlabelled * unl / R->B_u;
    return loss;
}

static void assert_block_close(const char *what, const float *analytic, const double *numeric,
                               size_t n)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(analytic[i]), "%s[%zu]: analytic gradient %g", what, i,
                      analytic[i]);
        scale = fmax(scale, fmax(fabs(analytic[i]), fabs(numeric[i])));
    }
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double den = fmax(fabs(analytic[i]) + fabs(numeric[i]), REL_FLOOR * scale);
        double e = den > 0 ? fabs(analytic[i] - numeric[i]) / den : 0.0;
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-40s max rel err %.2e (largest %.3g)\n", what, worst, scale);
    ck_assert_msg(worst < GRAD_TOL, "%s[%zu]: analytic %.9g, numeric %.9g (rel err %.3g >= %g)",
                  what, at, analytic[at], numeric[at], worst, GRAD_TOL);
}

/* Gradient of the loss of (B_l labelled, B_u unlabelled) under est, both
 * ways, on a tiny model; fails the test on disagreement. */
static void check_gradient(const char *name, ss_activation act, int nhidden, int B_l,
                           int B_u, stoch_estimator est)
{
    ss_model m;
    ss_ws w;
    char err[ERR_LEN];
    float x[MAXB * D];
    uint8_t y[MAXB];
    const ss_weights wt = {0.7, 1.3, 0.45};
    const float tau = 0.7f;
    ref_ss R;
    double *p = NULL;
    /* ReLU: redraw until no pre-activation sits near its kink. */
    for (uint64_t seed = 1;; seed++) {
        tiny_model(&m, act, nhidden, seed);
        ck_assert_msg(ss_ws_init(&w, &m, B_l + B_u, ss_rows(&m.cfg, B_l, B_u, est), err) == 0,
                      "%s", err);
        tiny_batch(x, y, B_l, B_u, seed + 100);
        rng_t r;
        rng_seed(&r, seed + 200);
        ss_draw_noise(&m, &w, B_l, B_u, est, &r);
        free(p);
        p = malloc(sizeof(double) * m.nparams);
        for (size_t i = 0; i < m.nparams; i++)
            p[i] = m.params[i];
        R = (ref_ss){.m = &m, .p = p, .x = x, .y = y, .B_l = B_l, .B_u = B_u, .est = est,
                     .tau = tau, .wt = wt, .eps = w.eps, .gnoise = w.gnoise};
        ref_loss(&R);
        if (act != SS_ACT_RELU || R.min_margin > RELU_MARGIN)
            break;
        ck_assert_msg(seed < 200, "no draw keeps the ReLUs off their kinks");
        ss_ws_free(&w);
        ss_free(&m);
    }
    memset(m.grads, 0, sizeof(float) * m.nparams);
    ss_parts parts;
    double loss = ss_forward(&m, &w, x, y, B_l, B_u, est, tau, &wt, &parts);
    ss_backward(&m, &w, x, y, B_l, B_u, est, tau, &wt);
    double ref = ref_loss(&R);
    ck_assert_msg(fabs(loss - ref) <= LOSS_TOL * fabs(ref), "%s: loss %.9g, reference %.9g",
                  name, loss, ref);
    for (int b = 0; b < B_l + B_u; b++)
        ck_assert_msg(fabs(w.ex_loss[b] - R.ex_loss[b]) <= LOSS_TOL * fabs(R.ex_loss[b]),
                      "%s: example %d: %.9g, reference %.9g", name, b, w.ex_loss[b],
                      R.ex_loss[b]);

    double *num = malloc(sizeof(double) * m.nparams);
    for (size_t i = 0; i < m.nparams; i++) {
        double keep = p[i];
        p[i] = keep + FD_STEP;
        double up = ref_loss(&R);
        p[i] = keep - FD_STEP;
        double down = ref_loss(&R);
        p[i] = keep;
        num[i] = (up - down) / (2 * FD_STEP);
    }
    const linear_layer *nets[3] = {m.cls, m.enc, m.dec};
    const char *net_names[3] = {"classifier", "encoder", "decoder"};
    double largest = 0;
    for (size_t i = 0; i < m.nparams; i++)
        largest = fmax(largest, fabs(num[i]));
    ck_assert_msg(largest > 1e-3, "%s: the test problem has no gradient", name);
    for (int n = 0; n < 3; n++)
        for (int i = 0; i < m.nlayers; i++) {
            const linear_layer *l = &nets[n][i];
            char what[128];
            snprintf(what, sizeof what, "%s: %s layer %d weights", name, net_names[n], i);
            assert_block_close(what, m.grads + l->w, num + l->w, (size_t)l->in * l->out);
            snprintf(what, sizeof what, "%s: %s layer %d biases", name, net_names[n], i);
            assert_block_close(what, m.grads + l->b, num + l->b, (size_t)l->out);
        }
    free(num);
    free(p);
    ss_ws_free(&w);
    ss_free(&m);
}

START_TEST(gradient_labelled)
{
    check_gradient("labelled softplus", SS_ACT_SOFTPLUS, 1, 5, 0, STOCH_GUMBEL);
    check_gradient("labelled softplus 2 layers", SS_ACT_SOFTPLUS, 2, 5, 0, STOCH_EXACT);
    check_gradient("labelled relu 2 layers", SS_ACT_RELU, 2, 5, 0, STOCH_EXACT);
}
END_TEST

START_TEST(gradient_exact_unlabelled)
{
    check_gradient("exact softplus", SS_ACT_SOFTPLUS, 1, 0, 4, STOCH_EXACT);
    check_gradient("exact softplus 2 layers", SS_ACT_SOFTPLUS, 2, 0, 4, STOCH_EXACT);
    check_gradient("exact relu 2 layers", SS_ACT_RELU, 2, 0, 4, STOCH_EXACT);
}
END_TEST

START_TEST(gradient_gumbel_unlabelled)
{
    check_gradient("gumbel softplus", SS_ACT_SOFTPLUS, 1, 0, 4, STOCH_GUMBEL);
    check_gradient("gumbel softplus 2 layers", SS_ACT_SOFTPLUS, 2, 0, 4, STOCH_GUMBEL);
    check_gradient("gumbel relu 2 layers", SS_ACT_RELU, 2, 0, 4, STOCH_GUMBEL);
}
END_TEST

START_TEST(gradient_st_gumbel_unlabelled)
{
    check_gradient("st-gumbel softplus", SS_ACT_SOFTPLUS, 1, 0, 4, STOCH_ST_GUMBEL);
    check_gradient("st-gumbel softplus 2 layers", SS_ACT_SOFTPLUS, 2, 0, 4, STOCH_ST_GUMBEL);
    check_gradient("st-gumbel relu 2 layers", SS_ACT_RELU, 2, 0, 4, STOCH_ST_GUMBEL);
}
END_TEST

/* Labelled and unlabelled rows in one batch, as in training: the row
 * offsets of each part. */
START_TEST(gradient_mixed_batch)
{
    check_gradient("mixed exact", SS_ACT_SOFTPLUS, 2, 3, 4, STOCH_EXACT);
    check_gradient("mixed gumbel", SS_ACT_SOFTPLUS, 2, 3, 4, STOCH_GUMBEL);
    check_gradient("mixed st-gumbel", SS_ACT_SOFTPLUS, 2, 3, 4, STOCH_ST_GUMBEL);
}
END_TEST

/* U(x) from the exact path equals sum_y q(y|x) L(x,y) - H(q(y|x)), with each
 * L(x,y) from a labelled pass with the same z noise. */
START_TEST(exact_equals_brute_force_sum)
{
    enum { BU = 5 };
    ss_model m;
    ss_ws w;
    char err[ERR_LEN];
    float x[BU * D];
    uint8_t y[BU];
    tiny_model(&m, SS_ACT_SOFTPLUS, 2, 7);
    ck_assert_msg(ss_ws_init(&w, &m, BU, (long)BU * K, err) == 0, "%s", err);
    tiny_batch(x, y, 0, BU, 8);
    rng_t r;
    rng_seed(&r, 9);
    ss_draw_noise(&m, &w, 0, BU, STOCH_EXACT, &r);
    float eps[BU * K * Z];
    memcpy(eps, w.eps, sizeof eps);
    const ss_weights wt = {0.0, 1.0, 0.0};
    ss_parts parts;
    ss_forward(&m, &w, x, NULL, 0, BU, STOCH_EXACT, 1.0f, &wt, &parts);
    double U[BU], logq[BU * K], sum = 0;
    for (int b = 0; b < BU; b++) {
        U[b] = w.ex_loss[b];
        sum += U[b];
        for (int j = 0; j < K; j++)
            logq[b * K + j] = w.logq[b * K + j];
    }
    ck_assert_double_eq_tol(parts.unl_loss, sum / BU, 1e-9 * fabs(sum));

    double brute[BU];
    for (int b = 0; b < BU; b++) {
        brute[b] = 0;
        for (int j = 0; j < K; j++) /* - H(q) */
            brute[b] += exp(logq[b * K + j]) * logq[b * K + j];
    }
    for (int j = 0; j < K; j++) {
        uint8_t label[BU];
        for (int b = 0; b < BU; b++) {
            label[b] = (uint8_t)j;
            memcpy(w.eps + b * Z, eps + (b * K + j) * Z, sizeof(float) * Z);
        }
        const ss_weights lw = {1.0, 0.0, 0.0};
        ss_forward(&m, &w, x, label, BU, 0, STOCH_EXACT, 1.0f, &lw, NULL);
        for (int b = 0; b < BU; b++)
            brute[b] += exp(logq[b * K + j]) * w.ex_loss[b];
    }
    for (int b = 0; b < BU; b++)
        ck_assert_msg(fabs(U[b] - brute[b]) <= 1e-6 * fabs(brute[b]),
                      "example %d: exact %.9g, brute force %.9g", b, U[b], brute[b]);
    ss_ws_free(&w);
    ss_free(&m);
}
END_TEST

/* The cost that Gumbel-Softmax saves: per unlabelled example, exact sends K
 * rows through the encoder and decoder, gumbel one. */
START_TEST(estimators_of_the_list)
{
    /* Exactly SS_ESTIMATORS parse, by their names in the one list. */
    for (int id = 0; id < STOCH_NESTIMATORS; id++) {
        stoch_estimator out = STOCH_NESTIMATORS;
        int ok = ss_estimator_parse(stoch_estimator_name((stoch_estimator)id), &out) == 0;
        ck_assert_int_eq(ok, (SS_ESTIMATORS >> id) & 1);
        ck_assert_int_eq(out, ok ? id : STOCH_NESTIMATORS);
    }
    ck_assert_int_eq(SS_ESTIMATORS, (1u << STOCH_EXACT) | (1u << STOCH_GUMBEL) |
                                        (1u << STOCH_ST_GUMBEL));
}
END_TEST

START_TEST(gumbel_runs_one_row_per_example)
{
    enum { BL = 2, BU = 5 };
    ss_model m;
    ss_ws w;
    char err[ERR_LEN];
    float x[(BL + BU) * D];
    uint8_t y[BL];
    tiny_model(&m, SS_ACT_SOFTPLUS, 1, 3);
    ck_assert_msg(ss_ws_init(&w, &m, BL + BU, ss_rows(&m.cfg, BL, BU, STOCH_EXACT), err) == 0, "%s",
                  err);
    tiny_batch(x, y, BL, BU, 4);
    rng_t r;
    rng_seed(&r, 5);
    const ss_weights wt = {0.5, 0.5, 0.1};
    ss_draw_noise(&m, &w, BL, BU, STOCH_GUMBEL, &r);
    ss_forward(&m, &w, x, y, BL, BU, STOCH_GUMBEL, 0.5f, &wt, NULL);
    ck_assert_int_eq(w.enc_rows, BL + BU);
    ck_assert_int_eq(w.dec_rows, BL + BU);
    ck_assert_int_eq(ss_rows(&m.cfg, BL, BU, STOCH_GUMBEL), BL + BU);
    ss_draw_noise(&m, &w, BL, BU, STOCH_EXACT, &r);
    ss_forward(&m, &w, x, y, BL, BU, STOCH_EXACT, 0.5f, &wt, NULL);
    ck_assert_int_eq(w.enc_rows, BL + BU * K);
    ck_assert_int_eq(w.dec_rows, BL + BU * K);
    ss_ws_free(&w);
    ss_free(&m);
}
END_TEST

/* The mean over Gumbel draws of est's unlabelled loss U(x), against the
 * exact sum_y q(y|x) L(x,y) - H(q) with the z noise shared by every class:
 * within 4 standard errors plus rel_bias of the exact value. */
static void check_mean_against_exact(stoch_estimator est, float tau, double rel_bias)
{
    enum { COPIES = 500, DRAWS = 40 };
    ss_model m;
    ss_ws w;
    char err[ERR_LEN];
    static float x[COPIES * D];
    float one[D];
    uint8_t unused[1];
    tiny_model(&m, SS_ACT_SOFTPLUS, 1, 21);
    ck_assert_msg(ss_ws_init(&w, &m, COPIES, (long)COPIES * K, err) == 0, "%s", err);
    tiny_batch(one, unused, 0, 1, 22);
    for (int b = 0; b < COPIES; b++)
        memcpy(x + b * D, one, sizeof one);
    rng_t r;
    rng_seed(&r, 23);
    float eps[Z];
    for (int i = 0; i < Z; i++)
        eps[i] = (float)rng_normal(&r);
    const ss_weights wt = {0.0, 1.0, 0.0};
    for (int j = 0; j < K; j++)
        memcpy(w.eps + j * Z, eps, sizeof eps);
    ss_forward(&m, &w, x, NULL, 0, 1, STOCH_EXACT, 1.0f, &wt, NULL);
    double exact = w.ex_loss[0];
    double sum = 0, sumsq = 0;
    for (int d = 0; d < DRAWS; d++) {
        ss_draw_noise(&m, &w, 0, COPIES, est, &r);
        for (int b = 0; b < COPIES; b++)
            memcpy(w.eps + b * Z, eps, sizeof eps);
        ss_forward(&m, &w, x, NULL, 0, COPIES, est, tau, &wt, NULL);
        for (int b = 0; b < COPIES; b++) {
            sum += w.ex_loss[b];
            sumsq += w.ex_loss[b] * w.ex_loss[b];
        }
    }
    double n = (double)COPIES * DRAWS, mean = sum / n;
    double se = sqrt(fmax(sumsq / n - mean * mean, 0.0) / n);
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%s mean %.6f, exact %.6f, standard error %.2e\n", ss_estimator_name(est),
                mean, exact, se);
    ck_assert_msg(se > 0, "the sampled loss does not vary with the noise");
    ck_assert_msg(fabs(mean - exact) < 4 * se + rel_bias * fabs(exact),
                  "%s mean %.6f, exact %.6f, standard error %.3g", ss_estimator_name(est), mean,
                  exact, se);
    ss_ws_free(&w);
    ss_free(&m);
}

/* The objective the gumbel path samples tends to the exact one as tau -> 0:
 * at tau = 0.01 within 4 standard errors plus 0.2% for the relaxation's bias
 * (one-hot is reached only in the limit). */
START_TEST(gumbel_mean_tends_to_exact)
{
    check_mean_against_exact(STOCH_GUMBEL, 0.01f, 0.002);
}
END_TEST

/* st-gumbel's forward pass is a true sample of q(y|x) (Gumbel-Max) at any
 * tau: its mean is the exact objective, with no allowance for bias (1e-6
 * for float rounding).  A forward pass that fed the relaxed y, or an argmax
 * without the noise, is off by many standard errors. */
START_TEST(st_gumbel_mean_is_exact)
{
    check_mean_against_exact(STOCH_ST_GUMBEL, 1.0f, 1e-6);
    check_mean_against_exact(STOCH_ST_GUMBEL, 0.5f, 1e-6);
}
END_TEST

/* Evaluation in chunks gives the figures of one pass over all images. */
START_TEST(evaluate_is_independent_of_chunking)
{
    enum { N = 7 };
    ss_model m;
    ss_ws small, big;
    char err[ERR_LEN];
    float x[N * D];
    uint8_t y[N];
    tiny_model(&m, SS_ACT_SOFTPLUS, 2, 11);
    tiny_batch(x, y, N, 0, 12);
    ck_assert(ss_ws_init(&small, &m, 2, 2 * K, err) == 0);
    ck_assert(ss_ws_init(&big, &m, N, N * K, err) == 0);
    ss_eval_result a, b;
    rng_t r;
    rng_seed(&r, 13);
    ss_evaluate(&m, &small, x, y, N, &r, &a);
    rng_seed(&r, 13);
    ss_evaluate(&m, &big, x, y, N, &r, &b);
    ck_assert_double_eq_tol(a.neg_elbo, b.neg_elbo, 1e-6 * fabs(b.neg_elbo));
    ck_assert_double_eq_tol(a.class_nll, b.class_nll, 1e-6 * fabs(b.class_nll));
    ck_assert_double_eq(a.accuracy, b.accuracy);
    /* The accuracy counts argmax q(y|x) == label. */
    int correct = 0;
    for (int i = 0; i < N; i++) {
        const float *lq = big.logq + (size_t)i * K; /* the last chunk is the whole set */
        int best = 0;
        for (int j = 1; j < K; j++)
            if (lq[j] > lq[best])
                best = j;
        correct += best == y[i];
    }
    ck_assert_double_eq(b.accuracy, (double)correct / N);
    ck_assert_double_eq(a.gen_accuracy, b.gen_accuracy);
    ck_assert_double_eq(a.agreement, b.agreement);
    ss_ws_free(&small);
    ss_ws_free(&big);
    ss_free(&m);
}
END_TEST

/* The generative accuracy counts argmin_y L(x, y) == label, L the labelled
 * -ELBO of one z sample: recomputed here by a labelled pass over every (x, y)
 * pair, row b*K + j = (x_b, j), whose Gaussian noise is the evaluation's
 * (the same N*K rows of eps from the same seed).  The agreement counts that
 * class against argmax q(y|x).  Several seeds, so that both figures take
 * values other than 0 and 1. */
START_TEST(evaluate_generative_accuracy)
{
    enum { N = 7 };
    ss_model m;
    ss_ws w, pairs;
    char err[ERR_LEN];
    float x[N * D], xx[N * K * D];
    uint8_t y[N], yy[N * K];
    int seen_gen = 0, seen_agree = 0;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        tiny_model(&m, SS_ACT_SOFTPLUS, 1, 20 + seed);
        tiny_batch(x, y, N, 0, 40 + seed);
        ck_assert(ss_ws_init(&w, &m, N, N * K, err) == 0);
        ck_assert(ss_ws_init(&pairs, &m, N * K, N * K, err) == 0);
        ss_eval_result e;
        rng_t r;
        rng_seed(&r, seed);
        ss_evaluate(&m, &w, x, y, N, &r, &e);
        for (int b = 0; b < N; b++)
            for (int j = 0; j < K; j++) {
                memcpy(xx + (size_t)(b * K + j) * D, x + (size_t)b * D, sizeof(float) * D);
                yy[b * K + j] = (uint8_t)j;
            }
        rng_seed(&r, seed);
        ss_draw_noise(&m, &pairs, N * K, 0, STOCH_EXACT, &r);
        const ss_weights wt = {1.0, 0.0, 0.0};
        ss_forward(&m, &pairs, xx, yy, N * K, 0, STOCH_EXACT, 1.0f, &wt, NULL);
        int gen_correct = 0, agree = 0;
        for (int b = 0; b < N; b++) {
            int gen = 0, best = 0;
            for (int j = 1; j < K; j++) {
                if (pairs.ex_loss[b * K + j] < pairs.ex_loss[b * K + gen])
                    gen = j;
                if (w.logq[b * K + j] > w.logq[b * K + best])
                    best = j;
            }
            gen_correct += gen == y[b];
            agree += gen == best;
        }
        ck_assert_double_eq_tol(e.gen_accuracy, (double)gen_correct / N, 1e-12);
        ck_assert_double_eq_tol(e.agreement, (double)agree / N, 1e-12);
        seen_gen |= gen_correct > 0 && gen_correct < N;
        seen_agree |= agree > 0 && agree < N;
        ss_ws_free(&w);
        ss_ws_free(&pairs);
        ss_free(&m);
    }
    ck_assert(seen_gen && seen_agree);
}
END_TEST

/* ---- the convolutional networks (--net conv) ---- */

/* Central differences of ss_forward itself, in float, the noise held in
 * the workspace.  Float rounding of a loss of some 500 nats leaves a
 * difference quotient of a single parameter with noise of the order of the
 * smaller gradients (a few 1e-3 at step 1e-2), so each layer's weights and
 * biases are checked along directions instead: v = g / |g|, g the layer's
 * analytic gradient (the derivative along it is |g| exactly when g is
 * right), and v = (g / |g| + u) / |.|, u a random unit vector (so that an
 * error orthogonal to g shows too).  The numeric derivative along v, step
 * CONV_FD_STEP, must lie within CONV_GRAD_TOL x |g| of g . v.  Measured
 * errors (GSVAE_TEST_VERBOSE=1): at most 0.015 (exact) and 0.03 (gumbel)
 * of |g|, in the first convolutions, where ReLU kinks and float noise are
 * largest (a larger step makes them worse); dropping the feature gradient of
 * all but the first of an image's K rows gives 0.42, dropping the relaxed
 * y's path into the encoder head 2.8. */
#define CONV_FD_STEP 1e-2
#define CONV_GRAD_TOL 6e-2
enum { CONV_K = 3, CONV_Z = 4, CONV_D = 784 };

static double conv_loss(ss_model *m, ss_ws *w, const float *x, const uint8_t *y, int B_l,
                        int B_u, stoch_estimator est, const ss_weights *wt)
{
    return ss_forward(m, w, x, y, B_l, B_u, est, 0.7f, wt, NULL);
}

static void check_conv_gradient(const char *name, int B_l, int B_u, stoch_estimator est)
{
    ss_config c = {.D = CONV_D, .K = CONV_K, .Z = CONV_Z, .net = SS_NET_CONV};
    ss_model m;
    ss_ws w;
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, 31);
    ck_assert_msg(ss_init(&m, &c, 0.0, &r, err) == 0, "%s", err);
    ck_assert_msg(ss_ws_init(&w, &m, B_l + B_u, ss_rows(&c, B_l, B_u, est), err) == 0, "%s", err);
    net_t *nets[4] = {&m.cls_net, &m.enc_trunk, &m.enc_head, &m.dec_net};
    const char *names[4] = {"q(y|x)", "q(z|x,y) trunk", "q(z|x,y) head", "p(x|y,z)"};
    /* Nonzero biases, so that their gradients are exercised. */
    for (int n = 0; n < 4; n++)
        for (int i = 0; i < nets[n]->nlayers; i++)
            for (size_t j = 0; j < nets[n]->layer[i].nb; j++)
                nets[n]->params[nets[n]->layer[i].b + j] = 0.2f * (rng_uniformf_open(&r) - 0.5f);
    /* Glorot leaves y's columns of the encoder head (among 2304 features)
     * too weak for its path to show above the float noise: strengthen them. */
    const net_layer *head = &m.enc_head.layer[0];
    for (size_t o = 0; o < head->out_size; o++)
        for (int j = 0; j < CONV_K; j++)
            m.enc_head.params[head->w + o * head->in_size + (size_t)m.F + j] =
                4.0f * (rng_uniformf_open(&r) - 0.5f);
    float *x = malloc(sizeof(float) * (size_t)(B_l + B_u) * CONV_D);
    uint8_t y[MAXB];
    for (int i = 0; i < (B_l + B_u) * CONV_D; i++)
        x[i] = rng_uniform_open(&r) < 0.3 ? 1.0f : 0.0f;
    for (int b = 0; b < B_l; b++)
        y[b] = (uint8_t)rng_below(&r, CONV_K);
    ss_draw_noise(&m, &w, B_l, B_u, est, &r);
    const ss_weights wt = {0.7, 1.3, 0.1};
    memset(m.grads, 0, sizeof(float) * m.nparams);
    ck_assert(isfinite(conv_loss(&m, &w, x, y, B_l, B_u, est, &wt)));
    ss_backward(&m, &w, x, y, B_l, B_u, est, 0.7f, &wt);
    double *v = malloc(sizeof(double) * m.nparams);
    float *keep = malloc(sizeof(float) * m.nparams);
    double worst = 0.0;
    for (int n = 0; n < 4; n++)
        for (int i = 0; i < nets[n]->nlayers; i++)
            for (int part = 0; part < 2; part++) {
                const net_layer *L = &nets[n]->layer[i];
                size_t off = part ? L->b : L->w, cnt = part ? L->nb : L->nw;
                const float *g = nets[n]->grads + off;
                float *p = nets[n]->params + off;
                double gnorm = 0.0;
                for (size_t j = 0; j < cnt; j++)
                    gnorm += (double)g[j] * g[j];
                gnorm = sqrt(gnorm);
                ck_assert_msg(gnorm > 0, "%s: %s layer %d %s: no gradient", name, names[n], i,
                              part ? "biases" : "weights");
                memcpy(keep, p, sizeof(float) * cnt);
                for (int dir = 0; dir < (cnt > 1 ? 2 : 1); dir++) {
                    double vnorm = 0.0, unorm = 0.0;
                    for (size_t j = 0; j < cnt; j++) {
                        v[j] = dir ? rng_normal(&r) : 0.0;
                        unorm += v[j] * v[j];
                    }
                    for (size_t j = 0; j < cnt; j++) {
                        v[j] = (dir ? v[j] / sqrt(unorm) : 0.0) + g[j] / gnorm;
                        vnorm += v[j] * v[j];
                    }
                    double along = 0.0;
                    for (size_t j = 0; j < cnt; j++) {
                        v[j] /= sqrt(vnorm);
                        along += g[j] * v[j];
                    }
                    for (size_t j = 0; j < cnt; j++)
                        p[j] = (float)(keep[j] + CONV_FD_STEP * v[j]);
                    double up = conv_loss(&m, &w, x, y, B_l, B_u, est, &wt);
                    for (size_t j = 0; j < cnt; j++)
                        p[j] = (float)(keep[j] - CONV_FD_STEP * v[j]);
                    double down = conv_loss(&m, &w, x, y, B_l, B_u, est, &wt);
                    memcpy(p, keep, sizeof(float) * cnt);
                    double num = (up - down) / (2 * CONV_FD_STEP), e = fabs(num - along) / gnorm;
                    worst = fmax(worst, e);
                    if (getenv("GSVAE_TEST_VERBOSE"))
                        fprintf(stderr, "%s: %s layer %d %s, direction %d: %.6g vs %.6g (err %.2e)\n",
                                name, names[n], i, part ? "biases" : "weights", dir, along, num, e);
                    ck_assert_msg(e < CONV_GRAD_TOL,
                                  "%s: %s layer %d %s, direction %d: analytic %.6g, numeric %.6g "
                                  "(error %.3g of |g| = %.3g)",
                                  name, names[n], i, part ? "biases" : "weights", dir, along, num,
                                  e, gnorm);
                }
            }
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-40s max error %.2e of |g|\n", name, worst);
    free(v);
    free(keep);
    free(x);
    ss_ws_free(&w);
    ss_free(&m);
}

START_TEST(conv_gradient_exact)
{
    check_conv_gradient("conv exact", 2, 2, STOCH_EXACT);
}
END_TEST

START_TEST(conv_gradient_gumbel)
{
    check_conv_gradient("conv gumbel", 2, 2, STOCH_GUMBEL);
}
END_TEST

/* The conv model has the parameters of results/semisup/networks.md and
 * refuses images that are not 28 x 28. */
START_TEST(conv_shape)
{
    ss_config c = {.D = CONV_D, .K = 10, .Z = 50, .net = SS_NET_CONV};
    ss_model m;
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, 1);
    ck_assert_msg(ss_init(&m, &c, 0.0, &r, err) == 0, "%s", err);
    ck_assert_uint_eq(m.nparams, 41866 + 250316 + 132897);
    ck_assert_int_eq(m.F, 64 * 6 * 6);
    ss_free(&m);
    c.D = 100;
    ck_assert(ss_init(&m, &c, 0.0, &r, err) != 0);
    ck_assert_msg(testutil_contains(err, "28 x 28"), "%s", err);
    ss_free(&m);
    ss_net net;
    ck_assert(ss_net_parse("conv", &net) == 0 && net == SS_NET_CONV);
    ck_assert(ss_net_parse("mlp", &net) == 0 && net == SS_NET_MLP);
    ck_assert(ss_net_parse("cnn", &net) != 0);
}
END_TEST

/* ---- end to end ---- */

#define OUT_LEN 65536
static char out[OUT_LEN], errout[OUT_LEN];

#define gsvae(fmt, ...)                                                                    \
    testutil_run_gsvae(out, sizeof out, errout, sizeof errout, "train --task semisup " fmt,    \
                       ##__VA_ARGS__)
#define log_column(dir, col, vals, max)                                                    \
    testutil_log_column(dir, "step,epoch,tau,train_loss", col, vals, max)

enum { COL_TEST_NEG_ELBO = 7, COL_TEST_ACCURACY = 8, COL_STEPS_PER_S = 10 };

/* Small networks for the end-to-end runs; a larger initialisation and step
 * than the paper's so that 300 steps show learning. */
#define SMALL "--hidden 64 --latent 16 --eval-images 1000 --init-std 0.05 --lr 1e-3 --quiet"

static void learns(const char *estimator, const char *extra)
{
    const char *dir = testutil_tmpdir();
    int rc = gsvae("--estimator %s --data %s --out %s --steps 300 --eval-every 300 %s " SMALL,
                   estimator, testutil_data_dir(), dir, extra);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", estimator, rc, errout);
    ck_assert_msg(testutil_contains(out, "final test accuracy") &&
                      testutil_contains(out, "steps/s"),
                  "%s", out);
    double elbo[8], accuracy[8], speed[8];
    int n = log_column(dir, COL_TEST_NEG_ELBO, elbo, 8);
    log_column(dir, COL_TEST_ACCURACY, accuracy, 8);
    log_column(dir, COL_STEPS_PER_S, speed, 8);
    /* Row 0 is the untrained model (-ELBO near 784 log 2 = 543 nats). */
    ck_assert_int_ge(n, 2);
    ck_assert_msg(elbo[0] > 400, "%s: initial -ELBO %.2f", estimator, elbo[0]);
    ck_assert_msg(elbo[n - 1] < elbo[0] - 200, "%s: -ELBO %.2f from %.2f", estimator,
                  elbo[n - 1], elbo[0]);
    /* Chance is 0.1. */
    ck_assert_msg(accuracy[n - 1] > 0.3, "%s: accuracy %.3f", estimator, accuracy[n - 1]);
    ck_assert_msg(speed[n - 1] > 0, "%s: steps/s %.3f", estimator, speed[n - 1]);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert(summary != NULL);
    ck_assert(testutil_contains(summary, "\"test_accuracy\": 0."));
    ck_assert(testutil_contains(summary, "\"test_neg_elbo\""));
    ck_assert(testutil_contains(summary, "\"steps_per_second\""));
    if (testutil_contains(extra, "--weighting labelled"))
        ck_assert_msg(testutil_contains(summary, "\"weighting\": \"labelled\"") &&
                          testutil_contains(summary,
                                            "{\"labelled_neg_elbo\": 1, \"unlabelled\": 0,"),
                      "%s", summary);
    else if (testutil_contains(extra, "--weighting batch"))
        ck_assert_msg(testutil_contains(summary, "\"weighting\": \"batch\"") &&
                          testutil_contains(summary,
                                            "{\"labelled_neg_elbo\": 1, \"unlabelled\": 1,"),
                      "%s", summary);
    else
        ck_assert_msg(testutil_contains(summary, "\"weighting\": \"k14\"") &&
                          testutil_contains(summary, "{\"labelled_neg_elbo\": 0.0019960"),
                      "%s", summary);
    free(summary);
}

START_TEST(gumbel_learns)
{
    learns("gumbel", "");
}
END_TEST

/* The supervised baseline: the classifier learns from the 100 labels
 * alone, and the model still trains (its labelled -ELBO). */
START_TEST(gumbel_learns_labels_alone)
{
    learns("gumbel", "--weighting labelled");
}
END_TEST

START_TEST(st_gumbel_learns_batch_weighting)
{
    learns("st-gumbel", "--weighting batch");
}
END_TEST

START_TEST(exact_learns)
{
    learns("exact", "");
}
END_TEST

/* `gsvae analogies`: a grid of rows x (classes [+ 1]) tiles of 28 x 28 at
 * scale 2 with 2-pixel borders, from an MLP and a conv checkpoint; another
 * task's checkpoint and bad flags refused with one line. */
static void assert_png_size(const char *path, int w_want, int h_want)
{
    uint8_t *pix;
    int w, h;
    char err[ERR_LEN];
    ck_assert_msg(png_read_gray(path, &pix, &w, &h, err) == 0, "%s", err);
    ck_assert_msg(w == w_want && h == h_want, "%s: %d x %d, expected %d x %d", path, w, h, w_want,
                  h_want);
    /* Not blank: the decoded means vary. */
    int lo = 255, hi = 0;
    for (int i = 0; i < w * h; i++) {
        lo = pix[i] < lo ? pix[i] : lo;
        hi = pix[i] > hi ? pix[i] : hi;
    }
    ck_assert_msg(hi > lo, "%s: one grey", path);
    free(pix);
}

START_TEST(analogies_grid)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    enum { TILE = 28 * 2 + 2 };
    ck_assert_msg(gsvae("--estimator gumbel --data %s --out %s/mlp --steps 20 " SMALL, data, dir) ==
                      0, "%s", errout);
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "analogies --ckpt %s/mlp/model.ckpt --out %s/a.png --rows 3",
                                     dir, dir) == 0, "%s", errout);
    assert_png_size(testutil_path(dir, "a.png"), 10 * TILE + 2, 3 * TILE + 2);
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "analogies --ckpt %s/mlp/model.ckpt --out %s/b.png --rows 2 "
                                     "--source test --data %s",
                                     dir, dir, data) == 0, "%s", errout);
    assert_png_size(testutil_path(dir, "b.png"), 11 * TILE + 2, 2 * TILE + 2);
    /* The conv networks, two steps of them. */
    ck_assert_msg(gsvae("--net conv --data %s --out %s/conv --steps 2 --batch 4 --labelled-batch 4 "
                        "--latent 4 --unlabelled 2000 --eval-images 20 --threads 1 --quiet",
                        data, dir) == 0, "%s", errout);
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "analogies --ckpt %s/conv/model.ckpt --out %s/c.png --rows 2 "
                                     "--source test --data %s --threads 1",
                                     dir, dir, data) == 0, "%s", errout);
    assert_png_size(testutil_path(dir, "c.png"), 11 * TILE + 2, 2 * TILE + 2);
    /* A VAE checkpoint is refused, naming the task. */
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "train --task vae --latent 2x3 --hidden 8 --steps 2 "
                                     "--eval-images 100 --iw-samples 0 --quiet --data %s --out %s/vae",
                                     data, dir) == 0, "%s", errout);
    static const struct {
        const char *args, *message;
        int rc;
    } bad[] = {
        {"--ckpt %s/vae/model.ckpt --out %s/v.png", "a vae run", 1},
        {"--ckpt %s/mlp/model.ckpt --out %s/v.png --rows 0", "--rows", 2},
        {"--ckpt %s/mlp/model.ckpt --out %s/v.png --source posterior", "--source 'posterior'", 2},
        {"--out %s/v.png%s", "--ckpt: required", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, bad[i].args, dir, i == 3 ? "" : dir);
        int rc = testutil_run_gsvae(out, sizeof out, errout, sizeof errout, "analogies %s", args);
        ck_assert_msg(rc == bad[i].rc, "%s: exit %d: %s", args, rc, errout);
        ck_assert_msg(testutil_contains(errout, bad[i].message), "%s: %s", args, errout);
        ck_assert_msg(strchr(errout, '\n') == errout + strlen(errout) - 1, "%s: not one line: %s",
                      args, errout);
    }
    ck_assert(testutil_read_file(testutil_path(dir, "v.png"), &(size_t){0}) == NULL);
}
END_TEST

/* `gsvae eval` of a semisup checkpoint prints the figures the run logged on
 * the same images with the same seed (its summary.json's test accuracy and
 * -ELBO, to the printed digits) and the generative accuracy; --tau, a
 * vae-only figure, is refused with one line. */
static double json_figure(const char *json, const char *key)
{
    double v = testutil_json_number(json, key);
    ck_assert_msg(isfinite(v), "%s not in %s", key, json);
    return v;
}

static double printed_figure(const char *text, const char *before)
{
    const char *p = strstr(text, before);
    ck_assert_msg(p != NULL, "'%s' not in %s", before, text);
    return strtod(p + strlen(before), NULL);
}

START_TEST(eval_reads_a_semisup_checkpoint)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    ck_assert_msg(gsvae("--estimator gumbel --data %s --out %s/mlp --steps 30 --validation 1000 " SMALL,
                        data, dir) ==
                      0, "%s", errout);
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "eval --ckpt %s/mlp/model.ckpt --data %s --images 1000 "
                                     "--threads 1",
                                     dir, data) == 0, "%s", errout);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(testutil_path(dir, "mlp"),
                                                             "summary.json"), &len);
    ck_assert(summary != NULL);
    double acc = printed_figure(out, "test accuracy "), elbo = printed_figure(out, "test -ELBO ");
    ck_assert_msg(fabs(acc - json_figure(summary, "test_accuracy")) < 6e-5, "%s", out);
    ck_assert_msg(fabs(elbo - json_figure(summary, "test_neg_elbo")) < 6e-4, "%s", out);
    double gen = printed_figure(out, "test generative accuracy ");
    ck_assert_msg(gen >= 0.0 && gen <= 1.0 && testutil_contains(out, "agreeing with"), "%s", out);
    /* --json: the same figures under summary.json's names, to its digits. */
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "eval --ckpt %s/mlp/model.ckpt --data %s --images 1000 "
                                     "--threads 1 --json",
                                     dir, data) == 0, "%s", errout);
    ck_assert_msg(out[0] == '{' && testutil_contains(out, "\"test_images\": 1000,\n"), "%s", out);
    static const char *const same[] = {"test_accuracy", "test_neg_elbo", "test_class_nll"};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(fabs(json_figure(out, same[i]) - json_figure(summary, same[i])) < 2e-6,
                      "%s: %s against %s", same[i], out, summary);
    ck_assert_msg(fabs(json_figure(out, "test_gen_accuracy") - gen) < 6e-5, "%s", out);
    free(summary);
    ck_assert_msg(testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                     "eval --ckpt %s/mlp/model.ckpt --data %s --images 100 "
                                     "--set valid --threads 1",
                                     dir, data) == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "valid generative accuracy"), "%s", out);
    int rc = testutil_run_gsvae(out, sizeof out, errout, sizeof errout,
                                "eval --ckpt %s/mlp/model.ckpt --data %s --tau 0.5", dir, data);
    ck_assert_msg(rc == 2 && testutil_contains(errout, "--tau") &&
                      strchr(errout, '\n') == errout + strlen(errout) - 1,
                  "exit %d: %s", rc, errout);
}
END_TEST

START_TEST(same_seed_same_numbers)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir();
    static char first[OUT_LEN];
    for (int i = 0; i < 2; i++) {
        int rc = gsvae("--data %s --out %s --steps 30 --eval-every 0 --seed 5 --log-every 10 "
                       SMALL,
                       testutil_data_dir(), i ? b : a);
        ck_assert_msg(rc == 0, "%s", errout);
        char *cut = strstr(out, " steps in ");
        ck_assert(cut != NULL);
        *cut = '\0';
        if (i == 0)
            snprintf(first, sizeof first, "%s", out);
    }
    ck_assert_str_eq(first, out);
    for (int col = 3; col <= 9; col++) {
        double va[8], vb[8];
        int na = log_column(a, col, va, 8), nb = log_column(b, col, vb, 8);
        ck_assert_int_eq(na, nb);
        for (int i = 0; i < na; i++)
            ck_assert_msg((isnan(va[i]) && isnan(vb[i])) || va[i] == vb[i],
                          "log.csv column %d row %d: %.6f vs %.6f", col, i, va[i], vb[i]);
    }
    /* Another seed, other numbers (replacing b's run takes --force). */
    ck_assert(gsvae("--data %s --out %s --steps 30 --eval-every 0 --seed 6 --force " SMALL,
                    testutil_data_dir(), b) == 0);
    *strstr(out, " steps in ") = '\0';
    ck_assert_str_ne(first, out);
}
END_TEST

START_TEST(nan_stops_the_run)
{
    const char *dir = testutil_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_NAN_AT_STEP=7 %s train --task semisup --data %s --out %s --steps 20 "
             "--eval-every 0 " SMALL,
             testutil_hooks_bin(), testutil_data_dir(), dir);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "step 7: loss is NaN"), "%s", errout);
}
END_TEST

START_TEST(bad_flags_fail_before_any_work)
{
    static const struct {
        const char *args, *message;
    } cases[] = {
        {"--estimator sf", "--estimator 'sf'"},
        {"--classes 5", "--classes 5"},
        {"--labels 15", "--labels 15"},
        {"--labels 0", "--labels 0"},
        {"--hidden 0", "--hidden '0'"},
        {"--activation tanh", "--activation 'tanh'"},
        {"--alpha -1", "--alpha -1"},
        {"--weighting dataset", "--weighting 'dataset'"},
        {"--net cnn", "--net 'cnn'"},
        {"--net conv --batch 2000 --estimator exact", "(--net conv)"},
        {"--lr 0", "--lr 0"},
        {"--batch 0", "--batch 0"},
        {"--labelled-batch 0", "--labelled-batch 0"},
        {"--steps 0", "--steps 0"},
        {"--tau0 0", "--tau0 0"},
        {"--anneal-every 0", "--anneal-every 0"},
        {"--latent x", "--latent: 'x'"},
        {"--unlabelled 50 --labels 100", "--labels 100"},
        {"--batch 10000 --classes 1000 --estimator exact", "encoder rows"},
        {"--bogus 1", "unknown flag '--bogus'"},
    };
    const char *dir = testutil_tmpdir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* A data directory that does not exist: the flags fail first. */
        int rc = gsvae("--data %s/none --out %s/run %s", dir, dir, cases[i].args);
        ck_assert_msg(rc == 2, "%s: exit %d", cases[i].args, rc);
        ck_assert_msg(testutil_contains(errout, cases[i].message), "%s: %s", cases[i].args,
                      errout);
        ck_assert_msg(strchr(errout, '\n') == errout + strlen(errout) - 1,
                      "%s: not one line: %s", cases[i].args, errout);
    }
    /* Nothing was created. */
    ck_assert(testutil_read_file(testutil_path(dir, "run/log.csv"), &(size_t){0}) == NULL);
    /* Missing data is an error of the run, not of the flags. */
    int rc = gsvae("--data %s/none --out %s/run --steps 1 --quiet", dir, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "/none"), "%s", errout);
    /* --help documents the choices and the meaning of --classes. */
    rc = gsvae("--help");
    ck_assert_int_eq(rc, 0);
    ck_assert(testutil_contains(out, "--classes"));
    ck_assert(testutil_contains(out, "accuracy is meaningful only at K = 10"));
    ck_assert(testutil_contains(out, "Kingma"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("semisup");
    TCase *unit = tcase_create("model");
    /* The conv gradient checks run two conv forward passes per direction:
     * about a second alone, far more on a shared machine. */
    tcase_set_timeout(unit, 120);
    tcase_add_test(unit, gradient_labelled);
    tcase_add_test(unit, gradient_exact_unlabelled);
    tcase_add_test(unit, gradient_gumbel_unlabelled);
    tcase_add_test(unit, gradient_st_gumbel_unlabelled);
    tcase_add_test(unit, gradient_mixed_batch);
    tcase_add_test(unit, exact_equals_brute_force_sum);
    tcase_add_test(unit, estimators_of_the_list);
    tcase_add_test(unit, gumbel_runs_one_row_per_example);
    tcase_add_test(unit, gumbel_mean_tends_to_exact);
    tcase_add_test(unit, st_gumbel_mean_is_exact);
    tcase_add_test(unit, evaluate_is_independent_of_chunking);
    tcase_add_test(unit, evaluate_generative_accuracy);
    tcase_add_test(unit, conv_gradient_exact);
    tcase_add_test(unit, conv_gradient_gumbel);
    tcase_add_test(unit, conv_shape);
    suite_add_tcase(s, unit);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 300);
    tcase_add_test(cli, gumbel_learns);
    tcase_add_test(cli, st_gumbel_learns_batch_weighting);
    tcase_add_test(cli, gumbel_learns_labels_alone);
    tcase_add_test(cli, exact_learns);
    tcase_add_test(cli, same_seed_same_numbers);
    tcase_add_test(cli, analogies_grid);
    tcase_add_test(cli, eval_reads_a_semisup_checkpoint);
    tcase_add_test(cli, nan_stops_the_run);
    tcase_add_test(cli, bad_flags_fail_before_any_work);
    suite_add_tcase(s, cli);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
