/* bench.c: `gsvae bench`: training and evaluation throughput of the
 * paper's model on real MNIST, and how close the step comes to the limit
 * set by the matrix products alone (each sgemm of a step timed in
 * isolation at its own shape). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cblas.h>

#include "cli.h"
#include "estimator.h"
#include "evaluate.h"
#include "outputs.h"
#include "parallel.h"
#include "task_vae.h"
#include "util.h"

typedef struct {
    int M, N, K;
    int ta, tb; /* op(A), op(B) transposed (par_sgemm's flags) */
} gemm_shape;

/* The sgemm calls of one training step, in layers.c's conventions; when
 * the encoder's first layer ran over the nonzero pixels (sparse.h), its
 * forward and weight gradient are not sgemm calls. */
static int step_gemms(const vae_model *m, int B, int first_sparse, gemm_shape *g)
{
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const linear_layer *ls = pass ? m->dec : m->enc;
        int nl = pass ? m->ndec : m->nenc;
        for (int i = 0; i < nl; i++) {
            int C = ls[i].in, OC = ls[i].out;
            if (pass == 0 && i == 0 && first_sparse)
                continue;
            g[n++] = (gemm_shape){B, OC, C, 0, 1};   /* forward */
            g[n++] = (gemm_shape){OC, C, B, 1, 0};   /* dW */
            if (pass == 1 || i > 0)
                g[n++] = (gemm_shape){B, C, OC, 0, 0}; /* din */
        }
    }
    return n;
}

static double gemm_flops(const gemm_shape *g, int n)
{
    double f = 0;
    for (int i = 0; i < n; i++)
        f += 2.0 * g[i].M * g[i].N * g[i].K;
    return f;
}

/* Seconds one call of each shape takes, summed: the best of several
 * rounds, each round averaging many calls. */
static double time_gemms(const gemm_shape *g, int n, char *err)
{
    size_t big = 0;
    for (int i = 0; i < n; i++) {
        size_t s = (size_t)g[i].M * g[i].K + (size_t)g[i].K * g[i].N + (size_t)g[i].M * g[i].N;
        if (s > big)
            big = s;
    }
    float *buf = xcalloc(big, sizeof(float), err, "bench buffers");
    if (!buf)
        return -1;
    for (size_t i = 0; i < big; i++)
        buf[i] = (float)(i % 7) * 0.01f;
    double total = 0;
    for (int i = 0; i < n; i++) {
        const gemm_shape *s = &g[i];
        float *A = buf, *Bm = buf + (size_t)s->M * s->K, *C = Bm + (size_t)s->K * s->N;
        int lda = s->ta ? s->M : s->K;
        int ldb = s->tb ? s->K : s->N;
        double best = INFINITY;
        for (int round = 0; round < 5; round++) {
            int reps = 20;
            double t0 = now_seconds();
            for (int r = 0; r < reps; r++)
                par_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, Bm, ldb, 1.0f, C, s->N);
            double t = (now_seconds() - t0) / reps;
            if (t < best)
                best = t;
        }
        total += best;
    }
    free(buf);
    return total;
}

int cmd_bench(int argc, char **argv)
{
    run_opts o;
    vae_task *v = calloc(1, sizeof *v);
    if (!v) {
        fprintf(stderr, "gsvae bench: out of memory\n");
        return 1;
    }
    driver_defaults(&task_vae, &o, v);
    long steps = 500;
    int iw_images = 100;
    const flag_def defs[] = {
        {"data", FLAG_STRING, &o.data_dir, "DIR", "directory of the MNIST IDX files"},
        {"latent-type", FLAG_STRING, &v->latent_type, "TYPE", "categorical or bernoulli"},
        {"latent", FLAG_STRING, &v->latent, "SPEC", "NxK or N (default 20x10 / 200)"},
        {"hidden", FLAG_STRING, &v->hidden, "W1,W2", "encoder widths (none: linear)"},
        {"prior", FLAG_STRING, &v->prior, "P", "uniform or learned"},
        {"estimator", FLAG_STRING, &o.estimator, "NAME", "gradient estimator"},
        {"samples", FLAG_INT, &v->samples, "K", "vimco, gumbel: samples of the K-sample bound"},
        {"batch", FLAG_INT, &o.batch, "B", "examples per step"},
        {"steps", FLAG_LONG, &steps, "S", "timed training steps (after 20 warm-up steps)"},
        {"threads", FLAG_INT, &o.threads, "T", "threads for sgemm and the optimizer (0: every core)"},
        {"iw-samples", FLAG_INT, &v->iw_samples, "S", "importance samples per image"},
        {"iw-images", FLAG_INT, &iw_images, "N", "test images for the importance-sampling timing"},
        {"seed", FLAG_LONG, &o.seed, "N", "seed"},
        {NULL, 0, NULL, NULL, NULL},
    };
    char err[ERR_LEN];
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        flags_usage(stdout, "gsvae bench [FLAGS]",
                    "Time training steps and evaluation on real MNIST; print examples/s,\n"
                    "ms/step, achieved and sgemm-bound GFLOP/s, peak memory.",
                    defs);
        free(v);
        return 0;
    }
    if (rc < 0 || vae_task_check(&o, v, err) != 0) {
        fprintf(stderr, "gsvae bench: %s\n", err);
        free(v);
        return 2;
    }
    const vae_config cfg = v->cfg;
    if (steps < 1 || iw_images < 1) {
        fprintf(stderr, "gsvae bench: --steps and --iw-images must be >= 1\n");
        free(v);
        return 2;
    }
    int threads = driver_threads(o.threads);
    par_set_threads(threads);
    binarize_mode bin;
    driver_eval_binarize(o.binarize, &bin);
    const estimator *est = v->est;
    dataset train = {0}, test = {0};
    vae_model m = {0};
    vae_acts a = {0};
    est_state es = {0};
    adam_state adam = {0};
    eval_ws ev = {0};
    batcher bt = {0};
    float *x = NULL, *test_x = NULL;
    int ntest = 0;
    rng_t r;
    rng_seed(&r, (uint64_t)o.seed);
    est_options eo;
    vae_task_est_options(&o, v, &eo);
    rc = 1;
    if (dataset_load_split(o.data_dir, "train", &train, err) != 0 ||
        dataset_load_split(o.data_dir, "test", &test, err) != 0 ||
        vae_init(&m, &cfg, &r, err) != 0 || vae_acts_init(&a, &m, o.batch * v->samples, err) != 0 ||
        est_state_init(&es, &m, o.batch, &eo, err) != 0 || est_check(est, &cfg, err) != 0 ||
        adam_init(&adam, m.nparams, err) != 0 || (adam.threads = threads) < 1 || eval_ws_init(&ev, &m, eval_ws_rows(&m, 1000, threads), err) != 0 ||
        batcher_init(&bt, &train, (uint32_t)o.batch, &r, err) != 0 ||
        !(test_x = driver_eval_images(&test, bin, 10000, &ntest, err)) ||
        !(x = xcalloc((size_t)o.batch * cfg.D, sizeof(float), err, "batch"))) {
        fprintf(stderr, "gsvae bench: %s\n", err);
        goto out;
    }
    ev.threads = threads;
    double recon, kl, t0 = 0;
    for (long s = 0; s < steps + 20; s++) {
        if (s == 20)
            t0 = now_seconds();
        batcher_next(&bt, bin, &r, x, NULL);
        train_step(&m, &a, &es, est, &adam, x, o.batch, 1.0f, (float)o.lr, &r, &recon, &kl);
    }
    double step_s = (now_seconds() - t0) / (double)steps;

    /* The last step's batch tells whether the first layer went sparse,
     * and over how many pixels: a multiply-add per nonzero pixel and
     * output, forward and for the weight gradient. */
    double nnz = 0;
    for (int b = 0; b < o.batch; b++)
        nnz += a.in_nnz[b];
    double sparse_flops = a.in_sparse ? 4.0 * nnz * m.enc[0].out : 0.0;
    gemm_shape g[6 * (VAE_MAX_HIDDEN + 1)];
    int ng = step_gemms(&m, o.batch, a.in_sparse, g);
    double gemm_fl = gemm_flops(g, ng), flops = gemm_fl + sparse_flops;
    double gemm_s = time_gemms(g, ng, err);
    if (gemm_s < 0) {
        fprintf(stderr, "gsvae bench: %s\n", err);
        goto out;
    }

    rng_t er;
    rng_seed(&er, EVAL_SEED);
    elbo_result e;
    double te = now_seconds();
    eval_elbo(&m, &ev, test_x, ntest, &er, &e);
    double elbo_s = now_seconds() - te;
    int niw = iw_images < ntest ? iw_images : ntest;
    te = now_seconds();
    double nll = eval_iw(&m, &ev, test_x, niw, v->iw_samples, &er);
    double iw_s = now_seconds() - te;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    char lat[32], hid[64];
    vae_format_latent(&cfg, lat, sizeof lat);
    vae_format_hidden(&cfg, hid, sizeof hid);
    printf("gsvae bench: %s %s latent, hidden %s, %s, batch %d, threads %d, %ld steps\n",
           lat, stoch_latent_name(cfg.latent), hid, stoch_estimator_name(est->id), o.batch,
           threads, steps);
    printf("blas: %s kernels (%s)\n", openblas_get_corename(), openblas_get_config());
    printf("train: %.0f examples/s, %.3f ms/step (loss %.2f)\n", o.batch / step_s,
           1e3 * step_s, recon + kl);
    printf("matmul: %.1f MFLOP/step performed (sgemm %.1f, first layer over %.1f%% nonzero "
           "pixels %.1f); achieved %.1f GFLOP/s; sgemm alone at these shapes %.1f GFLOP/s "
           "(%.3f ms/step): step at %.0f%% of the sgemm-bound limit\n",
           flops / 1e6, gemm_fl / 1e6, 100.0 * nnz / ((double)o.batch * cfg.D),
           sparse_flops / 1e6, flops / step_s / 1e9, gemm_fl / gemm_s / 1e9, 1e3 * gemm_s,
           100.0 * gemm_s / step_s);
    printf("eval: test -ELBO %.2f on %d images in %.3f s (%.0f images/s)\n", e.neg_elbo, ntest,
           elbo_s, ntest / elbo_s);
    printf("eval: importance sampling, %d samples x %d images in %.3f s (%.0f samples/s), "
           "-log p(x) %.2f, %.1f%% of the samples distinct codes (decoded)\n",
           v->iw_samples, niw, iw_s, (double)v->iw_samples * niw / iw_s, nll,
           100.0 * (double)ev.decoded / ((double)v->iw_samples * niw));
    printf("peak resident memory: %.1f MB\n", ru.ru_maxrss / 1024.0);
    rc = 0;
out:
    free(x);
    free(test_x);
    batcher_free(&bt);
    eval_ws_free(&ev);
    adam_free(&adam);
    est_state_free(&es);
    vae_acts_free(&a);
    vae_free(&m);
    dataset_free(&train);
    dataset_free(&test);
    free(v);
    return rc;
}
