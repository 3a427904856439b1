/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Ids claimed outside nsresd, which the allocator must never hand out:
 * /etc/subuid and /etc/subgid lines, users and groups known to NSS
 * (enumerated, never looked up per id), systemd's DynamicUser ids
 * (/run/systemd/dynamic-uid/), a running systemd-nsresourced's registry
 * (/run/systemd/nsresource/registry/) and nspawn's locks
 * (/run/systemd/nspawn-uid/). Also the uid -> primary gid table of NSS users,
 * used to map a caller's own gid.
 *
 * Gathering does I/O and may block on NSS: it runs at start and on refresh,
 * never in a request path.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct ClaimRange {
        uint32_t start;
        uint32_t count;
} ClaimRange;

typedef struct UserEntry {
        uid_t uid;
        gid_t gid;
} UserEntry;

typedef struct Claims {
        ClaimRange *ranges;
        size_t n_ranges;
        UserEntry *users;       /* sorted by uid */
        size_t n_users;
} Claims;

typedef struct ClaimSources {
        const char *subuid_path;        /* NULL: skip */
        const char *subgid_path;
        const char *dynamic_uid_dir;
        const char *nsresourced_dir;
        const char *nspawn_uid_dir;
        int use_nss;                    /* enumerate getpwent()/getgrent() */
} ClaimSources;

/* The system's real paths. */
extern const ClaimSources claim_sources_default;

void claims_done(Claims *c);
int claims_add(Claims *c, uint32_t start, uint32_t count);
int claims_add_user(Claims *c, uid_t uid, gid_t gid);

/* Parse a subuid/subgid file: "owner:start:count" lines; comments (#) and
 * blank lines skipped; malformed lines are skipped and counted in
 * *ret_bad (may be NULL). */
int claims_parse_subid(FILE *f, Claims *c, unsigned *ret_bad);

/* Collect everything; a missing file or directory is not an error. */
int claims_collect(const ClaimSources *src, Claims *ret);

/* Primary gid of uid from the table: -ENOENT if unknown. */
int claims_user_gid(const Claims *c, uid_t uid, gid_t *ret);
