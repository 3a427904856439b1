/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "names.h"

/* Head kept from an over-long name: head + '-' + 4 hex digits = NAME_MAX_LEN. */
#define NAME_MANGLE_HEAD (NAME_MAX_LEN - 5)

static bool name_char_is_valid(char c) {
        return (c >= 'a' && c <= 'z') ||
               (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

bool name_is_valid(const char *name) {
        size_t n;

        if (!name || name[0] == '\0' || name[0] == '-')
                return false;

        for (n = 0; name[n] != '\0'; n++) {
                if (n >= NAME_MAX_LEN)
                        return false;
                if (!name_char_is_valid(name[n]))
                        return false;
        }

        return true;
}

static uint32_t fnv1a32(const char *s) {
        uint32_t h = UINT32_C(2166136261);

        for (; *s != '\0'; s++) {
                h ^= (unsigned char) *s;
                h *= UINT32_C(16777619);
        }
        return h;
}

int name_mangle(const char *name, char ret[static NAME_MAX_LEN + 1]) {
        char buf[NAME_MAX_LEN + 1];
        bool in_multibyte = false;
        size_t n = 0;

        if (!name)
                return -EINVAL;

        for (const char *p = name; *p != '\0'; p++) {
                unsigned char b = (unsigned char) *p;
                char c;

                /* One '_' per UTF-8 character rather than per byte, so a
                 * non-ASCII name keeps as much of its shape as it can. */
                if (in_multibyte && b >= 0x80 && b < 0xc0)
                        continue;
                in_multibyte = b >= 0x80;

                c = *p;
                if (!name_char_is_valid(c))
                        c = '_';
                if (n == 0 && c == '-')
                        continue;

                if (n < NAME_MAX_LEN)
                        buf[n] = c;
                n++;
        }

        if (n == 0)
                return -EINVAL;

        if (n > NAME_MAX_LEN) {
                uint32_t h = fnv1a32(name);

                /* The hash covers the raw input, so names that differ only
                 * after the head, or only in characters that all became
                 * '_', still end up different. */
                snprintf(buf + NAME_MANGLE_HEAD, sizeof(buf) - NAME_MANGLE_HEAD, "-%04x",
                         (unsigned) ((h >> 16) ^ (h & 0xffff)));
                n = NAME_MAX_LEN;
        }
        buf[n] = '\0';

        memcpy(ret, buf, n + 1);
        return 0;
}

void name_qualify(uid_t owner, const char *name, char ret[static QUALIFIED_NAME_MAX + 1]) {
        if (owner == 0)
                snprintf(ret, QUALIFIED_NAME_MAX + 1, "%s", name);
        else
                snprintf(ret, QUALIFIED_NAME_MAX + 1, "%u-%s", (unsigned) owner, name);
}
