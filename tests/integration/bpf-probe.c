/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nsresd-bpf-probe: what bpf() lets this process do, with and without a
 * token from a delegated bpffs. The tests run it inside sandboxes and read
 * its one line of results:
 *
 *     token=ok map=EPERM map+token=ok prog=EPERM prog+token=ok
 *
 * "ok" or the name of the errno the kernel answered with; "skipped" for an
 * attempt with a token when no token could be made, "open:ERRNO" when DIR
 * could not be opened. Exit status 0 whatever the kernel answered, 1 if
 * the line could not be written, 2 on wrong usage. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf/token-uapi.h"

#define DEFAULT_BPFFS "/sys/fs/bpf"

static int sys_bpf(int cmd, void *attr, size_t size) {
        long r = syscall(SYS_bpf, cmd, attr, size);

        if (r < 0)
                return -errno;
        return (int) r;
}

static bool line_started = false;

static void print_field(const char *what, const char *prefix, const char *value) {
        printf("%s%s=%s%s", line_started ? " " : "", what, prefix, value);
        line_started = true;
}

static void print_result(const char *what, const char *prefix, int r) {
        char number[32];
        const char *name;

        if (r >= 0) {
                print_field(what, prefix, "ok");
                return;
        }
        name = strerrorname_np(-r);
        if (!name) {
                snprintf(number, sizeof(number), "errno%d", -r);
                name = number;
        }
        print_field(what, prefix, name);
}

/* Fds of created objects are closed at once: the answer is all we want. */
static int close_result(int r) {
        if (r >= 0) {
                close(r);
                return 0;
        }
        return r;
}

static int token_create(const char *bpffs, bool *ret_open_failed) {
        struct bpf_token_create_attr attr = {};
        int dir_fd, r;

        /* An fd of the mount itself (from fsmount) is O_PATH, which
         * BPF_TOKEN_CREATE refuses: the directory is opened for real. */
        dir_fd = open(bpffs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) {
                *ret_open_failed = true;
                return -errno;
        }
        attr.bpffs_fd = (__u32) dir_fd;
        r = sys_bpf(BPF_TOKEN_CREATE, &attr, sizeof(attr));
        close(dir_fd);
        *ret_open_failed = false;
        return r;
}

static int map_create(int token_fd) {
        struct bpf_map_create_token_attr attr = {
                .map_type = BPF_MAP_TYPE_ARRAY,
                .key_size = sizeof(uint32_t),
                .value_size = sizeof(uint64_t),
                .max_entries = 1,
                .map_name = "nsresd_probe",
        };

        if (token_fd >= 0) {
                attr.map_flags |= BPF_F_TOKEN_FD;
                attr.map_token_fd = token_fd;
        }
        return close_result(sys_bpf(BPF_MAP_CREATE, &attr, sizeof(attr)));
}

static int prog_load(int token_fd) {
        /* r0 = 0; exit: a socket filter that drops every packet. */
        static const struct bpf_insn insns[] = {
                { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
                { .code = BPF_JMP | BPF_EXIT },
        };
        struct bpf_prog_load_token_attr attr = {
                .prog_type = BPF_PROG_TYPE_SOCKET_FILTER,
                .insn_cnt = sizeof(insns) / sizeof(insns[0]),
                .insns = (uintptr_t) insns,
                .license = (uintptr_t) "GPL",
                .prog_name = "nsresd_probe",
        };

        if (token_fd >= 0) {
                attr.prog_flags |= BPF_F_TOKEN_FD;
                attr.prog_token_fd = token_fd;
        }
        return close_result(sys_bpf(BPF_PROG_LOAD, &attr, sizeof(attr)));
}

static void help(void) {
        printf("Usage: nsresd-bpf-probe [--bpffs=DIR] [token|map|prog]...\n"
               "\n"
               "Create a BPF token from the bpffs at DIR (default: " DEFAULT_BPFFS "), then\n"
               "create an array map (map) and load a socket filter (prog) without and\n"
               "with it (default: all). Prints one line: token=R map=R map+token=R ...\n"
               "where R is ok, the errno name, or skipped.\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",  no_argument,       NULL, 'h' },
                { "bpffs", required_argument, NULL, 'b' },
                {}
        };
        const char *bpffs = DEFAULT_BPFFS;
        bool want_map = false, want_prog = false, open_failed;
        int c, token;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'b':
                        bpffs = optarg;
                        break;
                default:
                        return 2;
                }

        if (optind >= argc)
                want_map = want_prog = true;
        for (int i = optind; i < argc; i++) {
                if (strcmp(argv[i], "map") == 0)
                        want_map = true;
                else if (strcmp(argv[i], "prog") == 0)
                        want_prog = true;
                else if (strcmp(argv[i], "token") != 0) {
                        fprintf(stderr, "nsresd-bpf-probe: unknown check '%s'\n", argv[i]);
                        return 2;
                }
        }

        token = token_create(bpffs, &open_failed);
        print_result("token", open_failed ? "open:" : "", token);

        if (want_map) {
                print_result("map", "", map_create(-1));
                if (token >= 0)
                        print_result("map+token", "", map_create(token));
                else
                        print_field("map+token", "", "skipped");
        }
        if (want_prog) {
                print_result("prog", "", prog_load(-1));
                if (token >= 0)
                        print_result("prog+token", "", prog_load(token));
                else
                        print_field("prog+token", "", "skipped");
        }
        printf("\n");

        return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
