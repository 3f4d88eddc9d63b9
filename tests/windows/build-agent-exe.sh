#!/usr/bin/env bash
# Cross-builds palisade-agent.exe for x86_64-pc-windows-gnu with mingw-w64
# (a real link, not only `cargo check`), builds the bcryptprimitives.dll
# stand-in Wine 8 needs to start a Rust program, puts both in
# target/windows-test/ and prints the exe's path. tests/run calls it; it
# expects the mingw-w64 compiler and the Rust target to be installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
cargo build --quiet -p palisade-agent --target x86_64-pc-windows-gnu

out=target/windows-test
mkdir -p "$out"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
  tests/windows/bcryptprimitives.c tests/windows/bcryptprimitives.def -ladvapi32
cp target/x86_64-pc-windows-gnu/debug/palisade-agent.exe "$out/"
echo "$PWD/$out/palisade-agent.exe"
