#include "pngio.h"

#include "util.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports errors by calling a handler that must not return.  Ours
 * keeps the message for our own one-line error instead of libpng's default
 * of printing to stderr, then unwinds to the setjmp in the caller. */
typedef struct {
    char msg[256];
} pngio_error_ctx;

static void pngio_on_error(png_structp png, png_const_charp msg)
{
    pngio_error_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

/* Warnings (unknown chunks, odd gamma) do not affect the grey levels we read
 * or write, and a library has no business printing to stderr. */
static void pngio_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int pngio_check_size(const char *path, long long width, long long height, char *err)
{
    if (width < 1 || height < 1 || width > PNGIO_MAX_DIM || height > PNGIO_MAX_DIM)
        return errf(err, "%s: image size %lldx%lld outside 1..%d", path, width, height,
                    PNGIO_MAX_DIM);
    return 0;
}

/* Everything between setjmp and the last libpng call lives here, with no
 * allocation of ours, so a longjmp leaks nothing: libpng's own structures
 * are freed by the destroy call on the error path.  png and info are not
 * modified after setjmp, so they need not be volatile. */
static int pngio_encode(FILE *f, const uint8_t *pix, int width, int height,
                        pngio_error_ctx *ctx)
{
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, pngio_on_error, pngio_on_warning);
    if (!png) {
        snprintf(ctx->msg, sizeof ctx->msg, "cannot create libpng write struct");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(ctx->msg, sizeof ctx->msg, "cannot create libpng info struct");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, pix + (size_t)y * (size_t)width);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int png_write_gray(const char *path, const uint8_t *pix, int width, int height, char *err)
{
    if (pngio_check_size(path, width, height, err) != 0)
        return -1;
    if (!pix)
        return errf(err, "%s: no pixels to write", path);
    atomic_file af;
    if (af_open(&af, path, "wb", err) != 0)
        return -1;
    pngio_error_ctx ctx = {{0}};
    if (pngio_encode(af.f, pix, width, height, &ctx) != 0) {
        af_abort(&af);
        return errf(err, "%s: cannot write PNG: %s", path, ctx.msg);
    }
    return af_commit(&af, err);
}

/* The decoding half of png_read_gray.  The pixel buffer is allocated after
 * setjmp, so it is kept in *out (the caller's object, not a local of this
 * frame, hence not clobbered by longjmp) and freed by the caller on error.
 * A header we refuse is reported through ctx->msg with return value -2, so
 * the caller can word it differently from a libpng failure. */
static int pngio_decode(FILE *f, uint8_t **out, int *width, int *height, pngio_error_ctx *ctx)
{
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, pngio_on_error, pngio_on_warning);
    if (!png) {
        snprintf(ctx->msg, sizeof ctx->msg, "cannot create libpng read struct");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(ctx->msg, sizeof ctx->msg, "cannot create libpng info struct");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_init_io(png, f);
    /* libpng then refuses oversized headers before allocating anything. */
    png_set_user_limits(png, PNGIO_MAX_DIM, PNGIO_MAX_DIM);
    png_read_info(png, info);

    png_uint_32 w = png_get_image_width(png, info);
    png_uint_32 h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info);
    int color = png_get_color_type(png, info);
    if (depth != 8 || color != PNG_COLOR_TYPE_GRAY) {
        snprintf(ctx->msg, sizeof ctx->msg,
                 "bit depth %d, colour type %d; only 8-bit grayscale (type %d) is read", depth,
                 color, PNG_COLOR_TYPE_GRAY);
        png_destroy_read_struct(&png, &info, NULL);
        return -2;
    }
    if (w < 1 || h < 1 || w > PNGIO_MAX_DIM || h > PNGIO_MAX_DIM) {
        snprintf(ctx->msg, sizeof ctx->msg, "image size %lux%lu outside 1..%d",
                 (unsigned long)w, (unsigned long)h, PNGIO_MAX_DIM);
        png_destroy_read_struct(&png, &info, NULL);
        return -2;
    }
    /* Interlaced files are read by rereading every row once per pass into
     * the same full-size buffer, as the libpng manual describes. */
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);

    *out = malloc((size_t)w * (size_t)h);
    if (!*out) {
        snprintf(ctx->msg, sizeof ctx->msg, "cannot allocate %lux%lu pixels", (unsigned long)w,
                 (unsigned long)h);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, *out + (size_t)y * w, NULL);
    /* Reading the end verifies the chunks after the image data. */
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    *width = (int)w;
    *height = (int)h;
    return 0;
}

int png_read_gray(const char *path, uint8_t **pix, int *width, int *height, char *err)
{
    *pix = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    png_byte sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        fclose(f);
        return errf(err, "%s: not a PNG file (bad signature)", path);
    }
    rewind(f);
    pngio_error_ctx ctx = {{0}};
    uint8_t *buf = NULL;
    int w = 0, h = 0;
    int rc = pngio_decode(f, &buf, &w, &h, &ctx);
    /* libpng says only "Read Error" when the file ends early. */
    int ended = feof(f);
    fclose(f);
    if (rc != 0) {
        free(buf);
        if (rc == -2)
            return errf(err, "%s: %s", path, ctx.msg);
        return errf(err, "%s: cannot read PNG: %s%s", path, ended ? "truncated file, " : "",
                    ctx.msg);
    }
    *pix = buf;
    *width = w;
    *height = h;
    return 0;
}

uint8_t png_gray_from_float(float v)
{
    /* The negated comparison sends NaN to 0 along with negatives. */
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    /* In double the product is exact (24 + 8 bits), so this is round half
     * up with no float error near the .5 boundaries. */
    return (uint8_t)((double)v * 255.0 + 0.5);
}

int png_write_grid_scaled(const char *path, const float *images, int count, int img_rows,
                          int img_cols, int grid_cols, int pad, int scale, char *err)
{
    if (count < 1 || img_rows < 1 || img_cols < 1 || grid_cols < 1 || pad < 0 || scale < 1)
        return errf(err,
                    "%s: bad grid (count %d, image %dx%d, %d columns, pad %d, scale %d)", path,
                    count, img_rows, img_cols, grid_cols, pad, scale);
    if (!images)
        return errf(err, "%s: no images to write", path);
    /* In 64 bits so that absurd arguments are refused, not wrapped. */
    long long grid_rows = ((long long)count + grid_cols - 1) / grid_cols;
    long long tile_w = (long long)img_cols * scale, tile_h = (long long)img_rows * scale;
    long long width = grid_cols * (tile_w + pad) + pad;
    long long height = grid_rows * (tile_h + pad) + pad;
    if (pngio_check_size(path, width, height, err) != 0)
        return -1;

    uint8_t *canvas = xcalloc((size_t)width * (size_t)height, 1, err, path);
    if (!canvas)
        return -1;
    memset(canvas, PNGIO_BORDER_GRAY, (size_t)width * (size_t)height);
    for (int i = 0; i < count; i++) {
        const float *img = images + (size_t)i * (size_t)img_rows * (size_t)img_cols;
        size_t x0 = (size_t)(pad + (i % grid_cols) * (tile_w + pad));
        size_t y0 = (size_t)(pad + (i / grid_cols) * (tile_h + pad));
        for (long long y = 0; y < tile_h; y++) {
            uint8_t *row = canvas + (y0 + (size_t)y) * (size_t)width + x0;
            const float *src = img + (size_t)(y / scale) * (size_t)img_cols;
            for (long long x = 0; x < tile_w; x++)
                row[x] = png_gray_from_float(src[x / scale]);
        }
    }
    int rc = png_write_gray(path, canvas, (int)width, (int)height, err);
    free(canvas);
    return rc;
}

int png_write_grid(const char *path, const float *images, int count, int img_rows,
                   int img_cols, int grid_cols, int pad, char *err)
{
    return png_write_grid_scaled(path, images, count, img_rows, img_cols, grid_cols, pad, 1,
                                 err);
}
