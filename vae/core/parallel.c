#include "parallel.h"

#include <pthread.h>

typedef struct {
    void (*fn)(size_t, size_t, void *);
    void *ctx;
    size_t lo, hi;
} par_job;

static void *par_worker(void *arg)
{
    par_job *j = arg;
    j->fn(j->lo, j->hi, j->ctx);
    return NULL;
}

/* Run jobs[0..threads) (threads >= 2): the calling thread runs the first,
 * one new thread each of the others (or the caller, if one fails to
 * start). */
static void par_run(par_job *jobs, int threads)
{
    pthread_t tid[PAR_MAX_THREADS];
    int started[PAR_MAX_THREADS] = {0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, par_worker, &jobs[t]) == 0;
    jobs[0].fn(jobs[0].lo, jobs[0].hi, jobs[0].ctx);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            jobs[t].fn(jobs[t].lo, jobs[t].hi, jobs[t].ctx);
    }
}

/* [0, n) in `threads` ranges of chunk elements each (the last ends at n). */
static void par_chunks(size_t n, int threads, size_t chunk,
                       void (*fn)(size_t lo, size_t hi, void *ctx), void *ctx)
{
    par_job jobs[PAR_MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        size_t lo = chunk * (size_t)t, hi = t == threads - 1 ? n : lo + chunk;
        jobs[t] = (par_job){fn, ctx, lo < n ? lo : n, hi < n ? hi : n};
    }
    par_run(jobs, threads);
}

void par_ranges(size_t n, int threads, void (*fn)(size_t lo, size_t hi, void *ctx), void *ctx)
{
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    if (threads <= 1 || n < 4096) {
        fn(0, n, ctx);
        return;
    }
    /* ceil(n / threads), rounded up to whole cache lines. */
    par_chunks(n, threads, ((n + (size_t)threads - 1) / (size_t)threads + 63) / 64 * 64, fn, ctx);
}

void par_split(size_t n, int threads, void (*fn)(size_t lo, size_t hi, void *ctx), void *ctx)
{
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    if ((size_t)threads > n)
        threads = (int)n;
    if (threads <= 1) {
        fn(0, n, ctx);
        return;
    }
    par_chunks(n, threads, (n + (size_t)threads - 1) / (size_t)threads, fn, ctx);
}
