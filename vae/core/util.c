#include "util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Fit msg (len bytes) into err by keeping its head, which names the file,
 * and its tail, which holds the reason, around a marker.  The cuts fall on
 * UTF-8 character boundaries so a name is never split mid-character. */
static void err_elide(char *err, const char *msg, size_t len)
{
    static const char mark[] = "...";
    size_t keep = ERR_LEN - 1 - (sizeof mark - 1);
    size_t head = keep / 4, from = len - (keep - head);
    while (head > 0 && ((unsigned char)msg[head] & 0xC0) == 0x80)
        head--;
    while (from < len && ((unsigned char)msg[from] & 0xC0) == 0x80)
        from++;
    memcpy(err, msg, head);
    memcpy(err + head, mark, sizeof mark - 1);
    memcpy(err + head + sizeof mark - 1, msg + from, len - from + 1);
}

int errf(char *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(err, ERR_LEN, fmt, ap);
    va_end(ap);
    if (n >= ERR_LEN) {
        /* Without memory the plain cut above stands. */
        char *whole = malloc((size_t)n + 1);
        if (whole) {
            vsnprintf(whole, (size_t)n + 1, fmt, again);
            err_elide(err, whole, (size_t)n);
            free(whole);
        }
    }
    va_end(again);
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
        return errf(err, "%s: cannot write: %s", af->path, strerror(errno));
    return 0;
}

/* fsync the directory that holds af->path, so that the rename into it is on
 * disk before we report success.  Errors that only say the filesystem cannot
 * sync a directory are not failures. */
static int af_sync_dir(const atomic_file *af, char *err)
{
    const char *path = af->path;
    char dir[sizeof af->path];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return 0; /* unreadable directory: the rename stands, unsynced */
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP &&
        errno != EBADF)
        rc = errf(err, "%s: cannot sync its directory: %s", path, strerror(errno));
    close(fd);
    return rc;
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
    return af_sync_dir(af, err);
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
