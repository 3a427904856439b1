/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * "nsresctl bwrap": an unmodified, non-setuid bubblewrap whose sandbox gets
 * a 64K range from nsresd. bwrap makes the user namespace and, told to with
 * --userns-block-fd, waits with its maps empty while nsresd writes them.
 */

#include <stdbool.h>

typedef struct BwrapArgs {
        const char *name;       /* of the namespace */
        bool mangle_name;       /* NAME is ours, not the user's: let the service fix it up */
        char **args;            /* bwrap's options and the command, as the user gave them */
        bool ask_password;      /* polkit may ask interactively */
        bool verbose;           /* report the allocation on stderr */
} BwrapArgs;

/* Returns the exit status: bwrap's own, or 1 if the sandbox could not be
 * set up (bwrap and its child are then gone). */
int bwrap_run(const BwrapArgs *a);
