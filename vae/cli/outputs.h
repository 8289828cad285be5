/* outputs.h: the VAE's image grids: reconstructions and prior samples. */
#ifndef GSVAE_OUTPUTS_H
#define GSVAE_OUTPUTS_H

#include "evaluate.h"
#include "model.h"
#include "rng.h"

/* Rows of 16 test images, each row followed by their reconstructions (the
 * decoder's pixel means given a hard sample of the code). */
int write_recon_png(const char *path, const vae_model *m, eval_ws *w, const float *x, int n,
                    rng_t *r, char *err);
/* count decoded samples from the model's prior (uniform or learned), pixel
 * means, 10 per row. */
int write_samples_png(const char *path, const vae_model *m, eval_ws *w, int count, rng_t *r,
                      char *err);

#endif
