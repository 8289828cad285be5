/* test_ckpt.c: the checkpoint container.  A round trip must be bit-exact,
 * the bytes on disk must follow the documented little-endian layout, and
 * every kind of damage must be refused with a message that says which. */
#include "ckpt.h"
#include "util.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers (kept here so this suite depends on nothing else) ---- */

/* Short enough that "PATH: message" always fits an ERR_LEN buffer. */
enum { DIR_LEN = 128, PATH_LEN = 256 };

static void tmp_dir(char out[DIR_LEN])
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(out, DIR_LEN, "%s/gsvae-ckpt-XXXXXX", base && base[0] ? base : "/tmp");
    ck_assert_msg(n > 0 && n < DIR_LEN, "TMPDIR too long");
    ck_assert_ptr_nonnull(mkdtemp(out));
}

/* Entries in dir other than . and .., so a test can see that a failed or
 * successful write left no temporary file behind. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_LEN + 256];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        remove(p);
    }
    closedir(d);
    rmdir(dir);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    uint8_t *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Recompute the trailer after an edit, so the check under test fires
 * rather than the checksum. */
static void reseal(uint8_t *b, size_t n)
{
    put_le32(b + n - 4, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(n - 4)));
}

static void assert_contains(const char *s, const char *part)
{
    ck_assert_msg(strstr(s, part) != NULL, "message \"%s\" lacks \"%s\"", s, part);
}

/* ---- a fixed set of sections ---- */

enum { N_FLOATS = 1000 };
static float g_floats[N_FLOATS];
static uint8_t g_bytes[256];
static int32_t g_hyper[4] = {784, 200, -3, 0x7fffffff};
static ckpt_section g_sections[4];

static void fill_sections(void)
{
    /* Awkward floats included: signed zero, subnormal, extremes, infinity.
     * NaN is left out since its payload is not ours to promise. */
    for (int i = 0; i < N_FLOATS; i++)
        g_floats[i] = (float)sin(i * 0.37) * powf(10.0f, (float)(i % 60 - 30));
    g_floats[0] = -0.0f;
    g_floats[1] = 1e-45f;
    g_floats[2] = 3.4028235e38f;
    g_floats[3] = -INFINITY;
    for (int i = 0; i < 256; i++)
        g_bytes[i] = (uint8_t)i;
    g_sections[0] = (ckpt_section){"hyper", g_hyper, sizeof g_hyper};
    g_sections[1] = (ckpt_section){"weights", g_floats, sizeof g_floats};
    g_sections[2] = (ckpt_section){"empty", NULL, 0};
    g_sections[3] = (ckpt_section){"bytes_all_256_values_0123456789", g_bytes, sizeof g_bytes};
}

static void write_fixture(const char *dir, char path[PATH_LEN])
{
    char err[ERR_LEN] = "";
    fill_sections();
    snprintf(path, PATH_LEN, "%s/model.ckpt", dir);
    ck_assert_msg(ckpt_write(path, g_sections, 4, err) == 0, "%s", err);
}

/* Read must fail; return its message in err. */
static void expect_read_fails(const char *path, char *err)
{
    ckpt_file *f = (ckpt_file *)&f; /* non-NULL, so the NULL on failure is checked */
    err[0] = '\0';
    ck_assert_int_eq(ckpt_read(path, &f, err), -1);
    ck_assert_ptr_null(f);
    ck_assert_msg(err[0] != '\0', "no message");
    assert_contains(err, path);
}

/* ---- tests ---- */

START_TEST(round_trip_bit_exact)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    write_fixture(dir, path);
    ck_assert_int_eq(dir_entries(dir), 1); /* no temporary left */

    ckpt_file *f = NULL;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_count(f), 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(ckpt_name(f, i), g_sections[i].name);
        const void *data = NULL;
        uint64_t len = 99;
        ck_assert_msg(ckpt_get(f, g_sections[i].name, &data, &len, err) == 0, "%s", err);
        ck_assert_uint_eq(len, g_sections[i].len);
        if (len)
            ck_assert_int_eq(memcmp(data, g_sections[i].data, len), 0);
    }
    ck_assert_ptr_null(ckpt_name(f, 4));
    ck_assert_ptr_null(ckpt_name(f, -1));

    float back[N_FLOATS];
    ck_assert_msg(ckpt_get_exact(f, "weights", back, sizeof back, err) == 0, "%s", err);
    ck_assert_int_eq(memcmp(back, g_floats, sizeof back), 0);
    ck_assert(signbit(back[0]) && back[0] == 0.0f);
    int32_t hyper[4];
    ck_assert_msg(ckpt_get_exact(f, "hyper", hyper, sizeof hyper, err) == 0, "%s", err);
    ck_assert_int_eq(hyper[3], 0x7fffffff);
    ck_assert_int_eq(hyper[2], -3);
    /* An empty section is found and copies nothing. */
    ck_assert_msg(ckpt_get_exact(f, "empty", NULL, 0, err) == 0, "%s", err);
    ckpt_free(f);
    rm_dir(dir);
}
END_TEST

START_TEST(layout_on_disk)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    uint8_t payload[3] = {0xaa, 0xbb, 0xcc};
    ckpt_section s[2] = {{"ab", payload, 3}, {"z", NULL, 0}};
    snprintf(path, sizeof path, "%s/x.ckpt", dir);
    ck_assert_msg(ckpt_write(path, s, 2, err) == 0, "%s", err);
    size_t n;
    uint8_t *b = slurp(path, &n);
    ck_assert_uint_eq(n, 16 + 40 + 3 + 40 + 4);
    ck_assert_int_eq(memcmp(b, "GSVAECKP", 8), 0);
    static const uint8_t ver_count[8] = {1, 0, 0, 0, 2, 0, 0, 0};
    ck_assert_int_eq(memcmp(b + 8, ver_count, 8), 0);
    ck_assert_int_eq(memcmp(b + 16, "ab", 3), 0); /* name and its NUL */
    for (int i = 19; i < 48; i++)
        ck_assert_uint_eq(b[i], 0); /* NUL padding */
    static const uint8_t len3[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(memcmp(b + 48, len3, 8), 0);
    ck_assert_int_eq(memcmp(b + 56, payload, 3), 0);
    ck_assert_int_eq(memcmp(b + 59, "z", 2), 0);
    for (int i = 91; i < 99; i++)
        ck_assert_uint_eq(b[i], 0); /* length 0 */
    ck_assert_uint_eq(le32(b + n - 4), (uint32_t)crc32(0L, b, (uInt)(n - 4)));
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(zero_and_max_sections)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/none.ckpt", dir);
    ck_assert_msg(ckpt_write(path, NULL, 0, err) == 0, "%s", err);
    ckpt_file *f = NULL;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_count(f), 0);
    ckpt_free(f);

    static char names[CKPT_MAX_SECTIONS][CKPT_NAME_LEN];
    static uint32_t values[CKPT_MAX_SECTIONS];
    ckpt_section s[CKPT_MAX_SECTIONS];
    for (int i = 0; i < CKPT_MAX_SECTIONS; i++) {
        snprintf(names[i], CKPT_NAME_LEN, "layer%03d", i);
        values[i] = (uint32_t)i * 2654435761u;
        s[i] = (ckpt_section){names[i], &values[i], sizeof values[i]};
    }
    snprintf(path, sizeof path, "%s/many.ckpt", dir);
    ck_assert_msg(ckpt_write(path, s, CKPT_MAX_SECTIONS, err) == 0, "%s", err);
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_count(f), CKPT_MAX_SECTIONS);
    for (int i = 0; i < CKPT_MAX_SECTIONS; i++) {
        uint32_t v;
        ck_assert_msg(ckpt_get_exact(f, names[i], &v, sizeof v, err) == 0, "%s", err);
        ck_assert_uint_eq(v, values[i]);
    }
    ckpt_free(f);
    ck_assert_int_eq(dir_entries(dir), 2);
    rm_dir(dir);
}
END_TEST

START_TEST(overwrite_replaces)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    write_fixture(dir, path);
    uint8_t one = 7;
    ckpt_section s = {"only", &one, 1};
    ck_assert_msg(ckpt_write(path, &s, 1, err) == 0, "%s", err);
    ckpt_file *f = NULL;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_count(f), 1);
    uint8_t v = 0;
    ck_assert_msg(ckpt_get_exact(f, "only", &v, 1, err) == 0, "%s", err);
    ck_assert_uint_eq(v, 7);
    ckpt_free(f);
    ck_assert_int_eq(dir_entries(dir), 1);
    rm_dir(dir);
}
END_TEST

START_TEST(flipped_byte_is_checksum_error)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    b[n / 2] ^= 0x10; /* inside the weights */
    spit(path, b, n);
    expect_read_fails(path, err);
    char want[ERR_LEN];
    snprintf(want, sizeof want, "%s: checksum mismatch (file corrupt)", path);
    ck_assert_str_eq(err, want);
    /* A damaged trailer reads the same way. */
    b[n / 2] ^= 0x10;
    b[n - 1] ^= 0x01;
    spit(path, b, n);
    expect_read_fails(path, err);
    ck_assert_str_eq(err, want);
    free(b);
    rm_dir(dir);
}
END_TEST

/* CRC-32 catches every single-bit error, and the checks before it refuse
 * the rest, so no flip anywhere may produce a readable checkpoint. */
START_TEST(every_bit_flip_refused)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    uint8_t payload[40];
    for (int i = 0; i < 40; i++)
        payload[i] = (uint8_t)(i * 37);
    ckpt_section s[2] = {{"a", payload, 24}, {"bb", payload + 24, 16}};
    snprintf(path, sizeof path, "%s/x.ckpt", dir);
    ck_assert_msg(ckpt_write(path, s, 2, err) == 0, "%s", err);
    size_t n;
    uint8_t *b = slurp(path, &n);
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            spit(path, b, n);
            expect_read_fails(path, err);
            b[i] ^= (uint8_t)(1u << bit);
        }
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(truncated_at_every_length)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    char want[ERR_LEN];
    snprintf(want, sizeof want, "%s: truncated", path);
    for (size_t len = 0; len < n; len++) {
        spit(path, b, len);
        expect_read_fails(path, err);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "length %zu: %s", len, err);
    }
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(trailing_garbage)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    uint8_t *longer = calloc(n + 5, 1);
    memcpy(longer, b, n);
    spit(path, longer, n + 5);
    expect_read_fails(path, err);
    assert_contains(err, "unexpected bytes");
    free(longer);
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(wrong_magic)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    b[0] = 'X';
    reseal(b, n);
    spit(path, b, n);
    expect_read_fails(path, err);
    assert_contains(err, "not a gsvae checkpoint (bad magic)");
    /* A short foreign file is foreign, not truncated. */
    spit(path, (const uint8_t *)"\x89PNG", 4);
    expect_read_fails(path, err);
    assert_contains(err, "bad magic");
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(future_version)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    put_le32(b + 8, CKPT_VERSION + 1);
    reseal(b, n);
    spit(path, b, n);
    expect_read_fails(path, err);
    char want[ERR_LEN];
    snprintf(want, sizeof want, "%s: format version %u, this build reads version %u", path,
             CKPT_VERSION + 1, CKPT_VERSION);
    assert_contains(err, want);
    assert_contains(err, "newer");
    /* Version 0 never existed; it is refused too, without "newer". */
    put_le32(b + 8, 0);
    reseal(b, n);
    spit(path, b, n);
    expect_read_fails(path, err);
    assert_contains(err, "format version 0");
    ck_assert_ptr_null(strstr(err, "newer"));
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(absurd_section_count)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    static const uint32_t counts[] = {CKPT_MAX_SECTIONS + 1, 100000, 0xffffffffu};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        put_le32(b + 12, counts[i]);
        reseal(b, n);
        spit(path, b, n);
        expect_read_fails(path, err);
        assert_contains(err, "section count");
    }
    /* A count within the limit but larger than the file holds is truncation. */
    put_le32(b + 12, 5);
    reseal(b, n);
    spit(path, b, n);
    expect_read_fails(path, err);
    assert_contains(err, "truncated");
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(huge_section_length)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    /* Length of the first section ("hyper") to 2^64-1: must not wrap. */
    memset(b + 16 + 32, 0xff, 8);
    reseal(b, n);
    spit(path, b, n);
    expect_read_fails(path, err);
    assert_contains(err, "truncated (section 'hyper'");
    free(b);
    rm_dir(dir);
}
END_TEST

START_TEST(oversized_file_refused)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/big.ckpt", dir);
    spit(path, (const uint8_t *)"GSVAECKP", 8);
    /* Sparse, so this costs no disk; the limit must fire before any
     * allocation of the claimed size. */
    ck_assert_int_eq(truncate(path, (off_t)CKPT_MAX_BYTES + 1), 0);
    expect_read_fails(path, err);
    assert_contains(err, "limit");
    rm_dir(dir);
}
END_TEST

START_TEST(missing_file)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/absent.ckpt", dir);
    expect_read_fails(path, err);
    assert_contains(err, "cannot open");
    /* A directory is not a checkpoint. */
    expect_read_fails(dir, err);
    rm_dir(dir);
}
END_TEST

START_TEST(missing_section_and_wrong_length)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    write_fixture(dir, path);
    ckpt_file *f = NULL;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    char want[ERR_LEN];

    const void *data = NULL;
    uint64_t len = 0;
    ck_assert_int_eq(ckpt_get(f, "nope", &data, &len, err), -1);
    snprintf(want, sizeof want, "%s: no section 'nope'", path);
    ck_assert_str_eq(err, want);
    float dst[N_FLOATS + 1];
    ck_assert_int_eq(ckpt_get_exact(f, "nope", dst, 4, err), -1);
    ck_assert_str_eq(err, want);
    /* A prefix of a real name is not that name. */
    ck_assert_int_eq(ckpt_get(f, "weight", &data, &len, err), -1);

    dst[0] = 42.0f;
    ck_assert_int_eq(ckpt_get_exact(f, "weights", dst, sizeof dst, err), -1);
    snprintf(want, sizeof want, "%s: section 'weights' has %zu bytes, expected %zu", path,
             sizeof g_floats, sizeof dst);
    ck_assert_str_eq(err, want);
    ck_assert(dst[0] == 42.0f); /* untouched on failure */
    ck_assert_int_eq(ckpt_get_exact(f, "empty", dst, 1, err), -1);
    assert_contains(err, "has 0 bytes, expected 1");
    ckpt_free(f);
    ckpt_free(NULL);
    rm_dir(dir);
}
END_TEST

START_TEST(write_refuses_bad_sections)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/bad.ckpt", dir);
    uint8_t x = 1;
    char long_name[CKPT_NAME_LEN + 1];
    memset(long_name, 'n', CKPT_NAME_LEN);
    long_name[CKPT_NAME_LEN] = '\0';
    ckpt_section too_long = {long_name, &x, 1};
    ckpt_section empty_name = {"", &x, 1};
    ckpt_section null_name = {NULL, &x, 1};
    ckpt_section no_data = {"w", NULL, 4};
    ckpt_section dup[2] = {{"w", &x, 1}, {"w", &x, 1}};

    ck_assert_int_eq(ckpt_write(path, &too_long, 1, err), -1);
    assert_contains(err, "name");
    ck_assert_int_eq(ckpt_write(path, &empty_name, 1, err), -1);
    ck_assert_int_eq(ckpt_write(path, &null_name, 1, err), -1);
    ck_assert_int_eq(ckpt_write(path, &no_data, 1, err), -1);
    assert_contains(err, "no data");
    ck_assert_int_eq(ckpt_write(path, dup, 2, err), -1);
    assert_contains(err, "twice");
    ck_assert_int_eq(ckpt_write(path, dup, -1, err), -1);
    ck_assert_int_eq(ckpt_write(path, dup, CKPT_MAX_SECTIONS + 1, err), -1);
    ckpt_section huge = {"w", &x, CKPT_MAX_BYTES};
    ck_assert_int_eq(ckpt_write(path, &huge, 1, err), -1);
    assert_contains(err, "limit");
    ck_assert_int_eq(dir_entries(dir), 0); /* nothing created, no temporary */

    /* A 31-character name is the longest that fits with its NUL. */
    long_name[CKPT_NAME_LEN - 1] = '\0';
    ckpt_section longest = {long_name, &x, 1};
    ck_assert_msg(ckpt_write(path, &longest, 1, err) == 0, "%s", err);
    ckpt_file *f = NULL;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ck_assert_str_eq(ckpt_name(f, 0), long_name);
    ckpt_free(f);
    rm_dir(dir);
}
END_TEST

START_TEST(write_failures_leave_nothing)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN];
    tmp_dir(dir);
    fill_sections();
    snprintf(path, sizeof path, "%s/no/such/dir/x.ckpt", dir);
    ck_assert_int_eq(ckpt_write(path, g_sections, 4, err), -1);
    assert_contains(err, "cannot write");
    ck_assert_int_eq(dir_entries(dir), 0);

    /* The rename fails when the target is a directory: the temporary,
     * fully written by then, must be removed. */
    snprintf(path, sizeof path, "%s/taken", dir);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    ck_assert_int_eq(ckpt_write(path, g_sections, 4, err), -1);
    assert_contains(err, path);
    ck_assert_int_eq(dir_entries(dir), 1);
    rmdir(path);
    rm_dir(dir);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("ckpt");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_bit_exact);
    tcase_add_test(tc, layout_on_disk);
    tcase_add_test(tc, zero_and_max_sections);
    tcase_add_test(tc, overwrite_replaces);
    tcase_add_test(tc, flipped_byte_is_checksum_error);
    tcase_add_test(tc, every_bit_flip_refused);
    tcase_add_test(tc, truncated_at_every_length);
    tcase_add_test(tc, trailing_garbage);
    tcase_add_test(tc, wrong_magic);
    tcase_add_test(tc, future_version);
    tcase_add_test(tc, absurd_section_count);
    tcase_add_test(tc, huge_section_length);
    tcase_add_test(tc, oversized_file_refused);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, missing_section_and_wrong_length);
    tcase_add_test(tc, write_refuses_bad_sections);
    tcase_add_test(tc, write_failures_leave_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ckpt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
