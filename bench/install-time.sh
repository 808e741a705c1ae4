#!/usr/bin/env bash
# Install time of the packed medic-native against sharp alone (a package that ships prebuilt binaries
# the same way and that medic-native depends on), side by side: alternating fresh apps, same npm, same
# warm cache (--prefer-offline), no install scripts (npm 12's default for dependencies).
#
#   bench/install-time.sh TARBALL [REPS]      prints each time and the median ratio medic-native / sharp
set -euo pipefail
TARBALL="$(realpath "$1")"
REPS="${2:-3}"
SHARP="sharp@$(node -p "require('$(cd "$(dirname "$0")/.." && pwd)/package-lock.json').packages['node_modules/sharp'].version")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
one() { # spec -> seconds
  local app; app="$(mktemp -d "$WORK/app.XXXX")"
  echo '{"name":"app","version":"1.0.0","private":true}' >"$app/package.json"
  local t0; t0=$(date +%s.%N)
  (cd "$app" && npm install --silent --no-audit --no-fund --prefer-offline --ignore-scripts "$1" >/dev/null)
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
m=(); s=()
for r in $(seq "$REPS"); do
  m+=("$(one "$TARBALL")"); s+=("$(one "$SHARP")")
  echo "rep $r: medic-native ${m[-1]} s, $SHARP ${s[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median: medic-native $(median "${m[@]}") s, $SHARP $(median "${s[@]}") s, ratio $(awk -v a="$(median "${m[@]}")" -v b="$(median "${s[@]}")" 'BEGIN { printf "%.2f", a / b }') (npm $(npm --version), node $(node --version))"
