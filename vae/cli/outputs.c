#include "outputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "estimator.h"
#include "layers.h"
#include "pngio.h"
#include "util.h"

float *load_test_set(const dataset *d, binarize_mode bin, int limit, int *n, char *err)
{
    *n = (int)d->count < limit ? (int)d->count : limit;
    float *x = xcalloc((size_t)*n * d->dim, sizeof(float), err, "test set");
    if (!x)
        return NULL;
    rng_t r;
    rng_seed(&r, EVAL_SEED);
    for (int i = 0; i < *n; i++)
        dataset_example(d, (uint32_t)i, bin, &r, x + (size_t)i * d->dim);
    return x;
}

int write_log_csv(const char *dir, const run_state *st, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    fprintf(af.f, "step,epoch,tau,train_loss,train_recon,train_kl,test_neg_elbo,"
                  "test_neg_elbo_relaxed,seconds\n");
    for (long i = 0; i < st->nlog; i++) {
        const log_row *r = &st->log[i];
        /* An empty field is a figure not measured at that row. */
        const double figures[] = {r->train_loss,    r->train_recon,
                                  r->train_kl,      r->test_neg_elbo,
                                  r->test_neg_elbo_relaxed};
        fprintf(af.f, "%ld,%.4f,%.6f", r->step, r->epoch, r->tau);
        for (size_t k = 0; k < sizeof figures / sizeof figures[0]; k++) {
            fputc(',', af.f);
            if (isfinite(figures[k]))
                fprintf(af.f, "%.4f", figures[k]);
        }
        fprintf(af.f, ",%.3f\n", r->seconds);
    }
    return af_commit(&af, err);
}

/* Pixel means sigmoid(logits) of the last decode, rows x D, into out. */
static void decoded_means(const vae_model *m, eval_ws *w, int rows, float *out)
{
    const float *xl = w->a.dec[m->ndec - 1];
    for (size_t i = 0; i < (size_t)rows * m->cfg.D; i++)
        out[i] = sigmoidf_stable(xl[i]);
}

int write_recon_png(const char *path, const vae_model *m, eval_ws *w, const float *x, int n,
                    rng_t *r, char *err)
{
    enum { COLS = 16, PAIRS = 4 };
    int D = m->cfg.D, count = n < COLS * PAIRS ? n : COLS * PAIRS;
    if (count > w->rows)
        count = w->rows;
    float *grid = xcalloc((size_t)2 * COLS * PAIRS * D, sizeof(float), err, "recon grid");
    float *means = xcalloc((size_t)count * D, sizeof(float), err, "recon grid");
    if (!grid || !means) {
        free(grid);
        free(means);
        return -1;
    }
    vae_encode(m, &w->a, x, count);
    est_sample_hard(&m->cfg, vae_logits(m, &w->a), count, w->noise, w->z, r);
    vae_decode(m, &w->a, w->z, count);
    decoded_means(m, w, count, means);
    for (int i = 0; i < count; i++) {
        int row = i / COLS, col = i % COLS;
        memcpy(grid + (size_t)((2 * row) * COLS + col) * D, x + (size_t)i * D, sizeof(float) * D);
        memcpy(grid + (size_t)((2 * row + 1) * COLS + col) * D, means + (size_t)i * D,
               sizeof(float) * D);
    }
    int rows_used = (count + COLS - 1) / COLS;
    int rc = png_write_grid_scaled(path, grid, 2 * COLS * rows_used, 28, 28, COLS, 2, 2, err);
    free(grid);
    free(means);
    return rc;
}

int write_samples_png(const char *path, const vae_model *m, eval_ws *w, int count, rng_t *r,
                      char *err)
{
    const vae_config *c = &m->cfg;
    int zdim = vae_zdim(c);
    if (count > w->rows)
        count = w->rows;
    float *means = xcalloc((size_t)count * c->D, sizeof(float), err, "samples grid");
    if (!means)
        return -1;
    /* The prior is uniform: zero logits give it exactly. */
    memset(w->logits_rep, 0, sizeof(float) * (size_t)count * zdim);
    est_sample_hard(c, w->logits_rep, count, w->noise, w->z, r);
    vae_decode(m, &w->a, w->z, count);
    decoded_means(m, w, count, means);
    int rc = png_write_grid_scaled(path, means, count, 28, 28, 10, 2, 2, err);
    free(means);
    return rc;
}
