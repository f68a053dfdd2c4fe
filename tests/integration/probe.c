/* A static probe of what a container may do, for orch's isolation tests (issue 10).

   busybox has no keyctl, io_uring or perf tools, and the test images have no compiler, so the
   tests build this file with the host's gcc (-static) and bind-mount it into the container.
   Each argument names one attempt; for each the probe prints one line:
       NAME ok          the kernel allowed it
       NAME errno N     it was refused with errno N
   and exits 0, so the test reads every answer. x86-64 only, like orch's runtime. */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_userfaultfd
#define __NR_userfaultfd 323
#endif

static void report(const char *name, long result) {
    if (result < 0)
        printf("%s errno %d\n", name, errno);
    else
        printf("%s ok\n", name);
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *what = argv[i];
        long r;
        errno = 0;
        if (!strcmp(what, "keyctl")) {
            /* KEYCTL_GET_KEYRING_ID of the user keyring: host root's, without seccomp. */
            r = syscall(__NR_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4 /* KEY_SPEC_USER_KEYRING */, 0);
        } else if (!strcmp(what, "add_key")) {
            r = syscall(__NR_add_key, "user", "orch-probe", "x", 1, -4 /* KEY_SPEC_USER_KEYRING */);
        } else if (!strcmp(what, "unshare_user")) {
            r = unshare(CLONE_NEWUSER);
        } else if (!strcmp(what, "io_uring_setup")) {
            char params[120];
            memset(params, 0, sizeof params);
            r = syscall(__NR_io_uring_setup, 1, params);
        } else if (!strcmp(what, "perf_event_open")) {
            char attr[128];
            memset(attr, 0, sizeof attr);
            *(unsigned int *)(attr + 4) = sizeof attr; /* size */
            r = syscall(__NR_perf_event_open, attr, 0, -1, -1, 0);
        } else if (!strcmp(what, "userfaultfd")) {
            r = syscall(__NR_userfaultfd, 1 /* UFFD_USER_MODE_ONLY: allowed to anyone without seccomp */);
        } else if (!strcmp(what, "personality")) {
            /* READ_IMPLIES_EXEC: not one of the few personalities docker allows. */
            r = personality(READ_IMPLIES_EXEC);
            if (r >= 0)
                personality(0);
        } else if (!strcmp(what, "personality_linux")) {
            r = personality(PER_LINUX);
        } else if (!strncmp(what, "mount_cgroup=", 13)) {
            /* mount_cgroup=OPTIONS: mount a cgroup v1 hierarchy at /tmp/probe-cgroup and
               report whether its root's release_agent shows there. */
            mkdir("/tmp/probe-cgroup", 0755);
            r = mount("cgroup", "/tmp/probe-cgroup", "cgroup", 0, what + 13);
            report(what, r);
            if (r == 0) {
                struct stat st;
                report("release_agent_visible", stat("/tmp/probe-cgroup/release_agent", &st) == 0 ? 0 : -1);
                umount("/tmp/probe-cgroup");
            }
            continue;
        } else if (!strcmp(what, "getpid")) {
            r = syscall(__NR_getpid);
        } else {
            fprintf(stderr, "probe: unknown attempt %s\n", what);
            return 2;
        }
        report(what, r);
    }
    return 0;
}
