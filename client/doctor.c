/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "build-config.h"
#include "config.h"
#include "doctor.h"
#include "util.h"

#define SERVICE_NAME "org.freedesktop.NamespaceResource1"
#define MANAGER_PATH "/org/freedesktop/NamespaceResource1"
#define MANAGER_INTERFACE "org.freedesktop.NamespaceResource1.Manager"

#define CONFIG_PATH NSRESD_SYSCONFDIR "/nsresd/nsresd.conf"
#define SECURITYFS_DIR "/sys/kernel/security"
#define LSM_LIST SECURITYFS_DIR "/lsm"
#define BTF_VMLINUX "/sys/kernel/btf/vmlinux"
#define BPFFS_DIR "/sys/fs/bpf"
#define SYSCTL_USERNS_CLONE "/proc/sys/kernel/unprivileged_userns_clone"
#define SYSCTL_APPARMOR_USERNS "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
#define SYSCTL_MAX_USERNS "/proc/sys/user/max_user_namespaces"
/* systemd-nsresourced's Varlink socket (units/systemd-nsresourced.socket)
 * and the registry it keeps of the ranges it handed out. */
#define NSRESOURCED_SOCKET "/run/systemd/io.systemd.NamespaceResource"
#define NSRESOURCED_REGISTRY "/run/systemd/nsresource/registry"
#define SYSCTL_DROPIN "/etc/sysctl.d/50-nsresd.conf"

#define POOL_BLOCK_SIZE 65536u
/* Below this, a handful of containers with nested sandboxes exhausts it. */
#define MAX_USERNS_LOW 1024u
/* Overlapping subid lines named one by one before "and N more". */
#define SUBID_LINES_SHOWN 8u

#define DAEMON_CALL_TIMEOUT_USEC (5ULL * 1000000ULL)

typedef struct Doctor {
        DoctorReport report;
        bool oom;

        /* The running daemon, when it answered. */
        bool daemon_answered;
        char *daemon_absent;    /* why not: the reason daemon-facing checks are skipped */
        char *restriction;
        char *teardown_tracking;
        uint32_t range_start, range_end;

        /* The configuration a start of nsresd would read. */
        Config config;
        bool config_valid;
} Doctor;

static const char *const status_names[_CHECK_STATUS_MAX] = {
        [CHECK_OK] = "ok",
        [CHECK_WARN] = "warn",
        [CHECK_FAIL] = "fail",
        [CHECK_SKIPPED] = "skipped",
};

const char *check_status_to_string(CheckStatus s) {
        return s >= 0 && s < _CHECK_STATUS_MAX ? status_names[s] : NULL;
}

static void add_check(Doctor *d, const char *id, CheckStatus status, const char *fix, const char *format, ...)
        __attribute__((format(printf, 5, 6)));
static void add_check(Doctor *d, const char *id, CheckStatus status, const char *fix, const char *format, ...) {
        _cleanup_free_ char *message = NULL, *fix_copy = NULL;
        Check *grown;
        va_list ap;

        if (d->oom)
                return;

        va_start(ap, format);
        if (vasprintf(&message, format, ap) < 0)
                message = NULL;
        va_end(ap);
        if (fix)
                fix_copy = strdup(fix);
        grown = reallocarray(d->report.checks, d->report.n_checks + 1, sizeof(Check));
        if (!message || (fix && !fix_copy) || !grown) {
                if (grown)
                        d->report.checks = grown;
                d->oom = true;
                return;
        }
        d->report.checks = grown;
        d->report.checks[d->report.n_checks++] = (Check) {
                .id = id,
                .status = status,
                .message = TAKE_PTR(message),
                .fix = TAKE_PTR(fix_copy),
        };
}

/* The first line, without its newline. */
static int read_first_line(const char *path, char **ret) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        ssize_t n;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = getline(&line, &size, f);
        if (n < 0)
                return ferror(f) ? -EIO : -ENODATA;
        line[strcspn(line, "\n")] = '\0';
        *ret = TAKE_PTR(line);
        return 0;
}

static int read_sysctl_u32(const char *path, uint32_t *ret) {
        _cleanup_free_ char *line = NULL;
        int r;

        r = read_first_line(path, &line);
        if (r < 0)
                return r;
        return parse_decimal_u32(line, strlen(line), ret);
}

/* Where securityfs is not mounted, root can still read the active list: from
 * a mount of its own in a mount namespace of its own, which the host never
 * sees. */
static int read_lsm_list_privately(char **ret) {
        _cleanup_close_ int read_fd = -1, write_fd = -1;
        char buf[512];
        int pipe_fds[2], status;
        ssize_t n;
        pid_t pid;

        if (pipe2(pipe_fds, O_CLOEXEC) < 0)
                return -errno;
        read_fd = pipe_fds[0];
        write_fd = pipe_fds[1];

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                _cleanup_close_ int fd = -1;

                if (unshare(CLONE_NEWNS) < 0 ||
                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount("securityfs", SECURITYFS_DIR, "securityfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                        _exit(EXIT_FAILURE);
                fd = open(LSM_LIST, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        _exit(EXIT_FAILURE);
                n = read(fd, buf, sizeof(buf) - 1);
                if (n <= 0 || write(write_fd, buf, (size_t) n) != n)
                        _exit(EXIT_FAILURE);
                _exit(EXIT_SUCCESS);
        }

        close(TAKE_FD(write_fd));
        n = 0;
        for (;;) {
                ssize_t k = read(read_fd, buf + n, sizeof(buf) - 1 - (size_t) n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                n += k;
                if ((size_t) n >= sizeof(buf) - 1)
                        break;
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n <= 0)
                return -EPERM;

        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* The value of the last lsm= before "--" (what follows is init's). */
static int read_cmdline_lsm(char **ret) {
        _cleanup_free_ char *cmdline = NULL, *found = NULL;
        char *saveptr = NULL;
        int r;

        r = read_first_line("/proc/cmdline", &cmdline);
        if (r < 0)
                return r;

        for (char *word = strtok_r(cmdline, " \t", &saveptr); word; word = strtok_r(NULL, " \t", &saveptr)) {
                if (strcmp(word, "--") == 0)
                        break;
                if (strncmp(word, "lsm=", 4) != 0)
                        continue;
                free(found);
                found = strdup(word + 4);
                if (!found)
                        return -ENOMEM;
        }
        if (!found)
                return -ENOENT;
        *ret = TAKE_PTR(found);
        return 0;
}

/* A CONFIG_ option of the running kernel from /boot/config-$(uname -r):
 * its value with quotes removed, "" if "is not set". */
static int read_kernel_config(const char *option, char **ret_path, char **ret_value) {
        _cleanup_free_ char *path = NULL, *line = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        struct utsname u;
        size_t size = 0, len = strlen(option);

        if (uname(&u) < 0)
                return -errno;
        if (asprintf(&path, "/boot/config-%s", u.release) < 0)
                return -ENOMEM;

        f = fopen(path, "re");
        if (!f) {
                int r = -errno;

                if (ret_path)
                        *ret_path = TAKE_PTR(path);
                return r;
        }

        while (getline(&line, &size, f) >= 0) {
                char *value;

                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, option, len) == 0 && line[len] == '=')
                        value = line + len + 1;
                else if (strncmp(line, "# ", 2) == 0 && strncmp(line + 2, option, len) == 0 &&
                         strcmp(line + 2 + len, " is not set") == 0)
                        value = line + 2 + len + strlen(" is not set");
                else
                        continue;

                if (value[0] == '"') {
                        value++;
                        value[strcspn(value, "\"")] = '\0';
                }
                *ret_value = strdup(value);
                if (!*ret_value)
                        return -ENOMEM;
                if (ret_path)
                        *ret_path = TAKE_PTR(path);
                return 0;
        }
        if (ret_path)
                *ret_path = TAKE_PTR(path);
        return -ENOENT;
}

static void check_lsm(Doctor *d) {
        _cleanup_free_ char *list = NULL, *source = NULL, *fix = NULL, *config_path = NULL, *bpf_lsm = NULL;
        bool built_without = false;
        int r;

        r = read_first_line(LSM_LIST, &list);
        if (r >= 0)
                source = strdup("the active LSM list (" LSM_LIST ")");
        else if (r == -ENOENT) {
                if (geteuid() == 0 && read_lsm_list_privately(&list) >= 0)
                        source = strdup("the active LSM list (securityfs is not mounted at " SECURITYFS_DIR
                                        ", so it was read from a private mount of it)");
                else if (read_cmdline_lsm(&list) >= 0)
                        source = strdup("lsm= on the kernel command line (securityfs is not mounted at "
                                        SECURITYFS_DIR ", so the active list cannot be read)");
                else if (read_kernel_config("CONFIG_LSM", &config_path, &list) >= 0) {
                        if (asprintf(&source, "CONFIG_LSM of %s (securityfs is not mounted at " SECURITYFS_DIR
                                     " and the kernel command line has no lsm=)", config_path) < 0)
                                source = NULL;
                } else {
                        add_check(d, "lsm", CHECK_SKIPPED, NULL,
                                  "Cannot tell whether the BPF LSM is active: securityfs is not mounted at "
                                  SECURITYFS_DIR ", the kernel command line has no lsm= and %s is missing; "
                                  "run as root (which reads it from a private mount of securityfs), or mount "
                                  "securityfs: mount -t securityfs securityfs " SECURITYFS_DIR ".",
                                  config_path ?: "/boot/config-$(uname -r)");
                        return;
                }
        } else {
                add_check(d, "lsm", CHECK_SKIPPED, NULL, "Cannot read " LSM_LIST ": %s.", strerror(-r));
                return;
        }
        if (!source) {
                d->oom = true;
                return;
        }

        if (comma_list_has(list, "bpf")) {
                add_check(d, "lsm", CHECK_OK, NULL, "bpf is in %s: %s.", source, list);
                return;
        }

        /* Naming bpf in lsm= does nothing for a kernel built without it. */
        if (read_kernel_config("CONFIG_BPF_LSM", NULL, &bpf_lsm) >= 0 && strcmp(bpf_lsm, "y") != 0)
                built_without = true;

        if (asprintf(&fix, "%sAdd lsm=%s%sbpf to the kernel command line (on Debian: GRUB_CMDLINE_LINUX in "
                     "/etc/default/grub, then update-grub) and reboot.",
                     built_without ? "Boot a kernel built with CONFIG_BPF_LSM=y (this one is not). " : "",
                     list, *list ? "," : "") < 0) {
                d->oom = true;
                return;
        }
        add_check(d, "lsm", CHECK_FAIL, fix,
                  "bpf is missing from %s: %s; nsresd cannot load the restriction that keeps transient ids off "
                  "persistent filesystems.",
                  source, *list ? list : "(empty)");
}

static void check_btf(Doctor *d) {
        if (access(BTF_VMLINUX, F_OK) >= 0)
                add_check(d, "btf", CHECK_OK, NULL,
                          "The kernel describes its types in " BTF_VMLINUX " (BTF), which the BPF programs of "
                          "nsresd are built against.");
        else if (errno == ENOENT)
                add_check(d, "btf", CHECK_FAIL,
                          "Boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions' kernels are).",
                          BTF_VMLINUX " is missing: without BTF nsresd can neither load the restriction nor "
                          "track namespace teardown with BPF (it falls back to polling).");
        else
                add_check(d, "btf", CHECK_SKIPPED, NULL, "Cannot access " BTF_VMLINUX ": %m.");
}

static int silent_libbpf(enum libbpf_print_level level, const char *format, va_list ap) {
        (void) level;
        (void) format;
        (void) ap;
        return 0;
}

/* Loads and attaches the smallest LSM program there is (it allows
 * everything) and detaches it at once: the only way to know whether this
 * kernel runs BPF LSM programs. Some kernels have bpf in the LSM list but
 * refuse every trampoline program. */
static void check_lsm_programs(Doctor *d) {
        static const char fix[] =
                "Boot a kernel that runs BPF LSM programs (CONFIG_BPF_LSM=y, bpf in lsm=, BPF trampolines "
                "allowed, no lockdown in confidentiality mode). Until then nsresd refuses transient ranges "
                "under Restriction=enforce; Restriction=permissive in [Security] of " CONFIG_PATH
                " hands them out without the restriction.";
        const struct bpf_insn insns[] = {
                { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
                { .code = BPF_JMP | BPF_EXIT },
        };
        LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_LSM_MAC);
        _cleanup_close_ int prog_fd = -1, link_fd = -1;
        int btf_id;

        if (geteuid() != 0) {
                add_check(d, "lsm-programs", CHECK_SKIPPED, NULL,
                          "Only root can load BPF programs: run 'nsresctl doctor' as root to try loading a BPF "
                          "LSM program.");
                return;
        }

        libbpf_set_print(silent_libbpf);

        btf_id = libbpf_find_vmlinux_btf_id("path_mkdir", BPF_LSM_MAC);
        if (btf_id < 0) {
                add_check(d, "lsm-programs", CHECK_SKIPPED, NULL,
                          "Cannot find the LSM hook path_mkdir in the kernel's BTF (%s), so no LSM program can "
                          "be loaded to try.",
                          strerror(-btf_id));
                return;
        }
        opts.attach_btf_id = (uint32_t) btf_id;

        prog_fd = bpf_prog_load(BPF_PROG_TYPE_LSM, "nsresctl_probe", "GPL", insns, ELEMENTSOF(insns), &opts);
        if (prog_fd < 0) {
                add_check(d, "lsm-programs", CHECK_FAIL, fix,
                          "The kernel refused to load a BPF LSM program: %s%s.", strerror(-prog_fd),
                          prog_fd == -EPERM ? " (this kernel refuses BPF trampoline programs, or is locked down)"
                                            : "");
                return;
        }

        link_fd = bpf_link_create(prog_fd, 0, BPF_LSM_MAC, NULL);
        if (link_fd < 0) {
                add_check(d, "lsm-programs", CHECK_FAIL, fix,
                          "The kernel loaded a BPF LSM program but refused to attach it: %s.", strerror(-link_fd));
                return;
        }

        add_check(d, "lsm-programs", CHECK_OK, NULL,
                  "The kernel loaded and attached a test BPF LSM program (detached again at once).");
}

static void check_bpffs(Doctor *d) {
        struct statfs sfs;

        if (statfs(BPFFS_DIR, &sfs) < 0)
                add_check(d, "bpffs", CHECK_SKIPPED, NULL, "Cannot look at " BPFFS_DIR ": %m.");
        else if ((uint32_t) sfs.f_type != (uint32_t) BPF_FS_MAGIC)
                add_check(d, "bpffs", CHECK_FAIL,
                          "mount -t bpf bpf " BPFFS_DIR " (systemd mounts it at boot; elsewhere add "
                          "'bpf " BPFFS_DIR " bpf defaults 0 0' to /etc/fstab).",
                          "No BPF filesystem is mounted at " BPFFS_DIR ": nsresd cannot pin the restriction, "
                          "which would end with the daemon, so it does not load it, and teardown events "
                          "during a restart are lost.");
        else
                add_check(d, "bpffs", CHECK_OK, NULL,
                          "A BPF filesystem is mounted at " BPFFS_DIR ": the restriction and teardown tracking "
                          "stay pinned across daemon restarts.");
}

/* mountinfo escapes blanks and backslashes in paths as \ooo. */
static void unescape_octal(char *s) {
        char *w = s;

        for (char *p = s; *p; ) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char) ((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 4;
                } else
                        *w++ = *p++;
        }
        *w = '\0';
}

static int find_cgroup2_mount(char **ret) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;

        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;

        while (getline(&line, &size, f) >= 0) {
                char *separator = strstr(line, " - "), *mount_point, *end;

                if (!separator || strncmp(separator + 3, "cgroup2 ", 8) != 0)
                        continue;
                /* Fields: id, parent id, major:minor, root, mount point. */
                mount_point = line;
                for (int i = 0; i < 4 && mount_point; i++) {
                        mount_point = strchr(mount_point, ' ');
                        if (mount_point)
                                mount_point++;
                }
                if (!mount_point)
                        continue;
                end = strchr(mount_point, ' ');
                if (!end)
                        continue;
                *end = '\0';
                unescape_octal(mount_point);
                *ret = strdup(mount_point);
                return *ret ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

static void check_cgroup2(Doctor *d) {
        _cleanup_free_ char *where = NULL;
        int r;

        r = find_cgroup2_mount(&where);
        if (r >= 0)
                add_check(d, "cgroup2", CHECK_OK, NULL,
                          "cgroup v2 is mounted at %s: control groups can be delegated to namespaces.", where);
        else if (r == -ENOENT)
                add_check(d, "cgroup2", CHECK_WARN,
                          "mount -t cgroup2 cgroup2 /sys/fs/cgroup (on systemd machines: boot with "
                          "systemd.unified_cgroup_hierarchy=1).",
                          "No cgroup v2 hierarchy is mounted: AddControlGroupToUserNamespace (nsresctl run "
                          "--cgroup) cannot work.");
        else if (r == -ENOMEM)
                d->oom = true;
        else
                add_check(d, "cgroup2", CHECK_SKIPPED, NULL, "Cannot read /proc/self/mountinfo: %s.", strerror(-r));
}

static void check_userns_clone(Doctor *d) {
        uint32_t v;
        int r;

        r = read_sysctl_u32(SYSCTL_USERNS_CLONE, &v);
        if (r == -ENOENT)
                add_check(d, "unprivileged-userns-clone", CHECK_OK, NULL,
                          "kernel.unprivileged_userns_clone does not exist on this kernel (only Debian's adds "
                          "it): it keeps no one from creating user namespaces.");
        else if (r < 0)
                add_check(d, "unprivileged-userns-clone", CHECK_SKIPPED, NULL,
                          "Cannot read " SYSCTL_USERNS_CLONE ": %s.", strerror(-r));
        else if (v == 0)
                add_check(d, "unprivileged-userns-clone", CHECK_FAIL,
                          "sysctl -w kernel.unprivileged_userns_clone=1, and to keep it across reboots: "
                          "echo kernel.unprivileged_userns_clone=1 > " SYSCTL_DROPIN,
                          "kernel.unprivileged_userns_clone is 0: users cannot create the user namespaces "
                          "nsresd would map.");
        else
                add_check(d, "unprivileged-userns-clone", CHECK_OK, NULL,
                          "kernel.unprivileged_userns_clone is %" PRIu32 ": users may create user namespaces.", v);
}

static void check_apparmor_userns(Doctor *d) {
        _cleanup_free_ char *fix = NULL, *exe = NULL;
        uint32_t v;
        int r;

        r = read_sysctl_u32(SYSCTL_APPARMOR_USERNS, &v);
        if (r == -ENOENT) {
                add_check(d, "apparmor-userns", CHECK_OK, NULL,
                          "kernel.apparmor_restrict_unprivileged_userns does not exist on this kernel: AppArmor "
                          "does not restrict user namespaces here.");
                return;
        }
        if (r < 0) {
                add_check(d, "apparmor-userns", CHECK_SKIPPED, NULL, "Cannot read " SYSCTL_APPARMOR_USERNS ": %s.",
                          strerror(-r));
                return;
        }
        if (v == 0) {
                add_check(d, "apparmor-userns", CHECK_OK, NULL,
                          "kernel.apparmor_restrict_unprivileged_userns is 0: AppArmor does not restrict user "
                          "namespaces.");
                return;
        }

        /* The profile has to name the binary that creates the namespace:
         * this one, wherever it is installed. */
        exe = realpath("/proc/self/exe", NULL);
        if (asprintf(&fix,
                     "Allow the programs that create namespaces to use them with an AppArmor profile, e.g. for "
                     "nsresctl /etc/apparmor.d/nsresctl: 'abi <abi/4.0>, include <tunables/global> profile "
                     "nsresctl %s flags=(unconfined) { userns, }' and apparmor_parser -r /etc/apparmor.d/nsresctl; "
                     "or lift the restriction for all: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 "
                     "and echo kernel.apparmor_restrict_unprivileged_userns=0 > " SYSCTL_DROPIN,
                     exe ?: "/usr/bin/nsresctl") < 0) {
                d->oom = true;
                return;
        }
        add_check(d, "apparmor-userns", CHECK_FAIL, fix,
                  "kernel.apparmor_restrict_unprivileged_userns is %" PRIu32 ": a user namespace created by an "
                  "unconfined program gets no capabilities in it, so it cannot set itself up (mounts, "
                  "network) after nsresd mapped it.",
                  v);
}

static void check_max_user_namespaces(Doctor *d) {
        static const char fix[] =
                "sysctl -w user.max_user_namespaces=65536, and to keep it across reboots: "
                "echo user.max_user_namespaces=65536 > " SYSCTL_DROPIN;
        uint32_t v;
        int r;

        r = read_sysctl_u32(SYSCTL_MAX_USERNS, &v);
        if (r < 0)
                add_check(d, "max-user-namespaces", CHECK_SKIPPED, NULL, "Cannot read " SYSCTL_MAX_USERNS ": %s.",
                          strerror(-r));
        else if (v == 0)
                add_check(d, "max-user-namespaces", CHECK_FAIL, fix,
                          "user.max_user_namespaces is 0: no user namespace can be created.");
        else if (v < MAX_USERNS_LOW)
                add_check(d, "max-user-namespaces", CHECK_WARN, fix,
                          "user.max_user_namespaces is %" PRIu32 ": a few sandboxes or containers exhaust it.", v);
        else
                add_check(d, "max-user-namespaces", CHECK_OK, NULL, "user.max_user_namespaces is %" PRIu32 ".", v);
}

static void check_other_allocator(Doctor *d) {
        _cleanup_free_ char *found = NULL;
        struct stat st;
        bool socket_present, registry_present = false;
        char entries[64] = "";
        DIR *dir;

        socket_present = stat(NSRESOURCED_SOCKET, &st) >= 0 && S_ISSOCK(st.st_mode);

        dir = opendir(NSRESOURCED_REGISTRY);
        if (dir) {
                struct dirent *de;
                size_t n = 0;

                while ((de = readdir(dir)))
                        if (de->d_name[0] != '.')
                                n++;
                closedir(dir);
                registry_present = true;
                snprintf(entries, sizeof(entries), " (%zu %s)", n, n == 1 ? "entry" : "entries");
        } else if (errno == EACCES) {
                registry_present = true;
                snprintf(entries, sizeof(entries), " (run as root to count its entries)");
        }

        if (!socket_present && !registry_present) {
                add_check(d, "other-allocator", CHECK_OK, NULL,
                          "systemd-nsresourced is not in use: neither its socket " NSRESOURCED_SOCKET
                          " nor its registry " NSRESOURCED_REGISTRY "/ exists.");
                return;
        }

        if (asprintf(&found, "%s%s%s%s",
                     socket_present ? "its socket " NSRESOURCED_SOCKET " exists (it starts on first use)" : "",
                     socket_present && registry_present ? " and " : "",
                     registry_present ? "its registry " NSRESOURCED_REGISTRY "/ exists" : "", entries) < 0) {
                d->oom = true;
                return;
        }
        add_check(d, "other-allocator", CHECK_WARN,
                  "Use one allocator: systemctl disable --now systemd-nsresourced.socket "
                  "systemd-nsresourced.service.",
                  "systemd-nsresourced hands out ranges too: %s; nsresd keeps out of its ranges, but the two "
                  "apply different policies to the same users.",
                  found);
}

static void check_config(Doctor *d) {
        _cleanup_free_ char *error = NULL;
        int r;

        config_defaults(&d->config);
        r = config_load(&d->config, CONFIG_PATH, &error);
        if (r == -ENOMEM)
                d->oom = true;
        else if (r == -EACCES)
                add_check(d, "config", CHECK_SKIPPED, NULL,
                          "Cannot read " CONFIG_PATH " or its drop-ins: run as root.");
        else if (r < 0)
                add_check(d, "config", CHECK_FAIL,
                          "Correct that line: nsresd does not start with it, and a reload keeps the configuration "
                          "it runs with.",
                          "The configuration is invalid: %s.", error ?: strerror(-r));
        else {
                d->config_valid = true;
                if (access(CONFIG_PATH, F_OK) < 0 && errno == ENOENT)
                        add_check(d, "config", CHECK_OK, NULL,
                                  CONFIG_PATH " does not exist: nsresd uses its defaults (and any drop-ins).");
                else
                        add_check(d, "config", CHECK_OK, NULL, CONFIG_PATH " and its drop-ins are valid.");
        }
}

static int bus_get_string(sd_bus *bus, const char *property, sd_bus_error *error, char **ret) {
        return sd_bus_get_property_string(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE, property, error, ret);
}

static int bus_get_u32(sd_bus *bus, const char *property, sd_bus_error *error, uint32_t *ret) {
        return sd_bus_get_property_trivial(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE, property, error, 'u',
                                           ret);
}

/* Whether the bus would start the service on the first call to it. */
static int bus_name_activatable(sd_bus *bus, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *name;
        int r;

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "ListActivatableNames", error, &reply, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "s", &name)) > 0)
                if (strcmp(name, SERVICE_NAME) == 0)
                        return 1;
        return r;
}

static void check_daemon(Doctor *d) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *version = NULL;
        const char *address = getenv("DBUS_SYSTEM_BUS_ADDRESS") ?: "unix:path=/run/dbus/system_bus_socket";
        int has_owner = 0, r;

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                add_check(d, "daemon", CHECK_FAIL, "Start the D-Bus system bus (systemctl start dbus.service).",
                          "nsresd is not reachable: cannot connect to the system bus (%s): %s.", address,
                          strerror(-r));
                d->daemon_absent = strdup("nsresd is not reachable: there is no system bus to ask it on");
                if (!d->daemon_absent)
                        d->oom = true;
                return;
        }
        (void) sd_bus_set_method_call_timeout(bus, DAEMON_CALL_TIMEOUT_USEC);

        /* Asked before any call to the service: a call would start it. */
        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

                r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "NameHasOwner", &error, &reply, "s", SERVICE_NAME);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "b", &has_owner);
        }
        if (r < 0) {
                add_check(d, "daemon", CHECK_SKIPPED, NULL, "Cannot ask the system bus whether nsresd runs: %s.",
                          error.message ?: strerror(-r));
                d->daemon_absent = strdup("the system bus did not say whether nsresd runs");
                if (!d->daemon_absent)
                        d->oom = true;
                return;
        }

        if (!has_owner) {
                sd_bus_error_free(&error);
                r = bus_name_activatable(bus, &error);
                if (r > 0)
                        add_check(d, "daemon", CHECK_OK, NULL,
                                  "nsresd is not running; the system bus starts it on the first call.");
                else
                        add_check(d, "daemon", CHECK_FAIL,
                                  "Start it: systemctl enable --now nsresd.service (its bus activation file is "
                                  SERVICE_NAME ".service in /usr/share/dbus-1/system-services).",
                                  "nsresd is not running on the system bus (%s) and the bus cannot start it.",
                                  address);
                d->daemon_absent = strdup("nsresd is not running, so what it uses cannot be read from it");
                if (!d->daemon_absent)
                        d->oom = true;
                return;
        }

        sd_bus_error_free(&error);
        r = bus_get_string(bus, "Version", &error, &version);
        if (r >= 0)
                r = bus_get_string(bus, "Restriction", &error, &d->restriction);
        if (r >= 0)
                r = bus_get_string(bus, "TeardownTracking", &error, &d->teardown_tracking);
        if (r >= 0)
                r = bus_get_u32(bus, "RangeStart", &error, &d->range_start);
        if (r >= 0)
                r = bus_get_u32(bus, "RangeEnd", &error, &d->range_end);
        if (r < 0) {
                add_check(d, "daemon", CHECK_FAIL, "Look at the daemon's log, and restart it.",
                          "nsresd runs but did not answer: %s.", error.message ?: strerror(-r));
                d->daemon_absent = strdup("nsresd did not answer");
                if (!d->daemon_absent)
                        d->oom = true;
                return;
        }

        d->daemon_answered = true;
        add_check(d, "daemon", CHECK_OK, NULL, "nsresd %s runs on the system bus (%s).", version, address);
}

static void check_restriction(Doctor *d) {
        if (!d->daemon_answered)
                add_check(d, "restriction", CHECK_SKIPPED, NULL, "%s.", d->daemon_absent);
        else if (strcmp(d->restriction, "enforcing") == 0)
                add_check(d, "restriction", CHECK_OK, NULL,
                          "nsresd enforces the restriction (Restriction=enforcing): transient ids cannot own files "
                          "on filesystems that outlive their namespace.");
        else if (strcmp(d->restriction, "off") == 0)
                add_check(d, "restriction", CHECK_WARN,
                          "Set Restriction=enforce in [Security] of " CONFIG_PATH " and reload nsresd.",
                          "The restriction is configured off (Restriction=off): transient ids can own files on "
                          "persistent filesystems, and whoever gets the range next owns them.");
        else if (strcmp(d->restriction, "unavailable") == 0)
                add_check(d, "restriction", CHECK_FAIL,
                          "Fix what the lsm, btf, lsm-programs and bpffs checks found, then restart nsresd.",
                          "nsresd could not load the restriction (Restriction=unavailable): under "
                          "Restriction=enforce it refuses transient ranges, under permissive it hands them out "
                          "unprotected.");
        else
                add_check(d, "restriction", CHECK_WARN, "Use the nsresctl of the nsresd that runs.",
                          "nsresd reports a Restriction this nsresctl does not know: '%s'.", d->restriction);
}

static void check_teardown_tracking(Doctor *d) {
        if (!d->daemon_answered)
                add_check(d, "teardown-tracking", CHECK_SKIPPED, NULL, "%s.", d->daemon_absent);
        else if (strcmp(d->teardown_tracking, "bpf") == 0)
                add_check(d, "teardown-tracking", CHECK_OK, NULL,
                          "The kernel tells nsresd when a namespace dies (TeardownTracking=bpf).");
        else
                add_check(d, "teardown-tracking", CHECK_WARN,
                          "The daemon's log says why the BPF tracker did not load (it needs BTF, a BPF filesystem "
                          "at " BPFFS_DIR " and tp_btf programs); fix that and restart nsresd.",
                          "nsresd finds dead namespaces by polling (TeardownTracking=%s): their ranges come back "
                          "up to a second late, and the daemon wakes up every second.",
                          d->teardown_tracking);
}

typedef struct SubidOverlaps {
        char *text;             /* "FILE:LINE: 'owner' START-END; ..." */
        size_t n_lines;
        uint64_t n_blocks;      /* pool blocks touched, counted per line */
} SubidOverlaps;

static int append(char **s, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int append(char **s, const char *format, ...) {
        _cleanup_free_ char *piece = NULL;
        char *joined;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&piece, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (asprintf(&joined, "%s%s", *s ?: "", piece) < 0)
                return -ENOMEM;
        free(*s);
        *s = joined;
        return 0;
}

/* "owner:start:count" lines; what the daemon cannot parse it skips, and so
 * does this. */
static int find_subid_overlaps(const char *path, uint32_t pool_start, uint32_t pool_end, SubidOverlaps *o) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        unsigned line_number = 0;

        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;

        while (getline(&line, &size, f) >= 0) {
                char *first_colon, *second_colon, *end;
                uint32_t start, count;
                uint64_t last, from, to;

                line_number++;
                line[strcspn(line, "\n")] = '\0';
                first_colon = strchr(line, ':');
                if (line[0] == '#' || !first_colon)
                        continue;
                second_colon = strchr(first_colon + 1, ':');
                if (!second_colon)
                        continue;
                end = second_colon + 1 + strcspn(second_colon + 1, " \t");
                if (parse_decimal_u32(first_colon + 1, (size_t) (second_colon - first_colon - 1), &start) < 0 ||
                    parse_decimal_u32(second_colon + 1, (size_t) (end - second_colon - 1), &count) < 0 ||
                    count == 0)
                        continue;

                last = (uint64_t) start + count - 1;
                if (last < pool_start || start > pool_end)
                        continue;

                from = ((start > pool_start ? start : pool_start) - pool_start) / POOL_BLOCK_SIZE;
                to = ((last < pool_end ? last : pool_end) - pool_start) / POOL_BLOCK_SIZE;
                o->n_blocks += to - from + 1;
                o->n_lines++;
                if (o->n_lines <= SUBID_LINES_SHOWN) {
                        *first_colon = '\0';
                        if (append(&o->text, "%s%s:%u: '%s' %" PRIu32 "-%" PRIu64, o->n_lines > 1 ? "; " : "",
                                   path, line_number, line, start, last) < 0)
                                return -ENOMEM;
                }
        }
        return ferror(f) ? -EIO : 0;
}

static void check_subid(Doctor *d) {
        static const char *const files[] = { "/etc/subuid", "/etc/subgid" };
        _cleanup_free_ char *fix = NULL;
        SubidOverlaps o = {};
        uint32_t start, end;
        const char *source;
        int r;

        if (d->daemon_answered) {
                start = d->range_start;
                end = d->range_end;
                source = "the running nsresd's";
        } else if (d->config_valid) {
                start = d->config.range_start;
                end = d->config.range_end;
                source = "the configured";
        } else {
                add_check(d, "subid-ranges", CHECK_SKIPPED, NULL,
                          "The pool is unknown: %s, and the configuration is not valid.",
                          d->daemon_absent ?: "nsresd did not answer");
                return;
        }

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                r = find_subid_overlaps(files[i], start, end, &o);
                if (r == -ENOMEM) {
                        free(o.text);
                        d->oom = true;
                        return;
                }
                if (r < 0) {
                        free(o.text);
                        add_check(d, "subid-ranges", CHECK_SKIPPED, NULL, "Cannot read %s: %s%s.", files[i],
                                  strerror(-r), r == -EACCES ? " (run as root)" : "");
                        return;
                }
        }

        if (o.n_lines == 0) {
                add_check(d, "subid-ranges", CHECK_OK, NULL,
                          "No line of /etc/subuid or /etc/subgid overlaps %s pool %" PRIu32 "-%" PRIu32 ".",
                          source, start, end);
                return;
        }

        if (asprintf(&fix,
                     "Move those ranges out of %" PRIu32 "-%" PRIu32 " (usermod --del-subuids/--add-subuids, "
                     "--del-subgids/--add-subgids), or move the pool away from them with RangeStart= and "
                     "RangeEnd= in [Allocator] of " CONFIG_PATH ".",
                     start, end) < 0) {
                free(o.text);
                d->oom = true;
                return;
        }
        add_check(d, "subid-ranges", CHECK_WARN, fix,
                  "%zu subordinate id range%s overlap%s %s pool %" PRIu32 "-%" PRIu32 ": %s%s; nsresd skips "
                  "the %" PRIu64 " block%s of %u ids they touch, so the pool is smaller.",
                  o.n_lines, o.n_lines == 1 ? "" : "s", o.n_lines == 1 ? "s" : "", source, start, end, o.text,
                  o.n_lines > SUBID_LINES_SHOWN ? "; and more" : "", o.n_blocks, o.n_blocks == 1 ? "" : "s",
                  POOL_BLOCK_SIZE);
        free(o.text);
}

void doctor_report_done(DoctorReport *report) {
        for (size_t i = 0; i < report->n_checks; i++) {
                free(report->checks[i].message);
                free(report->checks[i].fix);
        }
        free(report->checks);
        *report = (DoctorReport) {};
}

int doctor_run(DoctorReport *ret) {
        Doctor d = {};

        check_lsm(&d);
        check_btf(&d);
        check_lsm_programs(&d);
        check_bpffs(&d);
        check_cgroup2(&d);
        check_userns_clone(&d);
        check_apparmor_userns(&d);
        check_max_user_namespaces(&d);
        check_other_allocator(&d);
        check_config(&d);
        check_daemon(&d);
        check_restriction(&d);
        check_teardown_tracking(&d);
        check_subid(&d);

        free(d.daemon_absent);
        free(d.restriction);
        free(d.teardown_tracking);

        if (d.oom) {
                doctor_report_done(&d.report);
                return -ENOMEM;
        }
        *ret = d.report;
        return 0;
}
