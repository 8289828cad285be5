/* cli.h: the commands of the gsvae program.  Each takes the arguments after
 * its name and returns the process exit status. */
#ifndef GSVAE_CLI_H
#define GSVAE_CLI_H

#include <stddef.h>
#include <stdio.h>

int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_recon(int argc, char **argv);
int cmd_analogies(int argc, char **argv);
int cmd_gradvar(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_gumbel_demo(int argc, char **argv);

/* One entry of the command table (vae/cli/main.c). */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} cli_command;

/* `gsvae manpage` (not listed by --help): the gsvae(1) manual page as roff,
 * written from the commands' own flag tables and --help texts, so the page
 * cannot drift from what the program accepts. */
int cli_manpage(FILE *out, const cli_command *cmds, size_t n);

#endif
