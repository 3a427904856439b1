/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <syslog.h>

/* Logs to stderr; under systemd (JOURNAL_STREAM set) each line carries its
 * syslog priority as a "<N>" prefix so the journal keeps the level. */
void log_setup(void);
void log_set_max_level(int level);
void log_internal(int level, int error, const char *format, ...) __attribute__((format(printf, 3, 4)));

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
