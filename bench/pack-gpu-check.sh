#!/usr/bin/env bash
# The released packages on a GPU: an app with medic-native and @medic-native/linux-x64-cuda installed
# from the tarballs of `npm run prebuild` (nothing built on the GPU machine), then doctor, a short
# pretrain on the GPU, and the same with the driver forced to JIT the compute_90 PTX (the path newer
# GPUs take) instead of running the sm_90 SASS.
#
#   bench/pack-gpu-check.sh --prep    here: build-devpack/ = this node (xz) + the app (tar.xz, without
#                                     sharp: --data mnist never decodes files); prints the run call
#   bench/pack-gpu-check.sh           on the GPU machine, with build-devpack carried; results in $OUT
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PACK=build-devpack

if [ "${1:-}" = --prep ]; then
  main=$(ls build-release/medic-native-[0-9]*.tgz)
  cuda=$(ls build-release/medic-native-linux-x64-cuda-*.tgz)
  rm -rf "$PACK" && mkdir -p "$PACK"
  app=$(mktemp -d)
  echo '{"name":"gpu-app","version":"1.0.0","private":true,"type":"module"}' >"$app/package.json"
  (cd "$app" && npm install --silent --no-audit --no-fund --prefer-offline --ignore-scripts "$OLDPWD/$main" "$OLDPWD/$cuda")
  rm -rf "$app/node_modules/sharp" "$app/node_modules/@img"
  tar -C "$app" -cf - . | xz -T2 -6 >"$PACK/app.tar.xz"
  rm -rf "$app"
  xz -T2 -6 -c "$(command -v node)" >"$PACK/node.xz"
  du -h "$PACK"/*
  echo "run: command 'bash bench/pack-gpu-check.sh', carry [\"$PACK\"], timeout_s 420"
  exit 0
fi

OUT=${OUT:-$(mktemp -d)}
S=$(mktemp -d)
unxz() { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
unxz "$PACK/node.xz" >"$S/node" && chmod +x "$S/node"
unxz "$PACK/app.tar.xz" | tar -C "$S" -xf -
export PATH="$S:$PATH"
cd "$S"
cli() { node node_modules/medic-native/bin/medic-native.js "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
cli doctor | tee "$OUT/doctor.txt"
cli doctor --json >"$OUT/doctor.json"
run() { # name, extra env...
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  env "$@" node node_modules/medic-native/bin/medic-native.js pretrain --device cuda --epochs 1 --steps-per-epoch 40 \
    --out "runs/$name" >"$OUT/pretrain-$name.log" 2>&1 || { tail -30 "$OUT/pretrain-$name.log"; echo "pretrain $name failed"; return 1; }
  cp "runs/$name/summary.json" "$OUT/summary-$name.json"
  echo "$name: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'); $(grep -iE 'device|knn' "$OUT/pretrain-$name.log" | head -4 | tr '\n' ' ')"
}
run sass
run ptx CUDA_FORCE_PTX_JIT=1 CUDA_CACHE_DISABLE=1
node -e '
const a = require(process.argv[1] + "/summary-sass.json"), b = require(process.argv[1] + "/summary-ptx.json");
console.log(JSON.stringify({ sass: a, ptx: b }).slice(0, 1500));
' "$OUT"
