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

# busybox_crun_bundle WORK: crun's bundle WORK/bundle running /bin/true, from umoci's unpack of
# WORK/layout:latest and crun's own default spec (`crun spec`; `crun spec --rootless` when `as`
# runs commands as uid:gid, from bench/rootless.sh, which then own the bundle).
busybox_crun_bundle() {
  _w=$1
  if [ -n "$as" ]; then
    umoci unpack --rootless --image "$_w/layout:latest" "$_w/bundle" >/dev/null
    rm -f "$_w/bundle/config.json"
    chown -R "$uid:$gid" "$_w/bundle"
    (cd "$_w/bundle" && $as crun spec --rootless)
  else
    umoci unpack --image "$_w/layout:latest" "$_w/bundle" >/dev/null
    rm -f "$_w/bundle/config.json"
    (cd "$_w/bundle" && crun spec)
  fi
  jq '.root.path="rootfs" | .process.terminal=false | .process.args=["/bin/true"] | .root.readonly=false' \
    "$_w/bundle/config.json" > "$_w/bundle/config.json.new"
  mv "$_w/bundle/config.json.new" "$_w/bundle/config.json"
  [ -z "$as" ] || chown -R "$uid:$gid" "$_w/bundle"
}
