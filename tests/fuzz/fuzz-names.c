/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Client-supplied namespace names: validation, mangling, qualification. */

#include <errno.h>
#include <inttypes.h>

#include "fuzz.h"
#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char mangled[NAME_MAX_LEN + 1], again[NAME_MAX_LEN + 1], qualified[QUALIFIED_NAME_MAX + 1];
        char expected[QUALIFIED_NAME_MAX + 64];
        uid_t owner = 0;
        bool valid;
        char *name;
        int r;

        /* The first bytes pick the owner, so that root and other users are both seen. */
        if (size >= sizeof(owner)) {
                memcpy(&owner, data, sizeof(owner));
                data += sizeof(owner);
                size -= sizeof(owner);
        }
        name = fuzz_text(data, size);

        valid = name_is_valid(name);
        r = name_mangle(name, mangled);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        if (r == 0) {
                /* Whatever comes out is a valid name, and a fixed point. */
                FUZZ_CHECK(name_is_valid(mangled));
                FUZZ_CHECK(name_mangle(mangled, again) == 0);
                FUZZ_CHECK(strcmp(again, mangled) == 0);
        }
        /* A valid name is left as it is. */
        if (valid) {
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(strcmp(mangled, name) == 0);
        }

        if (r == 0) {
                /* A valid name qualified for any owner fits, untruncated. */
                name_qualify(owner, mangled, qualified);
                if (owner == 0)
                        snprintf(expected, sizeof(expected), "%s", mangled);
                else
                        snprintf(expected, sizeof(expected), "%" PRIu32 "-%s", (uint32_t) owner, mangled);
                FUZZ_CHECK(strcmp(qualified, expected) == 0);
        }

        free(name);
        return 0;
}
