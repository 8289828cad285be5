#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

/* The files a run writes; a directory holding one of the first three
 * holds a run. */
static const char *const run_files[] = {"model.ckpt", "log.csv", "summary.json"};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* NAME without a trailing ".tmp.DIGITS", into base; 1 when it had one. */
static int strip_tmp(const char *name, char *base, size_t len)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name || !t[5] || (size_t)(t - name) >= len)
        return 0;
    for (const char *p = t + 5; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    memcpy(base, name, (size_t)(t - name));
    base[t - name] = '\0';
    return 1;
}

static int is_run_file(const char *name)
{
    for (size_t i = 0; i < sizeof run_files / sizeof run_files[0]; i++)
        if (!strcmp(name, run_files[i]))
            return 1;
    return 0;
}

static int is_run_output(const char *name)
{
    return is_run_file(name) || ends_with(name, ".png");
}

static void join(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

int rundir_finished(const char *dir)
{
    char path[4400], buf[4096];
    join(path, sizeof path, dir, "summary.json");
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The flag sits in the summary's head, before any figure. */
    return strstr(buf, "\"interrupted\": false") != NULL;
}

/* The lock of the run directory this process prepared last: held from
 * rundir_prepare to the process's exit (the kernel drops it then, however
 * the process ends).  Kept open: closing any descriptor of the file would
 * drop the process's lock on it. */
static int lock_fd = -1;

/* Take dir/.lock (an fcntl write lock on the whole file, which network file
 * systems honour across hosts as flock may not), or fail naming the holder. */
static int lock_dir(const char *dir, char *err)
{
    char path[4400];
    join(path, sizeof path, dir, RUNDIR_LOCK);
    if (lock_fd >= 0)
        close(lock_fd); /* the run prepared before in this process is over */
    lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0)
        return errf(err, "%s: cannot open: %s", path, strerror(errno));
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(lock_fd, F_SETLK, &l) == 0)
        return 0;
    int saved = errno;
    struct flock who = l;
    long pid = fcntl(lock_fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
    close(lock_fd);
    lock_fd = -1;
    if (saved != EACCES && saved != EAGAIN)
        return errf(err, "%s: cannot lock: %s", path, strerror(saved));
    char holder[32] = "";
    if (pid > 0) /* the holder may be gone by the time F_GETLK looks */
        snprintf(holder, sizeof holder, " (pid %ld)", pid);
    return errf(err, "%s: in use by another gsvae run%s; wait for it to end or choose another "
                     "--out", dir, holder);
}

int rundir_prepare(const char *dir, int resume, int force, char *err)
{
    if (make_dir(dir, err) != 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return errf(err, "%s: cannot read directory: %s", dir, strerror(errno));
    char path[4400], base[256], first_run[256], first_foreign[256];
    const char *holds = NULL, *foreign = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, RUNDIR_LOCK) ||
            (strip_tmp(n, base, sizeof base) && is_run_output(base)))
            continue;
        if (is_run_file(n) && !holds) {
            snprintf(first_run, sizeof first_run, "%s", n);
            holds = first_run;
        } else if (!is_run_output(n) && !foreign) {
            snprintf(first_foreign, sizeof first_foreign, "%s", n);
            foreign = first_foreign;
        }
    }
    closedir(d);
    if (foreign)
        return errf(err, "%s: holds %s, which is not a gsvae run's; choose an empty or new "
                         "directory for --out", dir, foreign);
    if (holds && !resume && !force)
        return errf(err, "%s: holds a run (%s); --resume continues it, --force replaces it", dir,
                    holds);
    if (!holds && resume)
        return errf(err, "%s/model.ckpt: no run to resume here", dir);
    /* The lock before any file is removed: a live run's files are its own. */
    if (lock_dir(dir, err) != 0)
        return -1;
    if (holds && force)
        fprintf(stderr, "gsvae train: --force: replacing the run in %s\n", dir);
    if (!(d = opendir(dir)))
        return errf(err, "%s: cannot read directory: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        /* A temporary file of an output is a killed writer's leftover;
         * with --force the outputs go too. */
        int stale = strip_tmp(n, base, sizeof base) && is_run_output(base);
        if (stale || (holds && force && is_run_output(n))) {
            join(path, sizeof path, dir, n);
            if (remove(path) != 0 && !stale) {
                int saved = errno;
                closedir(d);
                return errf(err, "%s: cannot remove: %s", path, strerror(saved));
            }
        }
    }
    closedir(d);
    /* Prove the directory writable before any training. */
    snprintf(path, sizeof path, "%s/.gsvae-probe.%ld", dir, (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return errf(err, "%s: cannot write: %s", dir, strerror(errno));
    int bad = write(fd, "gsvae\n", 6) != 6 || fsync(fd) != 0;
    int saved = errno;
    close(fd);
    remove(path);
    if (bad)
        return errf(err, "%s: cannot write: %s", dir, strerror(saved));
    return 0;
}

int rundir_check_room(const char *dir, uint64_t bytes, char *err)
{
    struct statvfs s;
    if (statvfs(dir, &s) != 0)
        return 0;  /* no answer from the file system: the write will tell */
    uint64_t avail = (uint64_t)s.f_bavail * (uint64_t)s.f_frsize;
    if (avail < bytes)
        return errf(err, "%s: %llu bytes free, a checkpoint of this run takes about %llu", dir,
                    (unsigned long long)avail, (unsigned long long)bytes);
    return 0;
}

void rundir_remove_images(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[4400];
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (ends_with(e->d_name, ".png")) {
            join(path, sizeof path, dir, e->d_name);
            remove(path);
        }
    closedir(d);
}
