#include "sigopt.h"

#include <string.h>

#include "util.h"

void sigopt_defaults(sigopt *s)
{
    s->var_norm = 1;
    s->scope = "whole";
    s->baseline_lr = 0.0;
    s->norm_signal = 0;
}

int sigopt_flags(sigopt *s, flag_def *d)
{
    const flag_def defs[] = {
        {"var-norm", FLAG_INT, &s->var_norm, "0|1",
         "sf/muprop: divide the centred signal by max(1, running std) (NVIL; JGP Sec. 4); no "
         "effect under --baseline none"},
        {"baseline-lr", FLAG_DOUBLE, &s->baseline_lr, "R",
         "--baseline learned: Adam's rate for the baseline networks (0: the run's --lr)"},
        {"var-norm-scope", FLAG_STRING, &s->scope, "WHAT",
         "sf/muprop: what --var-norm divides, whole (each stochastic layer's whole gradient, "
         "the analytic terms included: MuProp's Taylor mean, the VAE's KL; unbiased up to "
         "scale) or signal (the score term alone: biased where such terms exist)"},
    };
    memcpy(d, defs, sizeof defs);
    return (int)(sizeof defs / sizeof defs[0]);
}

int sigopt_check(sigopt *s, int learned, const char *est, char *err)
{
    if (!(s->baseline_lr >= 0.0 && s->baseline_lr <= 1.0))
        return errf(err, "--baseline-lr %g: expected a rate in [0, 1]", s->baseline_lr);
    if (s->baseline_lr > 0.0 && !learned)
        return errf(err, "--baseline-lr: only with --baseline learned");
    if (s->var_norm != 0 && s->var_norm != 1)
        return errf(err, "--var-norm %d: expected 0 or 1", s->var_norm);
    if (strcmp(s->scope, "whole") && strcmp(s->scope, "signal"))
        return errf(err, "--var-norm-scope '%s': expected whole or signal", s->scope);
    s->norm_signal = !strcmp(s->scope, "signal");
    if (s->norm_signal && strcmp(est, "sf") && strcmp(est, "muprop"))
        return errf(err, "--var-norm-scope signal: only for --estimator sf or muprop, not %s",
                    est);
    return 0;
}

double sigopt_baseline_lr(const sigopt *s, double lr)
{
    return s->baseline_lr > 0.0 ? s->baseline_lr : lr;
}
