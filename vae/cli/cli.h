/* cli.h: the commands of the gsvae program.  Each takes the arguments after
 * its name and returns the process exit status. */
#ifndef GSVAE_CLI_H
#define GSVAE_CLI_H

int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_recon(int argc, char **argv);
int cmd_gradvar(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
