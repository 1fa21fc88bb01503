#!/usr/bin/env bash
# Builds a busybox rootfs tar from the host's static busybox, for `minid image import`.
#
#   tests/images/build-busybox.sh OUT.tar
#
# Contents: /bin/busybox, one symlink per applet (`busybox --list`), /bin/sh, /etc/passwd
# (root, nobody), /etc/group, /tmp (1777), /proc /sys /dev, /root. Deterministic: entries
# sorted, fixed mtime, owner 0:0, so the same busybox gives the same bytes (and diff id).
# Installs busybox-static with apt-get when /bin/busybox is missing or not static.
set -euo pipefail

out=${1:?usage: $0 OUT.tar}
bb=/bin/busybox

is_static() { ! ldd "$1" >/dev/null 2>&1; }

if [ ! -x "$bb" ] || ! is_static "$bb"; then
    echo "installing busybox-static" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq busybox-static >&2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,etc,proc,sys,dev,root,tmp,usr/bin,usr/sbin,sbin}
install -m 0755 "$bb" "$stage/bin/busybox"
# Applets live in /bin, /sbin, /usr/bin, /usr/sbin; link them all to /bin/busybox.
"$bb" --list-full | while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$stage/$(dirname "$applet")"
    ln -sf /bin/busybox "$stage/$applet"
done
ln -sf busybox "$stage/bin/sh"

cat >"$stage/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$stage/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$stage/etc/passwd" "$stage/etc/group"
chmod 0755 "$stage" "$stage"/{bin,etc,proc,sys,dev,usr,usr/bin,usr/sbin,sbin}
chmod 0700 "$stage/root"
chmod 1777 "$stage/tmp"

tar --sort=name --mtime='2000-01-01 00:00:00 UTC' --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf "$out" .
echo "wrote $out ($(wc -c <"$out") bytes, $("$bb" --list | wc -l) applets)" >&2
