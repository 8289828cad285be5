#include "schedule.h"

#include <math.h>

double schedule_tau(const tau_schedule *s, long step)
{
    long t = s->every > 0 ? step / s->every * s->every : step;
    double tau = s->tau0 * exp(-s->rate * (double)t);
    return tau > s->tau_min ? tau : s->tau_min;
}
