/* parallel.h: split an elementwise loop over a few threads.  Each thread
 * owns a contiguous range, so the results are bit-identical to the
 * single-threaded loop whatever the thread count. */
#ifndef GSVAE_PARALLEL_H
#define GSVAE_PARALLEL_H

#include <stddef.h>

#define PAR_MAX_THREADS 16

/* Call fn(lo, hi, ctx) over [0, n) cut into `threads` ranges whose bounds
 * are multiples of 64 elements (whole cache lines); the calling thread runs
 * the first range.  threads <= 1, or a failure to start a thread, runs the
 * rest in the caller. */
void par_ranges(size_t n, int threads, void (*fn)(size_t lo, size_t hi, void *ctx), void *ctx);

/* The same over [0, n) cut into min(threads, n) ranges of near-equal
 * size, with no minimum: for loops of few, large items (the rows of a
 * product, each hundreds of operations). */
void par_split(size_t n, int threads, void (*fn)(size_t lo, size_t hi, void *ctx), void *ctx);

/* fn(t, threads, ctx) for each t < threads, each on a thread of its own
 * (the caller's for t = 0), for work the callee divides by t itself;
 * threads <= 1 runs fn(0, 1, ctx) in the caller. */
void par_each(int threads, void (*fn)(int t, int threads, void *ctx), void *ctx);

/* The thread count of the numerical core, process-wide as OpenBLAS's own:
 * par_sgemm and the kernels that split their rows read it.  A command sets
 * it once from --threads (par_set_threads clamps it to [1,
 * PAR_MAX_THREADS]) before it computes; 1 until then.  It also sets
 * OpenBLAS to one thread: the products are split here, each part a
 * single-threaded sgemm, so that OpenBLAS's own threads (which spin-wait,
 * and crawl on a machine whose cores other jobs share) never start. */
void par_set_threads(int threads);
int par_threads(void);

/* C[M][N] = alpha op(A)[M][K] op(B)[K][N] + beta C, row-major, as
 * cblas_sgemm with op = transpose where ta (tb) is set and lda, ldb, ldc its
 * leading dimensions, cut into par_threads() blocks of rows of C (of
 * columns when C has fewer rows than 32 a thread), each block one
 * single-threaded sgemm.  On one thread it is that one sgemm, bit for bit.
 * On more, each element is the same sum over K, but OpenBLAS's kernels
 * round an element at a tile's edge differently from one inside it, and
 * the cut moves the edges: the result equals one sgemm's to float rounding
 * (tests/test_parallel.c), and is the same bits on every call with the same
 * thread count.  Products under PAR_SGEMM_MIN multiply-adds, and calls
 * made from inside a parallel loop, run whole in the caller. */
#define PAR_SGEMM_MIN (1L << 17)
void par_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);

#endif
