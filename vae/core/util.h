/* util.h: error messages, checked allocation and atomic file output.
 *
 * Convention: a function that can fail returns 0 on success and -1 on
 * failure, after writing one line (no newline) into a caller's buffer of
 * ERR_LEN bytes that names the file or flag and the reason. */
#ifndef GSVAE_UTIL_H
#define GSVAE_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Room for a message that embeds a few paths of PATH_MAX (4096) bytes.  A
 * caller may nest one message inside another, so errf still has to shorten
 * what does not fit: it keeps the start and the end of the message (the
 * file's name and the reason, which comes last) and elides the middle. */
#define ERR_LEN 8192

/* printf into err; returns -1 so callers can `return errf(err, ...)`.  A
 * message longer than ERR_LEN - 1 bytes loses its middle, not its end. */
int errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* calloc that reports failure through err instead of crashing. */
void *xcalloc(size_t n, size_t size, char *err, const char *what);

/* Atomic output: open PATH.tmp.PID for writing; af_commit flushes, checks
 * every write, fsyncs, renames onto PATH and fsyncs PATH's directory so the
 * rename itself survives a crash; af_abort removes the temporary.  A reader
 * never sees a half-written PATH.  Messages name PATH, the file the caller
 * asked for, never the temporary. */
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
