/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* BPF token parts of the kernel ABI that the uapi headers we build against
 * (Linux 6.1) do not have. <linux/bpf.h> comes first: where newer headers
 * declare the same names as enum constants, ours then merely shadow them
 * with the same values. */

#include <stddef.h>
#include <linux/bpf.h>
#include <linux/types.h>

/* bpf() command: a token from an fd of the root of a bpffs mounted with
 * delegate_* options (Linux 6.9). */
#define BPF_TOKEN_CREATE 36

/* In map_flags of BPF_MAP_CREATE and prog_flags of BPF_PROG_LOAD: the
 * token_fd field below holds a token (Linux 6.9). */
#define BPF_F_TOKEN_FD (1U << 16)

/* union bpf_attr for BPF_TOKEN_CREATE (Linux 6.9). */
struct bpf_token_create_attr {
        __u32 flags;
        __u32 bpffs_fd;
};

/* union bpf_attr for BPF_MAP_CREATE up to map_token_fd: the 6.1 layout
 * plus value_type_btf_obj_fd (Linux 6.9) and map_token_fd (Linux 6.9). */
struct bpf_map_create_token_attr {
        __u32 map_type;
        __u32 key_size;
        __u32 value_size;
        __u32 max_entries;
        __u32 map_flags;
        __u32 inner_map_fd;
        __u32 numa_node;
        char map_name[BPF_OBJ_NAME_LEN];
        __u32 map_ifindex;
        __u32 btf_fd;
        __u32 btf_key_type_id;
        __u32 btf_value_type_id;
        __u32 btf_vmlinux_value_type_id;
        __u64 map_extra;
        __s32 value_type_btf_obj_fd;
        __s32 map_token_fd;
};
_Static_assert(offsetof(struct bpf_map_create_token_attr, map_extra) == 64, "map_create layout");
_Static_assert(offsetof(struct bpf_map_create_token_attr, map_token_fd) == 76, "map_create layout");

/* union bpf_attr for BPF_PROG_LOAD up to prog_token_fd: the 6.1 layout plus
 * log_true_size (Linux 6.4) and prog_token_fd (Linux 6.9). */
struct bpf_prog_load_token_attr {
        __u32 prog_type;
        __u32 insn_cnt;
        __aligned_u64 insns;
        __aligned_u64 license;
        __u32 log_level;
        __u32 log_size;
        __aligned_u64 log_buf;
        __u32 kern_version;
        __u32 prog_flags;
        char prog_name[BPF_OBJ_NAME_LEN];
        __u32 prog_ifindex;
        __u32 expected_attach_type;
        __u32 prog_btf_fd;
        __u32 func_info_rec_size;
        __aligned_u64 func_info;
        __u32 func_info_cnt;
        __u32 line_info_rec_size;
        __aligned_u64 line_info;
        __u32 line_info_cnt;
        __u32 attach_btf_id;
        __u32 attach_prog_fd;
        __u32 core_relo_cnt;
        __aligned_u64 fd_array;
        __aligned_u64 core_relos;
        __u32 core_relo_rec_size;
        __u32 log_true_size;
        __s32 prog_token_fd;
};
_Static_assert(offsetof(struct bpf_prog_load_token_attr, core_relo_rec_size) == 136, "prog_load layout");
_Static_assert(offsetof(struct bpf_prog_load_token_attr, prog_token_fd) == 144, "prog_load layout");
