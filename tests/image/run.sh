#!/usr/bin/env bash
# `make image-test`: build the Containerfile and check the image from the inside.
#
# Image registries are out of reach here, Debian's archive is not: the base is a
# bookworm made with `debootstrap --variant=minbase` (trimmed like debian:bookworm-slim)
# and `podman import`ed, kept in podman's store and reused by later runs. The image is
# built on it with `podman build --isolation=chroot`. Containers cannot run here (cgroups,
# rlimits), so the checks (tests/image/test_image.py) chroot into a created container's
# mounted filesystem and start its entry point as the image's user, with its environment.
# Needs root, podman and debootstrap. Every mount and container made here is removed on
# exit, failures included.
#
#   PYTHON            the test environment's python (default .venv/bin/python)
#   IMAGE_TEST_BASE   base image to build on (default: the debootstrapped bookworm)
#   IMAGE_TEST_TAG    tag for the built image (default localhost/hubmirror:image-test)
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
# Bump the suffix when the base recipe below changes: older bases are then rebuilt.
BASE=${IMAGE_TEST_BASE:-localhost/hubmirror-test-base:bookworm-1}
TAG=${IMAGE_TEST_TAG:-localhost/hubmirror:image-test}

if [ "$(id -u)" -ne 0 ]; then
  echo "image-test: needs root (debootstrap, podman mount, chroot)" >&2
  exit 1
fi
for tool in podman debootstrap chroot; do
  command -v "$tool" >/dev/null || { echo "image-test: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/hubmirror-image-test.XXXXXX)
container=""
root=""
cleanup() {
  local status=$?
  set +e
  # Our own mounts first (innermost first), then podman's, then the scratch folder.
  for target in "${root:+$root/dev}" "${root:+$root/proc}"; do
    [ -n "$target" ] && mountpoint -q "$target" && { umount "$target" || umount -l "$target"; }
  done
  # debootstrap mounts proc and sys inside the target while it works.
  grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n 1 umount -l
  if [ -n "$container" ]; then
    podman umount "$container" >/dev/null
    podman rm --force "$container" >/dev/null
  fi
  rm -rf --one-file-system "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

debian_mirror() {
  # The Debian mirror this machine's apt uses, else deb.debian.org.
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  local mirror rootfs=$work/rootfs
  mirror=$(debian_mirror)
  mirror=${mirror%/}
  echo "image-test: building base $BASE with debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; return 1; }
  # What debian:bookworm-slim adds to a minbase: no docs, man pages or locales, and apt
  # that keeps no caches; the archive as deb822 sources, security updates included.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/*
  # A site's own certificate authorities (this machine's egress proxy signs TLS), as a
  # site's base image would carry them: ca-certificates in the build merges them in.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  # The runtime provides these; the build host's copies do not belong in an image.
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  tar --numeric-owner -C "$rootfs" -c . \
    | podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf --one-file-system "$rootfs"
}

start=$SECONDS
if podman image exists "$BASE"; then
  echo "image-test: reusing base $BASE"
else
  build_base
fi
echo "image-test: base ready after $((SECONDS - start)) s"

podman_build() {
  podman build --isolation=chroot --format docker --layers --build-arg BASE="$BASE" \
    -f Containerfile "$@" . >>"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; return 1; }
}
image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
# The build stage has a tag of its own: the next run reuses its layers (the pip install)
# while src/ is unchanged. What an earlier run built and this one replaced is removed,
# so the store does not grow with every change.
previous=("$(image_id "$TAG-build")" "$(image_id "$TAG")")
podman_build --target build -t "$TAG-build"
podman_build -t "$TAG"
current=("$(image_id "$TAG-build")" "$(image_id "$TAG")")
for index in 0 1; do
  old=${previous[$index]}
  if [ -n "$old" ] && [ "$old" != "${current[$index]}" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
done
echo "image-test: built $TAG after $((SECONDS - start)) s," \
  "$(podman image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"

# A created (never started) container: its filesystem is the image plus a writable
# layer, as at run time. Its /proc and a minimal /dev are ours to mount.
container=$(podman create --no-healthcheck "$TAG")
root=$(podman mount "$container")
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid,size=1m tmpfs "$root/dev"
for device in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $device
  mknod -m 0666 "$root/dev/$1" c "$2" "$3"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

IMAGE_TEST_ROOT="$root" IMAGE_TEST_TAG="$TAG" \
  "$PYTHON" -m pytest tests/image -p no:cacheprovider
echo "image-test: done after $((SECONDS - start)) s"
