#!/usr/bin/env bash
# Browser tests of the AllPeers extension: builds it, lints the Firefox build, runs its
# unit tests, then drives headless Chromium with the extension loaded and the real
# `allpeers` native host registered in each test profile.
#
#   tests/browser/run.sh                       uses ../../target/debug/allpeers
#   ALLPEERS_BIN=/path/to/allpeers tests/browser/run.sh    (allpeers-hub is taken from the same folder)
#   tests/browser/run.sh --test-name-pattern=locked    (extra args go to node --test)
#
# Installs what it needs on a fresh Debian: chromium and firefox-esr (apt), geckodriver
# (cargo install, once), npm packages (npm ci).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
EXT="$(cd "$HERE/../../extension" && pwd)"
export ALLPEERS_BIN="${ALLPEERS_BIN:-$HERE/../../target/debug/allpeers}"

step() { printf '\n=== browser: %s  [%s UTC, %dm%02ds in]\n' "$*" "$(date -u +%T)" $((SECONDS / 60)) $((SECONDS % 60)); }

if [ ! -x "$ALLPEERS_BIN" ]; then
    echo "no allpeers binary at $ALLPEERS_BIN: build it (cargo build -p allpeers-node) or set ALLPEERS_BIN" >&2
    exit 2
fi
ALLPEERS_BIN="$(cd "$(dirname "$ALLPEERS_BIN")" && pwd)/$(basename "$ALLPEERS_BIN")"
# The contacts/chat tests start a real hub: the allpeers-hub binary next to allpeers.
export ALLPEERS_HUB_BIN="${ALLPEERS_HUB_BIN:-$(dirname "$ALLPEERS_BIN")/allpeers-hub}"
if [ ! -x "$ALLPEERS_HUB_BIN" ]; then
    echo "no allpeers-hub at $ALLPEERS_HUB_BIN: build it (cargo build -p allpeers-hub) or set ALLPEERS_HUB_BIN" >&2
    exit 2
fi

step "install: chromium, firefox-esr, node packages"
missing=()
command -v "${CHROMIUM_BIN:-/usr/bin/chromium}" >/dev/null 2>&1 || missing+=(chromium)
command -v "${FIREFOX_BIN:-/usr/bin/firefox-esr}" >/dev/null 2>&1 || missing+=(firefox-esr)
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
command -v node >/dev/null || { echo "node (20 or newer) is required" >&2; exit 2; }
# geckodriver drives the Firefox panel test (no Debian package: built with cargo, ~6 min once).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v geckodriver >/dev/null && [ -z "${GECKODRIVER_BIN:-}" ]; then
    if command -v cargo >/dev/null; then
        cargo install geckodriver --locked --quiet
    else
        echo "WARNING: no cargo, no geckodriver: the driven Firefox test will be skipped" >&2
    fi
fi
(cd "$EXT" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

step "wasm: the model for the panel's generic resource views (wasm/pkg/web)"
if [ ! -f "$EXT/../wasm/pkg/web/allpeers_wasm_bg.wasm" ]; then
    # tests/run.sh builds it (release) before this script; alone, a debug build is enough.
    (cd "$EXT/.." && PROFILE="${WASM_PROFILE:-debug}" wasm/build.sh)
else
    echo "using $(cd "$EXT/../wasm/pkg/web" && pwd)/allpeers_wasm_bg.wasm"
fi

step "extension: type check, build, unit tests"
(cd "$EXT" && npx tsc --noEmit && npm run --silent test)

step "extension: no HTML sinks in the source (content goes in as text only)"
if grep -rnE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function' "$EXT/src"; then
    echo "found an HTML/script sink in extension/src: use textContent (extension/src/panel/dom.ts)" >&2
    exit 1
fi

step "extension: web-ext lint (Firefox build)"
(cd "$EXT" && npx web-ext lint --source-dir dist/firefox --output text)

step "sdk: type check, build, unit tests (the sample app's test uses sdk/dist)"
SDK="$(cd "$HERE/../../sdk" && pwd)"
(cd "$SDK" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent typecheck && npm run --silent test)
if grep -rnE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function' "$SDK/src" "$SDK/examples"; then
    echo "found an HTML/script sink in sdk/: what friends write goes in as text only" >&2
    exit 1
fi

step "end-to-end tests: Chromium, and a Firefox smoke test (allpeers: $ALLPEERS_BIN)"
cd "$HERE"
node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec "$@" ./*.test.mjs
