/* driver.h: the one training driver behind `gsvae train`.
 *
 * Every task (the VAE, the SBN, the semi-supervised M2) shares what a
 * training run is: the common flags and their checks, the data (train,
 * validation, test, their binarization), the generator, the batcher, the
 * optimizer, the temperature schedule, the loop with its timing, progress
 * line and NaN stop, log.csv, summary.json, the checkpoint and an exact
 * --resume.  A task supplies a small table of functions (task_ops): its own
 * flags, its model, one gradient step, one evaluation, its final outputs.
 *
 * Ownership: the driver allocates the run and the task's state block
 * (task_ops.state_size bytes, zeroed) and frees both; a task frees what its
 * setup allocated in its free function, which is called whatever happened. */
#ifndef GSVAE_DRIVER_H
#define GSVAE_DRIVER_H

#include <stdio.h>

#include "adam.h"
#include "dataset.h"
#include "flags.h"
#include "rng.h"

#define GSVAE_VERSION "0.1.0"
/* Seed of the one-time binarization of the test (and validation) images
 * and of the evaluation noise: fixed, so every run of every estimator is
 * scored on the same binary images. */
#define EVAL_SEED 20170101u
/* Seed of the one-time binarization of the training images under
 * --binarize fixed: fixed, so every run trains on the same binary images. */
#define FIXED_BIN_SEED 20170102u
/* Flags of the common table and of a task's, the terminator included. */
#define DRV_MAX_FLAGS 64
/* Figures a log row holds: training, then test, then validation ones. */
#define LOG_MAX_FIGS 16
#define DRV_MAX_COLS 6

/* The flags every task shares; a task's defaults may change their values. */
typedef struct {
    const char *task, *data_dir, *out_dir, *estimator, *binarize, *optimizer;
    const char *batch_loss;  /* "mean" or "sum": what the optimizer steps on */
    double lr, lr_decay, momentum, tau0, tau_min, anneal_rate;
    long steps, lr_decay_every, anneal_every, seed, eval_every, log_every;
    int epochs, batch, eval_images, validation, threads, quiet, resume, force;
} run_opts;

typedef enum { TRAIN_BIN_DYNAMIC, TRAIN_BIN_FIXED, TRAIN_BIN_THRESHOLD, TRAIN_BIN_NONE } train_bin;
typedef enum { OPTIM_ADAM, OPTIM_MOMENTUM } optim_kind;

/* A set of images a run is scored on, binarized once. */
typedef struct {
    const char *name;       /* "test" or "valid": the log columns' prefix */
    float *x;               /* n x dim */
    const uint8_t *labels;  /* n */
    int n;
} eval_set;

/* One row of log.csv; a figure not measured at the row is NaN. */
typedef struct {
    long step;
    double epoch, tau, seconds;
    double fig[LOG_MAX_FIGS];   /* training figures, test ones, validation ones */
} log_row;

typedef struct run run;

typedef struct {
    const char *name;             /* the value of --task */
    const char *synopsis, *about; /* --help */
    /* log.csv columns: the window means of a step's figures, and an
     * evaluation's (prefixed test_ and valid_); NULL-terminated. */
    const char *train_cols[DRV_MAX_COLS], *eval_cols[DRV_MAX_COLS];
    size_t state_size;            /* bytes of the task's own state */
    /* The task's defaults, its own and the common ones it changes. */
    void (*defaults)(run_opts *c, void *t);
    /* Its flags, bound to t, into defs; returns how many. */
    int (*flags)(void *t, flag_def *defs);
    /* What --help prints after the flags (estimators, sources); may be NULL. */
    void (*help)(FILE *out);
    /* Range checks of its flags and of the common ones it reads
     * differently; one line naming the flag.  Runs before any data. */
    int (*check)(run *R, char *err);
    /* The model and workspaces, from R's data and generator: fills
     * R->params, R->grads, R->nparams, R->batch_set and, when the task
     * keeps state across steps, R->persist / R->persist_bytes.  The first
     * draws from R->rng must be the model's initialisation. */
    int (*setup)(run *R, char *err);
    /* One line for the start of training: "categorical VAE (20x10) with gumbel". */
    void (*describe)(const run *R, char *buf, size_t len);
    /* Draw a batch and put the gradient of its loss into R->grads; the
     * figures of train_cols into figs; returns the loss (NaN or Inf stops
     * the run before the optimizer step). */
    double (*step)(run *R, long step, float tau, double *figs);
    /* The temperature the run trains at, given the schedule's at this
     * point: a task that learns it returns its own (logged in place of
     * the schedule's, and the row's tau for evaluate).  May be NULL: the
     * schedule's. */
    double (*tau)(const run *R, double scheduled);
    /* The figures of eval_cols on set s, at the row's tau. */
    void (*evaluate)(run *R, const eval_set *s, float tau, double *figs);
    /* After training: final figures, images, a line on stdout; writes its
     * summary.json fields, each line "  \"key\": value,\n", into f. */
    int (*finish)(run *R, FILE *f, char *err);
    void (*free)(run *R);
} task_ops;

/* Everything a run holds; the task's own state is R->t. */
struct run {
    const task_ops *ops;
    void *t;                    /* task state, ops->state_size bytes */
    run_opts o;
    train_bin tbin;
    binarize_mode bin;          /* how the batcher binarizes a draw */
    optim_kind optim;
    float grad_scale;           /* 1, or the batch size under --batch-loss sum */
    int threads;                /* resolved --threads */
    dataset train, test;        /* train: the training images, validation split off */
    eval_set test_set, valid_set;
    const dataset *batch_set;   /* what the batcher draws from: train or a view of it */
    batcher bt;
    rng_t rng;                  /* the run's one generator */
    float *params, *grads;      /* the task's flat buffers */
    size_t nparams;
    adam_state adam;
    float *velocity;            /* --optimizer momentum: nparams */
    void *persist;              /* the task's state that survives a checkpoint */
    size_t persist_bytes;
    long step, total_steps;
    double seconds;             /* training time so far, evaluations excluded */
    log_row *log;
    long nlog, log_cap;
    /* The training figures of the steps since the last row: their sums and
     * count (checkpointed, so a run stopped between rows resumes exactly). */
    double window[LOG_MAX_FIGS];
    long window_n;
    uint32_t data_crc;          /* crc32 of the training file's pixels and labels */
    /* The OpenBLAS kernels the run has trained with, in the order first
     * used, comma-separated ("Haswell", or "Haswell,SkylakeX" for a run
     * resumed on others): they round the products, so a run that mixes
     * kernels has not the digits of the same run on either. */
    char blas[96];
    int ntrain, neval;          /* figures per row of each kind */
    char out_path[4096];        /* --out */
};

/* The --task names and their tables. */
extern const task_ops task_vae, task_sbn, task_semisup;

/* The common flags bound to o, followed by the task's bound to t, into
 * defs (DRV_MAX_FLAGS entries). */
void driver_flag_table(const task_ops *ops, run_opts *o, void *t, flag_def *defs);
/* Fill o and t with the common defaults and then the task's. */
void driver_defaults(const task_ops *ops, run_opts *o, void *t);
/* Threads a run uses: --threads, or every online core for 0. */
int driver_threads(int threads);
/* The options stored in a checkpoint's "config" section, parsed into o
 * and t over their defaults; the strings of o and t then point into *text,
 * which the caller frees after their last use.  *ops gets the task the
 * checkpoint names (the VAE when it names none). */
struct ckpt_file;
int driver_read_config(const struct ckpt_file *f, const char *path, const task_ops **ops,
                       run_opts *o, void **t, char **text, char *err);
/* The task a checkpoint was written by, into *ops (for a command that
 * reads the checkpoints of several tasks).  -1 with err naming path when it
 * cannot be read or names no known task. */
int driver_checkpoint_task(const char *path, const task_ops **ops, char *err);
/* For the commands that read a checkpoint of one task: read path into *f
 * (the caller's to ckpt_free) and its options as driver_read_config does,
 * refusing a checkpoint of a task other than want ("a sbn run; this command
 * reads vae checkpoints").  On failure nothing is left to free. */
int driver_open_checkpoint(const char *path, const task_ops *want, struct ckpt_file **f,
                           run_opts *o, void **t, char **text, char *err);
/* The last step a checkpoint holds, for a loader that needs it. */
int driver_ckpt_step(const struct ckpt_file *f, long *step, char *err);
/* The "params" section of a checkpoint read from path into params[n]; -1
 * with err when it is missing, of another size, or holds a NaN or an
 * infinity (the checksum proves the bytes are as written, not that the run
 * that wrote them had not diverged). */
int driver_ckpt_params(const struct ckpt_file *f, const char *path, float *params, size_t n,
                       char *err);
/* The task table of name, or NULL. */
const task_ops *driver_find_task(const char *name);

/* Each pixel of d ~ Bernoulli(intensity) once, from FIXED_BIN_SEED over the
 * whole set in order, stored as 0 or 255 (read back with BIN_NONE): the
 * same binary images in every run.  Applied to the whole training file
 * before a validation split, so an image's draw does not depend on it. */
void driver_binarize_fixed(dataset *d);
/* Hold out the last n images of train (0 < n < count) as *valid, a view
 * into train's buffers (not to be freed); train keeps the first count - n.
 * The two never overlap and together are the original set. */
void driver_split_validation(dataset *train, uint32_t n, dataset *valid);
/* How the evaluation images of a run with --binarize mode are binarized:
 * dynamic and fixed by one Bernoulli draw (BIN_DYNAMIC with EVAL_SEED),
 * threshold and none as training.  -1 for an unknown mode. */
int driver_eval_binarize(const char *mode, binarize_mode *out);
/* The first min(limit, count) images of d binarized once with EVAL_SEED
 * under bin (BIN_DYNAMIC: one Bernoulli draw per pixel), so every run is
 * scored on the same binary images. */
float *driver_eval_images(const dataset *d, binarize_mode bin, int limit, int *n, char *err);

#endif
