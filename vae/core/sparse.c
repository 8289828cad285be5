#include "sparse.h"

#include <stdint.h>
#include <string.h>

#include "layers.h"

int sparse_all_finite(const float *w, size_t n)
{
    /* An infinite or NaN float has every exponent bit set; an integer OR
     * may be reordered, so the loop vectorises. */
    const uint32_t *bits = (const uint32_t *)(const void *)w;
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (bits[i] & 0x7f800000u) == 0x7f800000u;
    return !bad;
}

void sparse_transpose(float *wt, const float *w, int C, int OC)
{
    /* In tiles of 16 x 16, so that both sides stay in cache lines. */
    enum { T = 16 };
    for (int o0 = 0; o0 < OC; o0 += T)
        for (int c0 = 0; c0 < C; c0 += T) {
            int o1 = o0 + T < OC ? o0 + T : OC, c1 = c0 + T < C ? c0 + T : C;
            for (int c = c0; c < c1; c++)
                for (int o = o0; o < o1; o++)
                    wt[(size_t)c * OC + o] = w[(size_t)o * C + c];
        }
}

size_t sparse_rows(int *idx, float *val, int *nnz, const float *in, int B, int C)
{
    size_t total = 0;
    for (int r = 0; r < B; r++) {
        const float *x = in + (size_t)r * C;
        int *ir = idx + (size_t)r * C, n = 0;
        float *vr = val + (size_t)r * C;
        for (int c = 0; c < C; c++)
            if (x[c] != 0.0f) {
                ir[n] = c;
                vr[n++] = x[c];
            }
        nnz[r] = n;
        total += (size_t)n;
    }
    return total;
}

void sparse_linear_forward(float *out, const float *wt, const float *b, const int *idx,
                           const float *val, const int *nnz, int B, int C, int OC, int relu)
{
    for (int r = 0; r < B; r++) {
        float *restrict o = out + (size_t)r * OC;
        const int *ir = idx + (size_t)r * C;
        const float *vr = val + (size_t)r * C;
        memcpy(o, b, sizeof(float) * OC);
        for (int t = 0; t < nnz[r]; t++) {
            const float *restrict col = wt + (size_t)ir[t] * OC;
            float v = vr[t];
            for (int j = 0; j < OC; j++)
                o[j] += v * col[j];
        }
        if (relu)
            for (int j = 0; j < OC; j++)
                o[j] = o[j] < 0.0f ? 0.0f : o[j];
    }
}

void sparse_linear_backward_weights(float *dw, float *dwt, const float *dout, const int *idx,
                                    const float *val, const int *nnz, int B, int C, int OC)
{
    memset(dwt, 0, sizeof(float) * (size_t)C * OC);
    for (int r = 0; r < B; r++) {
        const float *restrict g = dout + (size_t)r * OC;
        const int *ir = idx + (size_t)r * C;
        const float *vr = val + (size_t)r * C;
        for (int t = 0; t < nnz[r]; t++) {
            float *restrict acc = dwt + (size_t)ir[t] * OC;
            float v = vr[t];
            for (int j = 0; j < OC; j++)
                acc[j] += v * g[j];
        }
    }
    enum { T = 16 };
    for (int o0 = 0; o0 < OC; o0 += T)
        for (int c0 = 0; c0 < C; c0 += T) {
            int o1 = o0 + T < OC ? o0 + T : OC, c1 = c0 + T < C ? c0 + T : C;
            for (int o = o0; o < o1; o++)
                for (int c = c0; c < c1; c++)
                    dw[(size_t)o * C + c] += dwt[(size_t)c * OC + o];
        }
}

/* acc[0..n) += n entries of each chosen column (rows of wt, stride OC),
 * in the order of idx: the inner loop of the gathers, so that they sum
 * alike. */
static inline void gather_add(float *restrict acc, const float *restrict wt, const int *idx,
                              int nidx, size_t OC, int n)
{
    for (int t = 0; t < nidx; t++) {
        const float *restrict col = wt + (size_t)idx[t] * OC;
        for (int j = 0; j < n; j++)
            acc[j] += col[j];
    }
}

void sparse_gather_forward(float *out, const float *wt, const float *b, const int *idx, int n,
                           int OC, int relu, int neg)
{
    memcpy(out, b, sizeof(float) * OC);
    if (neg)
        for (int t = 0; t < n; t++) {
            const float *restrict col = wt + (size_t)idx[t] * OC;
            for (int o = 0; o < OC; o++)
                out[o] -= col[o];
        }
    else
        gather_add(out, wt, idx, n, (size_t)OC, OC);
    if (relu)
        for (int o = 0; o < OC; o++)
            out[o] = out[o] < 0.0f ? 0.0f : out[o];
}

size_t sparse_panels_size(int C, int OC)
{
    return (size_t)(OC + BCE_LANES - 1) / BCE_LANES * BCE_LANES * (size_t)C;
}

void sparse_panels(float *wp, const float *w, int C, int OC)
{
    int np = (OC + BCE_LANES - 1) / BCE_LANES;
    for (int p = 0; p < np; p++)
        for (int c = 0; c < C; c++)
            for (int j = 0; j < BCE_LANES; j++) {
                int o = p * BCE_LANES + j;
                wp[((size_t)p * C + c) * BCE_LANES + j] = o < OC ? w[(size_t)o * C + c] : 0.0f;
            }
}

/* Sixteen floats as one vector (GCC's vector extension): the panels'
 * columns are 16 floats, one AVX-512 register. */
typedef float v16 __attribute__((vector_size(BCE_LANES * sizeof(float))));

static inline v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Four rows' logits for one panel at once, l[q] += sgn[q] times their
 * columns (sgn +-1, so each product is exact), each row in its own order:
 * four independent chains of adds, where one row alone would wait on each
 * add's latency. */
static inline void gather4(float (*restrict l)[BCE_LANES], const float *restrict panel,
                           const int *const idx[4], const int nnz[4], const float sgn[4])
{
    int common = nnz[0];
    for (int q = 1; q < 4; q++)
        common = nnz[q] < common ? nnz[q] : common;
    v16 a[4], s[4];
    for (int q = 0; q < 4; q++) {
        a[q] = load16(l[q]);
        s[q] = (v16){0} + sgn[q];
    }
    const int *i0 = idx[0], *i1 = idx[1], *i2 = idx[2], *i3 = idx[3];
    for (int t = 0; t < common; t++) {
        a[0] += s[0] * load16(panel + (size_t)i0[t] * BCE_LANES);
        a[1] += s[1] * load16(panel + (size_t)i1[t] * BCE_LANES);
        a[2] += s[2] * load16(panel + (size_t)i2[t] * BCE_LANES);
        a[3] += s[3] * load16(panel + (size_t)i3[t] * BCE_LANES);
    }
    for (int q = 0; q < 4; q++) {
        for (int t = common; t < nnz[q]; t++)
            a[q] += s[q] * load16(panel + (size_t)idx[q][t] * BCE_LANES);
        memcpy(l[q], &a[q], sizeof a[q]);
    }
}

void sparse_gather_bce_rows(double *loss, const float *wp, const float *b, const float *b_all,
                            const int *idx, int idx_stride, const int *nnz,
                            const unsigned char *neg, int R, const float *x, int C, int D,
                            float *lanes)
{
    /* Panel by panel over all the rows, so that the panel (C x 16 floats)
     * stays in the first-level cache while the rows gather from it.  The
     * last panel, when D is not a multiple of 16, is the pixels
     * bce_lanes_total adds one by one. */
    int full = D / BCE_LANES, rem = D - full * BCE_LANES;
    memset(lanes, 0, sizeof(float) * BCE_LANES * (size_t)R);
    for (int p = 0; p < full + (rem > 0); p++) {
        const float *panel = wp + (size_t)p * C * BCE_LANES;
        int d = p * BCE_LANES, n = p < full ? BCE_LANES : rem;
        for (int r = 0; r < R; r += 4) {
            int q4 = R - r < 4 ? R - r : 4;
            float l[4][BCE_LANES], sgn[4];
            const int *ix[4];
            int nz[4];
            for (int q = 0; q < 4; q++) {
                int row = r + (q < q4 ? q : 0), minus = neg && neg[row];
                ix[q] = idx + (size_t)row * idx_stride;
                nz[q] = nnz[row];
                sgn[q] = minus ? -1.0f : 1.0f;
                memset(l[q], 0, sizeof l[q]);
                memcpy(l[q], (minus ? b_all : b) + d, sizeof(float) * (size_t)n);
            }
            gather4(l, panel, ix, nz, sgn);
            for (int q = 0; q < q4; q++) {
                float *lane = lanes + (size_t)(r + q) * BCE_LANES;
                if (p < full)
                    bce_lanes_add(lane, l[q], x + d);
                else
                    loss[r + q] = bce_lanes_total(lane, l[q], x + d, rem);
            }
        }
    }
    if (rem == 0)
        for (int r = 0; r < R; r++)
            loss[r] = bce_lanes_total(lanes + (size_t)r * BCE_LANES, NULL, NULL, 0);
}

void sparse_bias_all(float *b_all, const float *w, const float *b, int C, int OC)
{
    for (int o = 0; o < OC; o++) {
        double s = b[o];
        for (int c = 0; c < C; c++)
            s += w[(size_t)o * C + c];
        b_all[o] = (float)s;
    }
}

static int forced;

void sparse_force(int mode)
{
    forced = mode;
}

int sparse_pays(size_t nnz, size_t total)
{
    if (forced)
        return forced > 0;
    return (double)nnz <= SPARSE_MAX_DENSITY * (double)total;
}
