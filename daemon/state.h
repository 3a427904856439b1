/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The state directory as a whole. A running daemon holds an exclusive
 * flock() on it: a second daemon, or a cleanup, on the same directory
 * would each act on namespaces the other one tracks.
 */

#include <stdbool.h>

/* Lock the (existing) state directory: the fd that holds the lock in
 * *ret_fd, -EBUSY if someone holds it. */
int state_lock(const char *state_dir, int *ret_fd);

/* nsresd --cleanup: remove the BPF pins under bpf_dir and everything
 * nsresd keeps in state_dir, unless a namespace of the registry is alive
 * (or cannot be proven dead) and !force. Reports on stdout and stderr;
 * returns 0 when done (or nothing was there), -EBUSY if refused. */
int state_cleanup(const char *state_dir, const char *bpf_dir, bool force);
