#!/usr/bin/env bash
# Makes a local stand-in for the official `node:24-bookworm-slim` image where no registry of container
# images can be reached: a minimal Debian 12 (debootstrap --variant=minbase, from the Debian mirror apt
# uses on this machine) plus the Node 24 binary that the project pins (the `node` npm package, in
# node_modules/node/bin/node) and the npm that runs here, at the official image's paths (/usr/local/bin).
# Imported into podman's local storage with `podman import`.
#
#   deploy/container/make-base-image.sh [TAG]      (as root, from the repository's root)
#
# Prints the tag. Does nothing but print it when podman already has an image with that tag. The default tag
# names the Node version and a hash of this script, so a change to either makes a new image.
# Then: podman build --build-arg NODE_IMAGE=<tag> -t zproxy .
set -euo pipefail

node_bin="${NODE_BIN:-node_modules/node/bin/node}"
[ -x "$node_bin" ] || { echo "make-base-image: $node_bin is missing: run npm ci first" >&2; exit 1; }
node_version="$("$node_bin" --version)"
recipe_hash="$(sha256sum "$0" | cut -c1-12)"
tag="${1:-localhost/zproxy-node-base:bookworm-${node_version#v}-${recipe_hash}}"
podman_cmd=(podman --runtime runc --cgroup-manager=cgroupfs)

if "${podman_cmd[@]}" image exists "$tag"; then
  echo "$tag"
  exit 0
fi

# The mirror apt already uses (first URI of the Debian sources), else debootstrap's own default.
mirror=""
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror="$(awk '/^URIs:/ { print $2; exit }' "$f")"
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list)"
fi

npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
[ -f "$npm_dir/package.json" ] || { echo "make-base-image: npm's folder not found ($npm_dir)" >&2; exit 1; }

rootfs="$(mktemp -d /var/tmp/zproxy-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "make-base-image: debootstrap bookworm into $rootfs" >&2
debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} >&2

install -D -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
# As the official image: a `node` user (uid 1000) for those who want one; zproxy's image runs as 10001.
chroot "$rootfs" useradd --uid 1000 --user-group --create-home --shell /bin/bash node
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb

tar -C "$rootfs" --numeric-owner -c . | "${podman_cmd[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' - "$tag" >&2
echo "$tag"
