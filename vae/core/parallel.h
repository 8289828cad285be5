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

#endif
