#!/usr/bin/env bash
# Unpacks everything the aarch64 suite needs that is not a host package into
# a cache directory, from the Debian archive the system's apt sources name:
#
#   rust/      rustc-web (the newest build in the security suite) with its
#              x86_64 libraries and the aarch64 standard library
#              (libstd-rust-web-dev:arm64), so rustup's cargo can drive it
#              through RUSTC= and build for aarch64-unknown-linux-gnu;
#   kernels/   one arm64 kernel image per suite: the stable suite's, its
#              backports', and the newest the archive serves (the next
#              release's backports), named vmlinuz-VERSION;
#   guest/     the arm64 runtime the test programs load (libc6, libgcc-s1,
#              libstdc++6) and a static busybox.
#
# Usage: .ci/aarch64/fetch.sh DIR
#
# Nothing is installed and the system's apt and dpkg state are untouched:
# a private apt state (its own sources list, lists, cache and status, for
# the architectures amd64 and arm64) lives under DIR/apt, and packages are
# fetched with `apt-get download` and unpacked with `dpkg-deb -x`. The
# private sources list names the archive URIs of the system's sources with
# the suites this script needs; the system's sources are only read.
# A later run with DIR/done present does nothing.
set -euo pipefail

if (($# != 1)); then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
[[ -f $dir/done ]] && exit 0
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
apt=$dir/apt

# The URI that serves SUITE in the system's apt sources (deb822 .sources
# files and one-line .list files).
system_uri() {
    local want=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # One stanza per paragraph: print the URIs of the stanza whose
        # Suites field names the suite.
        awk -v want="$want" '
            /^[[:space:]]*$/ { if (hit && uri) { print uri; exit } hit = 0; uri = ""; next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
            END { if (hit && uri) print uri }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/\[[^]]*\]//' "$f" |
            awk -v want="$want" '$1 == "deb" && $3 == want { print $2 }'
    done
}

codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
case $codename in
bookworm) next=trixie ;;
trixie) next=forky ;;
*)
    echo "unknown Debian release '$codename'" >&2
    exit 1
    ;;
esac
main=$(system_uri "$codename" | sed -n 1p)
security=$(system_uri "$codename-security" | sed -n 1p)
if [[ -z $main || -z $security ]]; then
    echo "the system's apt sources name no $codename or $codename-security archive" >&2
    exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

rm -rf "$apt" "$dir/rust" "$dir/kernels" "$dir/guest"
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/none" "$dir/rust" "$dir/kernels" "$dir/guest"
: >"$apt/status"
opts="[arch=amd64,arm64 signed-by=$keyring]"
cat >"$apt/sources.list" <<SOURCES
deb $opts $main $codename main
deb $opts $main $codename-backports main
deb $opts $main $next-backports main
deb $opts $security $codename-security main
SOURCES
cat >"$apt/apt.conf" <<CONF
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt";
Dir::Cache::archives "$apt/archives";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/none";
Dir::Etc::Preferences "$apt/none";
Dir::Etc::PreferencesParts "$apt/none";
APT::Architecture "amd64";
APT::Architectures { "amd64"; "arm64"; };
Debug::NoLocking "true";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled "false";
Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled "false";
Acquire::IndexTargets::deb::CNF::DefaultEnabled "false";
CONF
export APT_CONFIG=$apt/apt.conf
apt-get update -qq

# Prints the newest version of PACKAGE that SUITE serves (empty if none).
newest_in() {
    apt-cache madison "$1" | awk -v suite="$2" '$0 ~ " " suite "/" { print $3 }' |
        sort -V | tail -n 1
}

unpack() { # DEST PACKAGE=VERSION...
    local dest=$1 deb
    shift
    (
        cd "$apt/archives"
        rm -f ./*.deb
        apt-get download -qq "$@"
        for deb in ./*.deb; do
            dpkg-deb -x "$deb" "$dest"
        done
        rm -f ./*.deb
    )
}

# The Rust toolchain: rustc-web, its standard library and the LLVM it links
# (x86_64), and the aarch64 standard library.
rust=$(newest_in rustc-web "$codename-security")
[[ -n $rust ]] || rust=$(newest_in rustc-web "$codename")
if [[ -z $rust ]]; then
    echo "the archive offers no rustc-web" >&2
    exit 1
fi
series=$(sed -E 's/^([0-9]+\.[0-9]+).*/\1/' <<<"$rust")
llvm=$(apt-cache show "libstd-rust-web-$series:amd64=$rust" |
    sed -n 's/^Depends: //p' | grep -o 'libllvm[0-9]*' | sed -n 1p)
echo "rustc-web $rust (LLVM: ${llvm:-bundled})"
unpack "$dir/rust" "rustc-web:amd64=$rust" "libstd-rust-web-$series:amd64=$rust" \
    "libstd-rust-web-dev:amd64=$rust" "libstd-rust-web-dev:arm64=$rust" ${llvm:+"$llvm:amd64"}

# The kernels: the arm64 kernel that each suite's linux-image-arm64 names.
for suite in "$codename" "$codename-backports" "$next-backports"; do
    meta=$(newest_in linux-image-arm64:arm64 "$suite")
    if [[ -z $meta ]]; then
        echo "$suite serves no linux-image-arm64" >&2
        exit 1
    fi
    image=$(apt-cache show "linux-image-arm64:arm64=$meta" | sed -n 's/^Depends: //p' |
        sed -n 1p | tr ',' '\n' | grep -o 'linux-image-[^ ]*' | sed -n 1p)
    version=$(newest_in "$image:arm64" "$suite")
    echo "$suite: $image $version"
    rm -rf "$apt/kernel"
    unpack "$apt/kernel" "$image:arm64=$version"
    if ! compgen -G "$apt/kernel/boot/vmlinuz-*" >/dev/null; then
        # Newer kernels keep the image in a linux-binary-* package that the
        # linux-image-* one depends on, as /usr/lib/modules/VERSION/vmlinuz.
        binary=$(apt-cache show "$image:arm64=$version" | sed -n 's/^Depends: //p' |
            sed -n 1p | tr ',' '\n' | grep -o 'linux-binary-[^ ]*' | sed -n 1p)
        if [[ -z $binary ]]; then
            echo "$image holds no kernel image and names no linux-binary package" >&2
            exit 1
        fi
        unpack "$apt/kernel" "$binary:arm64=$version"
        for f in "$apt/kernel"/usr/lib/modules/*/vmlinuz; do
            mkdir -p "$apt/kernel/boot"
            mv "$f" "$apt/kernel/boot/vmlinuz-$(basename "$(dirname "$f")")"
        done
    fi
    cp "$apt/kernel"/boot/vmlinuz-* "$dir/kernels/"
    rm -rf "$apt/kernel"
done

# The guest runtime, from the stable suite (what the cross toolchain's
# libc6-dev-arm64-cross matches) and its security updates.
pkgs=()
for p in libc6 libgcc-s1 libstdc++6 busybox-static; do
    v=$( (newest_in "$p:arm64" "$codename-security"; newest_in "$p:arm64" "$codename") |
        sort -V | tail -n 1)
    pkgs+=("$p:arm64=$v")
done
echo "guest: ${pkgs[*]}"
unpack "$dir/guest" "${pkgs[@]}"

rm -rf "$apt/lists"
LD_LIBRARY_PATH=$dir/rust/usr/lib/x86_64-linux-gnu "$dir/rust/usr/bin/rustc" -vV
ls "$dir/rust/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib" >/dev/null
ls -l "$dir/kernels"
date -u +%FT%TZ >"$dir/done"
