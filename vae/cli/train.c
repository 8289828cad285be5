/* train.c: `gsvae train`: the options, the training loop, periodic
 * evaluation, and the run's outputs (log.csv, summary.json, recon.png,
 * samples.png, model.ckpt). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <png.h>
#include <zlib.h>

#include "ckpt.h"
#include "cli.h"
#include "estimator.h"
#include "evaluate.h"
#include "outputs.h"
#include "schedule.h"
#include "util.h"

void train_opts_default(train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "data/mnist";
    o->out_dir = "runs/default";
    o->latent_type = "categorical";
    o->latent = NULL;     /* 20x10 or 200 by latent type */
    o->hidden = "512,256";
    o->estimator = "gumbel";
    o->baseline = "mean";
    o->st_slope = "backward";
    o->binarize = "dynamic";
    o->lr = 1e-3;
    o->lr_decay = 1.0;
    o->lr_decay_every = 1000;
    o->batch = 100;
    o->steps = 50000;
    o->tau0 = 1.0;
    o->tau_min = 0.5;
    o->anneal_rate = 3e-5;
    o->anneal_every = 1000;
    o->seed = 1;
    o->eval_every = 5000;
    o->log_every = 100;
    o->iw_samples = 1000;
    o->eval_images = 10000;
    o->threads = 0;
}

void train_flag_table(train_opts *o, flag_def *d)
{
    const flag_def defs[] = {
        {"data", FLAG_STRING, &o->data_dir, "DIR", "directory of the MNIST IDX files"},
        {"out", FLAG_STRING, &o->out_dir, "DIR", "output directory (created)"},
        {"latent-type", FLAG_STRING, &o->latent_type, "TYPE", "categorical or bernoulli"},
        {"latent", FLAG_STRING, &o->latent, "SPEC",
         "NxK categorical variables (default 20x10) or N Bernoulli units (default 200)"},
        {"hidden", FLAG_STRING, &o->hidden, "W1,W2", "encoder widths; the decoder mirrors them"},
        {"estimator", FLAG_STRING, &o->estimator, "NAME", "gradient estimator (list below)"},
        {"hard", FLAG_BOOL, &o->hard, NULL, "alias of --estimator st-gumbel"},
        {"baseline", FLAG_STRING, &o->baseline, "MODE",
         "sf/muprop signal centring: none, mean (moving average, decay 0.8) or learned (+ MLP "
         "on x); mean and learned also normalise its variance (NVIL)"},
        {"st-slope", FLAG_STRING, &o->st_slope, "WHERE",
         "annealed-st: the slope 1/tau acts on the backward pass only (backward), or tempers "
         "q(z|x) = softmax(logits / tau) itself, sample, KL and evaluation included (posterior)"},
        {"lr", FLAG_DOUBLE, &o->lr, "RATE", "Adam learning rate"},
        {"lr-decay", FLAG_DOUBLE, &o->lr_decay, "F",
         "multiply the learning rate by F every --lr-decay-every steps (the authors' notebook: "
         "0.9)"},
        {"lr-decay-every", FLAG_LONG, &o->lr_decay_every, "N", "steps between learning-rate decays"},
        {"batch", FLAG_INT, &o->batch, "B", "examples per step"},
        {"steps", FLAG_LONG, &o->steps, "S", "training steps (total, counting resumed ones)"},
        {"epochs", FLAG_INT, &o->epochs, "E", "train for E passes over the data instead of --steps"},
        {"tau0", FLAG_DOUBLE, &o->tau0, "T", "initial temperature"},
        {"tau-min", FLAG_DOUBLE, &o->tau_min, "T", "floor of the temperature"},
        {"anneal-rate", FLAG_DOUBLE, &o->anneal_rate, "R",
         "tau = max(tau-min, tau0 exp(-R step))"},
        {"anneal-every", FLAG_LONG, &o->anneal_every, "N", "update tau every N steps"},
        {"binarize", FLAG_STRING, &o->binarize, "MODE",
         "dynamic (Bernoulli resample per draw; test set: one fixed sample), threshold (>127), "
         "none"},
        {"seed", FLAG_LONG, &o->seed, "N", "seed of the run's generator"},
        {"eval-every", FLAG_LONG, &o->eval_every, "N",
         "test -ELBO and checkpoint every N steps (0: only at the end)"},
        {"eval-images", FLAG_INT, &o->eval_images, "N", "test images used by evaluations"},
        {"iw-samples", FLAG_INT, &o->iw_samples, "S",
         "importance samples for -log p(x) at the end (0: skip)"},
        {"log-every", FLAG_LONG, &o->log_every, "N", "log.csv row every N steps"},
        {"threads", FLAG_INT, &o->threads, "T",
         "threads for the matrix products (OpenBLAS) and the optimizer (0: all cores)"},
        {"quiet", FLAG_BOOL, &o->quiet, NULL, "no progress output"},
        {"resume", FLAG_BOOL, &o->resume, NULL,
         "continue the run in --out from its model.ckpt, exactly"},
        {NULL, 0, NULL, NULL, NULL},
    };
    memcpy(d, defs, sizeof defs);
}

int train_opts_check(const train_opts *o, vae_config *c, char *err)
{
    memset(c, 0, sizeof *c);
    c->D = 784;
    if (stoch_latent_parse(o->latent_type, &c->latent) != 0)
        return errf(err, "--latent-type '%s': expected categorical or bernoulli", o->latent_type);
    /* Unset or empty: the paper's code for the latent type. */
    const char *spec = o->latent && *o->latent ? o->latent
                       : c->latent == LATENT_CATEGORICAL ? "20x10"
                                                         : "200";
    if (vae_parse_latent_spec(spec, c, err) != 0 || vae_parse_hidden(o->hidden, c, err) != 0)
        return -1;
    const char *est = o->hard ? "st-gumbel" : o->estimator;
    if (o->hard && strcmp(o->estimator, "gumbel") && strcmp(o->estimator, "st-gumbel"))
        return errf(err, "--hard: conflicts with --estimator %s", o->estimator);
    const estimator *e = estimator_find(est);
    if (!e)
        return errf(err, "--estimator '%s': unknown (see gsvae train --help)", est);
    if (est_check(e, c, err) != 0)
        return -1;
    est_baseline bl;
    if (est_baseline_parse(o->baseline, &bl) != 0)
        return errf(err, "--baseline '%s': expected none, mean or learned", o->baseline);
    int posterior;
    if (train_slope_in_posterior(o->st_slope, &posterior) != 0)
        return errf(err, "--st-slope '%s': expected backward or posterior", o->st_slope);
    if (posterior && strcmp(est, "annealed-st"))
        return errf(err, "--st-slope posterior: only with --estimator annealed-st, not %s", est);
    binarize_mode bm;
    if (binarize_parse(o->binarize, &bm) != 0)
        return errf(err, "--binarize '%s': expected dynamic, threshold or none", o->binarize);
    if (!(o->lr > 0 && o->lr < 1))
        return errf(err, "--lr %g: must lie in (0, 1)", o->lr);
    if (!(o->lr_decay > 0 && o->lr_decay <= 1))
        return errf(err, "--lr-decay %g: must lie in (0, 1]", o->lr_decay);
    if (o->lr_decay_every < 1)
        return errf(err, "--lr-decay-every %ld: must be >= 1", o->lr_decay_every);
    if (o->batch < 1 || o->batch > 10000)
        return errf(err, "--batch %d: must lie in 1..10000", o->batch);
    if (o->steps < 1 && o->epochs < 1)
        return errf(err, "--steps %ld: must be at least 1", o->steps);
    if (o->epochs < 0 || o->epochs > 100000)
        return errf(err, "--epochs %d: must lie in 0..100000", o->epochs);
    if (!(o->tau0 > 0))
        return errf(err, "--tau0 %g: must be > 0", o->tau0);
    if (!(o->tau_min > 0))
        return errf(err, "--tau-min %g: must be > 0", o->tau_min);
    if (o->anneal_rate < 0)
        return errf(err, "--anneal-rate %g: must be >= 0", o->anneal_rate);
    if (o->anneal_every < 1)
        return errf(err, "--anneal-every %ld: must be >= 1", o->anneal_every);
    if (o->eval_every < 0)
        return errf(err, "--eval-every %ld: must be >= 0", o->eval_every);
    if (o->log_every < 1)
        return errf(err, "--log-every %ld: must be >= 1", o->log_every);
    if (o->iw_samples < 0 || o->iw_samples > 1000000)
        return errf(err, "--iw-samples %d: must lie in 0..1000000", o->iw_samples);
    if (o->eval_images < 1)
        return errf(err, "--eval-images %d: must be >= 1", o->eval_images);
    if (o->threads < 0 || o->threads > 256)
        return errf(err, "--threads %d: must lie in 0..256", o->threads);
    if (o->seed < 0)
        return errf(err, "--seed %ld: must be >= 0", o->seed);
    return 0;
}

int train_slope_in_posterior(const char *st_slope, int *posterior)
{
    if (!strcmp(st_slope, "backward") || !strcmp(st_slope, "posterior")) {
        *posterior = !strcmp(st_slope, "posterior");
        return 0;
    }
    return -1;
}

float train_logit_scale(const train_opts *o, long step)
{
    int posterior;
    if (train_slope_in_posterior(o->st_slope, &posterior) != 0 || !posterior)
        return 1.0f;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    return (float)(1.0 / schedule_tau(&sched, step));
}

static void train_usage(FILE *out, train_opts *o)
{
    flag_def defs[TRAIN_MAX_FLAGS];
    train_flag_table(o, defs);
    flags_usage(out, "gsvae train [FLAGS]",
                "Train a VAE with a discrete latent code on MNIST. Writes log.csv, summary.json,\n"
                "recon.png, samples.png and model.ckpt into --out.",
                defs);
    fprintf(out, "\nestimators:\n");
    for (const estimator *e = estimator_list(); e->run; e++)
        fprintf(out, "  %-12s %s\n", stoch_estimator_name(e->id), stoch_estimator_help(e->id));
}

/* Everything a run holds; allocated once before the loop. */
typedef struct {
    train_opts o;
    vae_config cfg;
    binarize_mode bin;
    const estimator *est;
    dataset train, test;
    float *test_x;        /* the fixed binarized test set */
    int ntest;
    batcher bt;
    vae_model m;
    vae_acts a;
    est_state es;
    const estimator *step_est; /* what a step runs: est, or st under --st-slope posterior */
    adam_state adam;
    eval_ws ev;
    run_state st;
    float *x;             /* batch */
    long total_steps;
    long log_cap;         /* rows st.log can hold */
    double final_tau;     /* tau of the last step, for the relaxed bound */
    char ckpt_path[4096];
} run;

static void run_free(run *R)
{
    dataset_free(&R->train);
    dataset_free(&R->test);
    free(R->test_x);
    batcher_free(&R->bt);
    vae_free(&R->m);
    vae_acts_free(&R->a);
    est_state_free(&R->es);
    adam_free(&R->adam);
    eval_ws_free(&R->ev);
    free(R->st.log);
    free(R->x);
}

int train_threads(const train_opts *o)
{
    if (o->threads > 0)
        return o->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int run_setup(run *R, char *err)
{
    if (train_opts_check(&R->o, &R->cfg, err) != 0)
        return -1;
    binarize_parse(R->o.binarize, &R->bin);
    R->est = estimator_find(R->o.hard ? "st-gumbel" : R->o.estimator);
    /* Annealed ST with the slope in q is ST on the tempered posterior: the
     * model carries the slope (its logit scale, set before every step). */
    int posterior = 0;
    train_slope_in_posterior(R->o.st_slope, &posterior);
    R->step_est = posterior ? estimator_find("st") : R->est;
    if (R->o.threads > 0)
        openblas_set_num_threads(R->o.threads);
    if (dataset_load_split(R->o.data_dir, "train", &R->train, err) != 0 ||
        dataset_load_split(R->o.data_dir, "test", &R->test, err) != 0)
        return -1;
    if ((int)R->train.dim != R->cfg.D || R->test.dim != R->train.dim)
        return errf(err, "%s: images are %ux%u, the model expects 28x28", R->o.data_dir,
                    R->train.rows, R->train.cols);
    if (!(R->test_x = load_test_set(&R->test, R->bin, R->o.eval_images, &R->ntest, err)))
        return -1;
    long per_epoch = ((long)R->train.count + R->o.batch - 1) / R->o.batch;
    R->total_steps = R->o.epochs > 0 ? per_epoch * R->o.epochs : R->o.steps;
    rng_seed(&R->st.rng, (uint64_t)R->o.seed);
    /* NVIL normalises the signal's variance whenever it centres it; the
     * baseline network gets its own seed so the run's stream is unchanged. */
    est_options eo;
    est_options_default(&eo);
    est_baseline_parse(R->o.baseline, &eo.baseline);
    eo.var_norm = eo.baseline != EST_BASELINE_NONE;
    eo.baseline_lr = (float)R->o.lr;
    eo.baseline_seed = (uint64_t)R->o.seed ^ 0x6e76696c00000000ull;
    if (vae_init(&R->m, &R->cfg, &R->st.rng, err) != 0 ||
        vae_acts_init(&R->a, &R->m, R->o.batch, err) != 0 ||
        est_state_init(&R->es, &R->m, R->o.batch, &eo, err) != 0 ||
        adam_init(&R->adam, R->m.nparams, err) != 0 || eval_ws_init(&R->ev, &R->m, 1000, err) != 0 ||
        batcher_init(&R->bt, &R->train, (uint32_t)R->o.batch, &R->st.rng, err) != 0)
        return -1;
    /* A row every log_every steps, plus one at each evaluation and at the
     * end. */
    R->log_cap = R->total_steps / R->o.log_every + 3 +
                 (R->o.eval_every ? R->total_steps / R->o.eval_every : 0);
    R->adam.threads = train_threads(&R->o);
    R->st.log = xcalloc((size_t)R->log_cap, sizeof(log_row), err, "log");
    R->x = xcalloc((size_t)R->o.batch * R->cfg.D, sizeof(float), err, "batch");
    if (!R->st.log || !R->x)
        return -1;
    R->st.order = R->bt.order;
    R->st.order_count = R->train.count;
    R->st.est_persist = R->es.persist;
    R->st.est_npersist = R->es.npersist;
    R->st.nlog = 0;
    return 0;
}

static void sync_batcher_to_state(run *R)
{
    R->st.pos = R->bt.pos;
    R->st.epoch = R->bt.epoch;
}

static int save_checkpoint(run *R, char *err)
{
    sync_batcher_to_state(R);
    return run_ckpt_save(R->ckpt_path, &R->o, &R->m, &R->adam, &R->st, err);
}

static void progress(const run *R, long step, double tau, double loss, double ex_per_s,
                     int tty, int final)
{
    if (R->o.quiet)
        return;
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

/* One optimisation step on batch x; returns the mean loss (NaN on NaN). */
double train_step(vae_model *m, vae_acts *a, est_state *es, const estimator *est,
                  adam_state *adam, const float *x, int B, float tau, float lr, rng_t *r,
                  double *recon_out, double *kl_out)
{
    est_ctx c = {m, a, es, x, B, tau, r};
    est_elbo_gradient(est, &c);
    double recon = 0.0, kl = 0.0;
    for (int b = 0; b < B; b++) {
        recon += a->recon[b];
        kl += a->kl[b];
    }
    *recon_out = recon / B;
    *kl_out = kl / B;
    if (!isfinite(recon + kl))
        return NAN;
    adam_update(adam, m->params, m->grads, lr);
    return (recon + kl) / B;
}

/* Test -ELBO of the current model into row: with the hard code (the
 * discrete model) and with the relaxed code at the row's tau.  Returns the
 * hard figures. */
static elbo_result evaluate_into(run *R, log_row *row)
{
    elbo_result hard, relaxed;
    rng_t rr;
    rng_seed(&rr, EVAL_SEED);
    eval_elbo(&R->m, &R->ev, R->test_x, R->ntest, &rr, &hard);
    rng_seed(&rr, EVAL_SEED);
    eval_elbo_relaxed(&R->m, &R->ev, R->test_x, R->ntest, (float)row->tau, &rr, &relaxed);
    row->test_neg_elbo = hard.neg_elbo;
    row->test_neg_elbo_relaxed = relaxed.neg_elbo;
    return hard;
}

static int final_outputs(run *R, elbo_result *final, double *relaxed, double *iw, char *err)
{
    char path[4200];
    rng_t er;
    log_row fin = {.tau = R->final_tau};
    *final = evaluate_into(R, &fin);
    *relaxed = fin.test_neg_elbo_relaxed;
    *iw = NAN;
    if (R->o.iw_samples > 0) {
        rng_seed(&er, EVAL_SEED + 1);
        if (!R->o.quiet)
            fprintf(stderr, "importance sampling -log p(x) with %d samples on %d images...\n",
                    R->o.iw_samples, R->ntest);
        *iw = eval_iw(&R->m, &R->ev, R->test_x, R->ntest, R->o.iw_samples, &er);
    }
    snprintf(path, sizeof path, "%s/recon.png", R->o.out_dir);
    rng_seed(&er, EVAL_SEED + 2);
    if (write_recon_png(path, &R->m, &R->ev, R->test_x, R->ntest, &er, err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/samples.png", R->o.out_dir);
    rng_seed(&er, EVAL_SEED + 3);
    if (write_samples_png(path, &R->m, &R->ev, 100, &er, err) != 0)
        return -1;
    return 0;
}

static int write_summary(run *R, const elbo_result *fin, double relaxed, double iw, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    FILE *f = af.f;
    char lat[64], hid[64];
    vae_format_latent(&R->cfg, lat, sizeof lat);
    vae_format_hidden(&R->cfg, hid, sizeof hid);
    fprintf(f, "{\n  \"gsvae_version\": \"%s\",\n", GSVAE_VERSION);
    fprintf(f, "  \"versions\": {\"openblas\": \"%s\", \"zlib\": \"%s\", \"libpng\": \"%s\"},\n",
            openblas_get_config(), zlibVersion(), png_get_libpng_ver(NULL));
    fprintf(f, "  \"flags\": {\"latent_type\": \"%s\", \"latent\": \"%s\", \"hidden\": \"%s\", "
               "\"estimator\": \"%s\", \"st_slope\": \"%s\", \"baseline\": \"%s\", \"lr\": %.17g, "
               "\"batch\": %d, \"steps\": %ld, "
               "\"tau0\": %.17g, \"tau_min\": %.17g, \"anneal_rate\": %.17g, "
               "\"anneal_every\": %ld, \"binarize\": \"%s\", \"eval_images\": %d, "
               "\"iw_samples\": %d, \"threads\": %d},\n",
            R->o.latent_type, lat, hid, stoch_estimator_name(R->est->id), R->o.st_slope,
            R->o.baseline, R->o.lr,
            R->o.batch, R->total_steps,
            R->o.tau0, R->o.tau_min, R->o.anneal_rate, R->o.anneal_every, R->o.binarize,
            R->ntest, R->o.iw_samples, R->o.threads);
    fprintf(f, "  \"seed\": %ld,\n", R->o.seed);
    fprintf(f, "  \"steps_done\": %ld,\n  \"train_seconds\": %.3f,\n", R->st.step, R->st.seconds);
    fprintf(f, "  \"test_neg_elbo\": %.6f,\n  \"test_recon\": %.6f,\n  \"test_kl\": %.6f,\n",
            fin->neg_elbo, fin->recon, fin->kl);
    fprintf(f, "  \"test_neg_elbo_relaxed\": %.6f,\n", relaxed);
    if (isfinite(iw))
        fprintf(f, "  \"test_neg_log_px_iw\": %.6f,\n", iw);
    else
        fprintf(f, "  \"test_neg_log_px_iw\": null,\n");
    const log_row *last = R->st.nlog ? &R->st.log[R->st.nlog - 1] : NULL;
    fprintf(f, "  \"final_tau\": %.6f,\n  \"final_train_loss\": %.6f\n}\n",
            last ? last->tau : R->o.tau0, last ? last->train_loss : NAN);
    return af_commit(&af, err);
}

/* The value of --task (or --task=...) in argv; "vae" when absent. */
static const char *find_task(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--task") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--task=", 7))
            return argv[i] + 7;
    }
    return "vae";
}

/* Drop --task and its value, for the VAE's own flag parser. */
static int strip_task(int argc, char **argv)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--task") && i + 1 < argc) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--task=", 7))
            continue;
        argv[n++] = argv[i];
    }
    return n;
}

int cmd_train(int argc, char **argv)
{
    const char *task = find_task(argc, argv);
    if (!strcmp(task, "sbn"))
        return cmd_train_sbn(argc, argv);
    if (!strcmp(task, "semisup"))
        return cmd_train_semisup(argc, argv);
    if (strcmp(task, "vae") != 0) {
        fprintf(stderr, "gsvae train: --task '%s': expected vae, sbn or semisup\n", task);
        return 2;
    }
    argc = strip_task(argc, argv);
    static run R;
    char err[ERR_LEN];
    memset(&R, 0, sizeof R);
    train_opts_default(&R.o);
    flag_def defs[TRAIN_MAX_FLAGS];
    train_flag_table(&R.o, defs);
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        train_usage(stdout, &R.o);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 2;
    }
    vae_config dummy;
    if (train_opts_check(&R.o, &dummy, err) != 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 2;
    }
    if (make_dir(R.o.out_dir, err) != 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 1;
    }
    snprintf(R.ckpt_path, sizeof R.ckpt_path, "%s/model.ckpt", R.o.out_dir);
    char *stored_text = NULL;
    ckpt_file *resume = NULL;
    int status = 1;
    if (R.o.resume) {
        /* The stored options define the run; what the command line gives
         * explicitly overrides them (a changed model shape is then refused
         * by the size checks of the restore). */
        train_opts cli = R.o;
        if (ckpt_read(R.ckpt_path, &resume, err) != 0 ||
            run_ckpt_read_opts(resume, R.ckpt_path, &R.o, &stored_text, err) != 0)
            goto fail;
        if (flags_parse(defs, argc, argv, pos, 0, &npos, err) != 0)
            goto fail;
        R.o.data_dir = cli.data_dir;
        R.o.out_dir = cli.out_dir;
    }
    if (run_setup(&R, err) != 0)
        goto fail;
    if (resume) {
        R.st.nlog = R.log_cap;
        if (run_ckpt_restore(resume, R.ckpt_path, &R.m, &R.adam, &R.st, err) != 0)
            goto fail;
        R.bt.pos = R.st.pos;
        R.bt.epoch = R.st.epoch;
        ckpt_free(resume);
        resume = NULL;
        if (R.st.step >= R.total_steps) {
            fprintf(stderr, "gsvae train: %s: already at step %ld of %ld; raise --steps\n",
                    R.ckpt_path, R.st.step, R.total_steps);
            goto fail_quiet;
        }
    }

    tau_schedule sched = {R.o.tau0, R.o.tau_min, R.o.anneal_rate, R.o.anneal_every};
    int tty = isatty(fileno(stderr));
    double t_start = now_seconds() - R.st.seconds, t_window = now_seconds();
    long window_start = R.st.step;
    double acc_loss = 0, acc_recon = 0, acc_kl = 0;
    long acc_n = 0, last_good = -1;
    double ex_per_s = 0, last_print = 0;
    if (!R.o.quiet)
        fprintf(stderr, "training %s VAE (%s) with %s for %ld steps, batch %d, seed %ld\n",
                stoch_latent_name(R.cfg.latent), R.o.latent ? R.o.latent : R.cfg.latent == LATENT_CATEGORICAL ? "20x10" : "200",
                stoch_estimator_name(R.est->id), R.total_steps, R.o.batch, R.o.seed);
    if (R.st.step == 0 && R.o.eval_every > 0) {
        /* The starting point of the learning curve. */
        log_row *row = &R.st.log[R.st.nlog++];
        *row = (log_row){0, 0.0, schedule_tau(&sched, 0), NAN, NAN, NAN, NAN, NAN, 0.0};
        R.m.logit_scale = train_logit_scale(&R.o, 0);
        evaluate_into(&R, row);
    }
    /* Fault injection for the tests of the NaN stop: poison one weight
     * before the given step, so the NaN travels the real path. */
    const char *inject = getenv("GSVAE_TEST_NAN_AT_STEP");
    long nan_step = inject ? atol(inject) : -1;
    while (R.st.step < R.total_steps) {
        long step = R.st.step;
        if (step == nan_step)
            R.m.params[R.m.enc[0].b] = NAN;
        double tau = schedule_tau(&sched, step);
        batcher_next(&R.bt, R.bin, &R.st.rng, R.x, NULL);
        double recon, kl;
        double lr = R.o.lr * pow(R.o.lr_decay, (double)(step / R.o.lr_decay_every));
        R.m.logit_scale = train_logit_scale(&R.o, step);
        double loss = train_step(&R.m, &R.a, &R.es, R.step_est, &R.adam, R.x, R.o.batch, (float)tau,
                                 (float)lr, &R.st.rng, &recon, &kl);
        if (!isfinite(loss)) {
            if (tty && !R.o.quiet)
                fputc('\n', stderr);
            if (last_good >= 0)
                fprintf(stderr, "gsvae train: step %ld: loss is %s; stopped. The last good "
                                "checkpoint is %s (step %ld)\n",
                        step, isnan(loss) ? "NaN" : "infinite", R.ckpt_path, last_good);
            else
                fprintf(stderr, "gsvae train: step %ld: loss is %s; stopped before any "
                                "checkpoint was written\n",
                        step, isnan(loss) ? "NaN" : "infinite");
            goto fail_quiet;
        }
        R.st.step = step + 1;
        acc_loss += loss;
        acc_recon += recon;
        acc_kl += kl;
        acc_n++;
        int do_eval = R.o.eval_every > 0 && R.st.step % R.o.eval_every == 0;
        int do_log = R.st.step % R.o.log_every == 0 || R.st.step == R.total_steps || do_eval;
        double now = now_seconds();
        if (do_log) {
            R.st.seconds = now - t_start;
            if (now > t_window) {
                ex_per_s = (double)(R.st.step - window_start) * R.o.batch / (now - t_window);
            }
            log_row *row = &R.st.log[R.st.nlog++];
            row->step = R.st.step;
            row->epoch = (double)R.st.step * R.o.batch / R.train.count;
            row->tau = tau;
            row->train_loss = acc_loss / acc_n;
            row->train_recon = acc_recon / acc_n;
            row->train_kl = acc_kl / acc_n;
            row->test_neg_elbo = row->test_neg_elbo_relaxed = NAN;
            row->seconds = R.st.seconds;
            if (do_eval) {
                elbo_result er = evaluate_into(&R, row);
                if (save_checkpoint(&R, err) != 0 || write_log_csv(R.o.out_dir, &R.st, err) != 0)
                    goto fail;
                last_good = R.st.step;
                if (!R.o.quiet && !tty)
                    printf("step %ld: test -ELBO %.3f (recon %.3f, KL %.3f)\n", R.st.step,
                           er.neg_elbo, er.recon, er.kl);
                else if (!R.o.quiet)
                    fprintf(stderr, "\rstep %ld: test -ELBO %.3f (recon %.3f, KL %.3f)%40s\n",
                            R.st.step, er.neg_elbo, er.recon, er.kl, "");
                /* Evaluation time is not training throughput. */
                now = now_seconds();
            }
            if (!tty)
                progress(&R, R.st.step, tau, acc_loss / acc_n, ex_per_s, 0, 0);
            acc_loss = acc_recon = acc_kl = 0;
            acc_n = 0;
            t_window = now;
            window_start = R.st.step;
        }
        if (tty && (now - last_print > 0.2 || R.st.step == R.total_steps)) {
            double rate = now > t_window ? (double)(R.st.step - window_start) * R.o.batch / (now - t_window) : ex_per_s;
            progress(&R, R.st.step, tau, loss, rate > 0 ? rate : ex_per_s, 1, R.st.step == R.total_steps);
            last_print = now;
        }
    }
    R.st.seconds = now_seconds() - t_start;

    elbo_result fin;
    double iw, relaxed;
    R.final_tau = schedule_tau(&sched, R.st.step - 1);
    if (save_checkpoint(&R, err) != 0 || write_log_csv(R.o.out_dir, &R.st, err) != 0 ||
        final_outputs(&R, &fin, &relaxed, &iw, err) != 0 ||
        write_summary(&R, &fin, relaxed, iw, err) != 0)
        goto fail;
    printf("final test -ELBO %.3f nats (recon %.3f, KL %.3f)", fin.neg_elbo, fin.recon, fin.kl);
    if (isfinite(iw))
        printf(", -log p(x) ~ %.3f (%d importance samples)", iw, R.o.iw_samples);
    printf("; %ld steps in %.1f s; outputs in %s\n", R.st.step, R.st.seconds, R.o.out_dir);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "gsvae train: %s\n", err);
fail_quiet:
    status = 1;
done:
    if (resume)
        ckpt_free(resume);
    run_free(&R);
    free(stored_text);
    return status;
}
