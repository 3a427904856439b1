/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one place where nsresd acts on a client's user namespace: it inspects
 * a namespace fd by what it is (fstatfs, then nsfs ioctls), proves liveness
 * through an nsfs file handle, and writes uid_map/gid_map through a helper
 * process that has joined the namespace.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "registry.h"

/* Not in the 6.1 uapi headers Debian 12 ships; the values are the kernel's ABI. */
#ifndef NS_GET_ID
#define NS_GET_ID _IOR(0xb7, 13, uint64_t)
#endif

typedef struct UsernsInfo {
        uint64_t id;
        uint64_t inode;
        uid_t owner;
        int handle_type;
        unsigned handle_len;
        uint8_t handle[NS_HANDLE_MAX];
} UsernsInfo;

/* What a namespace fd is. Returns
 *   0            a user namespace whose parent has id parent_id, *ret filled
 *   -EMEDIUMTYPE not nsfs, or nsfs but not a user namespace
 *   -ECHILD      a user namespace, but not a child of parent_id
 *   other        the failing syscall's errno */
int userns_inspect(int fd, uint64_t parent_id, UsernsInfo *ret);

/* The id of the user namespace that owns a network namespace fd. Returns
 *   0            *ret_owner_id filled
 *   -EMEDIUMTYPE not nsfs, or nsfs but not a network namespace
 *   -EXDEV       its owner lies outside our own user namespace
 *   other        the failing syscall's errno */
int netns_get_owner_id(int fd, uint64_t *ret_owner_id);

/* NS_GET_ID of an nsfs fd. */
int userns_get_id(int fd, uint64_t *ret);

/* 1 alive, 0 proven dead (the handle is stale), negative: cannot tell. */
int userns_is_alive(int nsfs_fd, int handle_type, const uint8_t *handle, unsigned handle_len);

/* Open the namespace behind a handle (for the start-up checks). */
int userns_open_handle(int nsfs_fd, int handle_type, const uint8_t *handle, unsigned handle_len);

/* A helper is a child that closes every fd it does not need, makes itself
 * undumpable (it will live in the caller's namespace, where the caller may
 * signal it — and must not be able to trace it), joins the namespace, writes
 * one byte to its socket and waits for the socket to close.
 *
 * HELPER_CLONE_VM shares our memory instead of copying it: no page tables
 * to copy and no copy-on-write faults afterwards, about half the cost of a
 * fork() here. Its PR_SET_DUMPABLE then applies to the daemon as well, which
 * is what keeps the caller from reading our memory through it; use it only
 * where fs.suid_dumpable is 0. valgrind cannot follow it: HELPER_FORK. */
typedef enum HelperMode {
        HELPER_FORK,
        HELPER_CLONE_VM,
} HelperMode;

typedef struct Helper {
        pid_t pid;
        int pidfd;      /* -1 where pidfds are not supported */
        int sock;       /* our end of the socketpair */
        void *stack;    /* unmap only after the helper is reaped */
} Helper;

/* HELPER_JOIN: write one byte once in the namespace, then wait for the
 * socket to close. HELPER_MAKE_BPFFS: once in the namespace, unshare a
 * mount namespace, fsopen("bpf") and send that fd (SCM_RIGHTS, with one
 * byte), then exit. A failure is sent as an int errno instead. */
typedef enum HelperTask {
        HELPER_JOIN,
        HELPER_MAKE_BPFFS,
} HelperTask;

bool helper_can_share_memory(void);
int helper_spawn(int userns_fd, HelperMode mode, HelperTask task, bool stop_before_ready, Helper *ret);
void helper_free_stack(Helper *h);
/* Kill (SIGKILL) and close. The pidfd child event reaps it. Without a
 * pidfd it signals h->pid: the caller must know the helper is not reaped
 * yet (or set h->pid to 0). */
void helper_kill(Helper *h);

/* Read uid_map and gid_map of a namespace synchronously, through a helper
 * waited for at most timeout_usec (for start-up, where no request waits). */
int userns_read_maps(int userns_fd, uint64_t timeout_usec, char *uid_map, char *gid_map, size_t size);

/* Maps are read and written through a dirfd of /proc/<helper>, never by a
 * re-resolved pid. `buf` gets the map as the daemon sees it. */
int proc_read_file(int procfd, const char *name, char *buf, size_t size);
int proc_write_file(int procfd, const char *name, const char *text);

/* Parse a uid_map/gid_map text into up to `max` extents: returns the number
 * of extents or -EBADMSG. */
typedef struct MapExtent {
        uint32_t inside;
        uint32_t outside;
        uint32_t count;
} MapExtent;
int map_parse(const char *text, MapExtent *ret, int max);
