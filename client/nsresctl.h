/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What nsresctl.c shares with the commands implemented in files of their own. */

#include <signal.h>
#include <sys/types.h>

#include "nsres.h"

/* Exit statuses, following env(1) and timeout(1) for a command that cannot be
 * started, so a caller can tell our failures from the command's own. */
#define EXIT_USAGE 2
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127

/* "nsresctl: " and the message on stderr. */
void log_error_msg(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* A failed call of client's: the service's message where it sent one. */
void log_client_error(const NsresClient *client, int r, const char *what);

/* Relays the signals in mask (SIGCHLD among them, all blocked) to child
 * until it exits; returns its exit status as a shell reports it. */
int run_wait_child(pid_t child, const sigset_t *mask);
