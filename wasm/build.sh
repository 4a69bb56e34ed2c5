#!/bin/sh
# Builds allpeers-wasm for the extension (wasm/pkg/web) and for Node tests (wasm/pkg/node).
# Plain cargo + wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock; nothing
# downloads binaries at run time (no wasm-pack). PROFILE=debug for a faster, larger build.
set -eu
cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-release}"
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
[ -n "$WB_VERSION" ] || { echo "wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WB_VERSION"; then
    echo "installing wasm-bindgen-cli $WB_VERSION (matches Cargo.lock)" >&2
    cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ "$PROFILE" = release ]; then
    cargo build -p allpeers-wasm --target wasm32-unknown-unknown --release
else
    cargo build -p allpeers-wasm --target wasm32-unknown-unknown
fi
WASM="$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/allpeers_wasm.wasm"
rm -rf wasm/pkg
wasm-bindgen --target nodejs --out-dir wasm/pkg/node "$WASM"
wasm-bindgen --target web --out-dir wasm/pkg/web "$WASM"
ls -l wasm/pkg/web/allpeers_wasm_bg.wasm
