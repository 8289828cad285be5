/* test_conv.c: conv.c and net.c against references written here in double
 * precision with plain nested loops.
 *
 * The references compute a conv by its definition (every output pixel sums
 * its taps) and a convT by scattering every input pixel through the kernel,
 * so they share nothing with the im2col / col2im code under test.  Shapes
 * cover strides 1 to 4, paddings 0 to 2, kernels 1 to 5 (one larger than
 * the unpadded input, one smaller than the stride), odd and non-square
 * images, out_pad with and without taps reaching it, and batches above 1.
 *
 * Gradients as in test_layers.c: a scalar loss L = sum(proj * forward(...))
 * with a fixed random projection, the float backward compared with central
 * differences of the double reference (step FD_STEP), elementwise
 *     |a - n| / max(|a| + |n|, REL_FLOOR * max_j max(|a_j|, |n_j|)) < GRAD_TOL.
 * With a ReLU the draws are repeated until every pre-activation is at least
 * KINK from 0, a hundred times what a step of FD_STEP moves it, so that no
 * difference quotient straddles the kink.  Measured errors stay below 1e-5
 * (GSVAE_TEST_VERBOSE=1 prints them); a wrong tap, a transposed weight or a
 * gradient that overwrites instead of adding gives errors of order 1. */
#include "conv.h"
#include "net.h"
#include "rng.h"
#include "testutil.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_STEP 1e-5
#define GRAD_TOL 1e-3
#define REL_FLOOR 1e-2
#define KINK 1e-3
#define FWD_TOL 1e-5

/* ---- helpers ---- */

static void fill_uniform(float *v, size_t n, float lo, float hi, rng_t *r)
{
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (float)rng_uniform_open(r);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}

static float *fnew(size_t n)
{
    return xmalloc(n * sizeof(float));
}

static double *dnew(size_t n)
{
    return xmalloc(n * sizeof(double));
}

static void to_double(double *d, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
}

/* Scratch of exactly n floats, filled with NaN: a read of anything the
 * code did not write first shows in its output, and AddressSanitizer
 * catches a write past the size the code asked for. */
static float *nan_scratch(size_t n)
{
    float *s = fnew(n);
    for (size_t i = 0; i < n; i++)
        s[i] = NAN;
    return s;
}

/* The checks of every backward pass, shared by the suites (testutil.h). */
#define numeric_grad(g, p, n, f, ctx) testutil_numeric_grad(g, p, n, FD_STEP, f, ctx)
#define assert_grad_close(what, a, nu, n) \
    testutil_assert_grad_close(what, a, nu, n, GRAD_TOL, REL_FLOOR)
typedef testutil_loss ref_loss;

#define assert_close testutil_assert_close

/* ---- the reference layers ---- */

/* One layer of any kind, with its own spelling of the shapes. */
typedef struct {
    net_kind kind;
    int B, C, H, W, OC, KS, stride, pad, out_pad, relu;
    int OH, OW; /* linear: the output viewed as OC x OH x OW */
} shape;

/* Output sides from the definitions (not from conv_out_dim). */
static void shape_out(shape *s)
{
    if (s->kind == NET_CONV) {
        s->OH = (s->H + 2 * s->pad - s->KS) / s->stride + 1;
        s->OW = (s->W + 2 * s->pad - s->KS) / s->stride + 1;
    } else if (s->kind == NET_CONVT) {
        s->OH = (s->H - 1) * s->stride - 2 * s->pad + s->KS + s->out_pad;
        s->OW = (s->W - 1) * s->stride - 2 * s->pad + s->KS + s->out_pad;
    }
}

static size_t s_in(const shape *s) { return (size_t)s->B * s->C * s->H * s->W; }
static size_t s_out(const shape *s) { return (size_t)s->B * s->OC * s->OH * s->OW; }
static size_t s_nb(const shape *s)
{
    return s->kind == NET_LINEAR ? (size_t)s->OC * s->OH * s->OW : (size_t)s->OC;
}
static size_t s_nw(const shape *s)
{
    if (s->kind == NET_LINEAR)
        return s_nb(s) * s->C * s->H * s->W;
    return (size_t)s->OC * s->C * s->KS * s->KS;
}

/* out = layer(in); *min_pre lowered to the smallest |pre-activation| of a
 * ReLU layer, *n_off counts its units at 0. */
static void ref_layer(const shape *s, double *out, const double *in, const double *w,
                      const double *b, double *min_pre, int *n_off)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, OC = s->OC, OH = s->OH, OW = s->OW;
    int K = s->KS, st = s->stride, p = s->pad;
    size_t per_out = (size_t)OC * OH * OW, per_in = (size_t)C * H * W;
    for (int e = 0; e < B; e++) {
        const double *x = in + e * per_in;
        double *y = out + e * per_out;
        if (s->kind == NET_LINEAR) {
            for (size_t o = 0; o < per_out; o++) {
                double a = b[o];
                for (size_t c = 0; c < per_in; c++)
                    a += w[o * per_in + c] * x[c];
                y[o] = a;
            }
        } else if (s->kind == NET_CONV) {
            for (int o = 0; o < OC; o++)
                for (int oy = 0; oy < OH; oy++)
                    for (int ox = 0; ox < OW; ox++) {
                        double a = b[o];
                        for (int c = 0; c < C; c++)
                            for (int i = 0; i < K; i++)
                                for (int j = 0; j < K; j++) {
                                    int iy = oy * st - p + i, ix = ox * st - p + j;
                                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                        a += w[((o * C + c) * K + i) * K + j] *
                                             x[(c * H + iy) * W + ix];
                                }
                        y[(o * OH + oy) * OW + ox] = a;
                    }
        } else {
            for (int o = 0; o < OC; o++)
                for (int q = 0; q < OH * OW; q++)
                    y[o * OH * OW + q] = b[o];
            for (int c = 0; c < C; c++)
                for (int iy = 0; iy < H; iy++)
                    for (int ix = 0; ix < W; ix++)
                        for (int o = 0; o < OC; o++)
                            for (int i = 0; i < K; i++)
                                for (int j = 0; j < K; j++) {
                                    int oy = iy * st - p + i, ox = ix * st - p + j;
                                    if (oy >= 0 && oy < OH && ox >= 0 && ox < OW)
                                        y[(o * OH + oy) * OW + ox] +=
                                            x[(c * H + iy) * W + ix] *
                                            w[((c * OC + o) * K + i) * K + j];
                                }
        }
    }
    if (!s->relu)
        return;
    for (size_t i = 0; i < (size_t)B * per_out; i++) {
        *min_pre = fmin(*min_pre, fabs(out[i]));
        if (out[i] <= 0) {
            out[i] = 0;
            (*n_off)++;
        }
    }
}

/* The code under test for one conv or convT layer. */
static void run_forward(const shape *s, float *out, const float *in, const float *w,
                        const float *b, float *scratch)
{
    if (s->kind == NET_CONV)
        conv_forward(out, in, w, b, scratch, s->B, s->C, s->H, s->W, s->OC, s->KS, s->stride,
                     s->pad, s->relu);
    else
        convt_forward(out, in, w, b, scratch, s->B, s->C, s->H, s->W, s->OC, s->KS, s->stride,
                      s->pad, s->out_pad, s->relu);
}

static void run_backward(const shape *s, float *din, float *dw, float *db, float *dout,
                         const float *out, const float *in, const float *w, float *scratch)
{
    if (s->kind == NET_CONV)
        conv_backward(din, dw, db, dout, out, in, w, scratch, s->B, s->C, s->H, s->W, s->OC,
                      s->KS, s->stride, s->pad, s->relu);
    else
        convt_backward(din, dw, db, dout, out, in, w, scratch, s->B, s->C, s->H, s->W, s->OC,
                       s->KS, s->stride, s->pad, s->out_pad, s->relu);
}

static size_t scratch_for(const shape *s)
{
    return s->kind == NET_CONV ? conv_scratch_floats(s->C, s->H, s->W, s->KS, s->stride, s->pad)
                               : convt_scratch_floats(s->H, s->W, s->OC, s->KS);
}

static const char *describe(const shape *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s B%d C%d %dx%d OC%d k%d s%d p%d op%d relu%d",
             s->kind == NET_CONV ? "conv" : "convT", s->B, s->C, s->H, s->W, s->OC, s->KS,
             s->stride, s->pad, s->out_pad, s->relu);
    return buf;
}

/* ---- the shapes ---- */

#define CONV(B, C, H, W, OC, K, S, P) {NET_CONV, B, C, H, W, OC, K, S, P, 0, 0, 0, 0}
#define CONVT(B, C, H, W, OC, K, S, P, OP) {NET_CONVT, B, C, H, W, OC, K, S, P, OP, 0, 0, 0}

static const shape conv_shapes[] = {
    CONV(1, 1, 5, 5, 1, 3, 1, 0),
    CONV(2, 3, 7, 6, 4, 3, 2, 1),
    CONV(3, 2, 8, 8, 3, 5, 2, 2),
    CONV(2, 2, 9, 7, 2, 4, 3, 1),
    CONV(1, 4, 6, 5, 3, 1, 1, 0),  /* 1x1 */
    CONV(2, 1, 5, 9, 2, 2, 2, 0),  /* even kernel, wide image */
    CONV(2, 2, 4, 3, 2, 5, 1, 2),  /* kernel larger than the unpadded image */
    CONV(1, 2, 7, 7, 2, 3, 4, 1),  /* stride larger than the kernel: skipped pixels */
    CONV(2, 2, 1, 1, 3, 1, 1, 0),  /* one pixel */
    CONV(2, 1, 3, 3, 2, 3, 1, 0),  /* one output pixel */
    CONV(2, 2, 5, 5, 6, 3, 2, 1),  /* 6 channels: the bias gradient's block of 4 and 2 more */
};

static const shape convt_shapes[] = {
    CONVT(1, 1, 3, 3, 1, 3, 1, 0, 0),
    CONVT(2, 3, 4, 3, 2, 3, 2, 1, 1),  /* 'same'-style doubling */
    CONVT(2, 2, 5, 4, 3, 4, 2, 1, 0),
    CONVT(3, 2, 3, 5, 2, 5, 3, 2, 2),
    CONVT(1, 3, 4, 4, 2, 1, 1, 0, 0),  /* 1x1 */
    CONVT(2, 2, 3, 3, 2, 2, 2, 0, 1),  /* out_pad > pad: a bias-only row and column */
    CONVT(1, 2, 2, 3, 1, 3, 4, 1, 3),  /* stride larger than the kernel: gaps */
    CONVT(2, 1, 1, 1, 3, 3, 2, 0, 0),  /* one input pixel */
    CONVT(2, 2, 4, 2, 2, 3, 1, 1, 0),  /* stride 1 with padding: same size */
    CONVT(2, 2, 3, 3, 7, 3, 2, 1, 1),  /* 7 channels: the bias gradient's block of 4 and 3 more */
};

/* The first layers of the MNIST networks (results/semisup/networks.md),
 * forward only: a finite difference over 28 x 28 would be slow. */
static const shape mnist_shapes[] = {
    CONV(2, 1, 28, 28, 4, 3, 2, 0),
    CONV(2, 4, 13, 13, 3, 3, 2, 0),
    CONVT(2, 3, 7, 7, 4, 3, 2, 1, 1),
    CONVT(2, 4, 14, 14, 2, 3, 2, 1, 1),
    CONVT(2, 2, 28, 28, 1, 3, 1, 1, 0),
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- one layer: forward and gradients ---- */

typedef struct {
    shape s;
    double *in, *w, *b, *proj, *out;
    double min_pre;
    int n_off;
} layer_ref;

static void layer_ref_forward(layer_ref *L)
{
    L->min_pre = INFINITY;
    L->n_off = 0;
    ref_layer(&L->s, L->out, L->in, L->w, L->b, &L->min_pre, &L->n_off);
}

static double layer_ref_loss(void *ctx)
{
    layer_ref *L = ctx;
    layer_ref_forward(L);
    double s = 0;
    for (size_t i = 0; i < s_out(&L->s); i++)
        s += L->proj[i] * L->out[i];
    return s;
}

/* Forward against the reference; with fd, every gradient by finite
 * differences, the accumulate / overwrite contract and din = NULL. */
static void check_layer(shape s, int relu, int fd, uint64_t seed)
{
    s.relu = relu;
    shape_out(&s);
    char name[128], what[192];
    describe(&s, name, sizeof name);
    ck_assert_msg(s.OH >= 1 && s.OW >= 1, "%s: bad test shape", name);
    if (s.kind == NET_CONV)
        ck_assert_int_eq(conv_out_dim(s.H, s.KS, s.stride, s.pad), s.OH);
    else
        ck_assert_int_eq(convt_out_dim(s.W, s.KS, s.stride, s.pad, s.out_pad), s.OW);

    rng_t r;
    rng_seed(&r, seed);
    size_t nin = s_in(&s), nout = s_out(&s), nw = s_nw(&s), nb = s_nb(&s);
    float *in = fnew(nin), *w = fnew(nw), *b = fnew(nb), *proj = fnew(nout);
    float *out = fnew(nout), *dout = fnew(nout), *din = fnew(nin);
    float *dw = fnew(nw), *db = fnew(nb), *dw0 = fnew(nw), *db0 = fnew(nb);
    float *scratch = nan_scratch(scratch_for(&s));
    layer_ref L = {.s = s};
    L.in = dnew(nin);
    L.w = dnew(nw);
    L.b = dnew(nb);
    L.proj = dnew(nout);
    L.out = dnew(nout);

    for (int tries = 0;; tries++) {
        ck_assert_msg(tries < 2000, "%s: no draw keeps off the ReLU kink", name);
        fill_uniform(in, nin, -1, 1, &r);
        fill_uniform(w, nw, -1, 1, &r);
        fill_uniform(b, nb, -0.5f, 0.5f, &r);
        fill_uniform(proj, nout, -1, 1, &r);
        to_double(L.in, in, nin);
        to_double(L.w, w, nw);
        to_double(L.b, b, nb);
        to_double(L.proj, proj, nout);
        layer_ref_forward(&L);
        if (!relu || (L.min_pre > KINK && L.n_off > 0 && L.n_off < (int)nout))
            break;
    }

    run_forward(&s, out, in, w, b, scratch);
    snprintf(what, sizeof what, "%s: forward", name);
    assert_close(what, out, L.out, nout, FWD_TOL);
    if (!fd)
        goto done;

    /* din is overwritten: start it at garbage.  dw, db accumulate: start
     * them at known values and subtract. */
    fill_uniform(dw0, nw, -1, 1, &r);
    fill_uniform(db0, nb, -1, 1, &r);
    memcpy(dw, dw0, nw * sizeof *dw);
    memcpy(db, db0, nb * sizeof *db);
    for (size_t i = 0; i < nin; i++)
        din[i] = 1234.5f;
    memcpy(dout, proj, nout * sizeof *dout);
    run_backward(&s, din, dw, db, dout, out, in, w, scratch);
    for (size_t i = 0; i < nout; i++)
        ck_assert_msg(dout[i] == (relu && out[i] == 0.0f ? 0.0f : proj[i]),
                      "%s: dout[%zu] = %g after backward (out %g, proj %g)", name, i,
                      (double)dout[i], (double)out[i], (double)proj[i]);

    size_t most = nin > nw ? nin : nw;
    double *an = dnew(most), *nu = dnew(most);
    to_double(an, din, nin);
    numeric_grad(nu, L.in, nin, layer_ref_loss, &L);
    snprintf(what, sizeof what, "%s: din", name);
    assert_grad_close(what, an, nu, nin);

    for (size_t i = 0; i < nw; i++)
        an[i] = (double)dw[i] - dw0[i];
    numeric_grad(nu, L.w, nw, layer_ref_loss, &L);
    snprintf(what, sizeof what, "%s: dw", name);
    assert_grad_close(what, an, nu, nw);

    for (size_t i = 0; i < nb; i++)
        an[i] = (double)db[i] - db0[i];
    numeric_grad(nu, L.b, nb, layer_ref_loss, &L);
    snprintf(what, sizeof what, "%s: db", name);
    assert_grad_close(what, an, nu, nb);

    /* din = NULL leaves the parameter gradients as they were. */
    float *dw1 = fnew(nw), *db1 = fnew(nb);
    memcpy(dw1, dw0, nw * sizeof *dw1);
    memcpy(db1, db0, nb * sizeof *db1);
    memcpy(dout, proj, nout * sizeof *dout);
    run_backward(&s, NULL, dw1, db1, dout, out, in, w, scratch);
    for (size_t i = 0; i < nw; i++)
        ck_assert_msg(fabsf(dw1[i] - dw[i]) <= 1e-5f * (1 + fabsf(dw[i])),
                      "%s: din NULL: dw[%zu] %g, with din %g", name, i, (double)dw1[i],
                      (double)dw[i]);
    for (size_t i = 0; i < nb; i++)
        ck_assert_msg(db1[i] == db[i], "%s: din NULL: db[%zu] %g, with din %g", name, i,
                      (double)db1[i], (double)db[i]);
    free(dw1);
    free(db1);
    free(an);
    free(nu);
done:
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
    free(scratch);
    free(L.in);
    free(L.w);
    free(L.b);
    free(L.proj);
    free(L.out);
}

START_TEST(out_dims)
{
    ck_assert_int_eq(conv_out_dim(5, 3, 1, 0), 3);
    ck_assert_int_eq(conv_out_dim(28, 3, 2, 0), 13);
    ck_assert_int_eq(conv_out_dim(13, 3, 2, 0), 6);
    ck_assert_int_eq(conv_out_dim(7, 3, 2, 1), 4);
    ck_assert_int_eq(conv_out_dim(4, 5, 1, 1), 2);
    ck_assert_int_eq(conv_out_dim(1, 1, 1, 0), 1);
    ck_assert_int_eq(conv_out_dim(4, 5, 1, 0), 0); /* kernel does not fit */
    ck_assert_int_eq(conv_out_dim(0, 1, 1, 0), 0);
    ck_assert_int_eq(conv_out_dim(5, 0, 1, 0), 0);
    ck_assert_int_eq(conv_out_dim(5, 3, 0, 0), 0);
    ck_assert_int_eq(conv_out_dim(5, 3, 1, -1), 0);
    ck_assert_int_eq(convt_out_dim(7, 3, 2, 1, 1), 14);
    ck_assert_int_eq(convt_out_dim(14, 3, 2, 1, 1), 28);
    ck_assert_int_eq(convt_out_dim(28, 3, 1, 1, 0), 28);
    ck_assert_int_eq(convt_out_dim(7, 4, 2, 1, 0), 14);
    ck_assert_int_eq(convt_out_dim(1, 1, 1, 0, 0), 1);
    ck_assert_int_eq(convt_out_dim(1, 1, 1, 1, 0), 0); /* -1: nothing left */
    ck_assert_int_eq(convt_out_dim(7, 3, 2, 1, 2), 0); /* out_pad >= stride */
    ck_assert_int_eq(convt_out_dim(7, 3, 2, 1, -1), 0);
    ck_assert_int_eq(convt_out_dim(7, 3, 0, 1, 0), 0);
    /* Every convT output maps back onto its input under the conv with the
     * same kernel, stride and padding (what the adjoint needs). */
    for (int in = 1; in <= 9; in++)
        for (int k = 1; k <= 5; k++)
            for (int st = 1; st <= 4; st++)
                for (int p = 0; p <= 2; p++)
                    for (int op = 0; op < st; op++) {
                        int o = convt_out_dim(in, k, st, p, op);
                        if (o)
                            ck_assert_int_eq(conv_out_dim(o, k, st, p), in);
                    }
    ck_assert_uint_eq(conv_scratch_floats(3, 7, 6, 3, 2, 1), (size_t)3 * 9 * 4 * 3);
    ck_assert_uint_eq(conv_scratch_floats(3, 4, 4, 5, 1, 0), 0);
    ck_assert_uint_eq(convt_scratch_floats(7, 7, 64, 3), (size_t)64 * 9 * 49);
}
END_TEST

START_TEST(conv_forward_shapes)
{
    for (int i = 0; i < COUNT(conv_shapes); i++)
        for (int relu = 0; relu <= 1; relu++)
            check_layer(conv_shapes[i], relu, 0, 100 + 2 * i + relu);
    for (int i = 0; i < COUNT(mnist_shapes); i++)
        check_layer(mnist_shapes[i], 1, 0, 200 + i);
}
END_TEST

START_TEST(convt_forward_shapes)
{
    for (int i = 0; i < COUNT(convt_shapes); i++)
        for (int relu = 0; relu <= 1; relu++)
            check_layer(convt_shapes[i], relu, 0, 300 + 2 * i + relu);
}
END_TEST

START_TEST(conv_grad)
{
    for (int i = 0; i < COUNT(conv_shapes); i++)
        for (int relu = 0; relu <= 1; relu++)
            check_layer(conv_shapes[i], relu, 1, 400 + 2 * i + relu);
}
END_TEST

START_TEST(convt_grad)
{
    for (int i = 0; i < COUNT(convt_shapes); i++)
        for (int relu = 0; relu <= 1; relu++)
            check_layer(convt_shapes[i], relu, 1, 500 + 2 * i + relu);
}
END_TEST

/* B = 0 writes nothing and touches no gradient. */
START_TEST(empty_batch)
{
    float w[2 * 3 * 9], b[2], dw[2 * 3 * 9], db[2], scratch[3 * 9 * 16];
    float sentinel = 7.0f, out = sentinel, in = sentinel, dout = sentinel, din = sentinel;
    for (int i = 0; i < 2 * 3 * 9; i++)
        w[i] = dw[i] = 1.0f;
    b[0] = b[1] = db[0] = db[1] = 1.0f;
    conv_forward(&out, &in, w, b, scratch, 0, 3, 6, 6, 2, 3, 1, 0, 1);
    conv_backward(&din, dw, db, &dout, &out, &in, w, scratch, 0, 3, 6, 6, 2, 3, 1, 0, 1);
    convt_forward(&out, &in, w, b, scratch, 0, 2, 4, 4, 3, 3, 1, 0, 0, 1);
    convt_backward(&din, dw, db, &dout, &out, &in, w, scratch, 0, 2, 4, 4, 3, 3, 1, 0, 0, 1);
    ck_assert(out == sentinel && din == sentinel && dout == sentinel);
    for (int i = 0; i < 2 * 3 * 9; i++)
        ck_assert(dw[i] == 1.0f);
    ck_assert(db[0] == 1.0f && db[1] == 1.0f);
}
END_TEST

/* A NaN at the input reaches the output through the ReLU (the training
 * loop's NaN check relies on it). */
START_TEST(nan_propagates)
{
    float in[9] = {0}, w[9], b[1] = {-100.0f}, out[1], scratch[9];
    for (int i = 0; i < 9; i++)
        w[i] = 1.0f;
    in[4] = NAN;
    conv_forward(out, in, w, b, scratch, 1, 1, 3, 3, 1, 3, 1, 0, 1);
    ck_assert(isnan(out[0]));
    float tin[1] = {NAN}, tout[9], tscratch[9];
    convt_forward(tout, tin, w, b, tscratch, 1, 1, 1, 1, 1, 3, 1, 0, 0, 1);
    for (int i = 0; i < 9; i++)
        ck_assert(isnan(tout[i]));
}
END_TEST

/* <conv(x), y> = <x, convT(y)> with one weight array, zero biases and the
 * convT's out_pad chosen to give back x's size. */
START_TEST(convt_is_adjoint_of_conv)
{
    const shape *all[2] = {conv_shapes, mnist_shapes};
    int counts[2] = {COUNT(conv_shapes), 2};
    rng_t r;
    rng_seed(&r, 600);
    for (int set = 0; set < 2; set++)
        for (int k = 0; k < counts[set]; k++) {
            shape s = all[set][k];
            shape_out(&s);
            int op = (s.H + 2 * s.pad - s.KS) % s.stride;
            int opw = (s.W + 2 * s.pad - s.KS) % s.stride;
            if (op != opw)
                continue; /* one out_pad serves both axes here */
            char name[128];
            describe(&s, name, sizeof name);
            size_t nx = s_in(&s), ny = s_out(&s), nw = s_nw(&s);
            float *x = fnew(nx), *y = fnew(ny), *w = fnew(nw), *cx = fnew(ny), *ty = fnew(nx);
            float *zb = calloc((size_t)(s.OC > s.C ? s.OC : s.C), sizeof(float));
            ck_assert_ptr_nonnull(zb);
            fill_uniform(x, nx, -1, 1, &r);
            fill_uniform(y, ny, -1, 1, &r);
            fill_uniform(w, nw, -1, 1, &r);
            float *sc = nan_scratch(conv_scratch_floats(s.C, s.H, s.W, s.KS, s.stride, s.pad));
            conv_forward(cx, x, w, zb, sc, s.B, s.C, s.H, s.W, s.OC, s.KS, s.stride, s.pad, 0);
            free(sc);
            ck_assert_int_eq(convt_out_dim(s.OH, s.KS, s.stride, s.pad, op), s.H);
            ck_assert_int_eq(convt_out_dim(s.OW, s.KS, s.stride, s.pad, op), s.W);
            sc = nan_scratch(convt_scratch_floats(s.OH, s.OW, s.C, s.KS));
            convt_forward(ty, y, w, zb, sc, s.B, s.OC, s.OH, s.OW, s.C, s.KS, s.stride, s.pad,
                          op, 0);
            free(sc);
            double lhs = 0, rhs = 0, ncx = 0, ny2 = 0, nx2 = 0, nty = 0;
            for (size_t i = 0; i < ny; i++) {
                lhs += (double)cx[i] * y[i];
                ncx += (double)cx[i] * cx[i];
                ny2 += (double)y[i] * y[i];
            }
            for (size_t i = 0; i < nx; i++) {
                rhs += (double)x[i] * ty[i];
                nx2 += (double)x[i] * x[i];
                nty += (double)ty[i] * ty[i];
            }
            /* Each side is good to float rounding of its Cauchy-Schwarz bound. */
            double tol = 1e-5 * (sqrt(ncx * ny2) + sqrt(nx2 * nty));
            ck_assert_msg(fabs(lhs - rhs) <= tol, "%s: <conv x, y> %.9g, <x, convT y> %.9g",
                          name, lhs, rhs);
            free(x);
            free(y);
            free(w);
            free(cx);
            free(ty);
            free(zb);
        }
}
END_TEST

/* ---- the network ---- */

/* A small network with every kind of layer and every join between kinds:
 * 2x7x6 -conv-> 3x4x3 -linear-> 5 -linear-> 2x3x2 -convT-> 2x6x4
 * -convT-> 1x7x5 -conv-> 2x7x5. */
static const net_layer_spec small_spec[] = {
    {.kind = NET_CONV, .out = 3, .ks = 3, .stride = 2, .pad = 1, .relu = 1},
    {.kind = NET_LINEAR, .out = 5, .relu = 1},
    {.kind = NET_LINEAR, .out = 2, .out_h = 3, .out_w = 2, .relu = 1},
    {.kind = NET_CONVT, .out = 2, .ks = 3, .stride = 2, .pad = 1, .out_pad = 1, .relu = 1},
    {.kind = NET_CONVT, .out = 1, .ks = 2, .relu = 1},
    {.kind = NET_CONV, .out = 2, .ks = 3, .pad = 1},
};
enum { SMALL_LAYERS = 6, SMALL_C = 2, SMALL_H = 7, SMALL_W = 6 };
/* The shapes written out by hand: C H W OC OH OW per layer. */
static const int small_shapes[SMALL_LAYERS][6] = {
    {2, 7, 6, 3, 4, 3}, {3, 4, 3, 5, 1, 1}, {5, 1, 1, 2, 3, 2},
    {2, 3, 2, 2, 6, 4}, {2, 6, 4, 1, 7, 5}, {1, 7, 5, 2, 7, 5},
};

static shape layer_shape(const net_t *n, int i, int B)
{
    const net_layer *L = &n->layer[i];
    shape s = {L->spec.kind, B, L->C, L->H, L->W, L->OC, L->spec.ks, L->spec.stride,
               L->spec.pad, L->spec.out_pad, L->spec.relu, L->OH, L->OW};
    return s;
}

typedef struct {
    const net_t *n;
    int B;
    double *in, *params, *proj;
    double *act[NET_MAX_LAYERS];
    double min_pre;
    int n_off;
} net_ref;

static void net_ref_forward(net_ref *R)
{
    R->min_pre = INFINITY;
    R->n_off = 0;
    for (int i = 0; i < R->n->nlayers; i++) {
        const net_layer *L = &R->n->layer[i];
        shape s = layer_shape(R->n, i, R->B);
        ref_layer(&s, R->act[i], i ? R->act[i - 1] : R->in, R->params + L->w, R->params + L->b,
                  &R->min_pre, &R->n_off);
    }
}

static double net_ref_loss(void *ctx)
{
    net_ref *R = ctx;
    net_ref_forward(R);
    double s = 0;
    const double *out = R->act[R->n->nlayers - 1];
    for (size_t i = 0; i < (size_t)R->B * R->n->out_size; i++)
        s += R->proj[i] * out[i];
    return s;
}

START_TEST(net_shapes_and_layout)
{
    char err[ERR_LEN];
    net_t n;
    ck_assert_msg(net_init(&n, SMALL_C, SMALL_H, SMALL_W, small_spec, SMALL_LAYERS, err) == 0,
                  "%s", err);
    ck_assert_ptr_null(n.params);
    size_t off = 0;
    for (int i = 0; i < SMALL_LAYERS; i++) {
        const net_layer *L = &n.layer[i];
        const int *want = small_shapes[i];
        ck_assert_msg(L->C == want[0] && L->H == want[1] && L->W == want[2] &&
                          L->OC == want[3] && L->OH == want[4] && L->OW == want[5],
                      "layer %d: %dx%dx%d -> %dx%dx%d", i, L->C, L->H, L->W, L->OC, L->OH,
                      L->OW);
        shape s = layer_shape(&n, i, 1);
        ck_assert_uint_eq(L->nw, s_nw(&s));
        ck_assert_uint_eq(L->nb, s_nb(&s));
        /* one weight then its bias, layer after layer, no gaps */
        ck_assert_uint_eq(L->w, off);
        ck_assert_uint_eq(L->b, off + L->nw);
        off = L->b + L->nb;
    }
    ck_assert_uint_eq(n.nparams, off);
    ck_assert_uint_eq(n.in_size, (size_t)SMALL_C * SMALL_H * SMALL_W);
    ck_assert_uint_eq(n.out_size, 2 * 7 * 5);

    /* Bound into a bigger buffer at an offset: Glorot writes exactly the
     * network's span, within its bounds, biases 0. */
    size_t pad = 5, total = n.nparams + 2 * pad;
    float *outer = fnew(total), *outer_g = fnew(total);
    for (size_t i = 0; i < total; i++)
        outer[i] = outer_g[i] = -99.0f;
    net_bind(&n, outer + pad, outer_g + pad);
    rng_t r;
    rng_seed(&r, 700);
    net_init_glorot(&n, &r);
    for (size_t i = 0; i < pad; i++) {
        ck_assert(outer[i] == -99.0f && outer[pad + n.nparams + i] == -99.0f);
    }
    for (int i = 0; i < SMALL_LAYERS; i++) {
        const net_layer *L = &n.layer[i];
        double fan = L->spec.kind == NET_LINEAR
                         ? (double)(L->in_size + L->out_size)
                         : (double)(L->C + L->OC) * L->spec.ks * L->spec.ks;
        float a = (float)sqrt(6.0 / fan);
        for (size_t j = 0; j < L->nw; j++)
            ck_assert_msg(fabsf(n.params[L->w + j]) < a, "layer %d w[%zu] = %g beyond %g", i, j,
                          (double)n.params[L->w + j], (double)a);
        for (size_t j = 0; j < L->nb; j++)
            ck_assert(n.params[L->b + j] == 0.0f);
    }
    /* The same seed draws the same weights into an owned network. */
    net_t m;
    ck_assert(net_init(&m, SMALL_C, SMALL_H, SMALL_W, small_spec, SMALL_LAYERS, err) == 0);
    ck_assert_msg(net_alloc(&m, err) == 0, "%s", err);
    for (size_t i = 0; i < m.nparams; i++)
        ck_assert(m.params[i] == 0.0f && m.grads[i] == 0.0f);
    rng_seed(&r, 700);
    net_init_glorot(&m, &r);
    ck_assert(memcmp(m.params, n.params, n.nparams * sizeof(float)) == 0);
    net_free(&m);
    ck_assert_ptr_null(m.params);
    net_free(&m); /* twice is harmless */
    net_free(&n); /* bound: frees nothing, the pointers stay */
    ck_assert_ptr_eq(n.params, outer + pad);
    free(outer);
    free(outer_g);
}
END_TEST

/* The Glorot draw of a large conv layer has the variance a^2 / 3 of
 * U(-a, a), to within sampling error. */
START_TEST(net_glorot_variance)
{
    char err[ERR_LEN];
    net_layer_spec spec[1] = {{.kind = NET_CONV, .out = 64, .ks = 3}};
    net_t n;
    ck_assert(net_init(&n, 32, 5, 5, spec, 1, err) == 0);
    ck_assert(net_alloc(&n, err) == 0);
    rng_t r;
    rng_seed(&r, 701);
    net_init_glorot(&n, &r);
    double a2 = 6.0 / ((32 + 64) * 9), s = 0, s2 = 0;
    size_t nw = n.layer[0].nw;
    for (size_t i = 0; i < nw; i++) {
        s += n.params[i];
        s2 += (double)n.params[i] * n.params[i];
    }
    double mean = s / nw, var = s2 / nw - mean * mean;
    ck_assert_msg(fabs(var / (a2 / 3) - 1) < 0.05, "variance %g, want %g", var, a2 / 3);
    ck_assert_msg(fabs(mean) < 4 * sqrt(a2 / 3 / nw), "mean %g", mean);
    net_free(&n);
}
END_TEST

static void check_net(const net_layer_spec *spec, int nlayers, int C, int H, int W, int B,
                      int max_B, uint64_t seed)
{
    char err[ERR_LEN], what[128];
    net_t n;
    ck_assert_msg(net_init(&n, C, H, W, spec, nlayers, err) == 0, "%s", err);
    ck_assert_msg(net_alloc(&n, err) == 0, "%s", err);
    net_ws ws;
    ck_assert_msg(net_ws_init(&ws, &n, max_B, err) == 0, "%s", err);
    rng_t r;
    rng_seed(&r, seed);
    size_t nin = (size_t)B * n.in_size, nout = (size_t)B * n.out_size, np = n.nparams;
    float *in = fnew(nin), *proj = fnew(nout), *dout = fnew(nout), *din = fnew(nin);
    float *g0 = fnew(np), *g1 = fnew(np);
    net_ref R = {.n = &n, .B = B};
    R.in = dnew(nin);
    R.params = dnew(np);
    R.proj = dnew(nout);
    for (int i = 0; i < nlayers; i++)
        R.act[i] = dnew((size_t)B * n.layer[i].out_size);

    for (int tries = 0;; tries++) {
        ck_assert_msg(tries < 5000, "net: no draw keeps off the ReLU kinks");
        net_init_glorot(&n, &r);
        for (int i = 0; i < nlayers; i++)
            fill_uniform(n.params + n.layer[i].b, n.layer[i].nb, -0.3f, 0.3f, &r);
        fill_uniform(in, nin, -1, 1, &r);
        fill_uniform(proj, nout, -1, 1, &r);
        to_double(R.in, in, nin);
        to_double(R.params, n.params, np);
        to_double(R.proj, proj, nout);
        net_ref_forward(&R);
        if (R.min_pre > KINK)
            break;
    }

    const float *out = net_forward(&n, &ws, in, B);
    ck_assert_ptr_eq(out, ws.act[nlayers - 1]);
    assert_close("net forward", out, R.act[nlayers - 1], nout, FWD_TOL);
    for (int i = 0; i < nlayers - 1; i++) {
        snprintf(what, sizeof what, "net forward, layer %d", i);
        assert_close(what, ws.act[i], R.act[i], (size_t)B * n.layer[i].out_size, FWD_TOL);
    }

    /* The gradients from zero (the first layer's are a thousandth of the
     * last's here, so a start at O(1) values would round them away); din
     * starts at garbage. */
    memset(n.grads, 0, np * sizeof *n.grads);
    for (size_t i = 0; i < nin; i++)
        din[i] = 1234.5f;
    memcpy(dout, proj, nout * sizeof *dout);
    net_backward(&n, &ws, din, in, dout, B);

    double *an = dnew(np > nin ? np : nin), *nu = dnew(np > nin ? np : nin);
    to_double(an, din, nin);
    numeric_grad(nu, R.in, nin, net_ref_loss, &R);
    snprintf(what, sizeof what, "net din (B%d of %d)", B, max_B);
    assert_grad_close(what, an, nu, nin);
    for (int i = 0; i < nlayers; i++) {
        const net_layer *L = &n.layer[i];
        for (size_t j = 0; j < L->nw; j++)
            an[j] = n.grads[L->w + j];
        numeric_grad(nu, R.params + L->w, L->nw, net_ref_loss, &R);
        snprintf(what, sizeof what, "net layer %d dw (B%d)", i, B);
        assert_grad_close(what, an, nu, L->nw);
        for (size_t j = 0; j < L->nb; j++)
            an[j] = n.grads[L->b + j];
        numeric_grad(nu, R.params + L->b, L->nb, net_ref_loss, &R);
        snprintf(what, sizeof what, "net layer %d db (B%d)", i, B);
        assert_grad_close(what, an, nu, L->nb);
    }

    /* A second backward from the same forward, without din, adds the same
     * gradient onto whatever the gradients hold. */
    memcpy(g1, n.grads, np * sizeof *g1);
    fill_uniform(g0, np, -1, 1, &r);
    memcpy(n.grads, g0, np * sizeof *g0);
    memcpy(dout, proj, nout * sizeof *dout);
    net_backward(&n, &ws, NULL, in, dout, B);
    for (size_t j = 0; j < np; j++)
        ck_assert_msg(fabsf(n.grads[j] - (g0[j] + g1[j])) <= 1e-6f * (fabsf(g0[j]) + fabsf(g1[j])),
                      "second backward: grad[%zu] = %.9g from %.9g, first backward %.9g", j,
                      (double)n.grads[j], (double)g0[j], (double)g1[j]);
    /* B = 0: nothing moves. */
    memcpy(g1, n.grads, np * sizeof *g1);
    net_forward(&n, &ws, in, 0);
    net_backward(&n, &ws, din, in, dout, 0);
    ck_assert(memcmp(g1, n.grads, np * sizeof *g1) == 0);

    free(an);
    free(nu);
    free(in);
    free(proj);
    free(dout);
    free(din);
    free(g0);
    free(g1);
    free(R.in);
    free(R.params);
    free(R.proj);
    for (int i = 0; i < nlayers; i++)
        free(R.act[i]);
    net_ws_free(&ws);
    net_ws_free(&ws);
    net_free(&n);
}

START_TEST(net_grad)
{
    check_net(small_spec, SMALL_LAYERS, SMALL_C, SMALL_H, SMALL_W, 3, 3, 800);
    /* a batch smaller than the workspace's */
    check_net(small_spec, SMALL_LAYERS, SMALL_C, SMALL_H, SMALL_W, 2, 5, 801);
    /* one layer, batch 1 */
    check_net(small_spec, 1, SMALL_C, SMALL_H, SMALL_W, 1, 1, 802);
    /* a ReLU on the output layer */
    net_layer_spec last_relu[2] = {small_spec[0], small_spec[1]};
    check_net(last_relu, 2, SMALL_C, SMALL_H, SMALL_W, 2, 2, 803);
}
END_TEST

/* The three MNIST networks of results/semisup/networks.md: their shapes,
 * and one forward and backward at batch 2 (AddressSanitizer watches the
 * workspace at full size). */
START_TEST(net_mnist_networks)
{
    enum { K = 10, Z = 50 };
    const net_layer_spec conv_trunk[2] = {
        {.kind = NET_CONV, .out = 32, .ks = 3, .stride = 2, .relu = 1},
        {.kind = NET_CONV, .out = 64, .ks = 3, .stride = 2, .relu = 1},
    };
    const net_layer_spec classifier[3] = {conv_trunk[0], conv_trunk[1],
                                          {.kind = NET_LINEAR, .out = K}};
    const net_layer_spec decoder[4] = {
        {.kind = NET_LINEAR, .out = 32, .out_h = 7, .out_w = 7, .relu = 1},
        {.kind = NET_CONVT, .out = 64, .ks = 3, .stride = 2, .pad = 1, .out_pad = 1, .relu = 1},
        {.kind = NET_CONVT, .out = 32, .ks = 3, .stride = 2, .pad = 1, .out_pad = 1, .relu = 1},
        {.kind = NET_CONVT, .out = 1, .ks = 3, .stride = 1, .pad = 1},
    };
    struct {
        const char *name;
        const net_layer_spec *spec;
        int nlayers, C, H, W;
        size_t out_size, nparams;
    } nets[] = {
        {"q(y|x)", classifier, 3, 1, 28, 28, K, 320 + 18496 + 23050},
        {"q(z|x,y) trunk", conv_trunk, 2, 1, 28, 28, 64 * 6 * 6, 320 + 18496},
        {"p(x|y,z)", decoder, 4, Z + K, 1, 1, 784, 95648 + 18496 + 18464 + 289},
    };
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, 900);
    for (int k = 0; k < 3; k++) {
        net_t n;
        ck_assert_msg(net_init(&n, nets[k].C, nets[k].H, nets[k].W, nets[k].spec,
                               nets[k].nlayers, err) == 0, "%s: %s", nets[k].name, err);
        ck_assert_msg(n.out_size == nets[k].out_size && n.nparams == nets[k].nparams,
                      "%s: %zu outputs, %zu parameters", nets[k].name, n.out_size, n.nparams);
        ck_assert(net_alloc(&n, err) == 0);
        net_init_glorot(&n, &r);
        net_ws ws;
        ck_assert(net_ws_init(&ws, &n, 2, err) == 0);
        float *in = fnew(2 * n.in_size), *dout = fnew(2 * n.out_size), *din = fnew(2 * n.in_size);
        fill_uniform(in, 2 * n.in_size, 0, 1, &r);
        fill_uniform(dout, 2 * n.out_size, -1, 1, &r);
        const float *out = net_forward(&n, &ws, in, 2);
        for (size_t i = 0; i < 2 * n.out_size; i++)
            ck_assert(isfinite(out[i]));
        net_backward(&n, &ws, din, in, dout, 2);
        for (size_t i = 0; i < n.nparams; i++)
            ck_assert(isfinite(n.grads[i]));
        for (size_t i = 0; i < 2 * n.in_size; i++)
            ck_assert(isfinite(din[i]));
        free(in);
        free(dout);
        free(din);
        net_ws_free(&ws);
        net_free(&n);
    }
}
END_TEST

/* Every way net_init refuses a table, with the layer and the reason. */
START_TEST(net_init_errors)
{
    struct {
        net_layer_spec spec[2];
        int nlayers, C, H, W;
        const char *want;
    } bad[] = {
        {{{.kind = NET_LINEAR, .out = 3}}, 0, 1, 4, 4, "0 layers, need 1 to"},
        {{{.kind = NET_LINEAR, .out = 3}}, NET_MAX_LAYERS + 1, 1, 4, 4, "need 1 to"},
        {{{.kind = NET_LINEAR, .out = 3}}, 1, 0, 4, 4, "empty side"},
        {{{.kind = NET_LINEAR, .out = 3}}, 1, 1, 4, -2, "empty side"},
        {{{.kind = NET_LINEAR, .out = 3}, {.kind = NET_CONV, .out = 0, .ks = 1}}, 2, 1, 4, 4,
         "net layer 1 (conv): 0 outputs"},
        {{{.kind = NET_CONV, .out = 2, .ks = 0}}, 1, 1, 4, 4, "kernel 0"},
        {{{.kind = NET_CONV, .out = 2, .ks = 3, .stride = -1}}, 1, 1, 4, 4, "stride -1"},
        {{{.kind = NET_CONVT, .out = 2, .ks = 3, .pad = -1}}, 1, 1, 4, 4, "pad -1"},
        {{{.kind = NET_CONV, .out = 2, .ks = 5}}, 1, 1, 4, 6, "larger than the padded input"},
        {{{.kind = NET_CONV, .out = 2, .ks = 3, .out_pad = 1}}, 1, 1, 4, 4, "for convT only"},
        {{{.kind = NET_CONVT, .out = 2, .ks = 3, .stride = 2, .out_pad = 2}}, 1, 1, 4, 4,
         "outside [0, stride 2)"},
        {{{.kind = NET_CONVT, .out = 2, .ks = 3, .out_pad = -1}}, 1, 1, 4, 4,
         "outside [0, stride 1)"},
        {{{.kind = NET_CONVT, .out = 2, .ks = 1, .pad = 1}}, 1, 1, 1, 1, "give no output"},
        {{{.kind = (net_kind)7, .out = 2}}, 1, 1, 4, 4, "unknown kind 7"},
        {{{.kind = NET_LINEAR, .out = 2, .out_h = -1}}, 1, 1, 4, 4, "negative side"},
        {{{.kind = NET_LINEAR, .out = 3}, {.kind = NET_LINEAR, .out = 1 << 20, .out_h = 64}}, 2,
         1, 4, 4, "net layer 1 (linear)"},
        {{{.kind = NET_LINEAR, .out = 1 << 16}, {.kind = NET_LINEAR, .out = 1 << 16}}, 2, 1, 1,
         1, "too many"},
    };
    char err[ERR_LEN];
    for (int i = 0; i < COUNT(bad); i++) {
        net_t n;
        err[0] = 0;
        int rc = net_init(&n, bad[i].C, bad[i].H, bad[i].W, bad[i].spec, bad[i].nlayers, err);
        ck_assert_msg(rc == -1, "case %d: accepted", i);
        ck_assert_msg(strstr(err, bad[i].want), "case %d: \"%s\" lacks \"%s\"", i, err,
                      bad[i].want);
    }
    net_t n;
    net_ws ws;
    ck_assert(net_init(&n, 1, 4, 4, bad[0].spec, 1, err) == 0);
    ck_assert_int_eq(net_ws_init(&ws, &n, 0, err), -1);
    ck_assert_msg(strstr(err, "batch of 0"), "%s", err);
    ck_assert_ptr_null(ws.mem);
    net_ws_free(&ws);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, out_dims);
    tcase_add_test(tc, conv_forward_shapes);
    tcase_add_test(tc, convt_forward_shapes);
    tcase_add_test(tc, conv_grad);
    tcase_add_test(tc, convt_grad);
    tcase_add_test(tc, empty_batch);
    tcase_add_test(tc, nan_propagates);
    tcase_add_test(tc, convt_is_adjoint_of_conv);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("net");
    tcase_set_timeout(tn, 120);
    tcase_add_test(tn, net_shapes_and_layout);
    tcase_add_test(tn, net_glorot_variance);
    tcase_add_test(tn, net_grad);
    tcase_add_test(tn, net_mnist_networks);
    tcase_add_test(tn, net_init_errors);
    suite_add_tcase(s, tn);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conv_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
