/* test_driver.c: the training driver that every task of `gsvae train` runs
 * through (vae/cli/driver.c), end to end through the real binary: the
 * common flags mean the same for every task, every task resumes exactly,
 * stops on NaN telling the truth about its last checkpoint, and never loses
 * a run (no silent overwrite, a writable directory proven before the first
 * step, SIGINT/SIGTERM saving a checkpoint that resumes bit for bit, stale
 * temporary files removed, resumes whose log outgrows its first size). */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "dataset.h"
#include "driver.h"
#include "rundir.h"
#include "testutil.h"
#include "util.h"

#define OUT_LEN (1 << 16)
static char out[OUT_LEN], errout[OUT_LEN];

#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)

/* Tiny runs of each task: seconds each. */
static const char *const tiny[] = {
    "--task vae --latent 2x3 --hidden 8 --eval-images 100 --iw-samples 0 --threads 1 --quiet",
    "--task sbn --latent-type bernoulli --latent 8 --eval-samples 2 --test-samples 2 "
    "--eval-images 100 --threads 1 --quiet",
    "--task semisup --hidden 16 --latent 4 --unlabelled 2000 --batch 20 --labelled-batch 20 "
    "--eval-images 100 --threads 1 --quiet",
    /* Only resume_is_exact runs the rest: the conv networks of the paper. */
    "--task semisup --net conv --estimator exact --latent 4 --unlabelled 2000 --batch 4 "
    "--labelled-batch 4 --eval-images 20 --threads 1 --quiet",
    /* And this one: the SBN's learned baselines live in its persistent state. */
    "--task sbn --latent-type bernoulli --latent 8 --estimator sf --baseline learned "
    "--eval-samples 2 --test-samples 2 --eval-images 100 --threads 1 --quiet",
};
static const char *const task_name[] = {"vae", "sbn", "semisup", "semisup --net conv",
                                        "sbn --baseline learned"};

/* A checkpoint section, copied (caller frees). */
static void *section_of(const char *path, const char *name, uint64_t *len)
{
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    const void *data;
    ck_assert_msg(ckpt_get(f, name, &data, len, err) == 0, "%s", err);
    void *copy = malloc(*len ? *len : 1);
    memcpy(copy, data, *len);
    ckpt_free(f);
    return copy;
}

/* log.csv without its last column (the seconds), as one string. */
static char *log_without_seconds(const char *dir)
{
    size_t len;
    char *text = (char *)testutil_read_file(testutil_path(dir, "log.csv"), &len);
    ck_assert_msg(text != NULL, "%s/log.csv missing", dir);
    char *res = malloc(len + 1), *w = res;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        char *end = nl ? nl : text + len;
        char *comma = end;
        while (comma > line && *comma != ',')
            comma--;
        memcpy(w, line, (size_t)(comma - line));
        w += comma - line;
        *w++ = '\n';
        line = end + 1;
    }
    *w = '\0';
    free(text);
    return res;
}

/* The run in a equals the run in b: the same parameters, optimizer state,
 * task state, and log.csv but for the wall times. */
/* DIR/summary.json without its lines of timings. */
static char *summary_without_seconds(const char *dir)
{
    size_t len;
    char *s = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert_msg(s, "%s/summary.json: missing", dir);
    char *w = s;
    for (char *line = s; *line;) {
        char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        char keep = line[n];
        line[n] = '\0';
        int timing = strstr(line, "second") != NULL; /* train_seconds, steps_per_second */
        line[n] = keep;
        if (!timing) {
            memmove(w, line, n);
            w += n;
        }
        line += n;
    }
    *w = '\0';
    return s;
}

static void assert_same_run(const char *a, const char *b)
{
    static const char *const secs[] = {"params", "adam_m", "adam_v", "estimator", "order"};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        uint64_t la, lb;
        void *pa = section_of(testutil_path(a, "model.ckpt"), secs[i], &la);
        void *pb = section_of(testutil_path(b, "model.ckpt"), secs[i], &lb);
        ck_assert_msg(la == lb && memcmp(pa, pb, la) == 0, "%s and %s: section %s differs", a, b,
                      secs[i]);
        free(pa);
        free(pb);
    }
    char *la = log_without_seconds(a), *lb = log_without_seconds(b);
    ck_assert_msg(!strcmp(la, lb), "log.csv differs:\n%s\n---\n%s", la, lb);
    free(la);
    free(lb);
}

/* ---- the common flags ---- */

/* Every task takes the common flags with one meaning and one message. */
START_TEST(common_flags_are_shared)
{
    static const char *bad[][2] = {
        {"--threads -1", "--threads -1: must lie in 0..256"},
        {"--epochs -1", "--epochs -1: must lie in 0..100000"},
        {"--lr 2", "--lr 2: must lie in (0, 1)"},
        {"--optimizer sgd", "--optimizer 'sgd': expected adam or momentum"},
        {"--batch-loss total", "--batch-loss 'total': expected mean or sum"},
        {"--binarize maybe", "--binarize 'maybe'"},
        {"--validation -3", "--validation -3"},
        {"--log-every 0", "--log-every 0: must be >= 1"},
        {"--resume --force", "--resume and --force"},
    };
    const char *dir = testutil_tmpdir();
    for (int t = 0; t < 3; t++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int rc = gsvae("train %s --data %s --out %s/never %s", tiny[t], testutil_data_dir(),
                           dir, bad[i][0]);
            ck_assert_msg(rc == 2, "%s %s: rc %d", task_name[t], bad[i][0], rc);
            ck_assert_msg(testutil_contains(errout, bad[i][1]), "%s %s: %s", task_name[t],
                          bad[i][0], errout);
            ck_assert_msg(strchr(errout, '\n') == errout + strlen(errout) - 1, "not one line: %s",
                          errout);
        }
        int rc = gsvae("train --task %s --help", task_name[t]);
        ck_assert_int_eq(rc, 0);
        static const char *common[] = {"--resume", "--force", "--epochs", "--optimizer",
                                       "--validation", "--threads", "--binarize"};
        for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
            ck_assert_msg(testutil_contains(out, common[i]), "%s --help lacks %s", task_name[t],
                          common[i]);
    }
    ck_assert(access(testutil_path(dir, "never"), F_OK) != 0);
}
END_TEST

/* --epochs E trains E passes over what the task draws from. */
START_TEST(epochs_for_every_task)
{
    const char *dir = testutil_tmpdir();
    /* semisup draws from its 2000-image pool, 20 a step: 100 steps. */
    int rc = gsvae("train %s --data %s --out %s/e --epochs 1 --eval-every 0", tiny[2],
                   testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "; 100 steps in"), "%s", out);
}
END_TEST

/* --batch-loss sum steps on B times the mean's gradient: under SGD with
 * momentum, rate r on the sum is rate B r on the mean (to rounding), for
 * every task; the logged figures stay means; and it is another run than
 * rate r on the mean. */
START_TEST(batch_loss_sum_scales_the_step)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    for (int t = 0; t < 3; t++) {
        int B = t == 2 ? 20 : 100;
        double fig[3];
        const char *how[3] = {"--batch-loss sum --lr 1e-4", "--lr 1e-4", ""};
        char mean_rate[64];
        snprintf(mean_rate, sizeof mean_rate, "--lr %g", 1e-4 * B);
        how[2] = mean_rate;
        for (int k = 0; k < 3; k++) {
            char rdir[64];
            snprintf(rdir, sizeof rdir, "%s/%s-%d", dir, task_name[t], k);
            int rc = gsvae("train %s --data %s --out %s --optimizer momentum --steps 40 "
                           "--eval-every 0 %s",
                           tiny[t], data, rdir, how[k]);
            ck_assert_msg(rc == 0, "%s %s: %s", task_name[t], how[k], errout);
            double v[64];
            int n = testutil_log_column(rdir, "step,epoch,tau,train_loss", 3, v, 64);
            ck_assert_msg(n > 0, "%s: no train_loss", rdir);
            fig[k] = v[n - 1];
        }
        ck_assert_msg(fabs(fig[0] - fig[2]) < 1e-3 * fabs(fig[2]), "%s: sum %f, mean x B %f",
                      task_name[t], fig[0], fig[2]);
        ck_assert_msg(fabs(fig[0] - fig[1]) > 1e-3, "%s: sum %f equals mean %f", task_name[t],
                      fig[0], fig[1]);
    }
}
END_TEST

/* ---- resume, NaN ---- */

/* 40 steps, then --resume to 80, is the 80-step run, bit for bit. */
START_TEST(resume_is_exact)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir();
    const char *data = testutil_data_dir();
    const char *f = tiny[_i];
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 80 --eval-every 40 --log-every 10", f,
                        data, a) == 0, "%s", errout);
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 40 --eval-every 40 --log-every 10", f,
                        data, b) == 0, "%s", errout);
    int rc = gsvae("train --data %s --out %s --steps 80 --resume --quiet", data, b);
    ck_assert_msg(rc == 0, "%s resume: %s", task_name[_i], errout);
    assert_same_run(a, b);
    /* A finished run asks for more steps. */
    rc = gsvae("train --data %s --out %s --steps 80 --resume", data, b);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "already at step 80"), "%s", errout);
    /* A run stopped during its final evaluation (every step trained, no
     * summary yet) is finished by --resume: the summary of the straight
     * run, timings aside. */
    ck_assert(remove(testutil_path(b, "summary.json")) == 0);
    rc = gsvae("train --data %s --out %s --resume --quiet", data, b);
    ck_assert_msg(rc == 0 && testutil_contains(errout, "writing the final evaluation"), "%s",
                  errout);
    char *sa = summary_without_seconds(a), *sb = summary_without_seconds(b);
    ck_assert_msg(!strcmp(sa, sb), "%s: summary differs:\n%s\n---\n%s", task_name[_i], sa, sb);
    free(sa);
    free(sb);
}
END_TEST

/* The first n bytes of needle in data[len], or NULL. */
static const char *find_bytes(const void *data, uint64_t len, const char *needle, size_t n)
{
    const char *d = data;
    for (uint64_t i = 0; i + n <= len; i++)
        if (!memcmp(d + i, needle, n))
            return d + i;
    return NULL;
}

/* The checkpoint of a --net conv run stores the choice, and a resume
 * without --net builds the conv model from it (resume_is_exact resumes one
 * bit for bit); a checkpoint from before --net existed, without the line,
 * resumes as the MLP it is. */
START_TEST(semisup_net_in_checkpoint)
{
    const char *dir = testutil_tmpdir(), *whole = testutil_tmpdir();
    const char *data = testutil_data_dir();
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 2 --eval-every 2", tiny[3], data,
                        dir) == 0, "%s", errout);
    const char *path = testutil_path(dir, "model.ckpt");
    uint64_t len;
    char *config = section_of(path, "config", &len);
    ck_assert_msg(find_bytes(config, len, "\nnet=conv\n", 9) != NULL, "%.*s", (int)len, config);
    free(config);

    /* An MLP run's checkpoint with the net= line taken out. */
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 40 --eval-every 20", tiny[2], data,
                        whole) == 0, "%s", errout);
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 20 --eval-every 20 --force", tiny[2],
                        data, dir) == 0, "%s", errout);
    char err[ERR_LEN];
    ckpt_file *f;
    ck_assert_msg(ckpt_read(path, &f, err) == 0, "%s", err);
    ckpt_section secs[CKPT_MAX_SECTIONS];
    int n = ckpt_count(f);
    char *old = NULL;
    for (int i = 0; i < n; i++) {
        const void *d;
        uint64_t l;
        secs[i].name = ckpt_name(f, i);
        ck_assert(ckpt_get(f, secs[i].name, &d, &l, err) == 0);
        secs[i].data = d;
        secs[i].len = l;
        if (!strcmp(secs[i].name, "config")) {
            old = malloc(l + 1);
            const char *line = find_bytes(d, l, "\nnet=mlp\n", 9);
            ck_assert_msg(line != NULL, "%.*s", (int)l, (const char *)d);
            size_t at = (size_t)(line - (const char *)d) + 1;
            memcpy(old, d, at);
            memcpy(old + at, (const char *)d + at + 8, l - at - 8);
            secs[i].data = old;
            secs[i].len = l - 8;
        }
    }
    ck_assert(old != NULL);
    ck_assert_msg(ckpt_write(path, secs, n, err) == 0, "%s", err);
    free(old);
    ckpt_free(f);
    ck_assert_msg(gsvae("train --data %s --out %s --steps 40 --resume --quiet", data, dir) == 0,
                  "%s", errout);
    assert_same_run(whole, dir);
}
END_TEST

/* A NaN stops the run and names the last checkpoint, also after a resume. */
START_TEST(nan_stops_every_task)
{
    const char *dir = testutil_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_NAN_AT_STEP=25 %s train %s --data %s --out %s --steps 40 --eval-every 10",
             testutil_hooks_bin(), tiny[_i], testutil_data_dir(), dir);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "step 25: loss is NaN") &&
                      testutil_contains(errout, "model.ckpt (step 20)"),
                  "%s: %s", task_name[_i], errout);
    ck_assert(access(testutil_path(dir, "summary.json"), F_OK) != 0);
    /* Resumed from step 20 with no evaluation before the NaN at 35: the
     * checkpoint it names is the one it resumed from. */
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_NAN_AT_STEP=35 %s train --data %s --out %s --steps 60 --eval-every 50 "
             "--resume",
             testutil_hooks_bin(), testutil_data_dir(), dir);
    rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "step 35: loss is NaN") &&
                      testutil_contains(errout, "model.ckpt (step 20)"),
                  "%s: %s", task_name[_i], errout);
}
END_TEST

/* ---- no run is lost ---- */

/* A finished run is neither overwritten nor mixed with another. */
START_TEST(finished_run_is_not_overwritten)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    ck_assert(gsvae("train %s --data %s --out %s --steps 30 --eval-every 0", tiny[0], data, dir) == 0);
    size_t l1, l2;
    uint8_t *s1 = testutil_read_file(testutil_path(dir, "summary.json"), &l1);
    int rc = gsvae("train %s --data %s --out %s --steps 20 --eval-every 0", tiny[0], data, dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "holds a run") && testutil_contains(errout, "--force"),
                  "%s", errout);
    uint8_t *s2 = testutil_read_file(testutil_path(dir, "summary.json"), &l2);
    ck_assert(l1 == l2 && memcmp(s1, s2, l1) == 0);
    free(s2);
    /* --force replaces it, and says so. */
    rc = gsvae("train %s --data %s --out %s --steps 20 --eval-every 0 --force", tiny[0], data, dir);
    ck_assert_msg(rc == 0 && testutil_contains(errout, "replacing"), "%s", errout);
    ck_assert(testutil_contains(out, "; 20 steps in"));
    free(s1);
    /* A directory holding other files is refused, --force or not. */
    const char *other = testutil_tmpdir();
    ck_assert(testutil_write_bytes(testutil_path(other, "notes.txt"), "x", 1, 0) == 0);
    rc = gsvae("train %s --data %s --out %s --steps 5 --force", tiny[0], data, other);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "notes.txt"), "%s", errout);
    /* ... and left as it was: not even the run's lock file is made there. */
    ck_assert(access(testutil_path(other, RUNDIR_LOCK), F_OK) != 0);
}
END_TEST

/* An --out that cannot be written is found before any training. */
START_TEST(unwritable_out_fails_before_training)
{
    int rc = gsvae("train %s --data %s --out /proc/gsvae-cannot-exist/run --steps 5000 "
                   "--eval-every 0", tiny[0], testutil_data_dir());
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "/proc/gsvae-cannot-exist") &&
                      !testutil_contains(errout, "training"),
                  "%s", errout);
    /* Room for a checkpoint is checked the same way. */
    char err[ERR_LEN];
    ck_assert_int_eq(rundir_check_room(testutil_tmpdir(), UINT64_MAX / 2, err), -1);
    ck_assert_msg(strstr(err, "bytes free") != NULL, "%s", err);
    ck_assert_int_eq(rundir_check_room(testutil_tmpdir(), 1024, err), 0);
}
END_TEST

/* SIGTERM twice at a known step (a job manager's repeated TERM): exit 143,
 * a checkpoint, an interrupted summary, and a resume that ends where the
 * uninterrupted run ends, bit for bit. */
START_TEST(signal_saves_and_resumes_exactly)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir(), *data = testutil_data_dir();
    const char *f = tiny[_i];
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 60 --eval-every 30 --log-every 10", f,
                        data, a) == 0, "%s", errout);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_SIGNAL_AT_STEP=23 %s train %s --data %s --out %s --steps 60 "
             "--eval-every 30 --log-every 10",
             testutil_hooks_bin(), f, data, b);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_msg(rc == 143, "%s: rc %d: %s", task_name[_i], rc, errout);
    ck_assert_msg(testutil_contains(errout, "at step 24 of 60") &&
                      testutil_contains(errout, "--resume"),
                  "%s", errout);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(b, "summary.json"), &len);
    ck_assert(summary && testutil_contains(summary, "\"interrupted\": true") &&
              testutil_contains(summary, "\"steps_done\": 24"));
    free(summary);
    rc = gsvae("train --data %s --out %s --resume", data, b);
    ck_assert_msg(rc == 0, "%s", errout);
    assert_same_run(a, b);
}
END_TEST

/* SIGINT twice at a known step (Ctrl-C again): the process ends at once,
 * by the signal, and writes nothing of that step: no checkpoint (the first
 * is at step 30) and no summary. */
START_TEST(second_sigint_ends_at_once)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "GSVAE_TEST_SIGNAL=INT GSVAE_TEST_SIGNAL_AT_STEP=23 %s train %s --data %s --out %s "
             "--steps 60 --eval-every 30 --log-every 10",
             testutil_hooks_bin(), tiny[0], data, dir);
    int rc = run_capture(cmd, out, sizeof out, errout, sizeof errout);
    ck_assert_msg(rc == 130 && !testutil_contains(errout, "interrupted at step"), "rc %d: %s", rc,
                  errout);
    ck_assert(access(testutil_path(dir, "model.ckpt"), F_OK) != 0);
    ck_assert(access(testutil_path(dir, "summary.json"), F_OK) != 0);
}
END_TEST

/* Start `gsvae train FLAGS --data DATA --out DIR` in a child, its stderr in
 * DIR.err (errpath), and return its pid once it trains: the line it prints
 * just before it installs its signal handlers has come (waiting for it,
 * not a fixed delay, which a loaded machine can stretch past). */
static pid_t start_training(const char *flags, const char *data, const char *dir, char *errpath,
                            size_t len)
{
    snprintf(errpath, len, "%s.err", dir);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "exec %s train %s --data %s --out %s >/dev/null 2>%s",
                 testutil_bin(), flags, data, dir, errpath);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int tries = 0;; tries++) {
        size_t n;
        char *text = (char *)testutil_read_file(errpath, &n);
        int started = text && testutil_contains(text, "training ");
        free(text);
        if (started)
            return pid;
        ck_assert_msg(tries < 6000, "the run did not start in 60 s");
        struct timespec tick = {0, 10000000L};
        nanosleep(&tick, NULL);
    }
}

/* A real SIGTERM from outside at a random point (twice, 200 ms apart),
 * then a resume: the same run as the uninterrupted one.  SIGINT exits 130. */
START_TEST(kill_at_random_point_then_resume)
{
    const char *a = testutil_tmpdir(), *b = testutil_tmpdir(), *data = testutil_data_dir();
    const char *f = "--latent 2x3 --hidden 8 --batch 10 --steps 20000 --eval-every 5000 "
                    "--log-every 500 --eval-images 100 --iw-samples 0 --threads 1";
    ck_assert(gsvae("train %s --quiet --data %s --out %s", f, data, a) == 0);
    for (int k = 0; k < 2; k++) {
        const char *dir = k ? testutil_tmpdir() : b;
        int sig = k ? SIGINT : SIGTERM;
        /* The signal lands in training, not in the loading of the data
         * before the handlers are in: once it trains, a random 0.1-0.8 s
         * more. */
        char errpath[4200];
        pid_t pid = start_training(f, data, dir, errpath, sizeof errpath);
        srand((unsigned)getpid());
        struct timespec pause = {0, 100000000L + (long)(rand() % 700) * 1000000L};
        while (pause.tv_nsec >= 1000000000L) {
            pause.tv_sec++;
            pause.tv_nsec -= 1000000000L;
        }
        nanosleep(&pause, NULL);
        kill(pid, sig);
        if (sig == SIGTERM) {
            /* GNU parallel's default sequence: TERM again 200 ms later
             * (the child, exited or not, is not reaped until waitpid). */
            struct timespec gap = {0, 200000000L};
            nanosleep(&gap, NULL);
            kill(pid, sig);
        }
        int status;
        ck_assert(waitpid(pid, &status, 0) == pid);
        size_t errlen;
        char *errtext = (char *)testutil_read_file(errpath, &errlen);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 128 + sig,
                      "signal %d: status %d (the run finished before the signal?): %s", sig,
                      status, errtext ? errtext : "");
        free(errtext);
    }
    int rc = gsvae("train --data %s --out %s --resume --quiet", data, b);
    ck_assert_msg(rc == 0, "%s", errout);
    assert_same_run(a, b);
}
END_TEST

/* A second process in a live run's directory (a grid's two hosts handed
 * one job, a resume started too early) is refused with the first's pid,
 * --force included, and removes nothing; after the first ends, its run
 * resumes. */
START_TEST(live_run_directory_is_refused)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    const char *f = "--latent 2x3 --hidden 8 --batch 10 --steps 2000000 --eval-every 0 "
                    "--log-every 1000 --eval-images 100 --iw-samples 0 --threads 1";
    char errpath[4200];
    pid_t pid = start_training(f, data, dir, errpath, sizeof errpath);
    char want[64];
    snprintf(want, sizeof want, "in use by another gsvae run (pid %ld)", (long)pid);
    for (int k = 0; k < 2; k++) {
        int rc = gsvae("train %s --data %s --out %s %s", f, data, dir, k ? "--force" : "");
        ck_assert_msg(rc != 0 && testutil_contains(errout, want), "exit %d: %s", rc, errout);
        ck_assert_msg(!strchr(errout, '\n') || strchr(errout, '\n')[1] == '\0', "%s", errout);
    }
    kill(pid, SIGTERM);
    int status;
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM, "status %d", status);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    double steps_done = testutil_json_number(summary, "steps_done");
    ck_assert_msg(isfinite(steps_done), "%s", summary ? summary : "(no summary.json)");
    long done = (long)steps_done;
    free(summary);
    int rc = gsvae("train --data %s --out %s --resume --steps %ld --quiet", data, dir, done + 10);
    ck_assert_msg(rc == 0, "%s", errout);
}
END_TEST

/* Temporary files of a killed writer are removed by the next run. */
START_TEST(stale_temporaries_are_removed)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    ck_assert(gsvae("train %s --data %s --out %s --steps 10 --eval-every 0", tiny[0], data, dir) == 0);
    ck_assert(testutil_write_bytes(testutil_path(dir, "model.ckpt.tmp.99999"), "GSVAECKP", 8, 0) == 0);
    ck_assert(testutil_write_bytes(testutil_path(dir, "log.csv.tmp.123"), "x", 1, 0) == 0);
    int rc = gsvae("train --data %s --out %s --steps 20 --resume", data, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert(access(testutil_path(dir, "model.ckpt.tmp.99999"), F_OK) != 0);
    ck_assert(access(testutil_path(dir, "log.csv.tmp.123"), F_OK) != 0);
}
END_TEST

/* A resume may log more rows than the first run had room for, and takes
 * flags that are checked against the stored options, not the defaults. */
START_TEST(resume_merges_options_and_grows_the_log)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    ck_assert(gsvae("train %s --data %s --out %s --steps 100 --log-every 10 --eval-every 0", tiny[0],
                    data, dir) == 0);
    int rc = gsvae("train --data %s --out %s --steps 120 --log-every 100 --eval-every 1000 --resume",
                   data, dir);
    ck_assert_msg(rc == 0, "coarser log on resume: %s", errout);
    double v[64];
    int n = testutil_log_column(dir, "step,", 0, v, 64);
    ck_assert_msg(n >= 11 && v[n - 1] == 120, "rows %d, last %g", n, n ? v[n - 1] : -1);
    /* The stored 2x3 code makes exact feasible: the check sees the merged
     * options. */
    rc = gsvae("train --data %s --out %s --steps 140 --estimator exact --resume", data, dir);
    ck_assert_msg(rc == 0, "exact on resume: %s", errout);
}
END_TEST

/* --resume picks the task from the checkpoint; a task mismatch is refused. */
START_TEST(resume_finds_the_task)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    ck_assert(gsvae("train %s --data %s --out %s --steps 10 --eval-every 0", tiny[1], data, dir) == 0);
    int rc = gsvae("train --data %s --out %s --steps 20 --resume", data, dir);
    ck_assert_msg(rc == 0 && testutil_contains(out, "x_lower"), "%s %s", out, errout);
    rc = gsvae("train --task semisup --data %s --out %s --steps 30 --resume", data, dir);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "a sbn run"), "%s", errout);
    /* eval reads the VAE's and semisup's checkpoints, not the SBN's. */
    rc = gsvae("eval --ckpt %s/model.ckpt --data %s", dir, data);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "a sbn run; eval reads vae and semisup"),
                  "%s", errout);
}
END_TEST

/* A data directory of n random 28x28 images with labels 0..9 (train and
 * test alike), drawn from seed. */
static const char *random_data(int n, unsigned seed)
{
    const char *dir = testutil_tmpdir();
    uint8_t *px = malloc((size_t)n * 784), *lb = malloc((size_t)n);
    srand(seed);
    for (size_t i = 0; i < (size_t)n * 784; i++)
        px[i] = (uint8_t)(rand() % 256);
    for (int i = 0; i < n; i++)
        lb[i] = (uint8_t)(i % 10);
    uint32_t dims[3] = {(uint32_t)n, 28, 28}, nl = (uint32_t)n;
    static const char *const split[] = {"train", "t10k"};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte", split[k]);
        ck_assert(testutil_write_idx(testutil_path(dir, name), 0x00000803, dims, 3, px,
                                     (size_t)n * 784, 0) == 0);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split[k]);
        ck_assert(testutil_write_idx(testutil_path(dir, name), 0x00000801, &nl, 1, lb, (size_t)n,
                                     0) == 0);
    }
    free(px);
    free(lb);
    return dir;
}

/* --resume on other data of the same size is refused: the checkpoint holds
 * the training file's checksum. */
START_TEST(resume_on_other_data_is_refused)
{
    const char *a = random_data(300, 1), *b = random_data(300, 2), *dir = testutil_tmpdir();
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 10 --eval-every 0 --batch 20", tiny[0],
                        a, dir) == 0, "%s", errout);
    int rc = gsvae("train --data %s --out %s --steps 20 --resume", b, dir);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "other data"), "rc %d: %s", rc, errout);
    rc = gsvae("train --data %s --out %s --steps 20 --resume", a, dir);
    ck_assert_msg(rc == 0, "%s", errout);
}
END_TEST

/* The checkpoint names the OpenBLAS kernels the run trained with: a resume
 * on others says so in one line and goes on, and summary.json lists every
 * set the run used; a resume on the same kernels says nothing. */
START_TEST(resume_on_other_kernels_is_said)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return; /* Haswell's kernels need AVX2 and FMA */
    const char *dir = testutil_tmpdir();
    char *was = getenv("OPENBLAS_CORETYPE") ? strdup(getenv("OPENBLAS_CORETYPE")) : NULL;
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    ck_assert_msg(gsvae("train %s --data %s --out %s --steps 4 --eval-every 2", tiny[0],
                        testutil_data_dir(), dir) == 0, "%s", errout);
    uint64_t len;
    size_t slen;
    char *blas = section_of(testutil_path(dir, "model.ckpt"), "blas", &len);
    ck_assert_msg(len == 8 && !memcmp(blas, "Prescott", 8), "%.*s", (int)len, blas);
    free(blas);
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &slen);
    ck_assert_msg(summary && testutil_contains(summary, "\"blas_kernels\": \"Prescott\",\n"), "%s",
                  summary);
    free(summary);
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    ck_assert_msg(gsvae("train --data %s --out %s --steps 6 --resume",
                        testutil_data_dir(), dir) == 0,
                  "%s", errout);
    ck_assert_msg(testutil_contains(errout, "warning: ") &&
                      testutil_contains(errout, "trained with OpenBLAS's Prescott kernels, this "
                                                "process has Haswell"),
                  "%s", errout);
    summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &slen);
    ck_assert_msg(summary && testutil_contains(summary, "\"blas_kernels\": \"Prescott,Haswell\","),
                  "%s", summary);
    free(summary);
    ck_assert_msg(gsvae("train --data %s --out %s --steps 8 --resume",
                        testutil_data_dir(), dir) == 0,
                  "%s", errout);
    ck_assert_msg(!testutil_contains(errout, "warning"), "%s", errout);
    summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &slen);
    ck_assert_msg(summary && testutil_contains(summary, "\"blas_kernels\": \"Prescott,Haswell\","),
                  "%s", summary);
    free(summary);
    if (was) {
        setenv("OPENBLAS_CORETYPE", was, 1);
        free(was);
    } else {
        unsetenv("OPENBLAS_CORETYPE");
    }
}
END_TEST

/* A temperature floor above the start is said, not silently kept. */
START_TEST(tau_min_above_tau0_is_warned)
{
    int rc = gsvae("train %s --data %s --out %s/run --steps 2 --eval-every 0 --tau0 0.5 "
                   "--tau-min 0.8", tiny[0], testutil_data_dir(), testutil_tmpdir());
    ck_assert_msg(rc == 0 && testutil_contains(errout, "warning: --tau-min 0.8 is above --tau0 0.5"),
                  "%s", errout);
}
END_TEST

/* The commands that compute take --threads with the training's meaning. */
START_TEST(threads_flag_everywhere)
{
    const char *dir = testutil_tmpdir();
    ck_assert(gsvae("train %s --data %s --out %s --steps 5 --eval-every 0", tiny[0],
                    testutil_data_dir(), dir) == 0);
    static const char *const cmds[] = {"eval --images 50 --iw-samples 0", "sample --out %s/s.png",
                                       "recon --out %s/r.png", NULL};
    for (int i = 0; cmds[i]; i++) {
        char args[1024];
        snprintf(args, sizeof args, cmds[i], dir);
        int rc = gsvae("%s --ckpt %s/model.ckpt --data %s --threads 1", args, dir,
                       testutil_data_dir());
        if (i == 1) /* sample reads no data */
            rc = gsvae("%s --ckpt %s/model.ckpt --threads 1", args, dir);
        ck_assert_msg(rc == 0, "%s: %s", args, errout);
        rc = gsvae("%s --ckpt %s/model.ckpt --threads 999", args, dir);
        ck_assert_msg(rc == 2 && testutil_contains(errout, "--threads 999"), "%s: %s", args, errout);
    }
    int rc = gsvae("gradvar --latent 2x3 --hidden 8 --samples 3 --batch 5 --data %s --threads 1",
                   testutil_data_dir());
    ck_assert_msg(rc == 0, "%s", errout);
    rc = gsvae("gradvar --latent 2x3 --hidden 8 --samples 3 --threads -1");
    ck_assert_msg(rc == 2 && testutil_contains(errout, "--threads"), "%s", errout);
}
END_TEST

/* ---- the data of the paper's protocol ---- */

/* The validation split is the last N training images: disjoint from what
 * is trained on, and the two make up the file. */
START_TEST(validation_split_has_no_overlap)
{
    char err[ERR_LEN];
    dataset d, whole;
    ck_assert_msg(dataset_load_split(testutil_data_dir(), "train", &d, err) == 0, "%s", err);
    whole = d;
    dataset v;
    driver_split_validation(&d, 10000, &v);
    ck_assert_uint_eq(d.count, whole.count - 10000);
    ck_assert_uint_eq(v.count, 10000);
    ck_assert_ptr_eq(d.pixels, whole.pixels);
    ck_assert_ptr_eq(v.pixels, whole.pixels + (size_t)d.count * d.dim);
    ck_assert_ptr_eq(v.labels, whole.labels + d.count);
    /* Through the program: the summary and log.csv carry the validation
     * figures beside the test ones. */
    const char *dir = testutil_tmpdir();
    int rc = gsvae("train %s --data %s --out %s --steps 20 --eval-every 10 --validation 10000",
                   tiny[0], testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "%s", errout);
    size_t len;
    char *summary = (char *)testutil_read_file(testutil_path(dir, "summary.json"), &len);
    ck_assert(summary && testutil_contains(summary, "\"validation_images\": 10000") &&
              testutil_contains(summary, "\"valid_neg_elbo\": "));
    free(summary);
    double v0[8];
    ck_assert_int_eq(testutil_log_column(dir, "step,epoch,tau,train_loss,train_recon,train_kl,"
                                              "test_neg_elbo,test_neg_elbo_relaxed,valid_neg_elbo,",
                                         8, v0, 8), 3);
    ck_assert(isfinite(v0[0]) && isfinite(v0[2]));
    /* The run's learning curve: drawn when gnuplot is there, a warning when
     * it is not. */
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        uint8_t *png = testutil_read_file(testutil_path(dir, "curve.png"), &len);
        ck_assert_msg(png && len > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "curve.png");
        free(png);
    } else {
        ck_assert_msg(testutil_contains(errout, "gnuplot not found"), "%s", errout);
    }
    dataset_free(&whole);
}
END_TEST

/* --binarize fixed: one draw per image, the same whatever the run. */
START_TEST(fixed_binarization_is_the_same_in_every_run)
{
    char err[ERR_LEN];
    dataset a, b;
    ck_assert_msg(dataset_load_split(testutil_data_dir(), "train", &a, err) == 0, "%s", err);
    ck_assert_msg(dataset_load_split(testutil_data_dir(), "train", &b, err) == 0, "%s", err);
    size_t n = (size_t)a.count * a.dim;
    double mean_intensity = 0, ones = 0;
    for (size_t i = 0; i < n; i++)
        mean_intensity += a.pixels[i] / 255.0;
    driver_binarize_fixed(&a);
    driver_binarize_fixed(&b);
    ck_assert(memcmp(a.pixels, b.pixels, n) == 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert(a.pixels[i] == 0 || a.pixels[i] == 255);
        ones += a.pixels[i] == 255;
    }
    /* A Bernoulli draw of each pixel: the share of ones is the mean
     * intensity, within a few standard errors of 47 million draws. */
    ck_assert_msg(fabs(ones - mean_intensity) / n < 1e-3, "ones %.0f, mean intensity %.0f", ones,
                  mean_intensity);
    dataset_free(&a);
    dataset_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("driver");
    TCase *flags = tcase_create("flags");
    tcase_set_timeout(flags, 120);
    tcase_add_test(flags, common_flags_are_shared);
    tcase_add_test(flags, epochs_for_every_task);
    tcase_add_test(flags, batch_loss_sum_scales_the_step);
    suite_add_tcase(s, flags);
    TCase *resume = tcase_create("resume");
    tcase_set_timeout(resume, 300);
    tcase_add_loop_test(resume, resume_is_exact, 0, 5);
    tcase_add_test(resume, semisup_net_in_checkpoint);
    tcase_add_loop_test(resume, nan_stops_every_task, 0, 3);
    tcase_add_test(resume, resume_merges_options_and_grows_the_log);
    tcase_add_test(resume, resume_finds_the_task);
    tcase_add_test(resume, resume_on_other_data_is_refused);
    tcase_add_test(resume, resume_on_other_kernels_is_said);
    tcase_add_test(resume, tau_min_above_tau0_is_warned);
    tcase_add_test(resume, threads_flag_everywhere);
    suite_add_tcase(s, resume);
    TCase *safe = tcase_create("safety");
    tcase_set_timeout(safe, 300);
    tcase_add_test(safe, finished_run_is_not_overwritten);
    tcase_add_test(safe, unwritable_out_fails_before_training);
    tcase_add_loop_test(safe, signal_saves_and_resumes_exactly, 0, 3);
    tcase_add_test(safe, second_sigint_ends_at_once);
    tcase_add_test(safe, kill_at_random_point_then_resume);
    tcase_add_test(safe, live_run_directory_is_refused);
    tcase_add_test(safe, stale_temporaries_are_removed);
    suite_add_tcase(s, safe);
    TCase *data = tcase_create("data");
    tcase_set_timeout(data, 600); /* 47 million draws twice; slow under ASan on a loaded machine */
    tcase_add_test(data, validation_split_has_no_overlap);
    tcase_add_test(data, fixed_binarization_is_the_same_in_every_run);
    suite_add_tcase(s, data);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
