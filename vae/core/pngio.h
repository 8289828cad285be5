/* pngio.h: 8-bit grayscale PNG output (image grids of samples and
 * reconstructions) and input (for tests and tools), over libpng.
 *
 * Every writer goes through atomic_file: a reader never sees a half-written
 * PNG, and on any error the temporary file is removed.  All functions follow
 * the util.h convention: 0 on success, -1 with a one-line message in err
 * (ERR_LEN bytes) naming the file and the reason.
 *
 * The names share libpng's png_ prefix by project choice; libpng 1.6 has no
 * function of these names. */
#ifndef GSVAE_PNGIO_H
#define GSVAE_PNGIO_H

#include <stdint.h>

/* Largest width or height read or written.  Keeps a hostile or corrupt file
 * from asking for gigabytes, and any grid we make is far below it. */
#define PNGIO_MAX_DIM 16384

/* Grey level of the border lines and of empty grid cells: mid-grey tells
 * them apart from both the black background and the white ink of a digit. */
#define PNGIO_BORDER_GRAY 128

/* Write a width x height image of 8-bit grey levels, row-major (pix[y*width+x],
 * 0 black, 255 white), to path. */
int png_write_gray(const char *path, const uint8_t *pix, int width, int height, char *err);

/* Read an 8-bit grayscale, non-alpha PNG (interlaced or not).  On success
 * *pix is a malloc'd width*height row-major buffer the caller frees; on
 * failure *pix is NULL.  Other bit depths and colour types are refused
 * rather than converted, so a test never compares against a silently
 * transformed image. */
int png_read_gray(const char *path, uint8_t **pix, int *width, int *height, char *err);

/* The grey level a float intensity becomes: round(255 * clamp(v, 0, 1)),
 * with NaN mapped to 0. */
uint8_t png_gray_from_float(float v);

/* Tile count images, each img_rows x img_cols floats in [0,1] (row-major,
 * images back to back; values outside are clamped), left to right then top
 * to bottom into grid_cols columns and ceil(count / grid_cols) rows, with
 * pad pixels of PNGIO_BORDER_GRAY before, between and after the tiles:
 *
 *   width  = grid_cols * (img_cols + pad) + pad
 *   height = grid_rows * (img_rows + pad) + pad
 *
 * Cells past the last image stay border grey. */
int png_write_grid(const char *path, const float *images, int count, int img_rows,
                   int img_cols, int grid_cols, int pad, char *err);

/* As png_write_grid, but each image pixel becomes a scale x scale block
 * (scale >= 1) so small digits are readable; pad stays in output pixels:
 *
 *   width  = grid_cols * (img_cols * scale + pad) + pad
 *   height = grid_rows * (img_rows * scale + pad) + pad */
int png_write_grid_scaled(const char *path, const float *images, int count, int img_rows,
                          int img_cols, int grid_cols, int pad, int scale, char *err);

#endif
