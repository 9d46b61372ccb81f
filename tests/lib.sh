# Installing what a stage needs on a fresh Debian machine. Sourced by tests/all,
# tests/e2e/run and cross/lib.sh (so by every stage), never run.
#
#   apt_install PACKAGE...             those dpkg does not list as installed
#   apt_need PROBE PACKAGE [PROBE PACKAGE]...
#                                      PACKAGE where PROBE is missing: a command, or an
#                                      absolute path to a file (e.g. a header)
#
# apt_need is for what may come from elsewhere than a Debian package (Node.js and npm from
# nodesource, a browser named by CHROMIUM); it installs with the packages' recommendations,
# apt_install without.

APT_UPDATED=
apt_update() {
    [ -n "$APT_UPDATED" ] && return 0
    # A mirror caught mid-sync fails one index and makes apt-get exit non-zero; what it
    # did fetch is still usable, and the install says if something is really missing.
    apt-get update -q || echo "==> apt-get update reported errors; going on with the indexes it fetched" >&2
    APT_UPDATED=1
}

# apt_get [--no-install-recommends] PACKAGE...: install, as root, after one update.
apt_get() {
    local opts=()
    if [ "${1:-}" = --no-install-recommends ]; then opts+=("$1"); shift; fi
    [ $# -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages: $* (run as root, or: sudo apt-get install $*)" >&2
        return 1
    fi
    echo "==> installing $*" >&2
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${opts[@]}" "$@"
}

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    apt_get --no-install-recommends "${missing[@]}"
}

apt_need() {
    local missing=() probe pkg
    while [ $# -gt 0 ]; do
        probe=$1 pkg=$2
        shift 2
        if [[ $probe == /* ]]; then
            [ -e "$probe" ] || missing+=("$pkg")
        else
            command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg")
        fi
    done
    apt_get "${missing[@]}"
}
