/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the BPF loaders (track.c, restrict.c) share. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Route libbpf's warnings (verifier logs, refused pins) to our log. */
void bpf_log_to_daemon_log(void);

/* Returns 1 and "<bpf_dir>/<subdir>" (created) if bpf_dir is, or can be
 * created, on a BPF filesystem; 0 if it is not on one. */
int bpf_pin_dir_prepare(const char *bpf_dir, const char *subdir, char **ret_pin_dir);

/* Whether fd (from bpf_obj_get()) is a BPF link rather than a map or program. */
bool bpf_fd_is_link(int fd);

typedef struct KeyList {
        uint64_t *keys;
        size_t n, allocated;
} KeyList;

/* Appends every u64 key of the hash map fd for which keep() says false.
 * Walk first, delete afterwards: deleting the current key would start a
 * bpf_map_get_next_key() walk over. */
int bpf_map_stale_keys(int fd, bool (*keep)(uint64_t key, void *userdata), void *userdata, KeyList *stale);
