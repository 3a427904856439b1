/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <bpf/btf.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bpftoken.h"
#include "util.h"

#ifndef ANON_INODE_FS_MAGIC
#define ANON_INODE_FS_MAGIC 0x09041934
#endif

/* Well above what any of the four enums has (bpf_attach_type: ~60). */
#define BPF_NAMES_MAX 128
#define BPF_NAME_MAX 48

typedef struct BpfName {
        char name[BPF_NAME_MAX];
        unsigned value;
} BpfName;

typedef struct BpfNameTable {
        const char *option;     /* mount option without "delegate_" */
        const char *enum_name;
        const char *prefix;
        BpfName names[BPF_NAMES_MAX];
        unsigned n;
} BpfNameTable;

static BpfNameTable tables[_BPF_DELEGATE_KIND_MAX] = {
        [BPF_DELEGATE_CMDS] = { "cmds", "bpf_cmd", "BPF_" },
        [BPF_DELEGATE_MAPS] = { "maps", "bpf_map_type", "BPF_MAP_TYPE_" },
        [BPF_DELEGATE_PROGS] = { "progs", "bpf_prog_type", "BPF_PROG_TYPE_" },
        [BPF_DELEGATE_ATTACHS] = { "attachs", "bpf_attach_type", "BPF_" },
};
static int tables_loaded;       /* 0: not yet, 1: loaded, < 0: -errno of the attempt */

const char *bpf_delegate_kind_to_string(BpfDelegateKind k) {
        if ((unsigned) k >= _BPF_DELEGATE_KIND_MAX)
                return NULL;
        return tables[k].option;
}

static void table_fill(BpfNameTable *t, const struct btf *btf) {
        const struct btf_type *type;
        const struct btf_enum *e;
        int id;

        id = btf__find_by_name_kind(btf, t->enum_name, BTF_KIND_ENUM);
        if (id < 0)
                return;
        type = btf__type_by_id(btf, id);
        e = btf_enum(type);
        for (unsigned i = 0; i < btf_vlen(type) && t->n < BPF_NAMES_MAX; i++, e++) {
                const char *name = btf__name_by_offset(btf, e->name_off);
                size_t prefix = strlen(t->prefix), len;
                BpfName *n = &t->names[t->n];

                /* __MAX_BPF_CMD and the like are counts, not values. */
                if (!name || strncmp(name, t->prefix, prefix) != 0 || e->val < 0 || e->val >= 64)
                        continue;
                len = strlen(name + prefix);
                if (len == 0 || len >= sizeof(n->name))
                        continue;
                for (size_t k = 0; k <= len; k++)
                        n->name[k] = (char) tolower((unsigned char) name[prefix + k]);
                n->value = (unsigned) e->val;
                t->n++;
        }
}

static int tables_load(void) {
        struct btf *btf;

        if (tables_loaded != 0)
                return tables_loaded < 0 ? tables_loaded : 0;

        btf = btf__load_vmlinux_btf();
        if (!btf) {
                tables_loaded = errno > 0 ? -errno : -ENOENT;
                return tables_loaded;
        }
        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                table_fill(&tables[k], btf);
        btf__free(btf);
        tables_loaded = 1;
        return 0;
}

int bpf_delegate_name_to_value(BpfDelegateKind kind, const char *name, unsigned *ret) {
        const BpfNameTable *t;
        int r;

        if ((unsigned) kind >= _BPF_DELEGATE_KIND_MAX)
                return -EINVAL;
        r = tables_load();
        if (r < 0)
                return r;
        t = &tables[kind];
        if (t->n == 0)
                return -EOPNOTSUPP;
        for (unsigned i = 0; i < t->n; i++)
                if (strcmp(t->names[i].name, name) == 0) {
                        *ret = t->names[i].value;
                        return 0;
                }
        return -EINVAL;
}

int bpf_delegation_from_names(char **names[_BPF_DELEGATE_KIND_MAX], BpfDelegation *ret,
                              BpfDelegateKind *ret_bad_kind, const char **ret_bad_name) {
        BpfDelegation d = {};

        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++)
                for (char **n = names[k]; n && *n; n++) {
                        unsigned value;
                        int r;

                        if (strcmp(*n, "any") == 0) {
                                d.mask[k] = BPF_DELEGATE_ANY;
                                continue;
                        }
                        r = bpf_delegate_name_to_value(k, *n, &value);
                        if (r == -EINVAL) {
                                *ret_bad_kind = k;
                                *ret_bad_name = *n;
                        }
                        if (r < 0)
                                return r;
                        d.mask[k] |= UINT64_C(1) << value;
                }
        *ret = d;
        return 0;
}

char *bpf_delegate_mask_to_string(BpfDelegateKind kind, uint64_t mask) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        if ((unsigned) kind >= _BPF_DELEGATE_KIND_MAX)
                return NULL;
        if (mask == BPF_DELEGATE_ANY)
                return strdup("any");
        (void) tables_load();

        f = open_memstream(&text, &size);
        if (!f)
                return NULL;
        for (unsigned bit = 0; bit < 64; bit++) {
                const char *name = NULL;

                if (!(mask & (UINT64_C(1) << bit)))
                        continue;
                for (unsigned i = 0; i < tables[kind].n && !name; i++)
                        if (tables[kind].names[i].value == bit)
                                name = tables[kind].names[i].name;
                if (ftell(f) > 0)
                        fputc(':', f);
                if (name)
                        fputs(name, f);
                else
                        fprintf(f, "%u", bit);
        }
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(text);
}

bool fd_is_fs_context(int fd) {
        struct statfs sfs;

        if (fstatfs(fd, &sfs) < 0 || (unsigned long) sfs.f_type != ANON_INODE_FS_MAGIC)
                return false;
        return fd_is_anon_inode(fd, "[fscontext]");
}

/* The last error the kernel logged on the context ("e bpf: ..."), if any. */
static char *fs_context_reason(int fs_fd) {
        char line[512], *reason = NULL;
        ssize_t n;

        /* Each read() returns one message, until there are none (ENODATA). */
        for (unsigned i = 0; i < 64; i++) {
                n = read(fs_fd, line, sizeof(line) - 1);
                if (n <= 0)
                        break;
                line[n] = '\0';
                if (line[n - 1] == '\n')
                        line[n - 1] = '\0';
                if (line[0] == 'e' && line[1] == ' ') {
                        free(reason);
                        reason = strdup(line + 2);
                }
        }
        return reason;
}

static int fail(int fs_fd, int r, const char *what, char **ret_reason) {
        _cleanup_free_ char *kernel = NULL;

        if (ret_reason) {
                kernel = fs_context_reason(fs_fd);
                if (asprintf(ret_reason, "%s: %s%s%s%s", what, strerror(-r), kernel ? " (" : "",
                             kernel ? kernel : "", kernel ? ")" : "") < 0)
                        *ret_reason = NULL;
        }
        return r;
}

int bpffs_make_mount(int fs_fd, const BpfDelegation *d, uid_t uid, gid_t gid, int *ret_mount_fd,
                     char **ret_reason) {
        char value[32], option[32];
        int mount_fd;

        for (unsigned k = 0; k < _BPF_DELEGATE_KIND_MAX; k++) {
                if (d->mask[k] == 0)
                        continue;
                /* Numbers: the names were checked against this kernel's BTF,
                 * and masks mean the same to every kernel with tokens. */
                if (d->mask[k] == BPF_DELEGATE_ANY)
                        snprintf(value, sizeof(value), "any");
                else
                        snprintf(value, sizeof(value), "0x%" PRIx64, d->mask[k]);
                snprintf(option, sizeof(option), "delegate_%s", tables[k].option);
                if (fsconfig(fs_fd, FSCONFIG_SET_STRING, option, value, 0) < 0)
                        return fail(fs_fd, -errno, option, ret_reason);
        }
        /* Owned by the namespace's first ids, not by root of the host: the
         * namespace pins its objects there. */
        snprintf(value, sizeof(value), "%u", (unsigned) uid);
        if (fsconfig(fs_fd, FSCONFIG_SET_STRING, "uid", value, 0) < 0)
                return fail(fs_fd, -errno, "uid", ret_reason);
        snprintf(value, sizeof(value), "%u", (unsigned) gid);
        if (fsconfig(fs_fd, FSCONFIG_SET_STRING, "gid", value, 0) < 0)
                return fail(fs_fd, -errno, "gid", ret_reason);

        if (fsconfig(fs_fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return fail(fs_fd, -errno, "creating the bpffs instance", ret_reason);
        mount_fd = fsmount(fs_fd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (mount_fd < 0)
                return fail(fs_fd, -errno, "mounting the bpffs instance", ret_reason);
        *ret_mount_fd = mount_fd;
        return 0;
}
