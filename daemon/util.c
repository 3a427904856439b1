/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include "util.h"

int parse_decimal_u32(const char *s, size_t len, uint32_t *ret) {
        uint64_t v = 0;

        if (len == 0 || len > 10)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

bool has_suffix(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool fd_is_anon_inode(int fd, const char *name) {
        char path[sizeof("/proc/self/fd/") + 12], target[64];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = '\0';
        return strncmp(target, "anon_inode:", 11) == 0 && strcmp(target + 11, name) == 0;
}

bool comma_list_has(const char *list, const char *name) {
        size_t len = strlen(name);

        for (const char *p = list; *p; ) {
                size_t n = strcspn(p, ",");

                if (n == len && strncmp(p, name, len) == 0)
                        return true;
                p += n;
                if (*p == ',')
                        p++;
        }
        return false;
}

bool pidfd_supported(void) {
        static int cached = -1;

        if (cached < 0) {
                int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);

                cached = fd >= 0 && syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) >= 0;
                if (fd >= 0)
                        close(fd);
        }
        return cached;
}
