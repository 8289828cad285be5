/* idx.h: reader for the IDX files of MNIST and Fashion-MNIST.
 *
 * Gzipped files (one or more gzip members, inflated with zlib) and plain
 * files are read alike; bytes after the data, in the file or after the last
 * gzip member, are refused.  Only regular files are read (a FIFO is refused
 * without blocking).  Nothing is allocated from an untrusted header before
 * the header has been checked against hard limits and, for plain files,
 * against the file size; a gzipped stream is read in bounded chunks, so a
 * lying header cannot make us allocate much more than the stream really
 * holds.
 *
 * Errors: every function that can fail returns 0 on success and -1 on
 * failure, and then writes one line into err (IDX_ERR_LEN bytes) that names
 * the file and the reason, e.g.
 *   "data/mnist/train-images-idx3-ubyte.gz: bad magic 0x00000804, expected 0x00000803". */
#ifndef GSVAE_IDX_H
#define GSVAE_IDX_H

#include <stddef.h>
#include <stdint.h>

/* Equal to ERR_LEN of vae/core/util.h (this reader does not include it, so
 * that the fuzzer can link it alone): callers pass either kind of buffer.  A
 * path too long to fit loses its middle, never the reason. */
#define IDX_ERR_LEN 8192
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
/* Hard limits on what a header may claim. */
#define IDX_MAX_ITEMS 10000000u
#define IDX_MAX_SIDE 4096u
/* Cap on count * rows * cols: 8 GiB, far above any data set we read, far
 * below what would overflow a size_t or exhaust a machine by accident. */
#define IDX_MAX_BYTES (8ull << 30)

typedef enum { IDX_IMAGES = 3, IDX_LABELS = 1 } idx_kind;

/* One IDX file in memory.  The struct owns data; idx_free releases it. */
typedef struct {
    idx_kind kind;
    uint32_t count;       /* number of items (images or labels) */
    uint32_t rows, cols;  /* 1 x 1 for labels */
    uint8_t *data;        /* count * rows * cols bytes */
} idx_file;

/* Read an IDX file (images or labels, detected from the magic). */
int idx_read(const char *path, idx_file *out, char *err);
/* Read and require a kind; labels are also checked to lie in 0..9. */
int idx_read_kind(const char *path, idx_kind kind, idx_file *out, char *err);
/* Check that every label of a labels file lies in 0..9; path names the file
 * in the message.  idx_read_kind(IDX_LABELS) already does this. */
int idx_check_labels(const idx_file *f, const char *path, char *err);
void idx_free(idx_file *f);

#endif
