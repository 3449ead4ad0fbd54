# Sourced by the benchmark scripts: rootless_setup WORK [--user-env | VAR=VALUE…] sets `as`
# (a command prefix) and `label` for the run. As root (ROOTLESS_USER unset; root needs its own
# /etc/subuid and /etc/subgid range, or the script stops): as="" and
# label=root. With ROOTLESS_USER=name (a user with a subordinate id range): uid and gid are
# that user's, WORK is chowned to them (recursively), label is "rootless (name)", and `as`
# runs a command as them under setpriv --reset-env, in one of two environments:
#   default      a fresh one of its own: HOME=WORK, PATH=/usr/bin:/bin, XDG_RUNTIME_DIR=WORK/xdg
#                (made, mode 0700), plus each VAR=VALUE given;
#   --user-env   setpriv's: the user's HOME, setpriv's PATH, no XDG_RUNTIME_DIR (so boxrun's
#                keeper lives in /tmp/boxkit-UID, shared between runs).
# Callers that fill WORK afterwards chown it again before the user needs the new files.
rootless_setup() {
  as=""
  label=root
  if [ -z "${ROOTLESS_USER:-}" ]; then
    # Without a range of its own (the entry boxkit reads: root, 0 or boxkit), root's
    # containers are not remapped (boxkit warns and runs them with host ids): a different,
    # cheaper path than the one the tables describe.
    [ "$(id -u)" != 0 ] ||
      { grep -Eq '^(root|0|boxkit):' /etc/subuid && grep -Eq '^(root|0|boxkit):' /etc/subgid; } 2>/dev/null || {
      echo "root needs an /etc/subuid and /etc/subgid range: usermod --add-subuids 2000000-2065535 --add-subgids 2000000-2065535 root" >&2
      exit 1
    }
    return 0
  fi
  _rw=$1; shift
  uid=$(id -u "$ROOTLESS_USER"); gid=$(id -g "$ROOTLESS_USER")
  chown -R "$uid:$gid" "$_rw"
  label="rootless ($ROOTLESS_USER)"
  if [ "${1:-}" = --user-env ]; then
    as="setpriv --reuid=$uid --regid=$gid --init-groups --reset-env --"
    return 0
  fi
  mkdir -p "$_rw/xdg"; chown "$uid:$gid" "$_rw/xdg"; chmod 700 "$_rw/xdg"
  as="setpriv --reuid=$uid --regid=$gid --init-groups --reset-env env HOME=$_rw PATH=/usr/bin:/bin XDG_RUNTIME_DIR=$_rw/xdg${*:+ $*}"
}
