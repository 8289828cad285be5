/* conv.c: conv and convT of conv.h as im2col / col2im around one
 * sgemm per example (par_sgemm).
 *
 * The column matrix of an image img[C][H][W] seen through a KS x KS kernel
 * with a stride and a padding is col[C*KS*KS][OH*OW]: row (c, i, j) holds,
 * for every output position (y, x), the pixel img[c][y*stride - pad + i]
 * [x*stride - pad + j] that tap (i, j) reads there, or 0 in the padding.  A
 * conv is then w[OC][C*KS*KS] col, and col2im, which adds each entry of a
 * column matrix back onto the pixel it came from, is the adjoint of im2col;
 * the four passes below are these two maps and three products. */
#include "conv.h"

#include <assert.h>
#include <string.h>

#include "parallel.h"

int conv_out_dim(int in, int KS, int stride, int pad)
{
    if (in < 1 || KS < 1 || stride < 1 || pad < 0 || in + 2 * pad < KS)
        return 0;
    return (in + 2 * pad - KS) / stride + 1;
}

int convt_out_dim(int in, int KS, int stride, int pad, int out_pad)
{
    if (in < 1 || KS < 1 || stride < 1 || pad < 0 || out_pad < 0 || out_pad >= stride)
        return 0;
    long n = (long)(in - 1) * stride - 2L * pad + KS + out_pad;
    return n >= 1 && n <= 1L << 30 ? (int)n : 0;
}

size_t conv_scratch_floats(int C, int H, int W, int KS, int stride, int pad)
{
    int OH = conv_out_dim(H, KS, stride, pad), OW = conv_out_dim(W, KS, stride, pad);
    return (size_t)C * KS * KS * OH * OW;
}

size_t convt_scratch_floats(int H, int W, int OC, int KS)
{
    return (size_t)OC * KS * KS * H * W;
}

/* The output positions [*lo, *hi) of a grid of n_out whose tap `tap` reads
 * inside an input of n_in (the others read the padding). */
static void tap_range(int n_out, int n_in, int stride, int pad, int tap, int *lo, int *hi)
{
    int first = pad - tap; /* input index = o*stride - first */
    int l = first > 0 ? (first + stride - 1) / stride : 0;
    int last = n_in - 1 + first; /* o*stride <= last */
    int h = last < 0 ? 0 : last / stride + 1;
    *lo = l < n_out ? l : n_out;
    *hi = h < *lo ? *lo : h < n_out ? h : n_out;
}

/* col[C*KS*KS][OH*OW] from img[C][H][W]. */
static void im2col(float *col, const float *img, int C, int H, int W, int KS, int stride, int pad,
                   int OH, int OW)
{
    size_t N = (size_t)OH * OW;
    for (int c = 0; c < C; c++) {
        const float *src = img + (size_t)c * H * W;
        for (int i = 0; i < KS; i++) {
            int y0, y1;
            tap_range(OH, H, stride, pad, i, &y0, &y1);
            for (int j = 0; j < KS; j++) {
                float *dst = col + ((size_t)(c * KS + i) * KS + j) * N;
                int x0, x1;
                tap_range(OW, W, stride, pad, j, &x0, &x1);
                memset(dst, 0, sizeof(float) * (size_t)y0 * OW);
                int off = j - pad; /* input column = x*stride + off */
                for (int y = y0; y < y1; y++) {
                    const float *row = src + (size_t)(y * stride - pad + i) * W;
                    float *d = dst + (size_t)y * OW;
                    for (int x = 0; x < x0; x++)
                        d[x] = 0.0f;
                    if (stride == 1)
                        memcpy(d + x0, row + x0 + off, sizeof(float) * (size_t)(x1 - x0));
                    else
                        for (int x = x0; x < x1; x++)
                            d[x] = row[x * stride + off];
                    for (int x = x1; x < OW; x++)
                        d[x] = 0.0f;
                }
                memset(dst + (size_t)y1 * OW, 0, sizeof(float) * (size_t)(OH - y1) * OW);
            }
        }
    }
}

/* img[C][H][W] += the entries of col[C*KS*KS][OH*OW] at the pixels im2col
 * took them from (the padding's entries are dropped). */
static void col2im_add(float *img, const float *col, int C, int H, int W, int KS, int stride,
                       int pad, int OH, int OW)
{
    size_t N = (size_t)OH * OW;
    for (int c = 0; c < C; c++) {
        float *dst = img + (size_t)c * H * W;
        for (int i = 0; i < KS; i++) {
            int y0, y1;
            tap_range(OH, H, stride, pad, i, &y0, &y1);
            for (int j = 0; j < KS; j++) {
                const float *src = col + ((size_t)(c * KS + i) * KS + j) * N;
                int x0, x1;
                tap_range(OW, W, stride, pad, j, &x0, &x1);
                int off = j - pad;
                for (int y = y0; y < y1; y++) {
                    float *row = dst + (size_t)(y * stride - pad + i) * W;
                    const float *s = src + (size_t)y * OW;
                    if (stride == 1)
                        for (int x = x0; x < x1; x++)
                            row[x + off] += s[x];
                    else
                        for (int x = x0; x < x1; x++)
                            row[x * stride + off] += s[x];
                }
            }
        }
    }
}

/* y[OC][N] = b[o] on every row o. */
static void fill_bias(float *y, const float *b, int OC, size_t N)
{
    for (int o = 0; o < OC; o++)
        for (size_t n = 0; n < N; n++)
            y[(size_t)o * N + n] = b[o];
}

/* Written so that a NaN passes through: a ReLU must not hide a diverged
 * layer from the NaN check of the training loop. */
static void relu_inplace(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = v[i] < 0.0f ? 0.0f : v[i];
}

/* Undoes relu_inplace: the gradient is 0 where the output is not positive. */
static void relu_mask(float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(out[i] > 0.0f))
            dout[i] = 0.0f;
}

/* db[o] += the sum of g[o][*], one example's gradient (undoes fill_bias).
 * Each channel's sum runs over n in order, as a plain loop would; four
 * channels go side by side so that their additions overlap in the CPU. */
static void bias_grad(float *db, const float *g, int OC, size_t N)
{
    int o = 0;
    for (; o + 4 <= OC; o += 4) {
        const float *r = g + (size_t)o * N;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (size_t n = 0; n < N; n++) {
            s0 += r[n];
            s1 += r[N + n];
            s2 += r[2 * N + n];
            s3 += r[3 * N + n];
        }
        db[o] += s0;
        db[o + 1] += s1;
        db[o + 2] += s2;
        db[o + 3] += s3;
    }
    for (; o < OC; o++) {
        const float *r = g + (size_t)o * N;
        float s = 0.0f;
        for (size_t n = 0; n < N; n++)
            s += r[n];
        db[o] += s;
    }
}

void conv_forward(float *out, const float *in, const float *w, const float *b, float *scratch,
                  int B, int C, int H, int W, int OC, int KS, int stride, int pad, int relu)
{
    int OH = conv_out_dim(H, KS, stride, pad), OW = conv_out_dim(W, KS, stride, pad);
    assert(B >= 0 && C >= 1 && OC >= 1 && OH >= 1 && OW >= 1);
    assert(out && in && w && b && scratch);
    int N = OH * OW, CKK = C * KS * KS;
    for (int e = 0; e < B; e++) {
        float *y = out + (size_t)e * OC * N; /* [OC][OH*OW] */
        im2col(scratch, in + (size_t)e * C * H * W, C, H, W, KS, stride, pad, OH, OW);
        fill_bias(y, b, OC, (size_t)N);
        /* y[OC][N] += w[OC][CKK] col[CKK][N] */
        par_sgemm(0, 0, OC, N, CKK, 1.0f, w, CKK,
                    scratch, N, 1.0f, y, N);
        if (relu)
            relu_inplace(y, (size_t)OC * N);
    }
}

void conv_backward(float *din, float *dw, float *db, float *dout, const float *out,
                   const float *in, const float *w, float *scratch, int B, int C, int H, int W,
                   int OC, int KS, int stride, int pad, int relu)
{
    int OH = conv_out_dim(H, KS, stride, pad), OW = conv_out_dim(W, KS, stride, pad);
    assert(B >= 0 && C >= 1 && OC >= 1 && OH >= 1 && OW >= 1);
    assert(dw && db && dout && in && w && scratch && (out || !relu));
    int N = OH * OW, CKK = C * KS * KS;
    for (int e = 0; e < B; e++) {
        float *g = dout + (size_t)e * OC * N; /* [OC][OH*OW] */
        if (relu)
            relu_mask(g, out + (size_t)e * OC * N, (size_t)OC * N);
        bias_grad(db, g, OC, (size_t)N);
        im2col(scratch, in + (size_t)e * C * H * W, C, H, W, KS, stride, pad, OH, OW);
        /* undoes y += w col: dw[OC][CKK] += g[OC][N] col^T[N][CKK] */
        par_sgemm(0, 1, OC, CKK, N, 1.0f, g, N, scratch, N,
                    1.0f, dw, CKK);
        if (!din)
            continue;
        /* undoes y += w col for col: dcol[CKK][N] = w^T[CKK][OC] g[OC][N],
         * in the scratch that col no longer needs */
        par_sgemm(1, 0, CKK, N, OC, 1.0f, w, CKK, g, N, 0.0f,
                    scratch, N);
        /* undoes im2col */
        float *dx = din + (size_t)e * C * H * W; /* [C][H][W] */
        memset(dx, 0, sizeof(float) * (size_t)C * H * W);
        col2im_add(dx, scratch, C, H, W, KS, stride, pad, OH, OW);
    }
}

void convt_forward(float *out, const float *in, const float *w, const float *b, float *scratch,
                   int B, int C, int H, int W, int OC, int KS, int stride, int pad, int out_pad,
                   int relu)
{
    int OH = convt_out_dim(H, KS, stride, pad, out_pad);
    int OW = convt_out_dim(W, KS, stride, pad, out_pad);
    assert(B >= 0 && C >= 1 && OC >= 1 && OH >= 1 && OW >= 1);
    assert(out && in && w && b && scratch);
    /* The conv that this is the adjoint of maps OH x OW back onto H x W. */
    assert(conv_out_dim(OH, KS, stride, pad) == H && conv_out_dim(OW, KS, stride, pad) == W);
    int HW = H * W, OKK = OC * KS * KS;
    size_t ON = (size_t)OH * OW;
    for (int e = 0; e < B; e++) {
        float *y = out + (size_t)e * OC * ON; /* [OC][OH][OW] */
        /* col[OKK][HW] = w^T[OKK][C] x[C][HW] */
        par_sgemm(1, 0, OKK, HW, C, 1.0f, w, OKK,
                    in + (size_t)e * C * HW, HW, 0.0f, scratch, HW);
        fill_bias(y, b, OC, ON);
        col2im_add(y, scratch, OC, OH, OW, KS, stride, pad, H, W);
        if (relu)
            relu_inplace(y, (size_t)OC * ON);
    }
}

void convt_backward(float *din, float *dw, float *db, float *dout, const float *out,
                    const float *in, const float *w, float *scratch, int B, int C, int H, int W,
                    int OC, int KS, int stride, int pad, int out_pad, int relu)
{
    int OH = convt_out_dim(H, KS, stride, pad, out_pad);
    int OW = convt_out_dim(W, KS, stride, pad, out_pad);
    assert(B >= 0 && C >= 1 && OC >= 1 && OH >= 1 && OW >= 1);
    assert(dw && db && dout && in && w && scratch && (out || !relu));
    int HW = H * W, OKK = OC * KS * KS;
    size_t ON = (size_t)OH * OW;
    for (int e = 0; e < B; e++) {
        const float *x = in + (size_t)e * C * HW; /* [C][H*W] */
        float *g = dout + (size_t)e * OC * ON;     /* [OC][OH*OW] */
        if (relu)
            relu_mask(g, out + (size_t)e * OC * ON, (size_t)OC * ON);
        bias_grad(db, g, OC, ON);
        /* undoes col2im_add: dcol[OKK][HW] = im2col(g) */
        im2col(scratch, g, OC, OH, OW, KS, stride, pad, H, W);
        /* undoes col = w^T x: dw[C][OKK] += x[C][HW] dcol^T[HW][OKK] */
        par_sgemm(0, 1, C, OKK, HW, 1.0f, x, HW, scratch, HW,
                    1.0f, dw, OKK);
        /* and for x: dx[C][HW] = w[C][OKK] dcol[OKK][HW] */
        if (din)
            par_sgemm(0, 0, C, HW, OKK, 1.0f, w, OKK,
                        scratch, HW, 0.0f, din + (size_t)e * C * HW, HW);
    }
}
