/*
 * The "same work" floor of a container start (bench/start.sh, issue 14): the kernel work a
 * docker-default `run --rm --network none IMAGE true` cannot skip, done with nothing else -- no
 * store, no image config, no state on disk, no supervisor, no error handling beyond a message,
 * one process between the caller and pid 1, the smallest id map (the caller's own id as 0).
 *
 *   docker-floor LOWERDIR SCRATCH
 *
 * LOWERDIR is an unpacked image root (read-only lower layer); SCRATCH an empty directory that
 * the container's tmpfs (overlay upper, work and root) is mounted on, in the container's own
 * mount namespace. Steps, in the order boxrun takes them:
 *   clone with new user, mount, pid, network, IPC, UTS and cgroup namespaces; uid/gid map;
 *   loopback up; hostname; a tmpfs with the overlay's upper and work dirs; the overlay root;
 *   /proc; /sys read-only; /dev as a tmpfs with null, zero, full, random, urandom and tty bound
 *   from the host, devpts, /dev/shm, /dev/mqueue and the fd/std* symlinks; /etc/hostname,
 *   /etc/hosts and /etc/resolv.conf bound from files; docker's masked paths (a /dev/null or an
 *   empty read-only tmpfs over each one present) and read-only paths; pivot_root; no new
 *   privileges; a seccomp filter (one that allows everything: the cheapest filter); exec
 *   /bin/true; wait for it.
 *
 *   docker-floor --tool LOWERDIR SCRATCH
 *
 * adds boxkit's process structure, the "design floor": a tool process between the caller and
 * the container, born in a user namespace of its own (its id map written by the caller) with a
 * mount namespace of its own (a copy of the host's table, made a slave); the container's user
 * namespace is nested in the tool's, and the tool relays pid 1's exit status to the caller over
 * a pipe and exits after it (the caller does not wait for the tool's teardown, as boxrun's
 * agent does not). The container's part is the same as without --tool.
 * Written for the benchmark from the kernel's documented interfaces (mount(2), pivot_root(2),
 * user_namespaces(7), seccomp(2)); it is not a runtime and keeps no promise beyond this run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *lower, *scratch;
static int sync_pipe[2], tool_pipe[2], status_pipe[2];

static void die(const char *what, const char *obj) {
  fprintf(stderr, "docker-floor: %s %s: %s\n", what, obj, strerror(errno));
  _exit(125);
}

static void mnt(const char *src, const char *dst, const char *fs, unsigned long fl, const char *data) {
  if (mount(src, dst, fs, fl, data) != 0) die("mount", dst);
}

static void touch(const char *p) {
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) die("create", p);
  close(fd);
}

static void write_file(const char *p, const char *s) {
  int fd = open(p, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, s, strlen(s)) < 0) die("write", p);
  close(fd);
}

static int child(void *arg) {
  (void)arg;
  char c, p[4096], r[4096];
  if (read(sync_pipe[0], &c, 1) != 1) die("wait for", "id map");
  mnt(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  ifr.ifr_flags = IFF_UP | IFF_RUNNING;
  if (s < 0 || ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die("bring up", "lo");
  close(s);
  if (sethostname("floor", 5) != 0) die("sethostname", "floor");

  mnt("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  snprintf(p, sizeof p, "%s/upper", scratch);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/work", scratch);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/root", scratch);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work,userxattr", lower, scratch, scratch);
  snprintf(r, sizeof r, "%s/root", scratch);
  mnt("overlay", r, "overlay", MS_NODEV, p);
  if (chdir(r) != 0) die("chdir", r);

  mkdir("proc", 0555);
  mnt("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mkdir("sys", 0555);
  mnt("sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  mkdir("dev", 0755);
  mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  static const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
  for (unsigned i = 0; i < sizeof devs / sizeof *devs; i++) {
    char host[64], in[64];
    snprintf(host, sizeof host, "/dev/%s", devs[i]);
    snprintf(in, sizeof in, "dev/%s", devs[i]);
    touch(in);
    mnt(host, in, NULL, MS_BIND, NULL);
  }
  mkdir("dev/pts", 0755);
  mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  symlink("pts/ptmx", "dev/ptmx");
  mkdir("dev/shm", 01777);
  mnt("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  mkdir("dev/mqueue", 0755);
  mnt("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  symlink("/proc/self/fd", "dev/fd");
  symlink("/proc/self/fd/0", "dev/stdin");
  symlink("/proc/self/fd/1", "dev/stdout");
  symlink("/proc/self/fd/2", "dev/stderr");

  mkdir("etc", 0755);
  static const char *etc[] = {"hostname", "hosts", "resolv.conf"};
  for (unsigned i = 0; i < sizeof etc / sizeof *etc; i++) {
    char src[4096], in[64];
    snprintf(src, sizeof src, "%s/%s", scratch, etc[i]);
    snprintf(in, sizeof in, "etc/%s", etc[i]);
    touch(src);
    touch(in);
    mnt(src, in, NULL, MS_BIND, NULL);
  }

  static const char *masked[] = {"proc/acpi", "proc/asound", "proc/interrupts", "proc/kcore", "proc/keys",
                                 "proc/latency_stats", "proc/sched_debug", "proc/scsi", "proc/timer_list",
                                 "proc/timer_stats", "sys/devices/virtual/powercap", "sys/firmware"};
  for (unsigned i = 0; i < sizeof masked / sizeof *masked; i++) {
    struct stat st;
    if (stat(masked[i], &st) != 0) continue;
    if (S_ISDIR(st.st_mode))
      mnt("tmpfs", masked[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
    else
      mnt("/dev/null", masked[i], NULL, MS_BIND, NULL);
  }
  static const char *ro[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"};
  for (unsigned i = 0; i < sizeof ro / sizeof *ro; i++) {
    if (access(ro[i], F_OK) != 0) continue;
    mnt(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL);
    mnt(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  }

  if (syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root", r);
  if (umount2(".", MNT_DETACH) != 0) die("detach", "old root");
  if (chdir("/") != 0) die("chdir", "/");

  struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog prog = {.len = 1, .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("prctl", "no_new_privs");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) die("seccomp", "filter");
  char *argv[] = {"true", NULL}, *envp[] = {"PATH=/bin", NULL};
  execve("/bin/true", argv, envp);
  die("exec", "/bin/true");
  return 125;
}

static void write_maps(pid_t pid) {
  char p[64], m[64];
  snprintf(p, sizeof p, "/proc/%d/setgroups", pid);
  write_file(p, "deny");
  snprintf(m, sizeof m, "0 %d 1", (int)getuid());
  snprintf(p, sizeof p, "/proc/%d/uid_map", pid);
  write_file(p, m);
  snprintf(m, sizeof m, "0 %d 1", (int)getgid());
  snprintf(p, sizeof p, "/proc/%d/gid_map", pid);
  write_file(p, m);
}

/* Clone the container, map it, release it, wait for it: its exit status the way a shell
 * reports one. */
static int run_container(void) {
  if (pipe2(sync_pipe, O_CLOEXEC) != 0) die("pipe", "");
  static char stack[256 * 1024];
  int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
              CLONE_NEWCGROUP | SIGCHLD;
  pid_t pid = clone(child, stack + sizeof stack, flags, NULL);
  if (pid < 0) die("clone", "namespaces");
  write_maps(pid);
  if (write(sync_pipe[1], "g", 1) != 1) die("release", "child");
  int st;
  if (waitpid(pid, &st, 0) != pid) die("wait", "child");
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* --tool: the tool process, in its own user namespace (mapped by the caller) and mount
 * namespace; runs the container and hands its status to the caller before exiting. */
static int tool(void *arg) {
  (void)arg;
  char c;
  if (read(tool_pipe[0], &c, 1) != 1) die("wait for", "tool id map");
  if (unshare(CLONE_NEWNS) != 0) die("unshare", "tool mount namespace");
  mnt(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL);
  unsigned char code = (unsigned char)run_container();
  if (write(status_pipe[1], &code, 1) != 1) die("report", "status");
  return 0;
}

int main(int argc, char **argv) {
  int with_tool = argc == 4 && strcmp(argv[1], "--tool") == 0;
  if (argc != 3 && !with_tool) {
    fprintf(stderr, "usage: docker-floor [--tool] LOWERDIR SCRATCH\n");
    return 2;
  }
  lower = argv[argc - 2];
  scratch = argv[argc - 1];
  if (!with_tool) return run_container();
  if (pipe2(tool_pipe, O_CLOEXEC) != 0 || pipe2(status_pipe, O_CLOEXEC) != 0) die("pipe", "");
  static char tool_stack[256 * 1024];
  pid_t pid = clone(tool, tool_stack + sizeof tool_stack, CLONE_NEWUSER | SIGCHLD, NULL);
  if (pid < 0) die("clone", "tool");
  write_maps(pid);
  if (write(tool_pipe[1], "g", 1) != 1) die("release", "tool");
  close(status_pipe[1]);
  unsigned char code;
  if (read(status_pipe[0], &code, 1) != 1) die("read status of", "tool");
  return code;
}
