/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The restriction's decision, bpf/restrict-policy.h, compiled for the host:
 * every case of the VM table (tests/vm/nsresd-vmtest.c) as the BPF program
 * would describe it, plus the edges the guest cannot reach. The argument is
 * the VM's expected table, which must match the rows named after its cases.
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

/* Every case of the VM table that the policy decides, by the same name, as
 * the program describes it on 6.1 (a mount that is not idmapped shows the
 * initial namespace's map there). test_vm_table_covered() checks the names
 * against tests/vm/expected-enforce.txt. */
#define PLAIN .mnt_uid = init_map, .mnt_gid = init_map
#define IDMAPPED .mnt_uid = range_at_0, .mnt_gid = range_at_0

static const Row vm_rows[] = {
        { "mkdir-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "create-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "symlink-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "link-host-tmpfs", true, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, PLAIN, .uid = RANGE, .gid = RANGE } },
        { "chown-host-tmpfs", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, PLAIN, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-ext4", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "create-ext4", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "symlink-ext4", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "link-ext4", true, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, PLAIN, .uid = RANGE, .gid = RANGE } },
        { "chown-ext4", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, PLAIN, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-ns-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .sb_owned = 1 } },
        { "create-ns-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .sb_owned = 1 } },
        { "symlink-ns-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .sb_owned = 1 } },
        { "link-ns-tmpfs", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, PLAIN, .sb_owned = 1, .uid = RANGE, .gid = RANGE } },
        { "chown-ns-tmpfs", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, PLAIN, .sb_owned = 1, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-idmapped-ext4", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, IDMAPPED } },
        { "create-idmapped-ext4", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, IDMAPPED } },
        { "symlink-idmapped-ext4", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, IDMAPPED } },
        { "link-idmapped-ext4", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, IDMAPPED, .uid = 0, .gid = 0 } },
        { "mkdir-delegated", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .delegated = 1 } },
        { "create-delegated", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .delegated = 1 } },
        { "symlink-delegated", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .delegated = 1 } },
        { "link-delegated", false, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, PLAIN, .delegated = 1, .uid = RANGE, .gid = RANGE } },
        { "chown-delegated", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, PLAIN, .delegated = 1, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-delegated-other-mount", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "mkdir-host-tmpfs-as-caller", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .fsuid = CALLER, .fsgid = CALLER } },
        { "chown-host-tmpfs-to-caller", false, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, PLAIN, .uid = CALLER, .gid = CALLER } },
        { "setfacl-host-tmpfs-as-caller", true, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .fsuid = CALLER, .fsgid = CALLER, .xattr_names_ids = 1 } },
        { "setfacl-ext4-as-caller", true, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .fsuid = CALLER, .fsgid = CALLER, .xattr_names_ids = 1 } },
        { "setfcap-host-tmpfs", true, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .xattr_names_ids = 1 } },
        { "setfacl-ns-tmpfs", false, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .sb_owned = 1, .xattr_names_ids = 1 } },
        { "setfcap-ns-tmpfs", false, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .sb_owned = 1, .xattr_names_ids = 1 } },
        { "setxattr-user-ext4-as-caller", false, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .fsuid = CALLER, .fsgid = CALLER } },
        /* A copy of a mount in a new mount namespace is another mount. */
        { "unshare-mountns-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "unshare-mountns-delegated", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        /* The walk finds the tracked namespace above the nested one, whose
         * superblocks are below it. */
        { "nested-userns-host-tmpfs", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "nested-userns-ext4", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN } },
        { "nested-userns-own-tmpfs", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, PLAIN, .sb_owned = 1 } },
        { "tmpfile-link-host-tmpfs", true, { .op = RESTRICT_OP_LINK, TRACKED_ROOT, PLAIN, .uid = RANGE, .gid = RANGE } },
        { "overlay-host-upper", true, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_PERSISTENT } },
        { "overlay-host-upper-fsopen", true, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_PERSISTENT } },
        { "overlay-ns-upper", false, { .op = RESTRICT_OP_MOUNT, TRACKED_ROOT, .upper = RESTRICT_UPPER_OWNED } },
        { "untracked-userns-host-tmpfs", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED, .fsuid = RANGE, .fsgid = RANGE } },
        { "untracked-userns-ext4", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED, .fsuid = RANGE, .fsgid = RANGE } },
        { "init-root-host-tmpfs", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED } },
        { "init-root-ext4", false, { .op = RESTRICT_OP_CREATE, .chain = RESTRICT_CHAIN_UNTRACKED } },
};

/* VM cases about the loader and the tracker rather than the decision. */
static const char *const vm_not_decisions[] = {
        "lsm-hooks-run", "restart-before", "restart-while-stopped", "restart-keeps-namespace",
        "restart-after", "restart-released", "teardown-tracker",
};

static const Row rows[] = {
        /* The same operations on a 6.3+ kernel, where a mount that is not
         * idmapped has no extents at all. */
        { "create-host-tmpfs (6.3+)", true, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT } },
        { "chown-host-tmpfs (6.3+)", true, { .op = RESTRICT_OP_CHOWN, TRACKED_ROOT, .uid = RANGE + 1, .gid = RANGE + 1 } },
        { "mkdir-host-tmpfs-as-caller (6.3+)", false, { .op = RESTRICT_OP_CREATE, TRACKED_ROOT, .fsuid = CALLER, .fsgid = CALLER } },

        /* Edges. */
        { "id-naming xattr on a delegated mount (the hook cannot tell)", true, { .op = RESTRICT_OP_XATTR, TRACKED_ROOT, .delegated = 1, .xattr_names_ids = 1 } },
        { "untracked task sets an ACL", false, { .op = RESTRICT_OP_XATTR, .chain = RESTRICT_CHAIN_UNTRACKED, .xattr_names_ids = 1 } },
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

static unsigned check_rows(const Row *table, size_t n) {
        unsigned failed = 0;

        for (size_t i = 0; i < n; i++) {
                bool denied = restrict_denied(&table[i].f, &pools) != 0;

                if (denied != table[i].denied) {
                        fprintf(stderr, "%s: %s, expected %s\n", table[i].name,
                                denied ? "denied" : "allowed", table[i].denied ? "denied" : "allowed");
                        failed++;
                }
        }
        return failed;
}

static void test_table(void) {
        CHECK_EQ(check_rows(vm_rows, ELEMENTSOF(vm_rows)), 0);
        CHECK_EQ(check_rows(rows, ELEMENTSOF(rows)), 0);
}

/* Each decision the VM table expects has a row here with the same outcome,
 * and each row here is in the VM table. */
static void test_vm_table_covered(const char *path) {
        bool seen[ELEMENTSOF(vm_rows)] = {};
        char line[256];
        unsigned failed = 0;
        FILE *f;

        f = fopen(path, "re");
        CHECK(f);
        while (fgets(line, sizeof(line), f)) {
                char name[128], result[32];
                bool found = false, skip = false;

                if (line[0] == '#' || sscanf(line, "%127s %31s", name, result) != 2)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(vm_not_decisions); i++)
                        skip = skip || strcmp(name, vm_not_decisions[i]) == 0;
                if (skip)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(vm_rows); i++) {
                        if (strcmp(vm_rows[i].name, name) != 0)
                                continue;
                        found = seen[i] = true;
                        if (vm_rows[i].denied != (strcmp(result, "EPERM") == 0)) {
                                fprintf(stderr, "%s: the VM expects %s, the row says %s\n", name, result,
                                        vm_rows[i].denied ? "denied" : "allowed");
                                failed++;
                        }
                }
                if (!found) {
                        fprintf(stderr, "%s: in the VM table, no row here\n", name);
                        failed++;
                }
        }
        fclose(f);
        for (size_t i = 0; i < ELEMENTSOF(vm_rows); i++)
                if (!seen[i]) {
                        fprintf(stderr, "%s: a row here, not in the VM table\n", vm_rows[i].name);
                        failed++;
                }
        CHECK_EQ(failed, 0);
}

static void test_xattr_names(void) {
        static const char *const with_ids[] = {
                "system.posix_acl_access", "system.posix_acl_default", "security.capability",
        };
        static const char *const without[] = {
                "", "user.nsresd", "system.posix_acl", "system.posix_acl_accesS", "system.posix_acl_access2",
                "security.capabilit", "security.capability.x", "trusted.overlay.origin", "security.selinux",
        };
        char buf[RESTRICT_XATTR_NAME_MAX];

        for (size_t i = 0; i < ELEMENTSOF(with_ids); i++) {
                memset(buf, 0, sizeof(buf));
                strncpy(buf, with_ids[i], sizeof(buf) - 1);
                CHECK(restrict_xattr_names_ids(buf));
        }
        for (size_t i = 0; i < ELEMENTSOF(without); i++) {
                memset(buf, 0, sizeof(buf));
                strncpy(buf, without[i], sizeof(buf) - 1);
                CHECK(!restrict_xattr_names_ids(buf));
        }
        /* Cut off without a NUL, as bpf_probe_read_kernel_str() leaves a
         * longer name: never a match. */
        memset(buf, 'a', sizeof(buf));
        CHECK(!restrict_xattr_names_ids(buf));
        memcpy(buf, "security.capability", sizeof("security.capability") - 1);
        CHECK(!restrict_xattr_names_ids(buf));
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

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s tests/vm/expected-enforce.txt\n", argv[0]);
                return 2;
        }
        RUN_TEST(test_table);
        test_vm_table_covered(argv[1]);
        printf("ok - test_vm_table_covered\n");
        RUN_TEST(test_xattr_names);
        RUN_TEST(test_map_helpers);
        printf("%zu decisions checked, %zu of them the VM's\n", ELEMENTSOF(vm_rows) + ELEMENTSOF(rows),
               ELEMENTSOF(vm_rows));
        return 0;
}
