/* tools.c: the commands that read a checkpoint: eval, sample, recon (VAE)
 * and analogies (semisup). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "evaluate.h"
#include "outputs.h"
#include "parallel.h"
#include "gumbel.h"
#include "json.h"
#include "pngio.h"
#include "task_semisup.h"
#include "task_vae.h"
#include "util.h"

typedef struct {
    const char *ckpt, *data_dir, *out, *binarize;
    const char *set;  /* eval: "test", or "valid" (the run's --validation split) */
    int iw_samples, images, count;
    long seed;
    double tau;
    int threads;   /* 0: every online core (driver_threads) */
    int json;      /* eval: the figures as one JSON object (eval_json) */
} tool_opts;

/* Parse a tool's flags; returns -1 to continue, else the exit status. */
static int tool_parse(const char *cmd, const char *synopsis, const char *about,
                      const flag_def *defs, int argc, char **argv)
{
    char err[ERR_LEN];
    char *pos[1];
    int npos, rc = flags_parse(defs, argc, argv, pos, 0, &npos, err);
    if (rc == 1) {
        flags_usage(stdout, synopsis, about, defs);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        return 2;
    }
    return -1;
}

/* An --out that names the checkpoint (by the same path, a link or another
 * spelling of it) would replace it with the image; and an existing file is
 * replaced only when it is a PNG, an earlier image, so that a slip of the
 * keyboard cannot destroy a log or a model.  Returns 0, or the exit status
 * after the message. */
static int tool_check_out(const char *cmd, const char *ckpt, const char *out)
{
    static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    struct stat so, sc;
    int exists = stat(out, &so) == 0;
    if (strcmp(out, ckpt) == 0 ||
        (exists && stat(ckpt, &sc) == 0 && so.st_dev == sc.st_dev && so.st_ino == sc.st_ino)) {
        fprintf(stderr, "gsvae %s: --out %s: is the checkpoint itself (--ckpt %s); choose another "
                        "file for the image\n",
                cmd, out, ckpt);
        return 2;
    }
    if (!exists || (S_ISREG(so.st_mode) && so.st_size == 0))
        return 0;
    if (!S_ISREG(so.st_mode)) {
        fprintf(stderr, "gsvae %s: --out %s: exists and is not a regular file; refusing to "
                        "replace it\n",
                cmd, out);
        return 1;
    }
    unsigned char head[sizeof png_signature];
    int fd = open(out, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "gsvae %s: --out %s: exists and cannot be read to check that it is a "
                        "PNG: %s\n",
                cmd, out, strerror(errno));
        return 1;
    }
    ssize_t got = read(fd, head, sizeof head);
    close(fd);
    if (got != (ssize_t)sizeof head || memcmp(head, png_signature, sizeof head) != 0) {
        fprintf(stderr, "gsvae %s: --out %s: exists and is not a PNG; refusing to overwrite it "
                        "(remove it or choose another file)\n",
                cmd, out);
        return 1;
    }
    return 0;
}

/* What a tool reads from a checkpoint: the run's options (their strings in
 * text), the model and an evaluation workspace. */
typedef struct {
    run_opts o;
    vae_task *v;
    char *text;
    vae_model m;
    eval_ws w;
} tool_model;

/* Load the checkpoint's model and an evaluation workspace into tm. */
static int tool_load(const char *cmd, const tool_opts *t, tool_model *tm)
{
    run_opts *o = &tm->o;
    vae_task **v = &tm->v;
    char **text = &tm->text;
    vae_model *m = &tm->m;
    eval_ws *w = &tm->w;
    char err[ERR_LEN];
    if (!t->ckpt) {
        fprintf(stderr, "gsvae %s: --ckpt: required\n", cmd);
        return 2;
    }
    if (t->threads < 0 || t->threads > 256) {
        fprintf(stderr, "gsvae %s: --threads %d: must lie in 0..256\n", cmd, t->threads);
        return 2;
    }
    par_set_threads(driver_threads(t->threads));
    int rc;
    if (t->out && (rc = tool_check_out(cmd, t->ckpt, t->out)) != 0)
        return rc;
    if (vae_task_load_model(t->ckpt, o, v, text, m, err) != 0) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        return 1;
    }
    if (eval_ws_init(w, m, eval_ws_rows(m, 1000, driver_threads(t->threads)), err) != 0) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        vae_free(m);
        free(*text);
        free(*v);
        return 1;
    }
    w->threads = driver_threads(t->threads);
    return 0;
}

/* Release what tool_load set up. */
static void tool_unload(tool_model *tm)
{
    eval_ws_free(&tm->w);
    vae_free(&tm->m);
    free(tm->v);
    free(tm->text);
}

/* A copy of the labels of the first n images of d into *labels (when
 * labels is not NULL); -1 after the message when out of memory. */
static int tool_copy_labels(const char *cmd, const dataset *d, int n, uint8_t **labels)
{
    if (!labels)
        return 0;
    if (!(*labels = malloc((size_t)n))) {
        fprintf(stderr, "gsvae %s: out of memory for %d labels\n", cmd, n);
        return -1;
    }
    memcpy(*labels, d->labels, (size_t)n);
    return 0;
}

/* The first --images of the run's validation split (the last --validation
 * training images), binarized as the run scored them: the training file
 * binarized once first under --binarize fixed, then the evaluation draw. */
static float *tool_valid_set(const char *cmd, const tool_opts *t, const run_opts *o,
                             binarize_mode bin, int *n, uint8_t **labels)
{
    char err[ERR_LEN];
    if (o->validation <= 0) {
        fprintf(stderr, "gsvae %s: --set valid: %s: the run held out no validation set "
                        "(it ran with --validation 0)\n",
                cmd, t->ckpt);
        return NULL;
    }
    dataset d, v;
    if (dataset_load_split(t->data_dir, "train", &d, err) != 0) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        return NULL;
    }
    float *x = NULL;
    if ((uint32_t)o->validation >= d.count) {
        fprintf(stderr, "gsvae %s: --set valid: %s holds %u training images, the run held out "
                        "%d\n",
                cmd, t->data_dir, d.count, o->validation);
    } else {
        if (!strcmp(o->binarize, "fixed") && !t->binarize)
            driver_binarize_fixed(&d);
        driver_split_validation(&d, (uint32_t)o->validation, &v);
        if (!(x = driver_eval_images(&v, bin, t->images, n, err)))
            fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        else if (tool_copy_labels(cmd, &v, *n, labels) != 0) {
            free(x);
            x = NULL;
        }
        d.count += (uint32_t)o->validation; /* the whole buffer back to dataset_free */
    }
    dataset_free(&d);
    return x;
}

/* The evaluation images under the checkpoint's binarization (or
 * --binarize): the test set, or for eval --set valid the run's validation
 * split; their labels into *labels when labels is not NULL (the caller's
 * to free, as the images). */
static float *tool_test_set(const char *cmd, const tool_opts *t, const run_opts *o, int *n,
                            uint8_t **labels)
{
    char err[ERR_LEN];
    binarize_mode bin;
    const char *mode = t->binarize ? t->binarize : o->binarize;
    if (driver_eval_binarize(mode, &bin) != 0) {
        fprintf(stderr, "gsvae %s: --binarize '%s': expected dynamic, fixed, threshold or none\n",
                cmd, mode);
        return NULL;
    }
    if (t->set && !strcmp(t->set, "valid"))
        return tool_valid_set(cmd, t, o, bin, n, labels);
    dataset d;
    if (dataset_load_split(t->data_dir, "test", &d, err) != 0) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
        return NULL;
    }
    float *x = driver_eval_images(&d, bin, t->images, n, err);
    if (!x) {
        fprintf(stderr, "gsvae %s: %s\n", cmd, err);
    } else if (tool_copy_labels(cmd, &d, *n, labels) != 0) {
        free(x);
        x = NULL;
    }
    dataset_free(&d);
    return x;
}

/* eval --json: one JSON object on stdout, a field a line, named as in
 * summary.json (the set's name, then the figure: test_neg_elbo,
 * valid_accuracy, test_neg_log_px_iw ...), so that a script reads either
 * file the same way; then the checkpoint and the evaluation's seed. */
static void eval_json_open(const tool_opts *t, int n)
{
    printf("{\n  \"%s_images\": %d,\n", t->set, n);
}

static void eval_json_number(const tool_opts *t, const char *figure, double v)
{
    char key[64];
    snprintf(key, sizeof key, "%s_%s", t->set, figure);
    json_put_number(stdout, key, v, ",\n");
}

static void eval_json_close(const tool_opts *t)
{
    printf("  \"ckpt\": ");
    json_put_string(stdout, t->ckpt);
    printf(",\n  \"seed\": %ld\n}\n", t->seed);
}

/* eval of a semisup checkpoint: the figures the run logs (q(y|x)'s
 * accuracy and -log q(label|x), the -ELBO with y summed out; with the same
 * --seed and --images as the run's evaluation, the same numbers), and what
 * the generative model says of the class (ss_evaluate's gen_accuracy). */
static int eval_semisup(const tool_opts *t)
{
    char err[ERR_LEN];
    if (t->tau > 0) {
        fprintf(stderr, "gsvae eval: --tau: the relaxed bound is for vae checkpoints; %s is a "
                        "semisup run\n",
                t->ckpt);
        return 2;
    }
    run_opts o;
    char *text;
    ss_model m;
    if (ss_task_load_model(t->ckpt, &o, &text, &m, err) != 0) {
        fprintf(stderr, "gsvae eval: %s\n", err);
        return 1;
    }
    int n, rc = 1;
    uint8_t *labels = NULL;
    float *x = tool_test_set("eval", t, &o, &n, &labels);
    ss_ws w;
    enum { CHUNK = 100 };
    if (x && ss_ws_init(&w, &m, CHUNK, (long)CHUNK * m.cfg.K, err) != 0) {
        fprintf(stderr, "gsvae eval: %s\n", err);
    } else if (x) {
        for (int i = 0; i < n; i++)
            if (labels[i] >= m.cfg.K) {
                /* A --classes K < 10 speed run: the labels are not its classes. */
                fprintf(stderr, "gsvae eval: %s: a model of %d classes; the %s set's labels "
                                "run to 9\n",
                        t->ckpt, m.cfg.K, t->set);
                goto out_ws;
            }
        rng_t r;
        ss_eval_result e;
        rng_seed(&r, (uint64_t)t->seed);
        ss_evaluate(&m, &w, x, labels, n, &r, &e);
        if (t->json) {
            eval_json_open(t, n);
            eval_json_number(t, "accuracy", e.accuracy);
            eval_json_number(t, "class_nll", e.class_nll);
            eval_json_number(t, "neg_elbo", e.neg_elbo);
            eval_json_number(t, "gen_accuracy", e.gen_accuracy);
            eval_json_number(t, "agreement", e.agreement);
            eval_json_close(t);
        } else {
            printf("%s accuracy %.4f (argmax q(y|x)), -log q(label|x) %.4f nats, on %d images\n",
                   t->set, e.accuracy, e.class_nll, n);
            printf("%s -ELBO %.3f nats (y summed out, one z sample per class)\n", t->set,
                   e.neg_elbo);
            printf("%s generative accuracy %.4f (argmin over y of -ELBO(x, y)), agreeing with "
                   "argmax q(y|x) on %.4f\n",
                   t->set, e.gen_accuracy, e.agreement);
        }
        rc = 0;
out_ws:
        ss_ws_free(&w);
    }
    free(x);
    free(labels);
    ss_free(&m);
    free(text);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    tool_opts t = {.data_dir = "data/mnist", .set = "test", .iw_samples = 1000, .images = 10000,
                   .seed = EVAL_SEED};
    const flag_def defs[] = {
        {"ckpt", FLAG_STRING, &t.ckpt, "FILE", "checkpoint written by gsvae train"},
        {"data", FLAG_STRING, &t.data_dir, "DIR", "directory of the MNIST IDX files"},
        {"set", FLAG_STRING, &t.set, "SET",
         "test, or valid: the run's validation split (its last --validation training images)"},
        {"binarize", FLAG_STRING, &t.binarize, "MODE", "override the checkpoint's binarization"},
        {"iw-samples", FLAG_INT, &t.iw_samples, "S", "importance samples (0: ELBO only)"},
        {"images", FLAG_INT, &t.images, "N", "test images to score"},
        {"seed", FLAG_LONG, &t.seed, "N", "seed of the evaluation noise"},
        {"threads", FLAG_INT, &t.threads, "T",
         "threads of the matrix products and the importance-sampled bound (0: every core)"},
        {"tau", FLAG_DOUBLE, &t.tau, "T",
         "also the relaxed bound with the code relaxed at temperature T (0: skip)"},
        {"json", FLAG_BOOL, &t.json, NULL,
         "print the figures as one JSON object, named as in summary.json"},
        {NULL, 0, NULL, NULL, NULL},
    };
    int rc = tool_parse("eval", "gsvae eval --ckpt FILE [FLAGS]",
                        "Test -ELBO (one hard sample of the code per image) and the importance-\n"
                        "sampled estimate of -log p(x), in nats per image.  Of a semisup\n"
                        "checkpoint: q(y|x)'s accuracy, the -ELBO with y summed out, and the\n"
                        "accuracy of the class the decoder explains x best with (no importance\n"
                        "sampling).",
                        defs, argc, argv);
    if (rc >= 0)
        return rc;
    if (strcmp(t.set, "test") && strcmp(t.set, "valid")) {
        fprintf(stderr, "gsvae eval: --set '%s': expected test or valid\n", t.set);
        return 2;
    }
    if (t.iw_samples < 0 || t.iw_samples > 1000000 || t.images < 1 || t.seed < 0 ||
        t.tau < 0) {
        fprintf(stderr, "gsvae eval: --iw-samples must lie in 0..1000000, --images be >= 1, "
                        "--seed and --tau >= 0\n");
        return 2;
    }
    const task_ops *ops;
    char err[ERR_LEN];
    if (t.ckpt && driver_checkpoint_task(t.ckpt, &ops, err) == 0 && ops == &task_semisup) {
        if (t.threads < 0 || t.threads > 256) {
            fprintf(stderr, "gsvae eval: --threads %d: must lie in 0..256\n", t.threads);
            return 2;
        }
        par_set_threads(driver_threads(t.threads));
        return eval_semisup(&t);
    }
    if (t.ckpt && driver_checkpoint_task(t.ckpt, &ops, err) == 0 && ops != &task_vae) {
        fprintf(stderr, "gsvae eval: %s: a %s run; eval reads vae and semisup checkpoints\n",
                t.ckpt, ops->name);
        return 1;
    }
    tool_model tm;
    if ((rc = tool_load("eval", &t, &tm)) != 0)
        return rc;
    int n;
    float *x = tool_test_set("eval", &t, &tm.o, &n, NULL);
    rc = 1;
    if (x) {
        rng_t r;
        elbo_result e;
        rng_seed(&r, (uint64_t)t.seed);
        eval_elbo(&tm.m, &tm.w, x, n, &r, &e);
        if (t.json) {
            eval_json_open(&t, n);
            eval_json_number(&t, "neg_elbo", e.neg_elbo);
            eval_json_number(&t, "recon", e.recon);
            eval_json_number(&t, "kl", e.kl);
        } else {
            printf("%s -ELBO %.3f nats (recon %.3f, KL %.3f) on %d images\n", t.set, e.neg_elbo,
                   e.recon, e.kl, n);
        }
        if (t.tau > 0) {
            rng_seed(&r, (uint64_t)t.seed);
            eval_elbo_relaxed(&tm.m, &tm.w, x, n, (float)t.tau, &r, &e);
            if (t.json) {
                printf("  \"tau\": %.17g,\n", t.tau);
                eval_json_number(&t, "neg_elbo_relaxed", e.neg_elbo);
            } else {
                printf("%s relaxed -ELBO at tau %g: %.3f nats (recon %.3f, KL %.3f)\n", t.set,
                       t.tau, e.neg_elbo, e.recon, e.kl);
            }
        }
        if (t.iw_samples > 0) {
            rng_seed(&r, (uint64_t)t.seed + 1);
            double nll = eval_iw(&tm.m, &tm.w, x, n, t.iw_samples, &r);
            if (t.json) {
                printf("  \"%s_iw_samples\": %d,\n", t.set, t.iw_samples);
                eval_json_number(&t, "neg_log_px_iw", nll);
            } else {
                printf("%s -log p(x) ~ %.3f nats (%d importance samples)\n", t.set, nll,
                       t.iw_samples);
            }
        }
        if (t.json)
            eval_json_close(&t);
        rc = 0;
    }
    free(x);
    tool_unload(&tm);
    return rc;
}

int cmd_sample(int argc, char **argv)
{
    tool_opts t = {.out = "samples.png", .count = 100, .seed = 1};
    const flag_def defs[] = {
        {"ckpt", FLAG_STRING, &t.ckpt, "FILE", "checkpoint written by gsvae train"},
        {"out", FLAG_STRING, &t.out, "FILE",
         "PNG to write (an existing file is replaced only if it is a PNG)"},
        {"count", FLAG_INT, &t.count, "N", "samples, 10 per row (1..1000)"},
        {"seed", FLAG_LONG, &t.seed, "N", "seed of the prior samples"},
        {"threads", FLAG_INT, &t.threads, "T", "threads of the matrix products (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    int rc = tool_parse("sample", "gsvae sample --ckpt FILE [FLAGS]",
                        "Decode codes drawn from the model's prior (uniform or learned); write the\n"
                        "pixel means as a grid.",
                        defs, argc, argv);
    if (rc >= 0)
        return rc;
    if (t.count < 1 || t.count > 1000 || t.seed < 0) {
        fprintf(stderr, "gsvae sample: --count must lie in 1..1000 and --seed be >= 0\n");
        return 2;
    }
    char err[ERR_LEN];
    tool_model tm;
    if ((rc = tool_load("sample", &t, &tm)) != 0)
        return rc;
    rng_t r;
    rng_seed(&r, (uint64_t)t.seed);
    rc = 0;
    if (write_samples_png(t.out, &tm.m, &tm.w, t.count, &r, err) != 0) {
        fprintf(stderr, "gsvae sample: %s\n", err);
        rc = 1;
    } else {
        printf("wrote %d samples to %s\n", t.count, t.out);
    }
    tool_unload(&tm);
    return rc;
}

int cmd_recon(int argc, char **argv)
{
    tool_opts t = {.data_dir = "data/mnist", .out = "recon.png", .images = 64, .seed = 1};
    const flag_def defs[] = {
        {"ckpt", FLAG_STRING, &t.ckpt, "FILE", "checkpoint written by gsvae train"},
        {"data", FLAG_STRING, &t.data_dir, "DIR", "directory of the MNIST IDX files"},
        {"out", FLAG_STRING, &t.out, "FILE",
         "PNG to write (an existing file is replaced only if it is a PNG)"},
        {"images", FLAG_INT, &t.images, "N", "test images (1..64), 16 per row pair"},
        {"binarize", FLAG_STRING, &t.binarize, "MODE", "override the checkpoint's binarization"},
        {"seed", FLAG_LONG, &t.seed, "N", "seed of the code samples"},
        {"threads", FLAG_INT, &t.threads, "T", "threads of the matrix products (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    int rc = tool_parse("recon", "gsvae recon --ckpt FILE [FLAGS]",
                        "Test images (odd rows) above their reconstructions (even rows).", defs,
                        argc, argv);
    if (rc >= 0)
        return rc;
    if (t.images < 1 || t.images > 64 || t.seed < 0) {
        fprintf(stderr, "gsvae recon: --images must lie in 1..64 and --seed be >= 0\n");
        return 2;
    }
    char err[ERR_LEN];
    tool_model tm;
    if ((rc = tool_load("recon", &t, &tm)) != 0)
        return rc;
    int n;
    float *x = tool_test_set("recon", &t, &tm.o, &n, NULL);
    rc = 1;
    if (x) {
        rng_t r;
        rng_seed(&r, (uint64_t)t.seed);
        if (write_recon_png(t.out, &tm.m, &tm.w, x, n, &r, err) != 0) {
            fprintf(stderr, "gsvae recon: %s\n", err);
        } else {
            printf("wrote %d test images and their reconstructions to %s\n", n, t.out);
            rc = 0;
        }
    }
    free(x);
    tool_unload(&tm);
    return rc;
}

/* Analogies grid: one style z per row, the class across the columns. */
#define ANALOGY_SCALE 2
#define ANALOGY_PAD 2
#define ANALOGY_MAX_ROWS 100

/* z of each row: the mean of q(z|x, y) of test image i with y the
 * classifier's argmax q(y|x). */
static void styles_from_test(const ss_model *m, ss_ws *w, const float *x, int n, rng_t *r,
                             float *z)
{
    const ss_weights wt = {0.0, 1.0, 0.0};
    const int K = m->cfg.K;
    int cls[ANALOGY_MAX_ROWS];
    assert(n <= ANALOGY_MAX_ROWS);
    ss_draw_noise(m, w, 0, n, STOCH_EXACT, r);
    ss_forward(m, w, x, NULL, 0, n, STOCH_EXACT, 1.0f, &wt, NULL);
    argmax_rows(cls, w->logq, n, K);
    ss_encode_mean(m, w, x, cls, n, z);
}

int cmd_analogies(int argc, char **argv)
{
    tool_opts t = {.data_dir = "data/mnist", .out = "analogies.png", .images = 10, .seed = 1};
    const char *source = "prior";
    const flag_def defs[] = {
        {"ckpt", FLAG_STRING, &t.ckpt, "FILE", "checkpoint written by gsvae train --task semisup"},
        {"out", FLAG_STRING, &t.out, "FILE",
         "PNG to write (an existing file is replaced only if it is a PNG)"},
        {"rows", FLAG_INT, &t.images, "N", "styles, one per row (1..100)"},
        {"source", FLAG_STRING, &source, "FROM",
         "prior (z ~ N(0, I)) or test (z the mean of q(z|x,y) of the first N test images, "
         "y the classifier's guess; the image itself in the first column)"},
        {"data", FLAG_STRING, &t.data_dir, "DIR", "directory of the MNIST IDX files (--source test)"},
        {"seed", FLAG_LONG, &t.seed, "N", "seed of the prior draws"},
        {"threads", FLAG_INT, &t.threads, "T", "threads of the matrix products (0: every core)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    int rc = tool_parse("analogies", "gsvae analogies --ckpt FILE [FLAGS]",
                        "The paper's Figure 5b from a semi-supervised M2 checkpoint: a style z\n"
                        "per row, decoded with each class y in turn across the columns (pixel\n"
                        "means of p(x|y,z)).",
                        defs, argc, argv);
    if (rc >= 0)
        return rc;
    int from_test = !strcmp(source, "test");
    if (!from_test && strcmp(source, "prior") != 0) {
        fprintf(stderr, "gsvae analogies: --source '%s': expected prior or test\n", source);
        return 2;
    }
    if (t.images < 1 || t.images > ANALOGY_MAX_ROWS || t.seed < 0) {
        fprintf(stderr, "gsvae analogies: --rows must lie in 1..%d and --seed be >= 0\n",
                ANALOGY_MAX_ROWS);
        return 2;
    }
    if (!t.ckpt) {
        fprintf(stderr, "gsvae analogies: --ckpt: required\n");
        return 2;
    }
    if (t.threads < 0 || t.threads > 256) {
        fprintf(stderr, "gsvae analogies: --threads %d: must lie in 0..256\n", t.threads);
        return 2;
    }
    par_set_threads(driver_threads(t.threads));
    if ((rc = tool_check_out("analogies", t.ckpt, t.out)) != 0)
        return rc;
    char err[ERR_LEN];
    run_opts o;
    char *text;
    ss_model m;
    if (ss_task_load_model(t.ckpt, &o, &text, &m, err) != 0) {
        fprintf(stderr, "gsvae analogies: %s\n", err);
        return 1;
    }
    const int N = t.images, K = m.cfg.K, Z = m.cfg.Z, D = m.cfg.D, cols = K + from_test;
    ss_ws w;
    float *z = malloc(sizeof(float) * (size_t)N * Z);
    float *zrep = malloc(sizeof(float) * (size_t)N * K * Z);
    int *cls = malloc(sizeof(int) * (size_t)N * K);
    float *dec = malloc(sizeof(float) * (size_t)N * K * D);
    float *grid = malloc(sizeof(float) * (size_t)N * cols * D);
    float *x = NULL;
    rc = 1;
    if (!z || !zrep || !cls || !dec || !grid) {
        fprintf(stderr, "gsvae analogies: out of memory\n");
        goto out_mem;
    }
    if (ss_ws_init(&w, &m, N, (long)N * K, err) != 0) {
        fprintf(stderr, "gsvae analogies: %s\n", err);
        goto out_mem;
    }
    rng_t r;
    rng_seed(&r, (uint64_t)t.seed);
    if (from_test) {
        int n;
        if (!(x = tool_test_set("analogies", &t, &o, &n, NULL)))
            goto out;
        if (n < N) {
            fprintf(stderr, "gsvae analogies: --rows %d: the test set holds %d images\n", N, n);
            goto out;
        }
        styles_from_test(&m, &w, x, N, &r, z);
    } else {
        for (size_t i = 0; i < (size_t)N * Z; i++)
            z[i] = (float)rng_normal(&r);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < K; j++) {
            memcpy(zrep + ((size_t)i * K + j) * Z, z + (size_t)i * Z, sizeof(float) * Z);
            cls[i * K + j] = j;
        }
    ss_decode(&m, &w, zrep, cls, N * K, dec);
    for (int i = 0; i < N; i++) {
        float *row = grid + (size_t)i * cols * D;
        if (from_test)
            memcpy(row, x + (size_t)i * D, sizeof(float) * D);
        memcpy(row + (size_t)from_test * D, dec + (size_t)i * K * D, sizeof(float) * K * D);
    }
    if (png_write_grid_scaled(t.out, grid, N * cols, 28, 28, cols, ANALOGY_PAD, ANALOGY_SCALE,
                              err) != 0) {
        fprintf(stderr, "gsvae analogies: %s\n", err);
        goto out;
    }
    printf("wrote %d styles x %d classes to %s\n", N, K, t.out);
    rc = 0;
out:
    ss_ws_free(&w);
out_mem:
    free(x);
    free(z);
    free(zrep);
    free(cls);
    free(dec);
    free(grid);
    ss_free(&m);
    free(text);
    return rc;
}
