/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * "nsresctl doctor": what on this host makes nsresd degrade or fail, each
 * finding read from its source of truth (securityfs, /proc/sys, mountinfo,
 * the running daemon, the configuration, /etc/subuid) and paired with the
 * concrete fix. Runs as any user; what only root can find out is reported
 * as skipped, saying so.
 */

#include <stddef.h>

typedef enum CheckStatus {
        CHECK_OK,
        CHECK_WARN,     /* nsresd works, degraded */
        CHECK_FAIL,     /* nsresd refuses work or cannot run */
        CHECK_SKIPPED,  /* could not tell; the message says why */
        _CHECK_STATUS_MAX,
} CheckStatus;

typedef struct Check {
        const char *id;         /* stable, for scripts */
        CheckStatus status;
        char *message;          /* one sentence: what was found */
        char *fix;              /* NULL when nothing is to be done */
} Check;

typedef struct DoctorReport {
        Check *checks;
        size_t n_checks;
} DoctorReport;

/* Runs every check, in the order they are shown. Fails only on OOM. */
int doctor_run(DoctorReport *ret);
void doctor_report_done(DoctorReport *report);

const char *check_status_to_string(CheckStatus s);
