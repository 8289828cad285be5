/* util.h: error messages, checked allocation and atomic file output.
 *
 * Convention: a function that can fail returns 0 on success and -1 on
 * failure, after writing one line (no newline) into a caller's buffer of
 * ERR_LEN bytes that names the file or flag and the reason. */
#ifndef GSVAE_UTIL_H
#define GSVAE_UTIL_H

#include <stddef.h>
#include <stdio.h>

#define ERR_LEN 512

/* printf into err; returns -1 so callers can `return errf(err, ...)`. */
int errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* calloc that reports failure through err instead of crashing. */
void *xcalloc(size_t n, size_t size, char *err, const char *what);

/* Atomic output: open PATH.tmp.PID for writing; af_commit flushes, checks
 * every write, fsyncs and renames onto PATH; af_abort removes the temporary.
 * A reader never sees a half-written PATH. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4160];
} atomic_file;

int af_open(atomic_file *af, const char *path, const char *mode, char *err);
int af_commit(atomic_file *af, char *err);
void af_abort(atomic_file *af);

/* mkdir -p for one directory path. */
int make_dir(const char *path, char *err);

/* Seconds from a monotonic clock. */
double now_seconds(void);

#endif
