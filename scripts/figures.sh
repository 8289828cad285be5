#!/bin/sh
# figures.sh: redraw every PNG under results/ that comes from committed data
# (`make figures`), each with the scripts of scripts/plot/:
#   results/figure1/        Figure 1, from `gsvae gumbel-demo` (seeded)
#   results/full/           Figures 3 and 4, the temperature schedules, and
#                           README.md's tables, from results/full/runs/
#   results/vae/curves.png  the paper's VAE with Gumbel-Softmax, from the
#                           logs beside it
#   results/estimators-beyond/figures/gradvar.png  the estimators' gradient
#                           variances, from the gradvar CSVs beside it
#                           (scripts/gradvar-figure.sh measures them)
#   results/semisup/genacc.png  q(y|x)'s and the generative accuracy along
#                           the semisup runs of results/semisup/genacc/
#                           (scripts/semisup-genacc.sh trains them)
# The other PNGs under results/ (reconstructions, samples, predictions,
# results/quick/figures) are written by the runs themselves or from runs
# that are not committed: `make reproduce-quick` redraws results/quick.
set -eu
cd "$(dirname "$0")/.."
command -v gnuplot > /dev/null 2>&1 ||
    { echo "figures.sh: gnuplot not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
GSVAE_BIN=${GSVAE_BIN:-./gsvae}
export GSVAE_BIN
sh scripts/plot/figure1.sh results/figure1
sh scripts/aggregate.sh results/full full
sh scripts/plot/gumbel-vae.sh results/vae/curves.png results/vae/categorical results/vae/bernoulli
sh scripts/gradvar-figure.sh --redraw
g=results/semisup/genacc
sh scripts/plot/genacc.sh results/semisup/genacc.png $g/exact-a0.8-s1-genacc.csv:exact \
    $g/gumbel-a0.8-s1-genacc.csv:gumbel $g/st-gumbel-a0.8-s1-genacc.csv:st-gumbel
echo "figures.sh: drew results/figure1/figure1.png, results/full/figures/{figure3-sbn,figure4-vae,tau}.png, results/vae/curves.png, results/estimators-beyond/figures/gradvar.png, results/semisup/genacc.png"
