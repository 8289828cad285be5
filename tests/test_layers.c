/* test_layers.c: every forward/backward pair of layers.c and gumbel.c
 * against a reference written here in double precision with plain loops.
 *
 * Gradients: each backward gets a scalar loss L = sum(proj * forward(...))
 * with a fixed random projection (or the loss itself where the layer is a
 * loss); the analytic gradient from our float backward is compared with
 * central differences of the double reference, step FD_STEP = 1e-5.  The
 * bound is elementwise,
 *     |a - n| / max(|a| + |n|, REL_FLOOR * max_j max(|a_j|, |n_j|)) < GRAD_TOL
 * with GRAD_TOL = 1e-3 and REL_FLOOR = 1e-2.  The difference quotient is good
 * to ~1e-9; the float backward carries rounding that is relative to the
 * largest quantities of its row, not to each entry (y (dy - <dy,y>) for a
 * saturated softmax, z (1 - z) for a Binary Concrete z near 1, a KL
 * gradient that is a difference of two O(1) terms), so entries far below the
 * array's largest are held to an absolute bound of 1e-5 of that largest
 * gradient instead of to their own size.  Measured errors stay below 2e-4;
 * a wrong term (a sign, a missing 1/tau, a transposed matrix, a gradient
 * that overwrites instead of adding) gives errors of order 1.  */
#include "gumbel.h"
#include "layers.h"
#include "rng.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_STEP 1e-5
#define GRAD_TOL 1e-3
#define REL_FLOOR 1e-2

/* ---- helpers ---- */

static void fill_uniform(float *v, size_t n, float lo, float hi, rng_t *r)
{
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)rng_uniform_open(r);
}

static double *to_double(const float *v, size_t n)
{
    double *d = malloc(n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static double softplus_ref(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* The checks of every backward pass, shared by the suites (testutil.h). */
#define numeric_grad(g, p, n, f, ctx) testutil_numeric_grad(g, p, n, FD_STEP, f, ctx)
#define assert_grad_close(what, a, nu, n) \
    testutil_assert_grad_close(what, a, nu, n, GRAD_TOL, REL_FLOOR)
typedef testutil_loss ref_loss;

#define assert_close testutil_assert_close

/* ---- linear ---- */

typedef struct {
    int B, C, OC, relu;
    double *in, *w, *b, *proj;
    double min_abs_pre; /* smallest |pre-activation|, to keep off the ReLU kink */
    int n_off;          /* ReLU units at zero */
} linear_ref;

static void linear_ref_forward(linear_ref *L, double *out)
{
    L->min_abs_pre = INFINITY;
    L->n_off = 0;
    for (int r = 0; r < L->B; r++)
        for (int o = 0; o < L->OC; o++) {
            double s = L->b[o];
            for (int c = 0; c < L->C; c++)
                s += L->in[r * L->C + c] * L->w[o * L->C + c];
            L->min_abs_pre = fmin(L->min_abs_pre, fabs(s));
            if (L->relu && s <= 0) {
                s = 0;
                L->n_off++;
            }
            out[r * L->OC + o] = s;
        }
}

static double linear_ref_loss(void *ctx)
{
    linear_ref *L = ctx;
    double out[64], s = 0;
    linear_ref_forward(L, out);
    for (int i = 0; i < L->B * L->OC; i++)
        s += L->proj[i] * out[i];
    return s;
}

static void check_linear(int B, int C, int OC, int relu, uint64_t seed)
{
    ck_assert_int_le(B * OC, 64);
    rng_t r;
    rng_seed(&r, seed);
    size_t nin = (size_t)B * C, nw = (size_t)OC * C, nout = (size_t)B * OC;
    float *in = malloc(nin * sizeof *in), *w = malloc(nw * sizeof *w);
    float *b = malloc(OC * sizeof *b), *proj = malloc(nout * sizeof *proj);
    float *out = malloc(nout * sizeof *out), *dout = malloc(nout * sizeof *dout);
    float *din = malloc(nin * sizeof *din), *dw = malloc(nw * sizeof *dw);
    float *db = malloc(OC * sizeof *db), *dw0 = malloc(nw * sizeof *dw0);
    float *db0 = malloc(OC * sizeof *db0);
    ck_assert(in && w && b && proj && out && dout && din && dw && db && dw0 && db0);

    /* Draw until no pre-activation sits within 1e-2 of the kink and, with
     * ReLU, both sides of it are represented. */
    linear_ref L = {.B = B, .C = C, .OC = OC, .relu = relu};
    double ref_out[64];
    int tries = 0;
    for (;; tries++) {
        ck_assert_int_lt(tries, 1000);
        fill_uniform(in, nin, -1, 1, &r);
        fill_uniform(w, nw, -1, 1, &r);
        fill_uniform(b, OC, -0.5f, 0.5f, &r);
        fill_uniform(proj, nout, -1, 1, &r);
        free(L.in);
        free(L.w);
        free(L.b);
        free(L.proj);
        L.in = to_double(in, nin);
        L.w = to_double(w, nw);
        L.b = to_double(b, OC);
        L.proj = to_double(proj, nout);
        linear_ref_forward(&L, ref_out);
        if (L.min_abs_pre > 1e-2 && (!relu || (L.n_off > 0 && L.n_off < (int)nout)))
            break;
    }

    linear_forward(out, in, w, b, B, C, OC, relu);
    assert_close("linear_forward out", out, ref_out, nout, 1e-6);

    /* din is overwritten: start it at garbage.  dw, db accumulate: start
     * them at known values and subtract. */
    fill_uniform(dw0, nw, -1, 1, &r);
    fill_uniform(db0, OC, -1, 1, &r);
    memcpy(dw, dw0, nw * sizeof *dw);
    memcpy(db, db0, OC * sizeof *db);
    for (size_t i = 0; i < nin; i++)
        din[i] = 1234.5f;
    memcpy(dout, proj, nout * sizeof *dout);
    linear_backward(din, dw, db, dout, out, in, w, B, C, OC, relu);

    /* With ReLU, dout is masked in place exactly where the output is 0. */
    for (size_t i = 0; i < nout; i++)
        ck_assert_msg(dout[i] == (relu && out[i] == 0.0f ? 0.0f : proj[i]),
                      "dout[%zu] = %g after backward (out %g, proj %g)", i, (double)dout[i],
                      (double)out[i], (double)proj[i]);

    double *an = malloc(nw * sizeof *an), *nu = malloc(nw * sizeof *nu);
    double *an_in = malloc(nin * sizeof *an_in), *nu_in = malloc(nin * sizeof *nu_in);
    ck_assert(an && nu && an_in && nu_in);
    char what[96];

    for (size_t i = 0; i < nin; i++)
        an_in[i] = din[i];
    numeric_grad(nu_in, L.in, nin, linear_ref_loss, &L);
    snprintf(what, sizeof what, "linear din (B%d C%d OC%d relu%d)", B, C, OC, relu);
    assert_grad_close(what, an_in, nu_in, nin);

    for (size_t i = 0; i < nw; i++)
        an[i] = (double)dw[i] - dw0[i];
    numeric_grad(nu, L.w, nw, linear_ref_loss, &L);
    snprintf(what, sizeof what, "linear dw (B%d C%d OC%d relu%d)", B, C, OC, relu);
    assert_grad_close(what, an, nu, nw);

    for (int i = 0; i < OC; i++)
        an[i] = (double)db[i] - db0[i];
    numeric_grad(nu, L.b, OC, linear_ref_loss, &L);
    snprintf(what, sizeof what, "linear db (B%d C%d OC%d relu%d)", B, C, OC, relu);
    assert_grad_close(what, an, nu, OC);

    /* din may be NULL (the first layer); dw and db come out the same. */
    memcpy(dw0, dw, nw * sizeof *dw);
    memcpy(db0, db, OC * sizeof *db);
    memcpy(dout, proj, nout * sizeof *dout);
    linear_backward(NULL, dw, db, dout, out, in, w, B, C, OC, relu);
    for (size_t i = 0; i < nw; i++)
        an[i] = (double)dw[i] - dw0[i];
    numeric_grad(nu, L.w, nw, linear_ref_loss, &L);
    snprintf(what, sizeof what, "linear dw, din NULL (relu%d)", relu);
    assert_grad_close(what, an, nu, nw);

    free(an);
    free(nu);
    free(an_in);
    free(nu_in);
    free(L.in);
    free(L.w);
    free(L.b);
    free(L.proj);
    free(in);
    free(w);
    free(b);
    free(proj);
    free(out);
    free(dout);
    free(din);
    free(dw);
    free(db);
    free(dw0);
    free(db0);
}

START_TEST(linear_grad_plain)
{
    check_linear(3, 5, 4, 0, 1);
    check_linear(1, 7, 2, 0, 2);
    check_linear(4, 1, 6, 0, 3);
}
END_TEST

START_TEST(linear_grad_relu)
{
    check_linear(3, 5, 4, 1, 11);
    check_linear(5, 7, 3, 1, 12);
    check_linear(2, 3, 8, 1, 13);
}
END_TEST

/* ---- Bernoulli cross-entropy from logits ---- */

typedef struct {
    int B, D;
    double *logits, *x, scale;
} bce_ref;

static double bce_ref_row(const double *l, const double *x, int D)
{
    double s = 0;
    for (int d = 0; d < D; d++)
        s += softplus_ref(l[d]) - x[d] * l[d];
    return s;
}

static double bce_ref_loss(void *ctx)
{
    bce_ref *R = ctx;
    double s = 0;
    for (int b = 0; b < R->B; b++)
        s += bce_ref_row(R->logits + b * R->D, R->x + b * R->D, R->D);
    return R->scale * s;
}

START_TEST(bce_forward_values)
{
    /* D above the 98-pixel block of the float partial sums, and not a
     * multiple of it, so both the block path and the tail count. */
    enum { B = 3, D = 300 };
    rng_t r;
    rng_seed(&r, 21);
    float l[B * D], x[B * D];
    fill_uniform(l, B * D, -6, 6, &r);
    for (int i = 0; i < B * D; i++)
        x[i] = i % 7 == 3 ? (float)rng_uniform_open(&r) : (float)(rng_uniform_open(&r) < 0.3);
    double loss[B], *dl = to_double(l, B * D), *dx = to_double(x, B * D);
    bce_logits_forward(loss, l, x, B, D);
    for (int b = 0; b < B; b++) {
        double want = bce_ref_row(dl + b * D, dx + b * D, D);
        ck_assert_msg(fabs(loss[b] - want) <= 1e-5 * want, "bce row %d: got %.9g, want %.9g", b,
                      loss[b], want);
    }
    free(dl);
    free(dx);
}
END_TEST

START_TEST(bce_extreme_logits)
{
    /* Saturated logits on both sides of both targets: finite, and right to
     * within float rounding of the double reference. */
    enum { D = 12 };
    const float l[D] = {80, 80, -80, -80, 1e4f, 1e4f, -1e4f, -1e4f, 88.7f, -88.7f, 0, 30};
    const float x[D] = {0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0};
    double loss, terms = 0;
    for (int d = 0; d < D; d++) {
        float one_l = l[d], one_x = x[d];
        double want = softplus_ref(one_l) - (double)one_x * one_l;
        bce_logits_forward(&loss, &one_l, &one_x, 1, 1);
        ck_assert_msg(isfinite(loss) && fabs(loss - want) <= 1e-6 * (1 + want),
                      "bce(l=%g, x=%g) = %.9g, want %.9g", (double)one_l, (double)one_x, loss,
                      want);
        terms += want;
        float g;
        bce_logits_backward(&g, &one_l, &one_x, 1, 1, 0.5f);
        double gwant = 0.5 * (sigmoid_ref(one_l) - one_x);
        ck_assert_msg(isfinite(g) && fabs(g - gwant) <= 1e-7,
                      "bce backward(l=%g, x=%g) = %.9g, want %.9g", (double)one_l, (double)one_x,
                      (double)g, gwant);
    }
    bce_logits_forward(&loss, l, x, 1, D);
    ck_assert_msg(isfinite(loss) && fabs(loss - terms) <= 1e-6 * terms, "bce row %.9g, want %.9g",
                  loss, terms);
}
END_TEST

START_TEST(bce_grad)
{
    enum { B = 3, D = 7 };
    rng_t r;
    rng_seed(&r, 22);
    float l[B * D], x[B * D], g[B * D];
    fill_uniform(l, B * D, -5, 5, &r);
    l[0] = 80;
    l[1] = -80;
    for (int i = 0; i < B * D; i++)
        x[i] = i % 5 == 4 ? (float)rng_uniform_open(&r) : (float)(rng_uniform_open(&r) < 0.5);
    for (int i = 0; i < B * D; i++)
        g[i] = -999.0f; /* overwritten */
    float scale = 1.0f / 3.0f;
    bce_logits_backward(g, l, x, B, D, scale);
    bce_ref R = {B, D, to_double(l, B * D), to_double(x, B * D), scale};
    double *an = to_double(g, B * D), nu[B * D];
    numeric_grad(nu, R.logits, B * D, bce_ref_loss, &R);
    assert_grad_close("bce_logits_backward", an, nu, B * D);
    free(an);
    free(R.logits);
    free(R.x);
}
END_TEST

START_TEST(stable_elementwise)
{
    const float xs[] = {-1e4f, -88.7f, -80, -30, -1, -1e-3f, 0, 1e-3f, 1, 30, 80, 88.7f, 1e4f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double sp = softplusf_stable(xs[i]), sg = sigmoidf_stable(xs[i]);
        double spw = softplus_ref(xs[i]), sgw = sigmoid_ref(xs[i]);
        ck_assert_msg(isfinite(sp) && fabs(sp - spw) <= 1e-6 * (spw + 1e-30) + 1e-37,
                      "softplus(%g) = %.9g, want %.9g", (double)xs[i], sp, spw);
        ck_assert_msg(isfinite(sg) && fabs(sg - sgw) <= 1e-6 * sgw + 1e-37,
                      "sigmoid(%g) = %.9g, want %.9g", (double)xs[i], sg, sgw);
    }
}
END_TEST

START_TEST(nan_propagates)
{
    /* A diverged layer must reach the loss as NaN (train_step stops on a
     * non-finite loss), through every piece, without undefined behaviour
     * on the way (the sanitizer build aborts on any). */
    const float nan = NAN;
    ck_assert(isnan(softplusf_stable(nan)));
    ck_assert(isnan(sigmoidf_stable(nan)));

    float l[4] = {0.5f, NAN, -1.0f, 2.0f}, x[4] = {1, 0, 1, 0}, g[4], lq[4];
    double loss[2], kl[2];
    bce_logits_forward(loss, l, x, 2, 2);
    ck_assert(isnan(loss[0]) && isfinite(loss[1]));
    bce_logits_backward(g, l, x, 2, 2, 1.0f);
    ck_assert(isfinite(g[0]) && isnan(g[1]) && isfinite(g[2]) && isfinite(g[3]));
    kl_bernoulli_forward(kl, l, 2, 2);
    ck_assert(isnan(kl[0]) && isfinite(kl[1]));
    log_softmax_forward(lq, l, 2, 2);
    ck_assert(isnan(lq[0]) && isnan(lq[1]) && isfinite(lq[2]) && isfinite(lq[3]));
    kl_categorical_forward(kl, lq, 2, 1, 2);
    ck_assert(isnan(kl[0]) && isfinite(kl[1]));

    /* Through a ReLU layer. */
    float w[2 * 2] = {1, -1, -1, 1}, b[2] = {0, 0}, out[2 * 2];
    linear_forward(out, l, w, b, 2, 2, 2, 1);
    ck_assert(isnan(out[0]) && isnan(out[1]));
}
END_TEST

/* ---- log-softmax ---- */

static void log_softmax_ref(double *o, const double *l, int K)
{
    double m = l[0], s = 0;
    for (int k = 1; k < K; k++)
        m = fmax(m, l[k]);
    for (int k = 0; k < K; k++)
        s += exp(l[k] - m);
    for (int k = 0; k < K; k++)
        o[k] = l[k] - m - log(s);
}

START_TEST(log_softmax_values)
{
    enum { R = 5, K = 5 };
    rng_t r;
    rng_seed(&r, 31);
    float l[R * K], lq[R * K];
    fill_uniform(l, (R - 1) * K, -4, 4, &r);
    const float wild[K] = {1000, -1000, 0, 999.5f, -3};
    memcpy(l + (R - 1) * K, wild, sizeof wild);
    log_softmax_forward(lq, l, R, K);
    double *dl = to_double(l, R * K), want[R * K];
    for (int g = 0; g < R; g++)
        log_softmax_ref(want + g * K, dl + g * K, K);
    /* Entries down to -2000 are still exact to float rounding of their
     * size, hence the relative part of the bound. */
    assert_close("log_softmax_forward", lq, want, R * K, 1e-6);
    for (int g = 0; g < R; g++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp((double)lq[g * K + k]);
        ck_assert_msg(fabs(s - 1) < 1e-6, "row %d: sum of exp(logq) = %.9g", g, s);
    }
    free(dl);
}
END_TEST

/* ---- KL of the categorical code to the uniform prior ---- */

typedef struct {
    int B, N, K;
    double *logits, scale;
} klcat_ref;

static double klcat_ref_row(const double *l, int N, int K)
{
    double lq[16], s = 0;
    for (int i = 0; i < N; i++) {
        log_softmax_ref(lq, l + i * K, K);
        for (int k = 0; k < K; k++)
            s += exp(lq[k]) * (lq[k] + log((double)K));
    }
    return s;
}

static double klcat_ref_loss(void *ctx)
{
    klcat_ref *R = ctx;
    double s = 0;
    for (int b = 0; b < R->B; b++)
        s += klcat_ref_row(R->logits + b * R->N * R->K, R->N, R->K);
    return R->scale * s;
}

START_TEST(kl_categorical_brute_force)
{
    /* The KL of the joint q(z) = prod_i q_i(z_i) over all K^N codes to the
     * uniform joint, summed code by code, against the analytic per-group
     * sum. */
    enum { B = 2, N = 3, K = 4 };
    rng_t r;
    rng_seed(&r, 41);
    float l[B * N * K], lq[B * N * K];
    fill_uniform(l, B * N * K, -3, 3, &r);
    log_softmax_forward(lq, l, B * N, K);
    double kl[B];
    kl_categorical_forward(kl, lq, B, N, K);
    for (int b = 0; b < B; b++) {
        double q[N][K];
        for (int i = 0; i < N; i++) {
            double m = -INFINITY, s = 0;
            for (int k = 0; k < K; k++)
                m = fmax(m, l[(b * N + i) * K + k]);
            for (int k = 0; k < K; k++)
                s += q[i][k] = exp(l[(b * N + i) * K + k] - m);
            for (int k = 0; k < K; k++)
                q[i][k] /= s;
        }
        double brute = 0;
        int codes = 1;
        for (int i = 0; i < N; i++)
            codes *= K;
        for (int code = 0; code < codes; code++) {
            double p = 1;
            for (int i = 0, c = code; i < N; i++, c /= K)
                p *= q[i][c % K];
            brute += p * log(p * codes);
        }
        ck_assert_msg(brute > 0.1, "test problem too close to uniform (KL %g)", brute);
        ck_assert_msg(fabs(kl[b] - brute) <= 1e-6 * (1 + brute),
                      "KL categorical row %d: analytic %.9g, brute force %.9g", b, kl[b], brute);
    }

    /* Uniform q: zero. */
    for (int i = 0; i < B * N * K; i++)
        l[i] = 0.25f;
    log_softmax_forward(lq, l, B * N, K);
    kl_categorical_forward(kl, lq, B, N, K);
    ck_assert_msg(fabs(kl[0]) < 1e-6 && fabs(kl[1]) < 1e-6, "KL of uniform q: %g %g", kl[0],
                  kl[1]);
}
END_TEST

START_TEST(kl_categorical_grad)
{
    enum { B = 3, N = 2, K = 5 };
    rng_t r;
    rng_seed(&r, 42);
    float l[B * N * K], lq[B * N * K], g[B * N * K], g0[B * N * K];
    fill_uniform(l, B * N * K, -3, 3, &r);
    l[0] = 12; /* one nearly saturated group */
    fill_uniform(g0, B * N * K, -1, 1, &r);
    memcpy(g, g0, sizeof g);
    log_softmax_forward(lq, l, B * N, K);
    float scale = 1.0f / 3.0f;
    kl_categorical_backward(g, lq, B, N, K, scale);
    double an[B * N * K], nu[B * N * K];
    for (int i = 0; i < B * N * K; i++)
        an[i] = (double)g[i] - g0[i]; /* it adds */
    klcat_ref R = {B, N, K, to_double(l, B * N * K), scale};
    numeric_grad(nu, R.logits, B * N * K, klcat_ref_loss, &R);
    assert_grad_close("kl_categorical_backward", an, nu, B * N * K);
    free(R.logits);
}
END_TEST

/* ---- KL of Bernoulli units to Bernoulli(1/2) ---- */

typedef struct {
    int B, N;
    double *logits, scale;
} klber_ref;

static double klber_ref_unit(double l)
{
    double q = sigmoid_ref(l), logq = -softplus_ref(-l), log1mq = -softplus_ref(l);
    return q * logq + (1 - q) * log1mq + log(2.0);
}

static double klber_ref_loss(void *ctx)
{
    klber_ref *R = ctx;
    double s = 0;
    for (int i = 0; i < R->B * R->N; i++)
        s += klber_ref_unit(R->logits[i]);
    return R->scale * s;
}

START_TEST(kl_bernoulli_brute_force)
{
    enum { B = 2, N = 4 };
    rng_t r;
    rng_seed(&r, 51);
    float l[B * N];
    fill_uniform(l, B * N, -3, 3, &r);
    double kl[B];
    kl_bernoulli_forward(kl, l, B, N);
    for (int b = 0; b < B; b++) {
        double brute = 0;
        for (int code = 0; code < 1 << N; code++) {
            double p = 1;
            for (int i = 0; i < N; i++) {
                double q = 1 / (1 + exp(-(double)l[b * N + i]));
                p *= code >> i & 1 ? q : 1 - q;
            }
            brute += p * log(p * (1 << N));
        }
        ck_assert_msg(brute > 0.1, "test problem too close to uniform (KL %g)", brute);
        ck_assert_msg(fabs(kl[b] - brute) <= 1e-6 * (1 + brute),
                      "KL Bernoulli row %d: analytic %.9g, brute force %.9g", b, kl[b], brute);
    }

    /* Saturated units: finite, and near log 2 each. */
    const float sat[4] = {80, -80, 1e4f, -1e4f};
    kl_bernoulli_forward(kl, sat, 1, 4);
    double want = 0;
    for (int i = 0; i < 4; i++)
        want += klber_ref_unit(sat[i]);
    ck_assert_msg(isfinite(kl[0]) && fabs(kl[0] - want) < 1e-6, "saturated KL %.9g, want %.9g",
                  kl[0], want);
}
END_TEST

START_TEST(kl_bernoulli_grad)
{
    enum { B = 3, N = 4 };
    rng_t r;
    rng_seed(&r, 52);
    float l[B * N], g[B * N], g0[B * N];
    fill_uniform(l, B * N, -4, 4, &r);
    l[0] = 30;
    l[1] = -30;
    l[2] = 0;
    fill_uniform(g0, B * N, -1, 1, &r);
    memcpy(g, g0, sizeof g);
    float scale = 0.25f;
    kl_bernoulli_backward(g, l, B, N, scale);
    double an[B * N], nu[B * N];
    for (int i = 0; i < B * N; i++)
        an[i] = (double)g[i] - g0[i]; /* it adds, like the categorical one */
    klber_ref R = {B, N, to_double(l, B * N), scale};
    numeric_grad(nu, R.logits, B * N, klber_ref_loss, &R);
    assert_grad_close("kl_bernoulli_backward", an, nu, B * N);
    free(R.logits);
}
END_TEST

/* ---- KL to a learned prior, categorical and Bernoulli ---- */

/* The loss of the learned-prior tests: scale * sum_b KL_b(q_b || p), q_b from
 * the rows' logits, p from eta (shared by the rows); both in double and
 * both perturbed by the differences. */
typedef struct {
    int B, N, K;  /* K = 1: Bernoulli units */
    double *logits, *eta, scale;
} klprior_ref;

static double klprior_ref_loss(void *ctx)
{
    klprior_ref *R = ctx;
    double s = 0;
    for (int b = 0; b < R->B; b++) {
        for (int i = 0; i < R->N; i++) {
            if (R->K == 1) {
                double l = R->logits[b * R->N + i], e = R->eta[i], q = sigmoid_ref(l);
                s += q * (-softplus_ref(-l) + softplus_ref(-e)) +
                     (1 - q) * (-softplus_ref(l) + softplus_ref(e));
                continue;
            }
            double lq[16], lp[16];
            log_softmax_ref(lq, R->logits + (b * R->N + i) * R->K, R->K);
            log_softmax_ref(lp, R->eta + i * R->K, R->K);
            for (int k = 0; k < R->K; k++)
                s += exp(lq[k]) * (lq[k] - lp[k]);
        }
    }
    return R->scale * s;
}

START_TEST(kl_prior_brute_force)
{
    /* The KL of the joint q(z) = prod_i q_i(z_i) to the joint prior, code by
     * code over all K^N (2^N) codes, against the analytic per-variable sum;
     * and at eta = 0 the learned KL is the uniform one. */
    enum { B = 2, N = 3, K = 4 };
    rng_t r;
    rng_seed(&r, 61);
    float l[B * N * K], lq[B * N * K], eta[N * K], lp[N * K], zero[N * K] = {0};
    fill_uniform(l, B * N * K, -3, 3, &r);
    fill_uniform(eta, N * K, -2, 2, &r);
    log_softmax_forward(lq, l, B * N, K);
    log_softmax_forward(lp, eta, N, K);
    double kl[B], klu[B];
    kl_categorical_prior_forward(kl, lq, lp, B, N, K);
    int codes = 1;
    for (int i = 0; i < N; i++)
        codes *= K;
    for (int b = 0; b < B; b++) {
        double brute = 0;
        for (int code = 0; code < codes; code++) {
            double logq = 0, logp = 0;
            for (int i = 0, c = code; i < N; i++, c /= K) {
                double a[K], e[K], oa[K], oe[K];
                for (int k = 0; k < K; k++) {
                    a[k] = l[(b * N + i) * K + k];
                    e[k] = eta[i * K + k];
                }
                log_softmax_ref(oa, a, K);
                log_softmax_ref(oe, e, K);
                logq += oa[c % K];
                logp += oe[c % K];
            }
            brute += exp(logq) * (logq - logp);
        }
        ck_assert_msg(brute > 0.1, "test problem too close to the prior (KL %g)", brute);
        ck_assert_msg(fabs(kl[b] - brute) <= 1e-6 * (1 + brute),
                      "KL categorical to a learned prior, row %d: analytic %.9g, brute %.9g", b,
                      kl[b], brute);
    }
    log_softmax_forward(lp, zero, N, K);
    kl_categorical_prior_forward(kl, lq, lp, B, N, K);
    kl_categorical_forward(klu, lq, B, N, K);
    for (int b = 0; b < B; b++)
        ck_assert_msg(fabs(kl[b] - klu[b]) <= 1e-6 * (1 + klu[b]),
                      "categorical, eta = 0: learned %.9g, uniform %.9g", kl[b], klu[b]);

    enum { NB = 4 };
    float lb[B * NB], etab[NB], zerob[NB] = {0};
    fill_uniform(lb, B * NB, -3, 3, &r);
    fill_uniform(etab, NB, -2, 2, &r);
    kl_bernoulli_prior_forward(kl, lb, etab, B, NB);
    for (int b = 0; b < B; b++) {
        double brute = 0;
        for (int code = 0; code < 1 << NB; code++) {
            double q = 1, p = 1;
            for (int i = 0; i < NB; i++) {
                double qi = sigmoid_ref(lb[b * NB + i]), pi = sigmoid_ref(etab[i]);
                q *= code >> i & 1 ? qi : 1 - qi;
                p *= code >> i & 1 ? pi : 1 - pi;
            }
            brute += q * log(q / p);
        }
        ck_assert_msg(brute > 0.1, "test problem too close to the prior (KL %g)", brute);
        ck_assert_msg(fabs(kl[b] - brute) <= 1e-6 * (1 + brute),
                      "KL Bernoulli to a learned prior, row %d: analytic %.9g, brute %.9g", b,
                      kl[b], brute);
    }
    kl_bernoulli_prior_forward(kl, lb, zerob, B, NB);
    kl_bernoulli_forward(klu, lb, B, NB);
    for (int b = 0; b < B; b++)
        ck_assert_msg(fabs(kl[b] - klu[b]) <= 1e-6 * (1 + klu[b]),
                      "Bernoulli, eta = 0: learned %.9g, uniform %.9g", kl[b], klu[b]);

    /* Saturated units and prior logits: finite, as the reference. */
    const float sat[4] = {80, -80, 30, -30}, sat_eta[4] = {-20, 20, 30, 5};
    kl_bernoulli_prior_forward(kl, sat, sat_eta, 1, 4);
    klprior_ref R = {1, 4, 1, to_double(sat, 4), to_double(sat_eta, 4), 1.0};
    double want = klprior_ref_loss(&R);
    ck_assert_msg(isfinite(kl[0]) && fabs(kl[0] - want) < 1e-5 * (1 + want),
                  "saturated KL %.9g, want %.9g", kl[0], want);
    free(R.logits);
    free(R.eta);
}
END_TEST

/* dKL/dlogits and dKL/deta against central differences of klprior_ref, the
 * prior away from uniform, both halves adding into what they find. */
static void check_kl_prior_grad(int N, int K, uint64_t seed)
{
    enum { B = 3, MAXN = 16 };
    int Z = K == 1 ? N : N * K;
    ck_assert_int_le(Z, MAXN);
    rng_t r;
    rng_seed(&r, seed);
    float l[B * MAXN], eta[MAXN], lq[B * MAXN], lp[MAXN];
    float g[B * MAXN], g0[B * MAXN], gp[MAXN], gp0[MAXN];
    fill_uniform(l, B * Z, -3, 3, &r);
    fill_uniform(eta, Z, -2, 2, &r);
    l[0] = 9; /* one nearly saturated variable (unit) */
    fill_uniform(g0, B * Z, -1, 1, &r);
    fill_uniform(gp0, Z, -1, 1, &r);
    memcpy(g, g0, sizeof g);
    memcpy(gp, gp0, sizeof gp);
    float scale = 1.0f / 3.0f, prior_scale = 0.7f;
    if (K == 1) {
        kl_bernoulli_prior_backward(g, gp, l, eta, B, N, scale, prior_scale);
    } else {
        log_softmax_forward(lq, l, B * N, K);
        log_softmax_forward(lp, eta, N, K);
        kl_categorical_prior_backward(g, gp, lq, lp, B, N, K, scale, prior_scale);
    }
    double an[B * MAXN], nu[B * MAXN];
    klprior_ref R = {B, N, K, to_double(l, B * Z), to_double(eta, Z), scale};
    char what[64];
    for (int i = 0; i < B * Z; i++)
        an[i] = (double)g[i] - g0[i];
    numeric_grad(nu, R.logits, B * Z, klprior_ref_loss, &R);
    snprintf(what, sizeof what, "KL to a learned prior, K %d: dlogits", K);
    assert_grad_close(what, an, nu, B * Z);
    R.scale = prior_scale;
    for (int i = 0; i < Z; i++)
        an[i] = (double)gp[i] - gp0[i];
    numeric_grad(nu, R.eta, Z, klprior_ref_loss, &R);
    snprintf(what, sizeof what, "KL to a learned prior, K %d: deta", K);
    assert_grad_close(what, an, nu, Z);

    /* Each half can be asked for alone, and then the other stays as it was. */
    memcpy(g, g0, sizeof g);
    memcpy(gp, gp0, sizeof gp);
    if (K == 1)
        kl_bernoulli_prior_backward(NULL, gp, l, eta, B, N, scale, prior_scale);
    else
        kl_categorical_prior_backward(g, NULL, lq, lp, B, N, K, scale, prior_scale);
    if (K == 1)
        ck_assert(memcmp(gp, gp0, Z * sizeof *gp) != 0);
    else
        ck_assert(memcmp(gp, gp0, Z * sizeof *gp) == 0 && memcmp(g, g0, B * Z * sizeof *g) != 0);
    free(R.logits);
    free(R.eta);
}

START_TEST(kl_prior_grad)
{
    check_kl_prior_grad(2, 5, 62);
    check_kl_prior_grad(3, 3, 63);
    check_kl_prior_grad(5, 1, 64);
}
END_TEST

/* ---- Gumbel-Softmax and Binary Concrete, noise held fixed ---- */

typedef struct {
    int R, K;
    double *logits, *noise, *proj, tau;
} gs_ref;

static void gs_ref_forward(const gs_ref *G, double *y)
{
    for (int g = 0; g < G->R; g++) {
        double a[16];
        for (int k = 0; k < G->K; k++)
            a[k] = (G->logits[g * G->K + k] + G->noise[g * G->K + k]) / G->tau;
        log_softmax_ref(a, a, G->K);
        for (int k = 0; k < G->K; k++)
            y[g * G->K + k] = exp(a[k]);
    }
}

static double gs_ref_loss(void *ctx)
{
    gs_ref *G = ctx;
    double y[64], s = 0;
    gs_ref_forward(G, y);
    for (int i = 0; i < G->R * G->K; i++)
        s += G->proj[i] * y[i];
    return s;
}

START_TEST(gumbel_softmax_grad)
{
    enum { R = 4, K = 5 };
    const float taus[] = {0.1f, 0.5f, 1.0f, 2.0f, 5.0f};
    rng_t r;
    rng_seed(&r, 61);
    float l[R * K], g[R * K], proj[R * K], y[R * K], d[R * K];
    fill_uniform(l, R * K, -2, 2, &r);
    gumbel_noise(g, R * K, &r);
    fill_uniform(proj, R * K, -1, 1, &r);
    gs_ref G = {R, K, to_double(l, R * K), to_double(g, R * K), to_double(proj, R * K), 0};
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        G.tau = taus[t];
        gumbel_softmax_forward(y, l, g, R, K, taus[t]);
        double want[R * K];
        gs_ref_forward(&G, want);
        char what[64];
        snprintf(what, sizeof what, "gumbel_softmax_forward tau %g", (double)taus[t]);
        assert_close(what, y, want, R * K, 1e-5);
        for (int i = 0; i < R * K; i++)
            d[i] = 777.0f; /* overwritten */
        gumbel_softmax_backward(d, y, proj, R, K, taus[t]);
        double an[R * K], nu[R * K];
        for (int i = 0; i < R * K; i++)
            an[i] = d[i];
        numeric_grad(nu, G.logits, R * K, gs_ref_loss, &G);
        snprintf(what, sizeof what, "gumbel_softmax_backward tau %g", (double)taus[t]);
        assert_grad_close(what, an, nu, R * K);
    }
    free(G.logits);
    free(G.noise);
    free(G.proj);
}
END_TEST

static double bc_ref_loss(void *ctx)
{
    gs_ref *G = ctx; /* R units, K unused */
    double s = 0;
    for (int i = 0; i < G->R; i++)
        s += G->proj[i] * sigmoid_ref((G->logits[i] + G->noise[i]) / G->tau);
    return s;
}

START_TEST(binary_concrete_grad)
{
    enum { n = 12 };
    const float taus[] = {0.1f, 0.5f, 1.0f, 2.0f};
    rng_t r;
    rng_seed(&r, 62);
    float l[n], noise[n], proj[n], z[n], d[n];
    fill_uniform(l, n, -3, 3, &r);
    logistic_noise(noise, n, &r);
    fill_uniform(proj, n, -1, 1, &r);
    gs_ref G = {n, 1, to_double(l, n), to_double(noise, n), to_double(proj, n), 0};
    for (size_t t = 0; t < sizeof taus / sizeof taus[0]; t++) {
        G.tau = taus[t];
        binary_concrete_forward(z, l, noise, n, taus[t]);
        double want[n];
        for (int i = 0; i < n; i++)
            want[i] = sigmoid_ref((G.logits[i] + G.noise[i]) / G.tau);
        char what[64];
        snprintf(what, sizeof what, "binary_concrete_forward tau %g", (double)taus[t]);
        assert_close(what, z, want, n, 1e-6);
        for (int i = 0; i < n; i++)
            d[i] = 777.0f; /* overwritten */
        binary_concrete_backward(d, z, proj, n, taus[t]);
        double an[n], nu[n];
        for (int i = 0; i < n; i++)
            an[i] = d[i];
        numeric_grad(nu, G.logits, n, bc_ref_loss, &G);
        snprintf(what, sizeof what, "binary_concrete_backward tau %g", (double)taus[t]);
        assert_grad_close(what, an, nu, n);
    }
    free(G.logits);
    free(G.noise);
    free(G.proj);
}
END_TEST

static Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, linear_grad_plain);
    tcase_add_test(tc, linear_grad_relu);
    tcase_add_test(tc, bce_forward_values);
    tcase_add_test(tc, bce_extreme_logits);
    tcase_add_test(tc, bce_grad);
    tcase_add_test(tc, stable_elementwise);
    tcase_add_test(tc, nan_propagates);
    tcase_add_test(tc, log_softmax_values);
    tcase_add_test(tc, kl_categorical_brute_force);
    tcase_add_test(tc, kl_categorical_grad);
    tcase_add_test(tc, kl_bernoulli_brute_force);
    tcase_add_test(tc, kl_bernoulli_grad);
    tcase_add_test(tc, kl_prior_brute_force);
    tcase_add_test(tc, kl_prior_grad);
    tcase_add_test(tc, gumbel_softmax_grad);
    tcase_add_test(tc, binary_concrete_grad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(layers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
