/* driver.c: the training driver of driver.h: common flags, data, the
 * loop, log.csv, summary.json, the checkpoint and --resume.
 *
 * Checkpoint sections (on top of ckpt.h's container):
 *   config     the options as name=value lines (task= first), so that a
 *              checkpoint is self-describing
 *   params     the task's flat parameter buffer
 *   adam_m, adam_v   Adam's moments (--optimizer adam), or
 *   velocity   the momentum buffer (--optimizer momentum)
 *   state      STATE_WORDS u64: step, seconds (a double's bits), the
 *              generator (4 words), batcher position and epoch, Adam's
 *              step count, log rows, parameter count, examples
 *   order      the batcher's permutation (u32 each)
 *   log        the log rows (log_row each)
 *   estimator  the task's persistent state (R->persist)
 *   window     the training figures since the last log row: their count
 *              and sums (1 + LOG_MAX_FIGS doubles)
 *   data       crc32 of the training file's pixels and labels (u32), so
 *              that a resume on other data is refused
 *   blas       R->blas, the OpenBLAS kernels trained with so far (text, no
 *              NUL; absent from checkpoints before 2026-12-04) */
#include "driver.h"

#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <png.h>
#include <zlib.h>

#include "ckpt.h"
#include "cli.h"
#include "json.h"
#include "parallel.h"
#include "rundir.h"
#include "schedule.h"
#include "util.h"

enum { STATE_WORDS = 12 };

/* ---- tasks, defaults, flags ------------------------------------------ */

static const task_ops *const tasks[] = {&task_vae, &task_sbn, &task_semisup};

const task_ops *driver_find_task(const char *name)
{
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (!strcmp(tasks[i]->name, name))
            return tasks[i];
    return NULL;
}

void driver_defaults(const task_ops *ops, run_opts *o, void *t)
{
    memset(o, 0, sizeof *o);
    memset(t, 0, ops->state_size);
    o->task = ops->name;
    o->data_dir = "data/mnist";
    o->out_dir = "runs/default";
    o->estimator = "gumbel";
    o->binarize = "dynamic";
    o->optimizer = "adam";
    o->batch_loss = "mean";
    o->lr = 1e-3;
    o->lr_decay = 1.0;
    o->lr_decay_every = 1000;
    o->momentum = 0.9;
    o->batch = 100;
    o->steps = 50000;
    o->tau0 = 1.0;
    o->tau_min = 0.5;
    o->anneal_rate = 3e-5;
    o->anneal_every = 1000;
    o->seed = 1;
    o->eval_every = 5000;
    o->log_every = 100;
    o->eval_images = 10000;
    ops->defaults(o, t);
}

void driver_flag_table(const task_ops *ops, run_opts *o, void *t, flag_def *d)
{
    const flag_def common[] = {
        {"task", FLAG_STRING, &o->task, "NAME", "vae, sbn or semisup"},
        {"data", FLAG_STRING, &o->data_dir, "DIR", "directory of the MNIST IDX files"},
        {"out", FLAG_STRING, &o->out_dir, "DIR", "output directory (created)"},
        {"estimator", FLAG_STRING, &o->estimator, "NAME", "gradient estimator (list below)"},
        {"optimizer", FLAG_STRING, &o->optimizer, "NAME",
         "adam, or momentum (SGD with momentum, the paper's Sec. 4)"},
        {"lr", FLAG_DOUBLE, &o->lr, "RATE", "learning rate"},
        {"batch-loss", FLAG_STRING, &o->batch_loss, "HOW",
         "the loss the optimizer steps on: the batch's mean over examples, or its sum (B times "
         "the gradient: SGD's rate per example B times larger; Adam nearly unchanged); the "
         "logged figures are means either way"},
        {"momentum", FLAG_DOUBLE, &o->momentum, "MU", "momentum of --optimizer momentum"},
        {"lr-decay", FLAG_DOUBLE, &o->lr_decay, "F",
         "multiply the learning rate by F every --lr-decay-every steps"},
        {"lr-decay-every", FLAG_LONG, &o->lr_decay_every, "N", "steps between learning-rate decays"},
        {"batch", FLAG_INT, &o->batch, "B", "examples per step"},
        {"steps", FLAG_LONG, &o->steps, "S", "training steps (total, counting resumed ones)"},
        {"epochs", FLAG_INT, &o->epochs, "E", "train for E passes over the data instead of --steps"},
        {"tau0", FLAG_DOUBLE, &o->tau0, "T", "initial temperature"},
        {"tau-min", FLAG_DOUBLE, &o->tau_min, "T", "floor of the temperature"},
        {"anneal-rate", FLAG_DOUBLE, &o->anneal_rate, "R", "tau = max(tau-min, tau0 exp(-R step))"},
        {"anneal-every", FLAG_LONG, &o->anneal_every, "N", "update tau every N steps"},
        {"binarize", FLAG_STRING, &o->binarize, "MODE",
         "training images: dynamic (a Bernoulli draw per pixel at every use), fixed (one draw "
         "per image, the same in every run), threshold (>127) or none; test and validation "
         "images are binarized once with a fixed seed (threshold and none: as training)"},
        {"validation", FLAG_INT, &o->validation, "N",
         "hold out the last N training images as a validation set, scored at every evaluation "
         "(the paper's protocol: 10000)"},
        {"seed", FLAG_LONG, &o->seed, "N", "seed of the run's generator"},
        {"eval-every", FLAG_LONG, &o->eval_every, "N",
         "evaluate and checkpoint every N steps, at step 0 and at the end (0: only at the end)"},
        {"eval-images", FLAG_INT, &o->eval_images, "N", "test images used by evaluations"},
        {"log-every", FLAG_LONG, &o->log_every, "N", "log.csv row every N steps"},
        {"threads", FLAG_INT, &o->threads, "T",
         "threads of the matrix products, the optimizer and the importance-sampled bound, "
         "gsvae's own (OpenBLAS runs on one) (0: every core)"},
        {"quiet", FLAG_BOOL, &o->quiet, NULL, "no progress output"},
        {"resume", FLAG_BOOL, &o->resume, NULL, "continue the run in --out from its model.ckpt, exactly (or finish its final evaluation)"},
        {"force", FLAG_BOOL, &o->force, NULL, "replace a run already in --out"},
    };
    size_t n = sizeof common / sizeof common[0];
    memcpy(d, common, sizeof common);
    int k = ops->flags(t, d + n);
    assert(n + (size_t)k < DRV_MAX_FLAGS);
    memset(&d[n + (size_t)k], 0, sizeof *d);
}

int driver_threads(int threads)
{
    if (threads > 0)
        return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void usage(FILE *out, const task_ops *ops, run_opts *o, void *t)
{
    flag_def defs[DRV_MAX_FLAGS];
    driver_flag_table(ops, o, t, defs);
    flags_usage(out, ops->synopsis, ops->about, defs);
    if (ops->help)
        ops->help(out);
}

/* The checks of the common flags, then the task's. */
static int check_opts(run *R, char *err)
{
    const run_opts *o = &R->o;
    static const char *const bins[] = {"dynamic", "fixed", "threshold", "none"};
    int b = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(o->binarize, bins[i]))
            b = i;
    if (b < 0)
        return errf(err, "--binarize '%s': expected dynamic, fixed, threshold or none", o->binarize);
    R->tbin = (train_bin)b;
    R->bin = R->tbin == TRAIN_BIN_DYNAMIC     ? BIN_DYNAMIC
             : R->tbin == TRAIN_BIN_THRESHOLD ? BIN_THRESHOLD
                                              : BIN_NONE;
    if (!strcmp(o->optimizer, "adam"))
        R->optim = OPTIM_ADAM;
    else if (!strcmp(o->optimizer, "momentum"))
        R->optim = OPTIM_MOMENTUM;
    else
        return errf(err, "--optimizer '%s': expected adam or momentum", o->optimizer);
    if (strcmp(o->batch_loss, "mean") && strcmp(o->batch_loss, "sum"))
        return errf(err, "--batch-loss '%s': expected mean or sum", o->batch_loss);
    R->grad_scale = strcmp(o->batch_loss, "sum") ? 1.0f : (float)o->batch;
    /* The task's checks first: they may resolve a common flag's special
     * value (the SBN's --anneal-rate -1) before the ranges below. */
    if (R->ops->check(R, err) != 0)
        return -1;
    if (!(o->lr > 0 && o->lr < 1))
        return errf(err, "--lr %g: must lie in (0, 1)", o->lr);
    if (!(o->momentum >= 0 && o->momentum < 1))
        return errf(err, "--momentum %g: must lie in [0, 1)", o->momentum);
    if (!(o->lr_decay > 0 && o->lr_decay <= 1))
        return errf(err, "--lr-decay %g: must lie in (0, 1]", o->lr_decay);
    if (o->lr_decay_every < 1)
        return errf(err, "--lr-decay-every %ld: must be >= 1", o->lr_decay_every);
    if (o->batch < 1 || o->batch > 10000)
        return errf(err, "--batch %d: must lie in 1..10000", o->batch);
    if (o->epochs < 0 || o->epochs > 100000)
        return errf(err, "--epochs %d: must lie in 0..100000", o->epochs);
    if (o->steps < 1 && o->epochs < 1)
        return errf(err, "--steps %ld: must be at least 1", o->steps);
    if (!(o->tau0 > 0))
        return errf(err, "--tau0 %g: must be > 0", o->tau0);
    if (!(o->tau_min > 0))
        return errf(err, "--tau-min %g: must be > 0", o->tau_min);
    if (o->anneal_rate < 0)
        return errf(err, "--anneal-rate %g: must be >= 0", o->anneal_rate);
    if (o->anneal_every < 1)
        return errf(err, "--anneal-every %ld: must be >= 1", o->anneal_every);
    if (o->validation < 0 || o->validation > 1000000)
        return errf(err, "--validation %d: must lie in 0..1000000", o->validation);
    if (o->eval_every < 0)
        return errf(err, "--eval-every %ld: must be >= 0", o->eval_every);
    if (o->eval_images < 1)
        return errf(err, "--eval-images %d: must be >= 1", o->eval_images);
    if (o->log_every < 1)
        return errf(err, "--log-every %ld: must be >= 1", o->log_every);
    if (o->threads < 0 || o->threads > 256)
        return errf(err, "--threads %d: must lie in 0..256", o->threads);
    if (o->seed < 0)
        return errf(err, "--seed %ld: must be >= 0", o->seed);
    if (o->tau_min > o->tau0)
        fprintf(stderr, "gsvae train: warning: --tau-min %g is above --tau0 %g: the temperature "
                        "stays at %g\n", o->tau_min, o->tau0, o->tau_min);
    return 0;
}

/* ---- data ------------------------------------------------------------- */

int driver_eval_binarize(const char *mode, binarize_mode *out)
{
    if (!strcmp(mode, "dynamic") || !strcmp(mode, "fixed"))
        *out = BIN_DYNAMIC;
    else if (!strcmp(mode, "threshold"))
        *out = BIN_THRESHOLD;
    else if (!strcmp(mode, "none"))
        *out = BIN_NONE;
    else
        return -1;
    return 0;
}

float *driver_eval_images(const dataset *d, binarize_mode bin, int limit, int *n, char *err)
{
    *n = (int)d->count < limit ? (int)d->count : limit;
    float *x = xcalloc((size_t)*n * d->dim, sizeof(float), err, "evaluation images");
    if (!x)
        return NULL;
    rng_t r;
    rng_seed(&r, EVAL_SEED);
    for (int i = 0; i < *n; i++)
        dataset_example(d, (uint32_t)i, bin, &r, x + (size_t)i * d->dim);
    return x;
}

void driver_binarize_fixed(dataset *d)
{
    rng_t r;
    rng_seed(&r, FIXED_BIN_SEED);
    for (size_t i = 0; i < (size_t)d->count * d->dim; i++)
        d->pixels[i] = rng_uniformf_open(&r) < (float)d->pixels[i] * (1.0f / 255.0f) ? 255 : 0;
}

void driver_split_validation(dataset *train, uint32_t n, dataset *valid)
{
    assert(n > 0 && n < train->count);
    train->count -= n;
    *valid = *train;
    valid->count = n;
    valid->pixels = train->pixels + (size_t)train->count * train->dim;
    valid->labels = train->labels + train->count;
}

/* Train and test images; the validation split is the last --validation
 * training images; the evaluation sets binarized once. */
static int load_data(run *R, char *err)
{
    const run_opts *o = &R->o;
    if (dataset_load_split(o->data_dir, "train", &R->train, err) != 0 ||
        dataset_load_split(o->data_dir, "test", &R->test, err) != 0)
        return -1;
    if (R->test.dim != R->train.dim || R->test.rows != R->train.rows)
        return errf(err, "%s: the test images are %ux%u, the training ones %ux%u", o->data_dir,
                    R->test.rows, R->test.cols, R->train.rows, R->train.cols);
    if ((uint32_t)o->validation >= R->train.count)
        return errf(err, "--validation %d: %s holds only %u training images", o->validation,
                    o->data_dir, R->train.count);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32_z(crc, R->train.pixels, (size_t)R->train.count * R->train.dim);
    R->data_crc = (uint32_t)crc32_z(crc, R->train.labels, R->train.count);
    if (R->tbin == TRAIN_BIN_FIXED)
        driver_binarize_fixed(&R->train);
    binarize_mode eval_bin = BIN_DYNAMIC;
    driver_eval_binarize(o->binarize, &eval_bin);
    R->test_set = (eval_set){"test", NULL, R->test.labels, 0};
    if (!(R->test_set.x = driver_eval_images(&R->test, eval_bin, o->eval_images, &R->test_set.n, err)))
        return -1;
    if (o->validation > 0) {
        dataset v;
        driver_split_validation(&R->train, (uint32_t)o->validation, &v);
        R->valid_set = (eval_set){"valid", NULL, v.labels, 0};
        if (!(R->valid_set.x = driver_eval_images(&v, eval_bin, o->validation, &R->valid_set.n, err)))
            return -1;
    }
    return 0;
}

/* ---- setup and teardown ----------------------------------------------- */

static void run_free(run *R)
{
    if (R->ops && R->t)
        R->ops->free(R);
    free(R->t);
    dataset_free(&R->train);
    dataset_free(&R->test);
    free(R->test_set.x);
    free(R->valid_set.x);
    batcher_free(&R->bt);
    adam_free(&R->adam);
    free(R->velocity);
    free(R->log);
}

static int run_setup(run *R, char *err)
{
    const run_opts *o = &R->o;
    R->threads = driver_threads(o->threads);
    par_set_threads(R->threads);
    if (load_data(R, err) != 0)
        return -1;
    R->ntrain = R->neval = 0;
    while (R->ops->train_cols[R->ntrain])
        R->ntrain++;
    while (R->ops->eval_cols[R->neval])
        R->neval++;
    assert(R->ntrain + 2 * R->neval <= LOG_MAX_FIGS);
    rng_seed(&R->rng, (uint64_t)o->seed);
    snprintf(R->blas, sizeof R->blas, "%s", openblas_get_corename());
    R->batch_set = &R->train;
    if (R->ops->setup(R, err) != 0)
        return -1;
    long per_epoch = ((long)R->batch_set->count + o->batch - 1) / o->batch;
    R->total_steps = o->epochs > 0 ? per_epoch * o->epochs : o->steps;
    if (batcher_init(&R->bt, R->batch_set, (uint32_t)o->batch, &R->rng, err) != 0)
        return -1;
    if (R->optim == OPTIM_ADAM) {
        if (adam_init(&R->adam, R->nparams, err) != 0)
            return -1;
        R->adam.threads = R->threads;
    } else if (!(R->velocity = xcalloc(R->nparams, sizeof(float), err, "momentum"))) {
        return -1;
    }
    /* A row every log_every steps, one at each evaluation, at step 0 and
     * at the end; the log grows when a resumed run needs more. */
    R->log_cap = R->total_steps / o->log_every + 3 +
                 (o->eval_every ? R->total_steps / o->eval_every : 0);
    if (!(R->log = xcalloc((size_t)R->log_cap, sizeof(log_row), err, "log")))
        return -1;
    return 0;
}

/* The evaluation sets of a run in log order: the test set, then the
 * validation set when there is one. */
static int eval_set_count(const run *R)
{
    return R->valid_set.x ? 2 : 1;
}

static const eval_set *eval_set_at(const run *R, int s)
{
    return s ? &R->valid_set : &R->test_set;
}

static log_row *next_row(run *R, char *err)
{
    if (R->nlog == R->log_cap) {
        long cap = R->log_cap * 2 + 16;
        log_row *grown = realloc(R->log, (size_t)cap * sizeof(log_row));
        if (!grown) {
            errf(err, "log: cannot grow to %ld rows", cap);
            return NULL;
        }
        R->log = grown;
        R->log_cap = cap;
    }
    log_row *row = &R->log[R->nlog++];
    memset(row, 0, sizeof *row);
    for (int i = 0; i < LOG_MAX_FIGS; i++)
        row->fig[i] = NAN;
    return row;
}

/* ---- the optimizer ---------------------------------------------------- */

/* v = mu v + g; p -= lr v: the form of TensorFlow's MomentumOptimizer, which
 * the paper's experiments ran on. */
static void momentum_update(float *restrict p, float *restrict v, const float *restrict g,
                            size_t n, float lr, float mu)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + g[i];
        p[i] -= lr * v[i];
    }
}

static void optimizer_step(run *R, long step)
{
    double lr = R->o.lr * pow(R->o.lr_decay, (double)(step / R->o.lr_decay_every));
    /* --batch-loss sum: the gradient of the batch's sum, B times its mean's. */
    if (R->grad_scale != 1.0f)
        cblas_sscal((int)R->nparams, R->grad_scale, R->grads, 1);
    if (R->optim == OPTIM_ADAM)
        adam_update(&R->adam, R->params, R->grads, (float)lr);
    else
        momentum_update(R->params, R->velocity, R->grads, R->nparams, (float)lr,
                        (float)R->o.momentum);
}

/* ---- log.csv and summary.json ------------------------------------------ */

static int write_log(const run *R, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    fprintf(af.f, "step,epoch,tau");
    for (int i = 0; i < R->ntrain; i++)
        fprintf(af.f, ",%s", R->ops->train_cols[i]);
    int sets = eval_set_count(R);
    for (int s = 0; s < sets; s++)
        for (int i = 0; i < R->neval; i++)
            fprintf(af.f, ",%s_%s", eval_set_at(R, s)->name, R->ops->eval_cols[i]);
    fprintf(af.f, ",seconds\n");
    int nfig = R->ntrain + sets * R->neval;
    for (long i = 0; i < R->nlog; i++) {
        const log_row *r = &R->log[i];
        fprintf(af.f, "%ld,%.4f,%.6f", r->step, r->epoch, r->tau);
        /* An empty field is a figure not measured at that row. */
        for (int k = 0; k < nfig; k++) {
            fputc(',', af.f);
            if (isfinite(r->fig[k]))
                fprintf(af.f, "%.4f", r->fig[k]);
        }
        fprintf(af.f, ",%.3f\n", r->seconds);
    }
    return af_commit(&af, err);
}

/* Flags that say where a run came from or how to start it, not what it is:
 * neither stored in the checkpoint nor listed in the summary. */
static int flag_is_transient(const char *name)
{
    return !strcmp(name, "resume") || !strcmp(name, "force") || !strcmp(name, "out") ||
           !strcmp(name, "data") || !strcmp(name, "quiet");
}

static void json_flags(FILE *f, run *R)
{
    flag_def defs[DRV_MAX_FLAGS];
    driver_flag_table(R->ops, &R->o, R->t, defs);
    fprintf(f, "  \"flags\": {");
    int first = 1;
    for (const flag_def *d = defs; d->name; d++) {
        if (flag_is_transient(d->name))
            continue;
        fprintf(f, "%s\"", first ? "" : ", ");
        for (const char *c = d->name; *c; c++)
            fputc(*c == '-' ? '_' : *c, f);
        fprintf(f, "\": ");
        first = 0;
        switch (d->kind) {
        case FLAG_INT:
            fprintf(f, "%d", *(int *)d->dst);
            break;
        case FLAG_BOOL:
            fprintf(f, "%s", *(int *)d->dst ? "true" : "false");
            break;
        case FLAG_LONG:
            fprintf(f, "%ld", *(long *)d->dst);
            break;
        case FLAG_DOUBLE:
            fprintf(f, "%.17g", *(double *)d->dst);
            break;
        case FLAG_STRING:
            if (*(const char **)d->dst)
                json_put_string(f, *(const char **)d->dst);
            else
                fprintf(f, "null");
            break;
        }
    }
    fprintf(f, "},\n");
}

/* summary.json: the common fields, the task's (from its finish), the last
 * row's training figures.  interrupted: the run stopped on a signal. */
static int write_summary(run *R, int interrupted, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    FILE *f = af.f;
    fprintf(f, "{\n  \"gsvae_version\": \"%s\",\n  \"task\": \"%s\",\n", GSVAE_VERSION,
            R->ops->name);
    fprintf(f, "  \"versions\": {\"openblas\": \"%s\", \"zlib\": \"%s\", \"libpng\": \"%s\"},\n",
            openblas_get_config(), zlibVersion(), png_get_libpng_ver(NULL));
    fprintf(f, "  \"blas_kernels\": \"%s\",\n", R->blas);
    json_flags(f, R);
    fprintf(f, "  \"seed\": %ld,\n", R->o.seed);
    fprintf(f, "  \"steps_done\": %ld,\n  \"interrupted\": %s,\n", R->step,
            interrupted ? "true" : "false");
    fprintf(f, "  \"train_seconds\": %.3f,\n  \"steps_per_second\": %.4f,\n", R->seconds,
            R->seconds > 0 ? R->step / R->seconds : 0.0);
    if (R->valid_set.x)
        fprintf(f, "  \"validation_images\": %d,\n", R->valid_set.n);
    if (!interrupted && R->ops->finish(R, f, err) != 0) {
        af_abort(&af);
        return -1;
    }
    /* The last evaluation of each set, as log.csv holds it. */
    int sets = eval_set_count(R);
    for (int s = 0; s < sets; s++) {
        const log_row *ev = NULL;
        for (long i = R->nlog - 1; i >= 0 && !ev; i--)
            if (!isnan(R->log[i].fig[R->ntrain + s * R->neval]))
                ev = &R->log[i];
        if (!ev || (s == 0 && !interrupted))
            continue;  /* the test figures of a finished run come from finish */
        for (int k = 0; k < R->neval; k++) {
            char key[96];
            snprintf(key, sizeof key, "%s_%s", eval_set_at(R, s)->name, R->ops->eval_cols[k]);
            json_put_number(f, key, ev->fig[R->ntrain + s * R->neval + k], ",\n");
        }
    }
    const log_row *last = R->nlog ? &R->log[R->nlog - 1] : NULL;
    fprintf(f, "  \"final_tau\": %.6f,\n", last ? last->tau : R->o.tau0);
    json_put_number(f, "final_train_loss", last ? last->fig[0] : NAN, "\n}\n");
    return af_commit(&af, err);
}

/* ---- the learning curve ------------------------------------------------ */

/* DIR/curve.png from log.csv when gnuplot is there (a warning when not):
 * the first evaluation figure of the test (and validation) set against the
 * step, beside the training loss, on linear axes zoomed from the first
 * evaluation after step 0 onwards, with the last values in the legend. */
static void plot_curve(const run *R)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "gsvae train: warning: gnuplot not found; no curve.png\n");
        return;
    }
    char png[4200], tmp[4300], log[4200];
    snprintf(png, sizeof png, "%s/curve.png", R->o.out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", png, (long)getpid());
    snprintf(log, sizeof log, "%s/log.csv", R->o.out_dir);
    for (const char *c = log; *c; c++)
        if (*c == '\'' || *c == '\\')
            return;  /* a path gnuplot cannot quote: no figure rather than a wrong one */
    for (const char *c = tmp; *c; c++)
        if (*c == '\'' || *c == '\\')
            return;
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (!g)
        return;
    int test_col = 4 + R->ntrain, valid_col = test_col + R->neval;
    double last[2] = {NAN, NAN};
    for (long i = 0; i < R->nlog; i++)
        for (int s = 0; s < 2; s++)
            if (!isnan(R->log[i].fig[R->ntrain + s * R->neval]))
                last[s] = R->log[i].fig[R->ntrain + s * R->neval];
    fprintf(g, "set terminal pngcairo enhanced size 900,520 font 'DejaVu Sans,12'\n"
               "set output '%s'\nset datafile separator ','\nf = '%s'\n", tmp, log);
    /* The range: every evaluation after step 0, and the training loss from
     * the first of them on. */
    fprintf(g, "stats f using ($1 > 0 ? $%d : NaN) nooutput\nlo = STATS_min; hi = STATS_max\n"
               "stats f using ($1 > 0 && $%d == $%d ? $1 : NaN) nooutput\nfirst = STATS_min\n"
               "stats f using ($1 >= first ? $4 : NaN) nooutput\n"
               "lo = STATS_min < lo ? STATS_min : lo; hi = STATS_max > hi ? STATS_max : hi\n",
            test_col, test_col, test_col);
    if (R->valid_set.x)
        fprintf(g, "stats f using ($1 > 0 ? $%d : NaN) nooutput\n"
                   "lo = STATS_min < lo ? STATS_min : lo; hi = STATS_max > hi ? STATS_max : hi\n",
                valid_col);
    fprintf(g, "pad = (hi - lo) * 0.08 + 0.5\nset yrange [lo - pad : hi + pad]\n"
               "set xrange [first : *]\nset key top right\nset grid lc rgb '#dddddd'\n"
               "set border 3\nset tics nomirror out\nset xlabel 'step'\nset ylabel 'nats'\n"
               "set title '%s: %s (seed %ld)' noenhanced\n",
            R->ops->name, R->o.estimator, R->o.seed);
    fprintf(g, "plot f using 1:($1 >= first ? $4 : NaN) with lines lw 1.5 lc rgb '#9a9a9a' "
               "title '%s (window mean)' noenhanced, \\\n"
               "  '' using 1:($1 > 0 ? $%d : NaN) with linespoints lw 2 pt 7 lc rgb '#d62728' "
               "title 'test %s, last %.2f' noenhanced",
            R->ops->train_cols[0], test_col, R->ops->eval_cols[0], last[0]);
    if (R->valid_set.x)
        fprintf(g, ", \\\n  '' using 1:($1 > 0 ? $%d : NaN) with linespoints lw 2 pt 5 "
                   "lc rgb '#1f77b4' title 'validation %s, last %.2f' noenhanced",
                valid_col, R->ops->eval_cols[0], last[1]);
    fputc('\n', g);
    if (pclose(g) == 0 && access(tmp, F_OK) == 0)
        rename(tmp, png);
    else
        remove(tmp);
}

/* ---- the checkpoint --------------------------------------------------- */

/* The options as name=value lines, the task first. */
static size_t format_config(run *R, char *buf, size_t len)
{
    flag_def defs[DRV_MAX_FLAGS];
    driver_flag_table(R->ops, &R->o, R->t, defs);
    size_t used = 0;
#define PUT(...) used += (size_t)snprintf(buf + (used < len ? used : len), used < len ? len - used : 0, __VA_ARGS__)
    for (const flag_def *d = defs; d->name; d++) {
        if (flag_is_transient(d->name))
            continue;
        switch (d->kind) {
        case FLAG_BOOL:
            /* The parser takes a bare --name for a set switch. */
            if (*(int *)d->dst)
                PUT("%s\n", d->name);
            break;
        case FLAG_INT:
            PUT("%s=%d\n", d->name, *(int *)d->dst);
            break;
        case FLAG_LONG:
            PUT("%s=%ld\n", d->name, *(long *)d->dst);
            break;
        case FLAG_DOUBLE:
            PUT("%s=%.17g\n", d->name, *(double *)d->dst);
            break;
        case FLAG_STRING:
            /* An unset string keeps its built-in default when read back. */
            if (*(const char **)d->dst)
                PUT("%s=%s\n", d->name, *(const char **)d->dst);
            break;
        }
    }
#undef PUT
    return used;
}

static int save_checkpoint(run *R, char *err)
{
    char config[8192];
    size_t clen = format_config(R, config, sizeof config);
    if (clen >= sizeof config)
        return errf(err, "%s/model.ckpt: options too long to store", R->o.out_dir);
    uint64_t state[STATE_WORDS] = {0};
    state[0] = (uint64_t)R->step;
    memcpy(&state[1], &R->seconds, sizeof(double));
    for (int i = 0; i < 4; i++)
        state[2 + i] = R->rng.s[i];
    state[6] = R->bt.pos;
    state[7] = R->bt.epoch;
    state[8] = (uint64_t)R->adam.t;
    state[9] = (uint64_t)R->nlog;
    state[10] = R->nparams;
    state[11] = R->batch_set->count;
    double window[1 + LOG_MAX_FIGS];
    window[0] = (double)R->window_n;
    memcpy(window + 1, R->window, sizeof R->window);
    ckpt_section secs[12];
    int n = 0;
    secs[n++] = (ckpt_section){"config", config, clen};
    secs[n++] = (ckpt_section){"params", R->params, R->nparams * sizeof(float)};
    if (R->optim == OPTIM_ADAM) {
        secs[n++] = (ckpt_section){"adam_m", R->adam.m, R->nparams * sizeof(float)};
        secs[n++] = (ckpt_section){"adam_v", R->adam.v, R->nparams * sizeof(float)};
    } else {
        secs[n++] = (ckpt_section){"velocity", R->velocity, R->nparams * sizeof(float)};
    }
    secs[n++] = (ckpt_section){"state", state, sizeof state};
    secs[n++] = (ckpt_section){"order", R->bt.order, (uint64_t)R->batch_set->count * sizeof(uint32_t)};
    secs[n++] = (ckpt_section){"log", R->log, (uint64_t)R->nlog * sizeof(log_row)};
    secs[n++] = (ckpt_section){"estimator", R->persist, R->persist_bytes};
    secs[n++] = (ckpt_section){"window", window, sizeof window};
    secs[n++] = (ckpt_section){"data", &R->data_crc, sizeof R->data_crc};
    secs[n++] = (ckpt_section){"blas", R->blas, strlen(R->blas)};
    char path[4200];
    snprintf(path, sizeof path, "%s/model.ckpt", R->o.out_dir);
    return ckpt_write(path, secs, n, err);
}

/* The value of "task=" in a config section, or NULL. */
static const char *config_task(const char *s, uint64_t len, char *buf, size_t buflen)
{
    for (uint64_t i = 0; i < len;) {
        uint64_t j = i;
        while (j < len && s[j] != '\n')
            j++;
        if (j - i > 5 && !memcmp(s + i, "task=", 5) && j - i - 5 < buflen) {
            memcpy(buf, s + i + 5, j - i - 5);
            buf[j - i - 5] = '\0';
            return buf;
        }
        i = j + 1;
    }
    return NULL;
}

int driver_read_config(const struct ckpt_file *f, const char *path, const task_ops **ops,
                       run_opts *o, void **t, char **text, char *err)
{
    const void *data;
    uint64_t len;
    *text = NULL;
    *t = NULL;
    if (ckpt_get(f, "config", &data, &len, err) != 0)
        return -1;
    if (len > 65536)
        return errf(err, "%s: config section too large (%llu bytes)", path,
                    (unsigned long long)len);
    char name[32];
    const char *task = config_task(data, len, name, sizeof name);
    if (!(*ops = driver_find_task(task ? task : "vae")))
        return errf(err, "%s: unknown task '%s'", path, task);
    /* Each line becomes an argument "--name=value" for the flag parser. */
    const char *s = data;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += s[i] == '\n';
    char *buf = malloc(len + 3 * lines + 1);
    char **argv = malloc(sizeof(char *) * lines);
    *t = calloc(1, (*ops)->state_size);
    if (!buf || !argv || !*t) {
        free(buf);
        free(argv);
        free(*t);
        *t = NULL;
        return errf(err, "%s: out of memory", path);
    }
    int argc = 0;
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && s[j] != '\n')
            j++;
        if (j > i) {
            argv[argc++] = buf + w;
            buf[w++] = '-';
            buf[w++] = '-';
            memcpy(buf + w, s + i, j - i);
            w += j - i;
            buf[w++] = '\0';
        }
        i = j + 1;
    }
    driver_defaults(*ops, o, *t);
    flag_def defs[DRV_MAX_FLAGS];
    driver_flag_table(*ops, o, *t, defs);
    char *pos[1];
    int npos;
    char inner[ERR_LEN];
    int rc = flags_parse(defs, argc, argv, pos, 0, &npos, inner);
    free(argv);
    if (rc != 0) {
        free(buf);
        free(*t);
        *t = NULL;
        return errf(err, "%s: bad stored options: %s", path, rc < 0 ? inner : "--help");
    }
    *text = buf;
    return 0;
}

int driver_checkpoint_task(const char *path, const task_ops **ops, char *err)
{
    ckpt_file *f;
    run_opts o;
    void *t;
    char *text;
    if (ckpt_read(path, &f, err) != 0)
        return -1;
    int rc = driver_read_config(f, path, ops, &o, &t, &text, err);
    if (rc == 0) { /* on failure it has freed what it took */
        free(t);
        free(text);
    }
    ckpt_free(f);
    return rc;
}

int driver_open_checkpoint(const char *path, const task_ops *want, struct ckpt_file **f,
                           run_opts *o, void **t, char **text, char *err)
{
    const task_ops *ops;
    if (ckpt_read(path, f, err) != 0)
        return -1;
    if (driver_read_config(*f, path, &ops, o, t, text, err) == 0) {
        if (ops == want)
            return 0;
        errf(err, "%s: a %s run; this command reads %s checkpoints", path, ops->name, want->name);
        free(*text);
        free(*t);
        *text = NULL;
        *t = NULL;
    }
    ckpt_free(*f);
    *f = NULL;
    return -1;
}

int driver_ckpt_params(const struct ckpt_file *f, const char *path, float *params, size_t n,
                       char *err)
{
    if (ckpt_get_exact(f, "params", params, n * sizeof(float), err) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(params[i]))
            return errf(err, "%s: parameter %zu is %s; the checkpoint holds a diverged model",
                        path, i, isnan(params[i]) ? "NaN" : "infinite");
    return 0;
}

int driver_ckpt_step(const struct ckpt_file *f, long *step, char *err)
{
    uint64_t state[STATE_WORDS];
    if (ckpt_get_exact(f, "state", state, sizeof state, err) != 0)
        return -1;
    *step = (long)state[0];
    return 0;
}

static int has_section(const ckpt_file *f, const char *name)
{
    for (int i = 0; i < ckpt_count(f); i++)
        if (!strcmp(ckpt_name(f, i), name))
            return 1;
    return 0;
}

/* The kernels a checkpoint's run trained with into R->blas, and this
 * process's after them where it has others, said on stderr: the run goes
 * on, but its last digits leave those of the uninterrupted run
 * (OPENBLAS_CORETYPE set to the checkpoint's last kernels keeps them). */
static int restore_kernels(run *R, const ckpt_file *f, const char *path, char *err)
{
    const void *data;
    uint64_t len;
    if (ckpt_get(f, "blas", &data, &len, err) != 0)
        return -1;
    if (len == 0 || len >= sizeof R->blas || memchr(data, '\0', (size_t)len))
        return errf(err, "%s: blas section of %llu bytes is not a list of kernels", path,
                    (unsigned long long)len);
    char was[sizeof R->blas];
    memcpy(was, data, (size_t)len);
    was[len] = '\0';
    const char *now = openblas_get_corename(), *last = strrchr(was, ',');
    last = last ? last + 1 : was;
    if (!strcmp(last, now)) {
        memcpy(R->blas, was, (size_t)len + 1);
        return 0;
    }
    fprintf(stderr,
            "gsvae train: warning: %s trained with OpenBLAS's %s kernels, this process has %s: "
            "the run goes on, its last digits leaving the uninterrupted run's "
            "(OPENBLAS_CORETYPE=%s keeps them)\n",
            path, last, now, last);
    if ((size_t)snprintf(R->blas, sizeof R->blas, "%s,%s", was, now) >= sizeof R->blas)
        snprintf(R->blas, sizeof R->blas, "%s", was); /* full: the list keeps its start */
    return 0;
}

/* Everything a checkpoint holds into a run set up from its options; every
 * size is checked against the run's. */
static int restore_checkpoint(run *R, const ckpt_file *f, const char *path, char *err)
{
    uint64_t state[STATE_WORDS];
    if (ckpt_get_exact(f, "state", state, sizeof state, err) != 0)
        return -1;
    if (state[10] != R->nparams)
        return errf(err, "%s: checkpoint has %llu parameters, the model %zu", path,
                    (unsigned long long)state[10], R->nparams);
    if (state[11] != R->batch_set->count)
        return errf(err, "%s: checkpoint was trained on %llu examples, this run has %u", path,
                    (unsigned long long)state[11], R->batch_set->count);
    if (state[6] > R->batch_set->count)
        return errf(err, "%s: data position %llu out of range", path, (unsigned long long)state[6]);
    if (state[9] > 100000000ull)
        return errf(err, "%s: log of %llu rows", path, (unsigned long long)state[9]);
    const void *logdata;
    uint64_t loglen;
    if (ckpt_get(f, "log", &logdata, &loglen, err) != 0)
        return -1;
    if (loglen != state[9] * sizeof(log_row))
        return errf(err, "%s: log section has %llu bytes where %llu rows take %llu: written by "
                         "another version of gsvae; eval, sample and recon read it, --resume cannot",
                    path, (unsigned long long)loglen, (unsigned long long)state[9],
                    (unsigned long long)(state[9] * sizeof(log_row)));
    while (R->log_cap < (long)state[9]) {
        R->nlog = R->log_cap;
        if (!next_row(R, err))
            return -1;
    }
    if (ckpt_get_exact(f, "params", R->params, R->nparams * sizeof(float), err) != 0)
        return -1;
    if (R->optim == OPTIM_ADAM) {
        if (ckpt_get_exact(f, "adam_m", R->adam.m, R->nparams * sizeof(float), err) != 0 ||
            ckpt_get_exact(f, "adam_v", R->adam.v, R->nparams * sizeof(float), err) != 0)
            return -1;
    } else if (ckpt_get_exact(f, "velocity", R->velocity, R->nparams * sizeof(float), err) != 0) {
        return -1;
    }
    if (ckpt_get_exact(f, "order", R->bt.order, (uint64_t)R->batch_set->count * sizeof(uint32_t),
                       err) != 0 ||
        ckpt_get_exact(f, "estimator", R->persist, R->persist_bytes, err) != 0)
        return -1;
    for (uint32_t i = 0; i < R->batch_set->count; i++)
        if (R->bt.order[i] >= R->batch_set->count)
            return errf(err, "%s: data order holds index %u out of range", path, R->bt.order[i]);
    if (has_section(f, "data")) {
        uint32_t crc;
        if (ckpt_get_exact(f, "data", &crc, sizeof crc, err) != 0)
            return -1;
        if (crc != R->data_crc)
            return errf(err, "%s: the run was trained on other data than %s/ holds (--data)", path,
                        R->o.data_dir);
    }
    if (has_section(f, "window")) {
        double window[1 + LOG_MAX_FIGS];
        if (ckpt_get_exact(f, "window", window, sizeof window, err) != 0)
            return -1;
        R->window_n = (long)window[0];
        memcpy(R->window, window + 1, sizeof R->window);
    }
    if (has_section(f, "blas") && restore_kernels(R, f, path, err) != 0)
        return -1;
    memcpy(R->log, logdata, (size_t)loglen);
    R->nlog = (long)state[9];
    R->step = (long)state[0];
    memcpy(&R->seconds, &state[1], sizeof(double));
    for (int i = 0; i < 4; i++)
        R->rng.s[i] = state[2 + i];
    R->bt.pos = (uint32_t)state[6];
    R->bt.epoch = state[7];
    R->adam.t = (long)state[8];
    return 0;
}

/* ---- the loop ------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;

/* The first SIGINT or SIGTERM asks the loop to stop after its step (or the
 * evaluation under way) and save.  A second SIGINT (Ctrl-C again: the user
 * insists) ends the process at once.  A second SIGTERM does not: job
 * managers repeat TERM on a timer (GNU parallel's default TERM, 200 ms,
 * TERM, ...) and would end a long step or evaluation before its checkpoint;
 * KILL is theirs to send. */
static void on_signal(int sig)
{
    if (!stop_signal)
        stop_signal = sig;
}

/* on_signal for SIGINT and SIGTERM (on), or their defaults again (off).
 * SIGINT's handler is one-shot (SA_RESETHAND), SIGTERM's stays; both
 * restart the file I/O they interrupt. */
static void catch_stop_signals(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on ? on_signal : SIG_DFL;
    sa.sa_flags = on ? SA_RESTART | SA_RESETHAND : 0;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_flags = on ? SA_RESTART : 0;
    sigaction(SIGTERM, &sa, NULL);
}

static void progress(const run *R, double tau, double loss, double ex_per_s, int tty, int final)
{
    if (R->o.quiet)
        return;
    long step = R->step;
    double left = ex_per_s > 0 ? (double)(R->total_steps - step) * R->o.batch / ex_per_s : 0;
    if (tty) {
        int width = 30, filled = (int)(width * (double)step / (double)R->total_steps);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] step %ld/%ld  tau %.3f  loss %.2f  %.0f ex/s  %.0fs left   %s",
                bar, step, R->total_steps, tau, loss, ex_per_s, left, final ? "\n" : "");
    } else {
        printf("step %ld/%ld tau %.4f loss %.3f %.0f ex/s %.0fs left\n", step, R->total_steps,
               tau, loss, ex_per_s, left);
        fflush(stdout);
    }
}

/* Evaluate every set into row at its tau; prints the test figures. */
static void evaluate_row(run *R, log_row *row, int tty)
{
    int sets = eval_set_count(R);
    for (int s = 0; s < sets; s++)
        R->ops->evaluate(R, eval_set_at(R, s), (float)row->tau,
                         row->fig + R->ntrain + s * R->neval);
    if (R->o.quiet)
        return;
    char line[512];
    int n = snprintf(line, sizeof line, "step %ld:", row->step);
    for (int s = 0; s < sets && n < (int)sizeof line; s++)
        for (int k = 0; k < R->neval && n < (int)sizeof line; k++)
            n += snprintf(line + n, sizeof line - (size_t)n, " %s%s%s %.3f%s",
                          k ? "" : eval_set_at(R, s)->name, k ? "" : " ", R->ops->eval_cols[k],
                          row->fig[R->ntrain + s * R->neval + k], k + 1 < R->neval ? "," : "");
    if (tty)
        fprintf(stderr, "\r%s%20s\n", line, "");
    else
        printf("%s\n", line);
}

/* Where the run stands for a message: the last checkpoint written. */
static void say_last_checkpoint(const run *R, long last_ckpt)
{
    if (last_ckpt >= 0)
        fprintf(stderr, "; the last checkpoint is %s/model.ckpt (step %ld)\n", R->o.out_dir,
                last_ckpt);
    else
        fprintf(stderr, "; no checkpoint was written\n");
}

/* The temperature of the run at the schedule's `scheduled`: the task's
 * own when it learns it. */
static double run_tau(const run *R, double scheduled)
{
    return R->ops->tau ? R->ops->tau(R, scheduled) : scheduled;
}

/* The loop from R->step to R->total_steps.  Returns 0 when done, 1 on a
 * non-finite loss, -1 on an error (in err), or the number of the signal
 * that stopped it after a checkpoint. */
static int train_loop(run *R, long last_ckpt, char *err)
{
    const run_opts *o = &R->o;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    int tty = isatty(fileno(stderr));
    if (R->step == 0 && o->eval_every > 0) {
        /* The starting point of the learning curve. */
        log_row *row = next_row(R, err);
        if (!row)
            return -1;
        row->tau = run_tau(R, schedule_tau(&sched, 0));
        evaluate_row(R, row, tty);
    }
#ifdef GSVAE_TEST_HOOKS
    /* Fault injection for the tests of the NaN stop: poison the first
     * weight before the given step, so the NaN travels the real path. */
    const char *inject = getenv("GSVAE_TEST_NAN_AT_STEP");
    long nan_step = inject ? atol(inject) : -1;
    /* ...and a signal raised twice after the given step, at a known point:
     * SIGTERM, or SIGINT where GSVAE_TEST_SIGNAL is INT. */
    const char *sig_at = getenv("GSVAE_TEST_SIGNAL_AT_STEP");
    long sig_step = sig_at ? atol(sig_at) : -1;
    const char *sig_name = getenv("GSVAE_TEST_SIGNAL");
    int test_sig = sig_name && !strcmp(sig_name, "INT") ? SIGINT : SIGTERM;
#endif
    long window_start = R->step;
    double window_seconds = 0, ex_per_s = 0, last_print = 0;
    while (R->step < R->total_steps) {
        long step = R->step;
#ifdef GSVAE_TEST_HOOKS
        if (step == nan_step)
            R->params[0] = NAN;
#endif
        double t0 = now_seconds();
        double tau = schedule_tau(&sched, step);
        double figs[LOG_MAX_FIGS];
        double loss = R->ops->step(R, step, (float)tau, figs);
        if (!isfinite(loss)) {
            if (tty && !o->quiet)
                fputc('\n', stderr);
            fprintf(stderr, "gsvae train: step %ld: loss is %s; stopped", step,
                    isnan(loss) ? "NaN" : "infinite");
            say_last_checkpoint(R, last_ckpt);
            return 1;
        }
        optimizer_step(R, step);
#ifdef GSVAE_TEST_HOOKS
        if (step == sig_step) {
            raise(test_sig);
            raise(test_sig);
        }
#endif
        double now = now_seconds();
        R->seconds += now - t0;
        window_seconds += now - t0;
        R->step = step + 1;
        for (int i = 0; i < R->ntrain; i++)
            R->window[i] += figs[i];
        R->window_n++;
        int do_eval = (o->eval_every > 0 && R->step % o->eval_every == 0) || R->step == R->total_steps;
        if (R->step % o->log_every == 0 || do_eval) {
            if (window_seconds > 0)
                ex_per_s = (double)(R->step - window_start) * o->batch / window_seconds;
            log_row *row = next_row(R, err);
            if (!row)
                return -1;
            row->step = R->step;
            row->epoch = (double)R->step * o->batch / R->batch_set->count;
            row->tau = run_tau(R, tau);
            row->seconds = R->seconds;
            for (int i = 0; i < R->ntrain; i++)
                row->fig[i] = R->window[i] / R->window_n;
            if (!tty)
                progress(R, row->tau, row->fig[0], ex_per_s, 0, 0);
            if (do_eval)
                evaluate_row(R, row, tty);
            memset(R->window, 0, sizeof R->window);
            R->window_n = 0;
            if (do_eval) {
                if (save_checkpoint(R, err) != 0 || write_log(R, err) != 0)
                    return -1;
                last_ckpt = R->step;
            }
            window_start = R->step;
            window_seconds = 0;
        }
        if (tty && (now - last_print > 0.2 || R->step == R->total_steps)) {
            progress(R, run_tau(R, tau), loss, ex_per_s, 1, R->step == R->total_steps);
            last_print = now;
        }
        if (stop_signal) {
            /* Stopped between rows: the window goes into the checkpoint,
             * so that a resumed run writes the rows this one would have. */
            if (save_checkpoint(R, err) != 0 || write_log(R, err) != 0)
                return -1;
            return stop_signal;
        }
    }
    return 0;
}

/* ---- the command: `gsvae train`, the task from --task or, resuming, from
 * the checkpoint in --out ---------------------------------------------------------- */

/* The value of --NAME (or --NAME=...) in argv, or NULL. */
static const char *argv_value(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) || strncmp(argv[i] + 2, name, n))
            continue;
        if (argv[i][2 + n] == '\0' && i + 1 < argc)
            return argv[i + 1];
        if (argv[i][2 + n] == '=')
            return argv[i] + 3 + n;
    }
    return NULL;
}

static int argv_has(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag))
            return 1;
    return 0;
}

int cmd_train(int argc, char **argv)
{
    char err[ERR_LEN];
    run *R = calloc(1, sizeof *R);
    if (!R) {
        fprintf(stderr, "gsvae train: out of memory\n");
        return 1;
    }
    char *stored_text = NULL;
    ckpt_file *resume = NULL;
    int status = 2;
    /* The task: --task, else (resuming) the checkpoint's, else the VAE. */
    const char *task = argv_value(argc, argv, "task");
    const char *out = argv_value(argc, argv, "out");
    int resuming = argv_has(argc, argv, "--resume") || argv_has(argc, argv, "--resume=1");
    char ckpt_path[4200];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/model.ckpt", out ? out : "runs/default");
    if (resuming && !task) {
        run_opts so;
        void *st;
        const task_ops *sops;
        if (ckpt_read(ckpt_path, &resume, err) != 0 ||
            driver_read_config(resume, ckpt_path, &sops, &so, &st, &stored_text, err) != 0)
            goto fail_status;
        free(st);
        free(stored_text);
        stored_text = NULL;
        task = sops->name;
    }
    R->ops = driver_find_task(task ? task : "vae");
    if (!R->ops) {
        fprintf(stderr, "gsvae train: --task '%s': expected vae, sbn or semisup\n", task);
        goto done;
    }
    if (!(R->t = calloc(1, R->ops->state_size))) {
        fprintf(stderr, "gsvae train: out of memory\n");
        goto done;
    }
    driver_defaults(R->ops, &R->o, R->t);
    flag_def defs[DRV_MAX_FLAGS];
    driver_flag_table(R->ops, &R->o, R->t, defs);
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        usage(stdout, R->ops, &R->o, R->t);
        status = 0;
        goto done;
    }
    if (rc < 0)
        goto fail_status;
    if (R->o.resume && R->o.force) {
        errf(err, "--resume and --force: choose one (continue the run, or replace it)");
        goto fail_status;
    }
    /* Where the run to resume is: --out, else the directory the task was
     * read from, else the task's default. */
    const char *run_dir = out ? out : resume ? "runs/default" : R->o.out_dir;
    snprintf(ckpt_path, sizeof ckpt_path, "%s/model.ckpt", run_dir);
    if (R->o.resume) {
        /* The stored options define the run; what the command line gives
         * overrides them, and the checks see the merged options. */
        void *st;
        const task_ops *sops;
        if (!resume && ckpt_read(ckpt_path, &resume, err) != 0) {
            status = 1;
            goto fail_status;
        }
        if (driver_read_config(resume, ckpt_path, &sops, &R->o, &st, &stored_text, err) != 0) {
            status = 1;
            goto fail_status;
        }
        if (sops != R->ops) {
            free(st);
            errf(err, "%s: a %s run, not %s", ckpt_path, sops->name, R->ops->name);
            status = 1;
            goto fail_status;
        }
        memcpy(R->t, st, R->ops->state_size);
        free(st);
        driver_flag_table(R->ops, &R->o, R->t, defs);
        if (flags_parse(defs, argc, argv, pos, 0, &npos, err) != 0)
            goto fail_status;
        R->o.out_dir = run_dir;
    }
    if (check_opts(R, err) != 0)
        goto fail_status;
    status = 1;
    if (rundir_prepare(R->o.out_dir, R->o.resume, R->o.force, err) != 0)
        goto fail_status;
    if (run_setup(R, err) != 0)
        goto fail_status;
    if (rundir_check_room(R->o.out_dir, (uint64_t)R->nparams * 12 + 4 * R->batch_set->count, err) != 0)
        goto fail_status;
    long last_ckpt = -1;
    if (resume) {
        if (restore_checkpoint(R, resume, ckpt_path, err) != 0)
            goto fail_status;
        ckpt_free(resume);
        resume = NULL;
        last_ckpt = R->step;
        if (R->step >= R->total_steps && rundir_finished(R->o.out_dir)) {
            fprintf(stderr, "gsvae train: %s: already at step %ld of %ld; raise --steps\n",
                    ckpt_path, R->step, R->total_steps);
            goto done;
        }
    }
    if (R->step >= R->total_steps) {
        /* Every step was trained but the run was stopped before its
         * summary was written (during the final evaluation): finish it. */
        fprintf(stderr, "gsvae train: %s: at step %ld of %ld; writing the final evaluation\n",
                ckpt_path, R->step, R->total_steps);
        goto finish;
    }
    if (!R->o.quiet) {
        char what[256];
        R->ops->describe(R, what, sizeof what);
        fprintf(stderr, "training %s for %ld steps, batch %d, %s lr %g, seed %ld\n", what,
                R->total_steps, R->o.batch, R->o.optimizer, R->o.lr, R->o.seed);
    }
    stop_signal = 0;
    catch_stop_signals(1);
    rc = train_loop(R, last_ckpt, err);
    catch_stop_signals(0);
    if (rc < 0)
        goto fail_status;
    if (rc == 1)
        goto done;
    if (rc > 1) {
        /* The images of an earlier finish no longer show this model. */
        rundir_remove_images(R->o.out_dir);
        if (write_summary(R, 1, err) != 0)
            goto fail_status;
        fprintf(stderr, "gsvae train: %s at step %ld of %ld; saved %s/model.ckpt. To continue: "
                        "gsvae train --out %s --resume\n",
                rc == SIGINT ? "interrupted" : "terminated", R->step, R->total_steps,
                R->o.out_dir, R->o.out_dir);
        status = 128 + rc;
        goto done;
    }
finish:
    if (write_summary(R, 0, err) != 0)
        goto fail_status;
    plot_curve(R);
    status = 0;
    goto done;
fail_status:
    fprintf(stderr, "gsvae train: %s\n", err);
done:
    if (resume)
        ckpt_free(resume);
    run_free(R);
    free(R);
    free(stored_text);
    return status;
}
