/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The NSS module's reading of the daemon's index, and the passwd and group
 * entries it makes from it. The module reads only the fixed index path, so
 * its source is compiled in here whole and its line parser called directly:
 * the module itself stays exactly what is installed. */

#include "nss-nsresd.c"

#include "fuzz.h"

/* Makes the user and group entries of id uid_start + k with a buffer of
 * exactly buflen bytes: either they fit and say what the index says, or the
 * caller is asked for a larger buffer. */
static void check_fill(const IndexEntry *e, uint32_t k, size_t buflen) {
        char made[USER_NAME_MAX + 1], *buffer;
        struct passwd pw;
        struct group gr;
        enum nss_status s;
        int err = 0;

        FUZZ_CHECK(format_user_name(e->name, k, made) > 0);
        buffer = malloc(buflen > 0 ? buflen : 1);
        FUZZ_CHECK(buffer);

        s = fill_passwd(e, k, &pw, buffer, buflen, &err);
        if (s == NSS_STATUS_SUCCESS) {
                FUZZ_CHECK(strcmp(pw.pw_name, made) == 0);
                FUZZ_CHECK(pw.pw_uid == e->uid_start + k && pw.pw_gid == pw.pw_uid);
                FUZZ_CHECK(pw.pw_shell >= buffer && pw.pw_shell + strlen(pw.pw_shell) < buffer + buflen);
        } else
                FUZZ_CHECK(s == NSS_STATUS_TRYAGAIN && err == ERANGE);

        s = fill_group(e, k, &gr, buffer, buflen, &err);
        if (s == NSS_STATUS_SUCCESS) {
                FUZZ_CHECK(strcmp(gr.gr_name, made) == 0);
                FUZZ_CHECK(gr.gr_gid == e->uid_start + k && gr.gr_mem[0] == NULL);
        } else
                FUZZ_CHECK(s == NSS_STATUS_TRYAGAIN && err == ERANGE);

        free(buffer);
}

/* A line the module believes names a real range, and the names it makes for
 * that range lead back to it. */
static void check_entry(const IndexEntry *e, size_t buflen) {
        uint32_t offsets[] = { 0, e->size - 1 };

        FUZZ_CHECK(e->size > 0 && (uint64_t) e->uid_start + e->size <= UINT32_MAX);
        FUZZ_CHECK(namespace_name_ok(e->name, strlen(e->name)));

        for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
                char made[USER_NAME_MAX + 1];
                IndexQuery by_name, by_id = { .id = e->uid_start + offsets[i] };

                FUZZ_CHECK(format_user_name(e->name, offsets[i], made) > 0);
                FUZZ_CHECK(parse_user_name(made, &by_name));
                FUZZ_CHECK(by_name.offset == offsets[i] && by_name.name_len == strlen(e->name));
                FUZZ_CHECK(entry_matches(e, &by_name));
                FUZZ_CHECK(name_round_trips(made, e, offsets[i]));
                FUZZ_CHECK(entry_matches(e, &by_id));
                check_fill(e, offsets[i], buflen);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *p = data, *end = data + size;
        IndexQuery q;
        size_t buflen;
        char *text;

        if (size == 0)
                return 0;
        /* The first byte picks the caller's buffer size. */
        buflen = data[0];

        /* Lines as index_find() cuts them: a newline ends each, and one
         * longer than any the daemon writes is skipped unread. */
        while (p < end) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n;
                char *line;
                IndexEntry e;

                if (!nl)
                        break;
                n = (size_t) (nl - p);
                if (n <= INDEX_LINE_MAX) {
                        /* Exactly the line's bytes: the parser takes a length, not a NUL. */
                        line = malloc(n > 0 ? n : 1);
                        FUZZ_CHECK(line);
                        memcpy(line, p, n);
                        if (parse_index_line(line, n, &e))
                                check_entry(&e, buflen);
                        free(line);
                }
                p = nl + 1;
        }

        /* The whole input as a name asked for with getpwnam(). */
        text = fuzz_text(data, size);
        if (parse_user_name(text, &q)) {
                FUZZ_CHECK(q.by_name && q.name == text + strlen(USER_PREFIX));
                FUZZ_CHECK(namespace_name_ok(q.name, q.name_len));
        }
        free(text);
        return 0;
}
