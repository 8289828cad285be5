/* gradvar.c: `gsvae gradvar`: the variance and bias of each gradient
 * estimator on one batch of test images.
 *
 * For a checkpoint's model or a freshly initialised one, every estimator
 * draws S estimates of the gradient of the batch's mean negative ELBO (its
 * reconstruction term, plus the analytic KL that all share) with respect to
 * the encoder's parameters (--params: encoder, decoder or all).  Reported
 * per estimator: the total variance (sum over coordinates of the sample
 * variance), the bias ||mean - exact|| and ||mean - exact|| / ||exact||
 * where `exact` can enumerate the code, the Monte Carlo floor
 * sqrt(total variance / S) that an unbiased estimator's bias norm falls to,
 * and the mean cosine of the estimates to the exact gradient (or, where
 * exact is infeasible, to their own mean, from a second pass that redraws
 * the same samples).  vimco estimates the gradient of the K-sample bound
 * (--bound-samples K), not the ELBO's, so it is always compared with its
 * own mean.
 *
 * Estimators with a baseline (sf, muprop) first take --warmup draws in which
 * their moving averages and baseline network adapt to the batch (rebar: its
 * eta and temperature; relax: those and its surrogate network); then the
 * state is frozen so that the S draws are independent.  Variance
 * normalisation is off here: it rescales the score term by a running
 * statistic and would turn a scale into apparent bias. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "estimator.h"
#include "outputs.h"
#include "parallel.h"
#include "task_vae.h"
#include "util.h"

typedef struct {
    const char *ckpt, *data_dir, *latent_type, *latent, *hidden, *estimators, *baseline;
    const char *params, *binarize;
    int batch, samples, warmup, csv;
    int bound_samples;  /* K of vimco's K-sample bound */
    long seed;
    double tau;
    int threads;   /* 0: every online core (driver_threads) */
} gv_opts;

/* Figures of one estimator. */
typedef struct {
    double total_var, bias, rel_bias, floor, mean_cos, mean_norm, ms;
    int finite;
} gv_result;

typedef struct {
    vae_model m;
    vae_acts a;
    float *x;
    int B;
    size_t lo, hi;       /* coordinates [lo, hi) of m.grads */
    double *mean, *m2, *exact;
} gv_run;

/* Split "a,b,c" into estimator entries (at most max); -1 with a message. */
static int parse_estimators(const char *spec, const estimator **out, int max, int *n,
                            char *err)
{
    *n = 0;
    const char *s = spec;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char name[64];
        if (len == 0 || len >= sizeof name)
            return errf(err, "--estimators '%s': expected names separated by commas", spec);
        memcpy(name, s, len);
        name[len] = '\0';
        const estimator *e = estimator_find(name);
        if (!e)
            return errf(err, "--estimators: unknown estimator '%s' (see gsvae train --help)",
                        name);
        if (*n == max)
            return errf(err, "--estimators '%s': too many names", spec);
        out[(*n)++] = e;
        s = end ? end + 1 : s + len;
    }
    if (*n == 0)
        return errf(err, "--estimators: empty list");
    return 0;
}

static double dot_range(const float *g, const double *v, size_t lo, size_t hi)
{
    double s = 0.0;
    for (size_t i = lo; i < hi; i++)
        s += g[i] * v[i - lo];
    return s;
}

static double norm_range(const float *g, size_t lo, size_t hi)
{
    double s = 0.0;
    for (size_t i = lo; i < hi; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

static double norm_vec(const double *v, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

/* Draw o->samples estimates with estimator e and fill res. */
static int measure(gv_run *G, const gv_opts *o, const estimator *e, const est_options *eo,
                   gv_result *res, char *err)
{
    est_state s;
    est_options eok = *eo;
    eok.samples = e->k_sample == EST_K_REQUIRED ? o->bound_samples : 1;
    eok.learns_cv = e->learns_cv;
    if (est_state_init(&s, &G->m, G->B, &eok, err) != 0)
        return -1;
    /* A K-sample bound's gradient is not the ELBO's: it is compared with
     * its own mean, as where exact is infeasible. */
    const double *exact = e->k_sample == EST_K_REQUIRED ? NULL : G->exact;
    size_t P = G->hi - G->lo;
    rng_t r;
    rng_seed(&r, (uint64_t)o->seed + 1);
    est_ctx c = {&G->m, &G->a, &s, G->x, G->B, (float)o->tau, &r};
    memset(res, 0, sizeof *res);
    res->finite = 1;
    if ((e->uses_baseline && s.baseline != EST_BASELINE_NONE) || e->learns_cv)
        for (int w = 0; w < o->warmup; w++)
            est_elbo_gradient(e, &c);
    s.frozen = 1;
    rng_t r0 = r;
    /* exact is deterministic: two draws show its zero variance. */
    int S = e->id != STOCH_EXACT ? o->samples : 2;
    memset(G->mean, 0, P * sizeof(double));
    memset(G->m2, 0, P * sizeof(double));
    double exact_norm = exact ? norm_vec(exact, P) : 0.0, cos_sum = 0.0;
    double t0 = now_seconds();
    for (int i = 0; i < S; i++) {
        if (!isfinite(est_elbo_gradient(e, &c)))
            res->finite = 0;
        const float *g = G->m.grads + G->lo;
        /* Welford's update, per coordinate. */
        for (size_t j = 0; j < P; j++) {
            double d = g[j] - G->mean[j];
            G->mean[j] += d / (i + 1);
            G->m2[j] += d * (g[j] - G->mean[j]);
        }
        if (exact) {
            double gn = norm_range(G->m.grads, G->lo, G->hi);
            if (gn > 0 && exact_norm > 0)
                cos_sum += dot_range(G->m.grads, exact, G->lo, G->hi) / (gn * exact_norm);
        }
    }
    res->ms = 1e3 * (now_seconds() - t0) / S;
    for (size_t j = 0; j < P; j++)
        res->total_var += G->m2[j] / (S - 1);
    res->mean_norm = norm_vec(G->mean, P);
    res->floor = sqrt(res->total_var / S);
    if (exact) {
        double b = 0.0;
        for (size_t j = 0; j < P; j++)
            b += (G->mean[j] - exact[j]) * (G->mean[j] - exact[j]);
        res->bias = sqrt(b);
        res->rel_bias = exact_norm > 0 ? res->bias / exact_norm : NAN;
    } else {
        /* Redraw the same samples (same generator state, frozen estimator
         * state) to take cosines to the mean now known. */
        r = r0;
        for (int i = 0; i < S; i++) {
            est_elbo_gradient(e, &c);
            double gn = norm_range(G->m.grads, G->lo, G->hi);
            if (gn > 0 && res->mean_norm > 0)
                cos_sum += dot_range(G->m.grads, G->mean, G->lo, G->hi) / (gn * res->mean_norm);
        }
        res->bias = res->rel_bias = NAN;
    }
    res->mean_cos = cos_sum / S;
    est_state_free(&s);
    return 0;
}

static void usage_error(const char *msg)
{
    fprintf(stderr, "gsvae gradvar: %s\n", msg);
}

int cmd_gradvar(int argc, char **argv)
{
    gv_opts o = {NULL, "data/mnist", NULL, NULL, NULL, NULL, "mean", "encoder", NULL,
                 100, 200, 100, 0, 2, 1, 1.0, 0};
    const flag_def defs[] = {
        {"ckpt", FLAG_STRING, &o.ckpt, "FILE", "checkpoint written by gsvae train (else a fresh model)"},
        {"data", FLAG_STRING, &o.data_dir, "DIR", "directory of the MNIST IDX files"},
        {"latent-type", FLAG_STRING, &o.latent_type, "TYPE",
         "fresh model: categorical or bernoulli (default categorical)"},
        {"latent", FLAG_STRING, &o.latent, "SPEC", "fresh model: NxK or N (default 20x10 or 200)"},
        {"hidden", FLAG_STRING, &o.hidden, "W1,W2",
         "fresh model: encoder widths (default 512,256; none: linear)"},
        {"seed", FLAG_LONG, &o.seed, "N", "seed of the fresh model and of the draws"},
        {"batch", FLAG_INT, &o.batch, "B", "test images in the batch (the first B)"},
        {"binarize", FLAG_STRING, &o.binarize, "MODE",
         "test-set binarization (default: the checkpoint's, else dynamic)"},
        {"samples", FLAG_INT, &o.samples, "S", "gradient estimates per estimator"},
        {"estimators", FLAG_STRING, &o.estimators, "A,B,C",
         "estimators to measure (default: all; exact only where feasible)"},
        {"tau", FLAG_DOUBLE, &o.tau, "T", "temperature (gumbel, st-gumbel; annealed-st slope 1/T)"},
        {"baseline", FLAG_STRING, &o.baseline, "MODE", "baseline of sf and muprop: none, mean or learned"},
        {"warmup", FLAG_INT, &o.warmup, "W",
         "draws that adapt sf/muprop baselines (rebar, relax: their control variates) before "
         "measuring"},
        {"bound-samples", FLAG_INT, &o.bound_samples, "K",
         "vimco: K of the K-sample bound whose gradient it estimates (compared with its own "
         "mean, not with the ELBO's exact gradient)"},
        {"params", FLAG_STRING, &o.params, "PART",
         "gradient coordinates: encoder, decoder or all (with a learned prior's)"},
        {"csv", FLAG_BOOL, &o.csv, NULL, "print CSV instead of a table"},
        {"threads", FLAG_INT, &o.threads, "T", "threads of the matrix products (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    char err[ERR_LEN];
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        flags_usage(stdout, "gsvae gradvar [--ckpt FILE | --latent-type T --latent S --hidden W] [FLAGS]",
                    "Variance, bias against the exact gradient (where the code is small enough\n"
                    "to enumerate) and cosine of each estimator's gradient of the mean -ELBO of\n"
                    "one batch of test images, w.r.t. the encoder's parameters by default.\n"
                    "sf/muprop baselines adapt for --warmup draws, then stay frozen; variance\n"
                    "normalisation is off so that every estimate has the gradient's scale.",
                    defs);
        return 0;
    }
    if (rc < 0) {
        usage_error(err);
        return 2;
    }
    est_options eo;
    est_options_default(&eo);
    eo.var_norm = 0;
    eo.baseline_seed = (uint64_t)o.seed ^ 0x6e76696c00000000ull;
    if (est_baseline_parse(o.baseline, &eo.baseline) != 0) {
        fprintf(stderr, "gsvae gradvar: --baseline '%s': expected none, mean or learned\n",
                o.baseline);
        return 2;
    }
    if (o.batch < 1 || o.batch > 10000 || o.samples < 2 || o.samples > 10000000 ||
        o.warmup < 0 || o.seed < 0 || !(o.tau > 0) || o.threads < 0 || o.threads > 256 ||
        o.bound_samples < 2 || o.bound_samples > 1000) {
        usage_error("--batch must lie in 1..10000, --samples in 2..10000000, --warmup and "
                    "--seed be >= 0, --tau > 0, --threads in 0..256 and --bound-samples in "
                    "2..1000");
        return 2;
    }
    par_set_threads(driver_threads(o.threads));
    if (strcmp(o.params, "encoder") && strcmp(o.params, "decoder") && strcmp(o.params, "all")) {
        fprintf(stderr, "gsvae gradvar: --params '%s': expected encoder, decoder or all\n",
                o.params);
        return 2;
    }
    if (o.ckpt && (o.latent_type || o.latent || o.hidden)) {
        usage_error("--latent-type, --latent and --hidden describe a fresh model; a --ckpt "
                    "brings its own");
        return 2;
    }

    gv_run G;
    memset(&G, 0, sizeof G);
    run_opts to;
    vae_task *vt = NULL;
    char *text = NULL;
    int status = 1;
    float *x = NULL;
    dataset d;
    memset(&d, 0, sizeof d);
    const estimator *list[32];
    int nest = 0;
    if (o.ckpt) {
        if (vae_task_load_model(o.ckpt, &to, &vt, &text, &G.m, err) != 0)
            goto fail;
    } else {
        if (!(vt = calloc(1, sizeof *vt))) {
            errf(err, "out of memory");
            goto fail;
        }
        driver_defaults(&task_vae, &to, vt);
        if (o.latent_type)
            vt->latent_type = o.latent_type;
        vt->latent = o.latent;
        if (o.hidden)
            vt->hidden = o.hidden;
        rng_t r;
        rng_seed(&r, (uint64_t)o.seed);
        if (vae_task_check(&to, vt, err) != 0 || vae_init(&G.m, &vt->cfg, &r, err) != 0)
            goto fail;
    }
    const vae_config *cfg = &G.m.cfg;
    if (o.estimators) {
        if (parse_estimators(o.estimators, list, 32, &nest, err) != 0)
            goto fail;
        for (int i = 0; i < nest; i++)
            if (est_check(list[i], cfg, err) != 0)
                goto fail;
    } else {
        for (const estimator *e = estimator_list(); e->run && nest < 32; e++)
            if (est_check(e, cfg, err) == 0)
                list[nest++] = e;
    }
    binarize_mode bin;
    const char *mode = o.binarize ? o.binarize : o.ckpt ? to.binarize : "dynamic";
    if (driver_eval_binarize(mode, &bin) != 0) {
        errf(err, "--binarize '%s': expected dynamic, fixed, threshold or none", mode);
        goto fail;
    }
    if (dataset_load_split(o.data_dir, "test", &d, err) != 0)
        goto fail;
    if ((int)d.dim != cfg->D) {
        errf(err, "%s: images have %u pixels, the model expects %d", o.data_dir, d.dim, cfg->D);
        goto fail;
    }
    if (!(x = driver_eval_images(&d, bin, o.batch, &G.B, err)))
        goto fail;
    G.x = x;
    if (!strcmp(o.params, "encoder")) {
        G.lo = G.m.enc[0].w;
        G.hi = G.m.enc[G.m.nenc - 1].b + (size_t)G.m.enc[G.m.nenc - 1].out;
    } else if (!strcmp(o.params, "decoder")) {
        G.lo = G.m.dec[0].w;
        G.hi = G.m.dec[G.m.ndec - 1].b + (size_t)G.m.dec[G.m.ndec - 1].out;
    } else {
        /* all: a learned prior's logits (after the decoder) included. */
        G.lo = 0;
        G.hi = G.m.nparams;
    }
    size_t P = G.hi - G.lo;
    /* Room for vimco's K rows per image. */
    if (vae_acts_init(&G.a, &G.m, G.B * o.bound_samples, err) != 0 ||
        !(G.mean = xcalloc(P, sizeof(double), err, "gradvar buffers")) ||
        !(G.m2 = xcalloc(P, sizeof(double), err, "gradvar buffers")))
        goto fail;
    const estimator *ex = estimator_find("exact");
    if (est_check(ex, cfg, err) == 0) {
        est_state s;
        rng_t r;
        rng_seed(&r, (uint64_t)o.seed + 1);
        if (!(G.exact = xcalloc(P, sizeof(double), err, "gradvar buffers")) ||
            est_state_init(&s, &G.m, G.B, &eo, err) != 0)
            goto fail;
        est_ctx c = {&G.m, &G.a, &s, G.x, G.B, (float)o.tau, &r};
        est_elbo_gradient(ex, &c);
        for (size_t j = 0; j < P; j++)
            G.exact[j] = G.m.grads[G.lo + j];
        est_state_free(&s);
    }
    err[0] = '\0';

    char lat[64], hid[64];
    vae_format_latent(cfg, lat, sizeof lat);
    vae_format_hidden(cfg, hid, sizeof hid);
    if (o.csv) {
        printf("estimator,latent_type,latent,hidden,batch,samples,params,coords,tau,baseline,"
               "total_var,bias_norm,rel_bias,noise_floor,mean_cos,cos_ref,mean_norm,"
               "ms_per_estimate\n");
    } else {
        printf("%s %s code, hidden %s, %s; %d test images, %d estimates per estimator\n",
               lat, stoch_latent_name(cfg->latent), hid, o.ckpt ? o.ckpt : "fresh model", G.B,
               o.samples);
        printf("gradient of the mean -ELBO w.r.t. the %s parameters (%zu coordinates); tau %g; "
               "sf/muprop baseline %s%s\n",
               o.params, P, o.tau, o.baseline,
               eo.baseline != EST_BASELINE_NONE ? " (frozen after warm-up, no variance "
                                                  "normalisation)"
                                                : "");
        printf("cosines to the %s; noise floor = sqrt(total var / S)\n\n",
               G.exact ? "exact gradient" : "estimator's own mean (exact is infeasible)");
        printf("%-12s %12s %12s %9s %12s %9s %12s %9s\n", "estimator", "total_var", "bias_norm",
               "rel_bias", "noise_floor", "mean_cos", "mean_norm", "ms/est");
    }
    for (int i = 0; i < nest; i++) {
        gv_result res;
        if (measure(&G, &o, list[i], &eo, &res, err) != 0)
            goto fail;
        if (o.csv)
            printf("%s,%s,%s,%s,%d,%d,%s,%zu,%g,%s,%.6e,%.6e,%.6e,%.6e,%.6f,%s,%.6e,%.4f\n",
                   stoch_estimator_name(list[i]->id), stoch_latent_name(cfg->latent), lat, hid,
                   G.B, o.samples,
                   o.params, P, o.tau, list[i]->uses_baseline ? o.baseline : "-", res.total_var,
                   res.bias, res.rel_bias, res.floor, res.mean_cos,
                   G.exact && list[i]->k_sample != EST_K_REQUIRED ? "exact" : "mean",
                   res.mean_norm, res.ms);
        else
            printf("%-12s %12.4e %12.4e %9.4f %12.4e %9.4f %12.4e %9.3f%s%s\n",
                   stoch_estimator_name(list[i]->id),
                   res.total_var, res.bias, res.rel_bias, res.floor, res.mean_cos,
                   res.mean_norm, res.ms, res.finite ? "" : "  (non-finite loss)",
                   list[i]->k_sample == EST_K_REQUIRED ? "  (K-sample bound: cosine to its own mean)"
                                                       : "");
        fflush(stdout);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "gsvae gradvar: %s\n", err);
done:
    free(G.mean);
    free(G.m2);
    free(G.exact);
    vae_acts_free(&G.a);
    vae_free(&G.m);
    free(x);
    dataset_free(&d);
    free(vt);
    free(text);
    return status;
}
