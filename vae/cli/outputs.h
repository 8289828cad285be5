/* outputs.h: what a run writes besides its checkpoint (log.csv and the
 * image grids), and the fixed test set every evaluation scores. */
#ifndef GSVAE_OUTPUTS_H
#define GSVAE_OUTPUTS_H

#include "dataset.h"
#include "evaluate.h"
#include "model.h"
#include "train.h"

/* The first min(limit, count) test images, binarized once with the fixed
 * evaluation seed (EVAL_SEED), so every run is scored on the same images. */
float *load_test_set(const dataset *d, binarize_mode bin, int limit, int *n, char *err);

/* DIR/log.csv from the run's rows, written atomically. */
int write_log_csv(const char *dir, const run_state *st, char *err);
/* Rows of 16 test images, each row followed by their reconstructions (the
 * decoder's pixel means given a hard sample of the code). */
int write_recon_png(const char *path, const vae_model *m, eval_ws *w, const float *x, int n,
                    rng_t *r, char *err);
/* count decoded samples from the uniform prior, pixel means, 10 per row. */
int write_samples_png(const char *path, const vae_model *m, eval_ws *w, int count, rng_t *r,
                      char *err);

#endif
