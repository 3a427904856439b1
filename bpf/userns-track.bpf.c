/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Reports the destruction of tracked user namespaces.
 *
 * The last put_user_ns() does not free the namespace itself: it queues
 * ns->work, whose function is free_user_ns(). free_user_ns() then frees the
 * namespace and, in the same call, every ancestor whose last reference was
 * held by the namespace just freed. Those ancestors never get a work item of
 * their own, so the whole parent chain is checked here.
 *
 * There is no stable tracepoint or LSM hook for this, and trampolines
 * (fentry) are not available everywhere, so the program hooks the workqueue
 * tracepoint and filters on the work function's address, which the loader
 * resolves from /proc/kallsyms.
 */

#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "userns-track.h"

/* create_user_ns() refuses to nest deeper than level 32, so this many steps
 * from any namespace reach init_user_ns. */
#define USERNS_MAX_CHAIN 33

/* Set by the loader before load; 0 never matches a work function. */
const volatile __u64 free_user_ns_addr = 0;

/* Key: ns id (inode number on kernels without ns ids). Larger than the
 * default allocation pools hold namespaces (28664 blocks + 4336 single ids).
 * Not preallocated: that would pin 5 MiB for the few entries a system has;
 * only user space inserts, so no allocation happens in this program. */
struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(map_flags, BPF_F_NO_PREALLOC);
        __uint(max_entries, 65536);
        __type(key, __u64);
        __type(value, __u8);
} tracked SEC(".maps");

/* About 8000 events of 32 bytes (header included) while nobody reads them,
 * a daemon restart say. The default only: the loader sizes it from
 * TeardownRingBufferSize=, so tests can overflow it with a few hundred. */
struct {
        __uint(type, BPF_MAP_TYPE_RINGBUF);
        __uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Events that did not fit into the ring buffer; user space then has to look
 * at every namespace itself. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, __u64);
} drops SEC(".maps");

static void count_drop(void) {
        __u32 zero = 0;
        __u64 *n;

        n = bpf_map_lookup_elem(&drops, &zero);
        if (n)
                __sync_fetch_and_add(n, 1);
}

SEC("tp_btf/workqueue_execute_start")
int BPF_PROG(userns_track_free, struct work_struct *work) {
        struct user_namespace *ns;
        bool has_id;

        /* Runs for every work item on the system: keep the common path to a
         * single load and compare. */
        if ((__u64) work->func != free_user_ns_addr)
                return 0;

        ns = (void *) work - bpf_core_field_offset(struct user_namespace, work);
        has_id = bpf_core_field_exists(ns->ns.ns_id);

        for (int i = 0; i < USERNS_MAX_CHAIN && ns; i++) {
                struct userns_track_event *e;
                __u64 id = 0, inode, key;

                inode = BPF_CORE_READ(ns, ns.inum);
                if (has_id)
                        id = BPF_CORE_READ(ns, ns.ns_id);
                key = has_id ? id : inode;

                if (bpf_map_lookup_elem(&tracked, &key)) {
                        e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
                        if (e) {
                                e->ns_id = id;
                                e->inode = inode;
                                e->level = BPF_CORE_READ(ns, level);
                                e->flags = (i > 0 ? USERNS_TRACK_ANCESTOR : 0) |
                                           (has_id ? 0 : USERNS_TRACK_NO_NS_ID);
                                bpf_ringbuf_submit(e, 0);
                        } else
                                count_drop();
                }

                ns = BPF_CORE_READ(ns, parent);
        }

        return 0;
}

/* bpf_probe_read_kernel() is GPL-only; LGPL-2.1 allows distributing this
 * file under the GPL. */
char LICENSE[] SEC("license") = "GPL";
