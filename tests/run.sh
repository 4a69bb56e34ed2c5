#!/usr/bin/env bash
# Runs every test of AllPeers. Installs what it needs first, so it works on a fresh
# Debian 12 machine with Rust (rustup), Node and Python: Debian packages, cargo tools,
# Rust targets, npm packages. Bounded: a full run from a clean clone stays well under an hour.
#
#   tests/run.sh            everything
#   FUZZ_SECONDS=300 tests/run.sh   longer fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
# One build from a clean clone: incremental caches would only double the disk it takes.
export CARGO_INCREMENTAL=0
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

# Each step says when it starts and how long the run has taken so far: where CI's time goes.
step() { printf '\n=== %s  [%s UTC, %dm%02ds in]\n' "$*" "$(date -u +%T)" $((SECONDS / 60)) $((SECONDS % 60)); }

step "install: Debian packages"
# jing + xmllint validate the RELAX NG schemas and resources serialised to XML; tinyproxy is
# the real HTTP proxy the hub tests reach their hub through; coturn is the real STUN server and
# STUN clients (turnutils_stunclient, turnutils_natdiscovery) the hub's STUN server is checked against;
# iproute2 + iptables + ipset + procps (sysctl) build the NAT namespaces of host/hub/tests/netns.rs and
# tests/src/netns.rs (root only; ipset keeps the cone routers' per-mapping filters);
# python3-aiosmtpd is the real SMTP server (tests/fixtures/smtpd.py) of host/hub/tests/mail.rs, tests/e2e/mail.rs
# and the demo (STARTTLS, implicit TLS, AUTH,
# a Maildir), python3-dkim verifies the hub's DKIM signatures offline, openssl makes their keys; postfix is the
# realistic mail server of host/hub/tests/mail_postfix.rs (an instance of its own per test, from a config directory
# under the test's temporary directory: the system's /etc/postfix and mail service are not used), its smtp-sink
# injects faults behind socat's TLS;
# aria2, mktorrent, transmission-daemon (+ transmission-cli's transmission-remote) and opentracker are the
# real BitTorrent peers and tracker host/transfer's interop tests run against; ffmpeg, sox, imagemagick and
# exiv2 make the real media host/media/tests/media.rs describes; postgresql is the database of the hub's cluster
# mode (host/hub/tests/cluster.rs starts its own server in a temporary directory; the system's is not used).
APT_PACKAGES=(build-essential pkg-config jing libxml2-utils tinyproxy coturn iproute2 iptables ipset procps
    python3-aiosmtpd python3-dkim openssl postfix socat
    aria2 mktorrent transmission-daemon transmission-cli opentracker
    ffmpeg sox imagemagick exiv2 postgresql)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # postfix asks how it is used: local only, no questions. Its package would start the system's mail
    # service; the tests run their own instances, so no package may start a service during the install
    # (policy-rc.d answers 101, "not allowed", while apt runs; one already there is left alone).
    echo "postfix postfix/main_mailer_type select Local only" | $SUDO debconf-set-selections
    echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections
    policy_rc=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy_rc=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
        $SUDO chmod 755 "$policy_rc"
        trap '$SUDO rm -f "$policy_rc"' EXIT
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" </dev/null
    if [ -n "$policy_rc" ]; then $SUDO rm -f "$policy_rc"; trap - EXIT; fi
fi

step "install: cargo tools"
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# cargo fuzz needs nightly-only compiler flags; use nightly where rustup has it, else let
# the stable compiler accept them.
if rustup toolchain list | grep -q '^nightly'; then FUZZ_CARGO=(cargo +nightly); else FUZZ_CARGO=(env RUSTC_BOOTSTRAP=1 cargo); fi

step "format and lints"
cargo fmt --all --check
# The fuzz crate is a workspace of its own (sanitizer flags): checked on its own.
cargo fmt --manifest-path fuzz/Cargo.toml --check
python3 tests/module_cycles.py
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "API contract: the extension's generated TypeScript and docs/api.md match allpeers-model"
# Regenerates into memory and fails on any difference (ALLPEERS_BLESS=1 rewrites the files).
cargo clippy -p allpeers-model --features ts --all-targets --quiet -- -D warnings
cargo test -p allpeers-model --features ts --quiet --test typescript --test docs

step "build"
cargo build --workspace --bins --quiet

step "Rust tests (unit, cross-process)"
cargo nextest run --workspace --no-fail-fast

step "wasm: allpeers-wasm built for the extension and tested from Node"
wasm/build.sh
node --test wasm/test/

step "browser: the extension in real Chromium (and Firefox) with the real native host"
ALLPEERS_BIN="$PWD/target/debug/allpeers" tests/browser/run.sh

step "fuzz: ${FUZZ_SECONDS}s per target, two at a time"
# libFuzzer uses one core a run: two targets at once halve the step's wall time on a 2-core CI machine
# without shortening any target's run. Built once first, so the parallel runs do not race on the build.
mkdir -p target
fuzz_targets=$(cd fuzz && "${FUZZ_CARGO[@]}" fuzz list)
(cd fuzz && "${FUZZ_CARGO[@]}" fuzz build)
fuzz_one() {
    local target="$1" log="target/fuzz-$1.log"
    if ! (cd fuzz && "${FUZZ_CARGO[@]}" fuzz run "$target" -- -max_total_time="$FUZZ_SECONDS") >"$log" 2>&1; then
        tail -60 "$log"; echo "fuzz target $target FAILED (log: $log)"; return 1
    fi
    echo "$target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
}
export -f fuzz_one
export FUZZ_SECONDS
export FUZZ_CARGO_LINE="${FUZZ_CARGO[*]}"
printf '%s\n' $fuzz_targets | xargs -P 2 -I{} bash -c 'FUZZ_CARGO=($FUZZ_CARGO_LINE); fuzz_one "$1"' _ {}

step "demo"
./target/debug/allpeers demo

step "all tests passed"
du -sh target fuzz/target 2>/dev/null || true
