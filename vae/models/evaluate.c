#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "estimator.h"
#include "layers.h"
#include "parallel.h"
#include "sparse.h"
#include "stochastic.h"
#include "util.h"

/* The size of the table of one image's distinct codes: a power of two at
 * least twice the rows, so that a probe ends at an empty slot soon. */
static size_t iw_slots(size_t rows)
{
    size_t n = 16;
    while (n < 2 * rows)
        n *= 2;
    return n;
}

int eval_ws_init(eval_ws *w, const vae_model *m, int rows, char *err)
{
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->threads = 1;
    /* What is per decoded row (R of them) and what is per image of an
     * encoded block or per row of the one-pass bounds (B <= EVAL_BLOCK). */
    size_t R = (size_t)rows, B = R < EVAL_BLOCK ? R : EVAL_BLOCK, n = B * vae_zdim(&m->cfg);
    const linear_layer *L0 = &m->dec[0];
    if (vae_acts_init(&w->a, m, (int)B, err) != 0)
        return -1;
    ws_buf bufs[] = {
        WS_BUF(w->noise, n),  WS_BUF(w->z, n),        WS_BUF(w->logits_rep, n),
        WS_BUF(w->logw_max, B), WS_BUF(w->logw_sum, B),
        WS_BUF(w->probs, n),  WS_BUF(w->cum, n), WS_BUF(w->ratio_unit, n), WS_BUF(w->ratio_base, B),
        WS_BUF(w->idx, R * m->cfg.N), WS_BUF(w->nnz, R), WS_BUF(w->neg, R),
        WS_BUF(w->unit_scratch, R * m->cfg.N), WS_BUF(w->bias_all, L0->out),
        WS_BUF(w->rec, R),    WS_BUF(w->ratio, R),
        WS_BUF(w->wt, m->ndec > 1 ? (size_t)L0->in * L0->out : 0),
        WS_BUF(w->panels, m->ndec == 1 ? sparse_panels_size(L0->in, L0->out) : 0),
        WS_BUF(w->lanes, R * 16),
        WS_BUF(w->code_of, R), WS_BUF(w->image_of, R), WS_BUF(w->slots, 2 * iw_slots(R)),
    };
    if (!(w->block = ws_alloc(bufs, WS_COUNT(bufs), NULL, 0, err, "evaluation buffers"))) {
        eval_ws_free(w);
        return -1;
    }
    return 0;
}

int eval_ws_rows(const vae_model *m, int S, int threads)
{
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    return m->ndec == 1 && threads > 1 ? S * threads : S;
}

void eval_ws_free(eval_ws *w)
{
    vae_acts_free(&w->a);
    free(w->block);
    memset(w, 0, sizeof *w);
}

/* tau > 0: the relaxed sample at temperature tau; else a hard sample. */
static void elbo_pass(const vae_model *m, eval_ws *w, const float *x, int n, float tau,
                      rng_t *r, elbo_result *out)
{
    const vae_config *c = &m->cfg;
    stoch_layer code = vae_code(c);
    int D = c->D;
    double recon = 0.0, kl = 0.0;
    int rows = eval_ws_block(w);
    for (int start = 0; start < n; start += rows) {
        int B = n - start < rows ? n - start : rows;
        const float *xb = x + (size_t)start * D;
        const float *logits = vae_logits(m, &w->a);
        vae_encode(m, &w->a, xb, B);
        vae_kl(m, &w->a, B);
        if (tau <= 0.0f)
            est_sample_hard(c, logits, B, w->noise, w->z, r);
        else
            stoch_relaxed_sample(&code, w->z, w->noise, logits, B, tau, r);
        vae_decode(m, &w->a, w->z, B);
        vae_recon_loss(m, &w->a, xb, B);
        for (int b = 0; b < B; b++) {
            recon += w->a.recon[b];
            kl += w->a.kl[b];
        }
    }
    out->recon = recon / n;
    out->kl = kl / n;
    out->neg_elbo = out->recon + out->kl;
}

void eval_elbo(const vae_model *m, eval_ws *w, const float *x, int n, rng_t *r,
               elbo_result *out)
{
    elbo_pass(m, w, x, n, 0.0f, r, out);
}

void eval_elbo_relaxed(const vae_model *m, eval_ws *w, const float *x, int n, float tau,
                       rng_t *r, elbo_result *out)
{
    elbo_pass(m, w, x, n, tau, r, out);
}

/* Everything of log q(z|x) - log p(z) that the sample does not change, for
 * each image g of the encoded block: ratio_unit[g][j], what unit j adds when it is
 * 1, and ratio_base[g], the log ratio of the code of all 0s, so that a
 * sample's log ratio is ratio_base plus ratio_unit over its 1s.  A
 * categorical code adds logq - logp of each chosen class (logp = -log K
 * under the uniform prior; base 0); a Bernoulli unit's logs are the float
 * softplus of stoch_log_prob, log q(1) = -softplus(-l), log q(0) =
 * -softplus(l), and the prior's alike, all added in double. */
static void iw_ratio_terms(const vae_model *m, eval_ws *w, int G)
{
    const vae_config *c = &m->cfg;
    int zdim = vae_zdim(c);
    const float *logits = vae_logits(m, &w->a), *eta = vae_prior_logits(m);
    for (int g = 0; g < G; g++) {
        const float *l = logits + (size_t)g * zdim, *lq = w->a.logq + (size_t)g * zdim;
        double *unit = w->ratio_unit + (size_t)g * zdim, base = 0.0;
        for (int j = 0; j < zdim; j++) {
            if (c->latent == LATENT_CATEGORICAL) {
                unit[j] = (double)lq[j] -
                          (eta ? (double)w->a.prior_logp[j] : -log((double)c->K));
                continue;
            }
            double on = -(double)softplusf_stable(-l[j]), off = -(double)softplusf_stable(l[j]);
            on -= eta ? -(double)softplusf_stable(-eta[j]) : -log(2.0);
            off -= eta ? -(double)softplusf_stable(eta[j]) : -log(2.0);
            base += off;
            unit[j] = on - off;
        }
        w->ratio_base[g] = base;
    }
}

/* One chunk of sample rows: row r is sample first_sample + r % per_image
 * of image first_image + r / per_image (its pixels at x + (r / per_image)
 * * D), drawn from its own stream, rng_fork(base, image * S + sample), so
 * that what a row draws depends on neither the chunking nor the threads. */
typedef struct {
    const vae_model *m;
    eval_ws *w;
    const float *x;
    int per_image, first_image, first_sample, S;
    int in_block;    /* the chunk's first image within the encoded block */
    size_t row0;     /* the chunk's first row in the workspace's row buffers */
    const rng_t *base;
    int pass;        /* one of the passes below */
} iw_rows;

enum {
    IW_DRAW,        /* the codes (idx, nnz, neg) and their log ratios */
    IW_FUSED,       /* linear decoder: gather and likelihood in one (sparse_gather_bce_rows) */
    IW_GATHER,      /* the first decoder layer by gathering, into a.dec[0] */
    IW_LIKELIHOOD,  /* -log p(x|z) of the decoded pixel logits */
};

/* The n increasing units of idx (out of zdim) replaced by the others, in
 * increasing order; returns their count.  scratch: [zdim]. */
static int iw_complement(int *idx, int n, int zdim, int *scratch)
{
    int k = 0, t = 0;
    for (int j = 0; j < zdim; j++) {
        if (t < n && idx[t] == j)
            t++;
        else
            scratch[k++] = j;
    }
    memcpy(idx, scratch, sizeof(int) * (size_t)k);
    return k;
}

/* Row `row`'s code and log ratio.  A code with more 1s than 0s (Bernoulli)
 * is kept as its 0s, neg set: the gather then starts from the output of
 * all 1s and subtracts, fewer columns either way. */
static void iw_draw_row(const iw_rows *c, size_t row, int *scratch)
{
    const vae_model *m = c->m;
    eval_ws *w = c->w;
    stoch_layer code = vae_code(&m->cfg);
    int zdim = vae_zdim(&m->cfg), N = m->cfg.N;
    size_t g = row / (size_t)c->per_image;
    rng_t r;
    rng_fork(c->base, (uint64_t)(c->first_image + g) * (uint64_t)c->S +
                          (uint64_t)c->first_sample + row % (size_t)c->per_image, &r);
    size_t b = c->row0 + row;           /* its row in the buffers */
    int *idx = w->idx + b * N;
    size_t e = (size_t)c->in_block + g; /* the image in the encoded block */
    int k = stoch_sample_index(&code, idx, w->probs + e * zdim, w->cum + e * zdim, &r);
    const double *unit = w->ratio_unit + e * zdim;
    double ratio = w->ratio_base[e];
    for (int t = 0; t < k; t++)
        ratio += unit[idx[t]];
    w->ratio[b] = k < 0 ? NAN : ratio;
    w->nnz[b] = k < 0 ? 0 : k;
    w->neg[b] = 2 * k > zdim;
    if (w->neg[b])
        w->nnz[b] = iw_complement(idx, k, zdim, scratch);
}

/* Rows [lo, hi) of the chunk through one pass. */
static void iw_rows_range(size_t lo, size_t hi, void *ctx)
{
    const iw_rows *c = ctx;
    const vae_model *m = c->m;
    eval_ws *w = c->w;
    int D = m->cfg.D, N = m->cfg.N;
    const linear_layer *L0 = &m->dec[0];
    const float *b0 = m->params + L0->b;
    if (c->pass == IW_DRAW) {
        /* A range's own scratch: the rows' ranges never overlap. */
        for (size_t row = lo; row < hi; row++)
            iw_draw_row(c, row, w->unit_scratch + (c->row0 + lo) * N);
        return;
    }
    if (c->pass == IW_FUSED) {
        /* By runs of rows of one image, from the chunk's row0 in the
         * buffers. */
        const int *image_of = w->image_of + c->row0;
        for (size_t row = lo; row < hi;) {
            int g = image_of[row];
            size_t end = row + 1, b = c->row0 + row;
            while (end < hi && image_of[end] == g)
                end++;
            sparse_gather_bce_rows(w->rec + b, w->panels, b0, w->bias_all, w->idx + b * N, N,
                                   w->nnz + b, w->neg + b, (int)(end - row),
                                   c->x + (size_t)g * D, L0->in, D, w->lanes + b * 16);
            row = end;
        }
        return;
    }
    for (size_t row = lo; row < hi; row++) {
        if (c->pass == IW_GATHER)
            sparse_gather_forward(w->a.dec[0] + row * L0->out, w->wt,
                                  w->neg[row] ? w->bias_all : b0, w->idx + row * N, w->nnz[row],
                                  L0->out, m->ndec > 1, w->neg[row]);
        else
            bce_logits_forward(&w->rec[row], w->a.dec[m->ndec - 1] + row * D,
                               c->x + (size_t)w->image_of[row] * D, 1, D);
    }
}

/* A hash of a row's code: its count, sign and indices. */
static uint64_t iw_code_hash(const int *idx, int nnz, int neg)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(nnz * 2 + neg);
    for (int t = 0; t < nnz; t++) {
        h ^= (uint64_t)(unsigned)idx[t];
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    return h;
}

/* Each image's distinct codes among the chunk's rows (per_image rows an
 * image, drawn by IW_DRAW), moved to the front in order of first draw:
 * row u < the returned count holds the u-th distinct code (idx, nnz, neg)
 * and image_of[u] its image; code_of[row] names each sample row's.  Rows
 * with one code get one -log p(x|z), computed once by the same kernels:
 * the bound every row decoded alone would give, bit for bit on the fused
 * linear path; where sgemm decodes, it rounds fewer rows differently.
 * A code is moved only to a row already read, so the compaction works in
 * place.  With w->every_row, every row is its own code. */
static int iw_distinct(eval_ws *w, size_t row0, int rows, int per_image, int N, int *slots)
{
    int *idx0 = w->idx + row0 * N, *nnz0 = w->nnz + row0, *code_of = w->code_of + row0;
    int *image_of = w->image_of + row0;
    unsigned char *neg0 = w->neg + row0;
    if (w->every_row) {
        for (int row = 0; row < rows; row++) {
            code_of[row] = row;
            image_of[row] = row / per_image;
        }
        return rows;
    }
    size_t nslots = iw_slots((size_t)per_image), mask = nslots - 1;
    int distinct = 0;
    for (int row = 0; row < rows; row++) {
        int g = row / per_image;
        if (row % per_image == 0)
            memset(slots, 0xff, sizeof(int) * nslots);
        const int *idx = idx0 + (size_t)row * N;
        int nnz = nnz0[row], neg = neg0[row];
        size_t s = (size_t)iw_code_hash(idx, nnz, neg) & mask;
        int u;
        for (;; s = (s + 1) & mask) {
            u = slots[s];
            if (u < 0 || (nnz0[u] == nnz && neg0[u] == neg &&
                          memcmp(idx0 + (size_t)u * N, idx, sizeof(int) * (size_t)nnz) == 0))
                break;
        }
        if (u < 0) {
            u = distinct++;
            slots[s] = u;
            image_of[u] = g;
            if (u != row) {
                memcpy(idx0 + (size_t)u * N, idx, sizeof(int) * (size_t)nnz);
                nnz0[u] = nnz;
                neg0[u] = (unsigned char)neg;
            }
        }
        code_of[row] = u;
    }
    return distinct;
}

/* Each of the chunk's `rows` sample rows (from row0 in the buffers,
 * per_image a row's image) into its image's running log-sum-exp, the
 * image of row 0 being the encoded block's image e0: the weight -log
 * p(x|z) - (log q - log p) of its code, in sample order. */
static void iw_push_rows(eval_ws *w, size_t row0, int rows, int per_image, int e0)
{
    for (int row = 0; row < rows; row++) {
        int e = e0 + row / per_image;
        lse_push(&w->logw_max[e], &w->logw_sum[e],
                 -w->rec[row0 + (size_t)w->code_of[row0 + row]] - w->ratio[row0 + row]);
    }
}

/* -log p(x|z) of the chunk's first `rows` rows (the distinct codes
 * iw_distinct left there) into rec: the decoder's first layer as a sum of the columns the codes pick when their
 * measured density makes that pay (the rest of a deep decoder by sgemm),
 * else the codes written out and decoded by sgemm; also then when the
 * first weight holds a NaN (finite 0), so that it shows in the figure. */
static void iw_decode(eval_ws *w, iw_rows *job, int rows, int finite)
{
    const vae_model *m = job->m;
    int zdim = vae_zdim(&m->cfg), N = m->cfg.N;
    size_t nnz = 0;
    for (int row = 0; row < rows; row++)
        nnz += (size_t)w->nnz[row];
    if (finite && sparse_pays(nnz, (size_t)rows * zdim)) {
        if (m->ndec == 1) {
            job->pass = IW_FUSED;
            par_split((size_t)rows, w->threads, iw_rows_range, job);
            return;
        }
        job->pass = IW_GATHER;
        par_split((size_t)rows, w->threads, iw_rows_range, job);
        mlp_forward(m->dec + 1, m->ndec - 1, MLP_RELU, m->params, w->a.dec + 1, w->a.dec[0],
                    rows);
    } else {
        for (int row = 0; row < rows; row++) {
            float *z = w->z + (size_t)row * zdim;
            for (int j = 0; j < zdim; j++)
                z[j] = w->neg[row] ? 1.0f : 0.0f;
            for (int t = 0; t < w->nnz[row]; t++)
                z[w->idx[(size_t)row * N + t]] = w->neg[row] ? 0.0f : 1.0f;
        }
        vae_decode(m, &w->a, w->z, rows);
    }
    job->pass = IW_LIKELIHOOD;
    par_split((size_t)rows, w->threads, iw_rows_range, job);
}

/* The images of an encoded block spread over threads, each image whole in
 * one thread (its S sample rows in the thread's own rows, from t * S): a
 * linear decoder's fused path, where an image is little work and a split
 * of its rows would cost the threads a meeting twice an image.  Thread t
 * takes images t, t + T, ...; each image's log-sum-exp runs over its rows
 * in sample order, as the row-parallel path does, so the figure is the
 * same bit for bit. */
typedef struct {
    const vae_model *m;
    eval_ws *w;
    const float *x;   /* the block's first image */
    int first, E, S;  /* the block's first image in the call, its images, samples */
    const rng_t *base;
    long decoded[PAR_MAX_THREADS];
} iw_images;

static void iw_images_each(int t, int T, void *ctx)
{
    iw_images *c = ctx;
    const vae_model *m = c->m;
    eval_ws *w = c->w;
    int D = m->cfg.D, S = c->S;
    size_t row0 = (size_t)t * S;
    int *slots = w->slots + (size_t)t * iw_slots((size_t)S);
    for (int e = t; e < c->E; e += T) {
        iw_rows job = {.m = m, .w = w, .x = c->x + (size_t)e * D, .per_image = S,
                       .first_image = c->first + e, .first_sample = 0, .S = S,
                       .in_block = e, .row0 = row0, .base = c->base, .pass = IW_DRAW};
        iw_rows_range(0, (size_t)S, &job);
        int distinct = iw_distinct(w, row0, S, S, m->cfg.N, slots);
        c->decoded[t] += distinct;
        job.pass = IW_FUSED;
        iw_rows_range(0, (size_t)distinct, &job);
        iw_push_rows(w, row0, S, S, e);
    }
}

/* The rest: the encoded block's E images (x its first, `first` its first
 * in the call) by chunks of `per` images (all S samples of each) or, when
 * S exceeds the chunk, one image over several chunks; each chunk's rows
 * drawn, their distinct codes decoded and pushed into the images'
 * log-sum-exps, each pass split over the threads by rows. */
static void iw_block_rows(const vae_model *m, eval_ws *w, const float *x, int first, int E,
                          int S, int per, const rng_t *base, int finite)
{
    int rows_per_chunk = eval_ws_block(w);
    for (int in = 0; in < E; in += per) {
        int G = E - in < per ? E - in : per;
        for (int done = 0; done < S;) {
            int chunk = S - done;
            if (chunk * G > rows_per_chunk)
                chunk = rows_per_chunk / G;
            int rows = chunk * G;
            iw_rows job = {.m = m, .w = w, .x = x + (size_t)in * m->cfg.D, .per_image = chunk,
                           .first_image = first + in, .first_sample = done, .S = S,
                           .in_block = in, .base = base, .pass = IW_DRAW};
            par_split((size_t)rows, w->threads, iw_rows_range, &job);
            int distinct = iw_distinct(w, 0, rows, chunk, m->cfg.N, w->slots);
            w->decoded += distinct;
            iw_decode(w, &job, distinct, finite);
            iw_push_rows(w, 0, rows, chunk, in);
            done += chunk;
        }
    }
}

double eval_iw(const vae_model *m, eval_ws *w, const float *x, int n, int S, rng_t *r)
{
    const vae_config *c = &m->cfg;
    stoch_layer code = vae_code(c);
    int D = c->D;
    const linear_layer *L0 = &m->dec[0];
    if (m->ndec == 1)
        sparse_panels(w->panels, m->params + L0->w, L0->in, L0->out);
    else
        sparse_transpose(w->wt, m->params + L0->w, L0->in, L0->out);
    sparse_bias_all(w->bias_all, m->params + L0->w, m->params + L0->b, L0->in, L0->out);
    /* Once a call, not once a chunk: the weights do not change within it. */
    int finite = sparse_all_finite(m->params + L0->w, (size_t)L0->in * L0->out);
    /* Every row's stream forks from base; r moves on, so that the next
     * call draws afresh. */
    rng_t base = *r;
    rng_next(r);
    /* Images per chunk when all S samples of an image fit in one chunk;
     * otherwise one image at a time, its samples spread over chunks.  The
     * encoder runs once per image, over blocks of up to EVAL_BLOCK images
     * (whole chunks), and what q and p give the log ratio once; the
     * decoder leaves both alone. */
    int rows_per_chunk = eval_ws_block(w);
    int per = S <= rows_per_chunk ? rows_per_chunk / S : 1;
    int block = rows_per_chunk / per * per;
    if (block < 1)
        block = 1;
    /* A linear decoder on its fused path (every hard code's density is at
     * most 1/2) with room for whole images: images over the threads. */
    int zdim = vae_zdim(c);
    int by_image = m->ndec == 1 && finite && S <= w->rows &&
                   sparse_pays((size_t)zdim / 2, (size_t)zdim);
    int T = by_image ? w->rows / S : 1;
    T = T < w->threads ? T : w->threads;
    T = T < PAR_MAX_THREADS ? T : PAR_MAX_THREADS;
    double total = 0.0;
    w->decoded = 0;
    for (int first = 0; first < n; first += block) {
        int E = n - first < block ? n - first : block;
        vae_encode(m, &w->a, x + (size_t)first * D, E);
        stoch_probs_forward(&code, w->probs, vae_logits(m, &w->a), E, 1.0f);
        stoch_index_cum(&code, w->cum, w->probs, E);
        iw_ratio_terms(m, w, E);
        for (int e = 0; e < E; e++) {
            w->logw_max[e] = -INFINITY;
            w->logw_sum[e] = 0.0;
        }
        if (by_image) {
            iw_images job = {m, w, x + (size_t)first * D, first, E, S, &base, {0}};
            par_each(T < E ? T : E, iw_images_each, &job);
            for (int t = 0; t < PAR_MAX_THREADS; t++)
                w->decoded += job.decoded[t];
        } else {
            iw_block_rows(m, w, x + (size_t)first * D, first, E, S, per, &base, finite);
        }
        for (int e = 0; e < E; e++)
            total -= w->logw_max[e] + log(w->logw_sum[e]) - log((double)S);
    }
    return total / n;
}
