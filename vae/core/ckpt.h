/* ckpt.h: a versioned container of named byte sections; the model code
 * decides what the sections hold (hyperparameters, weights, optimizer state).
 *
 * File layout, every integer little-endian regardless of the host:
 *
 *   "GSVAECKP"                 8 bytes, magic
 *   version                    u32, CKPT_VERSION
 *   section count              u32, at most CKPT_MAX_SECTIONS
 *   per section:
 *     name                     32 bytes, NUL-padded (1..31 characters)
 *     length                   u64
 *     data                     length bytes
 *   crc                        u32, zlib crc32 of every byte before it
 *
 * Section data is stored as given: the container does not byte-swap it, so
 * arrays of floats are in the writer's byte order (little-endian on every
 * machine we run).  Names are unique within a file.
 *
 * Functions follow the util.h convention: 0 on success, -1 with a one-line
 * message in err (ERR_LEN bytes) that names the file and the reason. */
#ifndef GSVAE_CKPT_H
#define GSVAE_CKPT_H

#include <stdint.h>

#define CKPT_VERSION 1u
#define CKPT_NAME_LEN 32
#define CKPT_MAX_SECTIONS 256
/* Whole-file limit, checked before allocating: far above any model here and
 * low enough that a corrupt or foreign file cannot make us allocate wildly. */
#define CKPT_MAX_BYTES (2ull << 30)

typedef struct {
    const char *name;
    const void *data;
    uint64_t len;
} ckpt_section;

/* Write count sections (0..CKPT_MAX_SECTIONS) to path atomically. */
int ckpt_write(const char *path, const ckpt_section *sections, int count, char *err);

/* A checkpoint read fully into memory and verified (layout and checksum). */
typedef struct ckpt_file ckpt_file;

/* On success *out is a checkpoint the caller releases with ckpt_free; on
 * failure *out is NULL. */
int ckpt_read(const char *path, ckpt_file **out, char *err);

/* Point *data at the bytes of section name (valid until ckpt_free; not
 * aligned for any type, so copy out with memcpy) and set *len. */
int ckpt_get(const ckpt_file *f, const char *name, const void **data, uint64_t *len, char *err);

/* Copy section name into dst, which must be exactly len bytes long: a size
 * mismatch means the checkpoint belongs to a differently shaped model. */
int ckpt_get_exact(const ckpt_file *f, const char *name, void *dst, uint64_t len, char *err);

/* Number of sections and the name of section i (0-based), for tools that
 * list a checkpoint. */
int ckpt_count(const ckpt_file *f);
const char *ckpt_name(const ckpt_file *f, int i);

void ckpt_free(ckpt_file *f);

#endif
