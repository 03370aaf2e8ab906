#!/usr/bin/env bash
# consume.sh - checks the installed package as a downstream project sees it.
#
#   consume.sh BUILD_DIR CC CC_ID [FLAG...]
#
# Installs BUILD_DIR (`cmake --install --prefix`) into a temporary directory
# and builds consumer.c against that prefix four ways:
#   pkg-config            shared library, the .pc found via PKG_CONFIG_PATH
#   pkg-config --static   static library, from a copy of the prefix without
#                         the .so (as a static-only package installs it), so
#                         Requires.private and Libs.private must be complete;
#                         the copy also proves the .pc relocatable
#   find_package          shmcache::shmcache and shmcache::shmcache_static,
#                         shmcacheConfig.cmake found via CMAKE_PREFIX_PATH
# then runs every consumer (create a segment, set, get, close, unlink).
# CC is the C compiler the library was built with and CC_ID its CMake id;
# with GCC the static consumer is also linked without the LTO linker
# plugin, as any other toolchain would link the archive. FLAGs go to every
# compile and link (the sanitizer flags of an instrumented build).
# Needs no network. Any failure is an error: nothing is skipped. The
# temporary directory and any segment left behind are removed on exit.
set -euo pipefail

prog=${0##*/}
die() {
	echo "$prog: FAIL: $*" >&2
	exit 1
}
[ $# -ge 3 ] || { echo "usage: $prog BUILD_DIR CC CC_ID [FLAG...]" >&2; exit 2; }
build_dir=$1
cc=$2
cc_id=$3
shift 3
flags=("$@")
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for tool in cmake pkg-config readelf "$cc"; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH (scripts/bootstrap installs it)"
done
[ -f "$build_dir/cmake_install.cmake" ] || die "$build_dir is not a configured build directory"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmc-packaging.XXXXXX")
segment_prefix=pk.$$
cleanup() {
	rm -rf "$tmp"
	rm -f /dev/shm/shmc."$segment_prefix".*
}
trap cleanup EXIT

# Runs a step with its output in a log, shown only if the step fails.
step() {
	local what=$1
	shift
	echo "$prog: $what"
	if ! "$@" >"$tmp/step.log" 2>&1; then
		cat "$tmp/step.log" >&2
		die "$what"
	fi
}

# Runs consumer binary $2 (described by $1) and checks what it did.
run_consumer() {
	local what=$1 bin=$2 name=$segment_prefix.$3 out
	out=$("$bin" "$name" 2>&1) || {
		echo "$out" >&2
		die "$what: the consumer failed"
	}
	echo "$out"
	grep -q '^consumer: ok' <<<"$out" || die "$what: no 'consumer: ok' line"
	[ ! -e "/dev/shm/shmc.$name" ] || die "$what: the consumer left /dev/shm/shmc.$name behind"
}

# Whether ELF file $1 needs libshmcache.so at run time. (No pipe into grep -q:
# with pipefail, readelf killed by SIGPIPE would count as a failure.)
needs_shared_lib() {
	local dynamic
	dynamic=$(readelf -d "$1") || die "readelf -d $1 failed"
	grep -q 'NEEDED.*\[libshmcache\.so' <<<"$dynamic"
}

prefix=$tmp/prefix
step "installing $build_dir into $prefix" cmake --install "$build_dir" --prefix "$prefix"
[ -f "$prefix/include/shmcache.h" ] || die "no include/shmcache.h in the prefix"
mapfile -t pcs < <(find "$prefix" -name shmcache.pc)
[ ${#pcs[@]} -eq 1 ] || die "expected one shmcache.pc in the prefix, found ${#pcs[@]}: ${pcs[*]-}"
pc_dir=$(dirname "${pcs[0]}")
lib_dir=$(dirname "$pc_dir")
for f in libshmcache.a libshmcache.so cmake/shmcache/shmcacheConfig.cmake \
	cmake/shmcache/shmcacheConfigVersion.cmake; do
	[ -e "$lib_dir/$f" ] || die "no $f in $lib_dir"
done

# Compiler-specific LTO bytecode in the archive would tie static consumers to
# the compiler release that built it, and recompile it under their flags.
sections=$(readelf -SW "$lib_dir/libshmcache.a") || die "readelf -S $lib_dir/libshmcache.a failed"
! grep -q '\.gnu\.lto_\|\.llvm\.lto\|\.llvmbc' <<<"$sections" ||
	die "$lib_dir/libshmcache.a holds LTO intermediate code, not only machine code"

# ---- pkg-config, shared
export PKG_CONFIG_PATH=$pc_dir
step "pkg-config finds shmcache in the prefix" pkg-config --exists --print-errors shmcache
got=$(pkg-config --variable=pcfiledir shmcache)
[ "$got" = "$pc_dir" ] || die "pkg-config used $got/shmcache.pc, not the one in $pc_dir"
pc_libdir=$(pkg-config --variable=libdir shmcache)
[ "$(cd "$pc_libdir" && pwd)" = "$lib_dir" ] || die "the .pc's libdir $pc_libdir is not $lib_dir"
read -ra cflags <<<"$(pkg-config --cflags shmcache)"
read -ra libs <<<"$(pkg-config --libs shmcache)"
# Strict C11 with warnings as errors: the public header must not need more.
strict=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
step "pkg-config: building the shared consumer" "$cc" "${strict[@]}" "${flags[@]}" \
	"${cflags[@]}" -o "$tmp/pc_shared" "$src_dir/consumer.c" "${libs[@]}" -Wl,-rpath,"$pc_libdir"
needs_shared_lib "$tmp/pc_shared" || die "pkg-config: the shared consumer does not use libshmcache.so"
run_consumer "pkg-config, shared" "$tmp/pc_shared" pc-shared

# ---- pkg-config, static
static_prefix=$tmp/static-prefix
cp -a "$prefix" "$static_prefix"
rm -f "$static_prefix/${lib_dir#"$prefix"/}"/libshmcache.so*
export PKG_CONFIG_PATH=$static_prefix/${pc_dir#"$prefix"/}
read -ra cflags <<<"$(pkg-config --static --cflags shmcache)"
read -ra libs <<<"$(pkg-config --static --libs shmcache)"
step "pkg-config --static: building the static consumer" "$cc" "${strict[@]}" "${flags[@]}" \
	"${cflags[@]}" -o "$tmp/pc_static" "$src_dir/consumer.c" "${libs[@]}"
! needs_shared_lib "$tmp/pc_static" || die "pkg-config --static: the consumer needs libshmcache.so"
run_consumer "pkg-config, static" "$tmp/pc_static" pc-static
if [ "$cc_id" = GNU ]; then
	step "pkg-config --static: linking without the LTO plugin" "$cc" "${flags[@]}" \
		"${cflags[@]}" -fno-use-linker-plugin -o "$tmp/pc_static_plain" \
		"$src_dir/consumer.c" "${libs[@]}"
	run_consumer "pkg-config, static, no LTO plugin" "$tmp/pc_static_plain" pc-static-plain
fi
unset PKG_CONFIG_PATH

# ---- find_package
consumer_build=$tmp/consumer-build
step "find_package: configuring the consumer project" cmake -S "$src_dir" -B "$consumer_build" \
	-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="${flags[*]-}" \
	-DCMAKE_EXE_LINKER_FLAGS="${flags[*]-}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
got=$(sed -n 's/^shmcache_DIR:PATH=//p' "$consumer_build/CMakeCache.txt")
[ "$got" = "$lib_dir/cmake/shmcache" ] || die "find_package used $got, not $lib_dir/cmake/shmcache"
step "find_package: building the consumers" cmake --build "$consumer_build" -j2
needs_shared_lib "$consumer_build/consumer_shared" ||
	die "find_package: consumer_shared does not use libshmcache.so"
! needs_shared_lib "$consumer_build/consumer_static" ||
	die "find_package: consumer_static needs libshmcache.so"
run_consumer "find_package, shmcache::shmcache" "$consumer_build/consumer_shared" cm-shared
run_consumer "find_package, shmcache::shmcache_static" "$consumer_build/consumer_static" cm-static

echo "$prog: ok: the installed package builds and runs consumers with pkg-config and find_package"
