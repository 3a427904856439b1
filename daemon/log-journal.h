/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* The journal sink of log.h: sends one message over the journal's native
 * protocol (sd_journal_sendv). Only the daemon links it. */
int log_journal_send(int level, const char *message_id, const char *message,
                     const char *const *fields, size_t n_fields);
