/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Asynchronous polkit CheckAuthorization for a D-Bus caller. The subject is
 * always "system-bus-name" with the caller's unique name: a bare pid could be
 * recycled, and dbus 1.14 gives us no pidfd. Answers are never cached.
 */

#include <stdbool.h>
#include <systemd/sd-bus.h>

#define NSRESD_ACTION_PREFIX "org.freedesktop.NamespaceResource1."

typedef enum PolkitResult {
        POLKIT_ALLOWED,
        POLKIT_DENIED,
        POLKIT_CHALLENGE,       /* would need interaction the caller did not allow */
        POLKIT_FAILED,          /* polkit unreachable, timed out or answered nonsense */
} PolkitResult;

typedef void (*polkit_callback)(PolkitResult result, const sd_bus_error *error, void *userdata);

/* A pending check. The callback runs at most once; after polkit_cancel() it
 * never runs. The handle is invalid once the callback has been called. */
typedef struct PolkitCall PolkitCall;
void polkit_cancel(PolkitCall *call);

/* details: NULL-terminated key, value, key, value, … list (may be NULL).
 * A check polkit does not answer within timeout_sec (at least 300 s when
 * interactive) ends with POLKIT_FAILED and an error saying so. */
int polkit_check_async(
                sd_bus *bus,
                const char *sender,
                const char *action,
                const char *const *details,
                bool interactive,
                unsigned timeout_sec,
                polkit_callback cb,
                void *userdata,
                PolkitCall **ret_call);
