/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log-journal.h"
#include "util.h"

/* Structured messages carry ten fields; more is a mistake, not data. */
#define JOURNAL_FIELDS_MAX 16u

static struct iovec iov_of(const char *s) {
        return (struct iovec) { .iov_base = (void *) s, .iov_len = strlen(s) };
}

int log_journal_send(int level, const char *message_id, const char *message,
                     const char *const *fields, size_t n_fields) {
        struct iovec iov[4 + JOURNAL_FIELDS_MAX];
        _cleanup_free_ char *message_field = NULL;
        char priority[sizeof("PRIORITY=") + 12], id_field[sizeof("MESSAGE_ID=") + 33];
        size_t n = 0;

        if (n_fields > JOURNAL_FIELDS_MAX)
                return -E2BIG;
        if (asprintf(&message_field, "MESSAGE=%s", message) < 0)
                return -ENOMEM;
        snprintf(priority, sizeof(priority), "PRIORITY=%d", level);

        iov[n++] = iov_of(message_field);
        iov[n++] = iov_of(priority);
        iov[n++] = iov_of("SYSLOG_IDENTIFIER=nsresd");
        if (message_id) {
                snprintf(id_field, sizeof(id_field), "MESSAGE_ID=%s", message_id);
                iov[n++] = iov_of(id_field);
        }
        for (size_t i = 0; i < n_fields; i++)
                iov[n++] = iov_of(fields[i]);

        return sd_journal_sendv(iov, (int) n);
}
