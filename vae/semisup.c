/* semisup.c: semi-supervised classification with the M2 model
 * (gsvae train --task semisup).  Placeholder until the task lands. */
#include <stdio.h>

#include "cli.h"

int cmd_train_semisup(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "gsvae train: --task semisup: not built yet\n");
    return 2;
}
