/* rundir.h: the output directory of a training run, made safe before the
 * first step: a finished or foreign run is never overwritten, the directory
 * is proven writable and roomy enough for a checkpoint, and temporary files
 * left by a killed run are removed.
 *
 * A run directory holds model.ckpt, log.csv, summary.json and PNG images
 * (plus NAME.tmp.PID while one of them is being written), and .lock. */
#ifndef GSVAE_RUNDIR_H
#define GSVAE_RUNDIR_H

#include <stdint.h>

/* The lock file of a run directory (rundir_prepare). */
#define RUNDIR_LOCK ".lock"

/* Create dir (mkdir -p) and make it ready for a run:
 * - dir/.lock is locked (fcntl) until the process exits, so that two
 *   processes never run in one directory (two hosts of a grid handed the
 *   same job, a resume started while the run still goes): the second is
 *   refused with the first's pid, before it touches a file;
 * - a directory holding a run (model.ckpt, log.csv or summary.json) is
 *   refused unless resume (continue it) or force (replace it: its outputs
 *   are removed, and stderr says so);
 * - a directory holding any other file is refused, force or not;
 * - stale temporary files of run outputs (NAME.tmp.PID) are removed;
 * - a probe file is written, synced and removed, so an unwritable
 *   directory is found now, not when the first checkpoint is due.
 * Returns 0, or -1 with a line naming the directory and the reason. */
int rundir_prepare(const char *dir, int resume, int force, char *err);

/* 0 when the file system of dir has at least bytes free for an
 * unprivileged writer, else -1 with a line saying how much is missing. */
int rundir_check_room(const char *dir, uint64_t bytes, char *err);

/* 1 when dir/summary.json records a finished run (its "interrupted" is
 * false), 0 when it is missing, unreadable or records a stopped one.  A run
 * whose checkpoint holds every step but whose summary is not finished was
 * stopped during its final evaluation: resuming it evaluates it. */
int rundir_finished(const char *dir);

/* Remove the PNG images of dir (a run stopped before its final outputs). */
void rundir_remove_images(const char *dir);

#endif
