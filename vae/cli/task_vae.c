/* task_vae.c: `gsvae train` (--task vae, the default): the paper's VAE with
 * a discrete code, trained with any estimator of estimator.h.  Writes, over
 * the driver's files, recon.png and samples.png. */
#include "task_vae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "outputs.h"
#include "schedule.h"
#include "util.h"

static vae_task *V(const run *R)
{
    return R->t;
}

static void vae_defaults(run_opts *c, void *t)
{
    vae_task *v = t;
    (void)c;
    v->latent_type = "categorical";
    v->latent = NULL;     /* 20x10 or 200 by latent type */
    v->hidden = "512,256";
    v->baseline = "mean";
    v->st_slope = "backward";
    v->darn_point = "centre";
    sigopt_defaults(&v->sig);
    v->prior = "uniform";
    v->tau = "schedule";
    v->iw_samples = 1000;
    v->samples = 1;
}

static int vae_flags(void *t, flag_def *d)
{
    vae_task *v = t;
    const flag_def defs[] = {
        {"st-slope", FLAG_STRING, &v->st_slope, "WHERE",
         "annealed-st: the slope 1/tau acts on the backward pass only (backward), or tempers "
         "q(z|x) = softmax(logits / tau) itself, sample, KL and evaluation included (posterior)"},
        {"darn-point", FLAG_STRING, &v->darn_point, "P",
         "darn on categorical codes: expand every entry at centre (1/K, the simplex's centre) "
         "or half (1/2, the Bernoulli unit's point; the paper defines it for those only)"},
        {"latent-type", FLAG_STRING, &v->latent_type, "TYPE", "categorical or bernoulli"},
        {"latent", FLAG_STRING, &v->latent, "SPEC",
         "NxK categorical variables (default 20x10) or N Bernoulli units (default 200)"},
        {"hidden", FLAG_STRING, &v->hidden, "W1,W2",
         "encoder widths; the decoder mirrors them; none: linear encoder and decoder (the "
         "paper's 784-200-784, 784-(20x10)-784)"},
        {"prior", FLAG_STRING, &v->prior, "P",
         "p(z): uniform, or learned (logits trained on the ELBO: a softmax per variable, a "
         "sigmoid per unit; saved in the checkpoint)"},
        {"tau", FLAG_STRING, &v->tau, "MODE",
         "gumbel, st-gumbel: the temperature from the schedule (--tau0, --tau-min, "
         "--anneal-rate, --anneal-every), or learned: log tau a trained parameter, from "
         "--tau0, on the training loss (saved in the checkpoint, logged as tau)"},
        {"hard", FLAG_BOOL, &v->hard, NULL, "alias of --estimator st-gumbel"},
        {"baseline", FLAG_STRING, &v->baseline, "MODE",
         "sf/muprop signal centring: none, mean (moving average, decay 0.8) or learned (+ MLP "
         "on x); mean and learned also normalise its variance (NVIL)"},
        {"samples", FLAG_INT, &v->samples, "K",
         "vimco (K >= 2), gumbel: train the K-sample importance-weighted bound (gumbel: its "
         "Concrete relaxation); 1: the ELBO"},
        {"kl", FLAG_STRING, &v->kl, "MODE",
         "gumbel: the ELBO's KL term analytic (the discrete code's, as the paper trains; the "
         "default at --samples 1) or relaxed (log q(y|x) - log p(y) of the relaxed sample "
         "under Concrete densities at tau, Maddison et al. 2017: the K = 1 case of the relaxed "
         "bound, and the only one at --samples K > 1)"},
        {"iw-samples", FLAG_INT, &v->iw_samples, "S",
         "importance samples for -log p(x) at the end (0: skip)"},
        {"valid-iw-samples", FLAG_INT, &v->valid_iw_samples, "S",
         "also -log p(x) on the whole --validation split at the end with S importance samples "
         "(0: skip), the figure `gsvae eval --set valid --iw-samples S` gives from the "
         "checkpoint, kept in summary.json (scripts/protocol-select.sh chooses on it)"},
    };
    memcpy(d, defs, sizeof defs);
    int n = (int)(sizeof defs / sizeof defs[0]);
    return n + sigopt_flags(&v->sig, d + n);
}

static void vae_help(FILE *out)
{
    fprintf(out, "\nestimators:\n");
    for (const estimator *e = estimator_list(); e->run; e++)
        fprintf(out, "  %-12s %s\n", stoch_estimator_name(e->id), stoch_estimator_help(e->id));
}

int vae_task_check(const run_opts *o, vae_task *v, char *err)
{
    vae_config *c = &v->cfg;
    memset(c, 0, sizeof *c);
    c->D = 784;
    if (stoch_latent_parse(v->latent_type, &c->latent) != 0)
        return errf(err, "--latent-type '%s': expected categorical or bernoulli", v->latent_type);
    /* Unset or empty: the paper's code for the latent type. */
    const char *spec = v->latent && *v->latent ? v->latent
                       : c->latent == LATENT_CATEGORICAL ? "20x10"
                                                         : "200";
    if (vae_parse_latent_spec(spec, c, err) != 0 || vae_parse_hidden(v->hidden, c, err) != 0)
        return -1;
    if (vae_prior_parse(v->prior, &c->prior) != 0)
        return errf(err, "--prior '%s': expected uniform or learned", v->prior);
    const char *est = v->hard ? "st-gumbel" : o->estimator;
    if (v->hard && strcmp(o->estimator, "gumbel") && strcmp(o->estimator, "st-gumbel"))
        return errf(err, "--hard: conflicts with --estimator %s", o->estimator);
    if (!(v->est = estimator_find(est)))
        return errf(err, "--estimator '%s': unknown (see gsvae train --help)", est);
    if (est_check(v->est, c, err) != 0)
        return -1;
    est_baseline bl;
    if (est_baseline_parse(v->baseline, &bl) != 0)
        return errf(err, "--baseline '%s': expected none, mean or learned", v->baseline);
    if (strcmp(v->st_slope, "backward") && strcmp(v->st_slope, "posterior"))
        return errf(err, "--st-slope '%s': expected backward or posterior", v->st_slope);
    v->slope_posterior = !strcmp(v->st_slope, "posterior");
    if (strcmp(v->darn_point, "centre") && strcmp(v->darn_point, "half"))
        return errf(err, "--darn-point '%s': expected centre or half", v->darn_point);
    if (!strcmp(v->darn_point, "half") && strcmp(est, "darn"))
        return errf(err, "--darn-point half: only for --estimator darn, not %s", est);
    if (sigopt_check(&v->sig, bl == EST_BASELINE_LEARNED, est, err) != 0)
        return -1;
    if (v->slope_posterior && strcmp(est, "annealed-st"))
        return errf(err, "--st-slope posterior: only with --estimator annealed-st, not %s", est);
    /* Annealed ST with the slope in q is ST on the tempered posterior: the
     * model carries the slope (its logit scale, set before every step). */
    v->step_est = v->slope_posterior ? estimator_find("st") : v->est;
    if (strcmp(v->tau, "schedule") && strcmp(v->tau, "learned"))
        return errf(err, "--tau '%s': expected schedule or learned", v->tau);
    if (!strcmp(v->tau, "learned")) {
        if (v->est->id != STOCH_GUMBEL && v->est->id != STOCH_ST_GUMBEL)
            return errf(err, "--tau learned: only with --estimator gumbel or st-gumbel, not %s",
                        est);
        if (!(o->tau0 > 0))
            return errf(err, "--tau0 %g: must be > 0", o->tau0);
        c->learned_tau0 = (float)o->tau0;
    }
    if (v->samples < 1 || v->samples > 1000)
        return errf(err, "--samples %d: must lie in 1..1000", v->samples);
    if (v->est->k_sample == EST_K_REQUIRED && v->samples < 2)
        return errf(err, "--samples %d: %s trains the K-sample bound and needs K >= 2", v->samples,
                    est);
    if (v->est->k_sample == EST_K_NONE && v->samples != 1)
        return errf(err, "--samples %d: only with --estimator vimco or gumbel (a K-sample "
                         "bound), not %s", v->samples, est);
    if (v->kl && strcmp(v->kl, "analytic") && strcmp(v->kl, "relaxed"))
        return errf(err, "--kl '%s': expected analytic or relaxed", v->kl);
    if (v->kl && v->est->id != STOCH_GUMBEL)
        return errf(err, "--kl %s: only with --estimator gumbel, not %s", v->kl, est);
    if (v->kl && !strcmp(v->kl, "analytic") && v->samples > 1)
        return errf(err, "--kl analytic: the %d-sample bound's KL is the relaxed one (--samples %d)",
                    v->samples, v->samples);
    v->relaxed_kl = v->kl && !strcmp(v->kl, "relaxed");
    if ((v->samples > 1 || v->relaxed_kl) && v->cfg.learned_tau0 > 0)
        return errf(err, "--tau learned: not on a relaxed bound (--samples %d%s)", v->samples,
                    v->relaxed_kl ? ", --kl relaxed" : "");
    if (v->iw_samples < 0 || v->iw_samples > 1000000)
        return errf(err, "--iw-samples %d: must lie in 0..1000000", v->iw_samples);
    if (v->valid_iw_samples < 0 || v->valid_iw_samples > 1000000)
        return errf(err, "--valid-iw-samples %d: must lie in 0..1000000", v->valid_iw_samples);
    if (v->valid_iw_samples > 0 && o->validation <= 0)
        return errf(err, "--valid-iw-samples %d: needs a validation split (--validation N)",
                    v->valid_iw_samples);
    return 0;
}

static int vae_check(run *R, char *err)
{
    return vae_task_check(&R->o, V(R), err);
}

float vae_task_logit_scale(const run_opts *o, const vae_task *v, long step)
{
    if (!v->slope_posterior)
        return 1.0f;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    return (float)(1.0 / schedule_tau(&sched, step));
}

void vae_task_est_options(const run_opts *o, const vae_task *v, est_options *eo)
{
    /* NVIL normalises the signal's variance whenever it centres it (unless
     * --var-norm 0); the baseline network gets its own seed so the run's
     * stream is unchanged. */
    est_options_default(eo);
    est_baseline_parse(v->baseline, &eo->baseline);
    eo->var_norm = eo->baseline != EST_BASELINE_NONE && v->sig.var_norm;
    eo->baseline_lr = (float)sigopt_baseline_lr(&v->sig, o->lr);
    eo->baseline_seed = (uint64_t)o->seed ^ 0x6e76696c00000000ull;
    eo->samples = v->samples;
    eo->relaxed_kl = v->relaxed_kl;
    eo->darn_point = strcmp(v->darn_point, "half") ? STOCH_DARN_CENTRE : 0.5f;
    eo->norm_signal = v->sig.norm_signal;
    eo->learns_cv = v->step_est->learns_cv;
}

static int vae_setup(run *R, char *err)
{
    vae_task *v = V(R);
    const run_opts *o = &R->o;
    if ((int)R->train.dim != v->cfg.D)
        return errf(err, "%s: images are %ux%u, the model expects 28x28", o->data_dir,
                    R->train.rows, R->train.cols);
    est_options eo;
    vae_task_est_options(o, v, &eo);
    /* A K-sample bound decodes K rows per example. */
    if (vae_init(&v->m, &v->cfg, &R->rng, err) != 0 ||
        vae_acts_init(&v->a, &v->m, o->batch * v->samples, err) != 0 ||
        est_state_init(&v->es, &v->m, o->batch, &eo, err) != 0 ||
        eval_ws_init(&v->ev, &v->m, eval_ws_rows(&v->m, 1000, R->threads), err) != 0)
        return -1;
    v->ev.threads = R->threads;
    if (!(v->x = xcalloc((size_t)o->batch * v->cfg.D, sizeof(float), err, "batch")))
        return -1;
    R->params = v->m.params;
    R->grads = v->m.grads;
    R->nparams = v->m.nparams;
    R->persist = v->es.persist;
    R->persist_bytes = v->es.npersist * sizeof(float);
    return 0;
}

static double vae_tau_of_run(const run *R, double scheduled)
{
    return vae_tau(&V(R)->m, (float)scheduled);
}

static void vae_describe(const run *R, char *buf, size_t len)
{
    const vae_task *v = V(R);
    char lat[64];
    vae_format_latent(&v->cfg, lat, sizeof lat);
    char bound[32] = "";
    if (v->samples > 1)
        snprintf(bound, sizeof bound, " on the %d-sample bound", v->samples);
    else if (v->relaxed_kl)
        snprintf(bound, sizeof bound, " with the relaxed KL");
    snprintf(buf, len, "%s VAE (%s%s) with %s%s%s", stoch_latent_name(v->cfg.latent), lat,
             v->cfg.prior == VAE_PRIOR_LEARNED ? ", learned prior" : "",
             stoch_estimator_name(v->est->id), bound,
             v->cfg.learned_tau0 > 0 ? ", learned temperature" : "");
}

/* The gradient of the batch's mean negative ELBO; figures loss, recon, KL. */
static double vae_step(run *R, long step, float tau, double *figs)
{
    vae_task *v = V(R);
    int B = R->o.batch;
    batcher_next(&R->bt, R->bin, &R->rng, v->x, NULL);
    v->m.logit_scale = vae_task_logit_scale(&R->o, v, step);
    est_ctx c = {&v->m, &v->a, &v->es, v->x, B, tau, &R->rng};
    est_elbo_gradient(v->step_est, &c);
    double recon = 0.0, kl = 0.0;
    for (int b = 0; b < B; b++) {
        recon += v->a.recon[b];
        kl += v->a.kl[b];
    }
    figs[0] = (recon + kl) / B;
    figs[1] = recon / B;
    figs[2] = kl / B;
    return isfinite(recon + kl) ? figs[0] : NAN;
}

/* -ELBO with the hard (discrete) code, and with the relaxed one at tau. */
static void vae_evaluate_parts(run *R, const eval_set *s, float tau, elbo_result *hard,
                               elbo_result *relaxed)
{
    vae_task *v = V(R);
    v->m.logit_scale = vae_task_logit_scale(&R->o, v, R->step > 0 ? R->step - 1 : 0);
    rng_t rr;
    rng_seed(&rr, EVAL_SEED);
    eval_elbo(&v->m, &v->ev, s->x, s->n, &rr, hard);
    rng_seed(&rr, EVAL_SEED);
    eval_elbo_relaxed(&v->m, &v->ev, s->x, s->n, tau, &rr, relaxed);
}

static void vae_evaluate(run *R, const eval_set *s, float tau, double *figs)
{
    elbo_result hard, relaxed;
    vae_evaluate_parts(R, s, tau, &hard, &relaxed);
    figs[0] = hard.neg_elbo;
    figs[1] = relaxed.neg_elbo;
}

static int vae_finish(run *R, FILE *f, char *err)
{
    vae_task *v = V(R);
    const run_opts *o = &R->o;
    const eval_set *s = &R->test_set;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    elbo_result fin, relaxed;
    vae_evaluate_parts(R, s, vae_tau(&v->m, (float)schedule_tau(&sched, R->step - 1)), &fin,
                       &relaxed);
    double iw = NAN;
    rng_t er;
    if (v->iw_samples > 0) {
        rng_seed(&er, EVAL_SEED + 1);
        if (!o->quiet)
            fprintf(stderr, "importance sampling -log p(x) with %d samples on %d images...\n",
                    v->iw_samples, s->n);
        iw = eval_iw(&v->m, &v->ev, s->x, s->n, v->iw_samples, &er);
    }
    /* Seeded as gsvae eval seeds its bound, so that the two agree. */
    double valid_iw = NAN;
    if (v->valid_iw_samples > 0 && R->valid_set.x) {
        rng_seed(&er, EVAL_SEED + 1);
        valid_iw = eval_iw(&v->m, &v->ev, R->valid_set.x, R->valid_set.n, v->valid_iw_samples,
                           &er);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/recon.png", o->out_dir);
    rng_seed(&er, EVAL_SEED + 2);
    if (write_recon_png(path, &v->m, &v->ev, s->x, s->n, &er, err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/samples.png", o->out_dir);
    rng_seed(&er, EVAL_SEED + 3);
    if (write_samples_png(path, &v->m, &v->ev, 100, &er, err) != 0)
        return -1;
    fprintf(f, "  \"test_images\": %d,\n", s->n);
    fprintf(f, "  \"test_neg_elbo\": %.6f,\n  \"test_recon\": %.6f,\n  \"test_kl\": %.6f,\n",
            fin.neg_elbo, fin.recon, fin.kl);
    fprintf(f, "  \"test_neg_elbo_relaxed\": %.6f,\n", relaxed.neg_elbo);
    if (v->cfg.learned_tau0 > 0)
        fprintf(f, "  \"learned_tau\": %.6f,\n", vae_tau(&v->m, 0.0f));
    if (isfinite(iw))
        fprintf(f, "  \"test_neg_log_px_iw\": %.6f,\n", iw);
    else
        fprintf(f, "  \"test_neg_log_px_iw\": null,\n");
    if (isfinite(valid_iw)) /* NAN: not asked for, or diverged */
        fprintf(f, "  \"valid_iw_samples\": %d,\n  \"valid_neg_log_px_iw\": %.3f,\n",
                v->valid_iw_samples, valid_iw);
    printf("final test -ELBO %.3f nats (recon %.3f, KL %.3f)", fin.neg_elbo, fin.recon, fin.kl);
    if (isfinite(iw))
        printf(", -log p(x) ~ %.3f (%d importance samples)", iw, v->iw_samples);
    printf("; %ld steps in %.1f s; outputs in %s\n", R->step, R->seconds, o->out_dir);
    return 0;
}

static void vae_free_run(run *R)
{
    vae_task *v = V(R);
    vae_free(&v->m);
    vae_acts_free(&v->a);
    est_state_free(&v->es);
    eval_ws_free(&v->ev);
    free(v->x);
}

const task_ops task_vae = {
    .name = "vae",
    .synopsis = "gsvae train [--task vae] [FLAGS]",
    .about = "Train a VAE with a discrete latent code on MNIST. Writes log.csv, summary.json,\n"
             "recon.png, samples.png and model.ckpt into --out.",
    .train_cols = {"train_loss", "train_recon", "train_kl"},
    .eval_cols = {"neg_elbo", "neg_elbo_relaxed"},
    .state_size = sizeof(vae_task),
    .defaults = vae_defaults,
    .flags = vae_flags,
    .help = vae_help,
    .check = vae_check,
    .setup = vae_setup,
    .describe = vae_describe,
    .step = vae_step,
    .tau = vae_tau_of_run,
    .evaluate = vae_evaluate,
    .finish = vae_finish,
    .free = vae_free_run,
};

int vae_task_load_model(const char *path, run_opts *o, vae_task **v, char **text, vae_model *m,
                        char *err)
{
    ckpt_file *f;
    void *t = NULL;
    *v = NULL;
    if (driver_open_checkpoint(path, &task_vae, &f, o, &t, text, err) != 0)
        return -1;
    char inner[ERR_LEN];
    int rc = -1;
    long step;
    if (vae_task_check(o, t, inner) != 0) {
        errf(err, "%s: stored options invalid: %s", path, inner);
        goto out;
    }
    rng_t r;
    rng_seed(&r, 0);
    if (vae_init(m, &((vae_task *)t)->cfg, &r, err) != 0)
        goto out;
    if (driver_ckpt_params(f, path, m->params, m->nparams, err) != 0 ||
        driver_ckpt_step(f, &step, err) != 0) {
        vae_free(m);
        goto out;
    }
    /* The posterior as the run left it: the scale of its last step. */
    m->logit_scale = vae_task_logit_scale(o, t, step > 0 ? step - 1 : 0);
    rc = 0;
out:
    if (rc != 0) {
        free(*text);
        *text = NULL;
        free(t);
        t = NULL;
    }
    *v = t;
    ckpt_free(f);
    return rc;
}

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
