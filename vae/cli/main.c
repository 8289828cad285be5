/* main.c: dispatch to the commands of cli.h. */
#define _GNU_SOURCE /* setenv */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * OpenBLAS built with DYNAMIC_ARCH chooses its kernels once, when the library
 * loads, from the CPU's model number; a CPU newer than the library (Debian 12's
 * 0.3.21 on a 2023 Xeon) falls back to the SSE3 "Prescott" kernels, which run
 * the linear models' sgemm at 0.6x the speed of the AVX-512 ones.  When that
 * happened, the CPU has AVX-512 (or AVX2 with FMA) and the user has not named
 * kernels in OPENBLAS_CORETYPE, gsvae names them there (SkylakeX, Haswell) and
 * runs itself again, so the library loads them.  Any OPENBLAS_CORETYPE the user
 * sets, Prescott included, is left alone; if the new start fails, gsvae goes on
 * with the kernels it has.  The kernels are part of "versions" in every
 * summary.json: they change the rounding, and with it the last digits.
 */
static void blas_use_cpu_kernels(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott"))
        return;
    const char *core = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core || setenv("OPENBLAS_CORETYPE", core, 1))
        return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv)
{
    blas_use_cpu_kernels(argv);
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
