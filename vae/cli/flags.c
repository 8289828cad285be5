#include "flags.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const flag_def *find(const flag_def *defs, const char *name, size_t len)
{
    for (const flag_def *d = defs; d->name; d++)
        if (strlen(d->name) == len && !strncmp(d->name, name, len))
            return d;
    return NULL;
}

static int set_value(const flag_def *d, const char *v, char *err)
{
    char *end;
    errno = 0;
    switch (d->kind) {
    case FLAG_INT:
    case FLAG_LONG: {
        long long x = strtoll(v, &end, 10);
        long long lo = d->kind == FLAG_INT ? INT_MIN : LONG_MIN;
        long long hi = d->kind == FLAG_INT ? INT_MAX : LONG_MAX;
        if (!*v || *end || errno || x < lo || x > hi)
            return errf(err, "--%s: '%s' is not an integer", d->name, v);
        if (d->kind == FLAG_INT)
            *(int *)d->dst = (int)x;
        else
            *(long *)d->dst = (long)x;
        return 0;
    }
    case FLAG_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return errf(err, "--%s: '%s' is not a finite number", d->name, v);
        *(double *)d->dst = x;
        return 0;
    }
    case FLAG_STRING:
        *(const char **)d->dst = v;
        return 0;
    case FLAG_BOOL:
        break;
    }
    return errf(err, "--%s: takes no value", d->name);
}

int flags_parse(const flag_def *defs, int argc, char **argv, char **pos, int maxpos,
                int *npos, char *err)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*npos >= maxpos)
                return errf(err, "unexpected argument '%s'", a);
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const flag_def *d = find(defs, name, len);
        if (!d)
            return errf(err, "unknown flag '--%.*s' (see --help)", (int)len, name);
        if (d->kind == FLAG_BOOL) {
            /* --name sets a switch; --name=0 and --name=1 spell it out. */
            if (eq && strcmp(eq + 1, "0") != 0 && strcmp(eq + 1, "1") != 0)
                return errf(err, "--%s: takes no value (or =0, =1)", d->name);
            *(int *)d->dst = eq ? eq[1] == '1' : 1;
            continue;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return errf(err, "--%s: missing value", d->name);
        if (set_value(d, v, err) != 0)
            return -1;
    }
    return 0;
}

/* " (default X)" for a flag, or "" where it has none to show. */
static void default_text(const flag_def *d, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (d->kind) {
    case FLAG_INT:
        snprintf(buf, len, " (default %d)", *(int *)d->dst);
        break;
    case FLAG_LONG:
        snprintf(buf, len, " (default %ld)", *(long *)d->dst);
        break;
    case FLAG_DOUBLE:
        snprintf(buf, len, " (default %g)", *(double *)d->dst);
        break;
    case FLAG_STRING:
        if (*(const char **)d->dst)
            snprintf(buf, len, " (default %s)", *(const char **)d->dst);
        break;
    case FLAG_BOOL:
        break;
    }
}

void flags_usage(FILE *out, const char *synopsis, const char *about, const flag_def *defs)
{
    fprintf(out, "usage: %s\n%s\n\nflags:\n", synopsis, about);
    for (const flag_def *d = defs; d->name; d++) {
        char left[64], dflt[300];
        snprintf(left, sizeof left, "--%s%s%s", d->name, d->metavar ? " " : "",
                 d->metavar ? d->metavar : "");
        default_text(d, dflt, sizeof dflt);
        fprintf(out, "  %-24s %s%s\n", left, d->help, dflt);
    }
    fprintf(out, "  %-24s %s\n", "--help", "print this help and exit");
}

void flags_roff(FILE *out, const char *s)
{
    for (const char *c = s; *c; c++) {
        /* A control character at the start of a line would be a request. */
        if ((c == s || c[-1] == '\n') && (*c == '.' || *c == '\''))
            fputs("\\&", out);
        if (*c == '\\')
            fputs("\\e", out);
        else if (*c == '-')
            fputs("\\-", out);
        else
            fputc(*c, out);
    }
}

void flags_man(FILE *out, const flag_def *defs)
{
    for (const flag_def *d = defs; d->name; d++) {
        char dflt[300];
        default_text(d, dflt, sizeof dflt);
        fputs(".TP\n\\fB\\-\\-", out);
        flags_roff(out, d->name);
        fputs("\\fR", out);
        if (d->metavar) {
            fputs(" \\fI", out);
            flags_roff(out, d->metavar);
            fputs("\\fR", out);
        }
        fputc('\n', out);
        flags_roff(out, d->help);
        flags_roff(out, dflt);
        fputc('\n', out);
    }
    fputs(".TP\n\\fB\\-\\-help\\fR\nprint this help and exit\n", out);
}
