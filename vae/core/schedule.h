/* schedule.h: the temperature annealing of the paper,
 * tau = max(tau_min, tau0 * exp(-rate * t)), with t the global step rounded
 * down to a multiple of `every` (tau changes only every `every` steps). */
#ifndef GSVAE_SCHEDULE_H
#define GSVAE_SCHEDULE_H

typedef struct {
    double tau0, tau_min, rate;
    long every;
} tau_schedule;

double schedule_tau(const tau_schedule *s, long step);

#endif
