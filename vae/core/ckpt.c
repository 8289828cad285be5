#include "ckpt.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char ckpt_magic[8] = {'G', 'S', 'V', 'A', 'E', 'C', 'K', 'P'};

enum {
    CKPT_HEADER_BYTES = 16,         /* magic, version, count */
    CKPT_SECTION_HEADER_BYTES = 40, /* name, length */
    CKPT_TRAILER_BYTES = 4          /* crc */
};

typedef struct {
    const char *name; /* points into buf; NUL-terminated, checked on read */
    const uint8_t *data;
    uint64_t len;
} ckpt_entry;

struct ckpt_file {
    char *path; /* for error messages from ckpt_get */
    uint8_t *buf;
    int count;
    ckpt_entry entries[];
};

/* Byte by byte so the file reads the same on any host's byte order. */
static void ckpt_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void ckpt_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t ckpt_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t ckpt_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* zlib's crc32 takes a 32-bit length, so large sections go in chunks. */
static uLong ckpt_crc(uLong crc, const void *data, uint64_t n)
{
    const Bytef *p = data;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* A short write sets the stream's error flag, which af_commit checks, so
 * the return value of fwrite need not be checked on every call. */
static void ckpt_emit(FILE *f, uLong *crc, const void *data, uint64_t n)
{
    if (n == 0)
        return;
    fwrite(data, 1, (size_t)n, f);
    *crc = ckpt_crc(*crc, data, n);
}

static int ckpt_check_sections(const char *path, const ckpt_section *sections, int count,
                               char *err)
{
    if (count < 0 || count > CKPT_MAX_SECTIONS)
        return errf(err, "%s: %d sections, the format allows 0..%d", path, count,
                    CKPT_MAX_SECTIONS);
    if (count > 0 && !sections)
        return errf(err, "%s: no section table", path);
    uint64_t total = CKPT_HEADER_BYTES + CKPT_TRAILER_BYTES;
    for (int i = 0; i < count; i++) {
        const ckpt_section *s = &sections[i];
        if (!s->name || s->name[0] == '\0' || strlen(s->name) >= CKPT_NAME_LEN)
            return errf(err, "%s: section %d name must have 1..%d characters", path, i,
                        CKPT_NAME_LEN - 1);
        if (s->len > 0 && !s->data)
            return errf(err, "%s: section '%s' has %llu bytes but no data", path, s->name,
                        (unsigned long long)s->len);
        for (int j = 0; j < i; j++)
            if (strcmp(sections[j].name, s->name) == 0)
                return errf(err, "%s: section '%s' given twice", path, s->name);
        /* Each len is bounded before adding, so the sum cannot wrap. */
        if (s->len > CKPT_MAX_BYTES)
            return errf(err, "%s: section '%s' too large (%llu bytes)", path, s->name,
                        (unsigned long long)s->len);
        total += CKPT_SECTION_HEADER_BYTES + s->len;
    }
    /* Refuse to write what ckpt_read would refuse to read. */
    if (total > CKPT_MAX_BYTES)
        return errf(err, "%s: checkpoint would be %llu bytes, over the %llu-byte limit", path,
                    (unsigned long long)total, (unsigned long long)CKPT_MAX_BYTES);
    return 0;
}

int ckpt_write(const char *path, const ckpt_section *sections, int count, char *err)
{
    if (ckpt_check_sections(path, sections, count, err) != 0)
        return -1;
    atomic_file af;
    if (af_open(&af, path, "wb", err) != 0)
        return -1;
    uLong crc = crc32(0L, Z_NULL, 0);
    uint8_t head[CKPT_HEADER_BYTES];
    memcpy(head, ckpt_magic, sizeof ckpt_magic);
    ckpt_put_u32(head + 8, CKPT_VERSION);
    ckpt_put_u32(head + 12, (uint32_t)count);
    ckpt_emit(af.f, &crc, head, sizeof head);
    for (int i = 0; i < count; i++) {
        uint8_t sh[CKPT_SECTION_HEADER_BYTES] = {0};
        memcpy(sh, sections[i].name, strlen(sections[i].name));
        ckpt_put_u64(sh + CKPT_NAME_LEN, sections[i].len);
        ckpt_emit(af.f, &crc, sh, sizeof sh);
        ckpt_emit(af.f, &crc, sections[i].data, sections[i].len);
    }
    uint8_t tail[CKPT_TRAILER_BYTES];
    ckpt_put_u32(tail, (uint32_t)crc);
    fwrite(tail, 1, sizeof tail, af.f);
    return af_commit(&af, err);
}

/* What a path names when it is not a regular file, for the message. */
static const char *ckpt_file_type(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "a special file";
}

/* Whole file into memory; *size is its length.  The size limit is checked
 * from fstat before allocating.  The file is opened non-blocking and checked
 * to be regular before anything is read: opening a FIFO blocks until a
 * writer comes, and reading one may never end. */
static int ckpt_slurp(const char *path, uint8_t **buf, uint64_t *size, char *err)
{
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return errf(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return errf(err, "%s: not a regular file (%s); expected a checkpoint", path,
                    ckpt_file_type(st.st_mode));
    }
    /* Regular files ignore O_NONBLOCK, but reads should not depend on that. */
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return errf(err, "%s: cannot open: %s", path, strerror(e));
    }
    if ((uint64_t)st.st_size > CKPT_MAX_BYTES) {
        fclose(f);
        return errf(err, "%s: %llu bytes, over the %llu-byte checkpoint limit", path,
                    (unsigned long long)st.st_size, (unsigned long long)CKPT_MAX_BYTES);
    }
    size_t n = (size_t)st.st_size;
    /* One spare byte so an empty file still gets a non-NULL buffer. */
    uint8_t *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return errf(err, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(b);
        return errf(err, "%s: read error (%zu of %zu bytes)", path, got, n);
    }
    *buf = b;
    *size = n;
    return 0;
}

/* A name from a damaged file may hold anything; print a safe copy. */
static void ckpt_printable_name(const uint8_t *raw, char out[CKPT_NAME_LEN])
{
    int i = 0;
    for (; i < CKPT_NAME_LEN - 1 && raw[i]; i++)
        out[i] = (raw[i] >= 0x20 && raw[i] < 0x7f) ? (char)raw[i] : '?';
    out[i] = '\0';
}

/* The layout after the header.  It is walked without trusting any length:
 * each is compared against the bytes that remain, and only a file whose
 * layout is whole reaches the checksum. */
static int ckpt_parse(const char *path, const uint8_t *buf, uint64_t size, uint32_t count,
                      ckpt_file *f, char *err)
{
    uint64_t pos = CKPT_HEADER_BYTES;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t rem = size - pos;
        if (rem < CKPT_SECTION_HEADER_BYTES)
            return errf(err, "%s: truncated (%llu bytes; section %u of %u has no header)",
                        path, (unsigned long long)size, i + 1, count);
        const uint8_t *sh = buf + pos;
        uint64_t len = ckpt_get_u64(sh + CKPT_NAME_LEN);
        rem -= CKPT_SECTION_HEADER_BYTES;
        if (len > rem) {
            char name[CKPT_NAME_LEN];
            ckpt_printable_name(sh, name);
            return errf(err, "%s: truncated (section '%s' declares %llu bytes, %llu remain)",
                        path, name, (unsigned long long)len, (unsigned long long)rem);
        }
        f->entries[i].name = (const char *)sh;
        f->entries[i].data = sh + CKPT_SECTION_HEADER_BYTES;
        f->entries[i].len = len;
        pos += CKPT_SECTION_HEADER_BYTES + len;
    }
    uint64_t rem = size - pos;
    if (rem < CKPT_TRAILER_BYTES)
        return errf(err, "%s: truncated (%llu bytes; checksum missing)", path,
                    (unsigned long long)size);
    if (rem > CKPT_TRAILER_BYTES)
        return errf(err, "%s: corrupt (%llu unexpected bytes after the last section)", path,
                    (unsigned long long)(rem - CKPT_TRAILER_BYTES));

    uint32_t stored = ckpt_get_u32(buf + pos);
    uint32_t actual = (uint32_t)ckpt_crc(crc32(0L, Z_NULL, 0), buf, pos);
    if (stored != actual)
        return errf(err, "%s: checksum mismatch (file corrupt)", path);

    /* Past the checksum only a faulty writer can produce these. */
    for (uint32_t i = 0; i < count; i++) {
        const char *name = f->entries[i].name;
        if (memchr(name, '\0', CKPT_NAME_LEN) == NULL || name[0] == '\0')
            return errf(err, "%s: section %u has no valid name", path, i + 1);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(f->entries[j].name, name) == 0)
                return errf(err, "%s: section '%s' appears twice", path, name);
    }
    f->count = (int)count;
    return 0;
}

/* Checks run in the order that gives the most useful message: a foreign
 * file is named as such, a newer format as newer (its layout may differ, so
 * nothing past the version is trusted), a short file as truncated (its
 * checksum would fail too, but "truncated" says why), and everything else
 * that is damaged as a checksum mismatch. */
int ckpt_read(const char *path, ckpt_file **out, char *err)
{
    *out = NULL;
    uint8_t *buf = NULL;
    uint64_t size = 0;
    if (ckpt_slurp(path, &buf, &size, err) != 0)
        return -1;

    uint64_t magic_seen = size < sizeof ckpt_magic ? size : sizeof ckpt_magic;
    if (memcmp(buf, ckpt_magic, (size_t)magic_seen) != 0) {
        free(buf);
        return errf(err, "%s: not a gsvae checkpoint (bad magic)", path);
    }
    if (size < CKPT_HEADER_BYTES) {
        free(buf);
        return errf(err, "%s: truncated (%llu bytes, the header alone is %d)", path,
                    (unsigned long long)size, CKPT_HEADER_BYTES);
    }
    uint32_t version = ckpt_get_u32(buf + 8);
    if (version != CKPT_VERSION) {
        free(buf);
        return errf(err, "%s: format version %u, this build reads version %u%s", path, version,
                    CKPT_VERSION, version > CKPT_VERSION ? " (written by a newer gsvae)" : "");
    }
    uint32_t count = ckpt_get_u32(buf + 12);
    if (count > CKPT_MAX_SECTIONS) {
        free(buf);
        return errf(err, "%s: section count %u over the limit of %d (corrupt?)", path, count,
                    CKPT_MAX_SECTIONS);
    }

    size_t plen = strlen(path);
    ckpt_file *f = calloc(1, sizeof *f + (size_t)count * sizeof(ckpt_entry));
    char *pcopy = malloc(plen + 1);
    if (!f || !pcopy) {
        free(f);
        free(pcopy);
        free(buf);
        return errf(err, "%s: cannot allocate the section table", path);
    }
    memcpy(pcopy, path, plen + 1);
    f->path = pcopy;
    f->buf = buf;
    if (ckpt_parse(path, buf, size, count, f, err) != 0) {
        ckpt_free(f);
        return -1;
    }
    *out = f;
    return 0;
}

static const ckpt_entry *ckpt_find(const ckpt_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0)
            return &f->entries[i];
    return NULL;
}

int ckpt_get(const ckpt_file *f, const char *name, const void **data, uint64_t *len, char *err)
{
    const ckpt_entry *e = ckpt_find(f, name);
    if (!e)
        return errf(err, "%s: no section '%s'", f->path, name);
    *data = e->data;
    *len = e->len;
    return 0;
}

int ckpt_get_exact(const ckpt_file *f, const char *name, void *dst, uint64_t len, char *err)
{
    const ckpt_entry *e = ckpt_find(f, name);
    if (!e)
        return errf(err, "%s: no section '%s'", f->path, name);
    if (e->len != len)
        return errf(err, "%s: section '%s' has %llu bytes, expected %llu", f->path, name,
                    (unsigned long long)e->len, (unsigned long long)len);
    if (len > 0)
        memcpy(dst, e->data, (size_t)len);
    return 0;
}

int ckpt_count(const ckpt_file *f)
{
    return f->count;
}

const char *ckpt_name(const ckpt_file *f, int i)
{
    return (i >= 0 && i < f->count) ? f->entries[i].name : NULL;
}

void ckpt_free(ckpt_file *f)
{
    if (!f)
        return;
    free(f->buf);
    free(f->path);
    free(f);
}
