/* main.c: dispatch to the commands of cli.h. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"train", cmd_train, "train a model (--task vae, sbn or semisup) and write its log and checkpoint"},
    {"eval", cmd_eval, "test -ELBO and importance-sampled -log p(x) of a checkpoint"},
    {"sample", cmd_sample, "decode samples from the prior of a checkpoint into a PNG grid"},
    {"recon", cmd_recon, "test images beside their reconstructions, as a PNG grid"},
    {"analogies", cmd_analogies, "a semisup checkpoint's styles (rows) decoded with every class (columns), as a PNG grid"},
    {"gradvar", cmd_gradvar, "variance and bias of every gradient estimator on one test batch"},
    {"bench", cmd_bench, "time training and evaluation; GFLOP/s against the sgemm-bound limit"},
    {"inspect", cmd_inspect, "print the kind, dimensions and a summary of IDX files"},
    {"gumbel-demo", cmd_gumbel_demo, "Gumbel-Softmax samples and their mean per temperature (Figure 1)"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gsvae COMMAND [FLAGS]\n"
            "Categorical VAEs with Gumbel-Softmax and other gradient estimators.\n\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\n`gsvae COMMAND --help` describes the flags of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "manpage"))
        return cli_manpage(stdout, commands, sizeof commands / sizeof commands[0]);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "gsvae: unknown command '%s' (try gsvae --help)\n", argv[1]);
    return 2;
}
