/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

static bool use_prefix;
static int max_level = LOG_INFO;

void log_setup(void) {
        use_prefix = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_max_level(int level) {
        max_level = level;
}

void log_internal(int level, int error, const char *format, ...) {
        va_list ap;

        if (level > max_level)
                return;

        va_start(ap, format);
        if (use_prefix)
                fprintf(stderr, "<%d>", level);
        else
                fputs("nsresd: ", stderr);
        /* %m in the format refers to `error`. */
        errno = error;
        vfprintf(stderr, format, ap);
        fputc('\n', stderr);
        va_end(ap);
}
