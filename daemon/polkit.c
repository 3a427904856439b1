/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdlib.h>
#include <time.h>

#include "polkit.h"
#include "util.h"

/* CheckAuthorization flag: AllowUserInteraction. */
#define POLKIT_ALLOW_USER_INTERACTION 1u

#define USEC_PER_SEC 1000000ULL

/* An interactive check waits for a person typing a password: never less
 * than this, whatever non-interactive checks are allowed. */
#define POLKIT_INTERACTIVE_TIMEOUT_SEC 300u

struct PolkitCall {
        polkit_callback cb;     /* NULL once cancelled */
        void *userdata;
        unsigned timeout_sec;
        uint64_t deadline_usec; /* CLOCK_MONOTONIC */
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000u;
}

void polkit_cancel(PolkitCall *call) {
        if (call)
                call->cb = NULL;
}

static void callback_once(PolkitCall *call, PolkitResult result, const sd_bus_error *error) {
        polkit_callback cb = call->cb;

        call->cb = NULL;
        if (cb)
                cb(result, error, call->userdata);
}

static int polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitCall *call = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized, challenge, r;

        (void) ret_error;

        if (e) {
                _cleanup_(sd_bus_error_free) sd_bus_error err = SD_BUS_ERROR_NULL;

                /* sd-bus answers for polkit when the call times out, and
                 * the bus when polkit disconnects with the call pending:
                 * both as NoReply, told apart by the clock. Callers relay
                 * the message, so it names what happened. */
                if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) && now_usec() >= call->deadline_usec)
                        (void) sd_bus_error_setf(&err, SD_BUS_ERROR_TIMEOUT,
                                                 "polkit did not answer within %u s", call->timeout_sec);
                else if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                        (void) sd_bus_error_set_const(&err, SD_BUS_ERROR_NO_REPLY,
                                                      "polkit went away without answering");
                else if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                        (void) sd_bus_error_set_const(&err, e->name, "polkit is not running");
                callback_once(call, POLKIT_FAILED, sd_bus_error_is_set(&err) ? &err : e);
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                sd_bus_error err = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_FAILED,
                                "polkit answered with a malformed reply");
                callback_once(call, POLKIT_FAILED, &err);
                return 0;
        }

        callback_once(call, authorized ? POLKIT_ALLOWED : challenge ? POLKIT_CHALLENGE : POLKIT_DENIED, NULL);
        return 0;
}

static void polkit_call_free(void *userdata) {
        /* The floating slot is destroyed after the reply, or when the bus
         * goes away: the only owner of the call. */
        free(userdata);
}

int polkit_check_async(
                sd_bus *bus,
                const char *sender,
                const char *action,
                const char *const *details,
                bool interactive,
                unsigned timeout_sec,
                polkit_callback cb,
                void *userdata,
                PolkitCall **ret_call) {

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ PolkitCall *call = NULL;
        sd_bus_slot *slot = NULL;
        int r;

        call = malloc(sizeof(*call));
        if (!call)
                return -ENOMEM;
        if (interactive && timeout_sec < POLKIT_INTERACTIVE_TIMEOUT_SEC)
                timeout_sec = POLKIT_INTERACTIVE_TIMEOUT_SEC;
        *call = (PolkitCall) { .cb = cb, .userdata = userdata, .timeout_sec = timeout_sec };

        r = sd_bus_message_new_method_call(bus, &m,
                        "org.freedesktop.PolicyKit1",
                        "/org/freedesktop/PolicyKit1/Authority",
                        "org.freedesktop.PolicyKit1.Authority",
                        "CheckAuthorization");
        if (r < 0)
                return r;

        r = sd_bus_message_append(m, "(sa{sv})s", "system-bus-name", 1, "name", "s", sender, action);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(m, 'a', "{ss}");
        if (r < 0)
                return r;
        for (const char *const *d = details; d && d[0] && d[1]; d += 2) {
                r = sd_bus_message_append(m, "{ss}", d[0], d[1]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;

        r = sd_bus_message_append(m, "us", interactive ? POLKIT_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;

        /* Let polkit's agent, if any, talk to the user. */
        r = sd_bus_message_set_allow_interactive_authorization(m, interactive);
        if (r < 0)
                return r;

        /* Taken before sd-bus starts its own clock, so never later than
         * the moment it gives up. */
        call->deadline_usec = now_usec() + timeout_sec * USEC_PER_SEC;
        r = sd_bus_call_async(bus, &slot, m, polkit_reply, call, timeout_sec * USEC_PER_SEC);
        if (r < 0)
                return r;
        /* From here on the slot owns the call. */
        PolkitCall *c = TAKE_PTR(call);
        (void) sd_bus_slot_set_destroy_callback(slot, polkit_call_free);
        r = sd_bus_slot_set_floating(slot, true);
        sd_bus_slot_unref(slot);
        if (r < 0)
                return r;

        *ret_call = c;
        return 0;
}
