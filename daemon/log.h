/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/* Logs to stderr. When stderr is the journal (JOURNAL_STREAM names its
 * device and inode) and the daemon has set a journal sink, every message
 * goes to the journal natively, structured ones with their MESSAGE_ID and
 * fields; if the sink fails, or there is none, a line on stderr carries
 * its syslog priority as a "<N>" prefix so the journal keeps the level.
 * This file stays free of libsystemd: the unit tests and the VM guest
 * program link it too. */
void log_setup(void);
void log_set_max_level(int level);
/* Whether fd 2 is the stream JOURNAL_STREAM names. */
bool log_stderr_is_journal(void);

/* fields: "KEY=value" strings, no newlines in KEY. Returns >= 0 if the
 * journal took the message. */
typedef int (*LogJournalSink)(int level, const char *message_id, const char *message,
                              const char *const *fields, size_t n_fields);
void log_set_journal_sink(LogJournalSink sink);

void log_internal(int level, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* A message with a MESSAGE_ID and fields for the journal; without one, the
 * formatted message alone, which should say the same facts in words. */
void log_structv(int level, const char *message_id, const char *const *fields, size_t n_fields,
                 const char *format, va_list ap) __attribute__((format(printf, 5, 0)));
void log_struct(int level, const char *message_id, const char *const *fields, size_t n_fields,
                const char *format, ...) __attribute__((format(printf, 5, 6)));

#define log_full_errno(level, error, ...)                               \
        ({                                                              \
                int _e = (error);                                       \
                log_internal((level), _e < 0 ? -_e : _e, __VA_ARGS__);  \
                _e < 0 ? _e : -_e;                                      \
        })

#define log_debug(...) log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
