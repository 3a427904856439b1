/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The restriction's decision, bpf/restrict-policy.h, compiled for the host:
 * every case of the VM table (tests/vm/nsresd-vmtest.c) as the BPF program
 * would describe it, plus the edges the guest cannot reach.
 */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "restrict-policy.h"
#include "test-util.h"
#include "util.h"

#define RANGE 524288U           /* the namespace's transient range */
#define SIZE 65536U
#define CALLER 1000U            /* mapped in as with MAP_CALLER */

static const struct restrict_config pools = {
        .n_pools = 2,
        .pools = {
                { 524288, 1879048191U - 524288 + 1 },
                { 61184, 65519 - 61184 + 1 },
        },
};

/* A mount that is not idmapped, as 6.3+ shows it (nop_mnt_idmap). */
static const struct restrict_idmap none = { 0 };
/* ...and as 6.1 shows it: the initial namespace's identity map. */
static const struct restrict_idmap init_map = { 1, { { 0, 0, 0xffffffffU } } };
/* An idmapped mount through a namespace with "0 RANGE SIZE". */
static const struct restrict_idmap range_at_0 = { 1, { { 0, RANGE, SIZE } } };

typedef struct Row {
        const char *name;
        bool denied;
        struct restrict_facts f;
} Row;

/* The namespace's root acting on a filesystem that outlives it. */
#define TRACKED_ROOT                                                    \
        .chain = RESTRICT_CHAIN_TRACKED,                                \
        .fsuid = RANGE, .fsgid = RANGE,                                 \
        .uid = RESTRICT_INVALID_ID, .gid = RESTRICT_INVALID_ID,         \
        .fs_initial = 1,                                                \
        .ns = { RANGE, SIZE }

static const Row rows[] = {
        /* The VM table, as the program sees each case. */
        { "mkdir-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT } },
        { "create-host-tmpfs (6.1 mount)", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .mnt_uid = init_map, .mnt_gid = init_map } },
        { "link-host-tmpfs", true, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, .uid = 0, .gid = 0 } },
        { "chown-host-tmpfs", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-ns-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .sb_owned = 1 } },
        { "link-ns-tmpfs", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, .sb_owned = 1, .uid = RANGE, .gid = RANGE } },
        { "chown-ns-tmpfs", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .sb_owned = 1, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-idmapped-ext4", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .mnt_uid = range_at_0, .mnt_gid = range_at_0 } },
        { "link-idmapped-ext4", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, .uid = 0, .gid = 0, .mnt_uid = range_at_0, .mnt_gid = range_at_0 } },
        { "mkdir-delegated", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .delegated = 1 } },
        { "chown-delegated", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .delegated = 1, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-host-tmpfs-as-caller", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = CALLER, .fsgid = CALLER } },
        { "chown-host-tmpfs-to-caller", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .uid = CALLER, .gid = CALLER } },
        { "nested-userns-own-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .sb_owned = 1 } },
        { "overlay-host-upper", true, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_PERSISTENT } },
        { "overlay-ns-upper", false, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_OWNED } },
        { "untracked-userns-host-tmpfs", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED, .fsuid = RANGE, .fsgid = RANGE } },
        { "init-root-host-tmpfs", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED } },

        /* Edges. */
        { "chain too deep", true, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_TOO_DEEP, .sb_owned = 1 } },
        { "unknown chain state", true, { .op = RESTRICT_OP_CREATE, .chain = 7, .fsuid = CALLER, .fsgid = CALLER } },
        { "unknown operation", true, { .op = _RESTRICT_OP_MAX, TRACKED_ROOT, .sb_owned = 1 } },
        { "untracked overlay", false, { .op = RESTRICT_OP_MOUNT, .chain = RESTRICT_CHAIN_UNTRACKED, .upper = RESTRICT_UPPER_PERSISTENT } },
        { "read-only overlay", false, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_NONE } },
        { "overlay internals unreadable", true, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_UNKNOWN } },
        { "overlay on own tmpfs ignores sb_owned", true, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .sb_owned = 1, .upper = RESTRICT_UPPER_PERSISTENT } },
        { "only the gid is transient", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = CALLER } },
        { "only the uid is transient", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsgid = CALLER } },
        { "id in the single-id pool", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 61184, .fsgid = 65519 } },
        { "ids just outside both pools", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 61183, .fsgid = 65520 } },
        { "first id below the container pool", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 524287, .fsgid = 524287, .ns = { 0, 0 } } },
        { "last id of the container pool", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 1879048191U, .fsgid = CALLER } },
        { "first id above the container pool", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 1879048192U, .fsgid = CALLER } },
        { "own range outside the configured pools", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = 100000, .fsgid = 100000, .ns = { 100000, SIZE } } },
        { "idmapped into another transient range", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = { 1, { { RANGE + SIZE, RANGE, SIZE } } }, .mnt_gid = { 1, { { RANGE + SIZE, RANGE, SIZE } } } } },
        { "idmapped, fsuid not in the mapping", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = { 1, { { 0, 0, 1000 } } }, .mnt_gid = { 1, { { 0, 0, 1000 } } } } },
        { "idmapped, fsuid in a later extent", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = { 3, { { 0, 0, 1 }, { 5, 7, 1 }, { 0, RANGE, 1 } } }, .mnt_gid = range_at_0 } },
        /* Counted, the second extent would store 5 as RANGE. */
        { "idmapped, extents past the count ignored", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = { 1, { { 0, 0, 1 }, { RANGE, 5, 1 } } }, .mnt_gid = range_at_0, .fsuid = 5 } },
        { "idmapped maps out of line", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .maps_out_of_line = 1, .mnt_uid = range_at_0, .mnt_gid = range_at_0 } },
        { "maps out of line on its own superblock", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .sb_owned = 1, .maps_out_of_line = 1 } },
        { "idmapped on a non-initial superblock namespace", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = range_at_0, .mnt_gid = range_at_0, .fs_initial = 0,
                .fs_uid = { 1, { { 0, 2 * RANGE, SIZE } } }, .fs_gid = { 1, { { 0, 2 * RANGE, SIZE } } } } },
        { "idmapped, superblock namespace maps to non-transient", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .mnt_uid = range_at_0, .mnt_gid = range_at_0, .fs_initial = 0,
                .fs_uid = { 1, { { 0, 100000, SIZE } } }, .fs_gid = { 1, { { 0, 100000, SIZE } } } } },
        { "link of a transient inode by a harmless task", true, { .op = RESTRICT_OP_LINK, TRACKED_ROOT,
                .fsuid = CALLER, .fsgid = CALLER, .uid = RANGE + 5, .gid = CALLER } },
        { "link of a harmless inode by a harmless task", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT,
                .fsuid = CALLER, .fsgid = CALLER, .uid = CALLER, .gid = CALLER } },
        { "chown keeping both ids", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT } },
        { "chown of the group only, to a transient gid", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .gid = RANGE } },
        { "chown to a transient id through an idmapping", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT,
                .uid = RANGE + 1, .gid = RESTRICT_INVALID_ID, .mnt_uid = range_at_0, .mnt_gid = range_at_0 } },
        { "chown stored as transient through an idmapping", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT,
                .uid = 1, .gid = RESTRICT_INVALID_ID, .mnt_uid = { 1, { { RANGE, 0, SIZE } } }, .mnt_gid = none } },
        { "chown harmless through an idmapping", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT,
                .uid = CALLER, .gid = CALLER, .mnt_uid = range_at_0, .mnt_gid = range_at_0 } },
        { "chown with maps out of line", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .uid = CALLER, .maps_out_of_line = 1 } },
        { "the fsuid is the invalid id", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT,
                .fsuid = RESTRICT_INVALID_ID, .fsgid = RESTRICT_INVALID_ID } },
};

static void test_table(void) {
        unsigned failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                bool denied = restrict_denied(&rows[i].f, &pools) != 0;

                if (denied != rows[i].denied) {
                        fprintf(stderr, "%s: %s, expected %s\n", rows[i].name,
                                denied ? "denied" : "allowed", rows[i].denied ? "denied" : "allowed");
                        failed++;
                }
        }
        CHECK_EQ(failed, 0);
}

static void test_map_helpers(void) {
        struct restrict_idmap two = { 2, { { 0, 100, 10 }, { 10, 500, 5 } } };
        struct restrict_ns no_range = { 0, 0 };
        struct restrict_config empty = { 0 };

        CHECK_EQ(restrict_map_up(&two, 100), 0);
        CHECK_EQ(restrict_map_up(&two, 109), 9);
        CHECK_EQ(restrict_map_up(&two, 110), RESTRICT_INVALID_ID);
        CHECK_EQ(restrict_map_up(&two, 504), 14);
        CHECK_EQ(restrict_map_up(&two, 505), RESTRICT_INVALID_ID);
        CHECK_EQ(restrict_map_down(&two, 14), 504);
        CHECK_EQ(restrict_map_down(&two, 15), RESTRICT_INVALID_ID);
        CHECK_EQ(restrict_map_up(&init_map, 0), 0);
        CHECK_EQ(restrict_map_up(&init_map, 0xfffffffeU), 0xfffffffeU);
        CHECK_EQ(restrict_map_up(&init_map, RESTRICT_INVALID_ID), RESTRICT_INVALID_ID);
        /* An extent with no ids maps nothing, even at its first id. */
        CHECK_EQ(restrict_map_up(&(struct restrict_idmap) { 1, { { 0, 7, 0 } } }, 7), RESTRICT_INVALID_ID);
        /* Extents that reach the top of the id space do not wrap. */
        CHECK_EQ(restrict_map_up(&(struct restrict_idmap) { 1, { { 0, 0xfffffff0U, 0x10 } } }, 5), RESTRICT_INVALID_ID);

        CHECK_EQ(restrict_stored_id(&none, &none, 1, RANGE), RANGE);
        CHECK_EQ(restrict_stored_id(&range_at_0, &none, 1, RANGE + 3), 3);
        CHECK_EQ(restrict_stored_id(&range_at_0, &two, 0, RANGE + 3), 103);
        CHECK_EQ(restrict_stored_id(&range_at_0, &two, 0, 7), RESTRICT_INVALID_ID);

        CHECK(!restrict_id_transient(&empty, &no_range, RANGE));
        CHECK(restrict_id_transient(&pools, &no_range, RANGE));
        CHECK(!restrict_id_transient(&pools, &no_range, RESTRICT_INVALID_ID));
        /* A pool count beyond the array is not read past its end. */
        CHECK(!restrict_id_transient(&(struct restrict_config) { RESTRICT_MAX_POOLS + 3, { { 0, 0 } } }, &no_range, 5));
}

int main(void) {
        RUN_TEST(test_table);
        RUN_TEST(test_map_helpers);
        printf("%zu decisions checked\n", ELEMENTSOF(rows));
        return 0;
}
