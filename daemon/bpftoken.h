/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * BPF token delegation: a bpffs instance whose superblock belongs to a
 * client's user namespace, mounted with delegate_cmds/maps/progs/attachs.
 * Tokens made from it work only inside that namespace, and only for what
 * was delegated.
 *
 * The file system context is never the client's: a context built by the
 * caller could be for another file system type and would be created with
 * our privileges. A helper that joined the namespace opens it with
 * fsopen("bpf") (helper_spawn(.., HELPER_MAKE_BPFFS, ..)); only the daemon,
 * privileged in the initial user namespace, may set delegate_* on it, and
 * it creates and mounts it here.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum BpfDelegateKind {
        BPF_DELEGATE_CMDS,
        BPF_DELEGATE_MAPS,
        BPF_DELEGATE_PROGS,
        BPF_DELEGATE_ATTACHS,
        _BPF_DELEGATE_KIND_MAX,
} BpfDelegateKind;

/* One bit per enum value (all below 64); "any" is every bit, now and in
 * kernels to come. */
#define BPF_DELEGATE_ANY UINT64_MAX

typedef struct BpfDelegation {
        uint64_t mask[_BPF_DELEGATE_KIND_MAX];
} BpfDelegation;

/* "cmds", "maps", "progs", "attachs": the mount options without
 * "delegate_", and the keys of the registry. */
const char *bpf_delegate_kind_to_string(BpfDelegateKind k);

/* The running kernel's names, from its BTF (enum bpf_cmd, bpf_map_type,
 * bpf_prog_type, bpf_attach_type), lower case without their prefixes:
 * "map_create", "ringbuf", "socket_filter", "cgroup_inet_ingress". Loaded
 * once. -ENOENT: the kernel has no BTF, -EOPNOTSUPP: no such enum. */
int bpf_delegate_name_to_value(BpfDelegateKind kind, const char *name, unsigned *ret);

/* Names to masks. On an unknown name -EINVAL with *ret_bad_kind and
 * *ret_bad_name (not copied) set. */
int bpf_delegation_from_names(char **names[_BPF_DELEGATE_KIND_MAX], BpfDelegation *ret,
                              BpfDelegateKind *ret_bad_kind, const char **ret_bad_name);

/* "any", "" or "map_create:prog_load" (the kernel's own spelling, ':'
 * between names; values without a name as numbers). */
char *bpf_delegate_mask_to_string(BpfDelegateKind kind, uint64_t mask);

/* Whether fd is a file system context (what fsopen() returns). */
bool fd_is_fs_context(int fd);

/* Configures the bpffs context fs_fd (delegations, root directory owned
 * by uid:gid), creates the superblock and mounts it detached: *ret_mount_fd
 * is fsmount()'s O_PATH fd. On failure *ret_reason (if not NULL) gets the
 * kernel's own words where it gave any. */
int bpffs_make_mount(int fs_fd, const BpfDelegation *d, uid_t uid, gid_t gid, int *ret_mount_fd,
                     char **ret_reason);
