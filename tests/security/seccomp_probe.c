/* A tiny static probe for tests/security/seccomp.rs: makes one system call and prints
 * "NAME: ok" or "NAME: errno N", so the tests see exactly what the seccomp filter answered.
 * busybox has no keyctl, and its applets hide errno values. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *name, long rc) {
    if (rc < 0) {
        printf("%s: errno %d (%s)\n", name, errno, strerror(errno));
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring, no create */
            rc |= report(a, syscall(SYS_keyctl, 0, -3, 0));
        else if (!strcmp(a, "add_key"))
            rc |= report(a, syscall(SYS_add_key, "user", "boxkit-probe", "x", 1, -3));
        else if (!strcmp(a, "unshare-user"))
            rc |= report(a, unshare(CLONE_NEWUSER));
        else if (!strcmp(a, "clone3")) /* bad arguments on purpose: only the errno matters */
            rc |= report(a, syscall(SYS_clone3, NULL, 0));
        else if (!strcmp(a, "mkdir") && i + 1 < argc)
            rc |= report(a, mkdir(argv[++i], 0755));
        else if (!strcmp(a, "mkdir-raw") && i + 1 < argc) /* the mkdir syscall itself */
            rc |= report(a, syscall(SYS_mkdir, argv[++i], 0755));
        else if (!strcmp(a, "x32-getpid")) /* the x32 ABI's getpid: bit 30 set */
            rc |= report(a, syscall(0x40000000 | SYS_getpid));
        else if (!strcmp(a, "getpid"))
            rc |= report(a, syscall(SYS_getpid));
        else {
            fprintf(stderr, "probe: unknown check %s\n", a);
            return 2;
        }
    }
    return rc;
}
