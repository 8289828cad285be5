/* net.c: the sequential network of net.h over layers.c and conv.c. */
#include "net.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "layers.h"
#include "util.h"

static const char *kind_name(net_kind k)
{
    return k == NET_LINEAR ? "linear" : k == NET_CONV ? "conv" : k == NET_CONVT ? "convT" : "?";
}

/* Shape layer L from its spec and its input C x H x W; 0 or -1 with err. */
static int shape_layer(net_layer *L, int i, int C, int H, int W, char *err)
{
    const net_layer_spec *s = &L->spec;
    L->C = C;
    L->H = H;
    L->W = W;
    L->in_size = (size_t)C * H * W;
    if (s->out < 1)
        return errf(err, "net layer %d (%s): %d outputs, need at least 1", i, kind_name(s->kind),
                    s->out);
    switch (s->kind) {
    case NET_LINEAR:
        if (s->out_h < 0 || s->out_w < 0)
            return errf(err, "net layer %d (linear): output %d x %d x %d has a negative side", i,
                        s->out, s->out_h, s->out_w);
        L->OC = s->out;
        L->OH = s->out_h ? s->out_h : 1;
        L->OW = s->out_w ? s->out_w : 1;
        L->scratch = 0;
        break;
    case NET_CONV:
    case NET_CONVT: {
        const char *k = kind_name(s->kind);
        if (s->ks < 1 || s->stride < 0 || s->pad < 0)
            return errf(err, "net layer %d (%s): kernel %d, stride %d, pad %d out of range", i, k,
                        s->ks, s->stride, s->pad);
        if (s->kind == NET_CONV && s->out_pad != 0)
            return errf(err, "net layer %d (conv): out_pad %d is for convT only", i, s->out_pad);
        int stride = s->stride ? s->stride : 1;
        if (s->out_pad < 0 || s->out_pad >= stride)
            return errf(err, "net layer %d (convT): out_pad %d outside [0, stride %d)", i,
                        s->out_pad, stride);
        L->OC = s->out;
        if (s->kind == NET_CONV) {
            if (H + 2 * s->pad < s->ks || W + 2 * s->pad < s->ks)
                return errf(err, "net layer %d (conv): kernel %d larger than the padded input "
                            "%d x %d (pad %d)", i, s->ks, H, W, s->pad);
            L->OH = conv_out_dim(H, s->ks, stride, s->pad);
            L->OW = conv_out_dim(W, s->ks, stride, s->pad);
            L->scratch = conv_scratch_floats(C, H, W, s->ks, stride, s->pad);
        } else {
            L->OH = convt_out_dim(H, s->ks, stride, s->pad, s->out_pad);
            L->OW = convt_out_dim(W, s->ks, stride, s->pad, s->out_pad);
            if (L->OH < 1 || L->OW < 1)
                return errf(err, "net layer %d (convT): input %d x %d, kernel %d, stride %d, "
                            "pad %d, out_pad %d give no output", i, H, W, s->ks, stride, s->pad,
                            s->out_pad);
            L->scratch = convt_scratch_floats(H, W, s->out, s->ks);
        }
        break;
    }
    default:
        return errf(err, "net layer %d: unknown kind %d", i, (int)s->kind);
    }
    L->out_size = (size_t)L->OC * L->OH * L->OW;
    /* The dimensions of every sgemm (and C*KS*KS, OC*KS*KS, OH*OW of a
     * conv) divide one of these; below INT_MAX / 64 they fit an int. */
    size_t kk = s->kind == NET_LINEAR ? 1 : (size_t)s->ks * s->ks;
    size_t biggest = L->in_size > L->out_size ? L->in_size : L->out_size;
    if (biggest > INT_MAX / 64 || L->scratch > INT_MAX / 64 ||
        (size_t)(C > L->OC ? C : L->OC) * kk > INT_MAX / 64)
        return errf(err, "net layer %d (%s): %zu inputs and %zu outputs per example are too "
                    "large", i, kind_name(s->kind), L->in_size, L->out_size);
    if (s->kind == NET_LINEAR) {
        L->nw = L->out_size * L->in_size;
        L->nb = L->out_size;
        if (L->nw > INT_MAX)
            return errf(err, "net layer %d (linear): %zu x %zu weights are too many", i,
                        L->out_size, L->in_size);
    } else {
        L->nw = (size_t)L->OC * C * kk;
        L->nb = (size_t)L->OC;
    }
    return 0;
}

int net_init(net_t *n, int C, int H, int W, const net_layer_spec *spec, int nlayers, char *err)
{
    memset(n, 0, sizeof *n);
    if (nlayers < 1 || nlayers > NET_MAX_LAYERS)
        return errf(err, "net: %d layers, need 1 to %d", nlayers, NET_MAX_LAYERS);
    if (C < 1 || H < 1 || W < 1)
        return errf(err, "net: input %d x %d x %d has an empty side", C, H, W);
    n->nlayers = nlayers;
    size_t off = 0;
    for (int i = 0; i < nlayers; i++) {
        net_layer *L = &n->layer[i];
        L->spec = spec[i];
        if (L->spec.stride == 0)
            L->spec.stride = 1;
        if (L->spec.kind == NET_LINEAR)
            L->spec.ks = L->spec.stride = L->spec.pad = L->spec.out_pad = 0;
        if (shape_layer(L, i, C, H, W, err))
            return -1;
        L->w = off;
        L->b = off + L->nw;
        off = L->b + L->nb;
        C = L->OC;
        H = L->OH;
        W = L->OW;
    }
    n->in_size = n->layer[0].in_size;
    n->out_size = n->layer[nlayers - 1].out_size;
    n->nparams = off;
    return 0;
}

void net_bind(net_t *n, float *params, float *grads)
{
    assert(!n->owned && params && grads);
    n->params = params;
    n->grads = grads;
}

int net_alloc(net_t *n, char *err)
{
    assert(!n->owned && n->nparams > 0);
    n->owned = xcalloc(2 * n->nparams, sizeof(float), err, "network parameters");
    if (!n->owned)
        return -1;
    n->params = n->owned;
    n->grads = n->owned + n->nparams;
    return 0;
}

void net_free(net_t *n)
{
    free(n->owned);
    if (n->owned)
        n->params = n->grads = NULL;
    n->owned = NULL;
}

void net_init_glorot(net_t *n, rng_t *r)
{
    assert(n->params);
    for (int i = 0; i < n->nlayers; i++) {
        const net_layer *L = &n->layer[i];
        float *w = n->params + L->w;
        if (L->spec.kind == NET_LINEAR) {
            linear_init_glorot(w, (int)L->in_size, (int)L->out_size, r);
        } else {
            float a = sqrtf(6.0f / (float)((size_t)(L->C + L->OC) * L->spec.ks * L->spec.ks));
            for (size_t j = 0; j < L->nw; j++)
                w[j] = a * (2.0f * rng_uniformf_open(r) - 1.0f);
        }
        memset(n->params + L->b, 0, sizeof(float) * L->nb);
    }
}

int net_ws_init(net_ws *w, const net_t *n, int max_B, char *err)
{
    memset(w, 0, sizeof *w);
    if (max_B < 1)
        return errf(err, "net workspace: batch of %d, need at least 1", max_B);
    size_t acts = 0, widest = 0, scratch = 0;
    for (int i = 0; i < n->nlayers; i++) {
        const net_layer *L = &n->layer[i];
        acts += L->out_size;
        if (i < n->nlayers - 1 && L->out_size > widest)
            widest = L->out_size;
        if (L->scratch > scratch)
            scratch = L->scratch;
    }
    size_t B = (size_t)max_B;
    if (acts + 2 * widest > (SIZE_MAX / sizeof(float) - scratch) / B)
        return errf(err, "net workspace: batch of %d times %zu floats per example is too large",
                    max_B, acts + 2 * widest);
    size_t total = B * (acts + 2 * widest) + scratch;
    w->mem = xcalloc(total ? total : 1, sizeof(float), err, "network workspace");
    if (!w->mem)
        return -1;
    float *p = w->mem;
    for (int i = 0; i < n->nlayers; i++) {
        w->act[i] = p; /* [max_B][layer i out_size] */
        p += B * n->layer[i].out_size;
    }
    w->grad_a = p; /* [max_B][widest] */
    p += B * widest;
    w->grad_b = p; /* [max_B][widest] */
    p += B * widest;
    w->scratch = p; /* [scratch] */
    w->max_B = max_B;
    return 0;
}

void net_ws_free(net_ws *w)
{
    free(w->mem);
    memset(w, 0, sizeof *w);
}

const float *net_forward(const net_t *n, net_ws *w, const float *in, int B)
{
    assert(n->params && w->mem && B >= 0 && B <= w->max_B);
    for (int i = 0; i < n->nlayers; i++) {
        const net_layer *L = &n->layer[i];
        const net_layer_spec *s = &L->spec;
        const float *x = i ? w->act[i - 1] : in; /* [B][in_size] */
        float *y = w->act[i];                    /* [B][out_size] */
        const float *wt = n->params + L->w, *bias = n->params + L->b;
        if (B == 0)
            continue;
        switch (s->kind) {
        case NET_LINEAR:
            linear_forward(y, x, wt, bias, B, (int)L->in_size, (int)L->out_size, s->relu);
            break;
        case NET_CONV:
            conv_forward(y, x, wt, bias, w->scratch, B, L->C, L->H, L->W, L->OC, s->ks, s->stride,
                         s->pad, s->relu);
            break;
        case NET_CONVT:
            convt_forward(y, x, wt, bias, w->scratch, B, L->C, L->H, L->W, L->OC, s->ks,
                          s->stride, s->pad, s->out_pad, s->relu);
            break;
        }
    }
    return w->act[n->nlayers - 1];
}

void net_backward(net_t *n, net_ws *w, float *din, const float *in, float *dout, int B)
{
    assert(n->grads && w->mem && B >= 0 && B <= w->max_B);
    if (B == 0)
        return;
    /* Layer i's input gradient is layer i-1's dout: the two ping-pong
     * buffers alternate, the first layer writes the caller's din. */
    float *g = dout;
    for (int i = n->nlayers - 1; i >= 0; i--) {
        const net_layer *L = &n->layer[i];
        const net_layer_spec *s = &L->spec;
        const float *x = i ? w->act[i - 1] : in;
        float *dx = i ? (g == w->grad_a ? w->grad_b : w->grad_a) : din;
        const float *wt = n->params + L->w;
        float *dw = n->grads + L->w, *db = n->grads + L->b;
        switch (s->kind) {
        case NET_LINEAR: /* undoes linear_forward */
            linear_backward(dx, dw, db, g, w->act[i], x, wt, B, (int)L->in_size,
                            (int)L->out_size, s->relu);
            break;
        case NET_CONV: /* undoes conv_forward */
            conv_backward(dx, dw, db, g, w->act[i], x, wt, w->scratch, B, L->C, L->H, L->W,
                          L->OC, s->ks, s->stride, s->pad, s->relu);
            break;
        case NET_CONVT: /* undoes convt_forward */
            convt_backward(dx, dw, db, g, w->act[i], x, wt, w->scratch, B, L->C, L->H, L->W,
                           L->OC, s->ks, s->stride, s->pad, s->out_pad, s->relu);
            break;
        }
        g = dx;
    }
}
