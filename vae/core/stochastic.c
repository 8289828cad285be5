#include "stochastic.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gumbel.h"
#include "layers.h"
#include "util.h"

int stoch_latent_parse(const char *s, latent_type *out)
{
    if (!strcmp(s, "categorical"))
        *out = LATENT_CATEGORICAL;
    else if (!strcmp(s, "bernoulli"))
        *out = LATENT_BERNOULLI;
    else
        return -1;
    return 0;
}

const char *stoch_latent_name(latent_type t)
{
    return t == LATENT_CATEGORICAL ? "categorical" : "bernoulli";
}

int stoch_dim(const stoch_layer *s)
{
    return s->type == LATENT_CATEGORICAL ? s->N * s->K : s->N;
}

/* Units of R rows. */
static size_t units(const stoch_layer *s, int R)
{
    assert(R >= 0 && s->N >= 1 && (s->type == LATENT_BERNOULLI || s->K >= 2));
    return (size_t)R * stoch_dim(s);
}

/* Variables (softmax groups) of R rows. */
static int groups(const stoch_layer *s, int R)
{
    return R * s->N;
}

/* log(1 + e^x) in double, without overflow. */
static double softplus_d(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

/* ---- probabilities ---- */

void stoch_probs_forward(const stoch_layer *s, float *p, const float *logits, int R, float tau)
{
    size_t n = units(s, R);
    if (s->type == LATENT_CATEGORICAL) {
        /* The Gumbel-Softmax forward without noise. */
        gumbel_softmax_forward(p, logits, NULL, groups(s, R), s->K, tau);
        return;
    }
    float inv_tau = 1.0f / tau;
    for (size_t i = 0; i < n; i++)
        p[i] = sigmoidf_stable(logits[i] * inv_tau);
}

void stoch_probs_backward(const stoch_layer *s, float *dlogits, const float *p, const float *dp,
                          int R, float tau)
{
    if (s->type == LATENT_CATEGORICAL)
        gumbel_softmax_backward(dlogits, p, dp, groups(s, R), s->K, tau);
    else
        binary_concrete_backward(dlogits, p, dp, units(s, R), tau);
}

/* ---- relaxed samples ---- */

void stoch_noise(const stoch_layer *s, float *noise, int R, rng_t *r)
{
    if (s->type == LATENT_CATEGORICAL)
        gumbel_noise(noise, units(s, R), r);
    else
        logistic_noise(noise, units(s, R), r);
}

void stoch_relaxed_forward(const stoch_layer *s, float *y, const float *logits,
                           const float *noise, int R, float tau)
{
    assert(noise);
    if (s->type == LATENT_CATEGORICAL)
        gumbel_softmax_forward(y, logits, noise, groups(s, R), s->K, tau);
    else
        binary_concrete_forward(y, logits, noise, units(s, R), tau);
}

void stoch_relaxed_sample(const stoch_layer *s, float *y, float *noise, const float *logits,
                          int R, float tau, rng_t *r)
{
    stoch_noise(s, noise, R, r);
    stoch_relaxed_forward(s, y, logits, noise, R, tau);
}

double stoch_relaxed_dlog_tau(const stoch_layer *s, const float *logits, const float *noise,
                              const float *dlogits, int R)
{
    size_t n = units(s, R);
    double g = 0.0;
    for (size_t i = 0; i < n; i++)
        g -= ((double)logits[i] + noise[i]) * dlogits[i];
    return g;
}

double stoch_relaxed_log_ratio(const stoch_layer *s, const float *logits, const float *eta,
                               const float *noise, float *dl)
{
    double r = 0.0;
    if (s->type == LATENT_BERNOULLI) {
        for (int i = 0; i < s->N; i++) {
            double L = noise[i], a = L - ((eta ? eta[i] : 0.0) - logits[i]);
            r += -softplus_d(-a) - softplus_d(a) + softplus_d(-L) + softplus_d(L);
            /* d/da (-softplus(-a) - softplus(a)) = 1 - 2 sigmoid(a); da/dl = 1 */
            dl[i] = (float)(1.0 - 2.0 / (1.0 + exp(-a)));
        }
        return r;
    }
    int K = s->K;
    for (int v = 0; v < s->N; v++) {
        const float *l = logits + (size_t)v * K, *g = noise + (size_t)v * K;
        double mx = -INFINITY, mg = -INFINITY, se = 0.0, sg = 0.0;
        for (int k = 0; k < K; k++) {
            double d = (eta ? eta[v * K + k] : 0.0) - l[k];
            r += d;
            mx = fmax(mx, d - g[k]);
            mg = fmax(mg, -(double)g[k]);
        }
        for (int k = 0; k < K; k++) {
            se += exp((eta ? eta[v * K + k] : 0.0) - l[k] - g[k] - mx);
            sg += exp(-(double)g[k] - mg);
        }
        r += -K * (mx + log(se)) + K * (mg + log(sg));
        /* d/dl_k: -1 + K softmax(d - g)_k */
        for (int k = 0; k < K; k++)
            dl[v * K + k] = (float)(-1.0 + K * exp((eta ? eta[v * K + k] : 0.0) - l[k] - g[k] - mx) / se);
    }
    return r;
}

/* ---- hard samples ---- */

void stoch_hard_from_relaxed(const stoch_layer *s, float *z, const float *y, int R)
{
    if (s->type == LATENT_CATEGORICAL)
        onehot_argmax(z, y, groups(s, R), s->K);
    else
        threshold_half(z, y, units(s, R));
}

/* A bit that is 1 with probability p, from a uniform u; NaN for a NaN p. */
static float bernoulli_bit(float u, float p)
{
    return u < p ? 1.0f : p == p ? 0.0f : p;
}

void stoch_sample_logits(const stoch_layer *s, float *z, const float *logits, float *noise,
                         int R, rng_t *r)
{
    size_t n = units(s, R);
    if (s->type == LATENT_CATEGORICAL) {
        gumbel_noise(noise, n, r);
        for (size_t i = 0; i < n; i++)
            noise[i] += logits[i];
        onehot_argmax(z, noise, groups(s, R), s->K);
        return;
    }
    /* The uniforms first, into z (the generator's state in a local), then
     * the comparisons in a loop that vectorises: the draws of one loop
     * doing both, in the same order. */
    rng_t g = *r;
    for (size_t i = 0; i < n; i++)
        z[i] = rng_uniformf_open(&g);
    *r = g;
    for (size_t i = 0; i < n; i++)
        z[i] = bernoulli_bit(z[i], sigmoidf_stable(logits[i]));
}

/* The class one variable draws from its K probabilities p and a uniform
 * u through their cumulative sum; -1 for a NaN probability. */
static int draw_class(const float *p, int K, float u)
{
    float acc = 0.0f, total = 0.0f;
    for (int k = 0; k < K; k++)
        total += p[k];
    if (total != total)
        return -1;
    /* The first k with u < p[0] + ... + p[k], else K - 1: the partial
     * sums never decrease (p >= 0), so that is the number of them (k <
     * K - 1) that u reaches, counted without a branch. */
    int pick = 0;
    for (int k = 0; k < K - 1; k++) {
        acc += p[k];
        pick += u >= acc;
    }
    /* Rounding can leave u above the float total: take the last class
     * with mass, never one of probability 0. */
    while (pick > 0 && p[pick] == 0.0f)
        pick--;
    return pick;
}

/* One variable's one-hot draw from its K probabilities p and a uniform u;
 * NaN in every class for a NaN probability. */
static void sample_variable(float *z, const float *p, int K, float u)
{
    int pick = draw_class(p, K, u);
    for (int k = 0; k < K; k++)
        z[k] = pick < 0 ? NAN : k == pick ? 1.0f : 0.0f;
}

void stoch_sample_probs(const stoch_layer *s, float *z, const float *p, int R, rng_t *r)
{
    size_t n = units(s, R);
    rng_t st = *r; /* in registers: rng.h */
    if (s->type == LATENT_BERNOULLI) {
        for (size_t i = 0; i < n; i++)
            z[i] = bernoulli_bit(rng_uniformf_open(&st), p[i]);
    } else {
        int K = s->K;
        for (long g = 0; g < (long)groups(s, R); g++)
            sample_variable(z + (size_t)g * K, p + (size_t)g * K, K, rng_uniformf_open(&st));
    }
    *r = st;
}

void stoch_index_cum(const stoch_layer *s, float *cum, const float *p, int R)
{
    size_t n = units(s, R);
    if (s->type == LATENT_BERNOULLI) {
        memcpy(cum, p, sizeof(float) * n);
        return;
    }
    int K = s->K;
    for (size_t v = 0; v < n / (size_t)K; v++) {
        float acc = 0.0f;
        for (int k = 0; k < K; k++) {
            acc += p[v * (size_t)K + (size_t)k];
            cum[v * (size_t)K + (size_t)k] = acc;
        }
    }
}

int stoch_sample_index(const stoch_layer *s, int *idx, const float *p, const float *cum,
                       rng_t *r)
{
    int n = 0;
    rng_t st = *r; /* in registers: rng.h */
    if (s->type == LATENT_BERNOULLI) {
        /* Without a branch (a unit is on about half the time, so a branch
         * mispredicts about half the time): every unit is written at the
         * next free slot, which advances past the units that are on. */
        for (int i = 0; i < s->N; i++) {
            idx[n] = i;
            n += rng_uniformf_open(&st) < p[i];
        }
    } else {
        /* draw_class from the running sums: the same pick, without the
         * chain of adds at every draw. */
        int K = s->K;
        for (int i = 0; i < s->N; i++) {
            const float *c = cum + (size_t)i * K;
            float u = rng_uniformf_open(&st);
            if (c[K - 1] != c[K - 1]) {
                n = -1;
                break;
            }
            int pick = 0;
            for (int k = 0; k < K - 1; k++)
                pick += u >= c[k];
            while (pick > 0 && p[(size_t)i * K + pick] == 0.0f)
                pick--;
            idx[n++] = i * K + pick;
        }
    }
    *r = st;
    return n;
}

double stoch_log_prob(const stoch_layer *s, const float *logits, const float *logq,
                      const float *z)
{
    double lp = 0.0;
    if (s->type == LATENT_CATEGORICAL) {
        for (int i = 0; i < s->N * s->K; i++)
            if (z[i] > 0.5f)
                lp += logq[i];
        return lp;
    }
    /* log sigmoid(l) = -softplus(-l), log (1 - sigmoid(l)) = -softplus(l) */
    for (int i = 0; i < s->N; i++)
        lp -= softplusf_stable(z[i] > 0.5f ? -logits[i] : logits[i]);
    return lp;
}

/* ---- the score-function family ---- */

void stoch_score_add(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                     const double *u, int R, int S, int B)
{
    assert(S >= 1 && B >= 1);
    int Z = stoch_dim(s);
    for (int r = 0; r < R; r++) {
        float w = (float)(u[r / S] / B);
        size_t o = (size_t)r * Z;
        for (int j = 0; j < Z; j++)
            dlogits[o + j] += w * (z[o + j] - p[o + j]);
    }
}

void stoch_score_sum(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                     const double *u, int G, int S, double scale)
{
    assert(S >= 1);
    int Z = stoch_dim(s);
    for (int g = 0; g < G; g++) {
        float *d = dlogits + (size_t)g * Z;
        const float *pg = p + (size_t)g * Z;
        for (int j = 0; j < S; j++) {
            size_t r = (size_t)g * S + j;
            float w = (float)(scale * u[r]);
            const float *zr = z + r * Z;
            for (int k = 0; k < Z; k++)
                d[k] += w * (zr[k] - pg[k]);
        }
    }
}

void stoch_darn_backward(const stoch_layer *s, float *dlogits, const float *z, const float *p,
                         const float *dz, int R, float zbar)
{
    if (s->type == LATENT_BERNOULLI) {
        size_t n = units(s, R);
        for (size_t i = 0; i < n; i++)
            dlogits[i] = dz[i] * (z[i] - 0.5f) * (z[i] - p[i]);
        return;
    }
    int K = s->K;
    float point = zbar == STOCH_DARN_CENTRE ? 1.0f / (float)K : zbar;
    for (long g = 0; g < (long)groups(s, R); g++) {
        size_t o = (size_t)g * K;
        float sig = 0.0f;
        for (int k = 0; k < K; k++)
            sig += dz[o + k] * (z[o + k] - point);
        for (int k = 0; k < K; k++)
            dlogits[o + k] = sig * (z[o + k] - p[o + k]);
    }
}

/* ---- antithetic pairs of Bernoulli units ---- */

void stoch_antithetic_pair(const stoch_layer *s, float *b, float *bt, float *u, const float *p,
                           int R, rng_t *r)
{
    assert(s->type == LATENT_BERNOULLI);
    size_t n = units(s, R);
    for (size_t i = 0; i < n; i++) {
        u[i] = rng_uniformf_open(r);
        b[i] = bernoulli_bit(u[i], p[i]);
        bt[i] = bernoulli_bit(1.0f - u[i], p[i]);
    }
}

void stoch_arm_backward(const stoch_layer *s, float *dlogits, const float *u, const double *df,
                        int R, float scale)
{
    assert(s->type == LATENT_BERNOULLI);
    int N = s->N;
    for (int r = 0; r < R; r++) {
        float w = (float)(scale * df[r]);
        for (int j = 0; j < N; j++)
            dlogits[(size_t)r * N + j] = w * (0.5f - u[(size_t)r * N + j]);
    }
}

void stoch_disarm_backward(const stoch_layer *s, float *dlogits, const float *b, const float *bt,
                           const float *p, const double *df, int R, float scale)
{
    assert(s->type == LATENT_BERNOULLI);
    int N = s->N;
    for (int r = 0; r < R; r++) {
        float w = (float)(0.5 * scale * df[r]);
        for (int j = 0; j < N; j++) {
            size_t i = (size_t)r * N + j;
            /* b != bt only where one bit is 1: (-1)^bt is then -1 for
             * (b, bt) = (0, 1) and +1 for (1, 0), i.e. b - bt. */
            float sign = b[i] - bt[i];
            dlogits[i] = sign == 0.0f ? 0.0f : w * sign * fmaxf(p[i], 1.0f - p[i]);
        }
    }
}

/* REBAR's conditional sample of one categorical variable of K classes
 * (stochastic.h): logits l, one-hot b, uniforms v into zt and the a_i of
 * its Jacobian into dzt.  In double, in logs: zt_i = -logaddexp(log e_i -
 * l_i, log e_k - Z) and a_i = sigmoid of the difference of the two, so
 * that no e_i / theta_i overflows for a class of tiny probability. */
static void rebar_conditional_categorical(float *zt, float *dzt, const float *b, const float *l,
                                          const float *v, int K)
{
    int k = 0;
    double mx = l[0];
    for (int i = 1; i < K; i++) {
        if (b[i] > b[k])
            k = i;
        mx = fmax(mx, l[i]);
    }
    double se = 0.0;
    for (int i = 0; i < K; i++)
        se += exp(l[i] - mx);
    double lse = mx + log(se), log_ek = log(-log((double)v[k])), top = log_ek - lse;
    for (int i = 0; i < K; i++) {
        if (i == k) {
            zt[i] = (float)(lse - log_ek);
            dzt[i] = 0.0f;
            continue;
        }
        double own = log(-log((double)v[i])) - l[i], hi = fmax(own, top);
        zt[i] = (float)-(hi + log(exp(own - hi) + exp(top - hi)));
        dzt[i] = (float)(1.0 / (1.0 + exp(top - own)));
    }
}

void stoch_rebar_conditional(const stoch_layer *s, float *zt, float *dzt, const float *b,
                             const float *logits, const float *v, int R)
{
    size_t n = units(s, R);
    if (s->type == LATENT_CATEGORICAL) {
        for (size_t o = 0; o < n; o += s->K)
            rebar_conditional_categorical(zt + o, dzt + o, b + o, logits + o, v + o, s->K);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double p = 1.0 / (1.0 + exp(-(double)logits[i])), q = 1.0 - p, u, one_minus;
        /* u' and 1 - u' each without cancellation; u'_l / (u' (1 - u'))
         * simplified to -q / u' (a 1) and -p / (1 - u') (a 0). */
        if (b[i] > 0.5f) {
            one_minus = p * (1.0 - v[i]);
            u = 1.0 - one_minus;
            dzt[i] = (float)(1.0 - q / u);
        } else {
            u = v[i] * q;
            one_minus = 1.0 - u;
            dzt[i] = (float)(1.0 - p / one_minus);
        }
        zt[i] = (float)(logits[i] + log(u) - log(one_minus));
    }
}

void stoch_rebar_conditional_backward(const stoch_layer *s, float *dlogits, const float *dzt,
                                      const float *p, const float *dzt_grad, int R)
{
    size_t n = units(s, R);
    if (s->type == LATENT_BERNOULLI) {
        for (size_t i = 0; i < n; i++)
            dlogits[i] = dzt_grad[i] * dzt[i];
        return;
    }
    for (size_t o = 0; o < n; o += s->K) {
        double rest = 0.0;
        for (int i = 0; i < s->K; i++)
            rest += (1.0 - dzt[o + i]) * dzt_grad[o + i];
        for (int i = 0; i < s->K; i++)
            dlogits[o + i] = (float)(dzt[o + i] * dzt_grad[o + i] + p[o + i] * rest);
    }
}

void stoch_rebar_conditional_tangent(const stoch_layer *s, float *tzt, const float *dzt,
                                     const float *p, const float *tl, int R)
{
    size_t n = units(s, R);
    if (s->type == LATENT_BERNOULLI) {
        for (size_t i = 0; i < n; i++)
            tzt[i] = tl[i] * dzt[i];
        return;
    }
    for (size_t o = 0; o < n; o += s->K) {
        double mean = 0.0;
        for (int i = 0; i < s->K; i++)
            mean += (double)p[o + i] * tl[o + i];
        for (int i = 0; i < s->K; i++)
            tzt[o + i] = (float)(dzt[o + i] * tl[o + i] + (1.0 - dzt[o + i]) * mean);
    }
}

double stoch_nvil_offset(const stoch_nvil *s)
{
    return s->seen ? s->mean : 0.0;
}

/* Folds the batch mean and variance of u[0..B) into the moving averages. */
static void nvil_fold(stoch_nvil *s, const double *u, int B)
{
    double bm = 0.0, bv = 0.0;
    for (int b = 0; b < B; b++)
        bm += u[b];
    bm /= B;
    for (int b = 0; b < B; b++)
        bv += (u[b] - bm) * (u[b] - bm);
    bv /= B;
    const double a = STOCH_NVIL_DECAY;
    s->mean = s->seen ? a * s->mean + (1.0 - a) * bm : bm;
    s->var = s->seen ? a * s->var + (1.0 - a) * bv : bv;
    s->seen = 1;
}

double stoch_nvil_centre(stoch_nvil *s, double *u, int B, int var_norm, int frozen)
{
    assert(B >= 1);
    double mean = stoch_nvil_offset(s);
    double scale = s->seen && var_norm ? 1.0 / fmax(1.0, sqrt(s->var)) : 1.0;
    if (!frozen)
        nvil_fold(s, u, B);
    for (int b = 0; b < B; b++)
        u[b] = (u[b] - mean) * scale;
    return scale;
}

/* ---- the one list of estimators ---- */

/* Latent types an estimator is defined for: a mask of 1u << latent_type. */
#define BOTH ((1u << LATENT_CATEGORICAL) | (1u << LATENT_BERNOULLI))
#define BERNOULLI_ONLY (1u << LATENT_BERNOULLI)

static const struct {
    const char *name, *help;
    unsigned latents;
} estimators[STOCH_NESTIMATORS] = {
    [STOCH_GUMBEL] = {"gumbel", "Gumbel-Softmax (Concrete; Binary Concrete for Bernoulli "
                                "units) relaxation; pathwise gradient through the soft sample "
                                "at temperature tau", BOTH},
    [STOCH_ST_GUMBEL] = {"st-gumbel", "straight-through Gumbel-Softmax: the one-hot argmax of "
                                      "the relaxed sample forward, the relaxed sample's gradient "
                                      "backward (VAE alias --hard)", BOTH},
    [STOCH_SF] = {"sf", "score function (REINFORCE), (f(z) - baseline) dlog q(z); --baseline: "
                        "NVIL moving average (decay 0.8) [VAE: + MLP on x, 100 tanh], "
                        "variance-normalised", BOTH},
    [STOCH_DARN] = {"darn", "DARN (Gregor et al. 2014): signal f'(z)(z - 1/2) per unit "
                            "(categorical: f'(z).(z - 1/K) per variable) times dlog q; no "
                            "correction term, so biased", BOTH},
    [STOCH_MUPROP] = {"muprop", "MuProp (Gu et al. 2016): score function minus the first-order "
                                "Taylor control variate at the mean-field point, plus its "
                                "analytic mean; --baseline centres the residual", BOTH},
    [STOCH_ST] = {"st", "straight-through: hard sample forward, d softmax(l)/dl backward "
                        "(Bernoulli: d sigmoid(l)/dl)", BOTH},
    [STOCH_ANNEALED_ST] = {"annealed-st", "slope-annealed straight-through (Chung et al. 2016): "
                                          "as st with backward d softmax(l/tau)/dl, slope 1/tau "
                                          "from the tau schedule", BOTH},
    [STOCH_EXACT] = {"exact", "exact expectation: the sum over every value of the discrete "
                              "variable (VAE: all K^N or 2^N codes, at most 65536)", BOTH},
    [STOCH_ARM] = {"arm", "ARM (Yin & Zhou 2019), Bernoulli only: u ~ U(0,1), (f(1[u > "
                          "sigmoid(-l)]) - f(1[u < sigmoid(l)])) (u - 1/2); two decoder passes, "
                          "unbiased", BERNOULLI_ONLY},
    [STOCH_DISARM] = {"disarm", "DisARM (Dong et al. 2020), Bernoulli only: ARM's antithetic "
                                "pair with u integrated out, (f(b) - f(b~))/2 (-1)^b~ [b != b~] "
                                "sigmoid(|l|); unbiased", BERNOULLI_ONLY},
    [STOCH_VIMCO] = {"vimco", "VIMCO (Mnih & Rezende 2016): score function of the K-sample "
                              "bound (--samples K >= 2), each sample's signal centred by the "
                              "bound with it replaced by the others' geometric mean; unbiased",
                     BOTH},
    [STOCH_REBAR] = {"rebar", "REBAR (Tucker et al. 2017): score function with the Concrete "
                              "(Binary Concrete) control variate at the conditional resample "
                              "z~|b plus its reparameterised correction; eta and temperature "
                              "trained on the gradient's variance; unbiased", BOTH},
    [STOCH_RELAX] = {"relax", "RELAX (Grathwohl et al. 2018): REBAR's estimator with a learned "
                              "surrogate added to its control variate (1 hidden layer, 200 tanh "
                              "units, on sigmoid(z) per unit or softmax(z) per variable, and x), "
                              "trained with eta and the temperature on the gradient's variance; "
                              "unbiased", BOTH},
};

int stoch_estimator_parse(const char *name, stoch_estimator *out)
{
    for (int e = 0; e < STOCH_NESTIMATORS; e++)
        if (!strcmp(estimators[e].name, name)) {
            *out = (stoch_estimator)e;
            return 0;
        }
    return -1;
}

const char *stoch_estimator_name(stoch_estimator e)
{
    assert(e >= 0 && e < STOCH_NESTIMATORS);
    return estimators[e].name;
}

const char *stoch_estimator_help(stoch_estimator e)
{
    assert(e >= 0 && e < STOCH_NESTIMATORS);
    return estimators[e].help;
}

int stoch_estimator_defined(stoch_estimator e, latent_type t)
{
    assert(e >= 0 && e < STOCH_NESTIMATORS);
    return (estimators[e].latents >> t) & 1u;
}

int stoch_estimator_check(stoch_estimator e, unsigned supported, const char *task,
                          latent_type t, char *err)
{
    assert(e >= 0 && e < STOCH_NESTIMATORS);
    if (!stoch_estimator_defined(e, t))
        return errf(err, "--estimator '%s': for Bernoulli latents only, not %s ones",
                    estimators[e].name, stoch_latent_name(t));
    if (supported & (1u << e))
        return 0;
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; i < STOCH_NESTIMATORS && used < sizeof list; i++)
        if (supported & (1u << i))
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                                     estimators[i].name);
    return errf(err, "--estimator '%s': not implemented for the %s task (%s)", estimators[e].name,
                task, list);
}
