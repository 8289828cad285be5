/* test_prior.c: the paper's VAE as Table 1 evaluates it: the learned prior
 * in the importance-weighted bound, and the linear (--hidden none),
 * learned-prior model end to end through the program.
 *
 * The bound.  For a tiny model (a 2x3 categorical or a 3-unit Bernoulli
 * code, 6 pixels, a learned prior away from uniform) log p(x) =
 * log sum_z p(x|z) p(z) is a sum over the 9 (8) codes, computed here with
 * the prior's probabilities written again in double.  eval_iw's m-sample
 * figure -log (1/m) sum_s p(x|z_s) p(z_s) / q(z_s|x) must be, in
 * expectation, at or above -log p(x), equal to the exact -ELBO at m = 1
 * (then it is the one-sample ELBO), falling as m grows, and converged to
 * -log p(x) at m = 10000 (its bias there, about 1/100 of m = 100's, is
 * allowed 5e-4 nats).  Expectations are means over independent repeats,
 * held to 4 standard errors.
 *
 * End to end: a short run of each linear model trains and writes a
 * checkpoint whose parameters are exactly the two affine maps (and the
 * prior's logits); `gsvae eval` of the checkpoint prints the figures the
 * run printed; the same checkpoint with its prior's logits zeroed scores
 * differently, so the prior is read back and used. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "evaluate.h"
#include "layers.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"
#include "util.h"

#define OUT_LEN 65536
static char out[OUT_LEN], errout[OUT_LEN];
#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)

/* ---- the importance-weighted bound against enumeration ---- */

enum { D = 6, NIMG = 4, MAXZ = 16, MAXCODES = 16 };

static double log_sigmoid_ref(double x)
{
    return -(fmax(-x, 0.0) + log1p(exp(-fabs(x))));
}

/* The code of index c: digit i (base K, or bit i) picks variable i's class. */
static void code_of(const vae_config *c, int idx, float *z)
{
    memset(z, 0, sizeof(float) * vae_zdim(c));
    for (int i = 0; i < c->N; i++) {
        if (c->latent == LATENT_CATEGORICAL) {
            z[i * c->K + idx % c->K] = 1.0f;
            idx /= c->K;
        } else {
            z[i] = (float)(idx & 1);
            idx >>= 1;
        }
    }
}

/* log p(z) under the prior's logits eta, in double. */
static double log_prior_ref(const vae_config *c, const float *eta, const float *z)
{
    double lp = 0;
    for (int i = 0; i < c->N; i++) {
        if (c->latent == LATENT_BERNOULLI) {
            lp += log_sigmoid_ref(z[i] > 0.5f ? eta[i] : -eta[i]);
            continue;
        }
        double m = -INFINITY, s = 0;
        for (int k = 0; k < c->K; k++)
            m = fmax(m, eta[i * c->K + k]);
        for (int k = 0; k < c->K; k++)
            s += exp(eta[i * c->K + k] - m);
        for (int k = 0; k < c->K; k++)
            if (z[i * c->K + k] > 0.5f)
                lp += eta[i * c->K + k] - m - log(s);
    }
    return lp;
}

typedef struct {
    vae_model m;
    vae_acts a;
    eval_ws w;
    float x[NIMG * D];
    int ncodes;
    double neg_log_px;  /* mean over the images of -log p(x), exact */
    double neg_elbo;    /* mean of the exact -ELBO: sum_z q(z|x) (-log p(x|z)) + KL */
} tiny;

static void tiny_init(tiny *t, latent_type lt, int N, int K, int nhidden, uint64_t seed)
{
    char err[ERR_LEN] = "";
    memset(t, 0, sizeof *t);
    vae_config c = {.latent = lt, .N = N, .K = K, .D = D, .nhidden = nhidden, .hidden = {5},
                    .prior = VAE_PRIOR_LEARNED};
    rng_t r;
    rng_seed(&r, seed);
    ck_assert_msg(vae_init(&t->m, &c, &r, err) == 0, "%s", err);
    ck_assert_msg(vae_acts_init(&t->a, &t->m, MAXCODES, err) == 0, "%s", err);
    ck_assert_msg(eval_ws_init(&t->w, &t->m, 1000, err) == 0, "%s", err);
    /* Weights larger than Glorot's and a prior away from uniform, so that
     * q(z|x), p(z) and p(z|x) all differ and the bound has a gap to close
     * (but not so large that q misses where p(z|x) lies and the weights'
     * variance makes the m = 10000 figure noisy). */
    for (size_t i = 0; i < t->m.prior; i++)
        t->m.params[i] *= nhidden ? 1.5f : 2.5f;
    for (int j = 0; j < vae_zdim(&c); j++)
        t->m.params[t->m.prior + j] = 4.0f * (float)rng_uniform_open(&r) - 2.0f;
    for (int i = 0; i < NIMG * D; i++)
        t->x[i] = rng_uniform_open(&r) < 0.5 ? 1.0f : 0.0f;

    int zdim = vae_zdim(&c);
    t->ncodes = 1;
    for (int i = 0; i < N; i++)
        t->ncodes *= lt == LATENT_CATEGORICAL ? K : 2;
    ck_assert_int_le(t->ncodes, MAXCODES);
    float z[MAXCODES * MAXZ], xs[MAXCODES * D], q_logits[MAXZ], logq[MAXZ];
    for (int n = 0; n < NIMG; n++) {
        const float *xn = t->x + n * D;
        vae_encode(&t->m, &t->a, xn, 1);
        vae_kl(&t->m, &t->a, 1);
        double kl = t->a.kl[0];
        memcpy(q_logits, vae_logits(&t->m, &t->a), sizeof(float) * zdim);
        memcpy(logq, t->a.logq, sizeof(float) * zdim);
        for (int code = 0; code < t->ncodes; code++) {
            code_of(&c, code, z + code * zdim);
            memcpy(xs + code * D, xn, sizeof(float) * D);
        }
        vae_decode(&t->m, &t->a, z, t->ncodes);
        vae_recon_loss(&t->m, &t->a, xs, t->ncodes);
        double mx = -INFINITY, sum = 0, expected_recon = 0;
        for (int code = 0; code < t->ncodes; code++) {
            const float *zc = z + code * zdim;
            lse_push(&mx, &sum, -t->a.recon[code] + log_prior_ref(&c, t->m.params + t->m.prior,
                                                                  zc));
            /* q(z|x) with the q of the log prior's reference, eta = logits */
            double lq = 0;
            if (lt == LATENT_CATEGORICAL) {
                for (int j = 0; j < zdim; j++)
                    if (zc[j] > 0.5f)
                        lq += logq[j];
            } else {
                for (int j = 0; j < zdim; j++)
                    lq += log_sigmoid_ref(zc[j] > 0.5f ? q_logits[j] : -q_logits[j]);
            }
            expected_recon += exp(lq) * t->a.recon[code];
        }
        t->neg_log_px -= (mx + log(sum)) / NIMG;
        t->neg_elbo += (expected_recon + kl) / NIMG;
    }
}

static void tiny_free(tiny *t)
{
    eval_ws_free(&t->w);
    vae_acts_free(&t->a);
    vae_free(&t->m);
}

/* Mean and standard error of eval_iw with m samples over reps independent
 * draws. */
static void iw_stats(tiny *t, int m, int reps, uint64_t seed, double *mean, double *se)
{
    rng_t r;
    rng_seed(&r, seed);
    double s = 0, s2 = 0;
    for (int i = 0; i < reps; i++) {
        double v = eval_iw(&t->m, &t->w, t->x, NIMG, m, &r);
        s += v;
        s2 += v * v;
    }
    *mean = s / reps;
    *se = reps > 1 ? sqrt(fmax(s2 / reps - *mean * *mean, 0.0) / (reps - 1)) : 0.0;
}

static void check_iw_bound(latent_type lt, int N, int K, int nhidden)
{
    tiny t;
    tiny_init(&t, lt, N, K, nhidden, 3);
    const char *name = stoch_latent_name(lt);
    double exact = t.neg_log_px;
    double gap = t.neg_elbo - exact;
    /* The exact ELBO is a bound, and one with a gap worth closing. */
    ck_assert_msg(gap > 0.05, "%s: exact -ELBO %.6f, -log p(x) %.6f: gap %.3g too small for the "
                  "test", name, t.neg_elbo, exact, gap);
    double mean[4], se[4];
    const int ms[4] = {1, 10, 100, 10000}, reps[4] = {4000, 1000, 200, 100};
    for (int i = 0; i < 4; i++)
        iw_stats(&t, ms[i], reps[i], 100 + i, &mean[i], &se[i]);
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%s: -log p(x) %.6f, -ELBO %.6f; m=1 %.6f+-%.2g, m=10 %.6f+-%.2g, "
                "m=100 %.6f+-%.2g, m=1e4 %.6f+-%.2g\n", name, exact, t.neg_elbo, mean[0], se[0],
                mean[1], se[1], mean[2], se[2], mean[3], se[3]);
    /* m = 1 is the one-sample ELBO: unbiased for the exact -ELBO. */
    ck_assert_msg(fabs(mean[0] - t.neg_elbo) < 4 * se[0],
                  "%s: m = 1 gives %.6f +- %.3g, the exact -ELBO is %.6f", name, mean[0], se[0],
                  t.neg_elbo);
    /* In expectation at or above -log p(x), and falling as m grows. */
    for (int i = 1; i < 4; i++) {
        ck_assert_msg(mean[i] > exact - 4 * se[i], "%s: m = %d gives %.6f +- %.3g, below "
                      "-log p(x) = %.6f", name, ms[i], mean[i], se[i], exact);
        ck_assert_msg(mean[i] < mean[i - 1], "%s: m = %d gives %.6f, not below m = %d's %.6f",
                      name, ms[i], mean[i], ms[i - 1], mean[i - 1]);
    }
    ck_assert_msg(mean[1] - exact > 4 * se[1], "%s: m = 10 already closes the gap (%.6f against "
                  "%.6f): the test cannot tell the bound's convergence", name, mean[1], exact);
    /* ...and at m = 10000 it has converged to -log p(x), to a precision
     * that tells it from any other figure (a uniform log p(z) in place of
     * the learned one moves it by tenths of a nat). */
    ck_assert_msg(se[3] < 5e-3, "%s: m = 10000 varies too much (se %.3g)", name, se[3]);
    ck_assert_msg(fabs(mean[3] - exact) < 4 * se[3] + 5e-4,
                  "%s: m = 10000 gives %.6f +- %.3g, -log p(x) = %.6f", name, mean[3], se[3],
                  exact);
    tiny_free(&t);
}

START_TEST(iw_bound_against_enumeration)
{
    check_iw_bound(LATENT_CATEGORICAL, 2, 3, 0);
    check_iw_bound(LATENT_BERNOULLI, 3, 1, 0);
    check_iw_bound(LATENT_CATEGORICAL, 2, 3, 1);
    check_iw_bound(LATENT_BERNOULLI, 3, 1, 1);
}
END_TEST

/* ---- end to end: the linear models through the program ---- */

#define RUN_FLAGS "--hidden none --steps 150 --eval-every 75 --eval-images 500 --iw-samples 20 " \
                  "--threads 1 --quiet"

/* The final -ELBO and -log p(x) that `gsvae train` printed. */
static void train_figures(const char *s, double *elbo, double *nll)
{
    const char *p = strstr(s, "final test -ELBO ");
    ck_assert_msg(p && sscanf(p, "final test -ELBO %lf", elbo) == 1, "%s", s);
    p = strstr(p, "-log p(x) ~ ");
    ck_assert_msg(p && sscanf(p, "-log p(x) ~ %lf", nll) == 1, "%s", s);
}

/* What `gsvae eval` printed. */
static void eval_figures(const char *s, double *elbo, double *nll)
{
    const char *p = strstr(s, "test -ELBO ");
    ck_assert_msg(p && sscanf(p, "test -ELBO %lf", elbo) == 1, "%s", s);
    p = strstr(s, "test -log p(x) ~ ");
    ck_assert_msg(p && sscanf(p, "test -log p(x) ~ %lf", nll) == 1, "%s", s);
}

/* Floats in the checkpoint's params section. */
static size_t ckpt_params(const char *path)
{
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    const void *data;
    uint64_t len;
    ck_assert_msg(ckpt_get(f, "params", &data, &len, err) == 0, "%s", err);
    ckpt_free(f);
    return (size_t)(len / sizeof(float));
}

/* A copy of checkpoint src at dst with params[from..] set to zero. */
static void zero_params_tail(const char *src, const char *dst, size_t from)
{
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(src, &f, err) == 0, "%s", err);
    int n = ckpt_count(f);
    ckpt_section secs[CKPT_MAX_SECTIONS];
    float *params = NULL;
    for (int i = 0; i < n; i++) {
        secs[i].name = ckpt_name(f, i);
        ck_assert(ckpt_get(f, secs[i].name, &secs[i].data, &secs[i].len, err) == 0);
        if (!strcmp(secs[i].name, "params")) {
            params = malloc(secs[i].len);
            ck_assert_ptr_nonnull(params);
            memcpy(params, secs[i].data, secs[i].len);
            size_t total = secs[i].len / sizeof(float);
            ck_assert_uint_lt(from, total);
            for (size_t j = from; j < total; j++)
                params[j] = 0.0f;
            secs[i].data = params;
        }
    }
    ck_assert_ptr_nonnull(params);
    ck_assert_msg(ckpt_write(dst, secs, n, err) == 0, "%s", err);
    free(params);
    ckpt_free(f);
}

static void check_linear_run(const char *latent_flags, size_t zdim, int learned)
{
    const char *dir = testutil_tmpdir();
    int rc = gsvae("train --data %s --out %s %s --prior %s " RUN_FLAGS, testutil_data_dir(), dir,
                   latent_flags, learned ? "learned" : "uniform");
    ck_assert_msg(rc == 0, "train %s: exit %d: %s", latent_flags, rc, errout);
    double t_elbo, t_nll, e_elbo, e_nll;
    train_figures(out, &t_elbo, &t_nll);
    /* 150 steps of a linear model: well below the untrained 543 nats. */
    ck_assert_msg(t_elbo < 300 && t_nll <= t_elbo + 1e-9, "%s: -ELBO %.3f, -log p(x) %.3f",
                  latent_flags, t_elbo, t_nll);
    /* Two affine maps 784 -> zdim -> 784, then the prior's logits. */
    const char *ckpt = testutil_path(dir, "model.ckpt");
    size_t linear = 784 * zdim + zdim + zdim * 784 + 784;
    ck_assert_uint_eq(ckpt_params(ckpt), linear + (learned ? zdim : 0));
    rc = gsvae("eval --ckpt %s --data %s --images 500 --iw-samples 20", ckpt, testutil_data_dir());
    ck_assert_msg(rc == 0, "eval: %d %s", rc, errout);
    eval_figures(out, &e_elbo, &e_nll);
    ck_assert_msg(e_elbo == t_elbo && e_nll == t_nll,
                  "%s: eval of the checkpoint %.3f / %.3f, training printed %.3f / %.3f",
                  latent_flags, e_elbo, e_nll, t_elbo, t_nll);
    rc = gsvae("sample --ckpt %s --out %s/s.png --count 20", ckpt, dir);
    ck_assert_msg(rc == 0, "sample: %s", errout);
    rc = gsvae("recon --ckpt %s --data %s --out %s/r.png --images 16", ckpt, testutil_data_dir(),
               dir);
    ck_assert_msg(rc == 0, "recon: %s", errout);
    if (!learned)
        return;
    /* The prior trained away from uniform, and eval uses it: with its
     * logits zeroed the same checkpoint scores otherwise. */
    const char *flat = testutil_path(dir, "flat.ckpt");
    zero_params_tail(ckpt, flat, linear);
    rc = gsvae("eval --ckpt %s --data %s --images 500 --iw-samples 20", flat, testutil_data_dir());
    ck_assert_msg(rc == 0, "eval: %d %s", rc, errout);
    double z_elbo, z_nll;
    eval_figures(out, &z_elbo, &z_nll);
    ck_assert_msg(fabs(z_elbo - t_elbo) > 0.01 && fabs(z_nll - t_nll) > 0.01,
                  "%s: the prior zeroed scores %.3f / %.3f, as trained %.3f / %.3f",
                  latent_flags, z_elbo, z_nll, t_elbo, t_nll);
}

START_TEST(linear_categorical_runs)
{
    check_linear_run("--latent-type categorical --latent 20x10", 200, 0);
    check_linear_run("--latent-type categorical --latent 20x10", 200, 1);
}
END_TEST

START_TEST(linear_bernoulli_runs)
{
    check_linear_run("--latent-type bernoulli --latent 200", 200, 0);
    check_linear_run("--latent-type bernoulli --latent 200", 200, 1);
}
END_TEST

/* Resuming a learned-prior run continues it exactly: the prior is in the
 * parameters and in the optimizer's state like every other weight. */
START_TEST(learned_prior_resumes_exactly)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir();
    const char *flags = "--hidden none --prior learned --latent 5x4 --optimizer momentum "
                        "--lr 1e-3 --eval-every 0 --eval-images 200 --iw-samples 5 "
                        "--threads 1 --quiet";
    int rc = gsvae("train --data %s --out %s --steps 60 %s", testutil_data_dir(), a, flags);
    ck_assert_msg(rc == 0, "%s", errout);
    rc = gsvae("train --data %s --out %s --steps 30 %s", testutil_data_dir(), b, flags);
    ck_assert_msg(rc == 0, "%s", errout);
    rc = gsvae("train --data %s --out %s --steps 60 --resume %s", testutil_data_dir(), b, flags);
    ck_assert_msg(rc == 0, "%s", errout);
    char err[ERR_LEN];
    ckpt_file *fa, *fb;
    ck_assert_msg(ckpt_read(testutil_path(a, "model.ckpt"), &fa, err) == 0, "%s", err);
    ck_assert_msg(ckpt_read(testutil_path(b, "model.ckpt"), &fb, err) == 0, "%s", err);
    const void *pa, *pb;
    uint64_t la, lb;
    ck_assert(ckpt_get(fa, "params", &pa, &la, err) == 0 && ckpt_get(fb, "params", &pb, &lb, err) == 0);
    ck_assert_uint_eq(la, lb);
    ck_assert_uint_eq(la / sizeof(float), 784 * 20 + 20 + 20 * 784 + 784 + 20);
    ck_assert(memcmp(pa, pb, la) == 0);
    ckpt_free(fa);
    ckpt_free(fb);
}
END_TEST

START_TEST(bad_prior_and_hidden_flags)
{
    const char *dir = testutil_tmpdir();
    int rc = gsvae("train --data %s --out %s/r --prior gaussian", testutil_data_dir(), dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "--prior 'gaussian': expected uniform or learned"),
                  "%s", errout);
    rc = gsvae("train --data %s --out %s/r --hidden nothing", testutil_data_dir(), dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "or none"), "%s", errout);
    rc = gsvae("train --task semisup --data %s --out %s/r --hidden none", testutil_data_dir(),
               dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "--hidden none"), "%s", errout);
}
END_TEST

static Suite *prior_suite(void)
{
    Suite *s = suite_create("prior");
    TCase *tc = tcase_create("prior");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, iw_bound_against_enumeration);
    tcase_add_test(tc, linear_categorical_runs);
    tcase_add_test(tc, linear_bernoulli_runs);
    tcase_add_test(tc, learned_prior_resumes_exactly);
    tcase_add_test(tc, bad_prior_and_hidden_flags);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(prior_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
