/* testutil.h: helpers shared by every Check suite.
 *
 * The suites find the program under test and the MNIST files through the
 * environment that tests/run-suites.sh exports (GSVAE_BIN, GSVAE_DATA), so
 * the same suite binaries run against the release and the sanitizer builds.
 * Temporary directories are removed when the process that made them exits
 * (Check runs each test in a forked child, so that is usually the test).  A
 * failed assertion ends the child with _exit, so a failing test leaves its
 * directories behind, which helps to see what went wrong. */
#ifndef GSVAE_TESTUTIL_H
#define GSVAE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Run cmdline through /bin/sh with stdout and stderr captured into out and
 * errbuf (either may be NULL; both are NUL-terminated and truncated to fit).
 * Returns the exit status, 128 + N when killed by signal N, or -1 when the
 * command could not be run at all. */
int run_capture(const char *cmdline, char *out, size_t outlen, char *errbuf, size_t errlen);

/* GSVAE_DATA, else "data/mnist". */
const char *testutil_data_dir(void);
/* GSVAE_BIN, else "./gsvae". */
const char *testutil_bin(void);
/* GSVAE_HOOKS_BIN, the test build of the program with its fault-injection
 * hooks (make test sets it), else build/release/gsvae-hooks. */
const char *testutil_hooks_bin(void);

/* A fresh empty directory from mkdtemp under $TMPDIR (or /tmp), removed with
 * its contents at exit.  The string stays owned by testutil.  Aborts the
 * process on failure: no test can go on without it. */
const char *testutil_tmpdir(void);

/* Join a directory and a file name into a string that lives as long as the
 * process (freed at exit). */
const char *testutil_path(const char *dir, const char *name);

/* Write len bytes to path, gzipped (zlib, level 6) when gz is nonzero.
 * Returns 0 or -1. */
int testutil_write_bytes(const char *path, const void *data, size_t len, int gz);

/* Write an IDX file: the 32-bit magic, ndims 32-bit dimensions (both
 * big-endian, as given, valid or not), then len payload bytes; gzipped when gz
 * is nonzero.  Returns 0 or -1. */
int testutil_write_idx(const char *path, uint32_t magic, const uint32_t *dims, int ndims,
                       const uint8_t *payload, size_t len, int gz);

/* Read a whole file into a malloc'd buffer (caller frees); *len gets its
 * size, and a NUL follows the last byte, so text files read as strings
 * (an empty file as ""). NULL on failure. */
uint8_t *testutil_read_file(const char *path, size_t *len);

/* Run `GSVAE_BIN ARGS`, ARGS formatted from fmt, with stdout and stderr
 * captured as run_capture does; returns its exit status. */
int testutil_run_gsvae(char *out, size_t outlen, char *errbuf, size_t errlen, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));

/* Column col (0-based) of the data rows of DIR/log.csv into vals (at most
 * max; an empty field is NaN); returns the row count.  A Check assertion
 * fails when the file is missing or its header does not start with
 * header. */
int testutil_log_column(const char *dir, const char *header, int col, double *vals, int max);

/* Nonzero when haystack contains needle (NULL-safe). */
int testutil_contains(const char *haystack, const char *needle);

/* The number after the first "\"key\": " in a JSON text such as
 * summary.json or `gsvae eval --json`'s output; NAN when the key is absent,
 * its value is not a number (null) or text is NULL. */
double testutil_json_number(const char *text, const char *key);

/* A float result against its double reference: fails naming `what` and
 * the element unless |got - want| <= tol * (1 + |want|) for every one. */
void testutil_assert_close(const char *what, const float *got, const double *want, size_t n,
                           double tol);

/* The finite-difference checks of every backward pass. */
typedef double (*testutil_loss)(void *ctx);
/* grad[i] = dL/dparam[i] by central differences of the given step; param
 * lives inside ctx, which f reads. */
void testutil_numeric_grad(double *grad, double *param, size_t n, double step, testutil_loss f,
                           void *ctx);
/* Fails naming `what`, the worst element and both values, when an element's
 * relative error |a - n| / max(|a| + |n|, rel_floor * scale) reaches tol
 * (scale: the largest |a| or |n|, so that near-zero elements are judged
 * against the gradient's size); also fails on a non-finite analytic value
 * or a gradient that is zero everywhere (a vacuous check).
 * GSVAE_TEST_VERBOSE prints each check's worst error. */
void testutil_assert_grad_close(const char *what, const double *analytic, const double *numeric,
                                size_t n, double tol, double rel_floor);

#endif
