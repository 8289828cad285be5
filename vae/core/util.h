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

/* Workspaces in one allocation, the way llm.c lays out its parameters: a
 * table says where each buffer's pointer goes, how many elements it holds
 * and their size; ws_alloc sizes the table, makes one zeroed block, and
 * points every buffer into it, each aligned to WS_ALIGN bytes.  A count of
 * 0 leaves its pointer NULL (a buffer a configuration does not need).
 * head (head_size bytes; NULL, 0 for none) is copied to the start of the
 * block once the pointers are set: the struct that holds them, when it
 * lives in the block too.  Returns the block, to be freed once with free(),
 * or NULL after a message naming `what` (allocation failure or a size past
 * SIZE_MAX); the pointers are then left as they were. */
#define WS_ALIGN 64
typedef struct {
    void *ptr;           /* the address of the pointer to set (a T **) */
    size_t count, size;  /* elements and bytes per element */
} ws_buf;
#define WS_BUF(p, n) {(void *)&(p), (size_t)(n), sizeof *(p)}
#define WS_COUNT(bufs) (sizeof(bufs) / sizeof((bufs)[0]))
void *ws_alloc(const ws_buf *bufs, size_t nbufs, const void *head, size_t head_size, char *err,
               const char *what);

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
