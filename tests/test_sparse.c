/* test_sparse.c: the sparse paths (sparse.h) against the dense ones they
 * replace, and the importance-sampled bound (evaluate.h) that uses them.
 *
 * A gather sums the same terms as sgemm in another order, so the two agree
 * to rounding: each output within GATHER_TOL of the sum of the magnitudes
 * of its terms (|b| + sum over the row's 1s of |w|), which float sums of a
 * few hundred terms meet with two orders to spare; a wrong column, a
 * missing bias, a transposed weight or a wrong sign is off by the size of a
 * term.  The fused likelihood is held to a relative BCE_TOL of the dense
 * bce_logits_forward on the dense logits (it differs by the logits'
 * rounding and by its contracted multiply-adds).
 *
 * Training: the first layer over a batch's nonzero pixels (0/1 or grey)
 * against linear_forward and linear_backward, the same tolerance; its
 * weight gradient by central differences too; and vae_encode with
 * vae_encode_backward on both paths, linear and deep, logits and every
 * parameter gradient within 1e-5 (of the largest gradient).
 *
 * The bound: with the same checkpoint and seed, the sparse path (forced
 * through sparse_force) and the dense path (codes written out, sgemm) give
 * the same -log p(x) within a relative IW_TOL = 1e-5, for both latent
 * types, linear and deep, with chunks that hold several images and chunks
 * that split one image's samples; the path the measured density picks is
 * the sparse one for these codes; and the figure is bit for bit the same
 * whatever the thread count, and the same within IW_TOL whatever the chunk
 * size (each sample row draws from its own stream; the encoder's sgemm
 * over a chunk's images rounds by their number). */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "evaluate.h"
#include "layers.h"
#include "model.h"
#include "rng.h"
#include "sparse.h"
#include "util.h"

#define GATHER_TOL 1e-5
#define BCE_TOL 1e-5
#define IW_TOL 1e-5

/* A random 0/1 row of C with about density * C ones; its 1s into idx,
 * their count returned. */
static int random_row(float *row, int *idx, int C, double density, rng_t *r)
{
    int n = 0;
    for (int c = 0; c < C; c++) {
        row[c] = rng_uniform_open(r) < density ? 1.0f : 0.0f;
        if (row[c] == 1.0f)
            idx[n++] = c;
    }
    return n;
}

/* The 0s of a 0/1 row of C. */
static int zeros_of(const float *row, int *idx, int C)
{
    int n = 0;
    for (int c = 0; c < C; c++)
        if (row[c] == 0.0f)
            idx[n++] = c;
    return n;
}

static void fill_weights(float *w, size_t n, float scale, rng_t *r)
{
    for (size_t i = 0; i < n; i++)
        w[i] = scale * (2.0f * rng_uniformf_open(r) - 1.0f);
}

START_TEST(gather_forward_matches_dense)
{
    enum { C = 200, OC = 37 };
    static float w[OC * C], wt[C * OC], b[OC], ball[OC], row[C], dense[OC], sparse[OC];
    int idx[C];
    rng_t r;
    rng_seed(&r, 1);
    fill_weights(w, sizeof w / sizeof w[0], 1.0f, &r);
    fill_weights(b, OC, 1.0f, &r);
    sparse_transpose(wt, w, C, OC);
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++)
            ck_assert(wt[c * OC + o] == w[o * C + c]);
    sparse_bias_all(ball, w, b, C, OC);
    const double densities[] = {0.0, 0.05, 0.13, 0.5, 0.9, 1.0};
    for (int k = 0; k < 6; k++)
        for (int relu = 0; relu < 2; relu++)
            for (int neg = 0; neg < 2; neg++) {
                int n = random_row(row, idx, C, densities[k], &r);
                if (neg)
                    n = zeros_of(row, idx, C);
                linear_forward(dense, row, w, b, 1, C, OC, relu);
                sparse_gather_forward(sparse, wt, neg ? ball : b, idx, n, OC, relu, neg);
                for (int o = 0; o < OC; o++) {
                    double mag = fabs(b[o]);
                    for (int c = 0; c < C; c++)
                        mag += fabs(w[o * C + c]);
                    ck_assert_msg(fabs(sparse[o] - dense[o]) <= GATHER_TOL * mag,
                                  "density %.2f relu %d neg %d output %d: sparse %.9g, dense %.9g",
                                  densities[k], relu, neg, o, sparse[o], dense[o]);
                    if (relu)
                        ck_assert(sparse[o] >= 0.0f);
                }
            }
}
END_TEST

/* sparse_gather_bce_rows against linear_forward + bce_logits_forward, for
 * D with and without a partial last panel, R not a multiple of 4 and rows
 * of different counts, some kept as their 0s. */
static void check_gather_bce(int C, int D, int R, uint64_t seed)
{
    float *w = malloc(sizeof(float) * (size_t)D * C), *b = malloc(sizeof(float) * D);
    float *ball = malloc(sizeof(float) * D), *x = malloc(sizeof(float) * D);
    float *wp = malloc(sizeof(float) * sparse_panels_size(C, D));
    float *rows = malloc(sizeof(float) * (size_t)R * C), *logits = malloc(sizeof(float) * D);
    float *lanes = malloc(sizeof(float) * 16 * (size_t)R);
    int *idx = malloc(sizeof(int) * (size_t)R * C), *nnz = malloc(sizeof(int) * R);
    unsigned char *neg = malloc((size_t)R);
    double *loss = malloc(sizeof(double) * R);
    rng_t r;
    rng_seed(&r, seed);
    fill_weights(w, (size_t)D * C, 0.5f, &r);
    fill_weights(b, D, 2.0f, &r);
    for (int d = 0; d < D; d++)
        x[d] = rng_uniform_open(&r) < 0.3 ? 1.0f : 0.0f;
    sparse_panels(wp, w, C, D);
    sparse_bias_all(ball, w, b, C, D);
    for (int i = 0; i < R; i++) {
        float *row = rows + (size_t)i * C;
        nnz[i] = random_row(row, idx + (size_t)i * C, C, (double)(i % 7) / 6.0, &r);
        neg[i] = nnz[i] > C / 2;
        if (neg[i])
            nnz[i] = zeros_of(row, idx + (size_t)i * C, C);
    }
    sparse_gather_bce_rows(loss, wp, b, ball, idx, C, nnz, neg, R, x, C, D, lanes);
    for (int i = 0; i < R; i++) {
        double want;
        linear_forward(logits, rows + (size_t)i * C, w, b, 1, C, D, 0);
        bce_logits_forward(&want, logits, x, 1, D);
        ck_assert_msg(fabs(loss[i] - want) <= BCE_TOL * fabs(want),
                      "C %d D %d row %d (%d %s): fused %.9g, dense %.9g", C, D, i, nnz[i],
                      neg[i] ? "0s" : "1s", loss[i], want);
    }
    /* Without neg every row is its 1s. */
    for (int i = 0; i < R; i++)
        nnz[i] = random_row(rows + (size_t)i * C, idx + (size_t)i * C, C, 0.1, &r);
    sparse_gather_bce_rows(loss, wp, b, ball, idx, C, nnz, NULL, R, x, C, D, lanes);
    for (int i = 0; i < R; i++) {
        double want;
        linear_forward(logits, rows + (size_t)i * C, w, b, 1, C, D, 0);
        bce_logits_forward(&want, logits, x, 1, D);
        ck_assert_msg(fabs(loss[i] - want) <= BCE_TOL * fabs(want), "row %d", i);
    }
    free(w), free(b), free(ball), free(x), free(wp), free(rows), free(logits), free(lanes);
    free(idx), free(nnz), free(neg), free(loss);
}

START_TEST(gather_bce_matches_dense)
{
    check_gather_bce(200, 784, 11, 2);
    check_gather_bce(30, 37, 9, 3);
    check_gather_bce(5, 7, 4, 4);
}
END_TEST

START_TEST(density_rule)
{
    ck_assert(sparse_pays(0, 100));
    ck_assert(sparse_pays(50, 100));
    ck_assert(!sparse_pays(51, 100));
    sparse_force(1);
    ck_assert(sparse_pays(100, 100));
    sparse_force(-1);
    ck_assert(!sparse_pays(0, 100));
    sparse_force(0);
    ck_assert(sparse_pays(10, 100) && !sparse_pays(90, 100));
}
END_TEST

/* sparse_rows and sparse_count read "nonzero" as C's x != 0: a NaN is
 * one (it must reach the product), -0 is not; across the blocks of 16 and
 * the tail, in increasing column. */
START_TEST(rows_take_nan_not_negative_zero)
{
    enum { C = 37 };
    float in[2 * C] = {0}, val[2 * C];
    int idx[2 * C], nnz[2];
    const int want[] = {0, 5, 15, 16, 31, 36};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        in[want[k]] = (float)(k + 1);
    in[5] = NAN;
    in[7] = -0.0f;
    in[C + 33] = -2.0f;
    ck_assert_uint_eq(sparse_rows(idx, val, nnz, in, 2, C), 7);
    ck_assert_uint_eq(sparse_count(in, 2 * C), 7);
    ck_assert_int_eq(nnz[0], 6);
    ck_assert_int_eq(nnz[1], 1);
    for (int k = 0; k < 6; k++) {
        ck_assert_int_eq(idx[k], want[k]);
        ck_assert(k == 1 ? isnan(val[k]) : val[k] == (float)(k + 1));
    }
    ck_assert(idx[C] == 33 && val[C] == -2.0f);
}
END_TEST

/* ---- the first layer over the nonzero pixels (training) ---- */

/* sparse_linear_forward and sparse_linear_backward_weights against
 * linear_forward and linear_backward, on 0/1 rows and on grey ones (values
 * other than 1 are multiplied in), with and without a ReLU: outputs to
 * GATHER_TOL of their terms' magnitudes, weight gradients likewise. */
START_TEST(sparse_linear_matches_dense)
{
    /* OC = 64 + 16 + 1: a block of four registers, one of one, one
     * output alone. */
    enum { B = 9, C = 70, OC = 81 };
    static float w[OC * C], wt[C * OC], b[OC], in[B * C], val[B * C], out_d[B * OC],
        out_s[B * OC], dout[B * OC], dout2[B * OC], dw_d[OC * C], dw_s[OC * C],
        db[OC], cval[B * C];
    static int idx[B * C], nnz[B], start[C + 1], rows[B * C];
    rng_t r;
    rng_seed(&r, 21);
    fill_weights(w, OC * C, 1.0f, &r);
    fill_weights(b, OC, 1.0f, &r);
    sparse_transpose(wt, w, C, OC);
    for (int grey = 0; grey < 2; grey++)
        for (int relu = 0; relu < 2; relu++) {
            for (int i = 0; i < B * C; i++) {
                float on = rng_uniform_open(&r) < 0.15 ? 1.0f : 0.0f;
                in[i] = grey ? on * rng_uniformf_open(&r) : on;
            }
            size_t total = sparse_rows(idx, val, nnz, in, B, C);
            size_t want = 0;
            for (int i = 0; i < B * C; i++)
                want += in[i] != 0.0f;
            ck_assert_uint_eq(total, want);
            linear_forward(out_d, in, w, b, B, C, OC, relu);
            sparse_linear_forward(out_s, wt, b, idx, val, nnz, B, C, OC, relu);
            for (int rr = 0; rr < B; rr++)
                for (int o = 0; o < OC; o++) {
                    double mag = fabs(b[o]);
                    for (int c = 0; c < C; c++)
                        mag += fabs(w[o * C + c] * in[rr * C + c]);
                    ck_assert_msg(fabs(out_s[rr * OC + o] - out_d[rr * OC + o]) <= GATHER_TOL * mag,
                                  "grey %d relu %d row %d out %d", grey, relu, rr, o);
                }
            fill_weights(dout, B * OC, 1.0f, &r);
            memcpy(dout2, dout, sizeof dout);
            for (int i = 0; i < OC * C; i++)
                dw_d[i] = dw_s[i] = 0.25f; /* both add into what is there */
            memset(db, 0, sizeof db);
            linear_backward(NULL, dw_d, db, dout, out_d, in, w, B, C, OC, relu);
            memset(db, 0, sizeof db);
            linear_backward_bias(db, dout2, out_d, B, OC, relu);
            sparse_columns(start, rows, cval, idx, val, nnz, B, C);
            for (int c = 0; c < C; c++)
                for (int k = start[c]; k < start[c + 1]; k++) {
                    ck_assert(k == start[c] || rows[k] > rows[k - 1]);
                    ck_assert(in[rows[k] * C + c] == cval[k] && cval[k] != 0.0f);
                }
            ck_assert_int_eq(start[C], (int)total);
            sparse_linear_backward_weights(dw_s, dout2, start, rows, cval, C, OC);
            for (int o = 0; o < OC; o++)
                for (int c = 0; c < C; c++) {
                    double mag = 0.25;
                    for (int rr = 0; rr < B; rr++)
                        mag += fabs(dout[rr * OC + o] * in[rr * C + c]);
                    ck_assert_msg(fabs(dw_s[o * C + c] - dw_d[o * C + c]) <= GATHER_TOL * mag,
                                  "grey %d relu %d dw[%d][%d]: %.9g vs %.9g", grey, relu, o, c,
                                  dw_s[o * C + c], dw_d[o * C + c]);
                }
        }
}
END_TEST

/* The weight gradient of the sparse path by central differences of
 * L = sum proj * sparse_linear_forward(w) (linear in w, so the quotient is
 * exact but for rounding), on a small layer with a ReLU. */
START_TEST(sparse_linear_finite_differences)
{
    enum { B = 3, C = 6, OC = 4 };
    float w[OC * C], wt[C * OC], b[OC], in[B * C], val[B * C], out[B * OC], proj[B * OC],
        d[B * OC], dw[OC * C] = {0}, cval[B * C];
    int idx[B * C], nnz[B], start[C + 1], rows[B * C];
    rng_t r;
    rng_seed(&r, 22);
    fill_weights(w, OC * C, 1.0f, &r);
    fill_weights(b, OC, 0.5f, &r);
    fill_weights(proj, B * OC, 1.0f, &r);
    for (int i = 0; i < B * C; i++)
        in[i] = rng_uniform_open(&r) < 0.5 ? 1.0f : 0.0f;
    sparse_rows(idx, val, nnz, in, B, C);
    sparse_transpose(wt, w, C, OC);
    sparse_linear_forward(out, wt, b, idx, val, nnz, B, C, OC, 1);
    memcpy(d, proj, sizeof d);
    float db[OC] = {0};
    linear_backward_bias(db, d, out, B, OC, 1);
    sparse_columns(start, rows, cval, idx, val, nnz, B, C);
    sparse_linear_backward_weights(dw, d, start, rows, cval, C, OC);
    const float h = 1e-2f;
    for (int i = 0; i < OC * C; i++) {
        double L[2];
        for (int s = 0; s < 2; s++) {
            float keep = w[i];
            w[i] = keep + (s ? -h : h);
            sparse_transpose(wt, w, C, OC);
            sparse_linear_forward(out, wt, b, idx, val, nnz, B, C, OC, 1);
            w[i] = keep;
            L[s] = 0;
            for (int j = 0; j < B * OC; j++)
                L[s] += (double)proj[j] * out[j];
        }
        double num = (L[0] - L[1]) / (2.0 * h);
        ck_assert_msg(fabs(num - dw[i]) <= 1e-4 * (1.0 + fabs(num)), "dw[%d]: %.7g vs %.7g", i,
                      dw[i], num);
    }
}
END_TEST

/* n pixels, each on with probability p, from generator r seeded with seed
 * (left to the caller to draw on). */
static void binary_pixels(float *x, int n, double p, uint64_t seed, rng_t *r)
{
    rng_seed(r, seed);
    for (int i = 0; i < n; i++)
        x[i] = rng_uniform_open(r) < p ? 1.0f : 0.0f;
}

/* got[n] equals want[n] to 1e-5 of want's largest magnitude, which must
 * not be 0 (a test of nothing); what names the array in a failure. */
static void assert_close_to_max(const float *got, const float *want, size_t n, const char *what)
{
    double big = 0;
    for (size_t i = 0; i < n; i++)
        big = fmax(big, fabs(want[i]));
    ck_assert_msg(big > 0, "%s: all zero", what);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * big, "%s[%zu]: %.9g vs %.9g", what, i,
                      got[i], want[i]);
}

/* vae_encode and vae_encode_backward over the nonzero pixels against the
 * dense path, linear and deep: the logits and every parameter gradient. */
START_TEST(encoder_sparse_equals_dense)
{
    enum { B = 16, PX = 100 };
    char err[ERR_LEN] = "";
    float x[B * PX];
    rng_t r;
    binary_pixels(x, B * PX, 0.13, 23, &r);
    for (int nh = 0; nh <= 2; nh += 2) {
        vae_config c = {.latent = LATENT_CATEGORICAL, .N = 4, .K = 5, .D = PX, .nhidden = nh,
                        .hidden = {24, 16}};
        vae_model m;
        vae_acts a;
        ck_assert_msg(vae_init(&m, &c, &r, err) == 0, "%s", err);
        ck_assert_msg(vae_acts_init(&a, &m, B, err) == 0, "%s", err);
        int zdim = vae_zdim(&c);
        float *logits[2], *grads[2], *dl = malloc(sizeof(float) * B * zdim);
        fill_weights(dl, (size_t)B * zdim, 1.0f, &r);
        for (int pass = 0; pass < 2; pass++) {
            sparse_force(pass ? 1 : -1);
            vae_zero_grads(&m);
            vae_encode(&m, &a, x, B);
            ck_assert_int_eq(a.in_sparse, pass);
            logits[pass] = malloc(sizeof(float) * B * zdim);
            memcpy(logits[pass], vae_logits(&m, &a), sizeof(float) * B * zdim);
            memcpy(a.dlogits, dl, sizeof(float) * B * zdim);
            vae_encode_backward(&m, &a, x, B);
            grads[pass] = malloc(sizeof(float) * m.nparams);
            memcpy(grads[pass], m.grads, sizeof(float) * m.nparams);
        }
        sparse_force(0);
        vae_encode(&m, &a, x, B);
        ck_assert(a.in_sparse); /* 13% of the pixels on */
        for (int i = 0; i < B * zdim; i++)
            ck_assert_msg(fabs(logits[1][i] - logits[0][i]) <= 1e-5 * (1 + fabs(logits[0][i])),
                          "hidden %d logit %d", nh, i);
        assert_close_to_max(grads[1], grads[0], m.nparams, nh ? "deep grads" : "linear grads");
        for (int pass = 0; pass < 2; pass++)
            free(logits[pass]), free(grads[pass]);
        free(dl);
        vae_acts_free(&a);
        vae_free(&m);
    }
}
END_TEST

/* vae_decode and vae_decode_backward over a hard code's nonzero entries
 * against the dense path, linear and deep, one-hot variables and 0/1
 * units: the logits, every parameter gradient and the gradient at z. */
START_TEST(decoder_sparse_equals_dense)
{
    enum { B = 16, PX = 60 };
    char err[ERR_LEN] = "";
    float x[B * PX];
    rng_t r;
    binary_pixels(x, B * PX, 0.3, 26, &r);
    for (int bern = 0; bern < 2; bern++)
        for (int nh = 0; nh <= 2; nh += 2) {
            vae_config c = {.latent = bern ? LATENT_BERNOULLI : LATENT_CATEGORICAL,
                            .N = bern ? 40 : 4, .K = bern ? 1 : 5, .D = PX, .nhidden = nh,
                            .hidden = {24, 16}};
            vae_model m;
            vae_acts a;
            ck_assert_msg(vae_init(&m, &c, &r, err) == 0, "%s", err);
            ck_assert_msg(vae_acts_init(&a, &m, B, err) == 0, "%s", err);
            int zdim = vae_zdim(&c);
            float *z = calloc((size_t)B * zdim, sizeof(float));
            for (int row = 0; row < B; row++)
                for (int v = 0; v < c.N; v++)
                    if (bern)
                        z[row * zdim + v] = rng_uniform_open(&r) < 0.3 ? 1.0f : 0.0f;
                    else
                        z[row * zdim + v * c.K + (int)rng_below(&r, (uint32_t)c.K)] = 1.0f;
            float *out[2], *grads[2], *dz[2];
            for (int pass = 0; pass < 2; pass++) {
                sparse_force(pass ? 1 : -1);
                vae_zero_grads(&m);
                vae_decode(&m, &a, z, B);
                out[pass] = malloc(sizeof(float) * B * PX);
                memcpy(out[pass], a.dec[m.ndec - 1], sizeof(float) * B * PX);
                dz[pass] = malloc(sizeof(float) * B * zdim);
                vae_decode_backward_rows(&m, &a, x, z, B, NULL, 0.5f, m.grads, dz[pass]);
                grads[pass] = malloc(sizeof(float) * m.nparams);
                memcpy(grads[pass], m.grads, sizeof(float) * m.nparams);
            }
            sparse_force(0);
            for (int i = 0; i < B * PX; i++)
                ck_assert_msg(fabs(out[1][i] - out[0][i]) <= 1e-5 * (1 + fabs(out[0][i])),
                              "bern %d hidden %d logit %d", bern, nh, i);
            char what[64];
            snprintf(what, sizeof what, "bern %d hidden %d grads", bern, nh);
            assert_close_to_max(grads[1], grads[0], m.nparams, what);
            snprintf(what, sizeof what, "bern %d hidden %d dz", bern, nh);
            assert_close_to_max(dz[1], dz[0], (size_t)B * zdim, what);
            for (int pass = 0; pass < 2; pass++)
                free(out[pass]), free(grads[pass]), free(dz[pass]);
            free(z);
            vae_acts_free(&a);
            vae_free(&m);
        }
}
END_TEST

/* A diverged weight must reach the loss as it does through sgemm (0 * NaN
 * is NaN) even when it sits where the inputs are 0: the sparse paths
 * check the weight and step aside. */
START_TEST(nan_weights_still_show)
{
    float w[40] = {0};
    ck_assert(sparse_all_finite(w, 40));
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        w[37] = bad[k];
        ck_assert(!sparse_all_finite(w, 40));
        ck_assert(sparse_all_finite(w, 37));
    }
    w[37] = FLT_MAX;
    ck_assert(sparse_all_finite(w, 40));

    enum { B = 4, PX = 50 };
    char err[ERR_LEN] = "";
    vae_config c = {.latent = LATENT_CATEGORICAL, .N = 3, .K = 4, .D = PX, .nhidden = 0};
    vae_model m;
    vae_acts a;
    rng_t r;
    rng_seed(&r, 24);
    ck_assert_msg(vae_init(&m, &c, &r, err) == 0, "%s", err);
    ck_assert_msg(vae_acts_init(&a, &m, B, err) == 0, "%s", err);
    float x[B * PX] = {0};
    x[3] = x[PX + 7] = 1.0f; /* pixel 0 is off in every row */
    m.params[m.enc[0].w] = NAN; /* the weight of pixel 0 to output 0 */
    vae_encode(&m, &a, x, B);
    ck_assert(!a.in_sparse);
    ck_assert(isnan(vae_logits(&m, &a)[0]));
    m.params[m.enc[0].w] = 0.0f;
    /* The decoder's first weight: a NaN in the column of code unit 1,
     * which a sample picks only now and then; the bound is NaN either way. */
    eval_ws w2;
    ck_assert_msg(eval_ws_init(&w2, &m, 64, err) == 0, "%s", err);
    rng_seed(&r, 25);
    ck_assert(isfinite(eval_iw(&m, &w2, x, B, 5, &r)));
    m.params[m.dec[0].w + 1] = NAN; /* output 0, code unit 1 */
    ck_assert(isnan(eval_iw(&m, &w2, x, B, 5, &r)));
    eval_ws_free(&w2);
    vae_acts_free(&a);
    vae_free(&m);
}
END_TEST

/* ---- the importance-sampled bound ---- */

enum { IMGS = 12, PIX = 100 };

/* A model of PIX pixels with weights larger than Glorot's (so
 * that q is not flat and the samples differ) and a learned prior away from
 * uniform. */
static void bound_model(vae_model *m, latent_type lt, int nhidden, rng_t *r)
{
    char err[ERR_LEN] = "";
    vae_config c = {.latent = lt, .N = lt == LATENT_CATEGORICAL ? 6 : 40,
                    .K = lt == LATENT_CATEGORICAL ? 5 : 1, .D = PIX, .nhidden = nhidden,
                    .hidden = {24, 16}, .prior = VAE_PRIOR_LEARNED};
    ck_assert_msg(vae_init(m, &c, r, err) == 0, "%s", err);
    for (size_t i = 0; i < m->prior; i++)
        m->params[i] *= 3.0f;
    for (int j = 0; j < vae_zdim(&c); j++)
        m->params[m->prior + j] = 2.0f * rng_uniformf_open(r) - 1.0f;
}

/* IMGS images of PIX pixels, 20% of them 1, from seed; r left seeded
 * after them for the models. */
static void bound_images(float *x, rng_t *r, uint64_t seed)
{
    rng_seed(r, seed);
    for (int i = 0; i < IMGS * PIX; i++)
        x[i] = rng_uniform_open(r) < 0.2 ? 1.0f : 0.0f;
}

static long last_decoded;

static double bound_rows(const vae_model *m, const float *x, int rows, int threads, int S,
                         int force, int every_row)
{
    char err[ERR_LEN] = "";
    eval_ws w;
    ck_assert_msg(eval_ws_init(&w, m, rows, err) == 0, "%s", err);
    w.threads = threads;
    w.every_row = every_row;
    rng_t r;
    rng_seed(&r, 77);
    sparse_force(force);
    double v = eval_iw(m, &w, x, IMGS, S, &r);
    last_decoded = w.decoded;
    sparse_force(0);
    eval_ws_free(&w);
    return v;
}

static double bound(const vae_model *m, const float *x, int rows, int threads, int S,
                    int force)
{
    return bound_rows(m, x, rows, threads, S, force, 0);
}

/* Each image's distinct codes are decoded once and their -log p(x|z)
 * shared by the rows that drew them: the same figure as decoding every
 * row (bit for bit on the fused linear path), on both paths, with
 * samples in one chunk or spread over several.  The tiny code (6 variables of 5 classes, or 40 units,
 * under weights twelve times Glorot's) repeats codes often in 300
 * samples. */
START_TEST(iw_repeated_codes_decoded_once)
{
    openblas_set_num_threads(1);
    float x[IMGS * PIX];
    rng_t r;
    bound_images(x, &r, 11);
    for (int lt = 0; lt < 2; lt++)
        for (int nh = 0; nh <= 2; nh += 2) {
            vae_model m;
            bound_model(&m, lt ? LATENT_BERNOULLI : LATENT_CATEGORICAL, nh, &r);
            for (size_t i = 0; i < m.prior; i++)
                m.params[i] *= 4.0f; /* a peaked q: many repeats */
            for (int force = -1; force <= 1; force += 2)
                for (int rows = 64; rows <= 1000; rows += 936) {
                    double all = bound_rows(&m, x, rows, 1, 300, force, 1);
                    ck_assert(last_decoded == IMGS * 300);
                    double once = bound_rows(&m, x, rows, 2, 300, force, 0);
                    ck_assert_msg(last_decoded < IMGS * 300 / (lt ? 1 : 2), "%ld", last_decoded);
                    /* Bit for bit where no sgemm decodes (the fused linear
                     * path); elsewhere sgemm over fewer rows rounds
                     * differently. */
                    int exact = force == 1 && nh == 0;
                    ck_assert_msg(isfinite(all) && (exact ? once == all
                                                          : fabs(once - all) <= IW_TOL * all),
                                  "%s, %d hidden, force %d, rows %d: %.17g vs %.17g",
                                  lt ? "bernoulli" : "categorical", nh, force, rows, once, all);
                }
            vae_free(&m);
        }
}
END_TEST

/* A linear decoder's images spread over threads, each whole in one
 * (workspace rows for several images' samples), give the figure of the
 * rows of one image spread over threads (fewer rows than samples), bit for
 * bit: the linear encoder and decoder take their sparse paths, whose rows
 * do not depend on one another. */
START_TEST(iw_images_over_threads_equal_rows_over_threads)
{
    openblas_set_num_threads(1);
    float x[IMGS * PIX];
    rng_t r;
    bound_images(x, &r, 12);
    for (int lt = 0; lt < 2; lt++) {
        vae_model m;
        bound_model(&m, lt ? LATENT_BERNOULLI : LATENT_CATEGORICAL, 0, &r);
        double rows_split = bound(&m, x, 49, 2, 50, 0);
        for (int threads = 1; threads <= 4; threads++) {
            double images = bound(&m, x, 50 * threads, threads, 50, 0);
            ck_assert_msg(images == rows_split, "%s, threads %d: %.17g vs %.17g",
                          lt ? "bernoulli" : "categorical", threads, images, rows_split);
        }
        vae_free(&m);
    }
}
END_TEST

START_TEST(iw_sparse_equals_dense)
{
    openblas_set_num_threads(1);
    float x[IMGS * PIX];
    rng_t r;
    bound_images(x, &r, 9);
    for (int lt = 0; lt < 2; lt++)
        for (int nh = 0; nh <= 2; nh += 2) {
            vae_model m;
            bound_model(&m, lt ? LATENT_BERNOULLI : LATENT_CATEGORICAL, nh, &r);
            /* 64 rows: 6 images of 10 samples a chunk; 300 samples: each
             * image's spread over five chunks. */
            const int S[2] = {10, 300};
            for (int k = 0; k < 2; k++) {
                double dense = bound(&m, x, 64, 1, S[k], -1);
                double sparse = bound(&m, x, 64, 1, S[k], 1);
                double measured = bound(&m, x, 64, 1, S[k], 0);
                ck_assert_msg(isfinite(dense) && dense > 0, "%g", dense);
                ck_assert_msg(fabs(sparse - dense) <= IW_TOL * fabs(dense),
                              "%s, %d hidden, S %d: sparse %.9g, dense %.9g",
                              lt ? "bernoulli" : "categorical", nh, S[k], sparse, dense);
                /* The density of these codes (1/K, or at most 1/2 as 1s or
                 * 0s) picks the sparse path. */
                ck_assert(measured == sparse);
            }
            vae_free(&m);
        }
}
END_TEST

START_TEST(iw_same_for_any_threads_and_chunks)
{
    openblas_set_num_threads(1);
    float x[IMGS * PIX];
    rng_t r;
    bound_images(x, &r, 10);
    for (int lt = 0; lt < 2; lt++) {
        vae_model m;
        bound_model(&m, lt ? LATENT_BERNOULLI : LATENT_CATEGORICAL, 0, &r);
        double one = bound(&m, x, 1000, 1, 50, 0), small = bound(&m, x, 64, 1, 50, 0);
        ck_assert(bound(&m, x, 1000, 3, 50, 0) == one);
        ck_assert(bound(&m, x, 64, 2, 50, 0) == small);
        /* The encoder's sgemm over 12 images or 1 rounds alike only to a
         * tolerance; the draws are the same. */
        ck_assert_msg(fabs(small - one) <= IW_TOL * fabs(one), "%.9g vs %.9g", small, one);
        ck_assert_msg(fabs(bound(&m, x, 7, 1, 50, 0) - one) <= IW_TOL * fabs(one), "rows 7");
        /* ...while another seed's draws give another figure. */
        eval_ws w;
        char err[ERR_LEN];
        ck_assert(eval_ws_init(&w, &m, 1000, err) == 0);
        rng_t r2;
        rng_seed(&r2, 78);
        ck_assert(eval_iw(&m, &w, x, IMGS, 50, &r2) != one);
        eval_ws_free(&w);
        vae_free(&m);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sparse");
    TCase *tc = tcase_create("sparse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gather_forward_matches_dense);
    tcase_add_test(tc, gather_bce_matches_dense);
    tcase_add_test(tc, density_rule);
    tcase_add_test(tc, rows_take_nan_not_negative_zero);
    tcase_add_test(tc, sparse_linear_matches_dense);
    tcase_add_test(tc, sparse_linear_finite_differences);
    tcase_add_test(tc, encoder_sparse_equals_dense);
    tcase_add_test(tc, decoder_sparse_equals_dense);
    tcase_add_test(tc, nan_weights_still_show);
    tcase_add_test(tc, iw_sparse_equals_dense);
    tcase_add_test(tc, iw_same_for_any_threads_and_chunks);
    tcase_add_test(tc, iw_repeated_codes_decoded_once);
    tcase_add_test(tc, iw_images_over_threads_equal_rows_over_threads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
