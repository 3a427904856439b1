/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Registry files: a corrupt one must be refused, never half-read, and
 * whatever is accepted must be written back unchanged. */

#include <errno.h>

#include "fuzz.h"
#include "registry.h"

static bool cgroups_equal(const NsCgroup *a, const NsCgroup *b) {
        return a->id == b->id && a->parent_id == b->parent_id && a->created == b->created &&
               a->pending == b->pending && strcmp(a->path, b->path) == 0;
}

static bool netifs_equal(const NsNetif *a, const NsNetif *b) {
        return a->kind == b->kind && strcmp(a->host, b->host) == 0 && strcmp(a->inside, b->inside) == 0;
}

static bool entries_equal(const NsEntry *a, const NsEntry *b) {
        if (a->id != b->id || a->inode != b->inode || strcmp(a->name, b->name) != 0 || a->owner != b->owner ||
            a->kind != b->kind || a->uid_start != b->uid_start || a->gid_start != b->gid_start ||
            a->size != b->size || a->target != b->target || a->map_caller != b->map_caller ||
            a->caller_uid != b->caller_uid || a->caller_gid != b->caller_gid || a->pending != b->pending ||
            a->created_usec != b->created_usec || a->handle_type != b->handle_type ||
            a->handle_len != b->handle_len || memcmp(a->handle, b->handle, a->handle_len) != 0 ||
            a->n_mounts != b->n_mounts || a->n_cgroups != b->n_cgroups || a->n_netifs != b->n_netifs ||
            a->n_bpf != b->n_bpf || memcmp(a->bpf_masks, b->bpf_masks, sizeof(a->bpf_masks)) != 0)
                return false;
        for (unsigned i = 0; i < a->n_mounts; i++)
                if (a->mounts[i] != b->mounts[i])
                        return false;
        for (unsigned i = 0; i < a->n_cgroups; i++)
                if (!cgroups_equal(&a->cgroups[i], &b->cgroups[i]))
                        return false;
        for (unsigned i = 0; i < a->n_netifs; i++)
                if (!netifs_equal(&a->netifs[i], &b->netifs[i]))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        NsEntry e, back, copy;
        char *text, *json = NULL, *json_again = NULL;
        int r;

        text = fuzz_text(data, size);
        r = registry_entry_from_json(text, &e);
        free(text);
        FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r < 0)
                return 0;

        /* The entry as the daemon holds it: sanity the rest of the code relies on. */
        FUZZ_CHECK((unsigned) e.kind < _NS_KIND_MAX);
        FUZZ_CHECK(e.size > 0);
        FUZZ_CHECK((uint64_t) e.uid_start + e.size <= (uint64_t) UINT32_MAX + 1);
        FUZZ_CHECK(e.handle_len <= NS_HANDLE_MAX);
        FUZZ_CHECK(e.n_mounts <= NS_MOUNTS_MAX && e.n_cgroups <= NS_CGROUPS_MAX && e.n_netifs <= NS_NETIFS_MAX);
        FUZZ_CHECK(e.n_bpf <= NS_BPF_MAX);
        for (unsigned i = 0; i < e.n_cgroups; i++)
                FUZZ_CHECK(ns_cgroup_is_valid(&e.cgroups[i]));
        for (unsigned i = 0; i < e.n_netifs; i++)
                FUZZ_CHECK(ns_netif_is_valid(&e.netifs[i]));

        /* Round trip: written back, read again, the same entry and the same text. */
        FUZZ_CHECK(registry_entry_to_json(&e, &json) == 0);
        FUZZ_CHECK(registry_entry_from_json(json, &back) == 0);
        FUZZ_CHECK(entries_equal(&e, &back));
        FUZZ_CHECK(registry_entry_to_json(&back, &json_again) == 0);
        FUZZ_CHECK(strcmp(json, json_again) == 0);

        FUZZ_CHECK(ns_entry_copy(&copy, &e) == 0);
        FUZZ_CHECK(entries_equal(&e, &copy));

        ns_entry_done(&copy);
        ns_entry_done(&back);
        ns_entry_done(&e);
        free(json_again);
        free(json);
        return 0;
}
