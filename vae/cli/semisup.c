/* semisup.c: `gsvae train --task semisup`: semi-supervised classification
 * of MNIST with the M2 model of Kingma et al. (2014), the class variable
 * summed out exactly or sampled once with Gumbel-Softmax (Jang, Gu & Poole
 * 2017, section 4.3).  The model and its gradients are in semisup_model.c.
 *
 * Choices, each with its source ("K14": Kingma, Rezende, Mohamed & Welling,
 * "Semi-supervised learning with deep generative models", NIPS 2014, and its
 * code github.com/dpkingma/nips14-ssl; "J17": Jang, Gu & Poole, ICLR 2017):
 *
 *   model        M2: q(y|x), q(z|x,y), p(x|y,z), p(y) uniform, p(z) N(0,I).  K14 3.1.2.
 *   networks     one MLP each, one hidden layer of 500 softplus units.  K14 section 4
 *                (M2: "one hidden layer, 500 hidden units, softplus").  J17 used
 *                convolutional networks instead (section 4.3, appendix A: 3-layer conv
 *                q(y|x) and q(z|x,y), 4-layer conv-transpose p(x|y,z), ReLU); not
 *                reproduced: MLPs are what K14 used and what a CPU run can afford.
 *                --hidden takes up to 4 layers (all three MLPs get the same widths, the
 *                decoder reversed, as in K14's code); --activation relu is offered.
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
#include <unistd.h>

#include <cblas.h>

#include "adam.h"
#include "cli.h"
#include "dataset.h"
#include "flags.h"
#include "model.h"
#include "outputs.h"
#include "rng.h"
#include "schedule.h"
#include "semisup.h"
#include "util.h"

#define SS_MAX_FLAGS 40
/* Encoder/decoder rows per step beyond which a run is refused: about
 * 4 KB of activations and gradients each. */
#define SS_MAX_ROWS 1000000L
/* Rows per evaluation chunk (images x K) when training rows are fewer. */
#define SS_EVAL_ROWS 2000L
/* The labelled subset is drawn from its own stream of the seed, so that it
 * is the same for every estimator and class count. */
#define SS_LABEL_STREAM 0x6c6162656c73ull

typedef struct {
    const char *task, *data_dir, *out_dir, *estimator, *hidden, *activation, *weighting;
    int classes, labels, unlabelled, latent, batch, labelled_batch, eval_images, threads, quiet;
    double alpha, lr, tau0, tau_min, anneal_rate, init_std;
    long steps, anneal_every, seed, eval_every, log_every;
} ss_opts;

static void opts_default(ss_opts *o)
{
    memset(o, 0, sizeof *o);
    o->task = "semisup";
    o->data_dir = "data/mnist";
    o->out_dir = "runs/semisup";
    o->estimator = "gumbel";
    o->hidden = "500";
    o->activation = "softplus";
    o->weighting = "k14";
    o->classes = 10;
    o->labels = 100;
    o->unlabelled = 50000;
    o->latent = 50;
    o->batch = 100;
    o->labelled_batch = 100;
    o->eval_images = 10000;
    o->alpha = 0.1;
    o->lr = 3e-4;
    o->tau0 = 1.0;
    o->tau_min = 0.5;
    o->anneal_rate = 3e-5;
    o->anneal_every = 2000;
    o->init_std = 1e-3;
    o->steps = 50000;
    o->seed = 1;
    o->eval_every = 5000;
    o->log_every = 100;
}

static void flag_table(ss_opts *o, flag_def *d)
{
    const flag_def defs[] = {
        {"task", FLAG_STRING, &o->task, "NAME", "semisup (this task)"},
        {"data", FLAG_STRING, &o->data_dir, "DIR", "directory of the MNIST IDX files"},
        {"out", FLAG_STRING, &o->out_dir, "DIR", "output directory (created)"},
        {"estimator", FLAG_STRING, &o->estimator, "NAME",
         "exact (sum over the K classes, K rows per unlabelled example), gumbel (one "
         "Gumbel-Softmax sample of y, one row) or st-gumbel (its one-hot argmax forward, "
         "the soft sample's gradient backward)"},
        {"classes", FLAG_INT, &o->classes, "K",
         "classes of the model; labels stay 0..9, so accuracy means something only at 10 "
         "(larger K measures the cost of the exact sum)"},
        {"labels", FLAG_INT, &o->labels, "N", "labelled examples, N/10 of each class, drawn with the seed"},
        {"unlabelled", FLAG_INT, &o->unlabelled, "N",
         "the first N training images form the unlabelled pool"},
        {"hidden", FLAG_STRING, &o->hidden, "W1[,W2..]",
         "hidden widths of each MLP (the decoder's reversed)"},
        {"activation", FLAG_STRING, &o->activation, "NAME", "softplus or relu"},
        {"latent", FLAG_INT, &o->latent, "Z", "Gaussian latent units"},
        {"alpha", FLAG_DOUBLE, &o->alpha, "A",
         "weight of the mean labelled -log q(y|x) in the per-example objective (Kingma et "
         "al.'s alpha / N)"},
        {"weighting", FLAG_STRING, &o->weighting, "MODE",
         "weights of the labelled and unlabelled -ELBO means: k14 (N_l/N and N_u/N, Kingma "
         "et al.'s sum over the data set) or batch (1 and 1: each batch's mean counts alike)"},
        {"lr", FLAG_DOUBLE, &o->lr, "RATE", "Adam learning rate"},
        {"batch", FLAG_INT, &o->batch, "B", "unlabelled examples per step"},
        {"labelled-batch", FLAG_INT, &o->labelled_batch, "B",
         "labelled examples per step, drawn with replacement"},
        {"steps", FLAG_LONG, &o->steps, "S", "training steps"},
        {"tau0", FLAG_DOUBLE, &o->tau0, "T", "initial temperature (gumbel, st-gumbel)"},
        {"tau-min", FLAG_DOUBLE, &o->tau_min, "T", "floor of the temperature"},
        {"anneal-rate", FLAG_DOUBLE, &o->anneal_rate, "R", "tau = max(tau-min, tau0 exp(-R step))"},
        {"anneal-every", FLAG_LONG, &o->anneal_every, "N", "update tau every N steps"},
        {"init-std", FLAG_DOUBLE, &o->init_std, "S", "weights start ~ N(0, S^2), biases 0"},
        {"seed", FLAG_LONG, &o->seed, "N", "seed of the run's generators"},
        {"eval-every", FLAG_LONG, &o->eval_every, "N",
         "test accuracy and -ELBO every N steps (0: only at the end)"},
        {"eval-images", FLAG_INT, &o->eval_images, "N", "test images used by evaluations"},
        {"log-every", FLAG_LONG, &o->log_every, "N", "log.csv row every N steps"},
        {"threads", FLAG_INT, &o->threads, "T", "OpenBLAS threads (0: OpenBLAS's default)"},
        {"quiet", FLAG_BOOL, &o->quiet, NULL, "no progress output"},
        {NULL, 0, NULL, NULL, NULL},
    };
    memcpy(d, defs, sizeof defs);
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
    "  networks     one hidden layer of 500 softplus units per MLP (K14 sec. 4); J17 used\n"
    "               convolutional networks (its appendix A), not reproduced here\n"
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

/* Checks that need no data; fills the model shape.  One line naming the
 * flag. */
static int opts_check(const ss_opts *o, ss_config *c, stoch_estimator *est, char *err)
{
    memset(c, 0, sizeof *c);
    if (strcmp(o->task, "semisup") != 0)
        return errf(err, "--task '%s': this command trains semisup", o->task);
    if (ss_estimator_parse(o->estimator, est) != 0)
        return errf(err, "--estimator '%s': expected exact, gumbel or st-gumbel", o->estimator);
    if (o->classes < 10 || o->classes > 1000)
        return errf(err, "--classes %d: must lie in 10..1000 (the labels are 0..9)", o->classes);
    if (o->labels < 10 || o->labels % 10 != 0)
        return errf(err, "--labels %d: must be a positive multiple of 10 (balanced classes)",
                    o->labels);
    if (o->unlabelled < 1 || o->unlabelled > 10000000)
        return errf(err, "--unlabelled %d: must lie in 1..10000000", o->unlabelled);
    if (o->labels > o->unlabelled)
        return errf(err, "--labels %d: more than the %d images of the pool (--unlabelled)",
                    o->labels, o->unlabelled);
    vae_config vc;
    memset(&vc, 0, sizeof vc);
    if (vae_parse_hidden(o->hidden, &vc, err) != 0)
        return -1;
    ss_activation act;
    if (ss_activation_parse(o->activation, &act) != 0)
        return errf(err, "--activation '%s': expected softplus or relu", o->activation);
    if (o->latent < 1 || o->latent > 10000)
        return errf(err, "--latent %d: must lie in 1..10000", o->latent);
    if (!(o->alpha >= 0))
        return errf(err, "--alpha %g: must be >= 0", o->alpha);
    if (strcmp(o->weighting, "k14") != 0 && strcmp(o->weighting, "batch") != 0)
        return errf(err, "--weighting '%s': expected k14 or batch", o->weighting);
    if (!(o->lr > 0 && o->lr < 1))
        return errf(err, "--lr %g: must lie in (0, 1)", o->lr);
    if (o->batch < 1 || o->batch > 10000)
        return errf(err, "--batch %d: must lie in 1..10000", o->batch);
    if (o->labelled_batch < 1 || o->labelled_batch > 10000)
        return errf(err, "--labelled-batch %d: must lie in 1..10000", o->labelled_batch);
    if (o->steps < 1)
        return errf(err, "--steps %ld: must be at least 1", o->steps);
    if (!(o->tau0 > 0))
        return errf(err, "--tau0 %g: must be > 0", o->tau0);
    if (!(o->tau_min > 0))
        return errf(err, "--tau-min %g: must be > 0", o->tau_min);
    if (o->anneal_rate < 0)
        return errf(err, "--anneal-rate %g: must be >= 0", o->anneal_rate);
    if (o->anneal_every < 1)
        return errf(err, "--anneal-every %ld: must be >= 1", o->anneal_every);
    if (!(o->init_std > 0 && o->init_std < 10))
        return errf(err, "--init-std %g: must lie in (0, 10)", o->init_std);
    if (o->seed < 0)
        return errf(err, "--seed %ld: must be >= 0", o->seed);
    if (o->eval_every < 0)
        return errf(err, "--eval-every %ld: must be >= 0", o->eval_every);
    if (o->eval_images < 1)
        return errf(err, "--eval-images %d: must be >= 1", o->eval_images);
    if (o->log_every < 1)
        return errf(err, "--log-every %ld: must be >= 1", o->log_every);
    if (o->threads < 0 || o->threads > 256)
        return errf(err, "--threads %d: must lie in 0..256", o->threads);
    c->D = 784;
    c->K = o->classes;
    c->Z = o->latent;
    c->nhidden = vc.nhidden;
    memcpy(c->hidden, vc.hidden, sizeof c->hidden);
    c->act = act;
    long rows = ss_rows(c, o->labelled_batch, o->batch, *est);
    if (rows > SS_MAX_ROWS)
        return errf(err, "--batch %d x --classes %d: %ld encoder rows per step, more than %ld",
                    o->batch, o->classes, rows, SS_MAX_ROWS);
    return 0;
}

typedef struct {
    long step;
    double epoch, tau, loss, lab_neg_elbo, unl_loss, class_nll;
    double test_neg_elbo, test_accuracy, test_class_nll, steps_per_s, seconds;
} ss_log_row;

/* Everything a run holds; allocated once before the loop. */
typedef struct {
    ss_opts o;
    ss_config cfg;
    stoch_estimator est;
    ss_weights wt;
    dataset train, test, pool;   /* pool: a view of train's first images */
    uint32_t *labelled;          /* indices into pool */
    float *test_x;
    int ntest;
    batcher bt;
    rng_t rng;
    ss_model m;
    ss_ws ws;
    adam_state adam;
    float *x;                    /* labelled then unlabelled rows */
    uint8_t *y;
    ss_log_row *log;
    long nlog, log_cap;
    double train_seconds;
} ss_run;

static void run_free(ss_run *R)
{
    dataset_free(&R->train);
    dataset_free(&R->test);
    free(R->labelled);
    free(R->test_x);
    batcher_free(&R->bt);
    ss_free(&R->m);
    ss_ws_free(&R->ws);
    adam_free(&R->adam);
    free(R->x);
    free(R->y);
    free(R->log);
}

/* labels/10 pool images of each class 0..9, chosen by a partial
 * Fisher-Yates shuffle of that class's indices. */
static int choose_labelled(ss_run *R, char *err)
{
    int per = R->o.labels / 10;
    uint32_t n = R->pool.count;
    uint32_t *cand = xcalloc(n, sizeof *cand, err, "labelled selection");
    R->labelled = xcalloc((size_t)R->o.labels, sizeof *R->labelled, err, "labelled selection");
    if (!cand || !R->labelled) {
        free(cand);
        return -1;
    }
    rng_t pick;
    rng_seed(&pick, (uint64_t)R->o.seed ^ SS_LABEL_STREAM);
    for (int c = 0; c < 10; c++) {
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++)
            if (R->pool.labels[i] == c)
                cand[m++] = i;
        if (m < (uint32_t)per) {
            free(cand);
            return errf(err, "--labels %d: the pool of %u images (--unlabelled) holds only %u "
                             "of class %d, fewer than %d",
                        R->o.labels, n, m, c, per);
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

static int run_setup(ss_run *R, char *err)
{
    const ss_opts *o = &R->o;
    if (o->threads > 0)
        openblas_set_num_threads(o->threads);
    if (dataset_load_split(o->data_dir, "train", &R->train, err) != 0 ||
        dataset_load_split(o->data_dir, "test", &R->test, err) != 0)
        return -1;
    if ((int)R->train.dim != R->cfg.D || R->test.dim != R->train.dim)
        return errf(err, "%s: images are %ux%u, the model expects 28x28", o->data_dir,
                    R->train.rows, R->train.cols);
    if ((uint32_t)o->unlabelled > R->train.count)
        return errf(err, "--unlabelled %d: %s holds only %u training images", o->unlabelled,
                    o->data_dir, R->train.count);
    for (uint32_t i = 0; i < R->test.count; i++)
        if (R->test.labels[i] > 9)
            return errf(err, "%s: test label %u of image %u is not a digit", o->data_dir,
                        R->test.labels[i], i);
    R->pool = R->train;
    R->pool.count = (uint32_t)o->unlabelled;
    if (choose_labelled(R, err) != 0)
        return -1;
    if (!(R->test_x = load_test_set(&R->test, BIN_DYNAMIC, o->eval_images, &R->ntest, err)))
        return -1;

    double Nl = o->labels, Nu = o->unlabelled;
    int k14 = strcmp(o->weighting, "k14") == 0;
    R->wt.labelled = k14 ? Nl / (Nl + Nu) : 1.0;
    R->wt.unlabelled = k14 ? Nu / (Nl + Nu) : 1.0;
    R->wt.alpha = o->alpha;

    rng_seed(&R->rng, (uint64_t)o->seed);
    int E = o->labelled_batch + o->batch;
    long rows = ss_rows(&R->cfg, o->labelled_batch, o->batch, R->est);
    long eval_examples = SS_EVAL_ROWS / R->cfg.K;
    if (eval_examples < 1)
        eval_examples = 1;
    if (eval_examples > R->ntest)
        eval_examples = R->ntest;
    int max_examples = E > eval_examples ? E : (int)eval_examples;
    long max_rows = rows > eval_examples * R->cfg.K ? rows : eval_examples * R->cfg.K;
    if (ss_init(&R->m, &R->cfg, o->init_std, &R->rng, err) != 0 ||
        ss_ws_init(&R->ws, &R->m, max_examples, max_rows, err) != 0 ||
        adam_init(&R->adam, R->m.nparams, err) != 0 ||
        batcher_init(&R->bt, &R->pool, (uint32_t)o->batch, &R->rng, err) != 0)
        return -1;
    R->log_cap = o->steps / o->log_every + 3 + (o->eval_every ? o->steps / o->eval_every : 0);
    R->log = xcalloc((size_t)R->log_cap, sizeof *R->log, err, "log");
    R->x = xcalloc((size_t)E * R->cfg.D, sizeof(float), err, "batch");
    R->y = xcalloc((size_t)o->labelled_batch, 1, err, "batch labels");
    if (!R->log || !R->x || !R->y)
        return -1;
    return 0;
}

/* The labelled rows (drawn with replacement) then the unlabelled ones. */
static void next_batch(ss_run *R)
{
    int Bl = R->o.labelled_batch, D = R->cfg.D;
    for (int b = 0; b < Bl; b++) {
        uint32_t i = R->labelled[rng_below(&R->rng, (uint32_t)R->o.labels)];
        dataset_example(&R->pool, i, BIN_DYNAMIC, &R->rng, R->x + (size_t)b * D);
        R->y[b] = R->pool.labels[i];
    }
    batcher_next(&R->bt, BIN_DYNAMIC, &R->rng, R->x + (size_t)Bl * D, NULL);
}

static void evaluate(ss_run *R, ss_eval_result *er)
{
    rng_t r;
    rng_seed(&r, EVAL_SEED);
    ss_evaluate(&R->m, &R->ws, R->test_x, R->test.labels, R->ntest, &r, er);
}

static int write_log(const ss_run *R, char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", R->o.out_dir);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    fprintf(af.f, "step,epoch,tau,train_loss,train_labelled_neg_elbo,train_unlabelled_loss,"
                  "train_class_nll,test_neg_elbo,test_accuracy,test_class_nll,steps_per_s,seconds\n");
    for (long i = 0; i < R->nlog; i++) {
        const ss_log_row *r = &R->log[i];
        /* An empty field is a figure not measured at that row. */
        const double f[] = {r->loss, r->lab_neg_elbo, r->unl_loss, r->class_nll,
                            r->test_neg_elbo, r->test_accuracy, r->test_class_nll,
                            r->steps_per_s};
        fprintf(af.f, "%ld,%.4f,%.6f", r->step, r->epoch, r->tau);
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
            fputc(',', af.f);
            if (isfinite(f[k]))
                fprintf(af.f, "%.4f", f[k]);
        }
        fprintf(af.f, ",%.3f\n", r->seconds);
    }
    return af_commit(&af, err);
}

static int write_summary(const ss_run *R, const ss_eval_result *fin, char *err)
{
    char path[4200], hid[64];
    snprintf(path, sizeof path, "%s/summary.json", R->o.out_dir);
    vae_config vc;
    memset(&vc, 0, sizeof vc);
    vc.nhidden = R->cfg.nhidden;
    memcpy(vc.hidden, R->cfg.hidden, sizeof vc.hidden);
    vae_format_hidden(&vc, hid, sizeof hid);
    atomic_file af;
    if (af_open(&af, path, "w", err) != 0)
        return -1;
    FILE *f = af.f;
    const ss_opts *o = &R->o;
    const ss_log_row *last = R->nlog ? &R->log[R->nlog - 1] : NULL;
    long steps = last ? last->step : 0;
    fprintf(f, "{\n  \"gsvae_version\": \"%s\",\n  \"task\": \"semisup\",\n", GSVAE_VERSION);
    fprintf(f, "  \"versions\": {\"openblas\": \"%s\"},\n", openblas_get_config());
    fprintf(f, "  \"flags\": {\"estimator\": \"%s\", \"classes\": %d, \"labels\": %d, "
               "\"unlabelled\": %d, \"hidden\": \"%s\", \"activation\": \"%s\", \"latent\": %d, "
               "\"alpha\": %.17g, \"weighting\": \"%s\", \"lr\": %.17g, \"batch\": %d, "
               "\"labelled_batch\": %d, "
               "\"steps\": %ld, \"tau0\": %.17g, \"tau_min\": %.17g, \"anneal_rate\": %.17g, "
               "\"anneal_every\": %ld, \"init_std\": %.17g, \"eval_images\": %d, "
               "\"threads\": %d},\n",
            ss_estimator_name(R->est), o->classes, o->labels, o->unlabelled, hid, o->activation,
            o->latent, o->alpha, o->weighting, o->lr, o->batch, o->labelled_batch, o->steps,
            o->tau0, o->tau_min, o->anneal_rate, o->anneal_every, o->init_std, R->ntest,
            o->threads);
    fprintf(f, "  \"seed\": %ld,\n", o->seed);
    fprintf(f, "  \"objective_weights\": {\"labelled_neg_elbo\": %.17g, \"unlabelled\": %.17g, "
               "\"class_nll\": %.17g},\n",
            R->wt.labelled, R->wt.unlabelled, R->wt.alpha);
    fprintf(f, "  \"labelled_indices\": [");
    for (int i = 0; i < o->labels; i++)
        fprintf(f, "%s%u", i ? ", " : "", R->labelled[i]);
    fprintf(f, "],\n");
    fprintf(f, "  \"steps_done\": %ld,\n  \"train_seconds\": %.3f,\n", steps, R->train_seconds);
    fprintf(f, "  \"steps_per_second\": %.4f,\n",
            R->train_seconds > 0 ? steps / R->train_seconds : 0.0);
    fprintf(f, "  \"test_accuracy\": %.6f,\n  \"test_neg_elbo\": %.6f,\n  \"test_class_nll\": %.6f,\n",
            fin->accuracy, fin->neg_elbo, fin->class_nll);
    fprintf(f, "  \"final_tau\": %.6f,\n  \"final_train_loss\": %.6f\n}\n",
            last ? last->tau : o->tau0, last ? last->loss : NAN);
    return af_commit(&af, err);
}

static void progress(const ss_run *R, const ss_log_row *row, int tty)
{
    if (R->o.quiet)
        return;
    fprintf(stderr, "%sstep %ld/%ld  tau %.3f  loss %.3f  class nll %.3f  %.2f steps/s%s",
            tty ? "\r" : "", row->step, R->o.steps, row->tau, row->loss, row->class_nll,
            row->steps_per_s, tty ? "   " : "\n");
}

int cmd_train_semisup(int argc, char **argv)
{
    static ss_run R;
    char err[ERR_LEN];
    memset(&R, 0, sizeof R);
    opts_default(&R.o);
    flag_def defs[SS_MAX_FLAGS];
    flag_table(&R.o, defs);
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        flags_usage(stdout, "gsvae train --task semisup [FLAGS]", usage_about, defs);
        fputs(usage_sources, stdout);
        return 0;
    }
    if (rc < 0 || opts_check(&R.o, &R.cfg, &R.est, err) != 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 2;
    }
    if (make_dir(R.o.out_dir, err) != 0) {
        fprintf(stderr, "gsvae train: %s\n", err);
        return 1;
    }
    int status = 1;
    if (run_setup(&R, err) != 0)
        goto fail;

    const ss_opts *o = &R.o;
    tau_schedule sched = {o->tau0, o->tau_min, o->anneal_rate, o->anneal_every};
    int tty = isatty(fileno(stderr));
    if (!o->quiet)
        fprintf(stderr, "training M2 (%s over %d classes) for %ld steps: %d labels, %d unlabelled, "
                        "batch %d + %d labelled, seed %ld\n",
                ss_estimator_name(R.est), R.cfg.K, o->steps, o->labels, o->unlabelled, o->batch,
                o->labelled_batch, o->seed);
    if (o->eval_every > 0) {
        /* The starting point of the learning curve. */
        ss_eval_result er;
        evaluate(&R, &er);
        R.log[R.nlog++] = (ss_log_row){0, 0.0, schedule_tau(&sched, 0), NAN, NAN, NAN, NAN,
                                       er.neg_elbo, er.accuracy, er.class_nll, NAN, 0.0};
    }
    /* Fault injection for the test of the NaN stop: poison one weight before
     * the given step, so that the NaN travels the real path. */
    const char *inject = getenv("GSVAE_TEST_NAN_AT_STEP");
    long nan_step = inject ? atol(inject) : -1;
    double acc[4] = {0, 0, 0, 0}, window_seconds = 0;
    long acc_n = 0;
    for (long step = 0; step < o->steps; step++) {
        if (step == nan_step)
            R.m.params[R.m.cls[0].b] = NAN;
        double t0 = now_seconds();
        double tau = schedule_tau(&sched, step);
        next_batch(&R);
        ss_parts p;
        double loss = ss_train_step(&R.m, &R.ws, &R.adam, R.x, R.y, o->labelled_batch, o->batch,
                                    R.est, (float)tau, &R.wt, (float)o->lr, &R.rng, &p);
        double dt = now_seconds() - t0;
        R.train_seconds += dt;
        window_seconds += dt;
        if (!isfinite(loss)) {
            if (tty && !o->quiet)
                fputc('\n', stderr);
            fprintf(stderr, "gsvae train: step %ld: loss is %s; stopped\n", step,
                    isnan(loss) ? "NaN" : "infinite");
            write_log(&R, err);
            goto done;
        }
        acc[0] += p.loss;
        acc[1] += p.lab_neg_elbo;
        acc[2] += p.unl_loss;
        acc[3] += p.class_nll;
        acc_n++;
        long done_steps = step + 1;
        int do_eval = o->eval_every > 0 && done_steps % o->eval_every == 0;
        if (done_steps % o->log_every == 0 || done_steps == o->steps || do_eval) {
            ss_log_row *row = &R.log[R.nlog++];
            *row = (ss_log_row){done_steps, (double)done_steps * o->batch / R.pool.count, tau,
                                acc[0] / acc_n, acc[1] / acc_n, acc[2] / acc_n, acc[3] / acc_n,
                                NAN, NAN, NAN, acc_n / window_seconds, R.train_seconds};
            progress(&R, row, tty);
            if (do_eval || done_steps == o->steps) {
                ss_eval_result er;
                evaluate(&R, &er);
                row->test_neg_elbo = er.neg_elbo;
                row->test_accuracy = er.accuracy;
                row->test_class_nll = er.class_nll;
                if (write_log(&R, err) != 0)
                    goto fail;
                if (!o->quiet)
                    fprintf(stderr, "%sstep %ld: test accuracy %.4f, test -ELBO %.3f%s\n",
                            tty ? "\r" : "", done_steps, er.accuracy, er.neg_elbo,
                            tty ? "                    " : "");
            }
            memset(acc, 0, sizeof acc);
            acc_n = 0;
            window_seconds = 0;
        }
    }
    if (tty && !o->quiet)
        fputc('\n', stderr);

    /* The last row holds the final evaluation. */
    const ss_log_row *last = &R.log[R.nlog - 1];
    ss_eval_result fin = {last->test_neg_elbo, last->test_accuracy, last->test_class_nll};
    if (write_log(&R, err) != 0 || write_summary(&R, &fin, err) != 0)
        goto fail;
    printf("final test accuracy %.4f, test -ELBO %.3f nats (y summed out); %ld steps in %.1f s of "
           "training, %.2f steps/s (%s, K=%d); outputs in %s\n",
           fin.accuracy, fin.neg_elbo, last->step, R.train_seconds,
           last->step / R.train_seconds, ss_estimator_name(R.est), R.cfg.K, o->out_dir);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "gsvae train: %s\n", err);
    status = 1;
done:
    run_free(&R);
    return status;
}
