/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dirent.h>
#include <sys/types.h>

/* Reads until buf holds size bytes or the file ends, retrying after EINTR.
 * Returns the number of bytes read, or -errno. */
ssize_t read_full(int fd, void *buf, size_t size);

/* The next entry of d other than "." and "..". Returns 1 with *ret_entry set,
 * 0 at the end of the directory, or -errno if reading it failed. */
int read_dir_entry(DIR *d, struct dirent **ret_entry);
