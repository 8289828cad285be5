/* idx.c: the IDX reader.  Self-contained (libc, zlib and idx.h only) so the
 * fuzzer can link it alone.
 *
 * A file that starts with the gzip magic is inflated here with zlib's
 * inflate (one or more members, as gzip writes them); any other file is read
 * as stored.  We do not use zlib's gz* functions because gzread silently
 * drops whatever follows the last gzip member when it is not another member,
 * and the reader must refuse such a file as it refuses trailing bytes after
 * a plain one.  The header is checked against the limits of idx.h before
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
/* Bytes read from the file at a time. */
#define IDX_INPUT_CHUNK (1u << 17)
/* Largest single inflate request: avail_out is a 32-bit count. */
#define IDX_MAX_READ (1u << 30)

/* Write "PATH: reason" into err; returns -1 for `return idx_fail(...)`.  When
 * the whole does not fit, the middle of the path is elided so that the
 * reason is always there. */
static int idx_fail(char *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int idx_fail(char *err, const char *path, const char *fmt, ...)
{
    if (!err)
        return -1;
    char reason[IDX_ERR_LEN / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    size_t plen = strlen(path), rlen = strlen(reason);
    size_t room = IDX_ERR_LEN - 1 - 2 - rlen, head = plen, from = plen;
    if (plen > room) {
        /* Head and tail of the path around "...", cut between characters. */
        head = (room - 3) / 4;
        from = plen - (room - 3 - head);
        while (head > 0 && ((unsigned char)path[head] & 0xC0) == 0x80)
            head--;
        while (from < plen && ((unsigned char)path[from] & 0xC0) == 0x80)
            from++;
    }
    char *p = err;
    memcpy(p, path, head);
    p += head;
    if (from > head) {
        memcpy(p, "...", 3);
        p += 3;
    }
    memcpy(p, path + from, plen - from);
    p += plen - from;
    memcpy(p, ": ", 2);
    memcpy(p + 2, reason, rlen + 1);
    return -1;
}

/* The bytes of an IDX file: as stored, or inflated from its gzip members. */
typedef struct {
    int fd;
    const char *path;
    uint64_t file_size;  /* from fstat, for the count of trailing bytes */
    uint64_t file_pos;   /* bytes read from fd so far */
    int at_eof;          /* read returned 0 */
    int gzip;
    int inflating;       /* zs was set up by inflateInit2 */
    int in_member;       /* inflate has begun a member and not yet ended it */
    z_stream zs;         /* next_in/avail_in: the unread input, plain files too */
    uint8_t *in;         /* IDX_INPUT_CHUNK bytes */
} idx_src;

/* Read more of the file after the unread input.  Returns the count of new
 * bytes (0 at end of file) or -1 after writing err. */
static long src_fill(idx_src *s, char *err)
{
    if (s->zs.avail_in > 0 && s->zs.next_in != s->in)
        memmove(s->in, s->zs.next_in, s->zs.avail_in);
    s->zs.next_in = s->in;
    size_t room = IDX_INPUT_CHUNK - s->zs.avail_in;
    if (room == 0 || s->at_eof)
        return 0;
    ssize_t r;
    do
        r = read(s->fd, s->in + s->zs.avail_in, room);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return idx_fail(err, s->path, "read error: %s", strerror(errno));
    if (r == 0)
        s->at_eof = 1;
    s->zs.avail_in += (uInt)r;
    s->file_pos += (uint64_t)r;
    return (long)r;
}

/* Start reading fd: the first two bytes tell a gzip file from a plain one,
 * the same test as gzip's own.  On failure fd is left open. */
static int src_open(idx_src *s, int fd, const char *path, uint64_t size, char *err)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->path = path;
    s->file_size = size;
    s->in = malloc(IDX_INPUT_CHUNK);
    if (!s->in)
        return idx_fail(err, path, "cannot allocate %u bytes", IDX_INPUT_CHUNK);
    s->zs.next_in = s->in;
    while (s->zs.avail_in < 2 && !s->at_eof)
        if (src_fill(s, err) < 0)
            return -1;
    s->gzip = s->zs.avail_in >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
    if (s->gzip) {
        /* 16 + 15: a gzip wrapper (checked with its CRC and length) around a
         * deflate stream of any window size. */
        if (inflateInit2(&s->zs, 16 + 15) != Z_OK)
            return idx_fail(err, path, "out of memory while inflating");
        s->inflating = 1;
        s->in_member = 1;
    }
    return 0;
}

/* Release s and close its file. */
static void src_close(idx_src *s)
{
    if (s->inflating)
        inflateEnd(&s->zs);
    free(s->in);
    close(s->fd);
}

static long long src_read_plain(idx_src *s, uint8_t *buf, size_t n, char *err)
{
    size_t got = 0;
    while (got < n) {
        if (s->zs.avail_in == 0) {
            long r = src_fill(s, err);
            if (r < 0)
                return -1;
            if (r == 0)
                break;
        }
        size_t take = n - got < s->zs.avail_in ? n - got : s->zs.avail_in;
        memcpy(buf + got, s->zs.next_in, take);
        s->zs.next_in += take;
        s->zs.avail_in -= (uInt)take;
        got += take;
    }
    return (long long)got;
}

/* Between gzip members: the input ends here (returns 0), or another member
 * begins (returns 1); anything else is refused. */
static int src_next_member(idx_src *s, char *err)
{
    while (s->zs.avail_in < 2 && !s->at_eof)
        if (src_fill(s, err) < 0)
            return -1;
    if (s->zs.avail_in == 0)
        return 0;
    if (s->zs.avail_in < 2 || s->zs.next_in[0] != 0x1f || s->zs.next_in[1] != 0x8b) {
        uint64_t end = s->file_pos - s->zs.avail_in;
        uint64_t left = s->file_size > end ? s->file_size - end : s->zs.avail_in;
        return idx_fail(err, s->path, "trailing garbage: %llu bytes after the gzip stream",
                        (unsigned long long)left);
    }
    if (inflateReset(&s->zs) != Z_OK)
        return idx_fail(err, s->path, "corrupt gzip stream: cannot restart inflate");
    s->in_member = 1;
    return 1;
}

static long long src_read_gzip(idx_src *s, uint8_t *buf, size_t n, char *err)
{
    size_t got = 0;
    while (got < n) {
        if (!s->in_member) {
            int more = src_next_member(s, err);
            if (more < 0)
                return -1;
            if (more == 0)
                break;
        }
        if (s->zs.avail_in == 0) {
            long r = src_fill(s, err);
            if (r < 0)
                return -1;
            if (r == 0)
                return idx_fail(err, s->path, "truncated gzip stream (unexpected end of file)");
        }
        size_t want = n - got < IDX_MAX_READ ? n - got : IDX_MAX_READ;
        s->zs.next_out = buf + got;
        s->zs.avail_out = (uInt)want;
        int zr = inflate(&s->zs, Z_NO_FLUSH);
        got += want - s->zs.avail_out;
        if (zr == Z_STREAM_END)
            s->in_member = 0;
        else if (zr == Z_MEM_ERROR)
            return idx_fail(err, s->path, "out of memory while inflating");
        else if (zr == Z_NEED_DICT)
            return idx_fail(err, s->path, "corrupt gzip stream: needs a preset dictionary");
        else if (zr != Z_OK && !(zr == Z_BUF_ERROR && s->zs.avail_in == 0))
            return idx_fail(err, s->path, "corrupt gzip stream: %s",
                            s->zs.msg ? s->zs.msg : "invalid data");
    }
    return (long long)got;
}

/* Read up to n bytes.  Returns the count read (less than n only at the end of
 * the data), or -1 after writing err. */
static long long src_read(idx_src *s, uint8_t *buf, size_t n, char *err)
{
    return s->gzip ? src_read_gzip(s, buf, n, err) : src_read_plain(s, buf, n, err);
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
static int read_gz_payload(idx_src *s, uint64_t need, const char *path, uint8_t **out,
                           char *err)
{
    size_t cap = need < IDX_FIRST_CHUNK ? (size_t)need : IDX_FIRST_CHUNK;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return idx_fail(err, path, "cannot allocate %zu bytes", cap);
    size_t got = 0;
    for (;;) {
        long long r = src_read(s, buf + got, cap - got, err);
        if (r < 0) {
            free(buf);
            return -1;
        }
        got += (size_t)r;
        if (got < cap) {
            free(buf);
            return idx_fail(err, path,
                            "truncated: header claims %llu bytes of data, file holds %zu",
                            (unsigned long long)need, got);
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

    /* Anything after the data is garbage, inflated (more data in the member
     * or in another one) or not (bytes after the last member); reading on
     * also makes inflate check each member's CRC and length trailer. */
    uint8_t extra[4096];
    unsigned long long trailing = 0;
    for (;;) {
        long long r = src_read(s, extra, sizeof extra, err);
        if (r < 0) {
            free(buf);
            return -1;
        }
        trailing += (unsigned long long)r;
        if ((size_t)r < sizeof extra)
            break;
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
static int read_plain_payload(idx_src *s, uint64_t need, const char *path, uint8_t **out,
                              char *err)
{
    uint8_t *buf = malloc(need ? (size_t)need : 1);
    if (!buf)
        return idx_fail(err, path, "cannot allocate %llu bytes", (unsigned long long)need);
    long long r = src_read(s, buf, (size_t)need, err);
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
    r = src_read(s, &probe, 1, err);
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

    /* Non-blocking, and checked before any read: opening a FIFO would
     * otherwise wait for a writer, and reading one might never end. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return idx_fail(err, path, "cannot open: %s", strerror(errno));
    struct stat st;
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
    /* Regular files ignore O_NONBLOCK, but reads should not depend on that. */
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    idx_src src;
    int rc = -1;
    if (src_open(&src, fd, path, (uint64_t)st.st_size, err) != 0)
        goto done;
    int plain = !src.gzip;

    uint8_t head[16];
    long long r = src_read(&src, head, 4, err);
    if (r < 0)
        goto done;
    if (r == 0) {
        idx_fail(err, path, "empty file (no data in the gzip stream)");
        goto done;
    }
    if (r < 4) {
        idx_fail(err, path, "truncated header: %lld of 4 magic bytes", r);
        goto done;
    }
    uint32_t magic = be32(head);
    idx_kind kind = IDX_IMAGES;
    if (check_magic(magic, want, path, &kind, err) != 0)
        goto done;

    unsigned ndims = (unsigned)kind;
    r = src_read(&src, head + 4, 4 * ndims, err);
    if (r < 0)
        goto done;
    if (r < 4 * (long long)ndims) {
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
        if (read_plain_payload(&src, need, path, &data, err) != 0)
            goto done;
    } else if (read_gz_payload(&src, need, path, &data, err) != 0) {
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
    src_close(&src);
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
