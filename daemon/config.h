/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * nsresd.conf: INI-style "[Section]" and "Key=Value" lines, '#' and ';'
 * comments. The main file is read first, then drop-ins
 * "<main file>.d/NAME.conf" in lexical order, later values overriding earlier.
 * A missing main file means defaults. Unknown sections or keys and bad values
 * are errors naming the file and line.
 */

#include <stdbool.h>
#include <stdint.h>

typedef enum RestrictionMode {
        RESTRICTION_ENFORCE,
        RESTRICTION_PERMISSIVE,
        RESTRICTION_OFF,
} RestrictionMode;

typedef enum PoolBound {
        POOL_RANGE_START,
        POOL_RANGE_END,
        POOL_SINGLE_START,
        POOL_SINGLE_END,
        _POOL_BOUND_MAX,
} PoolBound;

/* What a namespace's registry entry can hold (NS_CGROUPS_MAX). */
#define CONFIG_CONTROL_GROUPS_MAX 256u
/* The kernel reads cgroup.max.descendants as an int. */
#define CONFIG_CGROUP_DESCENDANTS_MAX 2147483647u
/* Teardown walks a delegated subtree holding one fd per level. */
#define CONFIG_CGROUP_DEPTH_MAX 64u
/* What a namespace's registry entry counts (NS_BPF_MAX). */
#define CONFIG_BPF_DELEGATIONS_MAX 64u
/* An hour: past that a check is not slow but lost. */
#define CONFIG_POLKIT_TIMEOUT_MAX 3600u
/* The teardown ring buffer: 256 KiB hold about 10000 events; 64 MiB is far
 * more than the pools have namespaces to report. */
#define CONFIG_RING_BUFFER_DEFAULT (256u * 1024u)
#define CONFIG_RING_BUFFER_MAX (64u * 1024u * 1024u)

typedef struct Config {
        /* [Allocator] */
        uint32_t range_start;                   /* 524288 */
        uint32_t range_end;                     /* 1879048191 */
        uint32_t single_range_start;            /* 61184 */
        uint32_t single_range_end;              /* 65519 */
        unsigned max_namespaces_per_owner;      /* 256 */
        unsigned max_requests_per_owner;        /* 32 */
        /* [Delegation] */
        unsigned max_control_groups;            /* 16, at most CONFIG_CONTROL_GROUPS_MAX */
        unsigned control_group_max_descendants; /* 256: cgroup.max.descendants of a delegated leaf */
        unsigned control_group_max_depth;       /* 16: cgroup.max.depth of a delegated leaf */
        unsigned max_network_interfaces;        /* 16 */
        unsigned max_network_interfaces_per_owner; /* 64 */
        unsigned max_bpf_delegations;           /* 8, at most CONFIG_BPF_DELEGATIONS_MAX */
        /* [Security] */
        RestrictionMode restriction;            /* enforce */
        unsigned polkit_timeout_sec;            /* 25: how long a non-interactive check may take */
        /* [Tracking] */
        uint32_t teardown_ring_buffer_size;     /* 262144 bytes, a power of two; applies at the next start */

        /* "FILE:LINE" that last set each pool bound, empty for the default:
         * the pool is checked as a whole after every file was read, and its
         * errors still point at a line. */
        char pool_origin[_POOL_BOUND_MAX][256];
} Config;

void config_defaults(Config *c);

/* Parse `path` and its drop-ins into *c (which holds defaults or earlier
 * values). On error returns a negative errno and, if ret_error is non-NULL,
 * a malloc'd message "FILE:LINE: what is wrong". */
int config_load(Config *c, const char *path, char **ret_error);

/* Parse one file's text; `origin` names it in messages. Pure, for tests. */
int config_parse_text(Config *c, const char *text, const char *origin, char **ret_error);

/* Cross-field checks (pool bounds and alignment): message in *ret_error. */
int config_verify(const Config *c, char **ret_error);

/* Whether the pools (RangeStart=, RangeEnd=, SingleRangeStart=,
 * SingleRangeEnd=) of a and b differ. */
bool config_pool_differs(const Config *a, const Config *b);

/* "Key=old->new" for every key whose value differs, comma-separated: a
 * malloc'd string, empty if nothing changed. NULL when out of memory. */
char *config_describe_changes(const Config *old, const Config *new);

const char *restriction_mode_to_string(RestrictionMode m);
