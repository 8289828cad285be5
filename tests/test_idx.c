/* test_idx.c: the IDX reader, dataset pairing, binarization and batching.
 *
 * The happy path is checked on the real MNIST files (counts, first labels,
 * checksums cross-checked with Python's zlib.crc32); every failure is made
 * here as a small synthetic file, and checked both through the API and
 * through `gsvae inspect`, for the return code and for a message that names
 * the file and the reason. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "idx.h"
#include "rng.h"
#include "testutil.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Python: zlib.crc32(data) and sum(data) over the payload after the header. */
#define TRAIN_PIXEL_SUM 1567298545ull
#define TRAIN_PIXEL_CRC 0xf3639b56ul
#define TEST_PIXEL_SUM 264923200ull
#define TEST_PIXEL_CRC 0xe4ca5f57ul
#define TRAIN_LABEL_CRC 0xba07e8eful
#define TEST_LABEL_CRC 0xee8604d9ul

static const char *data_file(const char *name)
{
    return testutil_path(testutil_data_dir(), name);
}

static unsigned long crc_of(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (unsigned long)c;
}

static unsigned long long sum_of(const uint8_t *p, size_t n)
{
    unsigned long long s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

/* `gsvae inspect ARGS`, with stdout and stderr captured. */
static int inspect(const char *args, char *out, size_t outlen, char *errbuf, size_t errlen)
{
    const char *bin = testutil_bin();
    ck_assert_msg(access(bin, X_OK) == 0, "GSVAE_BIN '%s' is not an executable program", bin);
    size_t n = strlen(bin) + strlen(args) + 16;
    char *cmd = malloc(n);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, n, "'%s' inspect %s", bin, args);
    int st = run_capture(cmd, out, outlen, errbuf, errlen);
    free(cmd);
    return st;
}

/* path must fail to load with a message naming it and holding reason: through
 * idx_read_kind (kind 0: idx_read) and through `gsvae inspect`.  inspect_too
 * is 0 for failures that only a kind-specific read can see. */
static void expect_fail_kind(const char *path, int kind, const char *reason, int inspect_too)
{
    char err[IDX_ERR_LEN];
    idx_file f;
    memset(&f, 0xAB, sizeof f); /* the reader must reset what it leaves */
    int rc = kind ? idx_read_kind(path, (idx_kind)kind, &f, err) : idx_read(path, &f, err);
    ck_assert_msg(rc == -1, "%s: expected failure (%s), got rc %d", path, reason, rc);
    ck_assert_ptr_null(f.data);
    ck_assert_msg(testutil_contains(err, path), "message '%s' does not name the file %s", err,
                  path);
    ck_assert_msg(testutil_contains(err, reason), "message '%s' lacks the reason '%s'", err,
                  reason);
    ck_assert_msg(strchr(err, '\n') == NULL, "message '%s' is not one line", err);
    if (!inspect_too)
        return;
    char out[4096], errbuf[4096], arg[4200];
    snprintf(arg, sizeof arg, "'%s'", path);
    int st = inspect(arg, out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_msg(st == 1, "inspect %s: exit status %d, expected 1 (stderr: %s)", path, st, errbuf);
    ck_assert_msg(out[0] == '\0', "inspect %s: unexpected stdout '%s'", path, out);
    ck_assert_msg(testutil_contains(errbuf, path) && testutil_contains(errbuf, reason),
                  "inspect %s: stderr '%s' lacks the file name or '%s'", path, errbuf, reason);
}

static void expect_fail(const char *path, const char *reason)
{
    expect_fail_kind(path, 0, reason, 1);
}

/* A small images file in dir: n images of 28x28 with a varied payload, so
 * deflate has something to chew on. */
static const char *small_images(const char *dir, const char *name, uint32_t n, int gz)
{
    size_t len = (size_t)n * 784;
    uint8_t *px = malloc(len);
    ck_assert_ptr_nonnull(px);
    for (size_t i = 0; i < len; i++)
        px[i] = (uint8_t)((i * 2654435761u) >> 13);
    uint32_t dims[3] = {n, 28, 28};
    const char *path = testutil_path(dir, name);
    ck_assert_int_eq(testutil_write_idx(path, IDX_MAGIC_IMAGES, dims, 3, px, len, gz), 0);
    free(px);
    return path;
}

/* ---- the real MNIST files ---------------------------------------------- */

static void check_real_split(const char *images, const char *labels, uint32_t count,
                             unsigned long long pixel_sum, unsigned long pixel_crc,
                             unsigned long label_crc, const uint8_t first[10])
{
    char err[IDX_ERR_LEN];
    idx_file im, lb;
    int rc = idx_read_kind(data_file(images), IDX_IMAGES, &im, err);
    ck_assert_msg(rc == 0, "%s (run `make data`)", err);
    ck_assert_int_eq(im.kind, IDX_IMAGES);
    ck_assert_uint_eq(im.count, count);
    ck_assert_uint_eq(im.rows, 28);
    ck_assert_uint_eq(im.cols, 28);
    size_t n = (size_t)count * 784;
    ck_assert_uint_eq(sum_of(im.data, n), pixel_sum);
    ck_assert_uint_eq(crc_of(im.data, n), pixel_crc);
    idx_free(&im);
    ck_assert_ptr_null(im.data);

    rc = idx_read_kind(data_file(labels), IDX_LABELS, &lb, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(lb.kind, IDX_LABELS);
    ck_assert_uint_eq(lb.count, count);
    ck_assert_uint_eq(lb.rows, 1);
    ck_assert_uint_eq(lb.cols, 1);
    ck_assert_mem_eq(lb.data, first, 10);
    ck_assert_uint_eq(crc_of(lb.data, count), label_crc);
    idx_free(&lb);
}

START_TEST(test_real_train)
{
    static const uint8_t first[10] = {5, 0, 4, 1, 9, 2, 1, 3, 1, 4};
    check_real_split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000,
                     TRAIN_PIXEL_SUM, TRAIN_PIXEL_CRC, TRAIN_LABEL_CRC, first);
}
END_TEST

START_TEST(test_real_test)
{
    static const uint8_t first[10] = {7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
    check_real_split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000,
                     TEST_PIXEL_SUM, TEST_PIXEL_CRC, TEST_LABEL_CRC, first);
}
END_TEST

START_TEST(test_real_gz_equals_raw)
{
    static const char *const names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    const char *name = names[_i];
    char err[IDX_ERR_LEN], gzname[256];
    snprintf(gzname, sizeof gzname, "%s.gz", name);
    idx_file raw, gz;
    ck_assert_msg(idx_read(data_file(name), &raw, err) == 0, "%s", err);
    ck_assert_msg(idx_read(data_file(gzname), &gz, err) == 0, "%s", err);
    ck_assert_int_eq(raw.kind, gz.kind);
    ck_assert_uint_eq(raw.count, gz.count);
    ck_assert_uint_eq(raw.rows, gz.rows);
    ck_assert_uint_eq(raw.cols, gz.cols);
    ck_assert(memcmp(raw.data, gz.data, (size_t)raw.count * raw.rows * raw.cols) == 0);
    idx_free(&raw);
    idx_free(&gz);
}
END_TEST

START_TEST(test_real_dataset_split)
{
    char err[ERR_LEN];
    dataset d;
    ck_assert_msg(dataset_load_split(testutil_data_dir(), "test", &d, err) == 0, "%s", err);
    ck_assert_uint_eq(d.count, 10000);
    ck_assert_uint_eq(d.dim, 784);
    ck_assert_uint_eq(d.rows, 28);
    ck_assert_uint_eq(d.cols, 28);
    ck_assert_uint_eq(d.labels[0], 7);
    ck_assert_uint_eq(sum_of(d.pixels, (size_t)d.count * d.dim), TEST_PIXEL_SUM);
    dataset_free(&d);
    ck_assert_ptr_null(d.pixels);

    ck_assert_msg(dataset_load_split(testutil_data_dir(), "train", &d, err) == 0, "%s", err);
    ck_assert_uint_eq(d.count, 60000);
    ck_assert_uint_eq(d.labels[0], 5);
    dataset_free(&d);

    ck_assert_int_eq(dataset_load_split(testutil_data_dir(), "valid", &d, err), -1);
    ck_assert_msg(testutil_contains(err, "unknown split 'valid'"), "%s", err);
}
END_TEST

START_TEST(test_inspect_real)
{
    char out[4096], errbuf[4096], args[4096], want[4096];
    const char *im = data_file("train-images-idx3-ubyte.gz");
    const char *lb = data_file("t10k-labels-idx1-ubyte");
    snprintf(args, sizeof args, "'%s' '%s'", im, lb);
    int st = inspect(args, out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_msg(st == 0, "exit %d, stderr: %s", st, errbuf);
    snprintf(want, sizeof want,
             "%s: images 60000 x 28 x 28, mean pixel 33.32\n"
             "%s: labels 10000, counts 980 1135 1032 1010 982 892 958 1028 974 1009\n",
             im, lb);
    ck_assert_str_eq(out, want);
    ck_assert_str_eq(errbuf, "");
}
END_TEST

/* ---- synthetic files: the good path ------------------------------------ */

START_TEST(test_synthetic_roundtrip)
{
    const char *dir = testutil_tmpdir();
    for (int gz = 0; gz <= 1; gz++) {
        uint8_t px[3 * 2 * 5];
        for (int i = 0; i < 30; i++)
            px[i] = (uint8_t)(i * 8);
        uint32_t dims[3] = {3, 2, 5};
        const char *path = testutil_path(dir, gz ? "im.gz" : "im");
        ck_assert_int_eq(testutil_write_idx(path, IDX_MAGIC_IMAGES, dims, 3, px, 30, gz), 0);
        char err[IDX_ERR_LEN];
        idx_file f;
        ck_assert_msg(idx_read(path, &f, err) == 0, "%s", err);
        ck_assert_int_eq(f.kind, IDX_IMAGES);
        ck_assert_uint_eq(f.count, 3);
        ck_assert_uint_eq(f.rows, 2);
        ck_assert_uint_eq(f.cols, 5);
        ck_assert_mem_eq(f.data, px, 30);
        idx_free(&f);

        /* A gzip file made of two concatenated members is one stream. */
        uint8_t lb[4] = {9, 0, 3, 3};
        uint32_t n = 4;
        path = testutil_path(dir, gz ? "lb.gz" : "lb");
        ck_assert_int_eq(testutil_write_idx(path, IDX_MAGIC_LABELS, &n, 1, lb, 4, gz), 0);
        ck_assert_msg(idx_read_kind(path, IDX_LABELS, &f, err) == 0, "%s", err);
        ck_assert_uint_eq(f.count, 4);
        ck_assert_uint_eq(f.rows, 1);
        ck_assert_mem_eq(f.data, lb, 4);
        idx_free(&f);
    }
}
END_TEST

START_TEST(test_split_prefers_gz)
{
    /* t10k files whose plain and gzipped versions differ in their labels,
     * so the loaded labels tell which one was read. */
    const char *dir = testutil_tmpdir();
    uint8_t px[2 * 4] = {0};
    uint32_t idims[3] = {2, 2, 2}, n = 2;
    uint8_t plain_lb[2] = {1, 1}, gz_lb[2] = {2, 2};
    const char *im = testutil_path(dir, "t10k-images-idx3-ubyte");
    const char *lb = testutil_path(dir, "t10k-labels-idx1-ubyte");
    const char *lbgz = testutil_path(dir, "t10k-labels-idx1-ubyte.gz");
    ck_assert_int_eq(testutil_write_idx(im, IDX_MAGIC_IMAGES, idims, 3, px, 8, 0), 0);
    ck_assert_int_eq(testutil_write_idx(lb, IDX_MAGIC_LABELS, &n, 1, plain_lb, 2, 0), 0);
    ck_assert_int_eq(testutil_write_idx(lbgz, IDX_MAGIC_LABELS, &n, 1, gz_lb, 2, 1), 0);

    char err[ERR_LEN];
    dataset d;
    ck_assert_msg(dataset_load_split(dir, "test", &d, err) == 0, "%s", err);
    ck_assert_uint_eq(d.labels[0], 2);
    ck_assert_uint_eq(d.dim, 4);
    dataset_free(&d);

    ck_assert_int_eq(remove(lbgz), 0);
    ck_assert_msg(dataset_load_split(dir, "test", &d, err) == 0, "%s", err);
    ck_assert_uint_eq(d.labels[0], 1);
    dataset_free(&d);

    /* No train files at all: the message says what to do. */
    ck_assert_int_eq(dataset_load_split(dir, "train", &d, err), -1);
    ck_assert_msg(testutil_contains(err, dir) && testutil_contains(err, "train-images-idx3") &&
                      testutil_contains(err, "make data"),
                  "%s", err);
}
END_TEST

/* ---- synthetic files: every failure ------------------------------------ */

START_TEST(test_bad_missing_and_empty)
{
    const char *dir = testutil_tmpdir();
    expect_fail(testutil_path(dir, "no-such-file"), "cannot open: No such file");

    const char *empty = testutil_path(dir, "empty");
    ck_assert_int_eq(testutil_write_bytes(empty, "", 0, 0), 0);
    expect_fail(empty, "empty file");

    /* A valid gzip stream with nothing inside. */
    const char *empty_gz = testutil_path(dir, "empty.gz");
    ck_assert_int_eq(testutil_write_bytes(empty_gz, "", 0, 1), 0);
    expect_fail(empty_gz, "empty file");

    expect_fail(dir, "not a regular file");
}
END_TEST

START_TEST(test_bad_magic)
{
    const char *dir = testutil_tmpdir();
    uint32_t dims[3] = {1, 2, 2};
    uint8_t px[4] = {0};
    for (int gz = 0; gz <= 1; gz++) {
        const char *p = testutil_path(dir, gz ? "magic.gz" : "magic");
        ck_assert_int_eq(testutil_write_idx(p, 0x12345678u, dims, 3, px, 4, gz), 0);
        expect_fail(p, "bad magic 0x12345678");

        p = testutil_path(dir, gz ? "float.gz" : "float");
        ck_assert_int_eq(testutil_write_idx(p, 0x00000d03u, dims, 3, px, 4, gz), 0);
        expect_fail(p, "element type 0x0d");

        p = testutil_path(dir, gz ? "dims2.gz" : "dims2");
        ck_assert_int_eq(testutil_write_idx(p, 0x00000802u, dims, 2, px, 4, gz), 0);
        expect_fail(p, "wrong number of dimensions 2");

        p = testutil_path(dir, gz ? "dims4.gz" : "dims4");
        uint32_t d4[4] = {1, 1, 2, 2};
        ck_assert_int_eq(testutil_write_idx(p, 0x00000804u, d4, 4, px, 4, gz), 0);
        expect_fail(p, "bad magic 0x00000804: wrong number of dimensions 4");
    }
}
END_TEST

START_TEST(test_bad_kind)
{
    /* Well-formed files of the other kind: only a kind-specific read can
     * object, so `inspect` (which takes both) is not asked. */
    const char *dir = testutil_tmpdir();
    uint32_t n = 2, dims[3] = {1, 1, 2};
    uint8_t lb[2] = {1, 2};
    const char *labels = testutil_path(dir, "labels");
    const char *images = testutil_path(dir, "images");
    ck_assert_int_eq(testutil_write_idx(labels, IDX_MAGIC_LABELS, &n, 1, lb, 2, 0), 0);
    ck_assert_int_eq(testutil_write_idx(images, IDX_MAGIC_IMAGES, dims, 3, lb, 2, 0), 0);
    expect_fail_kind(labels, IDX_IMAGES,
                     "bad magic 0x00000801 (labels), expected 0x00000803 (images)", 0);
    expect_fail_kind(images, IDX_LABELS,
                     "bad magic 0x00000803 (images), expected 0x00000801 (labels)", 0);

    /* And a pair whose halves are swapped fails in dataset_load. */
    char err[ERR_LEN];
    dataset d;
    ck_assert_int_eq(dataset_load(labels, images, &d, err), -1);
    ck_assert_msg(testutil_contains(err, labels) && testutil_contains(err, "bad magic"), "%s", err);
    ck_assert_ptr_null(d.pixels);
}
END_TEST

START_TEST(test_bad_dimensions)
{
    const char *dir = testutil_tmpdir();
    uint8_t px[16] = {0};
    for (int gz = 0; gz <= 1; gz++) {
        char name[64];
        struct {
            uint32_t dims[3];
            const char *reason;
        } cases[] = {
            {{0, 2, 2}, "zero dimension in header (0 x 2 x 2)"},
            {{1, 0, 2}, "zero dimension in header (1 x 0 x 2)"},
            {{1, 2, 0}, "zero dimension in header (1 x 2 x 0)"},
            {{20000000u, 28, 28}, "absurd item count 20000000"},
            {{0xffffffffu, 28, 28}, "absurd item count 4294967295"},
            {{1, 5000, 28}, "absurd image size 5000 x 28"},
            {{1, 28, 0x80000000u}, "absurd image size 28 x 2147483648"},
            {{10000000u, 4096, 4096}, "absurd data size 167772160000000 bytes"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            snprintf(name, sizeof name, "dims%zu%s", i, gz ? ".gz" : "");
            const char *p = testutil_path(dir, name);
            ck_assert_int_eq(
                testutil_write_idx(p, IDX_MAGIC_IMAGES, cases[i].dims, 3, px, 16, gz), 0);
            expect_fail(p, cases[i].reason);
        }
        snprintf(name, sizeof name, "nolabels%s", gz ? ".gz" : "");
        const char *p = testutil_path(dir, name);
        uint32_t zero = 0;
        ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_LABELS, &zero, 1, px, 0, gz), 0);
        expect_fail(p, "zero dimension");
    }
}
END_TEST

START_TEST(test_bad_truncated)
{
    const char *dir = testutil_tmpdir();
    uint8_t buf[64] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0};
    for (int gz = 0; gz <= 1; gz++) {
        /* Header cut inside the magic, then inside the dimensions. */
        const char *p = testutil_path(dir, gz ? "head2.gz" : "head2");
        ck_assert_int_eq(testutil_write_bytes(p, buf, 2, gz), 0);
        expect_fail(p, "truncated header: 2 of 4 magic bytes");
        p = testutil_path(dir, gz ? "head10.gz" : "head10");
        ck_assert_int_eq(testutil_write_bytes(p, buf, 10, gz), 0);
        expect_fail(p, "truncated header: 6 of 12 dimension bytes");

        /* The header claims 10 images, the file holds 9.5. */
        uint8_t *px = calloc(10, 784);
        ck_assert_ptr_nonnull(px);
        uint32_t dims[3] = {10, 28, 28};
        p = testutil_path(dir, gz ? "short.gz" : "short");
        ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, px, 7448, gz), 0);
        expect_fail(p, "truncated: header claims 7840 bytes of data, file holds 7448");

        /* Labels with nothing after the header. */
        uint32_t n = 5;
        p = testutil_path(dir, gz ? "nodata.gz" : "nodata");
        ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_LABELS, &n, 1, px, 0, gz), 0);
        expect_fail(p, "truncated: header claims 5 bytes of data, file holds 0");
        free(px);
    }
}
END_TEST

START_TEST(test_bad_trailing)
{
    const char *dir = testutil_tmpdir();
    uint8_t px[4 * 4 + 5] = {0};
    uint32_t dims[3] = {1, 4, 4};
    const char *p = testutil_path(dir, "trail");
    ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, px, sizeof px, 0), 0);
    expect_fail(p, "trailing garbage: 5 bytes after the 16 bytes of data");
    p = testutil_path(dir, "trail.gz");
    ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, px, sizeof px, 1), 0);
    expect_fail(p, "trailing garbage: 5 bytes after the 16 bytes of data");

    /* Much more trailing data than one read buffer. */
    uint8_t *big = calloc(1, 16 + 100000);
    ck_assert_ptr_nonnull(big);
    p = testutil_path(dir, "trailbig.gz");
    ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, big, 16 + 100000, 1), 0);
    expect_fail(p, "trailing garbage: 100000 bytes after the 16 bytes of data");
    free(big);
}
END_TEST

/* Write a gzipped small images file and return its bytes for corruption. */
static uint8_t *gz_bytes(const char *dir, size_t *len)
{
    const char *p = small_images(dir, "good.gz", 20, 1);
    uint8_t *b = testutil_read_file(p, len);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_gt(*len, 100);
    char err[IDX_ERR_LEN];
    idx_file f;
    ck_assert_msg(idx_read(p, &f, err) == 0, "%s", err);
    idx_free(&f);
    return b;
}

START_TEST(test_bad_gzip)
{
    const char *dir = testutil_tmpdir();
    size_t len;
    uint8_t *b = gz_bytes(dir, &len);

    /* Cut in the middle of the deflate data. */
    const char *p = testutil_path(dir, "cut.gz");
    ck_assert_int_eq(testutil_write_bytes(p, b, len / 2, 0), 0);
    expect_fail(p, "truncated gzip stream");

    /* Only the 8-byte trailer (CRC, length) missing: all the data inflates,
     * and the stream is still incomplete. */
    p = testutil_path(dir, "notrailer.gz");
    ck_assert_int_eq(testutil_write_bytes(p, b, len - 8, 0), 0);
    expect_fail(p, "truncated gzip stream");

    /* A wrong CRC. */
    uint8_t *c = malloc(len);
    ck_assert_ptr_nonnull(c);
    memcpy(c, b, len);
    c[len - 8] ^= 0x55;
    p = testutil_path(dir, "crc.gz");
    ck_assert_int_eq(testutil_write_bytes(p, c, len, 0), 0);
    expect_fail(p, "corrupt gzip stream: incorrect data check");

    /* An unknown compression method in the gzip header. */
    memcpy(c, b, len);
    c[2] = 7;
    p = testutil_path(dir, "method.gz");
    ck_assert_int_eq(testutil_write_bytes(p, c, len, 0), 0);
    expect_fail(p, "corrupt gzip stream");

    /* Garbage in the deflate data: a run of 0xff makes an invalid block. */
    memcpy(c, b, len);
    memset(c + 10, 0xff, 16);
    p = testutil_path(dir, "body.gz");
    ck_assert_int_eq(testutil_write_bytes(p, c, len, 0), 0);
    expect_fail(p, "corrupt gzip stream");

    /* The gzip magic followed by nothing sensible. */
    p = testutil_path(dir, "magiconly.gz");
    ck_assert_int_eq(testutil_write_bytes(p, "\x1f\x8b\x08\x00garbage!", 12, 0), 0);
    expect_fail(p, "gzip stream");

    free(c);
    free(b);
}
END_TEST

START_TEST(test_bad_labels_range)
{
    const char *dir = testutil_tmpdir();
    uint8_t lb[5] = {0, 1, 2, 10, 3};
    uint32_t n = 5;
    for (int gz = 0; gz <= 1; gz++) {
        const char *p = testutil_path(dir, gz ? "lb.gz" : "lb");
        ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_LABELS, &n, 1, lb, 5, gz), 0);
        expect_fail_kind(p, IDX_LABELS, "label 10 at index 3 out of range 0..9", 1);
        /* A read of any kind does not judge the values. */
        char err[IDX_ERR_LEN];
        idx_file f;
        ck_assert_msg(idx_read(p, &f, err) == 0, "%s", err);
        idx_free(&f);
    }
}
END_TEST

START_TEST(test_bad_count_mismatch)
{
    const char *dir = testutil_tmpdir();
    const char *im = small_images(dir, "im", 5, 0);
    uint8_t lb[4] = {1, 2, 3, 4};
    uint32_t n = 4;
    const char *lbp = testutil_path(dir, "lb.gz");
    ck_assert_int_eq(testutil_write_idx(lbp, IDX_MAGIC_LABELS, &n, 1, lb, 4, 1), 0);
    char err[ERR_LEN];
    dataset d;
    memset(&d, 0xAB, sizeof d);
    ck_assert_int_eq(dataset_load(im, lbp, &d, err), -1);
    ck_assert_ptr_null(d.pixels);
    ck_assert_ptr_null(d.labels);
    ck_assert_msg(testutil_contains(err, im) && testutil_contains(err, "5 images") &&
                      testutil_contains(err, lbp) && testutil_contains(err, "4 labels"),
                  "%s", err);

    /* The other way round, and a bad labels file behind good images. */
    ck_assert_int_eq(dataset_load(im, testutil_path(dir, "absent"), &d, err), -1);
    ck_assert_msg(testutil_contains(err, "absent: cannot open"), "%s", err);
}
END_TEST

/* Keep the address space a little above what the process uses now, so that
 * an allocation sized by a lying header fails instead of being overcommitted.
 * Not under ASan, whose shadow memory needs terabytes of address space. */
static int limit_address_space(struct rlimit *saved, size_t headroom)
{
    if (UNDER_ASAN)
        return 0;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f)
        return 0;
    int ok = fscanf(f, "%lu", &pages) == 1;
    fclose(f);
    if (!ok || getrlimit(RLIMIT_AS, saved) != 0)
        return 0;
    struct rlimit lim = *saved;
    lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
    if (saved->rlim_max != RLIM_INFINITY && lim.rlim_cur > saved->rlim_max)
        return 0;
    return setrlimit(RLIMIT_AS, &lim) == 0;
}

START_TEST(test_lying_header_is_bounded)
{
    /* Headers that claim 7.8 GB (within every limit) over tiny payloads:
     * the plain file is refused from its size, and the gzip stream, whose
     * size is unknown, may cost no more than about twice its real content. */
    const char *dir = testutil_tmpdir();
    uint32_t dims[3] = {10000000u, 28, 28};
    uint8_t *zeros = calloc(1, 16u << 20);
    ck_assert_ptr_nonnull(zeros);
    const char *plain = testutil_path(dir, "liar");
    const char *gz = testutil_path(dir, "liar.gz");
    const char *bomb = testutil_path(dir, "bomb.gz");
    ck_assert_int_eq(testutil_write_idx(plain, IDX_MAGIC_IMAGES, dims, 3, zeros, 784, 0), 0);
    ck_assert_int_eq(testutil_write_idx(gz, IDX_MAGIC_IMAGES, dims, 3, zeros, 784, 1), 0);
    /* 16 MiB of zeros deflate to a few KiB. */
    ck_assert_int_eq(testutil_write_idx(bomb, IDX_MAGIC_IMAGES, dims, 3, zeros, 16u << 20, 1), 0);
    free(zeros);

    struct rlimit saved;
    int limited = limit_address_space(&saved, 256u << 20);
    char err[IDX_ERR_LEN];
    idx_file f;
    int rc1 = idx_read(plain, &f, err);
    char err1[IDX_ERR_LEN];
    memcpy(err1, err, sizeof err);
    int rc2 = idx_read(gz, &f, err);
    char err2[IDX_ERR_LEN];
    memcpy(err2, err, sizeof err);
    int rc3 = idx_read(bomb, &f, err);
    if (limited)
        setrlimit(RLIMIT_AS, &saved);
    ck_assert_int_eq(rc1, -1);
    ck_assert_msg(testutil_contains(err1, "truncated: header claims 7840000000 bytes of data, "
                                          "file holds 784"),
                  "%s", err1);
    ck_assert_int_eq(rc2, -1);
    ck_assert_msg(testutil_contains(err2, "truncated: header claims 7840000000 bytes of data, "
                                          "file holds 784"),
                  "%s", err2);
    ck_assert_int_eq(rc3, -1);
    ck_assert_msg(testutil_contains(err, "truncated: header claims 7840000000 bytes of data, "
                                         "file holds 16777216"),
                  "%s", err);
}
END_TEST

START_TEST(test_inspect_cli)
{
    char out[8192], errbuf[8192], args[8192];
    /* No files: a usage error. */
    int st = inspect("", out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_int_eq(st, 2);
    ck_assert_msg(testutil_contains(errbuf, "usage"), "%s", errbuf);
    ck_assert_str_eq(out, "");

    st = inspect("--help", out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(testutil_contains(out, "usage: gsvae inspect FILE..."), "%s", out);

    st = inspect("--frobnicate x", out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_int_eq(st, 2);
    ck_assert_msg(testutil_contains(errbuf, "unknown flag '--frobnicate'"), "%s", errbuf);
    ck_assert_msg(strchr(errbuf, '\n') == errbuf + strlen(errbuf) - 1, "not one line: %s", errbuf);

    /* A bad file among good ones: the others are still inspected, and the
     * exit status says something failed. */
    const char *dir = testutil_tmpdir();
    const char *good = small_images(dir, "good", 2, 0);
    const char *bad = testutil_path(dir, "bad");
    ck_assert_int_eq(testutil_write_bytes(bad, "nonsense", 8, 0), 0);
    uint8_t lb[3] = {1, 1, 7};
    uint32_t n = 3;
    const char *labels = testutil_path(dir, "-labels.gz");
    ck_assert_int_eq(testutil_write_idx(labels, IDX_MAGIC_LABELS, &n, 1, lb, 3, 1), 0);
    snprintf(args, sizeof args, "'%s' '%s' -- '%s'", good, bad, labels);
    st = inspect(args, out, sizeof out, errbuf, sizeof errbuf);
    ck_assert_int_eq(st, 1);
    char want[8192];
    double mean = 0;
    for (size_t i = 0; i < 2 * 784; i++)
        mean += (uint8_t)((i * 2654435761u) >> 13);
    snprintf(want, sizeof want,
             "%s: images 2 x 28 x 28, mean pixel %.2f\n"
             "%s: labels 3, counts 0 2 0 0 0 0 0 1 0 0\n",
             good, mean / (2 * 784), labels);
    ck_assert_str_eq(out, want);
    ck_assert_msg(testutil_contains(errbuf, bad) && testutil_contains(errbuf, "bad magic"), "%s",
                  errbuf);
}
END_TEST

/* ---- binarization ------------------------------------------------------ */

static dataset tiny_dataset(uint32_t count, uint32_t dim, uint8_t *pixels, uint8_t *labels)
{
    dataset d = {.count = count, .dim = dim, .rows = 1, .cols = dim, .pixels = pixels,
                 .labels = labels};
    return d;
}

START_TEST(test_binarize_names)
{
    static const char *const names[] = {"none", "dynamic", "threshold"};
    for (int i = 0; i < 3; i++) {
        binarize_mode m;
        ck_assert_int_eq(binarize_parse(names[i], &m), 0);
        ck_assert_str_eq(binarize_name(m), names[i]);
    }
    binarize_mode m = BIN_THRESHOLD;
    ck_assert_int_eq(binarize_parse("Dynamic", &m), -1);
    ck_assert_int_eq(binarize_parse("", &m), -1);
    ck_assert_int_eq(binarize_parse(NULL, &m), -1);
    ck_assert_int_eq(m, BIN_THRESHOLD);
}
END_TEST

START_TEST(test_binarize_fixed)
{
    uint8_t px[6] = {0, 1, 127, 128, 200, 255}, lb[1] = {0};
    dataset d = tiny_dataset(1, 6, px, lb);
    float x[6];
    dataset_example(&d, 0, BIN_NONE, NULL, x);
    for (int j = 0; j < 6; j++)
        ck_assert_float_eq(x[j], (float)px[j] / 255.0f);
    ck_assert_float_eq(x[0], 0.0f);
    ck_assert_float_eq(x[5], 1.0f);
    dataset_example(&d, 0, BIN_THRESHOLD, NULL, x);
    static const float want[6] = {0, 0, 0, 1, 1, 1};
    for (int j = 0; j < 6; j++)
        ck_assert_float_eq(x[j], want[j]);
}
END_TEST

START_TEST(test_binarize_dynamic)
{
    /* Each pixel is Bernoulli(p/255), drawn afresh on every call. */
    uint8_t px[4] = {0, 255, 128, 64}, lb[1] = {0};
    dataset d = tiny_dataset(1, 4, px, lb);
    rng_t r;
    rng_seed(&r, 7);
    const int draws = 40000;
    double ones[4] = {0};
    float x[4];
    for (int t = 0; t < draws; t++) {
        dataset_example(&d, 0, BIN_DYNAMIC, &r, x);
        for (int j = 0; j < 4; j++) {
            ck_assert(x[j] == 0.0f || x[j] == 1.0f);
            ones[j] += x[j];
        }
    }
    ck_assert_double_eq(ones[0], 0);
    ck_assert_double_eq(ones[1], draws);
    for (int j = 2; j < 4; j++) {
        /* sd of the mean is at most 0.0025: the bound is about 5 sd. */
        double p = px[j] / 255.0, mean = ones[j] / draws;
        ck_assert_msg(mean > p - 0.012 && mean < p + 0.012, "pixel %d: mean %.4f, want %.4f", j,
                      mean, p);
    }

    /* Same seed, same draws; and consecutive draws differ. */
    uint8_t gray[784], lb0[1] = {0};
    memset(gray, 128, sizeof gray);
    dataset g = tiny_dataset(1, 784, gray, lb0);
    float a[784], b[784], c[784];
    rng_t r1, r2;
    rng_seed(&r1, 99);
    rng_seed(&r2, 99);
    dataset_example(&g, 0, BIN_DYNAMIC, &r1, a);
    dataset_example(&g, 0, BIN_DYNAMIC, &r2, b);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    dataset_example(&g, 0, BIN_DYNAMIC, &r1, c);
    ck_assert(memcmp(a, c, sizeof a) != 0);
}
END_TEST

/* Dynamic binarization tests each pixel's uniform against a threshold of
 * its intensity: the same draws, bit for bit, as the test u < v / 255 in
 * float it replaced, for every intensity. */
START_TEST(test_binarize_dynamic_as_float_test)
{
    uint8_t px[256], lb[1] = {0};
    for (int v = 0; v < 256; v++)
        px[v] = (uint8_t)v;
    dataset d = tiny_dataset(1, 256, px, lb);
    rng_t r, ref;
    rng_seed(&r, 2017);
    ref = r;
    float x[256];
    for (int t = 0; t < 4000; t++) {
        dataset_example(&d, 0, BIN_DYNAMIC, &r, x);
        for (int v = 0; v < 256; v++) {
            float want = rng_uniformf_open(&ref) < (float)v * (1.0f / 255.0f) ? 1.0f : 0.0f;
            ck_assert_msg(x[v] == want, "draw %d, intensity %d", t, v);
        }
    }
    ck_assert(memcmp(&r, &ref, sizeof r) == 0);
}
END_TEST

/* ---- batching ---------------------------------------------------------- */

#define NB 7

/* Example i has label i and pixels (30 i, 255), so x tells which it was. */
static dataset batch_dataset(uint8_t px[2 * NB], uint8_t lb[NB])
{
    for (int i = 0; i < NB; i++) {
        px[2 * i] = (uint8_t)(30 * i);
        px[2 * i + 1] = 255;
        lb[i] = (uint8_t)i;
    }
    return tiny_dataset(NB, 2, px, lb);
}

/* Draw nbatch batches of size batch; out gets the example indices in order. */
static void draw(batcher *b, uint32_t batch, int nbatch, rng_t *r, int *out)
{
    float x[2 * 64];
    uint8_t lb[64];
    ck_assert_uint_le(batch, 64);
    for (int k = 0; k < nbatch; k++) {
        memset(lb, 0xff, sizeof lb);
        batcher_next(b, BIN_NONE, r, x, lb);
        for (uint32_t j = 0; j < batch; j++) {
            ck_assert_uint_lt(lb[j], NB);
            /* The pixels belong to the example whose label came with them. */
            ck_assert_float_eq(x[2 * j], (float)(30 * lb[j]) / 255.0f);
            ck_assert_float_eq(x[2 * j + 1], 1.0f);
            out[k * (int)batch + (int)j] = lb[j];
        }
    }
}

START_TEST(test_batcher_epochs)
{
    uint8_t px[2 * NB], lb[NB];
    dataset d = batch_dataset(px, lb);
    rng_t r;
    rng_seed(&r, 1234);
    batcher b;
    char err[ERR_LEN];
    ck_assert_msg(batcher_init(&b, &d, 3, &r, err) == 0, "%s", err);
    ck_assert_uint_eq(b.pos, 0);
    ck_assert_uint_eq(b.epoch, 0);
    ck_assert_uint_eq(b.batch, 3);
    int seen[NB] = {0};
    for (int i = 0; i < NB; i++)
        seen[b.order[i]]++;
    for (int i = 0; i < NB; i++)
        ck_assert_int_eq(seen[i], 1);

    /* 14 batches of 3 are exactly 6 epochs of 7; batches straddle epochs. */
    int seq[14 * 3];
    for (int k = 1; k <= 14; k++) {
        draw(&b, 3, 1, &r, seq + (k - 1) * 3);
        ck_assert_uint_eq(b.epoch, (uint64_t)(3 * k / NB));
        ck_assert_uint_eq(b.pos, (uint32_t)(3 * k % NB));
    }
    int distinct_orders = 0;
    for (int e = 0; e < 6; e++) {
        int count[NB] = {0};
        for (int i = 0; i < NB; i++)
            count[seq[e * NB + i]]++;
        for (int i = 0; i < NB; i++)
            ck_assert_msg(count[i] == 1, "epoch %d is not a permutation", e);
        if (e > 0 && memcmp(seq + e * NB, seq + (e - 1) * NB, NB * sizeof(int)) != 0)
            distinct_orders++;
    }
    /* Reshuffled every epoch (equal neighbours have chance 1/5040 each). */
    ck_assert_int_ge(distinct_orders, 4);
    batcher_free(&b);
    ck_assert_ptr_null(b.order);
}
END_TEST

START_TEST(test_batcher_seeded)
{
    uint8_t px[2 * NB], lb[NB];
    dataset d = batch_dataset(px, lb);
    char err[ERR_LEN];
    int s1[40], s2[40], s3[40];
    uint64_t seeds[3] = {5, 5, 6};
    int *outs[3] = {s1, s2, s3};
    for (int t = 0; t < 3; t++) {
        rng_t r;
        rng_seed(&r, seeds[t]);
        batcher b;
        ck_assert_msg(batcher_init(&b, &d, 4, &r, err) == 0, "%s", err);
        draw(&b, 4, 10, &r, outs[t]);
        batcher_free(&b);
    }
    ck_assert(memcmp(s1, s2, sizeof s1) == 0);
    ck_assert(memcmp(s1, s3, sizeof s1) != 0);
}
END_TEST

START_TEST(test_batcher_resume)
{
    /* What a checkpoint saves (order, pos, epoch and the generator) is
     * enough to continue the exact same stream. */
    uint8_t px[2 * NB], lb[NB];
    dataset d = batch_dataset(px, lb);
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, 77);
    batcher b;
    ck_assert_msg(batcher_init(&b, &d, 5, &r, err) == 0, "%s", err);
    int warm[15], want[25], got[25];
    draw(&b, 5, 3, &r, warm);
    uint32_t order[NB];
    memcpy(order, b.order, sizeof order);
    uint32_t pos = b.pos;
    uint64_t epoch = b.epoch;
    rng_t saved = r;
    draw(&b, 5, 5, &r, want);

    rng_t other;
    rng_seed(&other, 1);
    batcher c;
    ck_assert_msg(batcher_init(&c, &d, 5, &other, err) == 0, "%s", err);
    memcpy(c.order, order, sizeof order);
    c.pos = pos;
    c.epoch = epoch;
    draw(&c, 5, 5, &saved, got);
    ck_assert(memcmp(want, got, sizeof want) == 0);
    ck_assert_uint_eq(c.epoch, b.epoch);
    ck_assert_uint_eq(c.pos, b.pos);
    batcher_free(&b);
    batcher_free(&c);
}
END_TEST

START_TEST(test_batcher_edges)
{
    uint8_t px[2 * NB], lb[NB];
    dataset d = batch_dataset(px, lb);
    char err[ERR_LEN];
    rng_t r;
    rng_seed(&r, 3);
    batcher b;
    ck_assert_int_eq(batcher_init(&b, &d, 0, &r, err), -1);
    ck_assert_msg(testutil_contains(err, "batch size"), "%s", err);
    ck_assert_ptr_null(b.order);
    dataset empty = tiny_dataset(0, 2, px, lb);
    ck_assert_int_eq(batcher_init(&b, &empty, 2, &r, err), -1);
    ck_assert_msg(testutil_contains(err, "empty"), "%s", err);

    /* A batch larger than the data set wraps over several epochs, and is
     * still made of whole permutations. */
    ck_assert_msg(batcher_init(&b, &d, 2 * NB + 3, &r, err) == 0, "%s", err);
    int seq[2 * (2 * NB + 3)];
    draw(&b, 2 * NB + 3, 2, &r, seq);
    ck_assert_uint_eq(b.epoch, 4);
    ck_assert_uint_eq(b.pos, (2 * (2 * NB + 3)) % NB);
    for (int e = 0; e < 4; e++) {
        int count[NB] = {0};
        for (int i = 0; i < NB; i++)
            count[seq[e * NB + i]]++;
        for (int i = 0; i < NB; i++)
            ck_assert_int_eq(count[i], 1);
    }
    /* labels may be NULL. */
    float x[2 * (2 * NB + 3)];
    batcher_next(&b, BIN_THRESHOLD, &r, x, NULL);
    batcher_free(&b);
    batcher_free(&b); /* freeing twice is harmless */
}
END_TEST

static Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *real = tcase_create("real");
    /* Reading 47 MB through zlib under the sanitizers takes a few seconds. */
    tcase_set_timeout(real, 300);
    tcase_add_test(real, test_real_train);
    tcase_add_test(real, test_real_test);
    tcase_add_loop_test(real, test_real_gz_equals_raw, 0, 4);
    tcase_add_test(real, test_real_dataset_split);
    tcase_add_test(real, test_inspect_real);
    suite_add_tcase(s, real);

    TCase *bad = tcase_create("bad");
    tcase_set_timeout(bad, 120);
    tcase_add_test(bad, test_synthetic_roundtrip);
    tcase_add_test(bad, test_split_prefers_gz);
    tcase_add_test(bad, test_bad_missing_and_empty);
    tcase_add_test(bad, test_bad_magic);
    tcase_add_test(bad, test_bad_kind);
    tcase_add_test(bad, test_bad_dimensions);
    tcase_add_test(bad, test_bad_truncated);
    tcase_add_test(bad, test_bad_trailing);
    tcase_add_test(bad, test_bad_gzip);
    tcase_add_test(bad, test_bad_labels_range);
    tcase_add_test(bad, test_bad_count_mismatch);
    tcase_add_test(bad, test_lying_header_is_bounded);
    tcase_add_test(bad, test_inspect_cli);
    suite_add_tcase(s, bad);

    TCase *data = tcase_create("batch");
    tcase_set_timeout(data, 60);
    tcase_add_test(data, test_binarize_names);
    tcase_add_test(data, test_binarize_fixed);
    tcase_add_test(data, test_binarize_dynamic);
    tcase_add_test(data, test_binarize_dynamic_as_float_test);
    tcase_add_test(data, test_batcher_epochs);
    tcase_add_test(data, test_batcher_seeded);
    tcase_add_test(data, test_batcher_resume);
    tcase_add_test(data, test_batcher_edges);
    suite_add_tcase(s, data);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
