/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What bpf/userns-track.bpf.c reports through the `events` ring buffer and
 * daemon/track.c reads back. Plain C types only: this header is included both
 * next to vmlinux.h (which must not meet the uapi headers) and in userspace.
 */

/* The namespace is an ancestor of the one whose free_user_ns() work item ran:
 * it is freed in the same call only if that child held its last reference,
 * so the event may come while it still lives. */
#define USERNS_TRACK_ANCESTOR   (1U << 0)
/* The kernel has no ns.ns_id (before 6.18): ns_id is 0, and the `tracked`
 * map is keyed by the inode number instead. */
#define USERNS_TRACK_NO_NS_ID   (1U << 1)

struct userns_track_event {
        unsigned long long ns_id;
        unsigned long long inode;
        unsigned int level;
        unsigned int flags;
};

_Static_assert(sizeof(struct userns_track_event) == 24, "event layout must not depend on the compiler");
