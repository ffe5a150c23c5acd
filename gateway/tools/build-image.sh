#!/usr/bin/env bash
# Build the gateway container image from a local base image, without network inside the build:
# wheels for the gateway and its dependencies are built on this host and passed in the context.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: ${0##*/} --base IMAGE [--tag TAG]

Builds gateway/Dockerfile FROM the local base IMAGE (Debian bookworm with python3 3.11).
  --base IMAGE   base image (required; no registry is assumed)
  --tag TAG      image tag (default nanogridata-gateway:<version>)
  -h, --help     this help
USAGE
}

base="" tag=""
while (($#)); do
  case "$1" in
    --base) base="${2:?--base needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n "$base" ]] || { usage >&2; echo "--base is required" >&2; exit 2; }
command -v docker >/dev/null || { echo "docker not found" >&2; exit 1; }

gw="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$gw/pyproject.toml" | head -1)"
tag="${tag:-nanogridata-gateway:$version}"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

# The wheel is built from a copy: setuptools writes build/ and *.egg-info into the tree it builds,
# and the molecule gateway scenario may be building gateway/ at the same time (test.sh's lanes).
mkdir "$ctx/src"
tar -C "$gw" --exclude=__pycache__ -cf - pyproject.toml README.md src | tar -C "$ctx/src" -xf -
# Reproducible wheels (zip timestamps from the last commit): an unchanged tree hits Docker's cache.
SOURCE_DATE_EPOCH="$(git -C "$gw" log -1 --format=%ct 2>/dev/null || echo 315532800)" \
  python3 -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$ctx/src"
rm -rf "$ctx/src"
mkdir "$ctx/app"  # the gateway's wheel apart from its dependencies' (the Dockerfile's layers)
mv "$ctx"/wheels/nanogridata_gateway-*.whl "$ctx/app/"
cp "$gw/Dockerfile" "$ctx/"
docker build --build-arg "BASE_IMAGE=$base" -t "$tag" "$ctx"
echo "built $tag"
