/* manpage.c: `gsvae manpage`, the gsvae(1) manual page as roff.
 *
 * Nothing in the page is written twice: the command list is main.c's
 * table, the train flags are the driver's tables of every task (through
 * flags_man, as --help prints them through flags_usage), and every other command's
 * section is that command's own --help output, run here and set in roff.
 * `make install` writes the page with this command, so the page of an
 * installed gsvae always describes the flags that binary accepts. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "flags.h"
#include "driver.h"

/* What `run` prints on standard output for argv (NULL-terminated, without
 * the program and command names), captured through a temporary file;
 * malloc'd, NULL on failure. */
static char *captured_output(int (*cmd)(int, char **), char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *tmp = tmpfile();
    if (!tmp)
        return NULL;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0 || dup2(fileno(tmp), STDOUT_FILENO) < 0) {
        if (saved >= 0)
            close(saved);
        fclose(tmp);
        return NULL;
    }
    cmd(argc, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    long len = ftell(tmp);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (text) {
        rewind(tmp);
        size_t got = fread(text, 1, (size_t)len, tmp);
        text[got] = '\0';
    }
    fclose(tmp);
    return text;
}

/* Where a help line "  LEFT  RIGHT" splits: the offset of RIGHT, or 0 when
 * the line has no run of two spaces after its indent. */
static size_t item_split(const char *line, size_t len)
{
    for (size_t i = 3; i + 1 < len; i++)
        if (line[i] == ' ' && line[i + 1] == ' ') {
            size_t j = i;
            while (j < len && line[j] == ' ')
                j++;
            return j < len ? j : 0;
        }
    return 0;
}

static void roff_n(FILE *out, const char *s, size_t n)
{
    char buf[4096];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    flags_roff(out, buf);
}

/* The term of a .TP item: an option in bold and its argument in italics
 * ("--data DIR"), or the whole word in bold ("gumbel", "-h, --help"). */
static void roff_term(FILE *out, const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == ' ')
        n--;
    const char *sp = memchr(s, ' ', n);
    fputs("\\fB", out);
    if (sp && s[0] == '-' && sp[1] != '-') {
        roff_n(out, s, (size_t)(sp - s));
        fputs("\\fR \\fI", out);
        roff_n(out, sp + 1, n - (size_t)(sp - s) - 1);
    } else {
        roff_n(out, s, n);
    }
    fputs("\\fR\n", out);
}

/* A line of text; one that ends in a hyphen is joined to the next without
 * a space ("importance-" / "sampled"). */
static void roff_line(FILE *out, const char *s, size_t n)
{
    roff_n(out, s, n);
    fputs(n > 1 && s[n - 1] == '-' && s[n - 2] != ' ' ? "\\c\n" : "\n", out);
}

/* The layout flags_usage writes, in roff: "usage: ..." in bold, unindented
 * lines as filled text (a line ending in ':' as a heading), "  LEFT  RIGHT"
 * lines as tagged paragraphs, deeper indented lines continuing the
 * paragraph above them, other indented lines on lines of their own. */
static void help_to_roff(FILE *out, const char *text)
{
    enum { NEW_PARA, TEXT, ITEM, OWN_LINE } prev = NEW_PARA;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        size_t indent = 0;
        while (indent < len && line[indent] == ' ')
            indent++;
        size_t split;
        if (indent == len) {
            prev = NEW_PARA;
        } else if (!strncmp(line, "usage: ", 7)) {
            fputs(".PP\n\\fB", out);
            roff_n(out, line + 7, len - 7);
            fputs("\\fR\n", out);
            prev = NEW_PARA;
        } else if (indent == 0) {
            if (prev == NEW_PARA || prev == ITEM)
                fputs(".PP\n", out);
            else if (prev == OWN_LINE)
                fputs(".br\n", out);
            if (line[len - 1] == ':') {
                fputs("\\fB", out);
                roff_n(out, line, len);
                fputs("\\fR\n", out);
            } else {
                roff_line(out, line, len);
            }
            prev = TEXT;
        } else if (indent == 2 && (split = item_split(line, len)) != 0) {
            fputs(".TP\n", out);
            roff_term(out, line + 2, split - 2);
            roff_line(out, line + split, len - split);
            prev = ITEM;
        } else if (prev == ITEM && indent > 2) {
            roff_line(out, line + indent, len - indent);
        } else {
            fputs(prev == NEW_PARA || prev == ITEM ? ".PP\n" : ".br\n", out);
            roff_line(out, line + indent, len - indent);
            prev = OWN_LINE;
        }
        line += len + (nl != NULL);
    }
}

/* A command's section from its own --help output. */
static void man_from_help(FILE *out, const char *title, int (*cmd)(int, char **), char **argv)
{
    fputs(".SS \"", out);
    flags_roff(out, title);
    fputs("\"\n", out);
    char *text = captured_output(cmd, argv);
    if (text) {
        help_to_roff(out, text);
        free(text);
    }
}

/* `gsvae train`: for each task, its flags straight from the driver's table
 * (the common flags and the task's, as --help prints them), then what its
 * --help adds (estimators, sources). */
static void man_train(FILE *out)
{
    const task_ops *const tasks[] = {&task_vae, &task_sbn, &task_semisup};
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        const task_ops *ops = tasks[i];
        run_opts o;
        void *t = calloc(1, ops->state_size);
        if (!t)
            return;
        driver_defaults(ops, &o, t);
        flag_def defs[DRV_MAX_FLAGS];
        driver_flag_table(ops, &o, t, defs);
        fprintf(out, ".SS \"gsvae train --task %s\"\n.PP\n\\fB", ops->name);
        flags_roff(out, ops->synopsis);
        fputs("\\fR\n.PP\n", out);
        flags_roff(out, ops->about);
        fputs("\n.PP\n\\fBflags:\\fR\n", out);
        flags_man(out, defs);
        char *text = NULL;
        size_t len = 0;
        FILE *mem = ops->help ? open_memstream(&text, &len) : NULL;
        if (mem) {
            ops->help(mem);
            fclose(mem);
            help_to_roff(out, text);
        }
        free(text);
        free(t);
    }
}

int cli_manpage(FILE *out, const cli_command *cmds, size_t n)
{
    fputs(".TH GSVAE 1 \"\" \"gsvae " GSVAE_VERSION "\" \"User Commands\"\n"
          ".SH NAME\n"
          "gsvae \\- categorical VAEs with Gumbel\\-Softmax and other gradient estimators\n"
          ".SH SYNOPSIS\n"
          "\\fBgsvae\\fR \\fICOMMAND\\fR [\\fIFLAGS\\fR]\n"
          ".br\n"
          "\\fBgsvae\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR\n"
          ".SH DESCRIPTION\n"
          "A C11 reproduction of \\(lqCategorical Reparameterization with Gumbel\\-Softmax\\(rq\n"
          "(Jang, Gu and Poole, ICLR 2017), and a tool to compare gradient estimators for\n"
          "discrete latent variables on the same model, data and budget.  Flags take the\n"
          "form \\fB\\-\\-name\\fR \\fIVALUE\\fR or \\fB\\-\\-name=\\fR\\fIVALUE\\fR.\n"
          ".SH COMMANDS\n",
          out);
    for (size_t i = 0; i < n; i++) {
        fputs(".TP\n\\fB", out);
        flags_roff(out, cmds[i].name);
        fputs("\\fR\n", out);
        flags_roff(out, cmds[i].help);
        fputc('\n', out);
    }
    fputs(".SH FLAGS\n", out);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(cmds[i].name, "train")) {
            man_train(out);
            continue;
        }
        char title[64];
        snprintf(title, sizeof title, "gsvae %s", cmds[i].name);
        char *help[] = {"--help", NULL};
        man_from_help(out, title, cmds[i].run, help);
    }
    fputs(".SH EXIT STATUS\n"
          "0 on success, 1 when the work failed (a file that cannot be read or written, a\n"
          "run that diverged), 2 for a usage error (an unknown command or flag, a value out\n"
          "of range); the message names the flag or file and the reason.\n"
          ".SH ENVIRONMENT\n"
          ".TP\n\\fBOPENBLAS_CORETYPE\\fR\n"
          "the OpenBLAS kernels.  Unset, and where the library fell back to its SSE3\n"
          "\\fIPrescott\\fR kernels on a CPU with AVX-512 or AVX2, gsvae sets it to\n"
          "\\fISkylakeX\\fR or \\fIHaswell\\fR and starts itself again; a value the user\n"
          "sets is kept.  The kernels change the last digits of every result; summary.json\n"
          "names them under \"versions\", and the checkpoint too: \\fBtrain \\-\\-resume\\fR on\n"
          "other kernels warns, and summary.json's \"blas_kernels\" lists every set the run\n"
          "trained with.\n"
          ".SH FILES\n"
          ".TP\n\\fIdata/mnist/\\fR\n"
          "the MNIST IDX files (gzipped or not) that \\fB\\-\\-data\\fR names by default;\n"
          "\\fBmake data\\fR in the source tree fetches them\n"
          ".SH SEE ALSO\n"
          "README.md and results/README.md in the source tree.\n",
          out);
    return fflush(out) == 0 && !ferror(out) ? 0 : 1;
}
