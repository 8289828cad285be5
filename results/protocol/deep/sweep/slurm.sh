#!/bin/sh
# Slurm job array over results/protocol/deep/sweep/jobs.txt (written by scripts/reproduce.sh paper): task i
# runs line i through scripts/run-job.sh, which skips a finished job.  Submit
# from the repository root: sbatch results/protocol/deep/sweep/slurm.sh (options given to sbatch,
# e.g. --partition or --array=1-192%8, override those below).
#SBATCH --job-name=gsvae-paper
#SBATCH --array=1-192
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=03:00:00
#SBATCH --output=results/protocol/deep/sweep/runs/slurm-%a.out
[ -f scripts/run-job.sh ] || { echo "submit from the repository root" >&2; exit 2; }
exec sh scripts/run-job.sh results/protocol/deep/sweep "$SLURM_ARRAY_TASK_ID"
