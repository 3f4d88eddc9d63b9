#!/bin/bash
# Builds the macOS installer package, on a Mac:
#
#   packaging/macos/build-pkg.sh      ->  dist/palisade-agent-VERSION.pkg
#
# 1. palisade-agent for aarch64-apple-darwin and x86_64-apple-darwin (cargo,
#    release), joined by `lipo -create` into one universal binary;
# 2. the payload and scripts staged by stage-payload.sh (the same staging
#    `packaging/build macos-layout` checks on Linux);
# 3. `pkgbuild` makes the component package, `productbuild` the product
#    archive from distribution.xml.
#
# Signing is optional: PALISADE_CODESIGN_IDENTITY (a "Developer ID
# Application" identity) signs the binary with the hardened runtime, and
# PALISADE_PKG_SIGN_IDENTITY (a "Developer ID Installer" identity) signs the
# package. Notarisation (`xcrun notarytool submit … --wait`, then `xcrun
# stapler staple`) is not done here: it needs an Apple account's credentials.
#
# Needs: Xcode's command line tools (lipo, pkgbuild, productbuild) and rustup
# (the two Apple targets are added if missing). /bin/bash 3.2 runs it.
set -euo pipefail

if [ "$(uname)" != Darwin ]; then
  echo "build-pkg.sh: this builds the .pkg and runs on macOS only (uname is $(uname))." >&2
  echo "On Linux, 'packaging/build macos-layout' stages and checks the payload, without a pkg." >&2
  exit 1
fi
for tool in cargo lipo pkgbuild productbuild; do
  command -v "$tool" >/dev/null || {
    echo "build-pkg.sh: $tool is missing (xcode-select --install; rustup for cargo)" >&2
    exit 1
  }
done

cd "$(dirname "$0")/../.."
log() { printf '==> %s\n' "$*" >&2; }

version=$(cargo pkgid -p palisade-agent | sed 's/.*[#@]//')
work=target/packaging/macos-pkg
rm -rf "$work"
mkdir -p "$work" dist

thin=()
for target in aarch64-apple-darwin x86_64-apple-darwin; do
  if command -v rustup >/dev/null; then rustup target add "$target" >/dev/null; fi
  log "building palisade-agent for $target"
  cargo build --quiet --release -p palisade-agent --bin palisade-agent --target "$target"
  thin+=("target/$target/release/palisade-agent")
done
universal=$work/palisade-agent
lipo -create -output "$universal" "${thin[@]}"
lipo -verify_arch arm64 x86_64 "$universal"

if [ -n "${PALISADE_CODESIGN_IDENTITY:-}" ]; then
  log "signing the binary as $PALISADE_CODESIGN_IDENTITY (hardened runtime)"
  codesign --force --options runtime --timestamp --sign "$PALISADE_CODESIGN_IDENTITY" "$universal"
fi

log "staging the payload"
sh packaging/macos/stage-payload.sh "$work/stage" "$universal"

log "pkgbuild org.palisade.agent $version"
# --ownership recommended: every file root:wheel, whoever built it.
pkgbuild --root "$work/stage/root" --scripts "$work/stage/scripts" \
  --identifier org.palisade.agent --version "$version" --install-location / \
  --ownership recommended "$work/org.palisade.agent.pkg"

sed "s/@VERSION@/$version/" packaging/macos/distribution.xml >"$work/distribution.xml"
sign=()
if [ -n "${PALISADE_PKG_SIGN_IDENTITY:-}" ]; then
  sign=(--sign "$PALISADE_PKG_SIGN_IDENTITY")
  log "signing the package as $PALISADE_PKG_SIGN_IDENTITY"
fi
pkg=dist/palisade-agent-$version.pkg
# "${sign[@]+…}": bash 3.2 calls an empty array unset under set -u.
productbuild --distribution "$work/distribution.xml" --package-path "$work" \
  ${sign[@]+"${sign[@]}"} "$pkg"
echo "$pkg"
