#!/usr/bin/env bash
# Packaging test: install the build into a temporary prefix, then build the consumer program
# (tests/package/consumer) against it twice, with find_package(attnccl) and with pkg-config, and
# run both. Also checks the installed files and that an installed tool runs.
#   install_consumer.sh <build-dir> <source-dir> <c-compiler> <version>
set -euo pipefail
build=$1 src=$2 cc=$3 version=$4
tmp=$(mktemp -d /tmp/attnccl-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
step() { echo "== $*"; }

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }

libdir=$(dirname "$(find "$prefix" -name "libattnccl.so.${version%%.*}" | head -1)")
[ -n "$libdir" ] && [ "$libdir" != . ] || { echo "libattnccl.so.${version%%.*} not installed"; exit 1; }
for f in include/attnccl.h include/attnccl_mpi.h include/attnccl_nccl.h bin/attnccl-info \
         "${libdir#"$prefix"/}/libattnccl.so" "${libdir#"$prefix"/}/libattnccl.so.$version" \
         "${libdir#"$prefix"/}/pkgconfig/attnccl.pc" "${libdir#"$prefix"/}/cmake/attnccl/attncclConfig.cmake" \
         "${libdir#"$prefix"/}/cmake/attnccl/attncclConfigVersion.cmake"; do
  [ -e "$prefix/$f" ] || { echo "missing in the install tree: $f"; exit 1; }
done
[ -z "$(find "$prefix" -name 'libattnccl_static*')" ] || { echo "the static test library was installed"; exit 1; }
step "installed attnccl-info runs"
# Into a file first: `tool | grep -q` under pipefail fails whenever grep exits at its match
# before the tool has written the rest (SIGPIPE), which a fast machine does now and then.
"$prefix/bin/attnccl-info" --env-markdown > "$tmp/info.md" || { echo "installed attnccl-info failed"; exit 1; }
grep -q ATTNCCL_DEBUG "$tmp/info.md" || { echo "installed attnccl-info --env-markdown lacks ATTNCCL_DEBUG"; exit 1; }

step "find_package(attnccl) consumer"
cmake -S "$src/tests/package/consumer" -B "$tmp/cmake-build" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/cmake-build" -j 2 > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/cmake-build/consumer"

step "pkg-config consumer"
export PKG_CONFIG_PATH=$libdir/pkgconfig
got=$(pkg-config --modversion attnccl)
[ "$got" = "$version" ] || { echo "pkg-config --modversion attnccl: $got, expected $version"; exit 1; }
# shellcheck disable=SC2046
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -o "$tmp/consumer-pc" "$src/tests/package/consumer/consumer.c" \
      $(pkg-config --cflags --libs attnccl) -lm
LD_LIBRARY_PATH=$libdir "$tmp/consumer-pc"
step "OK"
