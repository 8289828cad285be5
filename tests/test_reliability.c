/* test_reliability.c: the refusals that keep a careless command from losing
 * work or hanging: FIFOs given as input, an --out that is the checkpoint or
 * some other file, checkpoints of a diverged model, bytes after the data of
 * an IDX file, widths over the limit, and messages that keep their reason
 * however long the path in them. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "idx.h"
#include "testutil.h"
#include "util.h"

#define OUT_LEN 65536
static char out[OUT_LEN], errout[OUT_LEN];

#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)

/* A regression must not hang the suite: commands that could block run
 * under timeout(1), which exits 124 when it has to kill them. */
#define GUARD "timeout 10"

/* A tiny trained run in dir (a few tenths of a second); returns its
 * checkpoint. */
static const char *tiny_run(const char *dir)
{
    int rc = gsvae("train --data %s --latent 2x3 --hidden 8 --steps 5 --eval-every 0 "
                   "--iw-samples 0 --eval-images 50 --quiet --out %s",
                   testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "train: exit %d: %s", rc, errout);
    return testutil_path(dir, "model.ckpt");
}

/* Run `GUARD GSVAE_BIN args` (args may be longer than testutil_run_gsvae
 * takes). */
static int run_guarded(const char *args)
{
    size_t n = strlen(GUARD) + strlen(testutil_bin()) + strlen(args) + 3;
    char *cmd = malloc(n);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, n, GUARD " %s %s", testutil_bin(), args);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    free(cmd);
    return rc;
}

static int same_file_bytes(const char *path, const uint8_t *bytes, size_t len)
{
    size_t now;
    uint8_t *b = testutil_read_file(path, &now);
    int same = b && now == len && memcmp(b, bytes, len) == 0;
    free(b);
    return same;
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64le(const uint8_t *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

/* Copy checkpoint src to dst with float number index of its "params"
 * section set to value and the trailing crc32 recomputed, so that only the
 * model check can tell.  The layout is the one of ckpt.h: a 16-byte header
 * (magic, version, count), per section a 32-byte name, a u64 length and the
 * data, then the crc32 of all that. */
static void write_with_param(const char *src, const char *dst, size_t index, float value)
{
    size_t len;
    uint8_t *b = testutil_read_file(src, &len);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_gt(len, 20);
    uint32_t count = get_u32le(b + 12);
    size_t pos = 16;
    int found = 0;
    for (uint32_t i = 0; i < count && !found; i++) {
        ck_assert_uint_le(pos + 40, len - 4);
        uint64_t slen = get_u64le(b + pos + 32);
        if (strcmp((const char *)(b + pos), "params") == 0) {
            ck_assert_uint_lt(index, slen / sizeof(float));
            memcpy(b + pos + 40 + index * sizeof(float), &value, sizeof value);
            found = 1;
        }
        pos += 40 + (size_t)slen;
    }
    ck_assert_msg(found, "%s: no params section", src);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        b[len - 4 + i] = (uint8_t)(crc >> (8 * i));
    ck_assert_int_eq(testutil_write_bytes(dst, b, len, 0), 0);
    free(b);
}

/* A directory path of about len bytes under base, made of 200-byte names
 * (each under NAME_MAX), created on disk. */
static char *deep_dir(const char *base, size_t len)
{
    char *p = malloc(len + 512);
    ck_assert_ptr_nonnull(p);
    strcpy(p, base);
    char name[201];
    memset(name, 'd', 200);
    name[200] = '\0';
    while (strlen(p) < len) {
        strcat(p, "/");
        strcat(p, name);
        ck_assert_msg(mkdir(p, 0777) == 0, "mkdir (%zu bytes): %s", strlen(p), strerror(errno));
    }
    return p;
}

/* ---- item 8: a width over the limit says so ------------------------------ */

START_TEST(hidden_width_over_the_limit_is_named)
{
    const char *dir = testutil_tmpdir();
    int rc = gsvae("train --data %s --hidden 100000,100000 --out %s/run", testutil_data_dir(), dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "width 100000 is outside 1..65536"), "%s", errout);
    ck_assert_msg(!testutil_contains(errout, "separated by commas"), "%s", errout);
    rc = gsvae("train --data %s --hidden 64,0 --out %s/run", testutil_data_dir(), dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "width 0 is outside 1..65536"), "%s", errout);
    /* A malformed list still says what the form is. */
    rc = gsvae("train --data %s --hidden 64,,8 --out %s/run", testutil_data_dir(), dir);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "separated by commas"), "%s", errout);
}
END_TEST

/* ---- item 9: a FIFO is refused at once ----------------------------------- */

START_TEST(fifo_checkpoint_is_refused_without_blocking)
{
    const char *dir = testutil_tmpdir();
    const char *fifo = testutil_path(dir, "model.ckpt");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    const char *cmds[] = {"eval --ckpt", "sample --ckpt", "recon --ckpt"};
    for (int i = 0; i < 3; i++) {
        char args[4096];
        snprintf(args, sizeof args, "%s %s --data %s --out %s/x.png", cmds[i], fifo,
                 testutil_data_dir(), dir);
        if (i == 0) /* eval has no --out */
            snprintf(args, sizeof args, "%s %s --data %s", cmds[i], fifo, testutil_data_dir());
        if (i == 1) /* nor sample --data */
            snprintf(args, sizeof args, "%s %s --out %s/x.png", cmds[i], fifo, dir);
        int rc = run_guarded(args);
        ck_assert_msg(rc != 124, "%s blocked on a FIFO", args);
        ck_assert_msg(rc == 1, "%s: exit %d: %s", args, rc, errout);
        ck_assert_msg(testutil_contains(errout, fifo) &&
                          testutil_contains(errout, "not a regular file (a FIFO)"),
                      "%s", errout);
        ck_assert_msg(strchr(errout, '\n') == strrchr(errout, '\n'), "not one line: %s", errout);
    }
}
END_TEST

START_TEST(fifo_idx_file_is_refused_without_blocking)
{
    const char *dir = testutil_tmpdir();
    const char *fifo = testutil_path(dir, "t10k-images-idx3-ubyte");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    const uint8_t labels[2] = {3, 7};
    uint32_t nlabels = 2;
    ck_assert_int_eq(testutil_write_idx(testutil_path(dir, "t10k-labels-idx1-ubyte"),
                                        IDX_MAGIC_LABELS, &nlabels, 1, labels, 2, 0),
                     0);
    char args[4096];
    snprintf(args, sizeof args, "inspect %s", fifo);
    int rc = run_guarded(args);
    ck_assert_msg(rc != 124, "inspect blocked on a FIFO");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, fifo) && testutil_contains(errout, "not a regular file"),
                  "%s", errout);

    /* The same through a data directory whose test images are a FIFO. */
    const char *ckpt = tiny_run(testutil_tmpdir());
    snprintf(args, sizeof args, "eval --ckpt %s --data %s --iw-samples 0 --images 10", ckpt, dir);
    rc = run_guarded(args);
    ck_assert_msg(rc != 124, "eval blocked on a FIFO of test images");
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, "not a regular file"), "%s", errout);
}
END_TEST

/* ---- item 10: --out never replaces the checkpoint or a foreign file ------ */

START_TEST(out_onto_the_checkpoint_is_refused)
{
    const char *dir = testutil_tmpdir();
    const char *ckpt = tiny_run(dir);
    size_t len;
    uint8_t *bytes = testutil_read_file(ckpt, &len);
    ck_assert_ptr_nonnull(bytes);

    /* The same path, another spelling of it, a hard link and a symlink. */
    const char *hard = testutil_path(dir, "hard.png");
    const char *soft = testutil_path(dir, "soft.png");
    ck_assert_int_eq(link(ckpt, hard), 0);
    ck_assert_int_eq(symlink(ckpt, soft), 0);
    const char *outs[] = {ckpt, testutil_path(dir, "./model.ckpt"), hard, soft};
    for (int i = 0; i < 4; i++) {
        int rc = gsvae("sample --ckpt %s --out %s", ckpt, outs[i]);
        ck_assert_msg(rc == 2, "sample --out %s: exit %d: %s", outs[i], rc, errout);
        ck_assert_msg(testutil_contains(errout, "is the checkpoint itself"), "%s", errout);
        rc = gsvae("recon --ckpt %s --data %s --out %s", ckpt, testutil_data_dir(), outs[i]);
        ck_assert_msg(rc == 2, "recon --out %s: exit %d: %s", outs[i], rc, errout);
        ck_assert_msg(testutil_contains(errout, "is the checkpoint itself"), "%s", errout);
        ck_assert_msg(same_file_bytes(ckpt, bytes, len), "checkpoint changed by --out %s",
                      outs[i]);
    }
    struct stat st;
    ck_assert_int_eq(lstat(soft, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    free(bytes);
}
END_TEST

START_TEST(out_over_a_file_that_is_not_a_png_is_refused)
{
    const char *dir = testutil_tmpdir();
    const char *ckpt = tiny_run(dir);
    const char *log = testutil_path(dir, "log.csv");
    size_t len;
    uint8_t *bytes = testutil_read_file(log, &len);
    ck_assert_ptr_nonnull(bytes);
    int rc = gsvae("sample --ckpt %s --out %s", ckpt, log);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, log) && testutil_contains(errout, "not a PNG"), "%s",
                  errout);
    rc = gsvae("recon --ckpt %s --data %s --out %s", ckpt, testutil_data_dir(), log);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(same_file_bytes(log, bytes, len), "log.csv was overwritten");
    free(bytes);

    /* A short file, and a FIFO (refused, not opened for writing). */
    const char *shortf = testutil_path(dir, "short.png");
    ck_assert_int_eq(testutil_write_bytes(shortf, "\x89PNG", 4, 0), 0);
    rc = gsvae("sample --ckpt %s --out %s", ckpt, shortf);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    const char *fifo = testutil_path(dir, "fifo.png");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    char args[4096];
    snprintf(args, sizeof args, "sample --ckpt %s --out %s", ckpt, fifo);
    rc = run_guarded(args);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, "not a regular file"), "%s", errout);

    /* An earlier image, an empty file and a new name are written. */
    const char *outs[] = {testutil_path(dir, "samples.png"), testutil_path(dir, "empty.png"),
                          testutil_path(dir, "new.png")};
    ck_assert_int_eq(testutil_write_bytes(outs[1], "", 0, 0), 0);
    for (int i = 0; i < 3; i++) {
        rc = gsvae("sample --ckpt %s --out %s", ckpt, outs[i]);
        ck_assert_msg(rc == 0, "sample --out %s: exit %d: %s", outs[i], rc, errout);
    }
    rc = gsvae("recon --ckpt %s --data %s --out %s", ckpt, testutil_data_dir(),
               testutil_path(dir, "recon.png"));
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
}
END_TEST

/* ---- item 11: messages keep their reason --------------------------------- */

START_TEST(errf_keeps_the_reason_of_a_long_message)
{
    size_t plen = 3 * ERR_LEN;
    char *path = malloc(plen + 1);
    ck_assert_ptr_nonnull(path);
    for (size_t i = 0; i < plen; i++)
        path[i] = (char)('a' + i % 26);
    /* A two-byte UTF-8 character across every possible cut. */
    for (size_t i = 0; i + 1 < plen; i += 7) {
        path[i] = (char)0xC3;
        path[i + 1] = (char)0xA9;
    }
    path[plen] = '\0';
    char err[ERR_LEN];
    ck_assert_int_eq(errf(err, "%s: cannot open: %s", path, "No such file or directory"), -1);
    size_t n = strlen(err);
    ck_assert_uint_lt(n, ERR_LEN);
    ck_assert_uint_gt(n, ERR_LEN / 2);
    ck_assert(strncmp(err, path, 64) == 0);
    ck_assert_msg(testutil_contains(err, "...") &&
                      strcmp(err + n - strlen(": cannot open: No such file or directory"),
                             ": cannot open: No such file or directory") == 0,
                  "%s", err + n - 80);
    /* No cut inside a character: every continuation byte follows a lead. */
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)err[i] & 0xC0) == 0x80)
            ck_assert_msg(i > 0 && (unsigned char)err[i - 1] == 0xC3, "split at %zu", i);

    /* A message that fits is left whole. */
    ck_assert_int_eq(errf(err, "%.*s: reason", 4000, path + 2), -1);
    ck_assert_uint_eq(strlen(err), 4000 + strlen(": reason"));
    free(path);
}
END_TEST

START_TEST(long_paths_keep_the_reason)
{
    const char *base = testutil_tmpdir();
    /* Longer than the 512 bytes messages used to have, within PATH_MAX. */
    char *deep = deep_dir(base, 3000);
    size_t n = strlen(deep) + 64;
    char *junk = malloc(n), *idxf = malloc(n), *args = malloc(3 * n + 256);
    ck_assert(junk && idxf && args);
    snprintf(junk, n, "%s/junk.ckpt", deep);
    snprintf(idxf, n, "%s/junk-idx3-ubyte", deep);
    ck_assert_int_eq(testutil_write_bytes(junk, "not a checkpoint", 16, 0), 0);
    ck_assert_int_eq(testutil_write_bytes(idxf, "\x12\x34\x56\x78....", 8, 0), 0);

    snprintf(args, 3 * n + 256, "eval --ckpt %s", junk);
    int rc = run_guarded(args);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, junk) && testutil_contains(errout, "bad magic"), "%s",
                  errout + strlen(errout) - 100);
    snprintf(args, 3 * n + 256, "inspect %s", idxf);
    rc = run_guarded(args);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, idxf) &&
                      testutil_contains(errout, "bad magic 0x12345678"),
                  "%s", errout + strlen(errout) - 100);

    /* Over PATH_MAX, longer than any message buffer: the middle goes. */
    size_t huge = 3 * ERR_LEN;
    char *far = malloc(huge + 1);
    ck_assert_ptr_nonnull(far);
    memset(far, 'x', huge);
    far[0] = '/';
    for (size_t i = 100; i < huge; i += 100)
        far[i] = '/';
    far[huge] = '\0';
    char *cmd = malloc(huge + 64);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, huge + 64, "eval --ckpt %s", far);
    rc = run_guarded(cmd);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "File name too long"), "%s",
                  errout + strlen(errout) - 100);
    snprintf(cmd, huge + 64, "inspect %s", far);
    rc = run_guarded(cmd);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "File name too long"), "%s",
                  errout + strlen(errout) - 100);
    char err[IDX_ERR_LEN];
    idx_file f;
    ck_assert_int_eq(idx_read(far, &f, err), -1);
    ck_assert_msg(testutil_contains(err, "cannot open: File name too long") &&
                      strncmp(err, far, 64) == 0 && strlen(err) < IDX_ERR_LEN,
                  "%s", err + strlen(err) - 100);
    free(cmd);
    free(far);
    free(args);
    free(idxf);
    free(junk);
    free(deep);
}
END_TEST

START_TEST(write_errors_name_the_final_file)
{
    const char *dir = testutil_tmpdir();
    const char *ckpt = tiny_run(dir);
    int rc = gsvae("sample --ckpt %s --out %s/missing/x.png", ckpt, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "missing/x.png: cannot write: No such file"), "%s",
                  errout);
    ck_assert_msg(!testutil_contains(errout, ".tmp."), "names the temporary file: %s", errout);

    /* Directly: the message of af_open, and a commit into the current
     * directory (no slash in the name) syncs "." without complaint. */
    char err[ERR_LEN];
    atomic_file af;
    const char *missing = testutil_path(dir, "missing/y.txt");
    ck_assert_int_eq(af_open(&af, missing, "w", err), -1);
    ck_assert_msg(testutil_contains(err, missing) && !testutil_contains(err, ".tmp."), "%s", err);
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_msg(af_open(&af, "here.txt", "w", err) == 0, "%s", err);
    fputs("x\n", af.f);
    ck_assert_msg(af_commit(&af, err) == 0, "%s", err);
    size_t len;
    uint8_t *b = testutil_read_file(testutil_path(dir, "here.txt"), &len);
    ck_assert(b && len == 2);
    free(b);
}
END_TEST

/* ---- item 12: NaN weights, bytes after the data -------------------------- */

START_TEST(nan_checkpoint_is_refused)
{
    const char *dir = testutil_tmpdir();
    const char *ckpt = tiny_run(dir);
    int rc = gsvae("eval --ckpt %s --data %s --images 50 --iw-samples 0", ckpt,
                   testutil_data_dir());
    ck_assert_msg(rc == 0, "the untouched checkpoint: exit %d: %s", rc, errout);

    const char *nan_ckpt = testutil_path(dir, "nan.ckpt");
    write_with_param(ckpt, nan_ckpt, 7, NAN);
    rc = gsvae("eval --ckpt %s --data %s --images 50 --iw-samples 0", nan_ckpt,
               testutil_data_dir());
    ck_assert_msg(rc == 1, "exit %d: %s%s", rc, out, errout);
    ck_assert_msg(testutil_contains(errout, nan_ckpt) &&
                      testutil_contains(errout, "parameter 7 is NaN"),
                  "%s", errout);
    ck_assert_msg(!testutil_contains(out, "nan"), "%s", out);
    const char *png = testutil_path(dir, "nan.png");
    rc = gsvae("sample --ckpt %s --out %s", nan_ckpt, png);
    ck_assert_int_eq(rc, 1);
    ck_assert(testutil_contains(errout, "parameter 7 is NaN"));
    rc = gsvae("recon --ckpt %s --data %s --out %s", nan_ckpt, testutil_data_dir(), png);
    ck_assert_int_eq(rc, 1);
    ck_assert(access(png, F_OK) != 0);

    const char *inf_ckpt = testutil_path(dir, "inf.ckpt");
    write_with_param(ckpt, inf_ckpt, 0, -INFINITY);
    rc = gsvae("eval --ckpt %s --data %s --images 50 --iw-samples 0", inf_ckpt,
               testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "parameter 0 is infinite"), "%s", errout);
}
END_TEST

static const uint8_t tiny_pixels[2 * 4 * 4] = {
    0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
    128, 136, 144, 152, 160, 168, 176, 184, 192, 200, 208, 216, 224, 232, 240, 255};

/* Append the bytes of src to dst. */
static void append_file(const char *dst, const char *src)
{
    size_t len;
    uint8_t *b = testutil_read_file(src, &len);
    ck_assert_ptr_nonnull(b);
    FILE *f = fopen(dst, "ab");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(b);
}

/* Write a gzipped 2x4x4 images file followed by extra bytes. */
static const char *gz_with_tail(const char *dir, const char *name, const void *tail,
                                size_t tail_len)
{
    const char *p = testutil_path(dir, name);
    uint32_t dims[3] = {2, 4, 4};
    ck_assert_int_eq(
        testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, tiny_pixels, sizeof tiny_pixels, 1), 0);
    FILE *f = fopen(p, "ab");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(tail, 1, tail_len, f), tail_len);
    ck_assert_int_eq(fclose(f), 0);
    return p;
}

static void expect_idx_refused(const char *path, const char *reason)
{
    char err[IDX_ERR_LEN];
    idx_file f;
    ck_assert_msg(idx_read(path, &f, err) == -1, "%s: accepted", path);
    ck_assert_ptr_null(f.data);
    ck_assert_msg(testutil_contains(err, path) && testutil_contains(err, reason),
                  "'%s' lacks '%s'", err, reason);
    int rc = gsvae("inspect %s", path);
    ck_assert_msg(rc == 1, "inspect %s: exit %d", path, rc);
    ck_assert_msg(testutil_contains(errout, reason), "%s", errout);
}

START_TEST(junk_after_the_gzip_stream_is_refused)
{
    const char *dir = testutil_tmpdir();
    expect_idx_refused(gz_with_tail(dir, "junk.gz", "junk", 4),
                       "trailing garbage: 4 bytes after the gzip stream");
    expect_idx_refused(gz_with_tail(dir, "zero.gz", "", 1),
                       "trailing garbage: 1 bytes after the gzip stream");
    /* Half a gzip magic, and a whole one with nothing after it. */
    expect_idx_refused(gz_with_tail(dir, "half.gz", "\x1f", 1), "trailing garbage");
    expect_idx_refused(gz_with_tail(dir, "magic.gz", "\x1f\x8b", 2), "truncated gzip stream");
    /* Much more junk than one input buffer. */
    size_t big = 1u << 20;
    uint8_t *junk = malloc(big);
    ck_assert_ptr_nonnull(junk);
    for (size_t i = 0; i < big; i++)
        junk[i] = (uint8_t)(i * 7 + 3);
    expect_idx_refused(gz_with_tail(dir, "big.gz", junk, big),
                       "trailing garbage: 1048576 bytes after the gzip stream");
    free(junk);

    /* Another gzip member is still part of the stream, empty or not. */
    static const uint8_t header[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4};
    const char *two = testutil_path(dir, "two.gz");
    const char *pixels = testutil_path(dir, "pixels.gz");
    const char *nothing = testutil_path(dir, "nothing.gz");
    ck_assert_int_eq(testutil_write_bytes(two, header, sizeof header, 1), 0);
    ck_assert_int_eq(testutil_write_bytes(pixels, tiny_pixels, sizeof tiny_pixels, 1), 0);
    ck_assert_int_eq(testutil_write_bytes(nothing, "", 0, 1), 0);
    append_file(two, pixels);
    append_file(two, nothing);
    char err[IDX_ERR_LEN];
    idx_file im;
    ck_assert_msg(idx_read(two, &im, err) == 0, "%s", err);
    ck_assert_uint_eq(im.count, 2);
    ck_assert_mem_eq(im.data, tiny_pixels, sizeof tiny_pixels);
    idx_free(&im);

    /* Every real MNIST file still loads, raw and gzipped. */
    int rc = gsvae("inspect %s/train-images-idx3-ubyte %s/train-images-idx3-ubyte.gz "
                   "%s/train-labels-idx1-ubyte %s/train-labels-idx1-ubyte.gz "
                   "%s/t10k-images-idx3-ubyte %s/t10k-images-idx3-ubyte.gz "
                   "%s/t10k-labels-idx1-ubyte %s/t10k-labels-idx1-ubyte.gz",
                   testutil_data_dir(), testutil_data_dir(), testutil_data_dir(),
                   testutil_data_dir(), testutil_data_dir(), testutil_data_dir(),
                   testutil_data_dir(), testutil_data_dir());
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
}
END_TEST

START_TEST(junk_after_a_raw_idx_file_is_refused)
{
    const char *dir = testutil_tmpdir();
    const char *p = testutil_path(dir, "raw");
    uint8_t body[sizeof tiny_pixels + 4];
    memcpy(body, tiny_pixels, sizeof tiny_pixels);
    memcpy(body + sizeof tiny_pixels, "junk", 4);
    uint32_t dims[3] = {2, 4, 4};
    ck_assert_int_eq(testutil_write_idx(p, IDX_MAGIC_IMAGES, dims, 3, body, sizeof body, 0), 0);
    expect_idx_refused(p, "trailing garbage: 4 bytes after the 32 bytes of data");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reliability");
    TCase *tc = tcase_create("reliability");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, hidden_width_over_the_limit_is_named);
    tcase_add_test(tc, fifo_checkpoint_is_refused_without_blocking);
    tcase_add_test(tc, fifo_idx_file_is_refused_without_blocking);
    tcase_add_test(tc, out_onto_the_checkpoint_is_refused);
    tcase_add_test(tc, out_over_a_file_that_is_not_a_png_is_refused);
    tcase_add_test(tc, errf_keeps_the_reason_of_a_long_message);
    tcase_add_test(tc, long_paths_keep_the_reason);
    tcase_add_test(tc, write_errors_name_the_final_file);
    tcase_add_test(tc, nan_checkpoint_is_refused);
    tcase_add_test(tc, junk_after_the_gzip_stream_is_refused);
    tcase_add_test(tc, junk_after_a_raw_idx_file_is_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
