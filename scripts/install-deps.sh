#!/usr/bin/env bash
# Installs every Debian package Realm needs to build, test and benchmark.
# Idempotent: quiet and fast when everything is already present.
# Runs as root without sudo, with sudo otherwise.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  clang-format                          # formatting check (make format-check, CI)
  clang lld libclang-rt-14-dev          # fuzzer and sanitizer runtimes
  libssl-dev                            # SHA-256 (tests, module cache, API keys)
  libjansson-dev                        # JSON (CLI output, the HTTP API)
  libmicrohttpd-dev                     # the HTTP server (realm serve)
  libwslay-dev                          # WebSocket framing (/v1/responses WebSocket mode)
  libpcre2-dev                          # pre-tokenizer regexes (Unicode properties, JIT)
  libutf8proc-dev                       # WordPiece normalisation (decomposition, case)
  libsqlite3-dev                        # tenants, API keys, usage (the data directory)
  libcurl4-openssl-dev                  # realm pull: downloads (resume, TLS, redirects)
  wabt                                  # tenant modules: wasm-validate, wasm2c, wat2wasm (tests)
  wasi-libc libclang-rt-14-dev-wasm32   # building guest modules with clang --target=wasm32-wasi
  python3 python3-numpy                 # ../shared/tools/make_synthetic_gguf.py (benchmarks)
)
# Node.js and npm for tests/node (the openai npm package against realm serve; the CTest
# fixture node_deps runs npm ci), from Debian only where `node` or `npm` is missing: a
# machine may already have a Node.js whose package (one with npm inside) conflicts with
# Debian's npm.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
else
  SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
