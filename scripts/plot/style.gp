# style.gp: the one look of every gsvae figure (gnuplot 5.4, pngcairo).
#
# Load it after setting W and H (the image size in pixels) and before the
# figure's own settings.  Each gradient estimator has one line type, so one
# colour and one marker in every figure: plot ... lt est_lt("gumbel").
# The paper's values are dashed lines (dashtype PAPER) in the colour of the
# estimator they belong to.  The sizes are chosen for the width at which
# GitHub shows an image in a README (about 900 pixels): 13-point text.
if (!exists("W")) W = 1000
if (!exists("H")) H = 560
eval sprintf("set terminal pngcairo enhanced size %d,%d font 'DejaVu Sans,13' linewidth 1.5 rounded", W, H)
set encoding utf8
set border 3 lc rgb '#404040'
set tics nomirror out scale 0.6 textcolor rgb '#202020'
set grid xtics ytics lc rgb '#dddddd' lw 1 dt solid
set key noautotitle
set datafile missing '?'

# Okabe-Ito-like colours, distinguishable in colour-blind vision; filled
# markers but for the straight-through Gumbel-Softmax (the open twin of
# Gumbel-Softmax's circle) and exact enumeration.
set linetype 1 lc rgb '#7f7f7f' lw 2 pt 5  ps 1.1   # sf
set linetype 2 lc rgb '#8c564b' lw 2 pt 9  ps 1.3   # darn
set linetype 3 lc rgb '#9467bd' lw 2 pt 11 ps 1.3   # muprop
set linetype 4 lc rgb '#2ca02c' lw 2 pt 13 ps 1.4   # st
set linetype 5 lc rgb '#17becf' lw 2 pt 15 ps 1.3   # annealed-st
set linetype 6 lc rgb '#d62728' lw 2 pt 7  ps 1.2   # gumbel
set linetype 7 lc rgb '#ff7f0e' lw 2 pt 6  ps 1.3   # st-gumbel
set linetype 8 lc rgb '#1f77b4' lw 2 pt 4  ps 1.2   # exact
set linetype 9 lc rgb '#202020' lw 2 pt 7  ps 1.0   # anything else
# The estimators after the paper (results/estimators-beyond/), in colours
# the paper's seven do not use; Gumbel-Softmax's variants keep its red and
# orange with other markers.
set linetype 10 lc rgb '#e69f00' lw 2 pt 5  ps 1.1   # arm
set linetype 11 lc rgb '#56b4e9' lw 2 pt 9  ps 1.3   # disarm
set linetype 12 lc rgb '#009e73' lw 2 pt 11 ps 1.3   # rebar
set linetype 13 lc rgb '#cc79a7' lw 2 pt 13 ps 1.4   # relax
set linetype 14 lc rgb '#0072b2' lw 2 pt 15 ps 1.3   # vimco
set linetype 15 lc rgb '#d62728' lw 2 pt 4  ps 1.2   # gumbel-k5
set linetype 16 lc rgb '#d55e00' lw 2 pt 8  ps 1.3   # gumbel-taulearned
set dashtype 11 (8, 5)
PAPER = 11

est_lt(e) = e eq "sf" ? 1 : e eq "darn" ? 2 : e eq "muprop" ? 3 : e eq "st" ? 4 : \
            e eq "annealed-st" ? 5 : e eq "gumbel" ? 6 : e eq "st-gumbel" ? 7 : \
            e eq "exact" ? 8 : e eq "arm" ? 10 : e eq "disarm" ? 11 : e eq "rebar" ? 12 : \
            e eq "relax" ? 13 : e eq "vimco" ? 14 : e eq "gumbel-k5" ? 15 : \
            e eq "gumbel-taulearned" ? 16 : 9
# The paper's names (its Table 1 columns).
est_label(e) = e eq "sf" ? "SF" : e eq "darn" ? "DARN" : e eq "muprop" ? "MuProp" : \
               e eq "st" ? "ST" : e eq "annealed-st" ? "Annealed ST" : \
               e eq "gumbel" ? "Gumbel-Softmax" : e eq "st-gumbel" ? "ST Gumbel-Softmax" : \
               e eq "exact" ? "exact" : e eq "arm" ? "ARM" : e eq "disarm" ? "DisARM" : \
               e eq "rebar" ? "REBAR" : e eq "relax" ? "RELAX" : e eq "vimco" ? "VIMCO (K=5)" : \
               e eq "gumbel-k5" ? "Gumbel-S. (K=5)" : \
               e eq "gumbel-taulearned" ? "Gumbel-S., tau learned" : e
# Steps as 0, 10k, 20k, ...
set format x "%.0s%c"
