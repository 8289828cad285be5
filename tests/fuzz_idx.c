/* fuzz_idx.c: libFuzzer target for the IDX reader.
 *
 * Each input is written to a file and read three ways (any kind, images,
 * labels), then gzipped and read again.  Besides the sanitizers' checks, the
 * two paths must agree: gzip is only a container, so unless the input itself
 * looks like gzip, the plain and the gzipped file hold the same IDX and must
 * give the same result and the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "idx.h"

static char dir[4096], plain_path[4200], gz_path[4200];

static void remove_files(void)
{
    unlink(plain_path);
    unlink(gz_path);
    rmdir(dir);
}

static void setup(void)
{
    /* /dev/shm keeps the per-input file writes off the disk. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/gsvae-fuzz.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz_idx: mkdtemp");
        abort();
    }
    snprintf(plain_path, sizeof plain_path, "%s/input", dir);
    snprintf(gz_path, sizeof gz_path, "%s/input.gz", dir);
    atexit(remove_files);
}

static void write_file(const char *path, const uint8_t *data, size_t size, int gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb1");
        if (!g || (size && gzwrite(g, data, (unsigned)size) != (int)size) || gzclose(g) != Z_OK) {
            fprintf(stderr, "fuzz_idx: cannot write %s\n", path);
            abort();
        }
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz_idx: cannot write %s\n", path);
        abort();
    }
}

/* Read path every way; check the invariants of a success and the shape of
 * a failure.  Returns idx_read's result, with its file in *keep. */
static int read_all_ways(const char *path, idx_file *keep)
{
    char err[IDX_ERR_LEN];
    int rc = idx_read(path, keep, err);
    if (rc == 0) {
        if (!keep->data || keep->count == 0 || keep->count > IDX_MAX_ITEMS ||
            keep->rows == 0 || keep->rows > IDX_MAX_SIDE || keep->cols == 0 ||
            keep->cols > IDX_MAX_SIDE || (keep->kind != IDX_IMAGES && keep->kind != IDX_LABELS))
            abort();
    } else {
        if (rc != -1 || keep->data || strncmp(err, path, strlen(path)) != 0 ||
            strchr(err, '\n'))
            abort();
    }
    idx_kind kinds[2] = {IDX_IMAGES, IDX_LABELS};
    for (int k = 0; k < 2; k++) {
        idx_file f;
        int r = idx_read_kind(path, kinds[k], &f, err);
        /* A kind-specific read succeeds only where the generic one did. */
        if (r == 0 && (rc != 0 || f.kind != kinds[k] || f.count != keep->count))
            abort();
        if (r == 0 && kinds[k] == IDX_LABELS)
            for (uint32_t i = 0; i < f.count; i++)
                if (f.data[i] > 9)
                    abort();
        if (r != 0 && f.data)
            abort();
        idx_free(&f);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        setup();
    idx_file a, b;
    write_file(plain_path, data, size, 0);
    int ra = read_all_ways(plain_path, &a);
    write_file(gz_path, data, size, 1);
    int rb = read_all_ways(gz_path, &b);

    int looks_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!looks_gzip) {
        if (ra != rb)
            abort();
        if (ra == 0 && (a.kind != b.kind || a.count != b.count || a.rows != b.rows ||
                        a.cols != b.cols ||
                        memcmp(a.data, b.data, (size_t)a.count * a.rows * a.cols) != 0))
            abort();
    }
    idx_free(&a);
    idx_free(&b);
    return 0;
}
