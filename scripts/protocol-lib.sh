# protocol-lib.sh: the rules of the Table 1 protocol that protocol-jobs.sh,
# protocol-select.sh and protocol-table.sh share (sourced, not run).

# The reading of the paper's VAE, PROTOCOL_READING:
#   linear  the default: 784-200-784 and 784-(20x10)-784 with no hidden
#           layer (Sec. 4.2: "a single hidden layer with 200 Bernoulli
#           variables or 20 categorical variables"; Figure 4's 784-200-784);
#           every row of Table 1.
#   deep    the other reading: deterministic hidden layers of 512 and 256
#           in the encoder and (mirrored) the decoder, the authors'
#           notebook's, under the same protocol otherwise; the VAE rows
#           only (the SBN's layers are stochastic in either reading).
#           Run into their own directory: scripts/reproduce.sh paper
#           --out results/protocol/deep/sweep, and so on.
#   beyond  not a reading of the paper: the estimators that came after it
#           (arm, disarm, rebar, relax, vimco on its 5-sample bound) and
#           Gumbel-Softmax on the same bound and with a learned temperature,
#           on the paper's linear VAE under the same protocol, the VAE rows only
#           (results/estimators-beyond/; --out ... as for deep).
# protocol_rows: the rows the reading covers; vae_hidden: the VAE's
# --hidden.
case ${PROTOCOL_READING:-linear} in
linear) protocol_rows="sbn-bernoulli sbn-categorical vae-bernoulli vae-categorical" vae_hidden=none ;;
deep) protocol_rows="vae-bernoulli vae-categorical" vae_hidden=512,256 ;;
beyond) protocol_rows="vae-bernoulli vae-categorical" vae_hidden=none ;;
*) echo "PROTOCOL_READING=$PROTOCOL_READING: expected linear, deep or beyond" >&2; exit 2 ;;
esac
# PROTOCOL_ROWS: a subset of them (e.g. "vae-bernoulli vae-categorical").
protocol_rows=${PROTOCOL_ROWS:-$protocol_rows}

# reference ROW ESTIMATOR: the published figure a cell is set beside, empty
# if none: the paper's Table 1 for the readings of the paper; for beyond,
# the ARM paper's (Yin & Zhou 2019, Table 2, the linear 200-unit Bernoulli
# VAE on statically binarized MNIST, test -log p(x)), which has arm and
# rebar (its Concrete and NVIL figures are for estimators not in the beyond
# rows).  reference_name: what the figures are, for a table's labels;
# Uses plot_paper (scripts/plot/lib.sh).
reference() {
    case ${PROTOCOL_READING:-linear} in
    beyond)
        case $1-$2 in
        vae-bernoulli-arm) echo 107.2 ;;
        vae-bernoulli-rebar) echo 107.7 ;;
        esac ;;
    *) plot_paper "$1" "$2" ;;
    esac
}
# figure_title: the title of the curves' figure (empty: curves.sh's own,
# the counterpart of the paper's figure); figure_ymax: the top of its loss
# axis (empty: gnuplot's own): the learned temperature's runs climb to 290
# nats and would flatten the other lines.
case ${PROTOCOL_READING:-linear} in
beyond) reference_name="ARM paper" figure_ymax=160
        figure_title="Estimators after the paper under Table 1's protocol: variational autoencoders on binarized MNIST" ;;
*) reference_name=paper figure_title="" figure_ymax="" ;;
esac

# row_estimators ROW: the cells of a row, as --estimator names: the paper's
# seven, or with PROTOCOL_READING=beyond the later estimators defined for
# the row's latent type (ARM and DisARM are Bernoulli-only).
row_estimators() {
    case ${PROTOCOL_READING:-linear}-$1 in
    beyond-vae-bernoulli) echo "arm disarm rebar relax vimco gumbel-k5 gumbel-taulearned" ;;
    beyond-*) echo "rebar relax vimco gumbel-k5 gumbel-taulearned" ;;
    *) echo "sf darn muprop st annealed-st gumbel st-gumbel" ;;
    esac
}

# estimator_flags EST: the flags that make the cell's estimator: vimco
# trains the K = 5 sample bound (Mnih & Rezende 2016 use 5 among others),
# gumbel-k5 the Concrete relaxation of the same bound (the issue's
# comparison for VIMCO), gumbel-taulearned the ELBO with the temperature a
# trained parameter instead of the schedule.
estimator_flags() {
    case $1 in
    vimco) echo "--estimator vimco --samples 5" ;;
    gumbel-k5) echo "--estimator gumbel --samples 5" ;;
    gumbel-taulearned) echo "--estimator gumbel --tau learned" ;;
    *) echo "--estimator $1" ;;
    esac
}

# uses_anneal ROW EST: whether the cell's sweep covers the annealing grid
# N in {500, 1000} x r in {1e-5, 1e-4} beside the learning rates: the VAE's
# temperature estimators (the paper: "N in {500, 1000}, r in {1e-5, 1e-4},
# chosen on validation"), and annealed-ST's slope schedule in every row (the
# paper states none; results/protocol/causes/README.md measured 2.1 nats
# between two of these schedules on the categorical SBN).  The SBN's
# Gumbel-Softmax keeps tau = 1, as the paper says.
uses_anneal() {
    case $1-$2 in
    vae-*-gumbel | vae-*-st-gumbel | vae-*-gumbel-k5 | *-annealed-st) return 0 ;;
    esac
    return 1
}

# grid_size ROW EST: the settings of the cell's whole sweep.
grid_size() {
    if uses_anneal "$1" "$2"; then echo 24; else echo 6; fi
}

# final_steps ROW: the budget of the row's final runs: 50,000 steps for the
# SBN rows, 150,000 for the VAE rows.  The paper states none
# (results/protocol/README.md, "The final budget": the SBN's Gumbel-Softmax
# validation curves are flat by 30,000 steps, the VAE's still fall at 50,000
# and lie within 1.5 nats of the paper at 150,000).  PROTOCOL_SBN_FINAL_STEPS
# and PROTOCOL_VAE_FINAL_STEPS set a row kind's, PROTOCOL_FINAL_STEPS both; a
# budget raised after the finals ran continues them (scripts/run-job.sh).
final_steps() {
    case $1 in
    sbn-*) echo "${PROTOCOL_SBN_FINAL_STEPS:-${PROTOCOL_FINAL_STEPS:-50000}}" ;;
    *) echo "${PROTOCOL_VAE_FINAL_STEPS:-${PROTOCOL_FINAL_STEPS:-150000}}" ;;
    esac
}
