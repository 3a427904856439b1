/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bpf-util.h"
#include "log.h"
#include "util.h"

static int libbpf_log(enum libbpf_print_level level, const char *format, va_list ap) {
        _cleanup_free_ char *msg = NULL;
        size_t n;

        /* libbpf reports every step at info/debug level; only its warnings
         * (verifier log, refused pins) help someone reading our log. */
        if (level > LIBBPF_WARN)
                return 0;

        /* Not a fixed buffer: a verifier log runs to kilobytes and its end
         * says what was refused. */
        if (vasprintf(&msg, format, ap) < 0)
                return 0;
        n = strlen(msg);
        while (n > 0 && msg[n - 1] == '\n')
                msg[--n] = '\0';
        log_warning("libbpf: %s", msg);
        return 0;
}

void bpf_log_to_daemon_log(void) {
        libbpf_set_print(libbpf_log);
}

int bpf_pin_dir_prepare(const char *bpf_dir, const char *subdir, char **ret_pin_dir) {
        _cleanup_free_ char *pin_dir = NULL;
        struct statfs sfs;

        if (statfs(bpf_dir, &sfs) < 0) {
                _cleanup_free_ char *parent = NULL;
                char *slash;

                if (errno != ENOENT)
                        return -errno;

                /* Only create it on bpffs: a directory left on the file
                 * system underneath would hide the missing mount. */
                parent = strdup(bpf_dir);
                if (!parent)
                        return -ENOMEM;
                slash = strrchr(parent, '/');
                if (!slash)
                        return 0;
                if (slash == parent)
                        slash[1] = '\0';
                else
                        *slash = '\0';
                if (statfs(parent, &sfs) < 0)
                        return errno == ENOENT ? 0 : -errno;
                if (sfs.f_type != BPF_FS_MAGIC)
                        return 0;
                if (mkdir(bpf_dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
        } else if (sfs.f_type != BPF_FS_MAGIC)
                return 0;

        if (asprintf(&pin_dir, "%s/%s", bpf_dir, subdir) < 0)
                return -ENOMEM;
        if (mkdir(pin_dir, 0700) < 0 && errno != EEXIST)
                return -errno;

        *ret_pin_dir = TAKE_PTR(pin_dir);
        return 1;
}

bool bpf_fd_is_link(int fd) {
        return fd_is_anon_inode(fd, "bpf-link");
}

int bpf_map_stale_keys(int fd, bool (*keep)(uint64_t key, void *userdata), void *userdata, KeyList *stale) {
        uint64_t key, next;
        int r;

        for (r = bpf_map_get_next_key(fd, NULL, &next); r >= 0; r = bpf_map_get_next_key(fd, &key, &next)) {
                key = next;
                if (keep(key, userdata))
                        continue;
                if (stale->n == stale->allocated) {
                        size_t k = stale->allocated ? stale->allocated * 2 : 64;
                        uint64_t *p = realloc(stale->keys, k * sizeof(uint64_t));

                        if (!p)
                                return -ENOMEM;
                        stale->keys = p;
                        stale->allocated = k;
                }
                stale->keys[stale->n++] = key;
        }
        return r == -ENOENT ? 0 : r;
}
