/* flags.h: a table-driven parser for --name VALUE / --name=VALUE flags.
 * The same table prints --help, with each flag's current (default) value,
 * so the help text cannot drift from what the parser accepts. */
#ifndef GSVAE_FLAGS_H
#define GSVAE_FLAGS_H

#include <stdio.h>

typedef enum { FLAG_INT, FLAG_LONG, FLAG_DOUBLE, FLAG_STRING, FLAG_BOOL } flag_kind;

typedef struct {
    const char *name;      /* without the dashes */
    flag_kind kind;
    void *dst;             /* int*, long*, double*, const char**, int* */
    const char *metavar;   /* NULL for FLAG_BOOL */
    const char *help;
} flag_def;

/* Parse argv; positional arguments are collected into pos (at most maxpos).
 * Returns 0 on success, 1 when --help was given, -1 on error (message in
 * err naming the flag and the reason).  Numbers must parse completely;
 * ranges are checked by the caller. */
int flags_parse(const flag_def *defs, int argc, char **argv, char **pos, int maxpos,
                int *npos, char *err);
void flags_usage(FILE *out, const char *synopsis, const char *about, const flag_def *defs);
/* The same table for a manual page: one roff .TP paragraph per flag, with
 * the help text and default that flags_usage prints, then --help. */
void flags_man(FILE *out, const flag_def *defs);
/* s as roff text: backslashes and minus signs escaped, and a '.' or '\''
 * that would start a line made literal. */
void flags_roff(FILE *out, const char *s);

#endif
