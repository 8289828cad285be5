/* sbn.c: structured output prediction with stochastic binary networks
 * (gsvae train --task sbn).  Placeholder until the task lands. */
#include <stdio.h>

#include "cli.h"

int cmd_train_sbn(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "gsvae train: --task sbn: not built yet\n");
    return 2;
}
