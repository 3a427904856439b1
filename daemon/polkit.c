/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdlib.h>

#include "polkit.h"
#include "util.h"

/* CheckAuthorization flag: AllowUserInteraction. */
#define POLKIT_ALLOW_USER_INTERACTION 1u

/* Bounded: a hung polkitd must fail calls, not hold them forever. An
 * interactive check waits for a person typing a password. */
#define POLKIT_TIMEOUT_USEC (25ULL * 1000000ULL)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (300ULL * 1000000ULL)

struct PolkitCall {
        polkit_callback cb;     /* NULL once cancelled */
        void *userdata;
};

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
                callback_once(call, POLKIT_FAILED, e);
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
        *call = (PolkitCall) { .cb = cb, .userdata = userdata };

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

        r = sd_bus_call_async(bus, &slot, m, polkit_reply, call,
                              interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : POLKIT_TIMEOUT_USEC);
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
