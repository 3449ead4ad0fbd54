/*
 * What the `cpuid` instruction costs on this machine, and how many a command executes
 * (bench/start.sh, issue 14). In a virtual machine every `cpuid` exits to the hypervisor, and
 * that exit's cost depends on the host: 12-13 us each was measured on one boot of this VM.
 * glibc executes several dozen of them in every process start (its CPU feature and cache
 * checks, before `main`, in static and dynamic programs alike), so on such a host each exec
 * of a glibc program carries a fixed tax that a benchmark's floor pays once per process.
 *
 *   cpuid cost              microseconds per cpuid (the median of 7 rounds of 200, over the
 *                           leaves glibc's start-up asks for)
 *   cpuid count CMD [ARG]   runs CMD under ptrace, single-stepping it and every process and
 *                           thread it starts (through forks, clones and execs), and prints
 *                           how many cpuid instructions they executed in all. Slow: each
 *                           instruction is a ptrace stop (about a minute per million).
 *
 * Written for the benchmark from ptrace(2) and the instruction's encoding (0f a2); x86-64 only.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cost(void) {
  static const unsigned leaves[] = {0, 1, 4, 7};
  enum { ROUNDS = 7, N = 200 };
  double r[ROUNDS];
  unsigned a, b, c, d;
  volatile unsigned sink = 0; /* keeps the instruction from being optimized away */
  for (int i = 0; i < ROUNDS; i++) {
    double t0 = now_us();
    for (int j = 0; j < N; j++) {
      __cpuid_count(leaves[j % 4], 0, a, b, c, d);
      sink += a ^ b ^ c ^ d;
    }
    r[i] = (now_us() - t0) / N;
  }
  qsort(r, ROUNDS, sizeof r[0], cmp);
  printf("%.2f\n", r[ROUNDS / 2]);
  return 0;
}

static int count(char **argv) {
  pid_t first = fork();
  if (first < 0) {
    perror("cpuid: fork");
    return 125;
  }
  if (first == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    execvp(argv[0], argv);
    fprintf(stderr, "cpuid: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st;
  if (waitpid(first, &st, 0) < 0 || !WIFSTOPPED(st)) {
    fprintf(stderr, "cpuid: %s did not stop for the tracer\n", argv[0]);
    return 125;
  }
  long opts = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
              PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
  if (ptrace(PTRACE_SETOPTIONS, first, 0, opts) < 0) {
    perror("cpuid: PTRACE_SETOPTIONS");
    return 125;
  }
  ptrace(PTRACE_SINGLESTEP, first, 0, 0);
  long cpuids = 0, steps = 0;
  int code = 0;
  for (;;) {
    pid_t w = waitpid(-1, &st, __WALL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break; /* no tracee left */
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (w == first)
        code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      continue;
    }
    int deliver = 0;
    int sig = WSTOPSIG(st);
    if (sig == SIGTRAP && (st >> 16) == 0) {
      /* A single-step stop: the instruction about to run is at rip. */
      struct user_regs_struct r;
      if (ptrace(PTRACE_GETREGS, w, 0, &r) == 0) {
        errno = 0;
        long word = ptrace(PTRACE_PEEKTEXT, w, r.rip, 0);
        if (errno == 0 && (word & 0xffff) == 0xa20f)
          cpuids++;
        steps++;
      }
    } else if (sig != SIGTRAP && sig != SIGSTOP) {
      deliver = sig; /* a real signal: pass it on */
    }
    ptrace(PTRACE_SINGLESTEP, w, 0, deliver);
  }
  printf("%ld\n", cpuids);
  fprintf(stderr, "cpuid: %s: %ld cpuid in %ld instructions, exit status %d\n", argv[0], cpuids,
          steps, code);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "cost") == 0)
    return cost();
  if (argc >= 3 && strcmp(argv[1], "count") == 0)
    return count(argv + 2);
  fprintf(stderr, "usage: cpuid cost | cpuid count CMD [ARG...]\n");
  return 2;
}
