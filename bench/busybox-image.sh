# Sourced by the benchmark scripts: busybox_image WORK makes a one-layer busybox image from
# the host's /bin/busybox (rootfs in WORK/src, OCI layout WORK/layout:latest with CMD sh, and
# the OCI archive WORK/busybox.tar tagged busybox:latest), with GNU tar, umoci and skopeo.
busybox_image() {
  _w=$1
  mkdir -p "$_w/src/bin" "$_w/src/etc" "$_w/src/tmp"
  cp /bin/busybox "$_w/src/bin/busybox"
  for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$_w/src/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$_w/src/etc/passwd"
  echo 'root:x:0:' > "$_w/src/etc/group"
  umoci init --layout "$_w/layout" >/dev/null
  umoci new --image "$_w/layout:latest" >/dev/null
  # One layer made by GNU tar (umoci insert of a directory-only tree writes a truncated tar).
  tar -C "$_w/src" -cf "$_w/layer.tar" .
  umoci raw add-layer --image "$_w/layout:latest" "$_w/layer.tar" >/dev/null
  umoci config --image "$_w/layout:latest" --config.cmd sh >/dev/null
  skopeo copy -q "oci:$_w/layout:latest" "oci-archive:$_w/busybox.tar:busybox:latest"
}
