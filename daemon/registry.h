/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Persistent state under the state directory (tmpfs /run/nsresd: namespaces
 * do not outlive a boot):
 *
 *   <state>/registry/          0700, one JSON file per namespace
 *   <state>/registry/quarantine/   corrupt files, moved aside (range kept)
 *   <state>/index              0644, "uid_start size name" lines for NSS
 *
 * A registry file is named "<id>-<uid_start>-<size>.json" so that even a
 * truncated or corrupt file still says which range it held: that range stays
 * reserved instead of being handed out again. Every write goes to a temporary
 * file that is renamed over the old one.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "names.h"

#define NS_HANDLE_MAX 128

/* Mounts one namespace can be given: as many as the restriction's
 * per-namespace map holds (RESTRICT_MAX_MOUNTS). */
#define NS_MOUNTS_MAX 1024u

/* Control groups one namespace can be given, whatever MaxControlGroups=
 * says (CONFIG_CONTROL_GROUPS_MAX), and the longest path recorded for one:
 * together they bound the size of a registry file. */
#define NS_CGROUPS_MAX 256u
#define NS_CGROUP_PATH_MAX 4095u

/* Network links one namespace can be given, whatever MaxNetworkInterfaces=
 * says: bounds the size of a registry file. IFNAMSIZ is the size of a name. */
#define NS_NETIFS_MAX 1024u
#define NS_NETIF_NAME_SIZE 16

typedef enum NsKind {
        NS_KIND_TRANSIENT,
        NS_KIND_SELF,
        NS_KIND_REGISTERED,
        _NS_KIND_MAX,
} NsKind;

/* A control group delegated with AddControlGroupToUserNamespace. It is
 * recorded (pending) before anything is created or chowned, so that a crash
 * at any point leaves a record the next start can finish or undo. */
typedef struct NsCgroup {
        uint64_t id;            /* cgroup id (its kernfs node id); 0 while a CREATE_CHILD leaf is being made */
        uint64_t parent_id;     /* CREATE_CHILD: the caller's cgroup the leaf is made in; else 0 */
        bool created;           /* made by nsresd (CREATE_CHILD), not handed over as it was */
        bool pending;           /* recorded, not delegated yet */
        char *path;             /* relative to the cgroup2 mount, "/..."; the leaf's name is its last part */
} NsCgroup;

typedef enum NsNetifKind {
        NS_NETIF_VETH,
        NS_NETIF_TAP,
        _NS_NETIF_KIND_MAX,
} NsNetifKind;

/* A link made with AddNetworkToUserNamespace or AddTapToUserNamespace. It is
 * recorded before the link is created, so that a crash in between leaves a
 * record (of a link that may not exist) rather than a link nobody knows of. */
typedef struct NsNetif {
        NsNetifKind kind;
        char host[NS_NETIF_NAME_SIZE];          /* the host end: "ns-" and 12 hex digits */
        char inside[NS_NETIF_NAME_SIZE];        /* veth: the peer's name in the netns; tap: its label */
} NsNetif;

/* The four delegate_* options of a bpffs, in the order of BpfDelegateKind. */
#define NS_BPF_MASKS 4
/* DelegateBpf calls per namespace, whatever the configuration says. */
#define NS_BPF_MAX 64

typedef struct NsEntry {
        uint64_t id;            /* NS_GET_ID: the key everywhere */
        uint64_t inode;         /* display only: inode numbers are reused */
        char name[QUALIFIED_NAME_MAX + 1];
        uid_t owner;
        NsKind kind;
        uint32_t uid_start;     /* transient: first id of the range; self/registered: the owner's uid */
        uint32_t gid_start;
        uint32_t size;
        uint32_t target;        /* first id inside the namespace */
        bool map_caller;        /* owner's uid/gid also mapped at target + size */
        uid_t caller_uid;       /* what MAP_CALLER/SELF mapped */
        gid_t caller_gid;
        bool pending;           /* maps may be being written: not complete yet */
        uint64_t created_usec;  /* CLOCK_REALTIME */
        int handle_type;        /* nsfs file handle, for liveness checks */
        unsigned handle_len;
        uint8_t handle[NS_HANDLE_MAX];
        /* Mounts delegated with AddMountToUserNamespace, by unique mount id,
         * and control groups delegated with AddControlGroupToUserNamespace.
         * The only parts on the heap: an entry that has any is released with
         * ns_entry_done() and duplicated with ns_entry_copy(). */
        uint64_t *mounts;
        unsigned n_mounts;
        NsCgroup *cgroups;
        unsigned n_cgroups;
        NsNetif *netifs;
        unsigned n_netifs;
        /* bpffs instances made with DelegateBpf, and what they delegate
         * together (cmds, maps, progs, attachs: one bit per enum value). */
        unsigned n_bpf;
        uint64_t bpf_masks[NS_BPF_MASKS];
} NsEntry;

const char *ns_kind_to_string(NsKind k);
NsKind ns_kind_from_string(const char *s);  /* -1 (cast) if unknown */

void ns_entry_done(NsEntry *e);
int ns_entry_copy(NsEntry *dst, const NsEntry *src);
bool ns_entry_has_mount(const NsEntry *e, uint64_t mnt_id);
/* -E2BIG past NS_MOUNTS_MAX; the caller checks for duplicates. */
int ns_entry_add_mount(NsEntry *e, uint64_t mnt_id);
/* Appends a copy of *c (path included): -E2BIG past NS_CGROUPS_MAX,
 * -EINVAL for a record registry_entry_to_json() would refuse. */
int ns_entry_add_cgroup(NsEntry *e, const NsCgroup *c);
void ns_entry_remove_cgroup(NsEntry *e, unsigned index);
/* The index of the cgroup with this (non-zero) id, or -1. */
int ns_entry_find_cgroup(const NsEntry *e, uint64_t id);
/* A path that can be recorded (and sent on D-Bus): NS_CGROUP_PATH_MAX bytes
 * at most, starting with '/', valid UTF-8 without control characters. */
bool ns_cgroup_path_is_valid(const char *path);
/* What a record must look like to be written and read back: such a path,
 * whose last part names a directory; an unknown id only for a pending
 * CREATE_CHILD leaf, which always has a parent. */
bool ns_cgroup_is_valid(const NsCgroup *c);

const char *ns_netif_kind_to_string(NsNetifKind k);
/* A name as the kernel takes it and as it can be logged and sent on D-Bus:
 * 1-15 printable ASCII characters, none of them '/', ':' or '%', and not "."
 * or "..". */
bool ns_netif_name_is_valid(const char *name);
bool ns_netif_is_valid(const NsNetif *n);
/* Appends a copy: -E2BIG past NS_NETIFS_MAX, -EINVAL for an invalid record,
 * -EEXIST if its host name is recorded already. */
int ns_entry_add_netif(NsEntry *e, const NsNetif *n);
void ns_entry_remove_netif(NsEntry *e, unsigned index);
/* The index of the link with this host name, or -1. */
int ns_entry_find_netif(const NsEntry *e, const char *host);

/* Serialisation, pure. from_json() returns -EBADMSG for anything malformed,
 * missing or out of range; it never half-fills *ret. "mounts", "cgroups"
 * and "netifs"
 * may be missing (entries written before they could be delegated). */
int registry_entry_to_json(const NsEntry *e, char **ret);
int registry_entry_from_json(const char *text, NsEntry *ret);

typedef struct Registry Registry;

/* Creates the directories with the right modes. */
int registry_open(const char *state_dir, Registry **ret);
Registry *registry_close(Registry *r);

int registry_save(Registry *r, const NsEntry *e);
int registry_remove(Registry *r, const NsEntry *e);

/* Load every entry. For each good file `entry` is called (the entry is
 * released after it returns: copy what is kept); for each corrupt
 * one, the file is moved to quarantine/ and `corrupt` is called with the range
 * from its file name (uid_start/size 0 if even the name is unreadable).
 * Quarantined files from earlier runs are reported through `corrupt` again so
 * their ranges stay reserved. */
typedef struct RegistryLoadCallbacks {
        void (*entry)(const NsEntry *e, void *userdata);
        void (*corrupt)(const char *file, uint32_t uid_start, uint32_t size, void *userdata);
} RegistryLoadCallbacks;
int registry_load(Registry *r, const RegistryLoadCallbacks *cb, void *userdata);

/* Replace the world-readable index atomically. Entries of kind SELF and
 * REGISTERED are left out (they hand out no ids). */
int registry_write_index(Registry *r, const NsEntry *const *entries, size_t n);
/* Add one namespace to the index at once (a rewrite may follow later). */
int registry_append_index(Registry *r, const NsEntry *e);
