/* test_pngio.c: PNG grids and the grayscale reader.  Grids are checked
 * pixel by pixel against an independent model of the documented layout;
 * the reader is fed every PNG kind it must refuse and damaged files. */
#include "pngio.h"
#include "util.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers (kept here so this suite depends on nothing else) ---- */

/* Short enough that "PATH: message" always fits an ERR_LEN buffer. */
enum { DIR_LEN = 128, PATH_LEN = 256 };

static void tmp_dir(char out[DIR_LEN])
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(out, DIR_LEN, "%s/gsvae-png-XXXXXX", base && base[0] ? base : "/tmp");
    ck_assert_msg(n > 0 && n < DIR_LEN, "TMPDIR too long");
    ck_assert_ptr_nonnull(mkdtemp(out));
}

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

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void assert_contains(const char *s, const char *part)
{
    ck_assert_msg(strstr(s, part) != NULL, "message \"%s\" lacks \"%s\"", s, part);
}

/* Any PNG kind, written with plain libpng, to feed the reader what our own
 * writer never makes.  rows holds h rows of rowbytes bytes each. */
static void write_any_png(const char *path, int w, int h, int depth, int color,
                          int interlace, const uint8_t *rows, size_t rowbytes)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(png);
    png_infop info = png_create_info_struct(png);
    ck_assert_ptr_nonnull(info);
    if (setjmp(png_jmpbuf(png)))
        ck_abort_msg("libpng failed writing the test image %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++)
            png_write_row(png, rows + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    ck_assert_int_eq(fclose(f), 0);
}

/* Reading must fail, with *pix left NULL and a message naming path. */
static void expect_read_fails(const char *path, char *err)
{
    uint8_t *pix = (uint8_t *)&pix; /* non-NULL, so the NULL on failure is checked */
    int w = -1, h = -1;
    err[0] = '\0';
    ck_assert_int_eq(png_read_gray(path, &pix, &w, &h, err), -1);
    ck_assert_ptr_null(pix);
    assert_contains(err, path);
}

/* The documented rounding, computed a second way. */
static uint8_t expected_gray(float v)
{
    if (isnan(v) || v <= 0.0f)
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)lround((double)v * 255.0);
}

/* Check a grid read back against the layout in pngio.h, pixel by pixel. */
static void check_grid(const uint8_t *pix, int width, int height, const float *images,
                       int count, int img_rows, int img_cols, int grid_cols, int pad,
                       int scale)
{
    int grid_rows = (count + grid_cols - 1) / grid_cols;
    int cell_w = img_cols * scale + pad, cell_h = img_rows * scale + pad;
    ck_assert_int_eq(width, grid_cols * cell_w + pad);
    ck_assert_int_eq(height, grid_rows * cell_h + pad);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            uint8_t want = PNGIO_BORDER_GRAY;
            int gx = x - pad, gy = y - pad;
            if (gx >= 0 && gy >= 0 && gx % cell_w < img_cols * scale &&
                gy % cell_h < img_rows * scale && gx / cell_w < grid_cols) {
                int tile = (gy / cell_h) * grid_cols + gx / cell_w;
                if (tile < count) {
                    int r = (gy % cell_h) / scale, c = (gx % cell_w) / scale;
                    want = expected_gray(images[(size_t)tile * img_rows * img_cols +
                                                (size_t)r * img_cols + c]);
                }
            }
            ck_assert_msg(pix[(size_t)y * width + x] == want, "pixel (%d,%d) is %d, want %d",
                          x, y, pix[(size_t)y * width + x], want);
        }
}

/* Distinct values in every image and position, so a misplaced tile shows. */
static float *make_images(int count, int img_rows, int img_cols)
{
    size_t n = (size_t)count * img_rows * img_cols;
    float *im = malloc(n * sizeof *im);
    ck_assert_ptr_nonnull(im);
    for (size_t i = 0; i < n; i++)
        im[i] = (float)(i + 1) / (float)(n + 1);
    return im;
}

static void grid_case(int count, int img_rows, int img_cols, int grid_cols, int pad,
                      int scale)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/grid.png", dir);
    float *im = make_images(count, img_rows, img_cols);
    int rc = scale == 1
                 ? png_write_grid(path, im, count, img_rows, img_cols, grid_cols, pad, err)
                 : png_write_grid_scaled(path, im, count, img_rows, img_cols, grid_cols, pad,
                                         scale, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(dir_entries(dir), 1); /* no temporary left */
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    ck_assert_msg(png_read_gray(path, &pix, &w, &h, err) == 0, "%s", err);
    check_grid(pix, w, h, im, count, img_rows, img_cols, grid_cols, pad, scale);
    free(pix);
    free(im);
    rm_dir(dir);
}

/* ---- tests ---- */

START_TEST(grid_layout)
{
    /* Last row part-filled: 5 images in 3 columns. */
    grid_case(5, 3, 4, 3, 2, 1);
    ck_assert_int_eq(3 * (4 + 2) + 2, 20); /* the formula in pngio.h, spelled out */
}
END_TEST

START_TEST(grid_shapes)
{
    grid_case(6, 2, 5, 3, 0, 1); /* no padding, full rows */
    grid_case(1, 28, 28, 1, 1, 1); /* one MNIST-sized image */
    grid_case(2, 3, 3, 8, 1, 1); /* more columns than images */
    grid_case(100, 28, 28, 10, 2, 1); /* the 10x10 sample grids we publish */
}
END_TEST

START_TEST(grid_scaled)
{
    grid_case(3, 2, 3, 2, 1, 3);
    grid_case(4, 28, 28, 2, 2, 4);
}
END_TEST

START_TEST(clamping)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/clamp.png", dir);
    const float v[] = {-1.0f,    -0.01f,   0.0f,      0.5f,      1.0f,     1.5f,
                       NAN,      INFINITY, -INFINITY, 1e-9f,     0.999f,   100.0f};
    const uint8_t want[] = {0, 0, 0, 128, 255, 255, 0, 255, 0, 0, 255, 255};
    int n = (int)(sizeof v / sizeof v[0]);
    /* One image of one row: the PNG is exactly the clamped values. */
    ck_assert_msg(png_write_grid(path, v, 1, 1, n, 1, 0, err) == 0, "%s", err);
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    ck_assert_msg(png_read_gray(path, &pix, &w, &h, err) == 0, "%s", err);
    ck_assert_int_eq(w, n);
    ck_assert_int_eq(h, 1);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(pix[i] == want[i], "value %g gave %d, want %d", (double)v[i], pix[i],
                      want[i]);
        ck_assert_uint_eq(png_gray_from_float(v[i]), want[i]);
    }
    free(pix);
    /* Every representable step lands on the nearest grey level. */
    for (int k = 0; k <= 255; k++)
        ck_assert_uint_eq(png_gray_from_float((float)k / 255.0f), k);
    rm_dir(dir);
}
END_TEST

START_TEST(gray_round_trip)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/gray.png", dir);
    static const int sizes[][2] = {{1, 1}, {37, 23}, {256, 3}, {3, 300}};
    uint32_t state = 12345;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        uint8_t *src = malloc((size_t)w * h);
        for (int i = 0; i < w * h; i++) {
            state = state * 1664525u + 1013904223u;
            src[i] = (uint8_t)(state >> 24);
        }
        ck_assert_msg(png_write_gray(path, src, w, h, err) == 0, "%s", err);
        uint8_t *back = NULL;
        int bw = 0, bh = 0;
        ck_assert_msg(png_read_gray(path, &back, &bw, &bh, err) == 0, "%s", err);
        ck_assert_int_eq(bw, w);
        ck_assert_int_eq(bh, h);
        ck_assert_int_eq(memcmp(back, src, (size_t)w * h), 0);
        free(back);
        free(src);
    }
    ck_assert_int_eq(dir_entries(dir), 1);
    rm_dir(dir);
}
END_TEST

START_TEST(write_to_missing_dir)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/no/such/dir/grid.png", dir);
    float im[4] = {0, 0.25f, 0.5f, 1};
    ck_assert_int_eq(png_write_grid(path, im, 1, 2, 2, 1, 1, err), -1);
    assert_contains(err, "cannot write");
    assert_contains(err, "no/such/dir/grid.png");
    ck_assert_int_eq(dir_entries(dir), 0);
    rm_dir(dir);
}
END_TEST

START_TEST(rename_failure_leaves_nothing)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    /* The rename onto a directory fails after the PNG is fully written;
     * the temporary must still go. */
    snprintf(path, sizeof path, "%s/taken", dir);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    uint8_t px[4] = {1, 2, 3, 4};
    ck_assert_int_eq(png_write_gray(path, px, 2, 2, err), -1);
    assert_contains(err, path);
    ck_assert_int_eq(dir_entries(dir), 1);
    rmdir(path);
    rm_dir(dir);
}
END_TEST

START_TEST(bad_arguments)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/bad.png", dir);
    float im[4] = {0};
    uint8_t px[4] = {0};
    ck_assert_int_eq(png_write_grid(path, im, 0, 2, 2, 1, 1, err), -1);
    assert_contains(err, "bad grid");
    ck_assert_int_eq(png_write_grid(path, im, 1, 0, 2, 1, 1, err), -1);
    ck_assert_int_eq(png_write_grid(path, im, 1, 2, 2, 0, 1, err), -1);
    ck_assert_int_eq(png_write_grid(path, im, 1, 2, 2, 1, -1, err), -1);
    ck_assert_int_eq(png_write_grid_scaled(path, im, 1, 2, 2, 1, 1, 0, err), -1);
    ck_assert_int_eq(png_write_grid(path, NULL, 1, 2, 2, 1, 1, err), -1);
    /* Too large, and large enough to overflow int arithmetic. */
    ck_assert_int_eq(png_write_grid(path, im, 1, 2, 2, 100000, 1, err), -1);
    assert_contains(err, "outside");
    ck_assert_int_eq(png_write_grid_scaled(path, im, 1, 2, 2, 1, 1, 1 << 30, err), -1);
    ck_assert_int_eq(png_write_grid(path, im, 1 << 30, 1 << 20, 1 << 20, 1, 1, err), -1);
    ck_assert_int_eq(png_write_gray(path, px, 0, 2, err), -1);
    ck_assert_int_eq(png_write_gray(path, px, 2, PNGIO_MAX_DIM + 1, err), -1);
    ck_assert_int_eq(png_write_gray(path, NULL, 2, 2, err), -1);
    ck_assert_int_eq(dir_entries(dir), 0);
    rm_dir(dir);
}
END_TEST

START_TEST(read_refuses_other_kinds)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/x.png", dir);
    uint8_t rows[4 * 4 * 8] = {0};

    write_any_png(path, 4, 4, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rows, 4 * 3);
    expect_read_fails(path, err);
    assert_contains(err, "only 8-bit grayscale");
    write_any_png(path, 4, 4, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, rows, 4 * 2);
    expect_read_fails(path, err);
    assert_contains(err, "bit depth 16");
    write_any_png(path, 4, 4, 8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, rows, 4 * 2);
    expect_read_fails(path, err);
    write_any_png(path, 8, 4, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, rows, 1);
    expect_read_fails(path, err);
    assert_contains(err, "bit depth 1");

    /* Absurd size: a valid 20000x1 image exceeds PNGIO_MAX_DIM. */
    uint8_t *wide = calloc(20000, 1);
    write_any_png(path, 20000, 1, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, wide, 20000);
    free(wide);
    expect_read_fails(path, err);

    spit(path, "hello, not a png", 16);
    expect_read_fails(path, err);
    assert_contains(err, "not a PNG");
    spit(path, "", 0);
    expect_read_fails(path, err);
    snprintf(path, sizeof path, "%s/absent.png", dir);
    expect_read_fails(path, err);
    assert_contains(err, "cannot open");
    rm_dir(dir);
}
END_TEST

START_TEST(read_interlaced)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/adam7.png", dir);
    enum { W = 13, H = 11 };
    uint8_t src[W * H];
    for (int i = 0; i < W * H; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    write_any_png(path, W, H, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7, src, W);
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    ck_assert_msg(png_read_gray(path, &pix, &w, &h, err) == 0, "%s", err);
    ck_assert_int_eq(w, W);
    ck_assert_int_eq(h, H);
    ck_assert_int_eq(memcmp(pix, src, sizeof src), 0);
    free(pix);
    rm_dir(dir);
}
END_TEST

START_TEST(read_damaged)
{
    char dir[DIR_LEN], path[PATH_LEN], err[ERR_LEN] = "";
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/noise.png", dir);
    /* Noise compresses badly, so the image data spans most of the file. */
    enum { W = 64, H = 64 };
    uint8_t src[W * H];
    uint32_t state = 99;
    for (int i = 0; i < W * H; i++) {
        state = state * 1664525u + 1013904223u;
        src[i] = (uint8_t)(state >> 24);
    }
    ck_assert_msg(png_write_gray(path, src, W, H, err) == 0, "%s", err);
    size_t n;
    uint8_t *b = slurp(path, &n);
    ck_assert_uint_gt(n, 1000);

    /* Cut inside the signature, the header, the image data and the end. */
    const size_t cuts[] = {4, 8, 20, 33, 60, n / 2, n - 13, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(path, b, cuts[i]);
        expect_read_fails(path, err);
        assert_contains(err, cuts[i] < 8 ? "not a PNG" : "truncated");
    }
    /* A flipped byte inside the image data fails its chunk CRC. */
    b[n / 2] ^= 0x40;
    spit(path, b, n);
    expect_read_fails(path, err);
    assert_contains(err, "cannot read PNG");
    free(b);
    rm_dir(dir);
}
END_TEST

static Suite *pngio_suite(void)
{
    Suite *s = suite_create("pngio");
    TCase *tc = tcase_create("pngio");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, grid_layout);
    tcase_add_test(tc, grid_shapes);
    tcase_add_test(tc, grid_scaled);
    tcase_add_test(tc, clamping);
    tcase_add_test(tc, gray_round_trip);
    tcase_add_test(tc, write_to_missing_dir);
    tcase_add_test(tc, rename_failure_leaves_nothing);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, read_refuses_other_kinds);
    tcase_add_test(tc, read_interlaced);
    tcase_add_test(tc, read_damaged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pngio_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
