/* test_gumbel_demo.c: `gsvae gumbel-demo` through the real binary: the CSV
 * it writes (the expected value of a Gumbel-Softmax sample goes from the
 * class probabilities at tau -> 0 towards uniform as tau grows; samples lie
 * on the simplex, one-hot at tau 0, with the same winner at every tau),
 * repeatability, --out, and a one-line error and exit status 2 for every
 * bad flag. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define OUT_LEN (1 << 20)
static char out[OUT_LEN], errout[65536];

#define gsvae(...) testutil_run_gsvae(out, sizeof out, errout, sizeof errout, __VA_ARGS__)

#define MAX_ROWS 4096
typedef struct {
    char kind[16];
    double tau;
    int sample, cls;
    double value;
} csv_row;

/* The rows of a gumbel-demo CSV (after its header); returns their count. */
static int parse_csv(const char *text, csv_row *rows, int max)
{
    const char *header = "kind,tau,sample,class,value\n";
    ck_assert_msg(!strncmp(text, header, strlen(header)), "header: %.60s", text);
    int n = 0;
    for (const char *line = text + strlen(header); *line && n < max;) {
        csv_row *r = &rows[n];
        char tau[32] = "", sample[32] = "";
        /* Split by hand: tau and sample may be empty ('probs', 'mean'). */
        const char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL,
                   *c3 = c2 ? strchr(c2 + 1, ',') : NULL;
        ck_assert_msg(c1 && c2 && c3, "bad row: %.60s", line);
        ck_assert((size_t)(c1 - line) < sizeof r->kind);
        memcpy(r->kind, line, (size_t)(c1 - line));
        r->kind[c1 - line] = '\0';
        memcpy(tau, c1 + 1, (size_t)(c2 - c1 - 1));
        memcpy(sample, c2 + 1, (size_t)(c3 - c2 - 1));
        r->tau = *tau ? atof(tau) : NAN;
        r->sample = *sample ? atoi(sample) : 0;
        ck_assert_msg(sscanf(c3 + 1, "%d,%lf", &r->cls, &r->value) == 2, "row %.60s",
                      line);
        n++;
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    return n;
}

/* value of (kind, tau, sample, class); NAN when absent. */
static double cell(const csv_row *rows, int n, const char *kind, double tau, int sample, int cls)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].kind, kind) && rows[i].cls == cls && rows[i].sample == sample &&
            (isnan(tau) ? isnan(rows[i].tau) : fabs(rows[i].tau - tau) < 1e-9))
            return rows[i].value;
    return NAN;
}

static csv_row rows[MAX_ROWS];

START_TEST(means_go_from_the_probabilities_to_uniform)
{
    int rc = gsvae("gumbel-demo --probs 1,3,0.5,4,1.5 --tau 0,0.1,1,10,100 --samples 40000 "
                   "--rows 3 --seed 7");
    ck_assert_msg(rc == 0, "exit %d: %s", rc, errout);
    int n = parse_csv(out, rows, MAX_ROWS);
    /* 5 probs + 5 taus x (3 samples + 1 mean) x 5 classes. */
    ck_assert_int_eq(n, 5 + 5 * 4 * 5);
    const double p[5] = {0.1, 0.3, 0.05, 0.4, 0.15};
    const double taus[5] = {0, 0.1, 1, 10, 100};
    for (int k = 0; k < 5; k++)
        ck_assert_double_eq_tol(cell(rows, n, "probs", NAN, 0, k + 1), p[k], 1e-6);
    for (int t = 0; t < 5; t++) {
        double sum = 0.0;
        for (int k = 0; k < 5; k++)
            sum += cell(rows, n, "mean", taus[t], 0, k + 1);
        ck_assert_double_eq_tol(sum, 1.0, 1e-4);
    }
    /* tau 0 is the Gumbel-Max sample: its class frequencies are p, within
     * four standard errors of 40,000 draws (at most 0.01). */
    for (int k = 0; k < 5; k++)
        ck_assert_double_eq_tol(cell(rows, n, "mean", 0, 0, k + 1), p[k], 0.01);
    /* As tau grows the mean moves towards uniform, 0.2 per class: at
     * tau = 100 every class is within 0.01 of it. */
    double prev_dist = INFINITY;
    for (int t = 1; t < 5; t++) {
        double dist = 0.0;
        for (int k = 0; k < 5; k++)
            dist += fabs(cell(rows, n, "mean", taus[t], 0, k + 1) - 0.2);
        ck_assert_msg(dist < prev_dist, "tau %g: distance to uniform %g, before %g", taus[t],
                      dist, prev_dist);
        prev_dist = dist;
    }
    for (int k = 0; k < 5; k++)
        ck_assert_double_eq_tol(cell(rows, n, "mean", 100, 0, k + 1), 0.2, 0.01);
    /* Samples: on the simplex, one-hot at tau 0, and sample j has the same
     * largest class at every tau (the same noise at every tau). */
    for (int j = 1; j <= 3; j++) {
        int winner = -1;
        for (int t = 0; t < 5; t++) {
            double sum = 0.0, best = -1.0;
            int arg = -1;
            for (int k = 0; k < 5; k++) {
                double y = cell(rows, n, "sample", taus[t], j, k + 1);
                ck_assert(y >= 0.0 && y <= 1.0);
                if (t == 0)
                    ck_assert(y == 0.0 || y == 1.0);
                sum += y;
                if (y > best) {
                    best = y;
                    arg = k;
                }
            }
            ck_assert_double_eq_tol(sum, 1.0, 1e-4);
            if (t == 0)
                winner = arg;
            ck_assert_msg(arg == winner, "sample %d: class %d wins at tau %g, %d at tau 0", j,
                          arg + 1, taus[t], winner + 1);
        }
    }
}
END_TEST

START_TEST(same_seed_same_csv_and_out_file)
{
    static char first[OUT_LEN];
    ck_assert_int_eq(gsvae("gumbel-demo --samples 2000 --rows 2 --seed 3"), 0);
    strcpy(first, out);
    ck_assert_int_eq(gsvae("gumbel-demo --samples 2000 --rows 2 --seed 3"), 0);
    ck_assert_str_eq(first, out);
    ck_assert_int_eq(gsvae("gumbel-demo --samples 2000 --rows 2 --seed 4"), 0);
    ck_assert_str_ne(first, out);
    /* The defaults: the paper's temperatures and the limit tau -> 0. */
    ck_assert(testutil_contains(first, "\nmean,0,,1,"));
    ck_assert(testutil_contains(first, "\nmean,0.5,,1,"));
    ck_assert(testutil_contains(first, "\nmean,10,,5,"));

    const char *dir = testutil_tmpdir();
    const char *path = testutil_path(dir, "demo.csv");
    ck_assert_int_eq(gsvae("gumbel-demo --samples 2000 --rows 2 --seed 3 --out %s", path), 0);
    ck_assert_str_eq(out, "");
    size_t len;
    char *text = (char *)testutil_read_file(path, &len);
    ck_assert(text != NULL);
    ck_assert_uint_eq(len, strlen(first));
    ck_assert(!memcmp(text, first, len));
    free(text);

    int rc = gsvae("gumbel-demo --samples 10 --out %s/no/such/dir/x.csv", dir);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(testutil_contains(errout, "no/such/dir/x.csv"), "%s", errout);

    rc = gsvae("gumbel-demo --help");
    ck_assert_int_eq(rc, 0);
    ck_assert(testutil_contains(out, "--probs"));
    ck_assert(testutil_contains(out, "(default 0,0.1,0.5,1,10)"));
}
END_TEST

/* A bad flag: exit status 2, nothing on stdout, and exactly one line on
 * stderr that names the problem. */
static void expect_error(const char *flags, const char *message)
{
    int rc = gsvae("gumbel-demo %s", flags);
    ck_assert_msg(rc == 2, "'%s': exit %d, stderr: %s", flags, rc, errout);
    ck_assert_msg(out[0] == '\0', "'%s': wrote %.80s", flags, out);
    ck_assert_msg(testutil_contains(errout, message), "'%s': %s", flags, errout);
    char *nl = strchr(errout, '\n');
    ck_assert_msg(nl && nl[1] == '\0', "'%s': not one line: %s", flags, errout);
    ck_assert_msg(!strncmp(errout, "gsvae gumbel-demo: ", 19), "%s", errout);
}

START_TEST(bad_flags_fail_with_one_line)
{
    expect_error("--probs 1", "--probs: '1': at least 2 classes");
    expect_error("--probs 0.5,-1", "--probs: '0.5,-1': every probability must be > 0");
    expect_error("--probs 0.5,0", "every probability must be > 0");
    expect_error("--probs a,b", "--probs: 'a,b' is not a comma-separated list of numbers");
    expect_error("--probs 0.5,,0.5", "is not a comma-separated list");
    expect_error("--probs 0.5,0.5,", "is not a comma-separated list");
    expect_error("--probs 0.5,inf", "is not a comma-separated list");
    expect_error("--tau -1", "--tau: '-1': temperatures must be >= 0");
    expect_error("--tau ''", "--tau: '' is not a comma-separated list");
    expect_error("--tau 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "--tau: more than 16 values");
    expect_error("--samples 0", "--samples: 0: must lie in 1..");
    expect_error("--samples x", "--samples: 'x' is not an integer");
    expect_error("--samples 5 --rows 6", "--rows: 6: must lie in 0..");
    expect_error("--rows -1", "--rows: -1");
    expect_error("--seed -2", "--seed: -2: must be >= 0");
    expect_error("--bogus", "unknown flag '--bogus'");
    expect_error("--probs", "--probs: missing value");
    expect_error("stray", "unexpected argument 'stray'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gumbel_demo");
    TCase *tc = tcase_create("gumbel_demo");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, means_go_from_the_probabilities_to_uniform);
    tcase_add_test(tc, same_seed_same_csv_and_out_file);
    tcase_add_test(tc, bad_flags_fail_with_one_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
