#!/bin/sh
# Slurm job array over results/semisup/final/jobs.txt (written by scripts/reproduce.sh semisup-paper-final): task i
# runs line i through scripts/run-job.sh, which skips a finished job.  Submit
# from the repository root: sbatch results/semisup/final/slurm.sh (options given to sbatch,
# e.g. --partition or --array=1-9%8, override those below).
#SBATCH --job-name=gsvae-semisup-paper-final
#SBATCH --array=1-9
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=30:00:00
#SBATCH --output=results/semisup/final/runs/slurm-%a.out
[ -f scripts/run-job.sh ] || { echo "submit from the repository root" >&2; exit 2; }
exec sh scripts/run-job.sh results/semisup/final "$SLURM_ARRAY_TASK_ID"
