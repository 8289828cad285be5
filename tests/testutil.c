/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* Strings and directories to release at exit.  Each remembers the pid that
 * made it: Check forks a child per test, the child inherits the parent's
 * atexit handler and its list, and must not delete the parent's directories
 * when it exits. */
#define TESTUTIL_MAX_OWNED 1024

typedef struct {
    char *s;
    pid_t owner;
    int is_dir;
} owned;

static owned owned_list[TESTUTIL_MAX_OWNED];
static int owned_count;
static int cleanup_registered;

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        if (dir) {
            struct dirent *e;
            while ((e = readdir(dir)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                size_t n = strlen(path) + strlen(e->d_name) + 2;
                char *child = malloc(n);
                if (!child)
                    break;
                snprintf(child, n, "%s/%s", path, e->d_name);
                remove_tree(child);
                free(child);
            }
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void cleanup_owned(void)
{
    pid_t me = getpid();
    for (int i = owned_count - 1; i >= 0; i--) {
        if (owned_list[i].owner == me && owned_list[i].is_dir)
            remove_tree(owned_list[i].s);
        /* Inherited copies are freed too: they are this process's memory. */
        free(owned_list[i].s);
    }
    owned_count = 0;
}

static const char *own(char *s, int is_dir)
{
    if (!s || owned_count == TESTUTIL_MAX_OWNED) {
        fprintf(stderr, "testutil: out of memory or too many temporaries\n");
        abort();
    }
    if (!cleanup_registered) {
        atexit(cleanup_owned);
        cleanup_registered = 1;
    }
    owned_list[owned_count].s = s;
    owned_list[owned_count].owner = getpid();
    owned_list[owned_count].is_dir = is_dir;
    owned_count++;
    return s;
}

const char *testutil_data_dir(void)
{
    const char *d = getenv("GSVAE_DATA");
    return d && *d ? d : "data/mnist";
}

const char *testutil_bin(void)
{
    const char *b = getenv("GSVAE_BIN");
    return b && *b ? b : "./gsvae";
}

const char *testutil_hooks_bin(void)
{
    const char *b = getenv("GSVAE_HOOKS_BIN");
    return b && *b ? b : "build/release/gsvae-hooks";
}

const char *testutil_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + sizeof "/gsvae-test.XXXXXX";
    char *t = malloc(n);
    if (!t) {
        fprintf(stderr, "testutil: out of memory\n");
        abort();
    }
    snprintf(t, n, "%s/gsvae-test.XXXXXX", base);
    if (!mkdtemp(t)) {
        fprintf(stderr, "testutil: mkdtemp %s: %s\n", t, strerror(errno));
        abort();
    }
    return own(t, 1);
}

const char *testutil_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return own(p, 0);
}

/* Read at most len - 1 bytes of path into buf, NUL-terminated. */
static void slurp(const char *path, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

int run_capture(const char *cmdline, char *out, size_t outlen, char *errbuf, size_t errlen)
{
    /* Capture through files, not pipes: no deadlock when a command writes
     * more to one stream than a pipe holds while we wait on the other. */
    static const char *out_path, *err_path;
    static pid_t made_by;
    if (!out_path || made_by != getpid()) {
        /* One capture directory per process, made by that process, so that
         * it is removed when the process (often a forked test) exits. */
        const char *dir = testutil_tmpdir();
        out_path = testutil_path(dir, "stdout");
        err_path = testutil_path(dir, "stderr");
        made_by = getpid();
    }
    size_t n = strlen(cmdline) + strlen(out_path) + strlen(err_path) + 32;
    char *full = malloc(n);
    if (!full)
        return -1;
    /* The braces keep redirections of the command itself working. */
    snprintf(full, n, "{ %s\n} >'%s' 2>'%s' </dev/null", cmdline, out_path, err_path);
    fflush(NULL);
    int st = system(full);
    free(full);
    slurp(out_path, out, outlen);
    slurp(err_path, errbuf, errlen);
    remove(out_path);
    remove(err_path);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int testutil_write_bytes(const char *path, const void *data, size_t len, int gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb6");
        if (!g)
            return -1;
        const uint8_t *p = data;
        size_t done = 0;
        while (done < len) {
            unsigned chunk = len - done > (1u << 30) ? (1u << 30) : (unsigned)(len - done);
            if (gzwrite(g, p + done, chunk) != (int)chunk) {
                gzclose(g);
                return -1;
            }
            done += chunk;
        }
        return gzclose(g) == Z_OK ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = len && fwrite(data, 1, len, f) != len;
    if (fclose(f) != 0)
        bad = 1;
    return bad ? -1 : 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int testutil_write_idx(const char *path, uint32_t magic, const uint32_t *dims, int ndims,
                       const uint8_t *payload, size_t len, int gz)
{
    size_t head = 4 + 4 * (size_t)ndims;
    uint8_t *buf = malloc(head + len + 1);
    if (!buf)
        return -1;
    put_be32(buf, magic);
    for (int i = 0; i < ndims; i++)
        put_be32(buf + 4 + 4 * i, dims[i]);
    if (len)
        memcpy(buf + head, payload, len);
    int rc = testutil_write_bytes(path, buf, head + len, gz);
    free(buf);
    return rc;
}

uint8_t *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        /* One byte kept for the terminating NUL. */
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        n += r;
        if (n < cap - 1)
            break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

int testutil_contains(const char *haystack, const char *needle)
{
    return haystack && needle && strstr(haystack, needle) != NULL;
}

double testutil_json_number(const char *text, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = text ? strstr(text, pat) : NULL;
    if (!at)
        return NAN;
    const char *num = at + strlen(pat);
    char *end;
    double v = strtod(num, &end);
    return end != num ? v : NAN;
}

int testutil_run_gsvae(char *out, size_t outlen, char *errbuf, size_t errlen, const char *fmt,
                       ...)
{
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", testutil_bin(), args);
    return run_capture(cmd, out, outlen, errbuf, errlen);
}

int testutil_log_column(const char *dir, const char *header, int col, double *vals, int max)
{
    FILE *f = fopen(testutil_path(dir, "log.csv"), "r");
    ck_assert_msg(f != NULL, "no log.csv in %s", dir);
    char line[1024];
    int n = 0;
    ck_assert(fgets(line, sizeof line, f) != NULL);
    ck_assert_msg(strncmp(line, header, strlen(header)) == 0, "%s/log.csv header: %s", dir, line);
    while (n < max && fgets(line, sizeof line, f)) {
        char *p = line;
        for (int k = 0; k < col; k++) {
            p = strchr(p, ',');
            ck_assert_msg(p != NULL, "%s/log.csv: no column %d in %s", dir, col, line);
            p++;
        }
        vals[n++] = (*p == ',' || *p == '\n') ? NAN : strtod(p, NULL);
    }
    fclose(f);
    return n;
}

void testutil_numeric_grad(double *grad, double *param, size_t n, double step, testutil_loss f,
                           void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        double keep = param[i];
        param[i] = keep + step;
        double up = f(ctx);
        param[i] = keep - step;
        double down = f(ctx);
        param[i] = keep;
        grad[i] = (up - down) / (2.0 * step);
    }
}

void testutil_assert_grad_close(const char *what, const double *analytic, const double *numeric,
                                size_t n, double tol, double rel_floor)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(analytic[i]), "%s[%zu]: analytic gradient %g", what, i,
                      analytic[i]);
        scale = fmax(scale, fmax(fabs(analytic[i]), fabs(numeric[i])));
    }
    /* A gradient that is zero everywhere would make the check vacuous. */
    ck_assert_msg(scale > 1e-6, "%s: the test problem has no gradient (max %g)", what, scale);
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(analytic[i] - numeric[i]) /
                   fmax(fabs(analytic[i]) + fabs(numeric[i]), rel_floor * scale);
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    if (getenv("GSVAE_TEST_VERBOSE"))
        fprintf(stderr, "%-44s max rel err %.2e\n", what, worst);
    ck_assert_msg(worst < tol, "%s[%zu]: analytic %.9g, numeric %.9g (rel err %.3g >= %g)", what,
                  at, analytic[at], numeric[at], worst, tol);
}

void testutil_assert_close(const char *what, const float *got, const double *want, size_t n,
                           double tol)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(got[i]) && fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s[%zu]: got %.9g, want %.9g", what, i, (double)got[i], want[i]);
}
