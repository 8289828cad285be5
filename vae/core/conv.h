/* conv.h: 2-D convolution and transposed convolution over NCHW float
 * batches, as forward/backward pairs in the manner of layers.h.
 *
 * Shapes are in the argument names: B examples, C input channels of H x W,
 * OC output channels of OH x OW; a square kernel of KS x KS taps, one stride
 * and one zero padding for both axes.  A tensor is row-major in that order,
 * so example b of an input starts at in + b*C*H*W.
 *
 *   conv:  weight w[OC][C][KS][KS] (PyTorch's Conv2d layout),
 *          OH = (H + 2 pad - KS) / stride + 1 (rounded down),
 *          out[b][o][y][x] = bias[o] + sum_{c,i,j} w[o][c][i][j]
 *                                       in[b][c][y*stride - pad + i][x*stride - pad + j]
 *          (taps that fall in the padding read 0).
 *   convT: weight w[C][OC][KS][KS] (PyTorch's ConvTranspose2d layout),
 *          OH = (H - 1) stride - 2 pad + KS + out_pad, 0 <= out_pad < stride,
 *          the adjoint of a conv from OC x OH x OW to C x H x W with the same
 *          weight array, KS, stride and pad, plus a bias: each input pixel
 *          scatters w[c][o] into the output at (h*stride - pad + i, w*stride - pad + j).
 *
 * Both are computed one example at a time as a single cblas_sgemm over a
 * column matrix (im2col / col2im).  That matrix lives in scratch that the
 * caller allocates once: conv_scratch_floats / convt_scratch_floats give its
 * size, which depends on the shape of one example only, not on B.
 *
 * As in layers.h, backward passes ADD into the parameter gradients (dw, db)
 * and overwrite the input gradient (din); relu fuses max(0, .) into the
 * forward pass, and the backward pass then masks dout in place where the
 * output is not positive. */
#ifndef GSVAE_CONV_H
#define GSVAE_CONV_H

#include <stddef.h>

/* Output length of a conv along one axis: (in + 2 pad - KS) / stride + 1,
 * or 0 when the kernel does not fit in the padded input (in + 2 pad < KS)
 * or an argument is out of range (in < 1, KS < 1, stride < 1, pad < 0). */
int conv_out_dim(int in, int KS, int stride, int pad);

/* Output length of a convT along one axis: (in - 1) stride - 2 pad + KS +
 * out_pad, or 0 when that is below 1 or an argument is out of range (also
 * out_pad outside [0, stride)). */
int convt_out_dim(int in, int KS, int stride, int pad, int out_pad);

/* Floats of scratch that conv_forward and conv_backward need for this shape
 * (one example's column matrix, [C*KS*KS][OH*OW]); 0 when the shape has no
 * output (conv_out_dim is 0). */
size_t conv_scratch_floats(int C, int H, int W, int KS, int stride, int pad);

/* Floats of scratch that convt_forward and convt_backward need
 * ([OC*KS*KS][H*W], H x W the input); the same for every stride. */
size_t convt_scratch_floats(int H, int W, int OC, int KS);

/* out[B][OC][OH][OW] = conv(in[B][C][H][W], w[OC][C][KS][KS]) + b[OC], then
 * max(0, .) when relu is set (a NaN passes through).  The shape must have an
 * output (conv_out_dim > 0 on both axes); B = 0 does nothing.  scratch holds
 * conv_scratch_floats(C, H, W, KS, stride, pad) floats; its contents on
 * return are unspecified. */
void conv_forward(float *out,        /* [B][OC][OH][OW] */
                  const float *in,   /* [B][C][H][W] */
                  const float *w,    /* [OC][C][KS][KS] */
                  const float *b,    /* [OC] */
                  float *scratch,    /* [C*KS*KS][OH*OW] */
                  int B, int C, int H, int W, int OC, int KS, int stride, int pad, int relu);

/* Gradients of conv_forward with the same shape: dout[B][OC][OH][OW] is the
 * gradient at the output (masked in place where out <= 0 when relu is set;
 * out is then the forward's output, and may be NULL otherwise).  Adds into
 * dw[OC][C][KS][KS] and db[OC]; overwrites din[B][C][H][W], which may be
 * NULL (a first layer) to skip that half of the work.  in and w are the
 * forward's.  scratch as for conv_forward. */
void conv_backward(float *din,        /* [B][C][H][W] or NULL */
                   float *dw,         /* [OC][C][KS][KS] */
                   float *db,         /* [OC] */
                   float *dout,       /* [B][OC][OH][OW] */
                   const float *out,  /* [B][OC][OH][OW] */
                   const float *in,   /* [B][C][H][W] */
                   const float *w,    /* [OC][C][KS][KS] */
                   float *scratch,    /* [C*KS*KS][OH*OW] */
                   int B, int C, int H, int W, int OC, int KS, int stride, int pad, int relu);

/* out[B][OC][OH][OW] = convT(in[B][C][H][W], w[C][OC][KS][KS]) + b[OC], then
 * max(0, .) when relu is set.  OH and OW are convt_out_dim of H and W, which
 * must be positive; where out_pad > pad, the last out_pad - pad rows and columns lie beyond
 * every tap and hold the bias alone.  B = 0 does nothing.
 * scratch holds convt_scratch_floats(H, W, OC, KS) floats. */
void convt_forward(float *out,        /* [B][OC][OH][OW] */
                   const float *in,   /* [B][C][H][W] */
                   const float *w,    /* [C][OC][KS][KS] */
                   const float *b,    /* [OC] */
                   float *scratch,    /* [OC*KS*KS][H*W] */
                   int B, int C, int H, int W, int OC, int KS, int stride, int pad, int out_pad,
                   int relu);

/* Gradients of convt_forward with the same shape, with the conventions of
 * conv_backward: dout[B][OC][OH][OW] (masked in place with relu), adds into
 * dw[C][OC][KS][KS] and db[OC], overwrites din[B][C][H][W] unless NULL. */
void convt_backward(float *din,        /* [B][C][H][W] or NULL */
                    float *dw,         /* [C][OC][KS][KS] */
                    float *db,         /* [OC] */
                    float *dout,       /* [B][OC][OH][OW] */
                    const float *out,  /* [B][OC][OH][OW] */
                    const float *in,   /* [B][C][H][W] */
                    const float *w,    /* [C][OC][KS][KS] */
                    float *scratch,    /* [OC*KS*KS][H*W] */
                    int B, int C, int H, int W, int OC, int KS, int stride, int pad, int out_pad,
                    int relu);

#endif
