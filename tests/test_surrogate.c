/* test_surrogate.c: RELAX's surrogate network (surrogate.c) against a
 * reference written here in double precision with plain loops.
 *
 * - forward: r(z; x) = w2 . tanh(W1 s(z) + V x + b1) + b2 per row, s(z)
 *   sigmoid(z) per unit of a Bernoulli code (6 units) or softmax(z) per
 *   variable of a categorical one (2 variables of 3 classes), within
 *   1e-5 (1 + |r|) of the reference; with a context (C = 2) and without
 *   one (C = 0), each on both codes.
 * - surr_input_grad: d r / dz per row against central differences (step
 *   FD_STEP) of the reference's r.
 * - surr_param_grad: the gradient of sum_b alpha_b r(z_b) + v_b . dr/dz_b
 *   with respect to every parameter against central differences of that sum
 *   written out in double (its directional derivative by the chain rule,
 *   itself checked against the input gradient above), with the output term
 *   alone, the directional term alone and both; and it adds to grads.
 * The bound is testutil_assert_grad_close's with GRAD_TOL 1e-3 and REL_FLOOR
 * 1e-2, as test_layers.c: a wrong term (a missing tanh'' term, a
 * transposed W1, a dropped sigmoid', a softmax Jacobian taken per unit)
 * gives errors of order 1. */
#include "rng.h"
#include "surrogate.h"
#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_STEP 1e-5
#define GRAD_TOL 1e-3
#define REL_FLOOR 1e-2

enum { B = 3, Z = 6, KCAT = 3, H = 4, MAXC = 2, NP = H * Z + H * MAXC + 2 * H + 1 };

typedef struct {
    int C;             /* context inputs: 0 or MAXC */
    int cat;           /* 1: Z / KCAT categorical variables; 0: Z Bernoulli units */
    double p[NP];      /* W1 [H][Z], V [H][C], b1 [H], w2 [H], b2 */
    double z[B * Z], x[B * MAXC];
    double alpha[B], v[B * Z];
    int use_alpha, use_v;
} ref_net;

static double sigmoid_ref(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* The code layer of a case. */
static stoch_layer code_of(int cat)
{
    return cat ? (stoch_layer){LATENT_CATEGORICAL, Z / KCAT, KCAT}
               : (stoch_layer){LATENT_BERNOULLI, Z, 1};
}

/* s = s(z) of one row and sv = its Jacobian times v (v NULL: no sv). */
static void ref_squash(int cat, const double *z, const double *v, double *s, double *sv)
{
    if (!cat) {
        for (int j = 0; j < Z; j++) {
            s[j] = sigmoid_ref(z[j]);
            if (v)
                sv[j] = s[j] * (1.0 - s[j]) * v[j];
        }
        return;
    }
    for (int g = 0; g < Z; g += KCAT) {
        double mx = -INFINITY, sum = 0.0, dot = 0.0;
        for (int k = 0; k < KCAT; k++)
            mx = fmax(mx, z[g + k]);
        for (int k = 0; k < KCAT; k++)
            sum += s[g + k] = exp(z[g + k] - mx);
        for (int k = 0; k < KCAT; k++) {
            s[g + k] /= sum;
            dot += v ? s[g + k] * v[g + k] : 0.0;
        }
        for (int k = 0; k < KCAT && v; k++)
            sv[g + k] = s[g + k] * (v[g + k] - dot);
    }
}

/* r(z; x) of row z (Z) with context x (C), and v . dr/dz into *dir when
 * dir is not NULL. */
static double ref_row(const double *p, int C, int cat, const double *z, const double *x,
                      const double *v, double *dir)
{
    const double *W1 = p, *V = p + H * Z, *b1 = V + H * C, *w2 = b1 + H, *b2 = w2 + H;
    double r = b2[0], d = 0.0, s[Z], sv[Z];
    ref_squash(cat, z, v, s, sv);
    for (int k = 0; k < H; k++) {
        double a = b1[k], t = 0.0;
        for (int j = 0; j < C; j++)
            a += V[k * C + j] * x[j];
        for (int j = 0; j < Z; j++) {
            a += W1[k * Z + j] * s[j];
            if (v)
                t += W1[k * Z + j] * sv[j];
        }
        double h = tanh(a);
        r += w2[k] * h;
        d += w2[k] * (1.0 - h * h) * t;
    }
    if (dir)
        *dir = d;
    return r;
}

/* sum_b r(z_b): its gradient at z is the rows' input gradients. */
static double ref_sum_r(void *ctx)
{
    ref_net *R = ctx;
    double s = 0.0;
    for (int b = 0; b < B; b++)
        s += ref_row(R->p, R->C, R->cat, R->z + b * Z, R->x + b * MAXC, NULL, NULL);
    return s;
}

/* sum_b alpha_b r(z_b) + v_b . dr/dz_b, the terms R selects. */
static double ref_weighted(void *ctx)
{
    ref_net *R = ctx;
    double s = 0.0;
    for (int b = 0; b < B; b++) {
        double dir;
        double r = ref_row(R->p, R->C, R->cat, R->z + b * Z, R->x + b * MAXC, R->v + b * Z,
                           &dir);
        s += (R->use_alpha ? R->alpha[b] * r : 0.0) + (R->use_v ? dir : 0.0);
    }
    return s;
}

typedef struct {
    int C, np;
    stoch_layer code;
    float p[NP], z[B * Z], x[B * MAXC], alpha[B], v[B * Z];
    float s[B * Z], h[B * H], out[B], u[B * H], dz[B * Z];
    float sv[B * Z], t[B * H], da[B * H], grads[NP];
} net_case;

/* Random parameters (w2 and b1 nonzero, so that every term is live), rows,
 * contexts (C of them, packed MAXC apart) and weights from seed, mirrored
 * into R; a categorical code when cat. */
static void draw_case(net_case *c, ref_net *R, int C, int cat, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed);
    memset(c, 0, sizeof *c);
    memset(R, 0, sizeof *R);
    c->C = R->C = C;
    R->cat = cat;
    c->code = code_of(cat);
    c->np = (int)surr_nparams(&c->code, C, H);
    surr_init(c->p, &c->code, C, H, &r);
    for (int i = H * (Z + C); i < c->np; i++)
        c->p[i] = (float)(2.0 * rng_uniform_open(&r) - 1.0);
    for (int i = 0; i < B * MAXC; i++)
        c->x[i] = i % MAXC < C ? (float)rng_uniform_open(&r) : 0.0f;
    for (int i = 0; i < B * Z; i++) {
        c->z[i] = (float)(6.0 * rng_uniform_open(&r) - 3.0);
        c->v[i] = (float)(2.0 * rng_uniform_open(&r) - 1.0);
    }
    for (int b = 0; b < B; b++)
        c->alpha[b] = (float)(2.0 * rng_uniform_open(&r) - 1.0);
    for (int i = 0; i < c->np; i++)
        R->p[i] = c->p[i];
    for (int i = 0; i < B * Z; i++) {
        R->z[i] = c->z[i];
        R->v[i] = c->v[i];
    }
    for (int i = 0; i < B * MAXC; i++)
        R->x[i] = c->x[i];
    for (int b = 0; b < B; b++)
        R->alpha[b] = c->alpha[b];
    /* The contexts packed C apart for the library (C = MAXC: as they are). */
    float xs[B * MAXC];
    for (int b = 0; b < B; b++)
        for (int j = 0; j < C; j++)
            xs[b * C + j] = c->x[b * MAXC + j];
    memcpy(c->x, xs, sizeof(float) * B * C);
    surr_forward(c->p, &c->code, C, H, c->z, C ? c->x : NULL, B, c->s, c->h, c->out);
    surr_input_grad(c->p, &c->code, C, H, c->s, c->h, B, c->u, c->dz);
}

/* Case `seed` of a test's loop (seeds 1..NSEEDS): odd ones with a context,
 * even ones without; seeds 3, 4, 7, 8 on the categorical code. */
#define NSEEDS 8
static void draw_numbered(net_case *c, ref_net *R, uint64_t seed)
{
    draw_case(c, R, seed & 1 ? MAXC : 0, (seed - 1) & 2 ? 1 : 0, seed);
}

START_TEST(init_is_zero_output)
{
    float p[NP], z[B * Z], x[B * MAXC], s[B * Z], h[B * H], out[B];
    rng_t r;
    rng_seed(&r, 1);
    stoch_layer code = code_of(0);
    ck_assert_uint_eq(surr_nparams(&code, MAXC, H), NP);
    surr_init(p, &code, MAXC, H, &r);
    int nonzero = 0;
    for (int i = 0; i < H * (Z + MAXC); i++)
        nonzero += p[i] != 0.0f;
    ck_assert_int_eq(nonzero, H * (Z + MAXC));
    for (int i = 0; i < B * Z; i++)
        z[i] = (float)i - 7.0f;
    for (int i = 0; i < B * MAXC; i++)
        x[i] = (float)i;
    surr_forward(p, &code, MAXC, H, z, x, B, s, h, out);
    for (int b = 0; b < B; b++)
        ck_assert(out[b] == 0.0f);
}
END_TEST

START_TEST(forward_values)
{
    for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
        net_case c;
        ref_net R;
        draw_numbered(&c, &R, seed);
        double want[B];
        for (int b = 0; b < B; b++)
            want[b] = ref_row(R.p, R.C, R.cat, R.z + b * Z, R.x + b * MAXC, NULL, NULL);
        testutil_assert_close("surr_forward", c.out, want, B, 1e-5);
    }
}
END_TEST

START_TEST(input_grad)
{
    for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
        net_case c;
        ref_net R;
        draw_numbered(&c, &R, seed);
        double an[B * Z], nu[B * Z];
        for (int i = 0; i < B * Z; i++)
            an[i] = c.dz[i];
        testutil_numeric_grad(nu, R.z, B * Z, FD_STEP, ref_sum_r, &R);
        testutil_assert_grad_close("surr_input_grad", an, nu, B * Z, GRAD_TOL, REL_FLOOR);
        /* The reference's directional derivative is v . (that gradient). */
        for (int b = 0; b < B; b++) {
            double dir, want = 0.0;
            ref_row(R.p, R.C, R.cat, R.z + b * Z, R.x + b * MAXC, R.v + b * Z, &dir);
            for (int j = 0; j < Z; j++)
                want += nu[b * Z + j] * R.v[b * Z + j];
            ck_assert_msg(fabs(dir - want) <= 1e-6 * (1.0 + fabs(want)),
                          "row %d: reference v . dr/dz %.9g, numeric %.9g", b, dir, want);
        }
    }
}
END_TEST

START_TEST(param_grad)
{
    /* terms: 1 the output term, 2 the directional term, 3 both. */
    for (int terms = 1; terms <= 3; terms++)
        for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
            net_case c;
            ref_net R;
            draw_numbered(&c, &R, seed);
            R.use_alpha = terms & 1;
            R.use_v = (terms & 2) != 0;
            /* grads is added to: start from a known offset. */
            for (int i = 0; i < c.np; i++)
                c.grads[i] = 0.25f;
            surr_param_grad(c.p, &c.code, c.C, H, c.s, c.C ? c.x : NULL, c.h, c.u,
                            R.use_alpha ? c.alpha : NULL, R.use_v ? c.v : NULL, B, c.sv, c.t,
                            c.da, c.grads);
            double an[NP], nu[NP];
            for (int i = 0; i < c.np; i++)
                an[i] = c.grads[i] - 0.25;
            testutil_numeric_grad(nu, R.p, (size_t)c.np, FD_STEP, ref_weighted, &R);
            char what[64];
            snprintf(what, sizeof what, "surr_param_grad (terms %d, C %d, seed %d)", terms, c.C,
                     (int)seed);
            testutil_assert_grad_close(what, an, nu, (size_t)c.np, GRAD_TOL, REL_FLOOR);
        }
}
END_TEST

static Suite *surrogate_suite(void)
{
    Suite *s = suite_create("surrogate");
    TCase *tc = tcase_create("surrogate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, init_is_zero_output);
    tcase_add_test(tc, forward_values);
    tcase_add_test(tc, input_grad);
    tcase_add_test(tc, param_grad);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(surrogate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
