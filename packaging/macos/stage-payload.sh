#!/bin/sh
# Stages the macOS package's payload and scripts: the one description of
# what the pkg installs, used by build-pkg.sh on a Mac (before pkgbuild) and
# by `packaging/build macos-layout` and tests/tests/macos_package.rs here.
#
#   stage-payload.sh OUT [BINARY]
#
#   OUT/root/                     pkgbuild --root, installed at /
#     usr/local/bin/palisade-agent                     0755, the universal binary
#     Library/LaunchDaemons/org.palisade.agent.plist   0644, the daemon (root)
#     Library/LaunchAgents/org.palisade.nudge.plist    0644, the nudge helper
#   OUT/scripts/                  pkgbuild --scripts
#     preinstall, postinstall                          0755
#     preseed.sh                                       0644, sourced by both
#
# BINARY must be a Mach-O file (thin or universal). Without it the binary's
# place holds a stub, a shell script that says it is not palisade-agent and
# exits 1: a Linux machine cannot link for macOS, and the layout is still
# worth checking. OUT must not exist yet.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

[ $# -ge 1 ] && [ $# -le 2 ] || {
  echo "usage: $0 OUT [BINARY]" >&2
  exit 2
}
out=$1
binary=${2:-}
[ ! -e "$out" ] || { echo "stage-payload.sh: $out exists already" >&2; exit 2; }

if [ -n "$binary" ]; then
  [ -f "$binary" ] || { echo "stage-payload.sh: no file $binary" >&2; exit 1; }
  # The first four bytes: feedfacf/cffaedfe a 64-bit Mach-O, cafebabe a
  # universal (fat) one.
  magic=$(od -An -tx1 -N4 "$binary" | tr -d ' \n')
  case $magic in
    cffaedfe | feedfacf | cafebabe) ;;
    *) echo "stage-payload.sh: $binary is not a Mach-O binary (magic $magic)" >&2; exit 1 ;;
  esac
fi

payload=$out/root
mkdir -p "$payload/usr/local/bin" "$payload/Library/LaunchDaemons" \
  "$payload/Library/LaunchAgents" "$out/scripts"

if [ -n "$binary" ]; then
  cp "$binary" "$payload/usr/local/bin/palisade-agent"
else
  cat >"$payload/usr/local/bin/palisade-agent" <<'STUB'
#!/bin/sh
# NOT A BINARY: a stub staged by `packaging/build macos-layout` on a machine
# that cannot link for macOS. Build the real package with
# packaging/macos/build-pkg.sh on a Mac.
echo "palisade-agent stub: not a macOS binary, see packaging/README.md" >&2
exit 1
STUB
fi
chmod 755 "$payload/usr/local/bin/palisade-agent"

cp "$here/org.palisade.agent.plist" "$payload/Library/LaunchDaemons/"
cp "$here/org.palisade.nudge.plist" "$payload/Library/LaunchAgents/"
chmod 644 "$payload/Library/LaunchDaemons/org.palisade.agent.plist" \
  "$payload/Library/LaunchAgents/org.palisade.nudge.plist"

cp "$here/scripts/preinstall" "$here/scripts/postinstall" "$here/scripts/preseed.sh" "$out/scripts/"
chmod 755 "$out/scripts/preinstall" "$out/scripts/postinstall"
chmod 644 "$out/scripts/preseed.sh"
