/* evaluate.h: test-set figures of a model.
 *
 * Both use hard (truly discrete) samples of the code: the relaxation is a
 * training device, the model being evaluated is the discrete one. */
#ifndef GSVAE_EVALUATE_H
#define GSVAE_EVALUATE_H

#include "model.h"
#include "rng.h"

typedef struct {
    double neg_elbo, recon, kl;  /* nats per image, means over the set */
} elbo_result;

/* Images the importance-sampled bound encodes at once (fewer when the
 * workspace has fewer rows): fixed, so that the encoder's sgemm rounds
 * alike whatever the workspace's rows. */
#define EVAL_BLOCK 1000

/* Evaluation workspace: buffers for `rows` decoder rows (R), and
 * activations for B = min(R, EVAL_BLOCK) rows or images (the one-sample
 * bounds' rows, the images the bound encodes at once); the buffers below
 * share one block.  The importance-sampled bound draws
 * its codes as the indices of their 1s, decodes each distinct code of an
 * image once (a trained q(z|x) draws the same code many times in 1000
 * samples), and decodes by gathering columns of the decoder's first weight
 * (sparse.h), where the code's measured density makes that pay; its work
 * is split over `threads` threads (a linear decoder's by whole images,
 * when the rows hold an image's samples per thread: eval_ws_rows; others'
 * by rows), with results that do not depend on their number. */
typedef struct {
    int rows;
    int threads;               /* 1 after eval_ws_init; the caller may raise it */
    int every_row;             /* 1: decode every sample row, repeats of a code too
                                  (0 after eval_ws_init; tests compare the two) */
    long decoded;              /* rows the last eval_iw decoded: its distinct codes */
    vae_acts a;
    float *noise;              /* [B][zdim] noise of the samples */
    float *z;                  /* [B][zdim] the codes decoded */
    float *logits_rep;         /* [B][zdim] logits, one copy per row (gsvae sample's prior) */
    double *logw_max, *logw_sum;  /* [B] running log-sum-exp of each image's weights */
    float *probs;              /* [B][zdim] q(z|x) of each image of an encoded block */
    float *cum;                /* [B][zdim] their stoch_index_cum */
    double *ratio_unit;        /* [B][zdim] log q - log p added by each unit that is 1 */
    double *ratio_base;        /* [B] log q - log p of the code of all 0s (Bernoulli), 0 */
    int *idx, *nnz;            /* [R][N], [R]: the units that are 1 in each sample row, or
                                  where neg is set the units that are 0 */
    unsigned char *neg;        /* [R] */
    int *unit_scratch;         /* [R][N] */
    float *bias_all;           /* [first decoder layer's out]: sparse_bias_all */
    double *rec, *ratio;       /* [R] each sample row's -log p(x|z), log q(z|x) - log p(z) */
    float *wt;                 /* [zdim][first decoder layer's out]: its weight transposed
                                  (deep decoder) */
    float *panels;             /* the same in panels (linear decoder; linear_panels) */
    float *lanes;              /* [R][16] scratch of sparse_gather_bce_rows */
    int *code_of;              /* [R] each sample row's distinct code (its decoded row) */
    int *image_of;             /* [R] each decoded row's image within the chunk */
    int *slots;                /* open-addressing tables of an image's codes, one a thread */
    void *block;
} eval_ws;

int eval_ws_init(eval_ws *w, const vae_model *m, int rows, char *err);
/* The rows a workspace for S importance samples on `threads` threads
 * wants: S per thread where a linear decoder lets the threads take whole
 * images (eval_iw), S otherwise. */
int eval_ws_rows(const vae_model *m, int S, int threads);
/* B: the rows a one-pass decode of the workspace (its activations) holds. */
static inline int eval_ws_block(const eval_ws *w)
{
    return w->rows < EVAL_BLOCK ? w->rows : EVAL_BLOCK;
}
void eval_ws_free(eval_ws *w);

/* Single-sample negative ELBO over n images x (n x D, already binarized). */
void eval_elbo(const vae_model *m, eval_ws *w, const float *x, int n, rng_t *r,
               elbo_result *out);
/* The same bound with the relaxed code at temperature tau fed to the
 * decoder (Gumbel-Softmax or Binary Concrete): the objective the relaxed
 * estimators train, and what published relaxed-VAE code reports. */
void eval_elbo_relaxed(const vae_model *m, eval_ws *w, const float *x, int n, float tau,
                       rng_t *r, elbo_result *out);
/* Importance-sampled -log p(x) with S samples from q(z|x) per image:
 * -log (1/S) sum_s p(x|z_s) p(z_s) / q(z_s|x), a log-sum-exp kept stable
 * with a running maximum, p(z) the model's prior (uniform or learned).  In
 * expectation an upper bound on -log p(x) that falls to it as S grows
 * (Burda et al. 2016).  Returns the mean over the n images.  Each sample
 * row draws from its own stream, forked from r by (image, sample), and r
 * moves on by one draw; so the figure does not depend on w->threads, and
 * on w->rows only through the rounding of sgemm (the encoder's, and a deep
 * decoder's over each chunk's distinct codes). */
double eval_iw(const vae_model *m, eval_ws *w, const float *x, int n, int S, rng_t *r);

#endif
