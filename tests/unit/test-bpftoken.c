/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The names DelegateBpf accepts, read from the running kernel's BTF, and a
 * bpffs instance made with them (as root: fsopen() in our own namespace). */

#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bpftoken.h"
#include "util.h"

#define CHECK(x)                                                                        \
        do {                                                                            \
                if (!(x)) {                                                             \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        exit(EXIT_FAILURE);                                             \
                }                                                                       \
        } while (0)

#define RUN_TEST(t) do { t(); printf("ok - %s\n", #t); } while (0)

static unsigned value_of(BpfDelegateKind kind, const char *name) {
        unsigned v = 12345;

        CHECK(bpf_delegate_name_to_value(kind, name, &v) == 0);
        return v;
}

static void test_names(void) {
        unsigned v;

        /* Values fixed by the uapi since they were added. */
        CHECK(value_of(BPF_DELEGATE_CMDS, "map_create") == 0);
        CHECK(value_of(BPF_DELEGATE_CMDS, "prog_load") == 5);
        CHECK(value_of(BPF_DELEGATE_CMDS, "token_create") == 36);
        CHECK(value_of(BPF_DELEGATE_MAPS, "array") == 2);
        CHECK(value_of(BPF_DELEGATE_MAPS, "ringbuf") == 27);
        CHECK(value_of(BPF_DELEGATE_PROGS, "socket_filter") == 1);
        CHECK(value_of(BPF_DELEGATE_PROGS, "xdp") == 6);
        CHECK(value_of(BPF_DELEGATE_ATTACHS, "cgroup_inet_ingress") == 0);

        /* Only the kernel's spelling, and only names of that kind. */
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_CMDS, "MAP_CREATE", &v) == -EINVAL);
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_CMDS, "bpf_map_create", &v) == -EINVAL);
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_CMDS, "array", &v) == -EINVAL);
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_MAPS, "map_create", &v) == -EINVAL);
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_CMDS, "", &v) == -EINVAL);
        /* Counts are not values. */
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_CMDS, "__max_bpf_cmd", &v) == -EINVAL);
        CHECK(bpf_delegate_name_to_value(BPF_DELEGATE_MAPS, "unspec", &v) == 0 && v == 0);
}

static void test_masks(void) {
        char *cmds[] = { "map_create", "prog_load", NULL }, *any[] = { "any", NULL }, *none[] = { NULL },
             *bad[] = { "array", "no_such_map", NULL };
        char **names[_BPF_DELEGATE_KIND_MAX] = { cmds, any, none, NULL };
        BpfDelegateKind bad_kind = 0;
        const char *bad_name = NULL;
        BpfDelegation d;
        char *s;

        CHECK(bpf_delegation_from_names(names, &d, &bad_kind, &bad_name) == 0);
        CHECK(d.mask[BPF_DELEGATE_CMDS] == ((1u << 0) | (1u << 5)));
        CHECK(d.mask[BPF_DELEGATE_MAPS] == BPF_DELEGATE_ANY);
        CHECK(d.mask[BPF_DELEGATE_PROGS] == 0 && d.mask[BPF_DELEGATE_ATTACHS] == 0);

        names[BPF_DELEGATE_MAPS] = bad;
        CHECK(bpf_delegation_from_names(names, &d, &bad_kind, &bad_name) == -EINVAL);
        CHECK(bad_kind == BPF_DELEGATE_MAPS && strcmp(bad_name, "no_such_map") == 0);

        s = bpf_delegate_mask_to_string(BPF_DELEGATE_CMDS, (1u << 0) | (1u << 5));
        CHECK(s && strcmp(s, "map_create:prog_load") == 0);
        free(s);
        s = bpf_delegate_mask_to_string(BPF_DELEGATE_PROGS, BPF_DELEGATE_ANY);
        CHECK(s && strcmp(s, "any") == 0);
        free(s);
        s = bpf_delegate_mask_to_string(BPF_DELEGATE_ATTACHS, 0);
        CHECK(s && strcmp(s, "") == 0);
        free(s);
        /* A bit this kernel has no name for is said as a number. */
        s = bpf_delegate_mask_to_string(BPF_DELEGATE_MAPS, (1u << 2) | (UINT64_C(1) << 63));
        CHECK(s && strcmp(s, "array:63") == 0);
        free(s);
        CHECK(strcmp(bpf_delegate_kind_to_string(BPF_DELEGATE_ATTACHS), "attachs") == 0);
        CHECK(!bpf_delegate_kind_to_string(_BPF_DELEGATE_KIND_MAX));
}

static void test_mount(void) {
        BpfDelegation d = { .mask = { [BPF_DELEGATE_CMDS] = 1u << 0, [BPF_DELEGATE_MAPS] = BPF_DELEGATE_ANY } };
        _cleanup_close_ int fs = -EBADF, mnt = -EBADF, other = -EBADF, ev = -EBADF, file = -EBADF;
        _cleanup_free_ char *reason = NULL;
        struct statfs sfs;

        fs = fsopen("bpf", FSOPEN_CLOEXEC);
        CHECK(fs >= 0);
        CHECK(fd_is_fs_context(fs));
        ev = eventfd(0, EFD_CLOEXEC);
        CHECK(ev >= 0 && !fd_is_fs_context(ev));
        file = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        CHECK(file >= 0 && !fd_is_fs_context(file));

        CHECK(bpffs_make_mount(fs, &d, 1234, 5678, &mnt, &reason) == 0);
        CHECK(fstatfs(mnt, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC);
        {
                struct stat st;

                /* The root belongs to the ids given. */
                CHECK(fstat(mnt, &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
        }

        /* Another file system type refuses the options, in its own words. */
        other = fsopen("tmpfs", FSOPEN_CLOEXEC);
        CHECK(other >= 0);
        CHECK(bpffs_make_mount(other, &d, 0, 0, &mnt, &reason) == -EINVAL);
        CHECK(reason && strstr(reason, "delegate_cmds"));
}

int main(void) {
        if (geteuid() != 0) {
                fprintf(stderr, "test-bpftoken: needs root (fsopen of bpf)\n");
                return 77;
        }
        if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
                fprintf(stderr, "test-bpftoken: the kernel has no BTF\n");
                return 77;
        }
        RUN_TEST(test_names);
        RUN_TEST(test_masks);
        RUN_TEST(test_mount);
        return EXIT_SUCCESS;
}
