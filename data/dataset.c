/* dataset.c: images paired with labels, binarization and shuffled batching. */
#include "dataset.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* The loaders below hand their ERR_LEN buffers to the IDX reader. */
_Static_assert(IDX_ERR_LEN == ERR_LEN, "IDX_ERR_LEN and ERR_LEN must agree");

int dataset_load(const char *images_path, const char *labels_path, dataset *out, char *err)
{
    memset(out, 0, sizeof *out);
    idx_file im, lb;
    if (idx_read_kind(images_path, IDX_IMAGES, &im, err) != 0)
        return -1;
    if (idx_read_kind(labels_path, IDX_LABELS, &lb, err) != 0) {
        idx_free(&im);
        return -1;
    }
    if (im.count != lb.count) {
        errf(err, "%s: %u images, but %s holds %u labels", images_path, im.count, labels_path,
             lb.count);
        idx_free(&im);
        idx_free(&lb);
        return -1;
    }
    /* The dataset takes over both buffers. */
    out->count = im.count;
    out->rows = im.rows;
    out->cols = im.cols;
    out->dim = im.rows * im.cols;
    out->pixels = im.data;
    out->labels = lb.data;
    return 0;
}

/* DIR/PREFIX-WHAT-ubyte.gz when it exists, else the plain file.  Returns -1
 * when neither exists. */
static int pick_file(const char *dir, const char *prefix, const char *what, char *path,
                     size_t len, char *err)
{
    int n = snprintf(path, len, "%s/%s-%s-ubyte.gz", dir, prefix, what);
    if (n < 0 || (size_t)n >= len)
        return errf(err, "%s: path too long", dir);
    if (access(path, F_OK) == 0)
        return 0;
    path[n - 3] = '\0'; /* drop ".gz" */
    if (access(path, F_OK) == 0)
        return 0;
    return errf(err, "%s/%s-%s-ubyte[.gz]: no such file (fetch MNIST with `make data`)", dir,
                prefix, what);
}

int dataset_load_split(const char *dir, const char *split, dataset *out, char *err)
{
    memset(out, 0, sizeof *out);
    const char *prefix;
    if (!strcmp(split, "train"))
        prefix = "train";
    else if (!strcmp(split, "test"))
        prefix = "t10k";
    else
        return errf(err, "unknown split '%s' (expected train or test)", split);
    char images[4096], labels[4096];
    if (pick_file(dir, prefix, "images-idx3", images, sizeof images, err) != 0 ||
        pick_file(dir, prefix, "labels-idx1", labels, sizeof labels, err) != 0)
        return -1;
    return dataset_load(images, labels, out, err);
}

void dataset_free(dataset *d)
{
    if (!d)
        return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static const char *const binarize_names[] = {
    [BIN_NONE] = "none",
    [BIN_DYNAMIC] = "dynamic",
    [BIN_THRESHOLD] = "threshold",
};

int binarize_parse(const char *s, binarize_mode *out)
{
    for (int m = 0; m < (int)(sizeof binarize_names / sizeof binarize_names[0]); m++) {
        if (s && !strcmp(s, binarize_names[m])) {
            *out = (binarize_mode)m;
            return 0;
        }
    }
    return -1;
}

const char *binarize_name(binarize_mode m)
{
    if ((int)m < 0 || (int)m >= (int)(sizeof binarize_names / sizeof binarize_names[0]))
        return "unknown";
    return binarize_names[m];
}

/* Dynamic binarization's test rng_uniformf_open(r) < v / 255 as a test
 * of the uniform's 23 bits k against a threshold per intensity v: the
 * uniform ((float)k + 0.5) / 2^23 rises with k, so it lies below the
 * float v * (1/255) exactly for k < bin_threshold[v], the first k at which
 * it does not (2^23 if none does).  Found once, by bisection on the same
 * float expressions, so every pixel draws what it drew before. */
static uint32_t bin_threshold[256];
static pthread_once_t bin_once = PTHREAD_ONCE_INIT;

static void bin_threshold_init(void)
{
    for (int v = 0; v < 256; v++) {
        float p = (float)v * (1.0f / 255.0f);
        uint32_t lo = 0, hi = 1u << 23; /* the answer lies in [lo, hi] */
        while (lo < hi) {
            uint32_t k = lo + (hi - lo) / 2;
            if (((float)k + 0.5f) * (1.0f / 8388608.0f) < p)
                lo = k + 1;
            else
                hi = k;
        }
        bin_threshold[v] = lo;
    }
}

void dataset_example(const dataset *d, uint32_t i, binarize_mode m, rng_t *r, float *x)
{
    /* dim in a local and restrict pointers, so that the loops vectorise
     * (a store to x could otherwise change d->dim for the compiler). */
    const uint32_t dim = d->dim;
    const uint8_t *restrict p = d->pixels + (size_t)i * dim;
    float *restrict out = x;
    switch (m) {
    case BIN_DYNAMIC:
        /* u lies in (0,1) open, so intensity 0 never fires and 255
         * (p/255 == 1) always does; the test as bin_threshold's. */
    {
        pthread_once(&bin_once, bin_threshold_init);
        rng_t st = *r; /* in registers: rng.h */
        for (uint32_t j = 0; j < dim; j++)
            out[j] = (uint32_t)(rng_next(&st) >> 41) < bin_threshold[p[j]] ? 1.0f : 0.0f;
        *r = st;
        break;
    }
    case BIN_THRESHOLD:
        for (uint32_t j = 0; j < dim; j++)
            out[j] = p[j] > 127 ? 1.0f : 0.0f;
        break;
    case BIN_NONE:
    default:
        for (uint32_t j = 0; j < dim; j++)
            out[j] = (float)p[j] / 255.0f;
        break;
    }
}

/* Fisher-Yates over the whole permutation: every order equally likely given
 * a uniform rng_below. */
static void shuffle(uint32_t *order, uint32_t n, rng_t *r)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(r, i);
        uint32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

int batcher_init(batcher *b, const dataset *d, uint32_t batch, rng_t *r, char *err)
{
    memset(b, 0, sizeof *b);
    if (d->count == 0)
        return errf(err, "batcher: empty data set");
    if (batch == 0)
        return errf(err, "batcher: batch size must be at least 1");
    b->order = xcalloc(d->count, sizeof *b->order, err, "batcher order");
    if (!b->order)
        return -1;
    for (uint32_t i = 0; i < d->count; i++)
        b->order[i] = i;
    shuffle(b->order, d->count, r);
    b->d = d;
    b->batch = batch;
    return 0;
}

void batcher_next(batcher *b, binarize_mode m, rng_t *r, float *x, uint8_t *labels)
{
    const dataset *d = b->d;
    /* pos == count only in a state restored from elsewhere: the epoch was
     * already counted, only its reshuffle is due. */
    if (b->pos >= d->count) {
        shuffle(b->order, d->count, r);
        b->pos = 0;
    }
    for (uint32_t k = 0; k < b->batch; k++) {
        uint32_t i = b->order[b->pos++];
        dataset_example(d, i, m, r, x + (size_t)k * d->dim);
        if (labels)
            labels[k] = d->labels[i];
        /* Reshuffle as soon as an epoch ends, so that epoch counts completed
         * passes and a batch that straddles the boundary wraps into the new
         * order. */
        if (b->pos == d->count) {
            shuffle(b->order, d->count, r);
            b->pos = 0;
            b->epoch++;
        }
    }
}

void batcher_free(batcher *b)
{
    if (!b)
        return;
    free(b->order);
    memset(b, 0, sizeof *b);
}
