# Shared by cross/build, cross/package and cross/ci: what each target needs and how to
# install it when it is missing. Sourced, never run.
#
# Everything downloaded or unpacked goes under target/cross/ (ignored by git). The
# system's apt sources are used as they are; the foreign-architecture package indexes
# live in a private apt state under target/cross/apt, so neither dpkg's architecture list
# nor the system's apt lists are changed.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/target/cross
HOST=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Short names people type, mapped to Rust target triples.
triple() {
    case $1 in
        armv7 | armhf | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
        aarch64 | arm64 | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
        host | amd64 | x86_64 | "$HOST") echo "$HOST" ;;
        *) die "unknown target '$1' (armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-gnu or host)" ;;
    esac
}

# Sets DEB_ARCH (Debian architecture), GNU (GNU triple of the cross tools, empty for the
# host), QEMU (user-mode emulator, empty for the host) and BIN (the release binary).
target_info() {
    case $1 in
        armv7-unknown-linux-gnueabihf) DEB_ARCH=armhf GNU=arm-linux-gnueabihf QEMU=qemu-arm-static ;;
        aarch64-unknown-linux-gnu) DEB_ARCH=arm64 GNU=aarch64-linux-gnu QEMU=qemu-aarch64-static ;;
        "$HOST") DEB_ARCH=$(dpkg --print-architecture) GNU= QEMU= ;;
        *) die "no settings for target $1" ;;
    esac
    # The host build is the plain `cargo build --release` one, shared with the tests.
    if [ "$1" = "$HOST" ]; then
        BIN=$ROOT/target/release/intercomd
    else
        BIN=$ROOT/target/$1/release/intercomd
    fi
}

# apt_install, apt_need: installing what is missing, shared with every test stage.
# shellcheck source=../tests/lib.sh
. "$ROOT/tests/lib.sh"

rust_target() {
    rustup target list --installed | grep -qx "$1" && return 0
    log "rustup target add $1"
    rustup target add "$1"
}

# Debian's static libssl.a/libcrypto.a for DEB_ARCH, unpacked where .cargo/config.toml
# points <TRIPLE>_OPENSSL_LIB_DIR and _INCLUDE_DIR.
static_openssl() {
    local arch=$1 gnu=$2
    local dest=$CACHE/openssl/$arch
    [ -f "$dest/lib/libssl.a" ] && [ -f "$dest/include/openssl/opensslconf.h" ] && return 0

    local apt=$CACHE/apt/$arch
    mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    : >"$apt/status"
    local opts=(-o "Dir::State=$apt/state" -o "Dir::State::status=$apt/status"
        -o "Dir::Cache=$apt/cache" -o "APT::Architecture=$arch"
        -o "APT::Architectures::=$arch" -o "APT::Sandbox::User=root"
        -o "Acquire::Languages=none")
    log "fetching the $arch package index (private apt state in ${apt#"$ROOT"/})"
    apt-get "${opts[@]}" -q update >"$apt/update.log" 2>&1 \
        || log "apt-get update for $arch reported errors (see ${apt#"$ROOT"/}/update.log); going on"
    rm -f "$apt/debs"/*.deb
    (cd "$apt/debs" && apt-get "${opts[@]}" -q download "libssl-dev:$arch") \
        || die "could not download libssl-dev:$arch"
    local deb
    deb=$(ls "$apt/debs"/libssl-dev_*_"$arch".deb)
    rm -rf "$apt/unpacked" "$dest"
    dpkg -x "$deb" "$apt/unpacked"
    mkdir -p "$dest/lib" "$dest/include"
    cp "$apt/unpacked/usr/lib/$gnu/libssl.a" "$apt/unpacked/usr/lib/$gnu/libcrypto.a" "$dest/lib/"
    cp -r "$apt/unpacked/usr/include/openssl" "$dest/include/"
    # The two architecture-specific headers live in the multiarch include directory,
    # which the cross compiler does not search; put them beside the others.
    cp "$apt/unpacked/usr/include/$gnu/openssl/"*.h "$dest/include/openssl/"
    dpkg-deb -f "$deb" Version >"$dest/VERSION"
    log "static OpenSSL $(cat "$dest/VERSION") for $arch in ${dest#"$ROOT"/}"
}

# Everything needed to build (and run under emulation) the release binary for TRIPLE.
prepare_target() {
    local t=$1
    target_info "$t"
    if [ "$t" = "$HOST" ]; then
        apt_install gcc libc6-dev pkg-config libssl-dev file
        return 0
    fi
    apt_install "gcc-$GNU" "libc6-dev-$DEB_ARCH-cross" "binutils-$GNU" qemu-user-static file
    rust_target "$t"
    static_openssl "$DEB_ARCH" "$GNU"
}

# Fails unless the ARM binary is one self-contained file: no interpreter, no shared
# library, no dynamic symbol.
check_static() {
    local bin=$1 gnu=$2 desc
    desc=$(file -b "$bin")
    case $desc in
        *"statically linked"*) ;;
        *) die "$bin is not statically linked: $desc" ;;
    esac
    # objdump exits non-zero when there is no dynamic section, which is what we want.
    desc=$("$gnu-objdump" -T "$bin" 2>&1 || true)
    case $desc in
        *"not a dynamic object"*) ;;
        *) die "$bin has a dynamic symbol table: $(head -20 <<<"$desc")" ;;
    esac
}
