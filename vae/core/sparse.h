/* sparse.h: products with rows that are mostly 0.
 *
 * The product of a weight w[OC][C] with a row whose entries are mostly 0
 * (a binary image, a one-hot or binary code) is the sum of w's columns at
 * the row's nonzero entries, each times its entry: for 0/1 entries exact
 * arithmetic, only the order of the sums differs from sgemm's.  The columns
 * are read from w transposed, wt[C][OC], or cut into panels of 16 outputs,
 * where each is contiguous.  Whether a product takes this path is decided
 * by the measured density of its input (sparse_pays); tests force either
 * path (sparse_force) to compare them.
 *
 * This file is compiled with floating-point contraction (a * b + c as one
 * fused multiply-add), so its likelihood differs from bce_logits_forward's
 * in the last bits of each pixel's term. */
#ifndef GSVAE_SPARSE_H
#define GSVAE_SPARSE_H

#include <stddef.h>

/* Whether all n entries of w are finite.  A product over the nonzero
 * inputs skips the weights of the zero ones, where sgemm's 0 * NaN would
 * make a diverged weight show in the output; callers take the dense path
 * when this fails, so that a NaN still reaches the loss. */
int sparse_all_finite(const float *w, size_t n);
/* wt[C][OC] = w[OC][C] transposed. */
void sparse_transpose(float *wt, const float *w, int C, int OC);
/* out[OC] = b + sum_{t<n} wt[idx[t]] in that order (the row of 1s at idx,
 * 0 elsewhere, through the layer), then max(0, .) when relu is set.  With
 * neg set, b - sum_{t<n} wt[idx[t]] instead: given b_all (sparse_bias_all)
 * for b, the row of 0s at idx and 1s elsewhere, which a row with more 1s
 * than 0s gathers faster. */
void sparse_gather_forward(float *out, const float *wt, const float *b, const int *idx, int n,
                           int OC, int relu, int neg);
/* b_all[OC] = b + the sum of all C columns of w[OC][C] (in double, rounded
 * once): the layer's output for an input of all 1s. */
void sparse_bias_all(float *b_all, const float *w, const float *b, int C, int OC);

/* The number of nonzero entries of in[n] (x != 0: NaN counts, -0 does
 * not), for a density check before sparse_rows. */
size_t sparse_count(const float *in, size_t n);
/* A batch's nonzero entries, row by row: row r's columns at idx + r * C
 * and values at val + r * C (both [B][C]), in increasing column, their
 * count in nnz[r]; returns the batch's total. */
size_t sparse_rows(int *idx, float *val, int *nnz, const float *in, int B, int C);
/* linear_forward (layers.h) from in's nonzero entries (sparse_rows) and
 * wt = w transposed: out[B][OC] = b + sum over row r's nonzeros of
 * val * wt[idx], in increasing column, then max(0, .) when relu is set. */
void sparse_linear_forward(float *out, const float *wt, const float *b, const int *idx,
                           const float *val, const int *nnz, int B, int C, int OC, int relu);
/* The same nonzero entries column by column: column c's rows at rows[k]
 * and values at vals[k] for start[c] <= k < start[c + 1], in increasing
 * row.  start: C + 1 ints; rows, vals: the batch's total (sparse_rows). */
void sparse_columns(int *start, int *rows, float *vals, const int *idx, const float *val,
                    const int *nnz, int B, int C);
/* linear_backward's weight gradient from in's nonzero entries, column by
 * column (sparse_columns): dw[OC][C] += dout[B][OC]^T in[B][C], each
 * column's sum over its rows taken in increasing row, then added into dw
 * (a column without entries adds nothing). */
void sparse_linear_backward_weights(float *dw, const float *dout, const int *start,
                                    const int *rows, const float *vals, int C, int OC);

/* w's columns in panels of 16 outputs, wp[ceil(OC/16)][C][16] (the last
 * padded with 0), so that one panel of every column is one block of
 * memory: sparse_panels_size(C, OC) floats. */
size_t sparse_panels_size(int C, int OC);
void sparse_panels(float *wp, const float *w, int C, int OC);
/* For each row r < R, the row of 1s at idx[r * idx_stride + t], t <
 * nnz[r] (of 0s there when neg[r] is set; neg NULL: none is): loss[r] =
 * the Bernoulli cross-entropy of the pixels x[D] (the same image for every
 * row) against the logits b + sum_t column idx[t] (b_all - sum_t ... for
 * a neg row), w with C inputs and D outputs in panels wp, summed over the
 * pixels as bce_logits_forward sums, without storing the logits.  lanes:
 * scratch of 16 R floats. */
void sparse_gather_bce_rows(double *loss, const float *wp, const float *b, const float *b_all,
                            const int *idx, int idx_stride, const int *nnz,
                            const unsigned char *neg, int R, const float *x, int C, int D,
                            float *lanes);

/* Whether a product whose input has nnz nonzero entries out of total takes
 * the sparse path: when the measured density nnz / total is at most
 * SPARSE_MAX_DENSITY.  A column sum costs about one vector add per nonzero
 * entry and 16 outputs, where sgemm (OpenBLAS's SSE kernels here) does one
 * multiply-add per 4 outputs for every entry, zero or not. */
#define SPARSE_MAX_DENSITY 0.5
int sparse_pays(size_t nnz, size_t total);
/* The rule for a training step's decoder over a hard code, which also
 * pays a transposition of the weight at every call: a code whose density
 * is at most SPARSE_CODE_MAX_DENSITY (one-hot variables of K >= 4
 * classes).  Measured on a linear 784-200-784 model (AVX-512 sgemm, 2,000
 * steps of straight-through): one-hot codes (density 0.1) 3-4% faster a
 * step than sgemm, 0/1 units taken at the 0.5 rule 2-3% slower. */
#define SPARSE_CODE_MAX_DENSITY 0.25
int sparse_code_pays(size_t nnz, size_t total);
/* For tests only: 1 takes the sparse path wherever there is one, -1
 * never, 0 (the default) by the measured density.  Process-wide. */
void sparse_force(int mode);

#endif
