/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "registry.h"
#include "restrict.h"
#include "state.h"
#include "track.h"
#include "userns.h"
#include "util.h"

/* What a daemon writes into the state directory besides registry/ (see
 * registry.h and netif.h): the NSS index, its temporary file, the key of
 * link names. */
static const char *const state_files[] = { "index", "index.tmp", "netif.key" };

int state_lock(const char *state_dir, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

typedef struct Survey {
        const char *state_dir;
        int nsfs_fd;
        unsigned live, unknown, dead;
} Survey;

static void survey_heading(const Survey *s) {
        if (s->live + s->unknown == 1)
                fprintf(stderr, "nsresd: namespaces of the registry under '%s' that may be alive:\n", s->state_dir);
}

/* The same proof the daemon's start-up sweep takes: the stored nsfs handle
 * opens while the namespace lives and is stale once it is gone. */
static void survey_entry(const NsEntry *e, void *userdata) {
        Survey *s = userdata;
        int r;

        r = userns_is_alive(s->nsfs_fd, e->handle_type, e->handle, e->handle_len);
        if (r == 0) {
                s->dead++;
                return;
        }
        if (r > 0)
                s->live++;
        else
                s->unknown++;
        survey_heading(s);
        fprintf(stderr, "  '%s': uids %" PRIu32 "+%" PRIu32 ", owner %u, ns id %" PRIu64 "%s\n", e->name,
                e->uid_start, e->size, (unsigned) e->owner, e->id,
                r > 0 ? "" : " (cannot tell whether it lives)");
}

static void survey_corrupt(const char *file, uint32_t uid_start, uint32_t size, void *userdata) {
        Survey *s = userdata;

        /* Its namespace cannot be looked at; the daemon keeps its range until
         * the next boot, and so does a cleanup that is not forced. */
        s->unknown++;
        survey_heading(s);
        fprintf(stderr, "  corrupt registry file '%s': uids %" PRIu32 "+%" PRIu32 " (cannot tell whether its "
                "namespace lives)\n", file, uid_start, size);
}

/* Removes the regular files of dir_fd/name and the directory: the count of
 * what went in *removed. Only the daemon makes directories in its state
 * directory, one level below registry/. NOLINTNEXTLINE(misc-no-recursion) */
static int remove_flat_dir(int dir_fd, const char *name, unsigned *removed) {
        _cleanup_close_ int fd = -EBADF;
        struct dirent *de;
        DIR *d;
        int r = 0;

        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (de->d_type == DT_DIR) {
                        int k = remove_flat_dir(dirfd(d), de->d_name, removed);

                        if (k < 0 && r == 0)
                                r = k;
                        continue;
                }
                if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
                        if (errno != ENOENT && r == 0)
                                r = -errno;
                        continue;
                }
                (*removed)++;
        }
        closedir(d);
        if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0)
                return errno == ENOENT ? r : (r < 0 ? r : -errno);
        (*removed)++;
        return r;
}

static int remove_state(const char *state_dir, int state_fd, unsigned *removed) {
        struct dirent *de;
        DIR *d;
        int r, k;

        r = remove_flat_dir(state_fd, "registry", removed);
        for (size_t i = 0; i < ELEMENTSOF(state_files); i++) {
                if (unlinkat(state_fd, state_files[i], 0) >= 0)
                        (*removed)++;
                else if (errno != ENOENT && r == 0)
                        r = -errno;
        }
        /* The key's temporary files (".netif.key.<random>") of a daemon that
         * died while writing it. */
        k = openat(state_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (k < 0)
                return r < 0 ? r : -errno;
        d = fdopendir(k);
        if (!d) {
                close(k);
                return r < 0 ? r : -errno;
        }
        while ((de = readdir(d)))
                if (strncmp(de->d_name, ".netif.key.", 11) == 0 && unlinkat(state_fd, de->d_name, 0) >= 0)
                        (*removed)++;
        closedir(d);

        /* Anything else in there is not ours: the directory stays then. */
        if (rmdir(state_dir) >= 0)
                (*removed)++;
        else if (errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST && r == 0)
                r = -errno;
        return r;
}

int state_cleanup(const char *state_dir, const char *bpf_dir, bool force) {
        _cleanup_close_ int state_fd = -EBADF, nsfs_fd = -EBADF;
        Survey survey = { .state_dir = state_dir, .nsfs_fd = -EBADF };
        unsigned removed = 0;
        struct stat st;
        bool had_pins;
        int r;

        r = state_lock(state_dir, &state_fd);
        if (r == -EBUSY) {
                fprintf(stderr, "nsresd: an nsresd is running on '%s' (it holds the directory's lock): stop it "
                        "first\n", state_dir);
                return r;
        }
        if (r < 0 && r != -ENOENT) {
                errno = -r;
                fprintf(stderr, "nsresd: cannot open the state directory '%s': %m\n", state_dir);
                return r;
        }

        if (state_fd >= 0 && faccessat(state_fd, "registry", F_OK, AT_SYMLINK_NOFOLLOW) >= 0) {
                Registry *registry = NULL;

                nsfs_fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
                if (nsfs_fd < 0) {
                        fprintf(stderr, "nsresd: cannot open our own user namespace: %m\n");
                        return -errno;
                }
                survey.nsfs_fd = nsfs_fd;
                r = registry_open(state_dir, &registry);
                if (r >= 0) {
                        r = registry_load(registry, &(RegistryLoadCallbacks) {
                                                  .entry = survey_entry,
                                                  .corrupt = survey_corrupt,
                                          }, &survey);
                        registry_close(registry);
                }
                if (r < 0) {
                        errno = -r;
                        fprintf(stderr, "nsresd: cannot read the registry under '%s': %m\n", state_dir);
                        return r;
                }
                if (survey.live + survey.unknown > 0 && !force) {
                        fprintf(stderr, "nsresd: refusing to clean up: the %u namespaces listed above may be alive "
                                "(%u proven dead); their ranges would be handed out again after a new start. "
                                "End them first, or pass --force\n", survey.live + survey.unknown, survey.dead);
                        return -EBUSY;
                }
                if (survey.live + survey.unknown > 0)
                        fprintf(stderr, "nsresd: --force: removing the state of %u namespaces that may be alive; "
                                "nothing tracks or restricts them any more\n", survey.live + survey.unknown);
        }

        had_pins = stat(bpf_dir, &st) >= 0;
        /* Links first, inside each: the programs detach before their maps go. */
        r = tracker_unpin(bpf_dir);
        if (r >= 0)
                r = restrictor_unpin(bpf_dir);
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "nsresd: failed to remove the BPF pins under '%s': %m\n", bpf_dir);
                return r;
        }
        if (had_pins && stat(bpf_dir, &st) < 0) {
                printf("Removed the BPF pins under '%s'\n", bpf_dir);
                removed++;
        } else if (had_pins)
                printf("Removed nsresd's BPF pins under '%s'; the directory holds other files and stays\n", bpf_dir);

        if (state_fd >= 0) {
                unsigned n = 0;

                r = remove_state(state_dir, state_fd, &n);
                if (r < 0) {
                        errno = -r;
                        fprintf(stderr, "nsresd: failed to remove the state under '%s': %m\n", state_dir);
                        return r;
                }
                if (n > 0)
                        printf("Removed the state under '%s' (%u files and directories)\n", state_dir, n);
                removed += n;
        }

        if (removed == 0)
                printf("Nothing to remove: no BPF pins under '%s', no state under '%s'\n", bpf_dir, state_dir);
        return 0;
}
