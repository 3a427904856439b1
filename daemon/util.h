/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void closep(const int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* Hand over ownership: returns the value and resets the variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define TAKE_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Strict decimal of the len characters at s: digits only, no sign, no
 * spaces, at most 10 of them. -EINVAL if malformed, -ERANGE above 32 bits. */
int parse_decimal_u32(const char *s, size_t len, uint32_t *ret);

bool has_suffix(const char *s, const char *suffix);

/* Whether fd is an anonymous inode file of this name ("bpf-link",
 * "[fscontext]"), as /proc/self/fd shows it. */
bool fd_is_anon_inode(int fd, const char *name);

/* Whether the comma-separated list (such as the active LSMs) has name. */
bool comma_list_has(const char *list, const char *name);

/* Whether pidfd_open() and pidfd_send_signal() work (Linux 5.3; valgrind
 * 3.19 answers ENOSYS to both). Probed at the first call, then remembered. */
bool pidfd_supported(void);
