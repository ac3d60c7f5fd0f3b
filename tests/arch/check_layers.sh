#!/usr/bin/env bash
# The library's walls, checked: which folder of src/ may include which (docs/architecture.md
# draws them). Every `#include "..."` of a project header in src/ is matched against the rules
# of the folder that holds the file; a file under a deeper folder takes the deepest rule that
# names it. Prints each include that crosses a wall and exits 1 if there is any.
#
#   usage: tests/arch/check_layers.sh [SRC_DIR]     (default: the src/ beside this script)
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/../../src" && pwd)}

# folder (under src/)  ->  include prefixes it may use (besides the public attnccl*.h headers).
# The floors, lowest first: core < transport < comm < collectives < attn. Inside attn, the
# portable GPU kernels (attn/gpu) are the ground floor: they compile for host and device and
# include only each other and core/dtype.h; the CPU tiles use no communication; only the CUDA
# backend (attn/cuda) includes attn/cuda. attn/visibility.h (the mask rule, host and device,
# nothing but <cstdint>) is the one header above attn/gpu that the kernels may include: the rule
# is written once for the CPU tiles, the schedules and the kernels alike.
rules=(
  "core|core/"
  "transport|core/ transport/"
  "comm|core/ transport/ comm/"
  "collectives|core/ transport/ comm/ collectives/"
  "attn|core/ transport/ comm/ collectives/ attn/"
  "attn/gpu|core/dtype.h attn/gpu/ attn/visibility.h"
  "attn/cpu|core/ attn/cpu/ attn/tile.h attn/tile_clock.h attn/visibility.h attn/tensors.h"
  "attn/cuda|core/ transport/ comm/ collectives/ attn/"
  "attn/kvcache|core/ transport/ comm/ collectives/ attn/"
)
forbidden_outside_cuda="attn/cuda/"

rule_for() {  # deepest folder rule that contains the relative path $1
  local rel=$1 best="" bestlen=-1 r folder
  for r in "${rules[@]}"; do
    folder=${r%%|*}
    case "$rel" in
      "$folder"/*) if [ ${#folder} -gt $bestlen ]; then best=$r; bestlen=${#folder}; fi ;;
    esac
  done
  echo "$best"
}

bad=0
checked=0
while IFS= read -r file; do
  rel=${file#"$src"/}
  rule=$(rule_for "$rel")
  if [ -z "$rule" ]; then
    echo "layering: $rel: not inside any folder with a rule (no source file belongs at src/ top level)"
    bad=1
    continue
  fi
  allowed=${rule#*|}
  while IFS= read -r inc; do
    checked=$((checked + 1))
    case "$inc" in attnccl.h|attnccl_mpi.h|attnccl_nccl.h) continue ;; esac
    ok=0
    for a in $allowed; do
      case "$a" in
        */) [[ "$inc" == "$a"* ]] && ok=1 ;;
        *) [[ "$inc" == "$a" ]] && ok=1 ;;
      esac
    done
    if [ $ok -eq 1 ] && [[ "$inc" == "$forbidden_outside_cuda"* ]] && [[ "$rel" != attn/cuda/* ]]; then ok=0; fi
    if [ $ok -eq 0 ]; then
      echo "layering: src/$rel includes \"$inc\", which its folder (${rule%%|*}) may not"
      bad=1
    fi
  done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/p' "$file")
done < <(find "$src" -type f \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)

if [ $bad -ne 0 ]; then
  echo "layering: FAILED (the rules are at the top of $0)"
  exit 1
fi
echo "layering: $checked includes checked, every one within its folder's rules"
