/* cmd_inspect.c: `gsvae inspect FILE...`, one summary line per IDX file.
 * A bad file is reported and skipped, so one run checks a whole directory. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "idx.h"

static void inspect_usage(FILE *out)
{
    fprintf(out,
            "usage: gsvae inspect FILE...\n"
            "Read each IDX file (gzipped or plain) and print one line about it:\n"
            "  images: the count, rows and columns and the mean pixel (0..255);\n"
            "  labels: the count and how many of each digit 0..9.\n"
            "A file that fails to load is reported on stderr with the reason and\n"
            "skipped.  Exit status: 0 when every file loaded, 1 when any failed,\n"
            "2 for a usage error.\n\n"
            "flags:\n"
            "  -h, --help  show this help\n"
            "  --          end of flags (for file names that start with '-')\n");
}

/* Print the summary line of one file; 0 on success, -1 after printing the
 * error. */
static int inspect_one(const char *path)
{
    char err[IDX_ERR_LEN];
    idx_file f;
    if (idx_read(path, &f, err) != 0) {
        fprintf(stderr, "gsvae inspect: %s\n", err);
        return -1;
    }
    size_t n = (size_t)f.count * f.rows * f.cols;
    if (f.kind == IDX_IMAGES) {
        unsigned long long sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += f.data[i];
        printf("%s: images %u x %u x %u, mean pixel %.2f\n", path, f.count, f.rows, f.cols,
               (double)sum / (double)n);
    } else {
        /* idx_read takes any kind, so the 0..9 check of labels is ours. */
        if (idx_check_labels(&f, path, err) != 0) {
            fprintf(stderr, "gsvae inspect: %s\n", err);
            idx_free(&f);
            return -1;
        }
        unsigned counts[10] = {0};
        for (size_t i = 0; i < n; i++)
            counts[f.data[i]]++;
        printf("%s: labels %u, counts", path, f.count);
        for (int d = 0; d < 10; d++)
            printf(" %u", counts[d]);
        printf("\n");
    }
    idx_free(&f);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    /* Flags first, as a user may put --help anywhere; after "--" every
     * argument is a file. */
    int nfiles = 0, dashdash = argc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            dashdash = i;
            nfiles += argc - i - 1;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            inspect_usage(stdout);
            return 0;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "gsvae inspect: unknown flag '%s' (try gsvae inspect --help)\n", a);
            return 2;
        }
        nfiles++;
    }
    if (nfiles == 0) {
        fprintf(stderr, "gsvae inspect: no files given (usage: gsvae inspect FILE...)\n");
        return 2;
    }
    int failed = 0;
    for (int i = 0; i < argc; i++) {
        if (i == dashdash)
            continue;
        if (inspect_one(argv[i]) != 0)
            failed = 1;
        /* Keep stdout and stderr lines in file order when both go to one place. */
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
