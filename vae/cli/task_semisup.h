/* task_semisup.h: what the commands that read a semisup checkpoint
 * (analogies) share with `gsvae train --task semisup`. */
#ifndef GSVAE_TASK_SEMISUP_H
#define GSVAE_TASK_SEMISUP_H

#include "driver.h"
#include "semisup.h"

/* Open a semisup checkpoint and build its model (MLP or conv, as stored).
 * o gets the run's options; their strings live in *text, the caller's to
 * free after their last use; on failure nothing is left to free.  A
 * checkpoint of another task is refused. */
int ss_task_load_model(const char *path, run_opts *o, char **text, ss_model *m, char *err);

#endif
