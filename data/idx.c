/* idx.c: the IDX reader.  Self-contained (libc, zlib and idx.h only) so the
 * fuzzer can link it alone.
 *
 * Every byte comes through zlib's gz* functions, which read gzipped and plain
 * files alike.  The header is checked against the limits of idx.h before
 * anything is allocated from it; then a plain file's size must match the
 * header exactly, while a gzip stream, whose true length is unknown until it
 * is inflated, is read in chunks into a buffer that grows only as the data
 * really arrives. */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* First allocation for a gzip stream's data; it doubles from there. */
#define IDX_FIRST_CHUNK (1u << 16)
/* Largest single gzread request: its length is unsigned but it returns int. */
#define IDX_MAX_READ (1u << 30)

/* Write "PATH: reason" into err; returns -1 for `return idx_fail(...)`. */
static int idx_fail(char *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int idx_fail(char *err, const char *path, const char *fmt, ...)
{
    if (!err)
        return -1;
    int n = snprintf(err, IDX_ERR_LEN, "%s: ", path);
    if (n < 0 || n >= IDX_ERR_LEN)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, IDX_ERR_LEN - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Describe the error state of gz after a short or failed read.  Returns 1
 * when the state is an error, after writing the message. */
static int gz_state_error(gzFile gz, const char *path, char *err)
{
    int code = Z_OK;
    const char *msg = gzerror(gz, &code);
    if (code == Z_OK)
        return 0;
    /* zlib prefixes its message with the name it was opened under, which
     * for gzdopen is "<fd:N>"; our message names the real path instead. */
    if (msg && !strncmp(msg, "<fd:", 4)) {
        const char *rest = strstr(msg, ">: ");
        if (rest)
            msg = rest + 3;
    }
    if (code == Z_BUF_ERROR)
        idx_fail(err, path, "truncated gzip stream (%s)", msg);
    else if (code == Z_ERRNO)
        idx_fail(err, path, "read error: %s", strerror(errno));
    else if (code == Z_MEM_ERROR)
        idx_fail(err, path, "out of memory while inflating");
    else
        idx_fail(err, path, "corrupt gzip stream: %s", msg);
    return 1;
}

/* Read up to n bytes, looping over gzread's partial reads.  Returns the count
 * read (less than n only at end of input), or -1 after writing err. */
static long long gz_read_full(gzFile gz, uint8_t *buf, size_t n, const char *path, char *err)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > IDX_MAX_READ)
            want = IDX_MAX_READ;
        int r = gzread(gz, buf + got, (unsigned)want);
        if (r < 0) {
            if (!gz_state_error(gz, path, err))
                idx_fail(err, path, "read error");
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long long)got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *kind_name(idx_kind k)
{
    return k == IDX_IMAGES ? "images" : "labels";
}

/* Check the magic number; want is 0 when either kind will do. */
static int check_magic(uint32_t magic, int want, const char *path, idx_kind *kind, char *err)
{
    if ((magic >> 16) != 0)
        return idx_fail(err, path, "bad magic 0x%08x, expected 0x%08x (not an IDX file)", magic,
                        want == IDX_LABELS ? IDX_MAGIC_LABELS : IDX_MAGIC_IMAGES);
    unsigned type = (magic >> 8) & 0xffu, ndims = magic & 0xffu;
    if (type != 0x08)
        return idx_fail(err, path,
                        "bad magic 0x%08x: element type 0x%02x, expected 0x08 (unsigned byte)",
                        magic, type);
    if (ndims != IDX_IMAGES && ndims != IDX_LABELS)
        return idx_fail(err, path,
                        "bad magic 0x%08x: wrong number of dimensions %u, expected 3 (images) or 1 (labels)",
                        magic, ndims);
    if (want && (int)ndims != want)
        return idx_fail(err, path, "bad magic 0x%08x (%s), expected 0x%08x (%s)", magic,
                        kind_name((idx_kind)ndims),
                        want == IDX_IMAGES ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS,
                        kind_name((idx_kind)want));
    *kind = (idx_kind)ndims;
    return 0;
}

/* Read the payload of a gzip stream.  The header's claim is only an upper
 * bound here: the buffer doubles as data actually arrives, so a header that
 * lies costs at most twice what the stream really holds. */
static int read_gz_payload(gzFile gz, uint64_t need, const char *path, uint8_t **out, char *err)
{
    size_t cap = need < IDX_FIRST_CHUNK ? (size_t)need : IDX_FIRST_CHUNK;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return idx_fail(err, path, "cannot allocate %zu bytes", cap);
    size_t got = 0;
    for (;;) {
        long long r = gz_read_full(gz, buf + got, cap - got, path, err);
        if (r < 0) {
            free(buf);
            return -1;
        }
        got += (size_t)r;
        if (got < cap) {
            if (!gz_state_error(gz, path, err))
                idx_fail(err, path,
                         "truncated: header claims %llu bytes of data, file holds %zu",
                         (unsigned long long)need, got);
            free(buf);
            return -1;
        }
        if (got == need)
            break;
        size_t next = cap * 2 < need ? cap * 2 : (size_t)need;
        uint8_t *grown = realloc(buf, next);
        if (!grown) {
            free(buf);
            return idx_fail(err, path, "cannot allocate %zu bytes", next);
        }
        buf = grown;
        cap = next;
    }

    /* Anything after the data is garbage; reading on also makes zlib check
     * the stream's CRC and length trailer. */
    uint8_t extra[4096];
    unsigned long long trailing = 0;
    for (;;) {
        long long r = gz_read_full(gz, extra, sizeof extra, path, err);
        if (r < 0) {
            free(buf);
            return -1;
        }
        trailing += (unsigned long long)r;
        if ((size_t)r < sizeof extra)
            break;
    }
    if (gz_state_error(gz, path, err)) {
        free(buf);
        return -1;
    }
    if (trailing) {
        free(buf);
        return idx_fail(err, path, "trailing garbage: %llu bytes after the %llu bytes of data",
                        trailing, (unsigned long long)need);
    }
    *out = buf;
    return 0;
}

/* Read a plain file's payload: its size was already checked against the
 * header, so one allocation of the claimed size is safe. */
static int read_plain_payload(gzFile gz, uint64_t need, const char *path, uint8_t **out, char *err)
{
    uint8_t *buf = malloc(need ? (size_t)need : 1);
    if (!buf)
        return idx_fail(err, path, "cannot allocate %llu bytes", (unsigned long long)need);
    long long r = gz_read_full(gz, buf, (size_t)need, path, err);
    if (r < 0) {
        free(buf);
        return -1;
    }
    if ((uint64_t)r != need) {
        /* The file shrank between fstat and the read. */
        free(buf);
        return idx_fail(err, path, "truncated: header claims %llu bytes of data, file holds %lld",
                        (unsigned long long)need, r);
    }
    uint8_t probe;
    r = gz_read_full(gz, &probe, 1, path, err);
    if (r != 0) {
        free(buf);
        return r < 0 ? -1 : idx_fail(err, path, "trailing garbage after the %llu bytes of data",
                                     (unsigned long long)need);
    }
    *out = buf;
    return 0;
}

/* The reader behind idx_read and idx_read_kind; want is 0 for any kind. */
static int idx_read_impl(const char *path, int want, idx_file *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (err)
        err[0] = '\0';

    /* stat before open: opening a FIFO would block until a writer came. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return idx_fail(err, path, "not a regular file");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return idx_fail(err, path, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return idx_fail(err, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return idx_fail(err, path, "not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return idx_fail(err, path, "empty file");
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return idx_fail(err, path, "cannot open: out of memory");
    }
    /* Before gzdirect, which does the first read.  A failure only leaves
     * zlib's default buffer, which is slower but correct. */
    (void)gzbuffer(gz, 1u << 17);
    int plain = gzdirect(gz);

    int rc = -1;
    uint8_t head[16];
    long long r = gz_read_full(gz, head, 4, path, err);
    if (r < 0)
        goto done;
    if (r == 0) {
        if (!gz_state_error(gz, path, err))
            idx_fail(err, path, "empty file (no data in the gzip stream)");
        goto done;
    }
    if (r < 4) {
        if (!gz_state_error(gz, path, err))
            idx_fail(err, path, "truncated header: %lld of 4 magic bytes", r);
        goto done;
    }
    uint32_t magic = be32(head);
    idx_kind kind = IDX_IMAGES;
    if (check_magic(magic, want, path, &kind, err) != 0)
        goto done;

    unsigned ndims = (unsigned)kind;
    r = gz_read_full(gz, head + 4, 4 * ndims, path, err);
    if (r < 0)
        goto done;
    if (r < 4 * (long long)ndims) {
        if (!gz_state_error(gz, path, err))
            idx_fail(err, path, "truncated header: %lld of %u dimension bytes", r, 4 * ndims);
        goto done;
    }
    uint32_t count = be32(head + 4), rows = 1, cols = 1;
    if (kind == IDX_IMAGES) {
        rows = be32(head + 8);
        cols = be32(head + 12);
    }
    if (count == 0 || rows == 0 || cols == 0) {
        idx_fail(err, path, "zero dimension in header (%u x %u x %u)", count, rows, cols);
        goto done;
    }
    if (count > IDX_MAX_ITEMS) {
        idx_fail(err, path, "absurd item count %u in header (limit %u)", count, IDX_MAX_ITEMS);
        goto done;
    }
    if (rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        idx_fail(err, path, "absurd image size %u x %u in header (limit %u per side)", rows, cols,
                 IDX_MAX_SIDE);
        goto done;
    }
    uint64_t need = (uint64_t)count * rows * cols;
    if (need > IDX_MAX_BYTES || need > SIZE_MAX) {
        idx_fail(err, path, "absurd data size %llu bytes in header (limit %llu)",
                 (unsigned long long)need, (unsigned long long)IDX_MAX_BYTES);
        goto done;
    }

    uint8_t *data = NULL;
    if (plain) {
        uint64_t header = 4 + 4 * (uint64_t)ndims;
        /* The file may have changed since fstat; never wrap around. */
        uint64_t have = (uint64_t)st.st_size > header ? (uint64_t)st.st_size - header : 0;
        if (have < need) {
            idx_fail(err, path, "truncated: header claims %llu bytes of data, file holds %llu",
                     (unsigned long long)need, (unsigned long long)have);
            goto done;
        }
        if (have > need) {
            idx_fail(err, path, "trailing garbage: %llu bytes after the %llu bytes of data",
                     (unsigned long long)(have - need), (unsigned long long)need);
            goto done;
        }
        if (read_plain_payload(gz, need, path, &data, err) != 0)
            goto done;
    } else if (read_gz_payload(gz, need, path, &data, err) != 0) {
        goto done;
    }

    out->kind = kind;
    out->count = count;
    out->rows = rows;
    out->cols = cols;
    out->data = data;
    rc = 0;
    if (want == IDX_LABELS && idx_check_labels(out, path, err) != 0) {
        idx_free(out);
        rc = -1;
    }
done:
    /* gzclose also closes fd.  Its complaint about a stream that ended
     * mid-member has already been reported by the reads above. */
    gzclose_r(gz);
    return rc;
}

int idx_read(const char *path, idx_file *out, char *err)
{
    return idx_read_impl(path, 0, out, err);
}

int idx_read_kind(const char *path, idx_kind kind, idx_file *out, char *err)
{
    if (kind != IDX_IMAGES && kind != IDX_LABELS) {
        memset(out, 0, sizeof *out);
        return idx_fail(err, path, "unknown IDX kind %d requested", (int)kind);
    }
    return idx_read_impl(path, (int)kind, out, err);
}

int idx_check_labels(const idx_file *f, const char *path, char *err)
{
    if (f->kind != IDX_LABELS)
        return idx_fail(err, path, "not a labels file");
    for (uint32_t i = 0; i < f->count; i++)
        if (f->data[i] > 9)
            return idx_fail(err, path, "label %u at index %u out of range 0..9", f->data[i], i);
    return 0;
}

void idx_free(idx_file *f)
{
    if (!f)
        return;
    free(f->data);
    memset(f, 0, sizeof *f);
}
