#include "util.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int errf(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void *xcalloc(size_t n, size_t size, char *err, const char *what)
{
    void *p = (n && size) ? calloc(n, size) : NULL;
    if (!p)
        errf(err, "%s: cannot allocate %zu x %zu bytes", what, n, size);
    return p;
}

/* Rounds n up to a multiple of WS_ALIGN; 0 on overflow. */
static size_t ws_round(size_t n)
{
    return n > SIZE_MAX - (WS_ALIGN - 1) ? 0 : (n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

void *ws_alloc(const ws_buf *bufs, size_t nbufs, const void *head, size_t head_size, char *err,
               const char *what)
{
    size_t total = ws_round(head_size);
    if (head_size && !total)
        goto too_large;
    for (size_t i = 0; i < nbufs; i++) {
        const ws_buf *b = &bufs[i];
        if (b->count && b->size > SIZE_MAX / b->count)
            goto too_large;
        size_t bytes = ws_round(b->count * b->size);
        if ((b->count && !bytes) || bytes > SIZE_MAX - total)
            goto too_large;
        total += bytes;
    }
    /* total is a multiple of WS_ALIGN, as aligned_alloc asks. */
    char *block = aligned_alloc(WS_ALIGN, total ? total : WS_ALIGN);
    if (!block) {
        errf(err, "%s: cannot allocate %zu bytes", what, total);
        return NULL;
    }
    memset(block, 0, total);
    size_t off = ws_round(head_size);
    for (size_t i = 0; i < nbufs; i++) {
        void *p = bufs[i].count ? block + off : NULL;
        /* The pointer's object is a T *; its representation is a void *'s. */
        memcpy(bufs[i].ptr, &p, sizeof p);
        off += ws_round(bufs[i].count * bufs[i].size);
    }
    assert(off == total);
    if (head_size)
        memcpy(block, head, head_size);
    return block;
too_large:
    errf(err, "%s: the workspace's size overflows", what);
    return NULL;
}

int af_open(atomic_file *af, const char *path, const char *mode, char *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return errf(err, "%s: path too long", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, mode);
    if (!af->f)
        return errf(err, "%s: cannot write: %s", af->tmp, strerror(errno));
    return 0;
}

int af_commit(atomic_file *af, char *err)
{
    int bad = ferror(af->f);
    if (fflush(af->f) != 0)
        bad = 1;
    if (!bad && fsync(fileno(af->f)) != 0 && errno != EINVAL)
        bad = 1;
    int saved = errno;
    if (fclose(af->f) != 0)
        bad = 1, saved = errno;
    af->f = NULL;
    if (bad) {
        remove(af->tmp);
        return errf(err, "%s: write failed: %s", af->path, strerror(saved));
    }
    if (rename(af->tmp, af->path) != 0) {
        saved = errno;
        remove(af->tmp);
        return errf(err, "%s: cannot rename into place: %s", af->path, strerror(saved));
    }
    return 0;
}

void af_abort(atomic_file *af)
{
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp[0])
        remove(af->tmp);
}

int make_dir(const char *path, char *err)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return errf(err, "%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return errf(err, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return errf(err, "%s: not a directory", path);
    return 0;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
