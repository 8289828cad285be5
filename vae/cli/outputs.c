#include "outputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "estimator.h"
#include "layers.h"
#include "pngio.h"
#include "util.h"

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
    if (count > eval_ws_block(w))
        count = eval_ws_block(w);
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
    if (count > eval_ws_block(w))
        count = eval_ws_block(w);
    float *means = xcalloc((size_t)count * c->D, sizeof(float), err, "samples grid");
    if (!means)
        return -1;
    /* Codes from the prior, drawn as from q with the prior's logits in
     * every row: eta for a learned prior, zeros (exactly uniform) else. */
    const float *eta = vae_prior_logits(m);
    if (eta)
        for (int i = 0; i < count; i++)
            memcpy(w->logits_rep + (size_t)i * zdim, eta, sizeof(float) * zdim);
    else
        memset(w->logits_rep, 0, sizeof(float) * (size_t)count * zdim);
    est_sample_hard(c, w->logits_rep, count, w->noise, w->z, r);
    vae_decode(m, &w->a, w->z, count);
    decoded_means(m, w, count, means);
    int rc = png_write_grid_scaled(path, means, count, 28, 28, 10, 2, 2, err);
    free(means);
    return rc;
}
