#!/usr/bin/env bash
# ABI test of libattnccl.so: every exported (dynamic, defined) symbol is part of the public API
# (starts with "attnccl"), the SONAME carries the major version, and the library depends on
# neither NCCL nor MPI (their bootstraps are header-inline).
#   check_exports.sh <path of libattnccl.so> <major version>
set -euo pipefail
lib=$1 major=$2
syms=$(nm -D --defined-only "$lib" | awk '{print $NF}')
[ -n "$syms" ] || { echo "no exported symbols in $lib"; exit 1; }
leaks=$(echo "$syms" | grep -v '^attnccl' || true)
if [ -n "$leaks" ]; then
  echo "symbols leaking from $lib (not attnccl*; check src/attnccl.map and visibility):"
  echo "$leaks"
  exit 1
fi
for s in attncclGetVersion attncclCommInitRank attncclAttnForward attncclAttnBackward attncclAlgoName; do
  echo "$syms" | grep -qx "$s" || { echo "public symbol $s is not exported"; exit 1; }
done
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = "libattnccl.so.$major" ] || { echo "SONAME is '$soname', expected libattnccl.so.$major"; exit 1; }
if objdump -p "$lib" | awk '$1 == "NEEDED" {print $2}' | grep -E '^lib(nccl|mpi)'; then
  echo "$lib must not depend on NCCL or MPI"
  exit 1
fi
echo "$(echo "$syms" | wc -l) exported symbols, all attnccl*; SONAME $soname"
