/* test_scripts.c: end-to-end tests of what surrounds the program: the grid
 * runner (scripts/reproduce.sh through GNU parallel on this host, with its
 * job log, resume, retry of a failed job and the Slurm script it writes),
 * and `make install` / `make uninstall` with the gsvae(1) manual page, which
 * must document every flag that each command's --help lists.  Run from the
 * repository root, as `make test` does. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define OUT_LEN (1 << 20)
static char out[OUT_LEN], errout[OUT_LEN];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return run_capture(cmd, out, sizeof out, errout, sizeof errout);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Lines of a string: its newlines. */
static int count_text_lines(const char *text)
{
    int n = 0;
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    return n;
}

/* Lines of a file (0 when it cannot be read). */
static int count_lines(const char *path)
{
    size_t len;
    char *text = (char *)testutil_read_file(path, &len);
    int n = 0;
    for (size_t i = 0; text && i < len; i++)
        n += text[i] == '\n';
    free(text);
    return n;
}

/* Three tiny jobs of the grid: two VAE runs and an SBN run. */
#define ONLY "'^(vae-categorical-(gumbel|st-gumbel)|sbn-bernoulli-gumbel)-s1$'"

static int reproduce(const char *dir)
{
    return sh("GSVAE_BIN=%s GSVAE_DATA=%s sh scripts/reproduce.sh tiny --out %s --only " ONLY
              " -j 2",
              testutil_bin(), testutil_data_dir(), dir);
}

START_TEST(grid_runs_through_gnu_parallel_and_resumes)
{
    const char *dir = testutil_tmpdir();
    int rc = reproduce(dir);
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    /* jobs.txt lists the whole grid, so that a line number names the same
     * job whatever subset ran; --only runs its three, and the progress line
     * counts the whole grid. */
    const char *jobs = testutil_path(dir, "jobs.txt");
    int total = count_lines(jobs);
    char want[64], done3[64];
    snprintf(want, sizeof want, "%d jobs in", total);
    ck_assert_msg(testutil_contains(out, want) && testutil_contains(out, "runs 3 of them (0 done already)"),
                  "%s", out);
    ck_assert_msg(testutil_contains(out, "through GNU parallel"), "%s", out);
    snprintf(done3, sizeof done3, "3/%d jobs done", total);
    ck_assert_msg(testutil_contains(errout, done3), "%s", errout);
    ck_assert_msg(testutil_contains(errout, "elapsed"), "%s", errout);
    /* As many lines as the list written without --only. */
    const char *whole = testutil_tmpdir();
    ck_assert_int_eq(sh("GSVAE_BIN=%s sh scripts/reproduce.sh tiny --dry-run --out %s", testutil_bin(),
                        whole),
                     0);
    ck_assert_int_eq(count_lines(testutil_path(whole, "jobs.txt")), total);
    ck_assert(total > 3);
    const char *names[3] = {"sbn-bernoulli-gumbel-s1", "vae-categorical-gumbel-s1",
                            "vae-categorical-st-gumbel-s1"};
    char path[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/runs/%s/summary.json", dir, names[i]);
        ck_assert_msg(exists(path), "%s missing", path);
    }
    /* The selected jobs' line numbers, first, second and third. */
    ck_assert_int_eq(sh("sh scripts/run-job.sh %s --done", dir), 0);
    char sel_all[64], sel_rest[64];
    int first;
    ck_assert_msg(strlen(out) < sizeof sel_all && sscanf(out, "%d", &first) == 1, "%s", out);
    strcpy(sel_all, out);
    strcpy(sel_rest, strchr(sel_all, '\n') + 1);
    ck_assert_int_eq(count_text_lines(sel_all), 3);
    ck_assert_int_eq(sh("awk -v re=" ONLY " '{ n = $NF; sub(/.*\\//, \"\", n); if (n ~ re) print NR }' %s", jobs),
                     0);
    ck_assert_msg(!strcmp(out, sel_all), "%s against %s", out, sel_all);
    /* The run directory of the first. */
    ck_assert_int_eq(sh("sed -n '%ds/.*--out //p' %s", first, jobs), 0);
    char run1[1024];
    ck_assert(strlen(out) > 1 && strlen(out) < sizeof run1);
    strcpy(run1, out);
    run1[strlen(run1) - 1] = '\0';
    ck_assert_msg(testutil_contains(run1, names[0]), "%s", run1);
    /* GNU parallel's job log of the selection: a header and one row per
     * job, on this host; the whole grid's log is not started. */
    ck_assert(!exists(testutil_path(dir, "joblog")));
    const char *joblog = testutil_path(dir, "joblog-only");
    ck_assert_int_eq(count_lines(joblog), 4);
    size_t len;
    char *log = (char *)testutil_read_file(joblog, &len);
    ck_assert(log && testutil_contains(log, "Seq\tHost"));
    ck_assert(testutil_contains(log, "\t:\t"));
    free(log);
    ck_assert(exists(testutil_path(dir, "README.md")));
    /* The Slurm array over the same list. */
    char *slurm = (char *)testutil_read_file(testutil_path(dir, "slurm.sh"), &len);
    ck_assert(slurm != NULL);
    snprintf(want, sizeof want, "#SBATCH --array=1-%d\n", total);
    ck_assert_msg(testutil_contains(slurm, want), "%s", slurm);
    ck_assert(testutil_contains(slurm, "scripts/run-job.sh"));
    ck_assert(testutil_contains(slurm, "SLURM_ARRAY_TASK_ID"));
    free(slurm);

    /* A rerun starts nothing: every job is done. */
    rc = reproduce(dir);
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(out, "(3 done already)"), "%s", out);
    ck_assert_int_eq(count_lines(joblog), 4);

    /* A budget raised in the list after a job finished: the job is no
     * longer done, and running it continues it from its checkpoint. */
    rc = sh("sh scripts/run-job.sh %s --done", dir);
    ck_assert_msg(rc == 0 && !strcmp(out, sel_all), "%d: %s %s", rc, out, errout);
    rc = sh("awk 'NR == %d { for (i = 1; i < NF; i++) if ($i == \"--steps\") $(i + 1) *= 2 } "
            "{ print }' %s > %s.new && mv %s.new %s && sed -n '%ds/.* --steps \\([0-9]*\\).*/\\1/p' %s",
            first, jobs, jobs, jobs, jobs, first, jobs);
    ck_assert_msg(rc == 0, "%s", errout);
    long raised = atol(out);
    ck_assert_msg(raised > 0, "%s", out);
    rc = sh("sh scripts/run-job.sh %s --done", dir);
    ck_assert_msg(rc == 0 && !strcmp(out, sel_rest), "%d: %s", rc, out);
    rc = sh("GSVAE_BIN=%s sh scripts/run-job.sh %s %d > /dev/null && sed -n 's/.*\"steps_done\": "
            "\\([0-9]*\\).*/\\1/p' %s/summary.json",
            testutil_bin(), dir, first, run1);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(errout, done3), "%s", errout);
    ck_assert_msg(atol(out) == raised, "steps_done %s, want %ld", out, raised);

    /* A setting changed in the list after a job finished (a choice that
     * moved): the run is stale, neither done nor continued; running it
     * moves the old directory aside and runs the line afresh. */
    rc = sh("sed '%ds/ --out / --lr 0.001 --out /' %s > %s.new && mv %s.new %s", first, jobs, jobs,
            jobs, jobs);
    ck_assert_msg(rc == 0, "%s", errout);
    rc = sh("sh scripts/run-job.sh %s --done", dir);
    ck_assert_msg(rc == 0 && !strcmp(out, sel_rest), "%d: %s", rc, out);
    rc = sh("GSVAE_BIN=%s sh scripts/run-job.sh %s %d > /dev/null && sed -n 's/.*\"lr\": "
            "\\([0-9.e-]*\\).*/\\1/p' %s/summary.json && "
            "r=%s && ls -d $(dirname $r)/.stale/$(basename $r)-*",
            testutil_bin(), dir, first, run1, run1);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(errout, "stale: ") && testutil_contains(errout, "--lr: line 0.001"),
                  "%s", errout);
    ck_assert_msg(fabs(atof(out) - 0.001) < 1e-9, "lr %s", out);
    ck_assert_msg(testutil_contains(out, "/.stale/"), "%s", out);
    /* Aside where the tables' globs over RUN* do not reach it: RUN and
     * RUN.out alone match. */
    rc = sh("ls -d %s*", run1);
    ck_assert_msg(rc == 0 && count_text_lines(out) == 2, "%s", out);
    rc = sh("sh scripts/run-job.sh %s --done", dir);
    ck_assert_msg(rc == 0 && !strcmp(out, sel_all), "%d: %s", rc, out);

    /* An unfinished run without its checkpoint (stopped before its first,
     * or copied without it): nothing to continue, and gsvae refuses to
     * write over it; the job moves it aside and runs afresh. */
    rc = sh("r=%s && rm $r/model.ckpt && "
            "sed 's/\"interrupted\": false/\"interrupted\": true/' $r/summary.json > $r/s.new && "
            "mv $r/s.new $r/summary.json && grep -c '\"interrupted\": true' $r/summary.json",
            run1);
    ck_assert_msg(rc == 0 && atoi(out) == 1, "%s %s", out, errout);
    rc = sh("sh scripts/run-job.sh %s --done", dir);
    ck_assert_msg(rc == 0 && !strcmp(out, sel_rest), "%d: %s", rc, out);
    rc = sh("GSVAE_BIN=%s sh scripts/run-job.sh %s %d", testutil_bin(), dir, first);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, "lost: ") && testutil_contains(errout, "/.stale/") &&
                      testutil_contains(errout, done3),
                  "%s", errout);
    rc = sh("ls -d $(dirname %s)/.stale/* | wc -l", run1);
    ck_assert_msg(rc == 0 && atoi(out) == 4, "%s", out);

    /* A job that fails (a file stands where its directory goes) fails the
     * grid; the rerun retries it, and it alone.  The log keeps the failure:
     * its success row left with the summary, the failure and the retry are
     * added. */
    snprintf(path, sizeof path, "%s/runs/%s", dir, names[1]);
    ck_assert(sh("rm -r %s && : > %s", path, path) == 0);
    rc = reproduce(dir);
    ck_assert_msg(rc == 1, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(errout, "FAILED"), "%s", errout);
    ck_assert_msg(testutil_contains(errout, "1 job(s) failed"), "%s", errout);
    ck_assert_int_eq(count_lines(joblog), 4);
    ck_assert(unlink(path) == 0);
    rc = reproduce(dir);
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(errout, done3), "%s", errout);
    ck_assert_int_eq(count_lines(joblog), 5);
    snprintf(path, sizeof path, "%s/runs/%s/summary.json", dir, names[1]);
    ck_assert(exists(path));
    /* The same with the last job of the selection, whose missing summary
     * once ended the rerun before it started anything. */
    snprintf(path, sizeof path, "%s/runs/%s", dir, names[2]);
    ck_assert(sh("rm -r %s && : > %s", path, path) == 0);
    rc = reproduce(dir);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "1 job(s) failed"), "exit %d\n%s\n%s", rc,
                  out, errout);
    ck_assert(unlink(path) == 0);
    rc = reproduce(dir);
    ck_assert_msg(rc == 0 && testutil_contains(errout, done3), "exit %d\n%s", rc, errout);

    /* Bad arguments: one line, exit 2. */
    ck_assert_int_eq(sh("sh scripts/reproduce.sh tiny -j 0 --dry-run --out %s", dir), 2);
    ck_assert(testutil_contains(errout, "-j '0'"));
    ck_assert_int_eq(sh("sh scripts/reproduce.sh huge"), 2);
    ck_assert_int_eq(sh("GSVAE_BIN=%s sh scripts/reproduce.sh tiny --dry-run --out %s --only nomatch",
                        testutil_bin(), dir),
                     2);
    ck_assert(testutil_contains(errout, "no job matches"));
    ck_assert_int_eq(sh("sh scripts/run-job.sh %s 99", dir), 2);
    ck_assert(testutil_contains(errout, "has no line 99"));

    /* One reproduce.sh per directory: a second one, while the first runs,
     * stops with one line and leaves the job list alone; a lock left by a
     * process that is gone is taken over, and released at the end. */
    const char *lock = testutil_path(dir, ".reproduce.lock");
    rc = sh("mkdir %s && { sleep 30 & echo $! > %s/pid; } && cp %s %s.before && "
            "GSVAE_BIN=%s sh scripts/reproduce.sh tiny --dry-run --out %s --only sbn; s=$?; "
            "kill $(cat %s/pid); cmp %s %s.before || s=9; exit $s",
            lock, lock, jobs, jobs, testutil_bin(), dir, lock, jobs, jobs);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, errout);
    ck_assert_msg(testutil_contains(errout, "in use by another reproduce.sh (pid ") &&
                      count_text_lines(errout) == 1,
                  "%s", errout);
    rc = sh("GSVAE_BIN=%s sh scripts/reproduce.sh tiny --dry-run --out %s --only sbn", testutil_bin(),
            dir);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
    ck_assert(!exists(lock));
}
END_TEST

/* Every "--flag" that starts a line of `gsvae ARGS --help` appears in the
 * rendered manual page. */
static void page_documents_help(const char *page, const char *args)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s --help", testutil_bin(), args);
    static char help[OUT_LEN];
    ck_assert_int_eq(run_capture(cmd, help, sizeof help, NULL, 0), 0);
    int flags = 0;
    for (char *line = help; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (!strncmp(line, "  --", 4) && line[4] != ' ' && line[4] != '\0') {
            char flag[64];
            size_t n = strcspn(line + 2, " ");
            ck_assert(n < sizeof flag - 1);
            memcpy(flag, line + 2, n);
            flag[n] = ' ';
            flag[n + 1] = '\0';
            /* "--name " or "--name\n" in the page. */
            char *at = strstr(page, flag);
            flag[n] = '\n';
            ck_assert_msg(at || strstr(page, flag), "gsvae %s: %.*s not in the manual page", args,
                          (int)n, line + 2);
            flags++;
        }
        line = nl ? nl + 1 : NULL;
    }
    ck_assert_msg(flags > 0, "gsvae %s --help lists no flags", args);
}

/* Table 2's two steps (reproduce.sh semisup-paper, semisup-paper-final) on
 * tiny MLP runs of 2 steps and two values of alpha: the sweep, the final
 * list at each estimator's validation choice (seed 1 the sweep's own run),
 * table2.csv with every estimator over 3 seeds, and a rerun that starts
 * nothing. */
#define SEMISUP_TINY                                                                        \
    "SEMISUP_STEPS=2 SEMISUP_ALPHAS='0.1 0.8' SEMISUP_EXTRA='--net mlp --hidden 16 "         \
    "--latent 4 --unlabelled 2000 --validation 200 --batch 10 --labelled-batch 10 "          \
    "--eval-images 100 --eval-every 2'"

/* reproduce.sh MODE (semisup-paper or semisup-paper-final) on the tiny runs,
 * ENV (more assignments, "" for none) before it, into DIR/SUB. */
static int semisup_step(const char *env, const char *mode, const char *dir, const char *sub)
{
    return sh(SEMISUP_TINY " %s GSVAE_BIN=%s GSVAE_DATA=%s sh scripts/reproduce.sh %s --out %s/%s "
              "-j 2",
              env, testutil_bin(), testutil_data_dir(), mode, dir, sub);
}

START_TEST(semisup_table2_in_two_steps)
{
    const char *dir = testutil_tmpdir();
    int rc = semisup_step("", "semisup-paper", dir, "sweep");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(errout, "6/6 jobs done"), "%s", errout);
    /* The sweep ran whole: its wall time stays through a rerun that finds
     * every job done, and goes when a rerun runs a part of it. */
    const char *wall = testutil_path(dir, "sweep/wall_time.txt");
    ck_assert(exists(wall));
    rc = semisup_step("", "semisup-paper", dir, "sweep");
    ck_assert_msg(rc == 0 && testutil_contains(out, "(6 done already)") && exists(wall),
                  "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_int_eq(sh("rm %s/sweep/runs/gumbel-a0.8-s1/summary.json", dir), 0);
    rc = semisup_step("", "semisup-paper", dir, "sweep");
    ck_assert_msg(rc == 0 && testutil_contains(out, "(5 done already)"), "exit %d\n%s\n%s", rc,
                  out, errout);
    ck_assert(!exists(wall));
    rc = semisup_step("", "semisup-paper-final", dir, "final");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(out, "9 jobs in") && testutil_contains(out, "(3 done already)"),
                  "%s", out);
    size_t len;
    char *table = (char *)testutil_read_file(testutil_path(dir, "table2.csv"), &len);
    ck_assert(table != NULL);
    static const char header[] = "estimator,accuracy_mean,accuracy_sd,elbo_mean,elbo_sd,n,"
                                 "paper_accuracy,paper_elbo,alpha\n";
    ck_assert_msg(!strncmp(table, header, strlen(header)), "%s", table);
    const char *est[3] = {"\nexact,", "\ngumbel,", "\nst-gumbel,"};
    for (int i = 0; i < 3; i++) {
        const char *row = strstr(table, est[i]);
        ck_assert_msg(row != NULL, "%s", table);
        /* n = 3 seeds, then the paper's figures, then the alpha chosen. */
        const char *nl = strchr(row + 1, '\n');
        ck_assert(nl != NULL);
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(nl - row - 1), row + 1);
        ck_assert_msg(testutil_contains(line, ",3,9") &&
                          (testutil_contains(line, ",0.1") || testutil_contains(line, ",0.8")),
                      "%s", line);
    }
    free(table);
    ck_assert_int_eq(count_lines(testutil_path(dir, "table2-testpick.csv")), 4);
    ck_assert_int_eq(count_lines(testutil_path(dir, "alpha.csv")), 7);
    /* Resumable: a rerun starts nothing. */
    rc = semisup_step("", "semisup-paper-final", dir, "final");
    ck_assert_msg(rc == 0 && testutil_contains(out, "(9 done already)"), "exit %d\n%s\n%s", rc,
                  out, errout);
}
END_TEST

/* GNU parallel's exit status as reproduce.sh reads it, through a stand-in
 * `parallel` on PATH that runs nothing and exits with a chosen status: a
 * count of failed jobs, more than 100, or a stop by a signal (255, what a
 * TERM sent to parallel gives).  Each fails the grid with its own words and
 * leaves no wall_time.txt; status 0 writes it.  And the jobs' termination
 * sequence parallel is given. */
START_TEST(grid_reads_the_status_of_gnu_parallel)
{
    const char *dir = testutil_tmpdir();
    const char *grid = testutil_path(dir, "grid");
    int rc = sh("mkdir %s/bin && printf '%%s\n' '#!/bin/sh' "
                "'[ \"$1\" = --version ] && { echo \"GNU parallel (stand-in)\"; exit 0; }' "
                "'echo \"$*\" > \"$(dirname \"$0\")/args\"' 'cat > /dev/null' 'exit $STATUS' "
                "> %s/bin/parallel && chmod +x %s/bin/parallel",
                dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    static const struct {
        int status;
        const char *says;
    } cases[] = {{255, "GNU parallel stopped (exit 255: a signal, or an error of its own)"},
                 {3, "3 job(s) failed"},
                 {101, "more than 100 jobs failed"},
                 {0, NULL}};
    for (int i = 0; i < 4; i++) {
        rc = sh("PATH=%s/bin:$PATH STATUS=%d " SEMISUP_TINY " GSVAE_BIN=%s GSVAE_DATA=%s "
                "sh scripts/reproduce.sh semisup-paper --out %s -j 2",
                dir, cases[i].status, testutil_bin(), testutil_data_dir(), grid);
        const char *wall = testutil_path(grid, "wall_time.txt");
        if (cases[i].says) {
            ck_assert_msg(rc == 1, "status %d: exit %d\n%s", cases[i].status, rc, errout);
            ck_assert_msg(testutil_contains(errout, cases[i].says) && count_text_lines(errout) == 1,
                          "status %d: %s", cases[i].status, errout);
            ck_assert_msg(!testutil_contains(out, "jobs finished"), "%s", out);
            ck_assert(!exists(wall));
        } else {
            ck_assert_msg(rc == 0, "exit %d\n%s", rc, errout);
            ck_assert_msg(testutil_contains(out, "jobs finished in"), "%s", out);
            ck_assert(exists(wall));
        }
    }
    /* A TERM reaches a job once, with time to save its checkpoint: not
     * parallel's default TERM, 200 ms, TERM, 100 ms, TERM, 50 ms, KILL. */
    rc = sh("cat %s/bin/args", dir);
    ck_assert_msg(rc == 0 && testutil_contains(out, "--termseq TERM,600000,KILL,25"), "%s", out);
}
END_TEST

/* A sweep shorter than the finals (the budget the sweep of results/semisup
 * chose alpha on): the finals' seed 1 is a run of its own in final/, which
 * continues a copy of the sweep's run from its checkpoint and equals a
 * fresh run of its line digit for digit; the sweep's runs keep their
 * budget, and table2.csv takes seed 1 from final/. */
START_TEST(semisup_finals_longer_than_the_sweep)
{
    const char *dir = testutil_tmpdir();
    int rc = semisup_step("", "semisup-paper", dir, "sweep");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    rc = semisup_step("SEMISUP_STEPS=4", "semisup-paper-final", dir, "final");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(out, "9 jobs in") && testutil_contains(out, "(0 done already)"),
                  "%s", out);
    int copies = 0;
    for (const char *p = errout; (p = strstr(p, "continues the sweep's run (2 steps)")) != NULL; p++)
        copies++;
    ck_assert_msg(copies == 3, "%s", errout);
    rc = sh("ls -d %s/final/runs/*-s1 | wc -l; grep -h '\"steps_done\"' %s/sweep/runs/*/summary.json "
            "| sort -u; grep -h '\"steps_done\"' %s/final/runs/*/summary.json | sort -u",
            dir, dir, dir);
    ck_assert_msg(rc == 0 && !strcmp(out, "3\n  \"steps_done\": 2,\n  \"steps_done\": 4,\n"),
                  "%s", out);
    /* Seed 1 continued a copy of the sweep's run (the sweep's rows head its
     * log), and equals its line run afresh elsewhere: the same figures at
     * every step (the last column, the wall clock, aside). */
    rc = sh("for r in %s/final/runs/*-s1; do "
            "l=$(grep \" --out $r$\" %s/final/jobs.txt | sed \"s| --out .*| --out $r.fresh|\") && "
            "sh -c \"$l\" > /dev/null && "
            "head -n 3 %s/sweep/runs/$(basename $r)/log.csv > %s/sweep.csv && "
            "head -n 3 $r/log.csv | cmp - %s/sweep.csv && "
            "awk -F, -v OFS=, '{ NF--; print }' $r/log.csv > %s/a.csv && "
            "awk -F, -v OFS=, '{ NF--; print }' $r.fresh/log.csv > %s/b.csv && "
            "cmp %s/a.csv %s/b.csv && rm -r $r.fresh || exit 1; done",
            dir, dir, dir, dir, dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    size_t len;
    char *table = (char *)testutil_read_file(testutil_path(dir, "table2.csv"), &len);
    ck_assert(table != NULL);
    int rows = 0; /* every estimator over n = 3 seeds */
    for (const char *p = table; (p = strstr(p, ",3,9")) != NULL; p++)
        rows++;
    ck_assert_msg(rows == 3, "%s", table);
    free(table);
}
END_TEST

/* The finals of the estimators whose sweep has finished run first
 * (SEMISUP_ESTIMATORS): exact's sweep unfinished, the list holds the other
 * two's, and table2.csv gives exact n = 0 and no alpha; a seed whose final
 * run is missing is not replaced by the shorter sweep's run. */
START_TEST(semisup_finals_of_the_chosen_estimators_first)
{
    const char *dir = testutil_tmpdir();
    int rc = semisup_step("", "semisup-paper", dir, "sweep");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    rc = sh("s=%s/sweep/runs/exact-a0.8-s1/summary.json && "
            "sed 's/\"interrupted\": false/\"interrupted\": true/' $s > $s.new && mv $s.new $s",
            dir);
    ck_assert_msg(rc == 0, "%s", errout);
    rc = semisup_step("SEMISUP_STEPS=4 SEMISUP_ESTIMATORS='exact gumbel'", "semisup-paper-final",
                      dir, "final");
    ck_assert_msg(rc != 0 && testutil_contains(errout, "exact-a0.8-s1/summary.json: not finished"),
                  "exit %d\n%s\n%s", rc, out, errout);
    rc = semisup_step("SEMISUP_STEPS=4 SEMISUP_ESTIMATORS='gumbel st-gumbel'", "semisup-paper-final",
                      dir, "final");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_msg(testutil_contains(out, "6 jobs in") &&
                      testutil_contains(errout, "exact: its sweep has not finished"),
                  "%s\n%s", out, errout);
    size_t len;
    char *table = (char *)testutil_read_file(testutil_path(dir, "table2.csv"), &len);
    ck_assert(table != NULL);
    ck_assert_msg(testutil_contains(table, "\nexact,,,,,0,92.6,-106.8,\n"), "%s", table);
    int rows = 0;
    for (const char *p = table; (p = strstr(p, ",3,9")) != NULL; p++)
        rows++;
    ck_assert_msg(rows == 2, "%s", table);
    free(table);
    char *alpha = (char *)testutil_read_file(testutil_path(dir, "alpha.csv"), &len);
    ck_assert_msg(alpha && testutil_contains(alpha, "\nexact,0.8,,,,\n") &&
                      testutil_contains(alpha, "\nexact,0.1,0."),
                  "%s", alpha);
    free(alpha);
    /* Without its final seed-1 run, gumbel counts 2 seeds: the sweep's run
     * of 2 steps does not stand in for a final of 4. */
    rc = sh("rm -r %s/final/runs/gumbel-a*-s1 && SEMISUP_STEPS=4 SEMISUP_ALPHAS='0.1 0.8' "
            "sh scripts/semisup-table2.sh %s "
            "2> /dev/null && grep '^gumbel,' %s/table2.csv",
            dir, dir, dir);
    ck_assert_msg(rc == 0 && testutil_contains(out, ",2,92.4,"), "exit %d\n%s\n%s", rc, out, errout);
    rc = sh("SEMISUP_ESTIMATORS='exact mcmc' sh scripts/semisup-jobs.sh sweep %s/x", dir);
    ck_assert_msg(rc == 2 && testutil_contains(errout, "SEMISUP_ESTIMATORS: 'mcmc'") &&
                      count_text_lines(errout) == 1,
                  "exit %d: %s", rc, errout);
}
END_TEST

/* scripts/semisup-genacc.sh: a run trained in stages, each checkpoint scored
 * by gsvae eval, gives the same last row as the run trained in one go (the
 * stages are --resume of one run), a rerun adds nothing, and bad stage sizes
 * are refused with the reason. */
#define GENACC_FLAGS "--net conv --labels 100 --unlabelled 200 --validation 100 --eval-images 50 " \
                     "--quiet --threads 1 --seed 3"

static int genacc(const char *dir, const char *steps, const char *every)
{
    return sh("GSVAE_BIN=%s GSVAE_DATA=%s GENACC_IMAGES=100 sh scripts/semisup-genacc.sh %s %s %s "
              GENACC_FLAGS,
              testutil_bin(), testutil_data_dir(), dir, steps, every);
}

START_TEST(semisup_genacc_stages_are_one_run)
{
    const char *dir = testutil_tmpdir();
    char staged[1024], whole[1024];
    snprintf(staged, sizeof staged, "%s", testutil_path(dir, "staged"));
    snprintf(whole, sizeof whole, "%s", testutil_path(dir, "whole"));
    int rc = genacc(staged, "4", "2");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    rc = genacc(whole, "4", "4");
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    char csv[2][1100];
    snprintf(csv[0], sizeof csv[0], "%s-genacc.csv", staged);
    snprintf(csv[1], sizeof csv[1], "%s-genacc.csv", whole);
    ck_assert_int_eq(count_lines(csv[0]), 3);
    ck_assert_int_eq(count_lines(csv[1]), 2);
    size_t len[2];
    char *text[2] = {(char *)testutil_read_file(csv[0], &len[0]),
                     (char *)testutil_read_file(csv[1], &len[1])};
    ck_assert(text[0] && text[1]);
    static const char head[] = "step,accuracy,class_nll,neg_elbo,gen_accuracy,agreement\n2,";
    ck_assert_msg(!strncmp(text[0], head, strlen(head)), "%s", text[0]);
    const char *last = strstr(text[0], "\n4,");
    ck_assert_msg(last && strstr(text[1], last), "staged:\n%s\nwhole:\n%s", text[0], text[1]);
    free(text[1]);
    rc = genacc(staged, "4", "2"); /* done already: nothing trained, nothing added */
    ck_assert_msg(rc == 0 && !testutil_contains(out, "step 2:") && !testutil_contains(out, "step 4:"),
                  "exit %d\n%s\n%s", rc, out, errout);
    ck_assert_int_eq(count_lines(csv[0]), 3);
    /* Stopped after a stage's training, before its scoring: the rerun scores
     * it (the run is already at that step, nothing is trained) and writes the
     * same row. */
    ck_assert_int_eq(sh("sed -i '$d' %s", csv[0]), 0);
    ck_assert_int_eq(count_lines(csv[0]), 2);
    rc = genacc(staged, "4", "2");
    ck_assert_msg(rc == 0 && testutil_contains(out, "step 4:") && !testutil_contains(out, "step 2:"),
                  "exit %d\n%s\n%s", rc, out, errout);
    size_t again_len;
    char *again = (char *)testutil_read_file(csv[0], &again_len);
    ck_assert_msg(again && !strcmp(again, text[0]), "before:\n%s\nafter:\n%s", text[0], again);
    free(again);
    free(text[0]);
    /* A score gsvae eval gives as null (not finite: a diverged run) is an
     * error, not a row of zeros (awk reads "null" as 0). */
    const char *wrap = testutil_path(dir, "nan-eval.sh");
    FILE *w = fopen(wrap, "w");
    ck_assert(w);
    fprintf(w, "#!/bin/sh\nif [ \"$1\" = eval ]; then\n  %s \"$@\" | "
               "sed 's/\"test_neg_elbo\": [^,]*/\"test_neg_elbo\": null/'\n"
               "else\n  exec %s \"$@\"\nfi\n",
            testutil_bin(), testutil_bin());
    fclose(w);
    rc = sh("chmod +x %s && GSVAE_BIN=%s GSVAE_DATA=%s GENACC_IMAGES=100 "
            "sh scripts/semisup-genacc.sh %s 6 2 " GENACC_FLAGS,
            wrap, wrap, testutil_data_dir(), staged);
    ck_assert_msg(rc == 1 && testutil_contains(errout, "gave no test_neg_elbo") &&
                      testutil_contains(errout, "\"test_neg_elbo\": null"),
                  "exit %d\n%s", rc, errout);
    ck_assert_int_eq(count_lines(csv[0]), 3);
    rc = genacc(whole, "4", "8");
    ck_assert_msg(rc == 2 && testutil_contains(errout, "EVERY (8) <= STEPS (4)"), "exit %d\n%s", rc,
                  errout);
    rc = genacc(whole, "4", "two");
    ck_assert_msg(rc == 2 && testutil_contains(errout, "EVERY 'two'"), "exit %d\n%s", rc, errout);
    /* Its figure (scripts/plot/genacc.sh): a CSV of another kind is refused. */
    rc = sh("sh scripts/plot/genacc.sh %s/bad.png %s:gumbel %s/staged/log.csv:exact", dir, csv[0],
            dir);
    ck_assert_msg(rc != 0 && testutil_contains(errout, "log.csv: not a semisup-genacc.sh CSV") &&
                      count_text_lines(errout) == 1,
                  "exit %d\n%s", rc, errout);
    ck_assert(!exists(testutil_path(dir, "bad.png")));
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return;
    rc = sh("sh scripts/plot/genacc.sh %s/fig.png %s:gumbel %s:exact", dir, csv[0], csv[1]);
    ck_assert_msg(rc == 0, "exit %d\n%s", rc, errout);
    size_t plen;
    unsigned char *png = testutil_read_file(testutil_path(dir, "fig.png"), &plen);
    ck_assert_msg(png && plen > 8 && !memcmp(png, "\x89PNG", 4), "no PNG");
    free(png);
    ck_assert(!exists(testutil_path(dir, "fig.png.tmp")));
}
END_TEST

/* scripts/figure5b.sh draws a finished run of any estimator and names the
 * PNG after the run's estimator and steps, so that a Table 2 final's grid is
 * not labelled as another estimator's. */
START_TEST(figure5b_names_the_run_it_draws)
{
    const char *dir = testutil_tmpdir();
    char run[1024];
    snprintf(run, sizeof run, "%s", testutil_path(dir, "exact"));
    int rc = sh("%s train --task semisup --net conv --estimator exact " GENACC_FLAGS
                " --steps 2 --eval-every 2 --data %s --out %s",
                testutil_bin(), testutil_data_dir(), run);
    ck_assert_msg(rc == 0, "exit %d\n%s", rc, errout);
    rc = sh("GSVAE_BIN=%s GSVAE_DATA=%s sh scripts/figure5b.sh --steps 2 --runs %s --out %s",
            testutil_bin(), testutil_data_dir(), run, dir);
    ck_assert_msg(rc == 0, "exit %d\n%s\n%s", rc, out, errout);
    size_t plen;
    const char *name = "figure5b-conv-exact-2steps.png";
    unsigned char *png = testutil_read_file(testutil_path(dir, name), &plen);
    ck_assert_msg(png && plen > 8 && !memcmp(png, "\x89PNG", 4), "no %s: %s", name, out);
    free(png);
    ck_assert(!exists(testutil_path(dir, "figure5b-conv-gumbel-2steps.png")));
}
END_TEST

START_TEST(make_install_with_manual_page)
{
    const char *prefix = testutil_tmpdir();
    int rc = sh("MAKEFLAGS= MAKELEVEL= make -s install PREFIX=%s", prefix);
    ck_assert_msg(rc == 0, "make install: exit %d\n%s\n%s", rc, out, errout);
    const char *bin = testutil_path(prefix, "bin/gsvae");
    const char *man = testutil_path(prefix, "share/man/man1/gsvae.1");
    ck_assert(access(bin, X_OK) == 0);
    ck_assert(exists(man));
    rc = sh("%s --help", bin);
    ck_assert_int_eq(rc, 0);
    ck_assert(testutil_contains(out, "gumbel-demo"));

    /* The page renders, without a warning from groff. */
    rc = sh("groff -man -ww -z %s", man);
    ck_assert_msg(rc == 0 && errout[0] == '\0', "groff: exit %d: %s", rc, errout);
    rc = sh("MANWIDTH=1000 LC_ALL=C man -l %s", man);
    ck_assert_msg(rc == 0, "man -l: exit %d: %s", rc, errout);
    static char page[OUT_LEN];
    strcpy(page, out);
    ck_assert(testutil_contains(page, "GSVAE(1)"));
    ck_assert(testutil_contains(page, "EXIT STATUS"));
    /* Every command, and every flag each --help lists. */
    const char *cmds[] = {"train", "train --task sbn", "train --task semisup", "eval", "sample",
                          "recon", "gradvar", "bench", "gumbel-demo"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char title[64];
        snprintf(title, sizeof title, "gsvae %s\n", cmds[i]);
        ck_assert_msg(testutil_contains(page, title), "no section %s", title);
        page_documents_help(page, cmds[i]);
    }
    /* The defaults are those of the binary: the page and --help agree. */
    ck_assert(testutil_contains(page, "(default 50000)"));
    ck_assert(testutil_contains(page, "(default 0,0.1,0.5,1,10)"));

    rc = sh("MAKEFLAGS= MAKELEVEL= make -s uninstall PREFIX=%s", prefix);
    ck_assert_msg(rc == 0, "make uninstall: exit %d: %s", rc, errout);
    ck_assert(!exists(bin));
    ck_assert(!exists(man));
}
END_TEST

/* The protocol's selection (scripts/protocol-select.sh) on a sweep of
 * three tiny runs: each VAE run is scored by the importance-weighted bound
 * on its validation split, computed from its checkpoint and kept in
 * RUN/valid-iw.txt (a second selection reads it back, without the
 * program); the lower one is chosen; the SBN cell by its valid_nll; the
 * final job list holds three seeds of each chosen setting. */
START_TEST(protocol_selection_scores_the_validation_bound)
{
    const char *dir = testutil_tmpdir(), *data = testutil_data_dir();
    const char *common = "--latent-type bernoulli --latent 8 --hidden none --prior learned --binarize fixed "
                         "--validation 300 --optimizer momentum --momentum 0.9 --eval-every 0 "
                         "--iw-samples 0 --quiet --threads 1 --anneal-every 500";
    /* The first run scores itself as it ends (--valid-iw-samples, as the
     * sweep's lines ask); the second, as older runs, leaves it to the
     * selection. */
    const char *lrs[] = {"3e-3", "1e-5"};
    for (int i = 0; i < 2; i++) {
        int rc = sh("%s train --data %s %s --estimator gumbel --steps 60 --lr %s "
                    "--anneal-rate 1e-4 %s --out %s/runs/vae-bernoulli-gumbel-lr%s-N500-r1e-4",
                    testutil_bin(), data, common, lrs[i], i == 0 ? "--valid-iw-samples 5" : "",
                    dir, lrs[i]);
        ck_assert_msg(rc == 0, "%s", errout);
    }
    /* Its own figure is gsvae eval's from its checkpoint. */
    char self_scored[64];
    int rc0 = sh("%s eval --ckpt %s/runs/vae-bernoulli-gumbel-lr3e-3-N500-r1e-4/model.ckpt "
                 "--data %s --set valid --images 1000000 --iw-samples 5 --threads 1",
                 testutil_bin(), dir, data);
    const char *ev = strstr(out, "valid -log p(x) ~ ");
    ck_assert_msg(rc0 == 0 && ev, "%s %s", out, errout);
    snprintf(self_scored, sizeof self_scored, "\"valid_neg_log_px_iw\": %.3f,",
             atof(ev + strlen("valid -log p(x) ~ ")));
    {
        size_t n;
        char *sum = (char *)testutil_read_file(
            testutil_path(dir, "runs/vae-bernoulli-gumbel-lr3e-3-N500-r1e-4/summary.json"), &n);
        ck_assert(sum != NULL);
        ck_assert_msg(testutil_contains(sum, self_scored) &&
                          testutil_contains(sum, "\"valid_iw_samples\": 5,"),
                      "want %s in\n%s", self_scored, sum);
        free(sum);
    }
    int rc = sh("%s train --task sbn --latent-type bernoulli --data %s --binarize fixed "
                "--validation 300 --steps 20 --eval-every 0 --eval-samples 2 --test-samples 0 "
                "--quiet --threads 1 --lr 3e-3 --estimator st --out %s/runs/sbn-bernoulli-st-lr3e-3",
                testutil_bin(), data, dir);
    ck_assert_msg(rc == 0, "%s", errout);

    rc = sh("GSVAE_BIN=%s GSVAE_DATA=%s PROTOCOL_SELECT_IW=5 sh scripts/protocol-select.sh %s "
            "> %s/chosen.csv",
            testutil_bin(), data, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    size_t len;
    char *chosen = (char *)testutil_read_file(testutil_path(dir, "chosen.csv"), &len);
    ck_assert(chosen != NULL);
    ck_assert_msg(testutil_contains(chosen, "row,estimator,lr,anneal_N,anneal_r,valid,n_settings,"
                                            "run\n"),
                  "%s", chosen);
    ck_assert_msg(testutil_contains(chosen, "sbn-bernoulli,st,0.003,-,-,"), "%s", chosen);
    /* Each VAE run's bound: the first's own, the second's from its cache
     * file (the first has none); the lower is chosen. */
    double bound[2];
    bound[0] = atof(strchr(self_scored, ':') + 1);
    ck_assert(!exists(testutil_path(dir, "runs/vae-bernoulli-gumbel-lr3e-3-N500-r1e-4/valid-iw.txt")));
    {
        char path[512];
        snprintf(path, sizeof path, "%s/runs/vae-bernoulli-gumbel-lr%s-N500-r1e-4/valid-iw.txt",
                 dir, lrs[1]);
        char *txt = (char *)testutil_read_file(path, &len);
        ck_assert_msg(txt != NULL, "no %s", path);
        const char *v = strstr(txt, "valid -log p(x) ~ ");
        ck_assert_msg(v && testutil_contains(txt, "(5 importance samples)") &&
                          testutil_contains(txt, "on 300 images"),
                      "%s", txt);
        bound[1] = atof(v + strlen("valid -log p(x) ~ "));
        free(txt);
    }
    ck_assert_msg(bound[0] != bound[1], "%f %f", bound[0], bound[1]);
    int best = bound[0] < bound[1] ? 0 : 1;
    char want[128];
    snprintf(want, sizeof want, "vae-bernoulli,gumbel,%g,500,0.0001,", atof(lrs[best]));
    ck_assert_msg(testutil_contains(chosen, want), "want %s in\n%s", want, chosen);
    ck_assert(testutil_contains(chosen, ",2,vae-bernoulli-gumbel-lr"));
    free(chosen);

    /* Read back from the summary and the cache: no program needed, and no
     * checkpoint (a fresh clone has none). */
    rc = sh("rm %s/runs/*/model.ckpt && GSVAE_BIN=/nonexistent GSVAE_DATA=%s PROTOCOL_SELECT_IW=5 sh "
            "scripts/protocol-select.sh %s > %s/again.csv && cmp %s/chosen.csv %s/again.csv",
            dir, data, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);

    /* A choice made on part of the grid has no final job unless asked. */
    rc = sh("GSVAE_BIN=gsvae sh scripts/protocol-jobs.sh final %s/final %s/chosen.csv", dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(out[0] == '\0', "%s", out);
    ck_assert_msg(testutil_contains(errout, "sbn-bernoulli st: chosen among 1 of the 6 settings"),
                  "%s", errout);
    rc = sh("GSVAE_BIN=gsvae PROTOCOL_PARTIAL=1 sh scripts/protocol-jobs.sh final %s/final "
            "%s/chosen.csv",
            dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    int lines = count_text_lines(out);
    ck_assert_int_eq(lines, 6);
    ck_assert(testutil_contains(out, "--estimator gumbel"));
    ck_assert(testutil_contains(out, "--iw-samples 1000"));
    ck_assert(testutil_contains(out, "--seed 3"));
    /* Each row's final budget (protocol-lib.sh's final_steps): 50,000 steps
     * for the SBN, 150,000 for the VAE, each settable. */
    ck_assert_msg(testutil_contains(out, "--estimator st ") &&
                      testutil_contains(out, "--steps 50000 --eval-every 5000 --eval-samples 20"),
                  "%s", out);
    ck_assert_msg(testutil_contains(out, "--steps 150000 --eval-every 5000 --iw-samples 1000"),
                  "%s", out);
    rc = sh("GSVAE_BIN=gsvae PROTOCOL_PARTIAL=1 PROTOCOL_VAE_FINAL_STEPS=50000 "
            "PROTOCOL_SBN_FINAL_STEPS=30000 sh scripts/protocol-jobs.sh final %s/final "
            "%s/chosen.csv",
            dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "--steps 50000 --eval-every 5000 --iw-samples 1000") &&
                      testutil_contains(out, "--steps 30000 --eval-every 5000 --eval-samples 20"),
                  "%s", out);
}
END_TEST

/* The table (scripts/protocol-table.sh) counts a seed only when it ran the
 * row's final budget: a run still at a smaller one (being continued to a
 * raised budget) is left out, so a cell never mixes budgets; the runs may
 * lie in another directory (PROTOCOL_RUNS). */
START_TEST(protocol_table_counts_full_budget_runs)
{
    const char *dir = testutil_tmpdir();
    static const struct { const char *run; long steps; double iw; } runs[] = {
        {"vae-bernoulli-gumbel-s1", 150000, 100.0},
        {"vae-bernoulli-gumbel-s2", 150000, 102.0},
        {"vae-bernoulli-gumbel-s3", 50000, 200.0},
        {"vae-bernoulli-sf-s1", 50000, 300.0},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        int rc = sh("mkdir -p %s/final/runs/%s && printf '{\n  \"steps_done\": %ld,\n  "
                    "\"interrupted\": false,\n  \"test_neg_log_px_iw\": %f\n}\n' "
                    "> %s/final/runs/%s/summary.json",
                    dir, runs[i].run, runs[i].steps, runs[i].iw, dir, runs[i].run);
        ck_assert_msg(rc == 0, "%s", errout);
    }
    int rc = sh("printf 'row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run\n"
                "vae-bernoulli,gumbel,0.0003,1000,0.0001,110,24,x\n' > %s/chosen.csv && "
                "sh scripts/protocol-table.sh %s && "
                "cat %s/table1.csv",
                dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,gumbel,101.00,1.41,2,105.0,0.0003,1000,"
                                         "0.0001\n"),
                  "%s", out);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,sf,,,0,"), "%s", out);
    rc = sh("PROTOCOL_VAE_FINAL_STEPS=50000 sh scripts/protocol-table.sh %s && cat %s/table1.csv",
            dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,sf,300.00,,1,"), "%s", out);
    /* The runs of another directory. */
    rc = sh("mv %s/final %s/other && PROTOCOL_VAE_FINAL_STEPS=50000 PROTOCOL_RUNS=%s/other/runs "
            "sh scripts/protocol-table.sh %s && cat %s/table1.csv",
            dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,sf,300.00,,1,"), "%s", out);
    /* The estimators beyond the paper stand beside the ARM paper's figures,
     * where it has one, and the Markdown table says whose they are. */
    rc = sh("mkdir -p %s/beyond/final/runs/vae-bernoulli-arm-s1 && "
            "printf '{\n  \"steps_done\": 50000,\n  \"interrupted\": false,\n  "
            "\"test_neg_log_px_iw\": 108.5\n}\n' "
            "> %s/beyond/final/runs/vae-bernoulli-arm-s1/summary.json && "
            "printf 'row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run\n"
            "vae-bernoulli,arm,0.0003,-,-,110,6,x\n' > %s/beyond/chosen.csv && "
            "PROTOCOL_READING=beyond PROTOCOL_VAE_FINAL_STEPS=50000 sh scripts/protocol-table.sh "
            "%s/beyond && cat %s/beyond/table1.csv %s/beyond/table1.md",
            dir, dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,arm,108.50,,1,107.2,0.0003,-,-\n"), "%s",
                  out);
    ck_assert_msg(testutil_contains(out, "vae-bernoulli,rebar,,,0,107.7,"), "%s", out);
    ck_assert_msg(testutil_contains(out, "vae-categorical,rebar,,,0,,"), "%s", out);
    ck_assert_msg(testutil_contains(out, "| vae-bernoulli (ARM paper) | 107.2 |"), "%s", out);
}
END_TEST

/* The sweep's grid per cell (protocol-lib.sh): 6 learning rates, times the
 * 4 annealing settings N x r for the VAE's temperature estimators and for
 * annealed-ST in every row; the SBN's Gumbel-Softmax keeps tau = 1.  And
 * the grid of PROTOCOL_READING=beyond. */
START_TEST(protocol_sweep_grid_per_cell)
{
    static const struct { const char *cell; int n; } cells[] = {
        {"sbn-bernoulli-sf-lr", 6},          {"sbn-bernoulli-gumbel-lr", 6},
        {"sbn-categorical-annealed-st-lr", 24}, {"vae-bernoulli-annealed-st-lr", 24},
        {"vae-categorical-gumbel-lr", 24},   {"vae-categorical-st-gumbel-lr", 24},
        {"vae-categorical-muprop-lr", 6},
    };
    int rc = sh("GSVAE_BIN=gsvae sh scripts/protocol-jobs.sh sweep /tmp/sweep");
    ck_assert_msg(rc == 0, "%s", errout);
    int lines = count_text_lines(out);
    /* 4 rows x 7 estimators x 6 rates; 8 of the 28 cells times 4. */
    ck_assert_int_eq(lines, 28 * 6 + 8 * 6 * 3);
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
        int n = 0;
        char want[96];
        snprintf(want, sizeof want, "/runs/%s", cells[i].cell);
        for (const char *p = out; (p = strstr(p, want)) != NULL; p++)
            n++;
        ck_assert_msg(n == cells[i].n, "%s: %d settings", cells[i].cell, n);
    }
    ck_assert(testutil_contains(out, "sbn-categorical-annealed-st-lr1e-3-N1000-r1e-5\n"));
    /* A VAE run scores itself on validation as the selection does. */
    ck_assert(testutil_contains(out, "--iw-samples 0 --valid-iw-samples 100 "));

    /* The estimators after the paper on its linear VAE: ARM and DisARM on
     * the Bernoulli row only, VIMCO on its 5-sample bound, Gumbel-Softmax
     * on the same bound (with the annealing grid) and with a learned
     * temperature (without). */
    rc = sh("PROTOCOL_READING=beyond GSVAE_BIN=gsvae sh scripts/protocol-jobs.sh sweep /tmp/sweep");
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_int_eq(count_text_lines(out), (5 + 3) * 6 + 2 * (24 + 6));
    ck_assert_msg(testutil_contains(out, "--estimator gumbel --samples 5 --lr 3e-4 ") &&
                      testutil_contains(out, "/runs/vae-categorical-gumbel-k5-lr3e-4-N500-r1e-4\n"),
                  "%s", out);
    ck_assert_msg(testutil_contains(out, "--estimator gumbel --tau learned --lr 1e-3 ") &&
                      testutil_contains(out, "/runs/vae-bernoulli-gumbel-taulearned-lr1e-3\n"),
                  "%s", out);
    ck_assert(!testutil_contains(out, "vae-categorical-arm") && !testutil_contains(out, "sbn-"));
    ck_assert(testutil_contains(out, "--hidden none --prior learned"));
    ck_assert_msg(testutil_contains(out, "--estimator vimco --samples 5 --lr 1e-5 ") &&
                      testutil_contains(out, "/runs/vae-categorical-vimco-lr1e-5\n"),
                  "%s", out);
}
END_TEST

/* The gradient-variance figure (scripts/plot/gradvar.sh) from gradvar's CSV:
 * a PNG where gnuplot is there; a file that is not gradvar's CSV, or more
 * panels than the figure holds, a one-line error naming it and no PNG. */
START_TEST(gradvar_figure_from_its_csv)
{
    const char *dir = "/tmp/gsvae-test-gradvar-figure";
    ck_assert_int_eq(sh("rm -rf %s && mkdir -p %s", dir, dir), 0);
    int rc = sh("%s gradvar --latent-type bernoulli --latent 3 --hidden none --samples 20 "
                "--warmup 5 --batch 10 --estimators gumbel,sf,exact,vimco --threads 1 --data %s "
                "--csv > %s/tiny.csv",
                testutil_bin(), testutil_data_dir(), dir);
    ck_assert_msg(rc == 0, "%s", errout);
    ck_assert_int_eq(sh("printf 'step,loss\n1,2\n' > %s/other.csv", dir), 0);
    rc = sh("sh scripts/plot/gradvar.sh %s/bad.png T %s/tiny.csv:tiny %s/other.csv:other", dir,
            dir, dir);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(testutil_contains(errout, "other.csv: not a gsvae gradvar --csv output") &&
                      count_text_lines(errout) == 1,
                  "%s", errout);
    ck_assert(!exists("/tmp/gsvae-test-gradvar-figure/bad.png"));
    rc = sh("sh scripts/plot/gradvar.sh %s/bad.png T %s/tiny.csv %s/tiny.csv %s/tiny.csv "
            "%s/tiny.csv %s/tiny.csv",
            dir, dir, dir, dir, dir, dir);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(testutil_contains(errout, "at most 4 CSV files"), "%s", errout);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        return;
    rc = sh("sh scripts/plot/gradvar.sh %s/fig.png 'a title' %s/tiny.csv:'3 units'", dir, dir);
    ck_assert_msg(rc == 0, "%s", errout);
    unsigned char magic[8] = {0};
    FILE *f = fopen("/tmp/gsvae-test-gradvar-figure/fig.png", "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fread(magic, 1, 8, f), 8);
    fclose(f);
    ck_assert(memcmp(magic, "\x89PNG", 4) == 0);
    ck_assert_int_eq(sh("ls -a %s | grep -c tmp || true", dir), 0);
    ck_assert_msg(strcmp(out, "0\n") == 0, "scratch left: %s", out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scripts");
    TCase *tc = tcase_create("scripts");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, grid_runs_through_gnu_parallel_and_resumes);
    tcase_add_test(tc, grid_reads_the_status_of_gnu_parallel);
    tcase_add_test(tc, semisup_table2_in_two_steps);
    tcase_add_test(tc, semisup_finals_longer_than_the_sweep);
    tcase_add_test(tc, semisup_finals_of_the_chosen_estimators_first);
    tcase_add_test(tc, semisup_genacc_stages_are_one_run);
    tcase_add_test(tc, figure5b_names_the_run_it_draws);
    tcase_add_test(tc, make_install_with_manual_page);
    tcase_add_test(tc, protocol_selection_scores_the_validation_bound);
    tcase_add_test(tc, protocol_sweep_grid_per_cell);
    tcase_add_test(tc, protocol_table_counts_full_budget_runs);
    tcase_add_test(tc, gradvar_figure_from_its_csv);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
