/* sigopt.h: the learning-signal options of the score-function estimators
 * (sf, muprop), one set of flags for the tasks that run them (vae, sbn).
 * NVIL's centring is each task's --baseline; these say what else is done
 * to the centred signal. */
#ifndef GSVAE_SIGOPT_H
#define GSVAE_SIGOPT_H

#include "flags.h"

typedef struct {
    int var_norm;        /* --var-norm: divide the centred signal by max(1, std) */
    const char *scope;   /* --var-norm-scope: whole or signal */
    double baseline_lr;  /* --baseline-lr: the baseline networks' Adam rate; 0: --lr */
    int norm_signal;     /* set by sigopt_check: scope is signal */
} sigopt;

/* var_norm 1, scope whole, baseline_lr 0. */
void sigopt_defaults(sigopt *s);
/* The three flags, bound to s, into d; returns how many. */
int sigopt_flags(sigopt *s, flag_def *d);
/* Their ranges, and that each applies: --baseline-lr to a learned baseline
 * (learned set), the signal scope to sf and muprop (est the estimator's
 * name).  One line naming the flag into err; -1 on a bad one. */
int sigopt_check(sigopt *s, int learned, const char *est, char *err);
/* The baseline networks' rate, given the run's. */
double sigopt_baseline_lr(const sigopt *s, double lr);

#endif
