/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The restriction's loader: BPF LSM programs (bpf/userns-restrict.bpf.c)
 * that keep transient ids off filesystems outliving their namespace.
 *
 * Maps and links are pinned under <bpf_dir>/restrict-v1, so enforcement goes
 * on while the service is stopped or restarting: a new start reuses the
 * pinned maps, attaches its own programs and only then replaces the old
 * links. Open, fill the maps, then attach.
 *
 * Namespaces are keyed like the teardown tracker: by namespace id, or by
 * inode number on kernels without namespace ids.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "restrict-policy.h"

typedef struct Restrictor Restrictor;

/* Whether BPF LSM programs can run here. 0 if they can as far as can be told
 * before loading; otherwise a negative errno and, in *ret_reason, a sentence
 * naming the cause and the fix. */
int restrictor_probe(char **ret_reason);

/* Load the programs against pinned (or new) maps and write the transient
 * pools; nothing is attached yet. On failure *ret_reason says why. */
int restrictor_open(const char *bpf_dir, const struct restrict_pool *pools, size_t n_pools,
                    Restrictor **ret, char **ret_reason);

/* Attach every program, make the pins point at the new links, and check
 * that the hooks run (an LSM program attaches without error even where the
 * BPF LSM is not active, and then never runs). 0 when enforcing. */
int restrictor_attach(Restrictor *r, char **ret_reason);

/* Closes our fds; pinned links and maps stay, and keep enforcing. */
Restrictor *restrictor_free(Restrictor *r);

int restrictor_add(Restrictor *r, uint64_t key, uint32_t uid_start, uint32_t size);
/* Forgets the namespace and its delegated mounts. */
int restrictor_remove(Restrictor *r, uint64_t key);
/* Drop namespaces for which keep() says false, with their mounts. Returns
 * how many map entries went. */
int restrictor_prune(Restrictor *r, bool (*keep)(uint64_t key, void *userdata), void *userdata);

/* Drop every mount delegated to the namespace (at start, before the ones the
 * registry lists are added again: reusable ids held by an earlier run may
 * name other mounts now). */
int restrictor_forget_mounts(Restrictor *r, uint64_t key);

/* Allow writes through a mount (by the id restrictor_mount_id() gives). */
int restrictor_add_mount(Restrictor *r, uint64_t key, uint64_t mnt_id);

/* The id the programs see for the mount fd refers to: its unique id where
 * the kernel has one (*ret_unique = true), else its reusable one, which stays
 * unique only while the caller holds the mount. -EINVAL if fd
 * is not the root of a mount. */
int restrictor_mount_id(int fd, uint64_t *ret_id, bool *ret_unique);

/* Hook counters summed over CPUs, indexed by RESTRICT_STAT_*. */
int restrictor_stats(Restrictor *r, uint64_t ret[_RESTRICT_STAT_MAX]);

/* The BPF object the programs are loaded from (for checks that the running
 * programs are the ones built with this tree). */
const void *restrictor_object(size_t *ret_size);

/* Detach and remove everything pinned (uninstall, Restriction=off, tests). */
int restrictor_unpin(const char *bpf_dir);
