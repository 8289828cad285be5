/* test_cli.c: end-to-end tests of `gsvae train/eval/sample/recon` on real
 * MNIST: learning, outputs, bit-exact repeatability and resume, the NaN
 * stop, bad flags and bad checkpoints. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "pngio.h"
#include "testutil.h"
#include "util.h"

#define OUT_LEN 65536
static char out[OUT_LEN], errout[OUT_LEN];

/* Small model flags for the tests that check mechanics, not quality. */
#define SMALL "--hidden 64 --latent 5x4 --eval-images 500 --iw-samples 10 --quiet"

#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)
#define LOG_HEADER "step,epoch,tau,train_loss"
#define log_column(dir, col, vals, max) testutil_log_column(dir, LOG_HEADER, col, vals, max)

/* The "params" section of a checkpoint, malloc'd. */
static void *params_of(const char *path, uint64_t *len)
{
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    const void *data;
    ck_assert_msg(ckpt_get(f, "params", &data, len, err) == 0, "%s", err);
    void *copy = malloc(*len);
    memcpy(copy, data, *len);
    ckpt_free(f);
    return copy;
}

static int no_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int ok = 1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp"))
            ok = 0;
    closedir(d);
    return ok;
}

START_TEST(train_learns_and_writes_outputs)
{
    const char *dir = testutil_tmpdir();
    int rc = gsvae("train --data %s --out %s --steps 400 --eval-every 200 --eval-images 2000 "
                   "--iw-samples 20 --quiet",
                   testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(out, "final test -ELBO"), "%s", out);
    double elbo[16];
    int n = log_column(dir, 6, elbo, 16);
    ck_assert_int_ge(n, 3);
    /* Step 0 is the untrained model (about 784 log 2 = 543 nats); 400 steps
     * of the paper's model bring it well under 200. */
    ck_assert_msg(elbo[0] > 400.0, "initial -ELBO %.2f", elbo[0]);
    double last = NAN;
    for (int i = n - 1; i >= 0 && isnan(last); i--)
        last = elbo[i];
    ck_assert_msg(last < 200.0 && last < elbo[0] - 200.0, "final -ELBO %.2f from %.2f", last,
                  elbo[0]);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert(summary != NULL);
    ck_assert(testutil_contains(summary, "\"test_neg_elbo\""));
    ck_assert(testutil_contains(summary, "\"test_neg_log_px_iw\": 1"));
    ck_assert(testutil_contains(summary, "\"seed\": 1"));
    free(summary);
    char err[ERR_LEN];
    uint8_t *pix;
    int w, h;
    /* recon: 4 pairs of rows of 16 images at scale 2 with 2-pixel borders. */
    ck_assert_msg(png_read_gray(testutil_path(dir, "recon.png"), &pix, &w, &h, err) == 0, "%s",
                  err);
    ck_assert_int_eq(w, 16 * (56 + 2) + 2);
    ck_assert_int_eq(h, 8 * (56 + 2) + 2);
    free(pix);
    ck_assert_msg(png_read_gray(testutil_path(dir, "samples.png"), &pix, &w, &h, err) == 0, "%s",
                  err);
    ck_assert_int_eq(w, 10 * (56 + 2) + 2);
    ck_assert_int_eq(h, 10 * (56 + 2) + 2);
    free(pix);
    ck_assert(no_temp_files(dir));

    /* The tools read the checkpoint back. */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --images 500 --iw-samples 5 --tau 0.5", dir,
               testutil_data_dir());
    ck_assert_msg(rc == 0 && testutil_contains(out, "test -ELBO") &&
                      testutil_contains(out, "test relaxed -ELBO at tau 0.5") &&
                      testutil_contains(out, "-log p(x)"),
                  "eval: %d %s %s", rc, out, errout);
    /* The relaxed and the hard bound are both in log.csv's evaluated rows. */
    double relaxed[16];
    ck_assert_int_eq(log_column(dir, 7, relaxed, 16), n);
    ck_assert_msg(isfinite(relaxed[n - 1]) && relaxed[n - 1] < relaxed[0], "relaxed %.2f from %.2f",
                  relaxed[n - 1], relaxed[0]);
    rc = gsvae("sample --ckpt %s/model.ckpt --out %s/s.png --count 30", dir, dir);
    ck_assert_msg(rc == 0, "sample: %s", errout);
    ck_assert(png_read_gray(testutil_path(dir, "s.png"), &pix, &w, &h, err) == 0);
    ck_assert_int_eq(h, 3 * (56 + 2) + 2);
    free(pix);
    rc = gsvae("recon --ckpt %s/model.ckpt --data %s --out %s/r.png --images 16", dir,
               testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "recon: %s", errout);
    ck_assert(png_read_gray(testutil_path(dir, "r.png"), &pix, &w, &h, err) == 0);
    ck_assert_int_eq(h, 2 * (56 + 2) + 2);
    free(pix);
}
END_TEST

START_TEST(same_seed_same_run_and_resume_is_exact)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir(), *c = testutil_tmpdir();
    const char *data = testutil_data_dir();
    ck_assert(gsvae("train --data %s --out %s --steps 200 --eval-every 100 --seed 7 " SMALL, data,
                    a) == 0);
    /* The figures, without the wall time and the output directory. */
    static char first[OUT_LEN];
    snprintf(first, sizeof first, "%s", out);
    *strstr(first, " steps in ") = '\0';
    ck_assert(gsvae("train --data %s --out %s --steps 200 --eval-every 100 --seed 7 " SMALL, data,
                    b) == 0);
    *strstr(out, " steps in ") = '\0';
    ck_assert_str_eq(first, out);
    /* 100 steps, then resume to 200. */
    ck_assert(gsvae("train --data %s --out %s --steps 100 --eval-every 100 --seed 7 " SMALL, data,
                    c) == 0);
    int rc = gsvae("train --data %s --out %s --steps 200 --resume --quiet", data, c);
    ck_assert_msg(rc == 0, "resume: %s", errout);
    *strstr(out, " steps in ") = '\0';
    ck_assert_str_eq(first, out);
    uint64_t la, lb, lc;
    void *pa = params_of(testutil_path(a, "model.ckpt"), &la);
    void *pb = params_of(testutil_path(b, "model.ckpt"), &lb);
    void *pc = params_of(testutil_path(c, "model.ckpt"), &lc);
    ck_assert(la == lb && la == lc);
    ck_assert_msg(memcmp(pa, pb, la) == 0, "same seed, different parameters");
    ck_assert_msg(memcmp(pa, pc, la) == 0, "resumed run differs from the straight one");
    free(pa);
    free(pb);
    free(pc);
    /* A different seed gives a different run (replacing b's, which takes
     * --force). */
    ck_assert(gsvae("train --data %s --out %s --steps 200 --eval-every 100 --seed 8 --force " SMALL,
                    data, b) == 0);
    *strstr(out, " steps in ") = '\0';
    ck_assert_str_ne(first, out);
    /* Resuming a finished run asks for more steps. */
    rc = gsvae("train --data %s --out %s --steps 200 --resume", data, c);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(testutil_contains(errout, "already at step 200"), "%s", errout);
}
END_TEST

START_TEST(nan_stops_the_run_and_keeps_the_last_checkpoint)
{
    const char *dir = testutil_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_NAN_AT_STEP=150 %s train --data %s --out %s --steps 300 "
             "--eval-every 100 " SMALL,
             testutil_hooks_bin(), testutil_data_dir(), dir);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "step 150: loss is NaN") &&
                      testutil_contains(errout, "(step 100)"),
                  "%s", errout);
    /* The checkpoint of step 100 is intact and usable. */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --images 200 --iw-samples 0", dir,
               testutil_data_dir());
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert(no_temp_files(dir));
}
END_TEST

/* The figures of a train run's final line, without the wall time and the
 * output directory. */
static void final_figures(char *dst, size_t len)
{
    const char *f = strstr(out, "final test -ELBO");
    ck_assert_msg(f != NULL, "no final line in '%s'", out);
    snprintf(dst, len, "%s", f);
    *strstr(dst, " steps in ") = '\0';
}

/* Annealed ST with the slope in the posterior: the checkpoint's model is
 * the tempered one (eval scores exactly what training scored last), and
 * at slope 1 the two readings are the same run. */
START_TEST(annealed_st_posterior_slope)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir(), *data = testutil_data_dir();
    char first[512], second[512];
    const char *tempered = "--estimator annealed-st --tau0 0.5 --anneal-rate 0 --steps 100 "
                           "--eval-every 50 " SMALL;
    int rc = gsvae("train --data %s --out %s --st-slope posterior %s", data, a, tempered);
    ck_assert_msg(rc == 0, "%s", errout);
    final_figures(first, sizeof first);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(a, "summary.json"), &len);
    ck_assert(summary != NULL);
    ck_assert(testutil_contains(summary, "\"estimator\": \"annealed-st\""));
    ck_assert(testutil_contains(summary, "\"st_slope\": \"posterior\""));
    free(summary);
    /* "final test -ELBO X nats (recon R, KL K)..." against eval's
     * "test -ELBO X nats (recon R, KL K) on 500 images". */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --images 500 --iw-samples 0", a, data);
    ck_assert_msg(rc == 0, "%s", errout);
    const char *e = strstr(out, "test -ELBO"), *t = first + strlen("final ");
    size_t n = (size_t)(strchr(t, ')') - t) + 1;
    ck_assert_msg(e && !strncmp(e, t, n), "eval '%s' differs from training's '%s'", out, t);
    /* The backward reading of the same flags is another run... */
    rc = gsvae("train --data %s --out %s --st-slope backward %s", data, b, tempered);
    ck_assert_msg(rc == 0, "%s", errout);
    final_figures(second, sizeof second);
    ck_assert_str_ne(first, second);
    /* ...but at slope 1 both are straight-through (each replacing the run
     * above in its directory). */
    const char *slope1 = "--estimator annealed-st --tau0 1 --anneal-rate 0 --steps 100 "
                         "--eval-every 50 --force " SMALL;
    rc = gsvae("train --data %s --out %s --st-slope posterior %s", data, a, slope1);
    ck_assert_msg(rc == 0, "%s", errout);
    final_figures(first, sizeof first);
    rc = gsvae("train --data %s --out %s --st-slope backward %s", data, b, slope1);
    ck_assert_msg(rc == 0, "%s", errout);
    final_figures(second, sizeof second);
    ck_assert_str_eq(first, second);
}
END_TEST

static void expect_flag_error(const char *args, const char *needle)
{
    const char *dir = testutil_tmpdir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/never", dir);
    int rc = gsvae("train --data %s --out %s %s", testutil_data_dir(), sub, args);
    ck_assert_msg(rc == 2, "%s: exit %d", args, rc);
    ck_assert_msg(testutil_contains(errout, needle), "%s: stderr '%s' lacks '%s'", args, errout,
                  needle);
    /* One line, and no work done: the output directory was not created. */
    ck_assert_msg(strchr(errout, '\n') == errout + strlen(errout) - 1, "%s: '%s'", args, errout);
    ck_assert_msg(fopen(sub, "r") == NULL, "%s: created %s", args, sub);
}

START_TEST(bad_flags_fail_before_any_work)
{
    expect_flag_error("--bogus 3", "unknown flag '--bogus'");
    expect_flag_error("--batch -5", "--batch -5");
    expect_flag_error("--batch x", "--batch: 'x' is not an integer");
    expect_flag_error("--tau-min 0", "--tau-min 0");
    expect_flag_error("--tau0 -1", "--tau0 -1");
    expect_flag_error("--latent 20y10", "--latent '20y10'");
    expect_flag_error("--latent 20x1", "--latent '20x1'");
    expect_flag_error("--latent-type bernoulli --latent 20x10", "--latent '20x10'");
    expect_flag_error("--hidden 512,,256", "--hidden '512,,256'");
    expect_flag_error("--estimator nope", "--estimator 'nope'");
    expect_flag_error("--lr 0", "--lr 0");
    expect_flag_error("--binarize maybe", "--binarize 'maybe'");
    expect_flag_error("--lr", "--lr: missing value");
    expect_flag_error("--lr-decay 1.5", "--lr-decay 1.5");
    expect_flag_error("--threads -1", "--threads -1");
    expect_flag_error("--task nope", "--task 'nope'");
    expect_flag_error("--st-slope sideways", "--st-slope 'sideways'");
    expect_flag_error("--estimator darn --darn-point third", "--darn-point 'third': expected centre or half");
    expect_flag_error("--estimator st --darn-point half", "--darn-point half: only for --estimator darn");
    expect_flag_error("--estimator sf --var-norm 2", "--var-norm 2: expected 0 or 1");
    expect_flag_error("--estimator sf --baseline-lr 2", "--baseline-lr 2: expected a rate in [0, 1]");
    expect_flag_error("--estimator sf --baseline-lr 1e-3", "--baseline-lr: only with --baseline learned");
    expect_flag_error("--estimator sf --var-norm-scope part",
                      "--var-norm-scope 'part': expected whole or signal");
    expect_flag_error("--estimator gumbel --var-norm-scope signal",
                      "--var-norm-scope signal: only for --estimator sf or muprop");
    expect_flag_error("--st-slope posterior", "--st-slope posterior: only with --estimator "
                                              "annealed-st, not gumbel");
    int rc = gsvae("train --help");
    ck_assert_int_eq(rc, 0);
    ck_assert(testutil_contains(out, "--anneal-every"));
    ck_assert(testutil_contains(out, "st-gumbel"));
    rc = gsvae("--help");
    ck_assert_int_eq(rc, 0);
    rc = gsvae("frobnicate");
    ck_assert_int_eq(rc, 2);
    ck_assert(testutil_contains(errout, "unknown command 'frobnicate'"));
}
END_TEST

START_TEST(bad_checkpoints_are_refused)
{
    const char *dir = testutil_tmpdir();
    ck_assert(gsvae("train --data %s --out %s --steps 20 --eval-every 0 " SMALL,
                    testutil_data_dir(), dir) == 0);
    const char *path = testutil_path(dir, "model.ckpt");
    size_t len;
    uint8_t *bytes = testutil_read_file(path, &len);
    ck_assert(bytes != NULL && len > 1000);

    /* A flipped byte. */
    const char *bad = testutil_path(dir, "flipped.ckpt");
    bytes[len / 2] ^= 0x40;
    ck_assert(testutil_write_bytes(bad, bytes, len, 0) == 0);
    bytes[len / 2] ^= 0x40;
    int rc = gsvae("eval --ckpt %s --data %s", bad, testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "checksum mismatch"), "%s", errout);

    /* Truncated. */
    const char *cut = testutil_path(dir, "cut.ckpt");
    ck_assert(testutil_write_bytes(cut, bytes, len - 100, 0) == 0);
    rc = gsvae("sample --ckpt %s --out %s/x.png", cut, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "truncated"), "%s", errout);
    ck_assert(fopen(testutil_path(dir, "x.png"), "r") == NULL);

    /* Consistent container, but the stored model shape disagrees with the
     * parameters it holds. */
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert(ckpt_read(path, &f, err) == 0);
    ckpt_section secs[CKPT_MAX_SECTIONS];
    char config[8192];
    int n = ckpt_count(f);
    for (int i = 0; i < n; i++) {
        secs[i].name = ckpt_name(f, i);
        ck_assert(ckpt_get(f, secs[i].name, &secs[i].data, &secs[i].len, err) == 0);
        if (!strcmp(secs[i].name, "config")) {
            ck_assert(secs[i].len < sizeof config - 1);
            memcpy(config, secs[i].data, secs[i].len);
            config[secs[i].len] = '\0';
            char *p = strstr(config, "latent=5x4");
            ck_assert(p != NULL);
            p[7] = '6';
            secs[i].data = config;
        }
    }
    const char *mism = testutil_path(dir, "mismatch.ckpt");
    ck_assert(ckpt_write(mism, secs, n, err) == 0);
    ckpt_free(f);
    rc = gsvae("eval --ckpt %s --data %s", mism, testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "section 'params' has"), "%s", errout);

    /* Not a checkpoint at all, and a missing one. */
    rc = gsvae("eval --ckpt %s/log.csv --data %s", dir, testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert(testutil_contains(errout, "log.csv"));
    rc = gsvae("recon --ckpt %s/none.ckpt --data %s", dir, testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert(testutil_contains(errout, "none.ckpt"));
    rc = gsvae("eval --data %s", testutil_data_dir());
    ck_assert_int_eq(rc, 2);
    ck_assert(testutil_contains(errout, "--ckpt: required"));
    free(bytes);
}
END_TEST

/* A JSON object of one "  \"key\": value" a line, as summary.json: "{",
 * the fields, each but the last ending in a comma, "}". */
static int json_fields_well_formed(const char *text)
{
    size_t len = strlen(text);
    if (strncmp(text, "{\n", 2) || len < 4 || strcmp(text + len - 3, "\n}\n"))
        return 0;
    for (const char *line = text + 2; line < text + len - 2;) {
        const char *nl = strchr(line, '\n');
        int last = nl == text + len - 3;
        if (strncmp(line, "  \"", 3) || !memchr(line, ':', (size_t)(nl - line)) ||
            (nl[-1] == ',') == last)
            return 0;
        line = nl + 1;
    }
    return 1;
}

/* eval --set valid scores the run's own validation split, binarized as the
 * run binarized it: with --binarize fixed it gives the -ELBO of log.csv's
 * last valid_neg_elbo to the printed digits (and --json to summary.json's
 * six); bad sets are refused. */
START_TEST(eval_scores_the_validation_split)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    int rc = gsvae("train --data %s --out %s --steps 60 --eval-every 30 --binarize fixed "
                   "--validation 700 --optimizer momentum --lr 3e-3 " SMALL,
                   data, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert(summary != NULL);
    double logged = testutil_json_number(summary, "valid_neg_elbo");
    ck_assert_msg(isfinite(logged), "%s", summary);
    free(summary);
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --set valid --images 700 --iw-samples 0",
               dir, data);
    ck_assert_msg(rc == 0, "%s", errout);
    const char *e = strstr(out, "valid -ELBO ");
    ck_assert_msg(e != NULL, "%s", out);
    double scored = atof(e + strlen("valid -ELBO "));
    ck_assert_msg(fabs(scored - logged) < 0.0006, "eval %f, log %f", scored, logged);
    ck_assert(testutil_contains(out, "on 700 images"));
    /* --json: the figures named as in summary.json, every one asked for. */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --set valid --images 700 --iw-samples 3 "
               "--tau 0.5 --json",
               dir, data);
    ck_assert_msg(rc == 0 && json_fields_well_formed(out), "%s\n%s", out, errout);
    ck_assert_msg(fabs(testutil_json_number(out, "valid_neg_elbo") - logged) < 2e-6, "%s", out);
    ck_assert_msg(testutil_json_number(out, "valid_images") == 700 && testutil_json_number(out, "valid_iw_samples") == 3 &&
                      testutil_json_number(out, "tau") == 0.5,
                  "%s", out);
    const char *figures[] = {"valid_recon", "valid_kl", "valid_neg_elbo_relaxed",
                             "valid_neg_log_px_iw", "seed"};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(isfinite(testutil_json_number(out, figures[i])), "%s: %s", figures[i], out);
    ck_assert(testutil_contains(out, "\"ckpt\": \""));
    /* The test set differs from it. */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --images 700 --iw-samples 0", dir, data);
    ck_assert_msg(rc == 0 && (e = strstr(out, "test -ELBO ")), "%s", errout);
    ck_assert(fabs(atof(e + strlen("test -ELBO ")) - logged) > 0.01);

    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --set train", dir, data);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(testutil_contains(errout, "--set 'train': expected test or valid"), "%s",
                  errout);
    /* A run without a validation split has none to score. */
    const char *nov = testutil_tmpdir();
    rc = gsvae("train --data %s --out %s --steps 10 --eval-every 0 " SMALL, data, nov);
    ck_assert_msg(rc == 0, "%s", errout);
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s --set valid", nov, data);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "held out no validation set"), "%s", errout);
}
END_TEST

/* The OpenBLAS kernel set gsvae ran with, from `gsvae bench`'s "blas:"
 * line, into k. */
static void bench_kernels(char *k, size_t n)
{
    int rc = gsvae("bench --data %s --steps 2 --hidden none --iw-images 1 --threads 1",
                   testutil_data_dir());
    ck_assert_msg(rc == 0, "%s", errout);
    const char *b = strstr(out, "blas: ");
    ck_assert_msg(b != NULL, "%s", out);
    b += strlen("blas: ");
    size_t len = strcspn(b, " ");
    ck_assert(len > 0 && len < n);
    memcpy(k, b, len);
    k[len] = '\0';
}

START_TEST(blas_kernels_of_the_cpu_unless_named)
{
    char k[64];
    /* Unset: never the SSE3 fallback on a CPU that has AVX2 (OpenBLAS 0.3.21
     * falls back to it on CPUs newer than itself; main.c names the CPU's
     * kernels then). */
    unsetenv("OPENBLAS_CORETYPE");
    bench_kernels(k, sizeof k);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        ck_assert_msg(strcmp(k, "Prescott"), "ran with %s", k);
    /* A set that the user names is kept, the fallback's included. */
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    bench_kernels(k, sizeof k);
    ck_assert_str_eq(k, "Prescott");
    unsetenv("OPENBLAS_CORETYPE");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, train_learns_and_writes_outputs);
    tcase_add_test(tc, same_seed_same_run_and_resume_is_exact);
    tcase_add_test(tc, nan_stops_the_run_and_keeps_the_last_checkpoint);
    tcase_add_test(tc, annealed_st_posterior_slope);
    tcase_add_test(tc, bad_flags_fail_before_any_work);
    tcase_add_test(tc, bad_checkpoints_are_refused);
    tcase_add_test(tc, eval_scores_the_validation_split);
    tcase_add_test(tc, blas_kernels_of_the_cpu_unless_named);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
