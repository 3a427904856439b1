/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Longer messages are cut: a log line is no place for more. */
#define LOG_MESSAGE_MAX 2048

static bool use_prefix;
static int max_level = LOG_INFO;
static LogJournalSink journal_sink;

bool log_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        char *end;

        /* systemd sets it for the service's stderr; a child that inherited
         * the variable but writes elsewhere must not claim the journal.
         * strtoull() reports what sscanf() would silently wrap. */
        if (!e || !isdigit((unsigned char) e[0]))
                return false;
        errno = 0;
        dev = strtoull(e, &end, 10);
        if (errno != 0 || end[0] != ':' || !isdigit((unsigned char) end[1]))
                return false;
        ino = strtoull(end + 1, &end, 10);
        if (errno != 0 || *end != '\0')
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (uint64_t) st.st_dev == dev && (uint64_t) st.st_ino == ino;
}

void log_setup(void) {
        use_prefix = log_stderr_is_journal();
}

void log_set_max_level(int level) {
        max_level = level;
}

void log_set_journal_sink(LogJournalSink sink) {
        journal_sink = sink;
}

static void log_emit(int level, const char *message_id, const char *const *fields, size_t n_fields,
                     const char *message) {
        if (journal_sink && journal_sink(level, message_id, message, fields, n_fields) >= 0)
                return;
        if (use_prefix)
                fprintf(stderr, "<%d>%s\n", level, message);
        else
                fprintf(stderr, "nsresd: %s\n", message);
}

void log_internal(int level, int error, const char *format, ...) {
        char message[LOG_MESSAGE_MAX];
        va_list ap;
        int saved = errno;

        if (level > max_level)
                return;

        va_start(ap, format);
        /* %m in the format refers to `error`. */
        errno = error;
        (void) vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        log_emit(level, NULL, NULL, 0, message);
        errno = saved;
}

void log_structv(int level, const char *message_id, const char *const *fields, size_t n_fields,
                 const char *format, va_list ap) {
        char message[LOG_MESSAGE_MAX];
        int saved = errno;

        if (level > max_level)
                return;
        (void) vsnprintf(message, sizeof(message), format, ap);
        log_emit(level, message_id, fields, n_fields, message);
        errno = saved;
}

void log_struct(int level, const char *message_id, const char *const *fields, size_t n_fields,
                const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        log_structv(level, message_id, fields, n_fields, format, ap);
        va_end(ap);
}
