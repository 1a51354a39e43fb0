#!/bin/sh
# Build the registry-mirror OCI image without a container engine:
#   1. the wheel and its runtime dependencies, built here with the project's Python;
#   2. a minimal Debian root filesystem with the same Python (mmdebstrap, Essential packages only:
#      no apt, no compiler), the wheels installed into a venv at /opt/registry-mirror from the local
#      wheelhouse (no index at build time), pip removed afterwards;
#   3. two layers (the OS, then the app: a code change re-ships only the second) and an image config
#      (non-root user, entry point, volume) with umoci, then an OCI archive with skopeo.
# Usage: build.sh PYTHON VERSION OUT.tar.  Needs root (mmdebstrap's root mode, file ownership).
# PYTHON must be the same Python release as the image's (Debian's /usr/bin/python3 on a Debian host
# of the same suite): dependency markers such as `python_full_version < "3.11.3"` are evaluated by
# the pip that builds the wheelhouse, so they must see the interpreter the image will run.
set -eu

PYTHON=$1 VERSION=$2 OUT=$3
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
UID_GID=10001
APP=/opt/registry-mirror
CACHE=/var/cache/registry-mirror
WORK=build/image
# Reproducible timestamps: the last commit's, or the epoch when not in a git checkout.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap root mode)" >&2; exit 2; }
for tool in mmdebstrap umoci skopeo tar; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (make test-deps installs it)" >&2; exit 2; }
done
host_python=$("$PYTHON" -c 'import platform; print(platform.python_version())')

rm -rf "$WORK"
mkdir -p "$WORK/wheels" "$(dirname "$OUT")"

echo "== wheels (runtime dependencies only, for Python $host_python)"
"$PYTHON" -m venv "$WORK/builder"
"$WORK/builder/bin/pip" install --quiet --upgrade pip
"$WORK/builder/bin/pip" wheel --quiet --wheel-dir "$WORK/wheels" .

echo "== root filesystem ($SUITE)"
# Docs, man pages and locales are of no use in a container; dpkg skips them at unpack time.
mmdebstrap --quiet --variant=essential --mode=root \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook="copy-in $WORK/wheels /tmp" \
  --customize-hook="chroot \"\$1\" python3 -c 'import platform; print(platform.python_version())' >$WORK/image-python" \
  --customize-hook="test \"\$(cat $WORK/image-python)\" = $host_python || { echo \"build.sh: wheels are for Python $host_python, $SUITE has \$(cat $WORK/image-python)\" >&2; exit 1; }" \
  --customize-hook="chroot \"\$1\" python3 -m venv $APP" \
  --customize-hook="chroot \"\$1\" $APP/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-cache-dir registry-mirror" \
  --customize-hook="chroot \"\$1\" $APP/bin/pip uninstall --quiet --yes pip setuptools" \
  --customize-hook='rm -rf "$1"/tmp/wheels "$1"/var/cache/* "$1"/var/log/* "$1"/var/lib/apt/lists/*' \
  --customize-hook="echo 'registry-mirror:x:$UID_GID:$UID_GID:registry-mirror:/nonexistent:/usr/sbin/nologin' >>\"\$1\"/etc/passwd" \
  --customize-hook="echo 'registry-mirror:x:$UID_GID:' >>\"\$1\"/etc/group" \
  --customize-hook="mkdir -p \"\$1\"$CACHE && chown $UID_GID:$UID_GID \"\$1\"$CACHE" \
  "$SUITE" "$WORK/rootfs" "deb $MIRROR $SUITE main" "deb $SECURITY_MIRROR $SUITE-security main"


echo "== layers"
# The app layer holds /opt/registry-mirror only; the OS layer everything else.
layer() {  # layer OUT.tar DIR PATH... : a tar with sorted names and clamped times
  out=$1 dir=$2; shift 2
  tar --create --file "$out" --directory "$dir" --sort=name --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime "$@"
}
mkdir -p "$WORK/app"
mv "$WORK/rootfs$APP" "$WORK/app/registry-mirror"
mkdir -p "$WORK/app/opt" && mv "$WORK/app/registry-mirror" "$WORK/app/opt/"
layer "$WORK/os.tar" "$WORK/rootfs" --exclude=./dev/* .
layer "$WORK/app.tar" "$WORK/app" --owner=0 --group=0 ./opt

echo "== image"
LAYOUT=$WORK/oci
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:build"
umoci raw add-layer --image "$LAYOUT:build" --history.created "$CREATED" \
  --history.created_by "mmdebstrap $SUITE essential + python3" "$WORK/os.tar"
umoci raw add-layer --image "$LAYOUT:build" --history.created "$CREATED" \
  --history.created_by "registry-mirror $VERSION venv" "$WORK/app.tar"
umoci config --image "$LAYOUT:build" --tag "$VERSION" --created "$CREATED" \
  --os linux --architecture "$(dpkg --print-architecture)" \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint "$APP/bin/registry-mirror" --config.cmd serve \
  --config.env "PATH=$APP/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.env "REGISTRY_MIRROR_CACHE_DIR=$CACHE" \
  --config.workingdir / --config.volume "$CACHE" \
  --config.exposedports 5000/tcp --config.exposedports 5002/tcp \
  --config.label "org.opencontainers.image.title=registry-mirror" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
umoci gc --layout "$LAYOUT"

rm -f "$OUT"
skopeo copy --quiet "oci:$LAYOUT:$VERSION" "oci-archive:$OUT:registry-mirror:$VERSION"
rm -rf "$WORK/rootfs" "$WORK/app" "$WORK/os.tar" "$WORK/app.tar"

"$PYTHON" - "$LAYOUT" "$VERSION" "$OUT" <<'PY'
import json, os, sys
layout, tag, out = sys.argv[1:]
def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
manifest = json.load(open(blob(desc["digest"])))
compressed = sum(layer["size"] for layer in manifest["layers"])
config = json.load(open(blob(manifest["config"]["digest"])))
print(f"registry-mirror:{tag}  {out}  {os.path.getsize(out) / 2**20:.1f} MiB archive, "
      f"{compressed / 2**20:.1f} MiB compressed layers, user {config['config']['User']}")
PY
