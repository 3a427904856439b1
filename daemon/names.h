/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A client-supplied name: 1–16 characters of [A-Za-z0-9_-], not starting with '-'. */
#define NAME_MAX_LEN 16
/* "<uid>-<name>": 10 digits, '-', 16 characters. */
#define QUALIFIED_NAME_MAX (10 + 1 + NAME_MAX_LEN)

bool name_is_valid(const char *name);

/* Turn any string into a valid name derived from it: invalid characters become
 * '_', a leading '-' is dropped, an over-long name keeps its head and gets a
 * short hash of the whole so different long names stay different.
 * ret must hold NAME_MAX_LEN + 1 bytes. -EINVAL if nothing usable remains
 * (empty input). */
int name_mangle(const char *name, char ret[static NAME_MAX_LEN + 1]);

/* The stored name: "<owner>-<name>" for non-root owners, the name as given
 * for root. ret must hold QUALIFIED_NAME_MAX + 1 bytes. */
void name_qualify(uid_t owner, const char *name, char ret[static QUALIFIED_NAME_MAX + 1]);
