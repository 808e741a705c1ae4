#!/usr/bin/env bash
# The whole GPU visit in one call (docs/GPU.md): run by the device tool from the repository root,
# with .devnode and .devdeps (and optionally .devbuild) carried; bench/device-prep.sh prepares them
# and prints the exact call.
#
#   1. nvidia-smi                    5. vitest test/gpu (CUDA vs CPU per op, MEDiC step over 5 steps)
#   2. unpack node + node_modules    6. bench/gpu_step.ts (ViT-B/16 step, images/s, per-op profile),
#   3. build medic_cuda + parity        fp32 then --precision bf16
#                                    7. bench/pytorch_reference.py (eager + SDPA in bf16 autocast, eager
#                                       fp32, then torch.compile)
#   4. medic_parity (every op CUDA vs CPU, kernel timings, ceilings), then the reduction ops again on
#      the same inputs: the same bits (determinism)
#
# Every stage runs under its own time limit and inside an overall budget (GPU_CHECK_BUDGET_S, default
# 400 s); a failed stage is recorded and the next one still runs. Results land in $OUT (at most 8
# files): gpu-check.log, parity.json, vitest.json, step.json, pytorch.json, pytorch_compile.json and
# h200.json (everything merged, the file to commit as bench/results/<date>-h200.json). The extra runs
# write step_bf16.json and pytorch_fp32.json to $SCRATCH (the 8-file limit), merged into h200.json.
# Without a GPU (nvidia-smi fails) it runs a dry run at tiny sizes, to check the script itself.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
OUT=${OUT:-$ROOT/gpu-check-out}
SCRATCH=${GPU_CHECK_SCRATCH:-/tmp/medic-gpu-check}
BATCH=${GPU_CHECK_BATCH:-256}
BUDGET=${GPU_CHECK_BUDGET_S:-400}
ARCHS=${MEDIC_CUDA_ARCHS:-90-real}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$SCRATCH/bin"
export ROOT OUT SCRATCH BATCH ARCHS PYTHON
LOG="$OUT/gpu-check.log"
: >"$LOG"
T0=$(date +%s)
STAGES=()

say() { echo "[gpu-check $(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }

# stage NAME LIMIT_S CMD...: runs CMD with its output in the log (and on stdout), under
# min(LIMIT_S, what is left of the budget); records name, exit code and seconds.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - T0)))
  if ((left < 10)); then
    say "SKIP $name: the budget of ${BUDGET}s is spent"
    STAGES+=("$name skipped 0")
    return 0
  fi
  ((limit > left)) && limit=$left
  say "START $name (limit ${limit}s)"
  local s rc
  s=$(date +%s)
  if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
    timeout --kill-after=10 "$limit" bash -c "set -u -o pipefail; $(declare -f "$1"); $*" 2>&1 | tee -a "$LOG"
  else
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  fi
  rc=${PIPESTATUS[0]}
  ((rc == 124 || rc == 137)) && say "TIMEOUT $name after ${limit}s"
  say "END $name rc=$rc ($(($(date +%s) - s))s)"
  STAGES+=("$name $rc $(($(date +%s) - s))")
  return 0
}

# --- 1. the GPU ------------------------------------------------------------------------------
DRY=0
if nvidia-smi >>"$LOG" 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv | tee -a "$LOG"
else
  DRY=1
  BATCH=4
  say "no GPU (nvidia-smi failed): DRY RUN at tiny sizes, checking the script only"
  if [ "$PYTHON" = python3 ] && ! python3 -c 'import torch' 2>/dev/null; then PYTHON=/usr/bin/python3; fi
fi

# --- 2. node and node_modules ------------------------------------------------------------------
unpack() {
  if [ -f .devnode/node.xz ]; then
    if command -v xz >/dev/null; then xz -dc .devnode/node.xz >"$SCRATCH/bin/node"; else
      "$PYTHON" -c 'import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' .devnode/node.xz "$SCRATCH/bin/node"
    fi
    chmod +x "$SCRATCH/bin/node"
  elif ! command -v node >/dev/null; then
    echo "no .devnode/node.xz carried and no node on PATH" >&2
    return 1
  fi
  if [ -f .devdeps/node_modules.tar.xz ]; then
    rm -rf "$SCRATCH/node_modules" && mkdir -p "$SCRATCH/node_modules"
    if command -v xz >/dev/null; then tar -C "$SCRATCH/node_modules" -xJf .devdeps/node_modules.tar.xz; else
      "$PYTHON" -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .devdeps/node_modules.tar.xz "$SCRATCH/node_modules"
    fi
    if [ -L node_modules ] || [ ! -e node_modules ]; then ln -sfn "$SCRATCH/node_modules" node_modules; fi
  fi
  export PATH="$SCRATCH/bin:$PATH"
  node --version && [ -d node_modules/vitest ] && [ -d node_modules/node-api-headers ]
}
if [ -f .devnode/node.xz ]; then export PATH="$SCRATCH/bin:$PATH"; fi
stage unpack 90 unpack

# --- 3. build (or take the binaries carried in .devbuild) -------------------------------------------
BIN=""
PARITY=""
if [ -f .devbuild/medic_cuda.node ] && [ -x .devbuild/medic_parity ] && [ "${MEDIC_BUILD_ON_DEVICE:-0}" != 1 ] &&
  .devbuild/medic_parity --list >/dev/null 2>&1 && node -e "require('$ROOT/.devbuild/medic_cuda.node')" >/dev/null 2>&1; then
  BIN="$ROOT/.devbuild/medic_cuda.node"
  PARITY="$ROOT/.devbuild/medic_parity"
  say "using the binaries carried in .devbuild (built before the visit)"
  STAGES+=("build carried 0")
else
  build() {
    cmake -S "$ROOT" -B "$SCRATCH/build" -G Ninja -DMEDIC_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DCMAKE_JS_INC="$ROOT/node_modules/node-api-headers/include" &&
      cmake --build "$SCRATCH/build" --target medic_cuda medic_parity -j "$(nproc)"
  }
  stage build 240 build
  BIN="$SCRATCH/build/medic_cuda.node"
  PARITY="$SCRATCH/build/medic_parity"
fi
export MEDIC_NATIVE_BINARY="$BIN" PARITY

# --- 4. the C++ parity harness ------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  stage parity 60 "$PARITY" --cpu-self-test --only gemm,attention,layernorm
else
  stage parity 150 "$PARITY" --json "$OUT/parity.json" --batch "$BATCH" --reps 10
  # Determinism on silicon: the ops with reductions again, on the same inputs (the first run's seed);
  # every output must hash the same (no float atomics anywhere). The verdict goes to the summary.
  determinism() {
    local seed
    seed=$(node -p "require('$OUT/parity.json').seed") || return 1
    "$PARITY" --no-timing --seed "$seed" --only gemm,attention,attention_bwd,layernorm_bwd,sum_to,scale_add_bwd,mask_fill_bwd,medic_loss,grad_norm,adamw \
      --json "$SCRATCH/parity-again.json" >/dev/null || return 1
    node -e '
      const [a, b] = process.argv.slice(1).map((f) => require(f));
      const first = new Map(a.parity.map((p) => [p.op + " " + p.case, p.hash]));
      const differ = b.parity.filter((p) => first.get(p.op + " " + p.case) !== p.hash).map((p) => p.op + " " + p.case);
      require("fs").writeFileSync(process.env.SCRATCH + "/determinism.json", JSON.stringify({ cases: b.parity.length, differ }));
      console.log(`determinism: ${b.parity.length} cases rerun on the same inputs, ${differ.length} with other bits`);
      for (const d of differ) console.log("  differs: " + d);
      process.exit(differ.length ? 1 : 0);' "$OUT/parity.json" "$SCRATCH/parity-again.json"
  }
  stage determinism 60 determinism
fi

# --- 5. vitest gpu suite -------------------------------------------------------------------------
VITEST_ENV=()
[ "$DRY" = 1 ] && VITEST_ENV=(env MEDIC_GPU_TESTS_ON_CPU=1)
stage vitest 120 "${VITEST_ENV[@]}" node node_modules/vitest/vitest.mjs run test/gpu --reporter=default --reporter=json --outputFile="$OUT/vitest.json"

# --- 6. our step ---------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  stage step 120 node --import tsx bench/gpu_step.ts --device cpu --config small --batch 4 --steps 2 --warmup 2 --json "$OUT/step.json"
else
  stage step 150 node --import tsx bench/gpu_step.ts --device cuda --batch "$BATCH" --steps 10 --warmup 3 --json "$OUT/step.json"
  # Mixed precision (bf16 activations end to end, cp.async gemm pipeline): the same step, side by side.
  stage step_bf16 120 node --import tsx bench/gpu_step.ts --device cuda --batch "$BATCH" --steps 10 --warmup 3 --precision bf16 --no-profile --json "$SCRATCH/step_bf16.json"
fi

# --- 7. PyTorch reference (eager + SDPA first; torch.compile with what is left) --------------------
export PYTHONUNBUFFERED=1
if [ "$DRY" = 1 ]; then
  stage pytorch 120 "$PYTHON" bench/pytorch_reference.py --smoke --out "$OUT/pytorch.json"
else
  stage pytorch 120 "$PYTHON" bench/pytorch_reference.py --batch "$BATCH" --steps 10 --no-compile --out "$OUT/pytorch.json"
  # (pytorch_reference.py defaults to bf16 autocast on CUDA: the run above is the bf16 reference, this
  # one the fp32 reference beside our fp32 step)
  stage pytorch_fp32 90 "$PYTHON" bench/pytorch_reference.py --batch "$BATCH" --steps 10 --no-compile --no-sdpa --precision fp32 --out "$SCRATCH/pytorch_fp32.json"
  stage pytorch_compile 180 "$PYTHON" bench/pytorch_reference.py --batch "$BATCH" --steps 10 --no-eager --no-sdpa --out "$OUT/pytorch_compile.json"
fi

# --- summary --------------------------------------------------------------------------------------
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv >>"$LOG" 2>&1 || true
STAGE_TEXT=$(printf '%s\n' "${STAGES[@]}")
export STAGE_TEXT
"$PYTHON" bench/gpu_summary.py "$OUT" --dry "$DRY" --batch "$BATCH" --seconds "$(($(date +%s) - T0))" 2>&1 | tee -a "$LOG"
say "done in $(($(date +%s) - T0))s; files in $OUT: $(find "$OUT" -maxdepth 1 -type f -printf '%f ' 2>/dev/null)"
