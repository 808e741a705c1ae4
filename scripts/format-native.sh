#!/usr/bin/env bash
# Formats the native engine's C++/CUDA sources with clang-format and the repository's .clang-format.
#
#   scripts/format-native.sh           format native/**/*.{h,cpp,cu,cuh,inc} in place
#   scripts/format-native.sh --check   change nothing; list the files that are not formatted, exit 1
#
# CLANG_FORMAT names the binary (default: clang-format; Debian: apt-get install clang-format).
# Formatting can differ between clang-format major versions: CI uses Debian bookworm's (14).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=format
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h | --help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "format-native.sh: unknown argument '$1' (expected nothing or --check)" >&2
    exit 2
    ;;
esac

bin="${CLANG_FORMAT:-clang-format}"
if ! command -v "$bin" > /dev/null 2>&1; then
  echo "format-native.sh: '$bin' not found: install it (Debian/Ubuntu: apt-get install clang-format) or set CLANG_FORMAT" >&2
  exit 2
fi

# The tracked sources when this is a git checkout (untracked scratch files are not ours to judge),
# else every matching file under native/ (an unpacked npm tarball).
files=()
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  while IFS= read -r -d '' f; do files+=("$f"); done < <(
    git ls-files -z --cached --others --exclude-standard -- \
      'native/*.h' 'native/*.cpp' 'native/*.cu' 'native/*.cuh' 'native/*.inc')
else
  while IFS= read -r -d '' f; do files+=("$f"); done < <(
    find native -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \) -print0 | sort -z)
fi
if [ "${#files[@]}" -eq 0 ]; then
  echo "format-native.sh: no native sources found under $root/native" >&2
  exit 2
fi

if [ "$mode" = format ]; then
  "$bin" -i --style=file "${files[@]}"
  echo "format-native.sh: formatted ${#files[@]} files ($("$bin" --version))"
  exit 0
fi

# One clang-format process for all files; its diagnostics ("file:line:col: error: code should be
# clang-formatted") name the files that would change.
report="$("$bin" --style=file --dry-run --Werror "${files[@]}" 2>&1)" && status=0 || status=$?
bad=()
while IFS= read -r f; do [ -n "$f" ] && bad+=("$f"); done < <(
  printf '%s\n' "$report" | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' | sort -u)
if [ "$status" -ne 0 ] && [ "${#bad[@]}" -eq 0 ]; then
  echo "format-native.sh: clang-format failed:" >&2
  printf '%s\n' "$report" >&2
  exit 2
fi
if [ "${#bad[@]}" -gt 0 ]; then
  echo "format-native.sh: ${#bad[@]} of ${#files[@]} native files are not clang-formatted ($("$bin" --version)):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "  run scripts/format-native.sh to format them" >&2
  exit 1
fi
echo "format-native.sh: ${#files[@]} native files are formatted"
