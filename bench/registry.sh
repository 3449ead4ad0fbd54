# Sourced by the benchmark scripts: start_registry DIR starts a docker-registry of our own on
# a free 127.0.0.1 port, its storage and log under DIR, and waits until it answers. Sets REG
# (host:port) and REG_PID (for the caller's cleanup).
start_registry() {
  _d=$1
  _port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  REG=127.0.0.1:$_port
  mkdir -p "$_d"
  cat > "$_d/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $_d/storage
http:
  addr: $REG
YML
  docker-registry serve "$_d/config.yml" > "$_d/log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/', timeout=1)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "docker-registry did not start; see $_d/log" >&2
  return 1
}
