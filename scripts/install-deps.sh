#!/bin/sh
# install-deps.sh: install the Debian packages that gsvae needs to build, test,
# fuzz, plot and fetch its data.  Quick and silent-ish when all is there: the
# check is dpkg-query / command -v, and apt-get (even its update) runs only
# for what is missing.  Root runs apt-get itself; otherwise `sudo -n`; when
# neither works we print the one command to run as root and fail.
# Package lists below are split into words on purpose.
# shellcheck disable=SC2086
set -u

# Needed to build and test (a failure to install these is fatal).
required="libopenblas-dev zlib1g-dev libpng-dev check pkg-config gnuplot-nox clang libclang-rt-14-dev"
# Only the PyTorch benchmark peer needs this; warn when it cannot be had.
optional="python3-torch"

installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=""
for p in $required; do
    installed "$p" || missing="$missing $p"
done
# node and npm may come from another source than Debian's packages (a bundled
# npm, nodesource); what matters is that the commands exist.  Installing
# Debian's npm over a nodejs that bundles npm would conflict, so test the
# commands, not the packages.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

opt_missing=""
for p in $optional; do
    installed "$p" || opt_missing="$opt_missing $p"
done

if [ -z "$missing" ] && [ -z "$opt_missing" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    if [ -n "$missing" ]; then
        echo "install-deps: missing packages:$missing; run as root:" >&2
        echo "  apt-get update && apt-get install -y$missing$opt_missing" >&2
        exit 1
    fi
    echo "install-deps: warning: optional package(s)$opt_missing missing (benchmark peer only); as root: apt-get install -y$opt_missing" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing:$missing$opt_missing" >&2
if ! $as_root apt-get update -q >&2; then
    echo "install-deps: warning: apt-get update failed; trying the install with the old package lists" >&2
fi

if [ -n "$missing" ]; then
    if ! $as_root apt-get install -y -q --no-install-recommends $missing >&2; then
        echo "install-deps: apt-get install failed for:$missing" >&2
        exit 1
    fi
fi
if [ -n "$opt_missing" ]; then
    if ! $as_root apt-get install -y -q --no-install-recommends $opt_missing >&2; then
        echo "install-deps: warning: could not install optional$opt_missing (only the PyTorch benchmark peer needs it)" >&2
    fi
fi

# Verify rather than trust apt-get's exit status.
still=""
for p in $required; do
    installed "$p" || still="$still $p"
done
command -v node >/dev/null 2>&1 || still="$still nodejs"
command -v npm >/dev/null 2>&1 || still="$still npm"
if [ -n "$still" ]; then
    echo "install-deps: still missing after apt-get:$still" >&2
    exit 1
fi
exit 0
