/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Teardown tracking: a tp_btf program on workqueue_execute_start sees
 * free_user_ns() run and reports tracked namespaces (and tracked ancestors
 * freed in the same call) through a ring buffer. Maps, ring buffer, link and
 * drop counter are pinned under <bpf_dir>/v1 so events that happen while the
 * daemon restarts are delivered at the next start.
 *
 * An event is a trigger, not proof: the daemon checks the namespace's nsfs
 * handle before releasing anything.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct Tracker Tracker;

typedef void (*tracker_event_cb)(uint64_t ns_id, uint64_t inode, void *userdata);

/* Load (or reuse pinned) programs and maps. ring_size: bytes of the event
 * ring buffer, a power of two of at least a page (0: the built-in 256 KiB);
 * a pinned one of another size is replaced, losing what it held. A negative
 * errno when BPF is unavailable: the caller falls back to polling. */
int tracker_open(const char *bpf_dir, uint32_t ring_size, tracker_event_cb cb, void *userdata, Tracker **ret);
/* Closes fds; pins stay. */
Tracker *tracker_free(Tracker *t);

int tracker_add(Tracker *t, uint64_t ns_id);
int tracker_remove(Tracker *t, uint64_t ns_id);

/* Forget tracked ids for which keep() says false (entries of namespaces the
 * registry no longer knows, left by a crash). Returns how many went. */
int tracker_prune(Tracker *t, bool (*keep)(uint64_t ns_id, void *userdata), void *userdata);

/* Becomes readable (epoll) when events are queued. */
int tracker_fd(Tracker *t);
/* Deliver every queued event now, through the callback: when tracker_fd()
 * is readable, and at start for events from while we were down. Returns how
 * many, or a negative errno. */
int tracker_consume(Tracker *t);

/* Events lost because the ring buffer was full, since the last reset. */
uint64_t tracker_drops(Tracker *t);
void tracker_reset_drops(Tracker *t);

/* Remove all pins under bpf_dir (uninstall, tests). */
int tracker_unpin(const char *bpf_dir);
