/* test_parallel.c: the threaded paths give the single-threaded results:
 * bit for bit where each element is computed alone (Adam), and within a
 * stated tolerance where OpenBLAS's threads change the order of sums. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "adam.h"
#include "estimator.h"
#include "parallel.h"
#include "task_vae.h"
#include "util.h"

static void mark(size_t lo, size_t hi, void *ctx)
{
    unsigned char *seen = ctx;
    for (size_t i = lo; i < hi; i++)
        seen[i]++;
}

typedef void (*par_splitter)(size_t n, int threads, void (*fn)(size_t lo, size_t hi, void *ctx),
                             void *ctx);

/* split hands fn every element of 0..n-1 exactly once, for each of the
 * sizes and every thread count from 1 to max_threads. */
static void assert_covers_once(par_splitter split, const size_t *sizes, size_t nsizes,
                               int max_threads)
{
    for (size_t k = 0; k < nsizes; k++)
        for (int threads = 1; threads <= max_threads; threads++) {
            size_t n = sizes[k];
            unsigned char *seen = calloc(n + 1, 1);
            split(n, threads, mark, seen);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(seen[i] == 1, "n %zu threads %d: element %zu seen %d times", n,
                              threads, i, seen[i]);
            free(seen);
        }
}

START_TEST(ranges_cover_every_element_once)
{
    const size_t sizes[] = {0, 1, 63, 4095, 4096, 4097, 100000, 1000003};
    assert_covers_once(par_ranges, sizes, sizeof sizes / sizeof sizes[0], 5);
}
END_TEST

START_TEST(split_covers_every_element_once)
{
    const size_t sizes[] = {0, 1, 2, 3, 7, 1000, 4097};
    assert_covers_once(par_split, sizes, sizeof sizes / sizeof sizes[0], PAR_MAX_THREADS + 2);
}
END_TEST

static void count_each(int t, int threads, void *ctx)
{
    int *seen = ctx;
    __atomic_add_fetch(&seen[t], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&seen[PAR_MAX_THREADS + threads], 1, __ATOMIC_RELAXED);
}

/* par_each runs fn once for each t < threads, told the count, for every
 * count (beyond the pool's limit: capped there), over and over, as the
 * importance-sampled bound calls it once a block and the workers stay. */
START_TEST(each_runs_every_thread_once)
{
    for (int round = 0; round < 2000; round++) {
        int threads = 1 + round % (PAR_MAX_THREADS + 2);
        int n = threads < PAR_MAX_THREADS ? threads : PAR_MAX_THREADS;
        int seen[2 * PAR_MAX_THREADS + 1] = {0};
        par_each(threads, count_each, seen);
        for (int t = 0; t < PAR_MAX_THREADS; t++)
            ck_assert_int_eq(seen[t], t < n ? 1 : 0);
        ck_assert_int_eq(seen[PAR_MAX_THREADS + n], n);
    }
}
END_TEST

/* A call made inside a worker's job (while the pool is taken) runs in that
 * thread alone and still covers its range. */
static void nested(size_t lo, size_t hi, void *ctx)
{
    unsigned char *seen = ctx;
    for (size_t i = lo; i < hi; i++)
        par_split(3, 2, mark, seen + 3 * i);
}

START_TEST(nested_calls_run_in_place)
{
    unsigned char seen[3 * 40] = {0};
    par_split(40, 4, nested, seen);
    for (int i = 0; i < 3 * 40; i++)
        ck_assert_int_eq(seen[i], 1);
}
END_TEST

START_TEST(adam_is_bit_identical_across_threads)
{
    size_t n = 300007;
    char err[ERR_LEN];
    adam_state a1, a3;
    ck_assert(adam_init(&a1, n, err) == 0 && adam_init(&a3, n, err) == 0);
    a3.threads = 3;
    float *p1 = malloc(n * sizeof(float)), *p3 = malloc(n * sizeof(float));
    float *g = malloc(n * sizeof(float));
    rng_t r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < n; i++)
        p1[i] = p3[i] = (float)rng_normal(&r);
    for (int step = 0; step < 4; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (float)rng_normal(&r) * 0.1f;
        adam_update(&a1, p1, g, 1e-3f);
        adam_update(&a3, p3, g, 1e-3f);
    }
    ck_assert(memcmp(p1, p3, n * sizeof(float)) == 0);
    ck_assert(memcmp(a1.m, a3.m, n * sizeof(float)) == 0);
    ck_assert(memcmp(a1.v, a3.v, n * sizeof(float)) == 0);
    free(p1);
    free(p3);
    free(g);
    adam_free(&a1);
    adam_free(&a3);
}
END_TEST

/* par_sgemm against one single-threaded cblas_sgemm on the step's shapes
 * (rows split: the batch; columns split: a weight gradient of few rows)
 * with every transpose, beta 0 and 1, and 1 to 3 threads: equal to float
 * rounding (bit for bit on one thread), and the same bits again on a
 * second call with the same threads. */
START_TEST(sgemm_split_equals_one_sgemm)
{
    const int shapes[][3] = {{100, 512, 784}, {200, 784, 100}, {100, 784, 200},
                             {16, 3000, 100}, {1100, 288, 64}, {37, 513, 129}};
    rng_t r;
    rng_seed(&r, 11);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
        float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
        float *C2 = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M * K; i++)
            A[i] = (float)rng_normal(&r);
        for (int i = 0; i < K * N; i++)
            B[i] = (float)rng_normal(&r);
        for (int t = 0; t < 8; t++) {
            int ta = t & 1, tb = (t >> 1) & 1;
            float beta = (t >> 2) ? 1.0f : 0.0f;
            int lda = ta ? M : K, ldb = tb ? K : N;
            for (int i = 0; i < M * N; i++)
                C0[i] = (float)i * 1e-3f;
            openblas_set_num_threads(1);
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, M, N, K, 0.5f, A, lda, B, ldb, beta, C0,
                        N);
            for (int threads = 1; threads <= 3; threads++) {
                par_set_threads(threads);
                for (int i = 0; i < M * N; i++)
                    C1[i] = (float)i * 1e-3f;
                par_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C1, N);
                for (int i = 0; i < M * N; i++)
                    C2[i] = (float)i * 1e-3f;
                par_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C2, N);
                ck_assert(memcmp(C1, C2, sizeof(float) * M * N) == 0);
                if (threads == 1)
                    ck_assert(memcmp(C0, C1, sizeof(float) * M * N) == 0);
                /* |C| is about sqrt(K)/2 here; sgemm's roundings about
                 * K * 2^-24 of it at worst. */
                float tol = 1e-5f * sqrtf((float)K);
                for (int i = 0; i < M * N; i++)
                    ck_assert_msg(fabsf(C0[i] - C1[i]) <= tol * (1.0f + fabsf(C0[i])),
                                  "%dx%dx%d ta %d tb %d beta %g threads %d: [%d] %.9g vs %.9g",
                                  M, N, K, ta, tb, (double)beta, threads, i, (double)C0[i],
                                  (double)C1[i]);
            }
        }
        free(A);
        free(B);
        free(C0);
        free(C1);
        free(C2);
    }
    par_set_threads(1);
}
END_TEST

/* The notebook's model, one batch, 20 steps on 1 and on 2 threads: the
 * products' tiles fall differently (par_sgemm), so the losses agree to a
 * relative 1e-4 rather than bit for bit. */
START_TEST(threads_change_results_only_within_tolerance)
{
    char err[ERR_LEN];
    double losses[2][20];
    for (int pass = 0; pass < 2; pass++) {
        par_set_threads(pass + 1);
        vae_config c = {LATENT_CATEGORICAL, 20, 10, 784, 2, {512, 256}, VAE_PRIOR_UNIFORM, 0.0f};
        vae_model m;
        vae_acts a;
        est_state es;
        adam_state adam;
        rng_t r;
        rng_seed(&r, 3);
        ck_assert(vae_init(&m, &c, &r, err) == 0);
        ck_assert(vae_acts_init(&a, &m, 100, err) == 0);
        ck_assert(est_state_init(&es, &m, 100, NULL, err) == 0);
        ck_assert(adam_init(&adam, m.nparams, err) == 0);
        adam.threads = pass + 1;
        float *x = malloc(100 * 784 * sizeof(float));
        for (int i = 0; i < 100 * 784; i++)
            x[i] = rng_uniformf_open(&r) < 0.13f ? 1.0f : 0.0f;
        for (int s = 0; s < 20; s++) {
            double recon, kl;
            losses[pass][s] = train_step(&m, &a, &es, estimator_find("gumbel"), &adam, x, 100,
                                         1.0f, 1e-3f, &r, &recon, &kl);
        }
        free(x);
        adam_free(&adam);
        est_state_free(&es);
        vae_acts_free(&a);
        vae_free(&m);
    }
    for (int s = 0; s < 20; s++)
        ck_assert_msg(fabs(losses[0][s] - losses[1][s]) <= 1e-4 * fabs(losses[0][s]),
                      "step %d: %.9g vs %.9g", s, losses[0][s], losses[1][s]);
    /* The loss fell, so the comparison covers real training. */
    ck_assert(losses[0][19] < losses[0][0] - 50.0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("parallel");
    TCase *tc = tcase_create("parallel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ranges_cover_every_element_once);
    tcase_add_test(tc, split_covers_every_element_once);
    tcase_add_test(tc, each_runs_every_thread_once);
    tcase_add_test(tc, nested_calls_run_in_place);
    tcase_add_test(tc, adam_is_bit_identical_across_threads);
    tcase_add_test(tc, sgemm_split_equals_one_sgemm);
    tcase_add_test(tc, threads_change_results_only_within_tolerance);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
