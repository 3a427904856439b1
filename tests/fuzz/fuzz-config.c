/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* nsresd.conf and its drop-ins: a bad file is refused with a message naming
 * the line, and leaves the configuration it was applied to untouched. */

#include <errno.h>

#include "config.h"
#include "fuzz.h"

#define ORIGIN "fuzz.conf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Config defaults, c, before;
        char *text, *error = NULL, *changes;
        int r;

        config_defaults(&defaults);
        c = defaults;
        before = c;

        text = fuzz_text(data, size);
        r = config_parse_text(&c, text, ORIGIN, &error);
        free(text);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                /* "FILE:LINE: what is wrong" */
                FUZZ_CHECK(error && strncmp(error, ORIGIN ":", strlen(ORIGIN ":")) == 0);
                FUZZ_CHECK(memcmp(&c, &before, sizeof(c)) == 0);
                free(error);
                return 0;
        }
        FUZZ_CHECK(!error);

        r = config_verify(&c, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL && error);
                free(error);
        } else {
                /* What the allocator and the delegation code assume of a verified configuration. */
                FUZZ_CHECK(!error);
                FUZZ_CHECK(c.range_start > 0 && c.range_start < c.range_end && c.range_end < UINT32_MAX);
                FUZZ_CHECK(c.range_start % 65536 == 0 && ((uint64_t) c.range_end + 1) % 65536 == 0);
                FUZZ_CHECK(c.single_range_start > 0 && c.single_range_start <= c.single_range_end &&
                           c.single_range_end < UINT32_MAX);
                FUZZ_CHECK(c.single_range_end < c.range_start || c.single_range_start > c.range_end);
                FUZZ_CHECK(c.max_control_groups >= 1 && c.max_control_groups <= CONFIG_CONTROL_GROUPS_MAX);
                FUZZ_CHECK(c.control_group_max_depth >= 1 && c.control_group_max_depth <= CONFIG_CGROUP_DEPTH_MAX);
                FUZZ_CHECK(c.max_bpf_delegations >= 1 && c.max_bpf_delegations <= CONFIG_BPF_DELEGATIONS_MAX);
                FUZZ_CHECK(restriction_mode_to_string(c.restriction));
        }

        changes = config_describe_changes(&defaults, &c);
        FUZZ_CHECK(changes);
        /* A changed pool bound is a changed key. */
        if (changes[0] == '\0')
                FUZZ_CHECK(!config_pool_differs(&defaults, &c));
        free(changes);
        return 0;
}
