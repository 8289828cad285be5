/* task_semisup.c: `gsvae train --task semisup`: semi-supervised classification
 * of MNIST with the M2 model of Kingma et al. (2014), the class variable
 * summed out exactly or sampled once with Gumbel-Softmax (Jang, Gu & Poole
 * 2017, section 4.3).  The model and its gradients are in semisup_model.c.
 *
 * Choices, each with its source ("K14": Kingma, Rezende, Mohamed & Welling,
 * "Semi-supervised learning with deep generative models", NIPS 2014, and its
 * code github.com/dpkingma/nips14-ssl; "J17": Jang, Gu & Poole, ICLR 2017):
 *
 *   model        M2: q(y|x), q(z|x,y), p(x|y,z), p(y) uniform, p(z) N(0,I).  K14 3.1.2.
 *   networks     --net mlp (default): one MLP each, one hidden layer of 500 softplus
 *                units.  K14 section 4 (M2: "one hidden layer, 500 hidden units,
 *                softplus").  --hidden takes up to 4 layers (all three MLPs get the same
 *                widths, the decoder reversed, as in K14's code); --activation relu is
 *                offered.  --net conv: J17's convolutional networks (section 4.3, appendix
 *                A: 3-layer conv q(y|x) and q(z|x,y), 4-layer conv-transpose p(x|y,z),
 *                ReLU) with the layer sizes chosen in results/semisup/networks.md (the
 *                TensorFlow convolutional-VAE tutorial's, y joining q(z|x,y) after its
 *                convolutions), Glorot-uniform weights; --hidden, --activation and
 *                --init-std do not apply to it.
 *   z            50 Gaussian units, mean and log-variance from q(z|x,y).  K14 section 4.
 *   init         weights N(0, 0.001^2), biases 0.  K14 section 4.
 *   optimiser    Adam, lr 3e-4, beta1 0.9, beta2 0.999.  K14 section 4 ("RMSProp with
 *                momentum and bias correction", lr 0.0003, moment decays 0.1 and 0.001,
 *                i.e. these betas; their code calls it AdaM).
 *   alpha        J^a = J + a E_labelled[-log q(y|x)] with a = 0.1 N, N the number of
 *                training examples (K14 eq. 9 and section 3.1.3).  We minimise J^a / N
 *                per step, estimated from the batch:
 *                  (N_l/N) mean_l L(x,y) + (N_u/N) mean_u U(x) + 0.1 mean_l -log q(y|x),
 *                with N_l = --labels, N_u = --unlabelled, N = N_l + N_u.  --alpha is
 *                a / N (default 0.1, K14).  K14's code weighs the classifier term the
 *                same way (beta = alpha n_tot / n_labeled per labelled example, all over
 *                n_tot).  J17 section 4.3 reports a search over alpha in {0.1, 0.2, 0.3,
 *                0.8, 1.0} without stating its normalisation.
 *   data         --labels 100 labelled examples, 10 of each class, drawn with the seed
 *                from the unlabelled pool (J17 4.3, K14 4.1); the pool is the first
 *                --unlabelled 50000 MNIST training images (J17 4.3: "50,000 unlabeled
 *                examples"); the labelled ones stay in it (0.2% of it).  Dynamic
 *                binarization of every draw (J17 4.3, for the unlabelled; the labelled
 *                likewise: not stated, chosen for symmetry).
 *   batches      --batch 100 unlabelled examples per step, one epoch-wise shuffled pass
 *                after another, and --labelled-batch 100 labelled ones drawn with
 *                replacement.  Not stated in J17; K14's code splits both sets into the
 *                same number of minibatches, which with 100 labels would put 0.2 labelled
 *                examples in each; drawing them with replacement and weighing them by
 *                N_l/N keeps the same objective in expectation.
 *   estimators   exact: K rows per unlabelled example through the encoder and decoder,
 *                batched into one matrix product (K14).  gumbel: one row with the relaxed
 *                y~ = softmax((logits + g)/tau), g Gumbel, fed to both q(z|x,y) and
 *                p(x|y,z); KL(q(y|x) || uniform) analytic (J17 4.3; the KL as in the
 *                categorical VAE of J17).  st-gumbel: as gumbel, but the row holds the
 *                one-hot argmax of y~ (a true sample of q(y|x)) and the backward pass
 *                takes y~'s Jacobian (J17 2.2), so the networks never see a y between
 *                classes.  Labelled examples take one row each in all three.
 *   temperature  tau = max(0.5, 1.0 exp(-3e-5 t)), updated every 2000 steps.  J17 4.3.
 *   steps        50000 by default.  Not stated in J17: chosen as in the VAE task.
 *   evaluation   test accuracy: argmax q(y|x) over the 10,000 test images; test -ELBO:
 *                U(x) with y summed out exactly (K rows per image), one z sample per
 *                (x, y) with the fixed evaluation seed, on the test images binarized once
 *                with that seed (as the VAE task).  Training speed: steps per second of
 *                training alone (batches, forward, backward, Adam), evaluations excluded.
 *   classes      --classes K > 10 gives the model K classes while the labels stay 0..9,
 *                so that the cost of the exact sum (K rows) can be measured against the
 *                gumbel sample (1 row); accuracy then means little.  J17 figure 5 (speed
 *                at K = 10 and 100).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "driver.h"
#include "model.h"
#include "semisup.h"
#include "task_semisup.h"
#include "util.h"

/* Encoder/decoder rows per step beyond which a run is refused: about
 * 4 KB of activations and gradients each. */
#define SS_MAX_ROWS 1000000L
/* The same for the conv networks, whose decoder holds about 360 KB per row
 * (results/semisup/networks.md): about 7 GB. */
#define SS_MAX_CONV_ROWS 20000L
/* Rows per evaluation chunk (images x K) when training rows are fewer. */
#define SS_EVAL_ROWS 2000L
/* The labelled subset is drawn from its own stream of the seed, so that it
 * is the same for every estimator and class count. */
#define SS_LABEL_STREAM 0x6c6162656c73ull

typedef struct {
    /* flags */
    const char *hidden, *activation, *weighting, *net;
    int classes, labels, unlabelled, latent, labelled_batch;
    double alpha, init_std;
    /* set by the checks and setup */
    ss_config cfg;
    stoch_estimator est;
    ss_weights wt;
    dataset pool;                /* a view of the training images' first --unlabelled */
    uint32_t *labelled;          /* --labels indices into pool */
    ss_model m;
    ss_ws ws;
    float *x;                    /* labelled then unlabelled rows, (B_l + B_u) x D */
    uint8_t *y;                  /* B_l labels */
} ss_task;

static ss_task *T(const run *R)
{
    return R->t;
}

static void ss_defaults(run_opts *c, void *t)
{
    ss_task *s = t;
    c->out_dir = "runs/semisup";
    c->lr = 3e-4;
    c->anneal_every = 2000;
    s->hidden = "500";
    s->activation = "softplus";
    s->weighting = "k14";
    s->net = "mlp";
    s->classes = 10;
    s->labels = 100;
    s->unlabelled = 50000;
    s->latent = 50;
    s->labelled_batch = 100;
    s->alpha = 0.1;
    s->init_std = 1e-3;
}

static int ss_flags(void *t, flag_def *d)
{
    ss_task *s = t;
    const flag_def defs[] = {
        {"classes", FLAG_INT, &s->classes, "K",
         "classes of the model; labels stay 0..9, so accuracy means something only at 10 "
         "(larger K measures the cost of the exact sum)"},
        {"labels", FLAG_INT, &s->labels, "N", "labelled examples, N/10 of each class, drawn with the seed"},
        {"unlabelled", FLAG_INT, &s->unlabelled, "N",
         "the first N training images form the unlabelled pool"},
        {"net", FLAG_STRING, &s->net, "KIND",
         "mlp (Kingma et al.'s MLPs) or conv (the paper's convolutional networks, sizes in "
         "results/semisup/networks.md)"},
        {"hidden", FLAG_STRING, &s->hidden, "W1[,W2..]",
         "hidden widths of each MLP (the decoder's reversed; --net mlp only)"},
        {"activation", FLAG_STRING, &s->activation, "NAME", "softplus or relu"},
        {"latent", FLAG_INT, &s->latent, "Z", "Gaussian latent units"},
        {"alpha", FLAG_DOUBLE, &s->alpha, "A",
         "weight of the mean labelled -log q(y|x) in the per-example objective (Kingma et "
         "al.'s alpha / N)"},
        {"weighting", FLAG_STRING, &s->weighting, "MODE",
         "weights of the labelled and unlabelled -ELBO means: k14 (N_l/N and N_u/N, Kingma "
         "et al.'s sum over the data set), batch (1 and 1: each batch's mean counts alike) or "
         "labelled (1 and 0: the unlabelled images teach nothing, so q(y|x) learns from the "
         "labels alone, the supervised baseline the unlabelled data is measured against)"},
        {"labelled-batch", FLAG_INT, &s->labelled_batch, "B",
         "labelled examples per step, drawn with replacement"},
        {"init-std", FLAG_DOUBLE, &s->init_std, "S", "weights start ~ N(0, S^2), biases 0"},
    };
    memcpy(d, defs, sizeof defs);
    return (int)(sizeof defs / sizeof defs[0]);
}

static const char usage_about[] =
    "Semi-supervised classification of MNIST with the M2 model of Kingma et al. (2014):\n"
    "classifier q(y|x), Gaussian encoder q(z|x,y), Bernoulli decoder p(x|y,z), uniform p(y),\n"
    "N(0,I) p(z).  Unlabelled examples either sum over y exactly (K encoder/decoder rows\n"
    "each) or take one Gumbel-Softmax sample of y (one row; Jang et al. 2017, section 4.3).\n"
    "Writes log.csv and summary.json into --out; the last line gives the test accuracy,\n"
    "the test -ELBO (y summed out exactly) and the training steps per second.";

static const char usage_sources[] =
    "\nchoices and sources (K14: Kingma et al. 2014; J17: Jang et al. 2017):\n"
    "  networks     --net mlp: one hidden layer of 500 softplus units per MLP (K14 sec. 4);\n"
    "               --net conv: J17's 3-layer conv q(y|x), q(z|x,y) and 4-layer convT\n"
    "               p(x|y,z), ReLU (J17 appendix A), sizes in results/semisup/networks.md\n"
    "  latent z     50 units (K14 sec. 4)\n"
    "  init         weights N(0, 0.001^2), biases 0 (K14 sec. 4)\n"
    "  optimiser    Adam lr 3e-4, betas 0.9/0.999 (K14 sec. 4)\n"
    "  objective    per step, (N_l/N) mean L(x,y) + (N_u/N) mean U(x) + alpha mean -log q(y|x)\n"
    "               = K14's J^alpha / N with alpha_K14 = 0.1 N (K14 eq. 9, sec. 3.1.3)\n"
    "  data         100 labels, 10 per class; 50,000 unlabelled images; dynamic\n"
    "               binarization (J17 sec. 4.3)\n"
    "  batches      100 unlabelled + 100 labelled (drawn with replacement) per step (not\n"
    "               stated in J17: chosen; the weights above keep K14's objective)\n"
    "  temperature  tau = max(0.5, exp(-3e-5 t)), updated every 2000 steps (J17 sec. 4.3)\n"
    "  gumbel       relaxed y fed to encoder and decoder; KL(q(y|x)||uniform) analytic\n"
    "  st-gumbel    as gumbel with the one-hot argmax of the relaxed y fed forward (J17 2.2)\n"
    "  steps        50000 (not stated in J17: as the VAE task)\n"
    "  --classes K  K > 10: the model has K classes but the labels stay 0..9, so the\n"
    "               accuracy is meaningful only at K = 10; larger K measures speed (J17 fig. 5)\n";

static void ss_help(FILE *out)
{
    fputs(usage_sources, out);
}

/* Checks that need no data; fills the model shape.  One line naming the
 * flag. */
static int ss_check(run *R, char *err)
{
    ss_task *s = T(R);
    const run_opts *o = &R->o;
    ss_config *c = &s->cfg;
    memset(c, 0, sizeof *c);
    if (ss_estimator_parse(o->estimator, &s->est) != 0)
        return errf(err, "--estimator '%s': expected exact, gumbel or st-gumbel", o->estimator);
    if (s->classes < 10 || s->classes > 1000)
        return errf(err, "--classes %d: must lie in 10..1000 (the labels are 0..9)", s->classes);
    if (s->labels < 10 || s->labels % 10 != 0)
        return errf(err, "--labels %d: must be a positive multiple of 10 (balanced classes)",
                    s->labels);
    if (s->unlabelled < 1 || s->unlabelled > 10000000)
        return errf(err, "--unlabelled %d: must lie in 1..10000000", s->unlabelled);
    if (s->labels > s->unlabelled)
        return errf(err, "--labels %d: more than the %d images of the pool (--unlabelled)",
                    s->labels, s->unlabelled);
    vae_config vc;
    memset(&vc, 0, sizeof vc);
    if (vae_parse_hidden(s->hidden, &vc, err) != 0)
        return -1;
    if (vc.nhidden == 0)
        return errf(err, "--hidden none: the semisup task's networks need a hidden layer");
    ss_activation act;
    if (ss_activation_parse(s->activation, &act) != 0)
        return errf(err, "--activation '%s': expected softplus or relu", s->activation);
    if (s->latent < 1 || s->latent > 10000)
        return errf(err, "--latent %d: must lie in 1..10000", s->latent);
    if (!(s->alpha >= 0))
        return errf(err, "--alpha %g: must be >= 0", s->alpha);
    if (strcmp(s->weighting, "k14") != 0 && strcmp(s->weighting, "batch") != 0 &&
        strcmp(s->weighting, "labelled") != 0)
        return errf(err, "--weighting '%s': expected k14, batch or labelled", s->weighting);
    if (s->labelled_batch < 1 || s->labelled_batch > 10000)
        return errf(err, "--labelled-batch %d: must lie in 1..10000", s->labelled_batch);
    if (!(s->init_std > 0 && s->init_std < 10))
        return errf(err, "--init-std %g: must lie in (0, 10)", s->init_std);
    if (ss_net_parse(s->net, &c->net) != 0)
        return errf(err, "--net '%s': expected mlp or conv", s->net);
    c->D = 784;
    c->K = s->classes;
    c->Z = s->latent;
    c->nhidden = vc.nhidden;
    memcpy(c->hidden, vc.hidden, sizeof c->hidden);
    c->act = act;
    long rows = ss_rows(c, s->labelled_batch, o->batch, s->est);
    long max_rows = c->net == SS_NET_CONV ? SS_MAX_CONV_ROWS : SS_MAX_ROWS;
    if (rows > max_rows)
        return errf(err, "--batch %d x --classes %d: %ld encoder rows per step, more than %ld%s",
                    o->batch, s->classes, rows, max_rows,
                    c->net == SS_NET_CONV ? " (--net conv)" : "");
    return 0;
}

/* labels/10 pool images of each class 0..9, chosen by a partial
 * Fisher-Yates shuffle of that class's indices. */
static int choose_labelled(ss_task *R, long seed, char *err)
{
    int per = R->labels / 10;
    uint32_t n = R->pool.count;
    uint32_t *cand = xcalloc(n, sizeof *cand, err, "labelled selection");
    R->labelled = xcalloc((size_t)R->labels, sizeof *R->labelled, err, "labelled selection");
    if (!cand || !R->labelled) {
        free(cand);
        return -1;
    }
    rng_t pick;
    rng_seed(&pick, (uint64_t)seed ^ SS_LABEL_STREAM);
    for (int c = 0; c < 10; c++) {
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++)
            if (R->pool.labels[i] == c)
                cand[m++] = i;
        if (m < (uint32_t)per) {
            free(cand);
            return errf(err, "--labels %d: the pool of %u images (--unlabelled) holds only %u "
                             "of class %d, fewer than %d",
                        R->labels, n, m, c, per);
        }
        for (int k = 0; k < per; k++) {
            uint32_t j = (uint32_t)k + rng_below(&pick, m - (uint32_t)k);
            uint32_t t = cand[k];
            cand[k] = cand[j];
            cand[j] = t;
            R->labelled[c * per + k] = cand[k];
        }
    }
    free(cand);
    return 0;
}

static int ss_setup(run *R, char *err)
{
    ss_task *s = T(R);
    const run_opts *o = &R->o;
    if ((int)R->train.dim != s->cfg.D)
        return errf(err, "%s: images are %ux%u, the model expects 28x28", o->data_dir,
                    R->train.rows, R->train.cols);
    if ((uint32_t)s->unlabelled > R->train.count)
        return errf(err, "--unlabelled %d: %s holds only %u training images%s", s->unlabelled,
                    o->data_dir, R->train.count, o->validation ? " besides the validation set" : "");
    for (uint32_t i = 0; i < R->test.count; i++)
        if (R->test.labels[i] > 9)
            return errf(err, "%s: test label %u of image %u is not a digit", o->data_dir,
                        R->test.labels[i], i);
    s->pool = R->train;
    s->pool.count = (uint32_t)s->unlabelled;
    if (choose_labelled(s, o->seed, err) != 0)
        return -1;
    double Nl = s->labels, Nu = s->unlabelled;
    int k14 = strcmp(s->weighting, "k14") == 0;
    int labels_alone = strcmp(s->weighting, "labelled") == 0;
    s->wt.labelled = k14 ? Nl / (Nl + Nu) : 1.0;
    s->wt.unlabelled = k14 ? Nu / (Nl + Nu) : labels_alone ? 0.0 : 1.0;
    s->wt.alpha = s->alpha;

    int E = s->labelled_batch + o->batch;
    long rows = ss_rows(&s->cfg, s->labelled_batch, o->batch, s->est);
    int nmax = R->test_set.n > R->valid_set.n ? R->test_set.n : R->valid_set.n;
    /* The conv decoder holds about 360 KB of activations per row: its
     * evaluation chunks take no more rows than a training step. */
    long eval_rows = s->cfg.net == SS_NET_CONV && rows < SS_EVAL_ROWS ? rows : SS_EVAL_ROWS;
    long eval_examples = eval_rows / s->cfg.K;
    if (eval_examples < 1)
        eval_examples = 1;
    if (eval_examples > nmax)
        eval_examples = nmax;
    int max_examples = E > eval_examples ? E : (int)eval_examples;
    long max_rows = rows > eval_examples * s->cfg.K ? rows : eval_examples * s->cfg.K;
    if (ss_init(&s->m, &s->cfg, s->init_std, &R->rng, err) != 0 ||
        ss_ws_init(&s->ws, &s->m, max_examples, max_rows, err) != 0)
        return -1;
    s->x = xcalloc((size_t)E * s->cfg.D, sizeof(float), err, "batch");
    s->y = xcalloc((size_t)s->labelled_batch, 1, err, "batch labels");
    if (!s->x || !s->y)
        return -1;
    R->batch_set = &s->pool;
    R->params = s->m.params;
    R->grads = s->m.grads;
    R->nparams = s->m.nparams;
    return 0;
}

static void ss_describe(const run *R, char *buf, size_t len)
{
    const ss_task *s = T(R);
    snprintf(buf, len,
             "M2 (%s networks, %s over %d classes, %zu parameters): %d labels, %d unlabelled, "
             "%d labelled per step",
             s->net, ss_estimator_name(s->est), s->cfg.K, s->m.nparams, s->labels, s->unlabelled,
             s->labelled_batch);
}

/* The labelled rows (drawn with replacement) then the unlabelled ones; the
 * gradient of the step's objective.  Figures: the objective and its parts. */
static double ss_step(run *R, long step, float tau, double *figs)
{
    ss_task *s = T(R);
    int Bl = s->labelled_batch, Bu = R->o.batch, D = s->cfg.D;
    (void)step;
    for (int b = 0; b < Bl; b++) {
        uint32_t i = s->labelled[rng_below(&R->rng, (uint32_t)s->labels)];
        dataset_example(&s->pool, i, R->bin, &R->rng, s->x + (size_t)b * D);
        s->y[b] = s->pool.labels[i];
    }
    batcher_next(&R->bt, R->bin, &R->rng, s->x + (size_t)Bl * D, NULL);
    memset(s->m.grads, 0, sizeof(float) * s->m.nparams);
    ss_draw_noise(&s->m, &s->ws, Bl, Bu, s->est, &R->rng);
    ss_parts p;
    double loss = ss_forward(&s->m, &s->ws, s->x, s->y, Bl, Bu, s->est, tau, &s->wt, &p);
    if (isfinite(loss))
        ss_backward(&s->m, &s->ws, s->x, s->y, Bl, Bu, s->est, tau, &s->wt);
    figs[0] = p.loss;
    figs[1] = p.lab_neg_elbo;
    figs[2] = p.unl_loss;
    figs[3] = p.class_nll;
    return loss;
}

static void ss_eval(run *R, const eval_set *set, ss_eval_result *er)
{
    ss_task *s = T(R);
    rng_t r;
    rng_seed(&r, EVAL_SEED);
    ss_evaluate(&s->m, &s->ws, set->x, set->labels, set->n, &r, er);
}

static void ss_evaluate_figs(run *R, const eval_set *set, float tau, double *figs)
{
    ss_eval_result er;
    (void)tau;
    ss_eval(R, set, &er);
    figs[0] = er.neg_elbo;
    figs[1] = er.accuracy;
    figs[2] = er.class_nll;
}

static int ss_finish(run *R, FILE *f, char *err)
{
    ss_task *s = T(R);
    (void)err;
    /* The driver's last row holds the final evaluation. */
    const log_row *last = &R->log[R->nlog - 1];
    ss_eval_result fin = {.neg_elbo = last->fig[4], .accuracy = last->fig[5], .class_nll = last->fig[6]};
    fprintf(f, "  \"objective_weights\": {\"labelled_neg_elbo\": %.17g, \"unlabelled\": %.17g, "
               "\"class_nll\": %.17g},\n",
            s->wt.labelled, s->wt.unlabelled, s->wt.alpha);
    fprintf(f, "  \"labelled_indices\": [");
    for (int i = 0; i < s->labels; i++)
        fprintf(f, "%s%u", i ? ", " : "", s->labelled[i]);
    fprintf(f, "],\n");
    fprintf(f, "  \"test_images\": %d,\n", R->test_set.n);
    fprintf(f, "  \"test_accuracy\": %.6f,\n  \"test_neg_elbo\": %.6f,\n  \"test_class_nll\": %.6f,\n",
            fin.accuracy, fin.neg_elbo, fin.class_nll);
    printf("final test accuracy %.4f, test -ELBO %.3f nats (y summed out); %ld steps in %.1f s of "
           "training, %.2f steps/s (%s, K=%d); outputs in %s\n",
           fin.accuracy, fin.neg_elbo, R->step, R->seconds, R->step / R->seconds,
           ss_estimator_name(s->est), s->cfg.K, R->o.out_dir);
    return 0;
}

static void ss_free_run(run *R)
{
    ss_task *s = T(R);
    free(s->labelled);
    ss_free(&s->m);
    ss_ws_free(&s->ws);
    free(s->x);
    free(s->y);
}

int ss_task_load_model(const char *path, run_opts *o, char **text, ss_model *m, char *err)
{
    ckpt_file *f;
    void *t = NULL;
    if (driver_open_checkpoint(path, &task_semisup, &f, o, &t, text, err) != 0)
        return -1;
    char inner[ERR_LEN];
    int rc = -1;
    run R;
    memset(&R, 0, sizeof R);
    R.ops = &task_semisup;
    R.o = *o;
    R.t = t;
    if (ss_check(&R, inner) != 0) {
        errf(err, "%s: stored options invalid: %s", path, inner);
        goto out;
    }
    rng_t r;
    rng_seed(&r, 0);
    if (ss_init(m, &T(&R)->cfg, 1e-3, &r, err) != 0)
        goto out;
    if (driver_ckpt_params(f, path, m->params, m->nparams, err) != 0) {
        ss_free(m);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        free(*text);
        *text = NULL;
    }
    free(t);
    ckpt_free(f);
    return rc;
}

const task_ops task_semisup = {
    .name = "semisup",
    .synopsis = "gsvae train --task semisup [FLAGS]",
    .about = usage_about,
    .train_cols = {"train_loss", "train_labelled_neg_elbo", "train_unlabelled_loss", "train_class_nll"},
    .eval_cols = {"neg_elbo", "accuracy", "class_nll"},
    .state_size = sizeof(ss_task),
    .defaults = ss_defaults,
    .flags = ss_flags,
    .help = ss_help,
    .check = ss_check,
    .setup = ss_setup,
    .describe = ss_describe,
    .step = ss_step,
    .evaluate = ss_evaluate_figs,
    .finish = ss_finish,
    .free = ss_free_run,
};
