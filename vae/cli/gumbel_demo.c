/* gumbel_demo.c: `gsvae gumbel-demo`, the data of the paper's Figure 1.
 *
 * Draws Gumbel-Softmax samples of one categorical distribution at several
 * temperatures and writes, as CSV, the mean of each class over the samples
 * (a Monte Carlo estimate of the expected value) and the first few samples.
 * Sample j uses the same Gumbel noise at every temperature, so its rows show
 * one draw growing softer as tau rises: the class that wins at tau -> 0 (the
 * Gumbel-Max sample, an exact categorical draw) is the largest entry at every
 * tau.  tau = 0 stands for that limit: the one-hot argmax. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flags.h"
#include "gumbel.h"
#include "rng.h"
#include "util.h"

#define DEMO_MAX_CLASSES 64
#define DEMO_MAX_TAUS 16
#define DEMO_MAX_SAMPLES 10000000L
#define DEMO_MAX_ROWS 1000L

typedef struct {
    const char *probs, *taus, *out;
    long samples, rows, seed;
} demo_opts;

/* A comma-separated list of at most max finite numbers into v. */
static int parse_list(const char *flag, const char *s, double *v, int max, int *n, char *err)
{
    *n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || (*end != ',' && *end != '\0'))
            return errf(err, "--%s: '%s' is not a comma-separated list of numbers", flag, s);
        if (*n == max)
            return errf(err, "--%s: more than %d values", flag, max);
        v[(*n)++] = x;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

/* The checked options: K normalised class probabilities and T temperatures. */
static int demo_check(const demo_opts *o, double *p, int *K, double *tau, int *T, char *err)
{
    if (parse_list("probs", o->probs, p, DEMO_MAX_CLASSES, K, err) != 0)
        return -1;
    if (*K < 2)
        return errf(err, "--probs: '%s': at least 2 classes", o->probs);
    double sum = 0.0;
    for (int k = 0; k < *K; k++) {
        if (p[k] <= 0.0)
            return errf(err, "--probs: '%s': every probability must be > 0", o->probs);
        sum += p[k];
    }
    for (int k = 0; k < *K; k++)
        p[k] /= sum;
    if (parse_list("tau", o->taus, tau, DEMO_MAX_TAUS, T, err) != 0)
        return -1;
    for (int t = 0; t < *T; t++)
        if (tau[t] < 0.0)
            return errf(err, "--tau: '%s': temperatures must be >= 0", o->taus);
    if (o->samples < 1 || o->samples > DEMO_MAX_SAMPLES)
        return errf(err, "--samples: %ld: must lie in 1..%ld", o->samples, DEMO_MAX_SAMPLES);
    if (o->rows < 0 || o->rows > DEMO_MAX_ROWS || o->rows > o->samples)
        return errf(err, "--rows: %ld: must lie in 0..%ld and not exceed --samples", o->rows,
                    DEMO_MAX_ROWS);
    if (o->seed < 0)
        return errf(err, "--seed: %ld: must be >= 0", o->seed);
    return 0;
}

/* The relaxed sample y of logits + g at temperature tau; tau = 0 gives the
 * one-hot argmax (the Gumbel-Max trick). */
static void demo_sample(float *y, const float *logits, const float *g, int K, double tau)
{
    if (tau > 0.0) {
        gumbel_softmax_forward(y, logits, g, 1, K, (float)tau);
        return;
    }
    float score[DEMO_MAX_CLASSES];
    for (int k = 0; k < K; k++)
        score[k] = logits[k] + g[k];
    onehot_argmax(y, score, 1, K);
}

static int demo_write(FILE *f, const demo_opts *o, const double *p, int K, const double *tau,
                      int T, char *err)
{
    float logits[DEMO_MAX_CLASSES], g[DEMO_MAX_CLASSES], y[DEMO_MAX_CLASSES];
    double *mean = calloc((size_t)T * K, sizeof *mean);
    if (!mean)
        return errf(err, "out of memory for %d x %d means", T, K);
    for (int k = 0; k < K; k++)
        logits[k] = (float)log(p[k]);
    rng_t r;
    rng_seed(&r, (uint64_t)o->seed);

    fprintf(f, "kind,tau,sample,class,value\n");
    for (int k = 0; k < K; k++)
        fprintf(f, "probs,,,%d,%.6f\n", k + 1, p[k]);
    for (long j = 0; j < o->samples; j++) {
        gumbel_noise(g, (size_t)K, &r);
        for (int t = 0; t < T; t++) {
            demo_sample(y, logits, g, K, tau[t]);
            for (int k = 0; k < K; k++)
                mean[(size_t)t * K + k] += y[k];
            if (j < o->rows)
                for (int k = 0; k < K; k++)
                    fprintf(f, "sample,%g,%ld,%d,%.6f\n", tau[t], j + 1, k + 1, y[k]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++)
            fprintf(f, "mean,%g,,%d,%.6f\n", tau[t], k + 1,
                    mean[(size_t)t * K + k] / (double)o->samples);
    free(mean);
    return 0;
}

int cmd_gumbel_demo(int argc, char **argv)
{
    demo_opts o = {"0.1,0.3,0.05,0.4,0.15", "0,0.1,0.5,1,10", "-", 100000, 1, 1};
    const flag_def defs[] = {
        {"probs", FLAG_STRING, &o.probs, "P1,P2,..",
         "class probabilities (2 to 64, each > 0; normalised to sum to 1)"},
        {"tau", FLAG_STRING, &o.taus, "T1,T2,..",
         "temperatures (at most 16; 0: the limit tau -> 0, the one-hot Gumbel-Max sample)"},
        {"samples", FLAG_LONG, &o.samples, "N", "samples per temperature behind each mean"},
        {"rows", FLAG_LONG, &o.rows, "M", "samples per temperature written as rows"},
        {"seed", FLAG_LONG, &o.seed, "S", "seed of the Gumbel noise"},
        {"out", FLAG_STRING, &o.out, "FILE", "CSV to write (-: standard output)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    char err[ERR_LEN] = "";
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        flags_usage(stdout, "gsvae gumbel-demo [FLAGS]",
                    "Gumbel-Softmax samples y = softmax((log p + g) / tau), g ~ Gumbel(0,1), of one\n"
                    "categorical distribution p at each temperature (the paper's Figure 1).  Writes\n"
                    "CSV rows kind,tau,sample,class,value: kind 'probs' (p itself), 'mean' (the\n"
                    "mean of each class over --samples draws: the expected value) and 'sample'\n"
                    "(the first --rows draws).  Draw j uses the same noise g at every tau.",
                    defs);
        return 0;
    }
    double p[DEMO_MAX_CLASSES], tau[DEMO_MAX_TAUS];
    int K, T;
    if (rc < 0 || demo_check(&o, p, &K, tau, &T, err) != 0) {
        fprintf(stderr, "gsvae gumbel-demo: %s\n", err);
        return 2;
    }
    if (!strcmp(o.out, "-")) {
        if (demo_write(stdout, &o, p, K, tau, T, err) != 0 || fflush(stdout) != 0 ||
            ferror(stdout)) {
            fprintf(stderr, "gsvae gumbel-demo: %s\n", *err ? err : "standard output: write failed");
            return 1;
        }
        return 0;
    }
    atomic_file af;
    if (af_open(&af, o.out, "w", err) != 0) {
        fprintf(stderr, "gsvae gumbel-demo: %s\n", err);
        return 1;
    }
    if (demo_write(af.f, &o, p, K, tau, T, err) != 0) {
        af_abort(&af);
        fprintf(stderr, "gsvae gumbel-demo: %s\n", err);
        return 1;
    }
    if (af_commit(&af, err) != 0) {
        fprintf(stderr, "gsvae gumbel-demo: %s\n", err);
        return 1;
    }
    return 0;
}
