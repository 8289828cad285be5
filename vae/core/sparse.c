#include "sparse.h"

#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

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

size_t sparse_count(const float *in, size_t n)
{
    size_t nnz = 0;
    for (size_t i = 0; i < n; i++)
        nnz += in[i] != 0.0f;
    return nnz;
}

size_t sparse_rows(int *idx, float *val, int *nnz, const float *in, int B, int C)
{
    size_t total = 0;
    for (int r = 0; r < B; r++) {
        const float *restrict x = in + (size_t)r * C;
        int *restrict ir = idx + (size_t)r * C;
        float *restrict vr = val + (size_t)r * C;
        int n = 0, c = 0;
#ifdef __AVX512F__
        /* Sixteen entries at a time: the nonzero ones (x != 0 as C has it:
         * NaN is nonzero, -0 is not) packed to the front of a register and
         * stored whole at the next free slot (n + 16 <= c + 16 <= C); the
         * lanes past the packed ones are overwritten by the next store. */
        const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (; c + 16 <= C; c += 16) {
            __m512 v = _mm512_loadu_ps(x + c);
            __mmask16 on = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            __m512i cols = _mm512_add_epi32(lanes, _mm512_set1_epi32(c));
            _mm512_storeu_si512((void *)(ir + n), _mm512_maskz_compress_epi32(on, cols));
            _mm512_storeu_ps(vr + n, _mm512_maskz_compress_ps(on, v));
            n += __builtin_popcount((unsigned)on);
        }
#endif
        /* Without a branch: every entry is written at the next free slot
         * and the slot advances only past a nonzero one (a mispredicted
         * branch per pixel cost more than the stores). */
        for (; c < C; c++) {
            ir[n] = c;
            vr[n] = x[c];
            n += x[c] != 0.0f;
        }
        nnz[r] = n;
        total += (size_t)n;
    }
    return total;
}

/* Sixteen floats as one vector (GCC's vector extension): one AVX-512
 * register; the panels' columns below are one each. */
typedef float v16 __attribute__((vector_size(16 * sizeof(float))));

static inline v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

void sparse_linear_forward(float *out, const float *wt, const float *b, const int *idx,
                           const float *val, const int *nnz, int B, int C, int OC, int relu)
{
    for (int r = 0; r < B; r++) {
        float *restrict o = out + (size_t)r * OC;
        const int *ir = idx + (size_t)r * C;
        const float *vr = val + (size_t)r * C;
        int n = nnz[r], j0 = 0;
        /* 64 outputs at a time in four registers while the row's columns
         * stream past; each output still sums the columns in increasing
         * order, as the scalar tail does. */
        for (; j0 + 64 <= OC; j0 += 64) {
            v16 a0 = load16(b + j0), a1 = load16(b + j0 + 16), a2 = load16(b + j0 + 32),
                a3 = load16(b + j0 + 48);
            for (int t = 0; t < n; t++) {
                const float *col = wt + (size_t)ir[t] * OC + j0;
                v16 v = (v16){0} + vr[t];
                a0 += v * load16(col);
                a1 += v * load16(col + 16);
                a2 += v * load16(col + 32);
                a3 += v * load16(col + 48);
            }
            memcpy(o + j0, &a0, sizeof a0);
            memcpy(o + j0 + 16, &a1, sizeof a1);
            memcpy(o + j0 + 32, &a2, sizeof a2);
            memcpy(o + j0 + 48, &a3, sizeof a3);
        }
        for (; j0 + 16 <= OC; j0 += 16) {
            v16 a0 = load16(b + j0);
            for (int t = 0; t < n; t++) {
                v16 v = (v16){0} + vr[t];
                a0 += v * load16(wt + (size_t)ir[t] * OC + j0);
            }
            memcpy(o + j0, &a0, sizeof a0);
        }
        if (j0 < OC) {
            memcpy(o + j0, b + j0, sizeof(float) * (size_t)(OC - j0));
            for (int t = 0; t < n; t++) {
                const float *restrict col = wt + (size_t)ir[t] * OC;
                float v = vr[t];
                for (int j = j0; j < OC; j++)
                    o[j] += v * col[j];
            }
        }
        if (relu)
            for (int j = 0; j < OC; j++)
                o[j] = o[j] < 0.0f ? 0.0f : o[j];
    }
}

void sparse_columns(int *start, int *rows, float *vals, const int *idx, const float *val,
                    const int *nnz, int B, int C)
{
    memset(start, 0, sizeof(int) * ((size_t)C + 1));
    for (int r = 0; r < B; r++)
        for (int t = 0; t < nnz[r]; t++)
            start[idx[(size_t)r * C + t] + 1]++;
    for (int c = 0; c < C; c++)
        start[c + 1] += start[c];
    /* start[c] serves as column c's cursor, then is shifted back. */
    for (int r = 0; r < B; r++)
        for (int t = 0; t < nnz[r]; t++) {
            int pos = start[idx[(size_t)r * C + t]]++;
            rows[pos] = r;
            vals[pos] = val[(size_t)r * C + t];
        }
    for (int c = C; c > 0; c--)
        start[c] = start[c - 1];
    start[0] = 0;
}

void sparse_linear_backward_weights(float *dw, const float *dout, const int *start,
                                    const int *rows, const float *vals, int C, int OC)
{
    /* Column c's gradient, dw[.][c], is the sum over its rows, in
     * increasing row, of val * dout[row]: 64 outputs at a time in four
     * registers, then added down the column of dw (stride C; the next
     * column reuses the same cache lines).  A column without entries adds
     * nothing. */
    for (int c = 0; c < C; c++) {
        int k0 = start[c], k1 = start[c + 1], j0 = 0;
        if (k0 == k1)
            continue;
        float *restrict col = dw + c;
        for (; j0 + 64 <= OC; j0 += 64) {
            v16 a[4] = {{0}};
            for (int k = k0; k < k1; k++) {
                const float *g = dout + (size_t)rows[k] * OC + j0;
                v16 v = (v16){0} + vals[k];
                a[0] += v * load16(g);
                a[1] += v * load16(g + 16);
                a[2] += v * load16(g + 32);
                a[3] += v * load16(g + 48);
            }
            float sum[64];
            memcpy(sum, a, sizeof sum);
            for (int j = 0; j < 64; j++)
                col[(size_t)(j0 + j) * C] += sum[j];
        }
        for (; j0 + 16 <= OC; j0 += 16) {
            v16 a0 = {0};
            for (int k = k0; k < k1; k++) {
                v16 v = (v16){0} + vals[k];
                a0 += v * load16(dout + (size_t)rows[k] * OC + j0);
            }
            float sum[16];
            memcpy(sum, &a0, sizeof sum);
            for (int j = 0; j < 16; j++)
                col[(size_t)(j0 + j) * C] += sum[j];
        }
        for (; j0 < OC; j0++) {
            float sum = 0.0f;
            for (int k = k0; k < k1; k++)
                sum += vals[k] * dout[(size_t)rows[k] * OC + j0];
            col[(size_t)j0 * C] += sum;
        }
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

int sparse_code_pays(size_t nnz, size_t total)
{
    if (forced)
        return forced > 0;
    return (double)nnz <= SPARSE_CODE_MAX_DENSITY * (double)total;
}
