#include "parallel.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

typedef struct {
    void (*fn)(size_t, size_t, void *);
    void *ctx;
    size_t lo, hi;
} par_job;

/* The workers, started once and kept: a call hands them its jobs and
 * waits, where starting a thread per call cost about 0.1 ms (its stack
 * mapped afresh), more than a small loop's work.  A worker that finishes
 * watches for the next call for a while (par_spin_ns), then sleeps on a
 * condition variable: waking a sleeping core costs this virtual machine
 * tens of microseconds (an interrupt to the halted core), which calls in
 * quick succession (a training step's products, one call per image of the
 * importance-sampled bound) would pay each time.  Worker t (1 <= t <
 * PAR_MAX_THREADS) runs jobs[t] of each call it takes part in.  A child
 * process (Check's tests fork) has none of its parent's workers: pid
 * tells, and it starts its own.
 *
 * How long to watch depends on whether the machine has a core to spare:
 * with the cores to itself, a training step's products come 0.1-0.3 ms
 * apart, and a 0.5 ms watch keeps the worker awake between them (the
 * linear Bernoulli model at 2 threads: 57,000 examples/s against 48,000
 * with a 50 us watch); beside other jobs, a watching worker takes a core
 * they would use (the same run beside two others: 17,000 against 30,000).
 * So the watch is PAR_SPIN_LONG_NS unless, at a look within the last
 * PAR_LOADED_HOLD_NS, more threads were running on the machine than our
 * own awake ones leave cores for; then PAR_SPIN_NS.  A look (every
 * PAR_LOOK_EVERY_NS) reads the running count of /proc/loadavg, which is
 * immediate, not the load average, which lags by a minute; where it cannot
 * be read the watch stays short. */
#define PAR_SPIN_NS 50000L
#define PAR_SPIN_LONG_NS 500000L
#define PAR_LOOK_EVERY_NS 100000000L
#define PAR_LOADED_HOLD_NS 1000000000L
_Static_assert(PAR_MAX_THREADS < 256, "the job count shares a word with the generation");

static struct {
    pid_t pid;                 /* the process the workers belong to; 0: none yet */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_int started;        /* workers 1..started running */
    atomic_int busy;           /* a call is in flight (a nested call runs alone; read by workers) */
    atomic_int sleepers;       /* workers waiting on go (changed under mu) */
    int waiting;               /* the caller waits on done (under mu) */
    /* Calls handed out so far, times 256, plus the jobs of the latest
     * (workers 1..jobs-1 take part): one word, so that a worker reads
     * both at once and one left out of a call never reads what the next
     * call writes. */
    atomic_ulong generation;
    atomic_int pending;        /* workers of this generation not finished */
    par_job jobs[PAR_MAX_THREADS];
    unsigned long born[PAR_MAX_THREADS];  /* generation at each worker's start */
} pool;

static long par_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Threads running on the machine now that are not ours, by the running
 * count of /proc/loadavg ("0.50 0.40 0.30 RUNNING/TOTAL LASTPID") less our
 * awake threads (the caller's, counted as running, and the workers not
 * asleep); -1 where it cannot be read. */
static int par_others_running(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    int running = -1;
    if (f) {
        if (fscanf(f, "%*f %*f %*f %d/", &running) != 1)
            running = -1;
        fclose(f);
    }
    return running < 0 ? -1
                       : running - (atomic_load(&pool.started) - atomic_load(&pool.sleepers) + 1);
}

/* The watch before sleeping, in ns (above).  Any thread may look; two
 * that look at once only look twice (relaxed atomics: a stale value makes
 * one watch the other length). */
static long par_spin_ns(void)
{
    static atomic_long spin = PAR_SPIN_NS, look_at = LONG_MIN / 2, loaded_at = LONG_MIN / 2;
    long now = par_now_ns();
    if (now - atomic_load_explicit(&look_at, memory_order_relaxed) >= PAR_LOOK_EVERY_NS) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int others = par_others_running();
        atomic_store_explicit(&look_at, now, memory_order_relaxed);
        if (others < 0 || cores < 1 || others > cores - (atomic_load(&pool.started) + 1))
            atomic_store_explicit(&loaded_at, now, memory_order_relaxed);
        long since = now - atomic_load_explicit(&loaded_at, memory_order_relaxed);
        atomic_store_explicit(&spin, since < PAR_LOADED_HOLD_NS ? PAR_SPIN_NS : PAR_SPIN_LONG_NS,
                              memory_order_relaxed);
    }
    return atomic_load_explicit(&spin, memory_order_relaxed);
}

/* Until *gen differs from seen (returns 1) or par_spin_ns() pass (0). */
static int par_watch(atomic_ulong *gen, unsigned long seen)
{
    long until = par_now_ns() + par_spin_ns();
    for (int k = 0;; k++) {
        if (atomic_load_explicit(gen, memory_order_acquire) != seen)
            return 1;
        if ((k & 63) == 63 && par_now_ns() > until)
            return 0;
        __builtin_ia32_pause();
    }
}

static void *par_worker(void *arg)
{
    int t = (int)(size_t)arg;
    /* The generation when it was started: a call handed out before this
     * thread first ran is still its to take. */
    unsigned long seen = pool.born[t];
    for (;;) {
        if (!par_watch(&pool.generation, seen)) {
            pthread_mutex_lock(&pool.mu);
            pool.sleepers++;
            while (atomic_load(&pool.generation) == seen)
                pthread_cond_wait(&pool.go, &pool.mu);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.mu);
        }
        seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        if ((unsigned long)t >= (seen & 255))
            continue;
        par_job j = pool.jobs[t];
        j.fn(j.lo, j.hi, j.ctx);
        if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool.mu);
            if (pool.waiting)
                pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

/* Workers 1..want-1 running, as far as they start; returns how many jobs
 * (the caller's included) the pool can run at once. */
static int pool_ready(int want)
{
    if (pool.pid != getpid()) {
        memset(&pool, 0, sizeof pool);
        pthread_mutex_init(&pool.mu, NULL);
        pthread_cond_init(&pool.go, NULL);
        pthread_cond_init(&pool.done, NULL);
        pool.pid = getpid();
    }
    while (pool.started + 1 < want) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.born[pool.started + 1] = atomic_load(&pool.generation);
        int ok = pthread_create(&tid, &attr, par_worker, (void *)(size_t)(pool.started + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok)
            break;
        pool.started++;
    }
    return pool.started + 1 < want ? pool.started + 1 : want;
}

/* Run jobs[0..threads) (threads >= 2): the calling thread runs the first,
 * the pool's workers the others; what the pool cannot take (a worker that
 * failed to start, or a call made while another is in flight) the caller
 * runs after its own. */
static void par_run(par_job *jobs, int threads)
{
    int n = 1;
    if (pool.pid != getpid() || !pool.busy) {
        n = pool_ready(threads);
        if (n > 1) {
            pool.busy = 1;
            memcpy(pool.jobs, jobs, sizeof(par_job) * (size_t)n);
            atomic_store(&pool.pending, n - 1);
            pthread_mutex_lock(&pool.mu);
            unsigned long g = atomic_load(&pool.generation);
            atomic_store_explicit(&pool.generation, (g & ~255UL) + 256 + (unsigned long)n,
                                  memory_order_release);
            if (pool.sleepers)
                pthread_cond_broadcast(&pool.go);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    jobs[0].fn(jobs[0].lo, jobs[0].hi, jobs[0].ctx);
    for (int t = n; t < threads; t++)
        jobs[t].fn(jobs[t].lo, jobs[t].hi, jobs[t].ctx);
    if (n > 1) {
        long until = par_now_ns() + par_spin_ns();
        while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0 &&
               par_now_ns() < until)
            __builtin_ia32_pause();
        pthread_mutex_lock(&pool.mu);
        pool.waiting = 1;
        while (atomic_load(&pool.pending) > 0)
            pthread_cond_wait(&pool.done, &pool.mu);
        pool.waiting = 0;
        pthread_mutex_unlock(&pool.mu);
        pool.busy = 0;
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

typedef struct {
    void (*fn)(int t, int threads, void *ctx);
    void *ctx;
} par_each_job;

static void par_each_range(size_t lo, size_t hi, void *ctx)
{
    const par_each_job *j = ctx;
    j->fn((int)lo, (int)hi, j->ctx);
}

void par_each(int threads, void (*fn)(int t, int threads, void *ctx), void *ctx)
{
    if (threads > PAR_MAX_THREADS)
        threads = PAR_MAX_THREADS;
    if (threads <= 1) {
        fn(0, 1, ctx);
        return;
    }
    /* Job t's range is (t, threads): par_each_range hands both on. */
    par_each_job j = {fn, ctx};
    par_job jobs[PAR_MAX_THREADS];
    for (int t = 0; t < threads; t++)
        jobs[t] = (par_job){par_each_range, &j, (size_t)t, (size_t)threads};
    par_run(jobs, threads);
}

static atomic_int par_nthreads = 1; /* read by workers whose jobs call par_sgemm */

void par_set_threads(int threads)
{
    par_nthreads = threads < 1 ? 1 : threads > PAR_MAX_THREADS ? PAR_MAX_THREADS : threads;
    openblas_set_num_threads(1);
}

int par_threads(void)
{
    return par_nthreads;
}

typedef struct {
    int ta, tb, M, N, K, by_rows;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
} par_gemm_job;

/* One block of par_sgemm: rows [lo, hi) of C (and of op(A)), or its
 * columns (and those of op(B)). */
static void par_gemm_block(size_t lo, size_t hi, void *ctx)
{
    const par_gemm_job *g = ctx;
    const float *A = g->A, *B = g->B;
    float *C = g->C;
    int M = g->M, N = g->N;
    if (g->by_rows) {
        A += g->ta ? lo : lo * (size_t)g->lda; /* op(A) row i: A's row i, or column i */
        C += lo * (size_t)g->ldc;
        M = (int)(hi - lo);
    } else {
        B += g->tb ? lo * (size_t)g->ldb : lo; /* op(B) column j: B's column j, or row j */
        C += lo;
        N = (int)(hi - lo);
    }
    if (M > 0 && N > 0)
        cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                    g->tb ? CblasTrans : CblasNoTrans, M, N, g->K, g->alpha, A, g->lda, B,
                    g->ldb, g->beta, C, g->ldc);
}

void par_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc)
{
    par_gemm_job g = {ta, tb, M, N, K, 1, alpha, beta, A, B, C, lda, ldb, ldc};
    int T = par_nthreads;
    if (T <= 1 || pool.busy || (long)M * N * K < PAR_SGEMM_MIN) {
        par_gemm_block(0, (size_t)M, &g);
        return;
    }
    if (M >= 32 * T) {
        par_split((size_t)M, T, par_gemm_block, &g);
        return;
    }
    /* Columns in blocks of a multiple of 16 (whole cache lines of C's rows),
     * the last block the rest. */
    g.by_rows = 0;
    size_t tiles = ((size_t)N + 15) / 16;
    if (tiles < (size_t)T) {
        par_gemm_block(0, (size_t)N, &g);
        return;
    }
    size_t chunk = (tiles + (size_t)T - 1) / (size_t)T * 16;
    par_chunks((size_t)N, T, chunk, par_gemm_block, &g);
}
