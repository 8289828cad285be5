#!/bin/sh
# Slurm job array over results/estimators-beyond/final/jobs.txt (written by scripts/reproduce.sh paper-final): task i
# runs line i through scripts/run-job.sh, which skips a finished job.  Submit
# from the repository root: sbatch results/estimators-beyond/final/slurm.sh (options given to sbatch,
# e.g. --partition or --array=1-33%8, override those below).
#SBATCH --job-name=gsvae-paper-final
#SBATCH --array=1-33
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=03:00:00
#SBATCH --output=results/estimators-beyond/final/runs/slurm-%a.out
[ -f scripts/run-job.sh ] || { echo "submit from the repository root" >&2; exit 2; }
exec sh scripts/run-job.sh results/estimators-beyond/final "$SLURM_ARRAY_TASK_ID"
