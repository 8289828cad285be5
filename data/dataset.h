/* dataset.h: images paired with labels, batching with a seeded shuffle, and
 * binarization.  A dataset owns its pixels and labels; dataset_free
 * releases them. */
#ifndef GSVAE_DATASET_H
#define GSVAE_DATASET_H

#include <stdint.h>

#include "idx.h"
#include "rng.h"

typedef struct {
    uint32_t count;    /* number of examples */
    uint32_t dim;      /* pixels per example (rows * cols) */
    uint32_t rows, cols;
    uint8_t *pixels;   /* count * dim, 0..255 */
    uint8_t *labels;   /* count, 0..9 */
} dataset;

/* Load images and labels and check that their counts agree. */
int dataset_load(const char *images_path, const char *labels_path, dataset *out, char *err);
/* Load DIR/{train,t10k}-images-idx3-ubyte[.gz] and the matching labels;
 * split is "train" or "test".  The .gz file is used when present, else the
 * plain one. */
int dataset_load_split(const char *dir, const char *split, dataset *out, char *err);
void dataset_free(dataset *d);

typedef enum {
    BIN_NONE,       /* intensities in [0,1] */
    BIN_DYNAMIC,    /* each pixel ~ Bernoulli(intensity), resampled every draw */
    BIN_THRESHOLD   /* pixel > 127 */
} binarize_mode;

/* Parse "dynamic", "threshold" or "none"; -1 if unknown. */
int binarize_parse(const char *s, binarize_mode *out);
const char *binarize_name(binarize_mode m);

/* Write example i of d into x (dim floats) under mode m; r is used only by
 * BIN_DYNAMIC. */
void dataset_example(const dataset *d, uint32_t i, binarize_mode m, rng_t *r, float *x);

/* Epoch-wise shuffled batching.  The batcher owns its permutation.  The
 * order is reshuffled (Fisher-Yates with the caller's rng) the moment an
 * epoch ends, so between calls pos < count, and order, pos and epoch, with
 * the rng, are the whole state a checkpoint needs to continue the stream. */
typedef struct {
    const dataset *d;
    uint32_t *order;  /* count entries, a permutation of 0..count-1 */
    uint32_t pos;     /* next position in order */
    uint32_t batch;
    uint64_t epoch;   /* completed passes over the data */
} batcher;

int batcher_init(batcher *b, const dataset *d, uint32_t batch, rng_t *r, char *err);
/* Fill x (batch * dim floats) and, if labels is not NULL, labels (batch
 * bytes) with the next full batch; reshuffles with r when an epoch ends.
 * Always returns a full batch. */
void batcher_next(batcher *b, binarize_mode m, rng_t *r, float *x, uint8_t *labels);
void batcher_free(batcher *b);

#endif
