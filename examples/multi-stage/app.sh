echo "app @VERSION@ running from a FROM scratch image"
/bin/busybox cat /BUILDINFO
