/* test_fastmath.c: the vectorisable exp, log1p, log, softplus and sigmoid
 * of layers.h against double-precision libm over their whole ranges, and
 * the noise samplers built on them against the libm formulas. */
#include <check.h>
#include <math.h>
#include <stdio.h>

#include "gumbel.h"
#include "layers.h"
#include "rng.h"

/* Relative error bound: 8 float ulps (2^-23 each) of the true value. */
#define REL_TOL (8.0 * 1.1920929e-7)

static double rel_err(double got, double want)
{
    if (want == 0.0)
        return fabs(got);
    return fabs(got - want) / fabs(want);
}

START_TEST(exp_nonpos_matches_libm)
{
    double worst = 0;
    for (float x = -87.0f; x <= 0.0f; x += 0.000731f) {
        double e = rel_err(exp_nonpos(x), exp((double)x));
        worst = e > worst ? e : worst;
    }
    ck_assert_msg(worst < REL_TOL, "worst relative error %.3g", worst);
    ck_assert(exp_nonpos(0.0f) == 1.0f);
    ck_assert(exp_nonpos(-100.0f) == 0.0f);
    ck_assert(exp_nonpos(-INFINITY) == 0.0f);
}
END_TEST

START_TEST(log1p_unit_matches_libm)
{
    double worst = 0;
    for (float e = 0.0f; e <= 1.0f; e += 1.3e-5f) {
        double err = rel_err(log1p_unit(e), log1p((double)e));
        worst = err > worst ? err : worst;
    }
    /* Tiny arguments keep full relative precision. */
    for (float e = 1e-30f; e < 1e-3f; e *= 1.7f) {
        double err = rel_err(log1p_unit(e), log1p((double)e));
        worst = err > worst ? err : worst;
    }
    ck_assert_msg(worst < REL_TOL, "worst relative error %.3g", worst);
}
END_TEST

START_TEST(softplus_and_sigmoid_match_libm)
{
    double worst_sp = 0, worst_sg = 0;
    for (float x = -120.0f; x <= 120.0f; x += 0.00913f) {
        double sp = x > 0 ? x + log1p(exp(-(double)x)) : log1p(exp((double)x));
        double sg = 1.0 / (1.0 + exp(-(double)x));
        /* Below e^-87 the true values underflow float; absolute error then. */
        double esp = sp < 1e-37 ? fabs(softplusf_stable(x) - sp) : rel_err(softplusf_stable(x), sp);
        double esg = sg < 1e-37 ? fabs(sigmoidf_stable(x) - sg) : rel_err(sigmoidf_stable(x), sg);
        worst_sp = esp > worst_sp ? esp : worst_sp;
        worst_sg = esg > worst_sg ? esg : worst_sg;
    }
    ck_assert_msg(worst_sp < REL_TOL, "softplus worst relative error %.3g", worst_sp);
    ck_assert_msg(worst_sg < REL_TOL, "sigmoid worst relative error %.3g", worst_sg);
    /* Finite at the extremes, and NaN in gives NaN out (the loss check
     * relies on it). */
    ck_assert(softplusf_stable(1e30f) == 1e30f);
    ck_assert(softplusf_stable(-1e30f) == 0.0f);
    ck_assert(sigmoidf_stable(1e30f) == 1.0f && sigmoidf_stable(-1e30f) == 0.0f);
    ck_assert(isnan(softplusf_stable(NAN)));
    ck_assert(isnan(sigmoidf_stable(NAN)));
}
END_TEST

START_TEST(log_pos_matches_libm)
{
    double worst = 0;
    /* Log-spaced over the logs' whole range in the samplers: the open
     * uniforms (2^-53 and up) and -log of them (up to 37). */
    for (double x = 0x1p-60; x < 64.0; x *= 1.0001373) {
        double e = rel_err(log_pos(x), log(x));
        worst = e > worst ? e : worst;
    }
    /* Beside 1, where log x -> 0 and only an exact m - 1 keeps it. */
    for (int k = 1; k <= 4096; k++) {
        double a = rel_err(log_pos(1.0 + k * 0x1p-52), log(1.0 + k * 0x1p-52));
        double b = rel_err(log_pos(1.0 - k * 0x1p-53), log(1.0 - k * 0x1p-53));
        worst = fmax(worst, fmax(a, b));
    }
    ck_assert_msg(worst < 1e-10, "worst relative error %.3g", worst);
    ck_assert(log_pos(1.0) == 0.0);
    ck_assert(log_pos(2.0) == log(2.0));
}
END_TEST

/* The noise samplers draw the same uniforms as one libm formula per
 * element: the floats agree to one rounding. */
START_TEST(noise_matches_the_libm_formulas)
{
    enum { N = 100000 };
    static float g[N], l[N];
    rng_t a, b;
    rng_seed(&a, 5);
    rng_seed(&b, 5);
    gumbel_noise(g, N, &a);
    logistic_noise(l, N, &a);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double u = rng_uniform_open(&b);
        worst = fmax(worst, rel_err(g[i], (float)-log(-log(u))));
    }
    for (int i = 0; i < N; i++) {
        double u = rng_uniform_open(&b);
        worst = fmax(worst, rel_err(l[i], (float)(log(u) - log1p(-u))));
    }
    ck_assert_msg(worst <= 1.2e-7, "worst relative error %.3g", worst);
    /* Both generators end where N draws each leave them. */
    ck_assert(rng_next(&a) == rng_next(&b));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fastmath");
    TCase *tc = tcase_create("fastmath");
    tcase_add_test(tc, exp_nonpos_matches_libm);
    tcase_add_test(tc, log1p_unit_matches_libm);
    tcase_add_test(tc, softplus_and_sigmoid_match_libm);
    tcase_add_test(tc, log_pos_matches_libm);
    tcase_add_test(tc, noise_matches_the_libm_formulas);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
