/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* nsresctl: command line client of nsresd (org.freedesktop.NamespaceResource1). */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <limits.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bwrap.h"
#include "doctor.h"
#include "nsres.h"
#include "nsresctl.h"
#include "util.h"

#ifndef NSRESD_VERSION
#define NSRESD_VERSION "unknown"
#endif

#define SERVICE_NAME "org.freedesktop.NamespaceResource1"
#define MANAGER_PATH "/org/freedesktop/NamespaceResource1"
#define MANAGER_INTERFACE "org.freedesktop.NamespaceResource1.Manager"
#define USERNS_INTERFACE "org.freedesktop.NamespaceResource1.UserNamespace"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

#define DEFAULT_RANGE_SIZE 65536U

static bool arg_json = false;
static bool arg_verbose = false;
static bool arg_ask_password = true;

static void json_object_putp(struct json_object **j) {
        json_object_put(*j);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

void log_error_msg(const char *format, ...) {
        int saved_errno = errno;
        va_list ap;

        fputs("nsresctl: ", stderr);
        /* Keep errno intact for a %m in format. */
        errno = saved_errno;
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/* The daemon's error messages are written for users, so they are shown as
 * they are; only when there is none does the errno text stand in. */
static void log_bus_error(const sd_bus_error *error, int r, const char *what) {
        if (error && error->message)
                log_error_msg("%s", error->message);
        else
                log_error_msg("%s: %s", what, strerror(-r));
}

static int bus_connect(sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                log_error_msg("Failed to connect to the system bus: %s", strerror(-r));
                return r;
        }

        *ret = bus;
        return 0;
}

static int safe_close(int fd) {
        if (fd >= 0)
                close(fd);
        return -1;
}

/* Adds v under key and takes the reference either way, so callers can build
 * objects inline and check once. */
static int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int print_json(struct json_object *j) {
        const char *s;

        s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

static int parse_uint64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        /* strtoull() would accept leading blanks and a sign. */
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;

        *ret = (uint64_t) v;
        return 0;
}

static int parse_uint32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r;

        r = parse_uint64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;

        *ret = (uint32_t) v;
        return 0;
}

static int json_from_bus_value(sd_bus_message *m, struct json_object **ret);

/* The values from the current position of m to the end of the array or
 * struct it is in, as a JSON array. */
/* NOLINTNEXTLINE(misc-no-recursion): D-Bus nests containers at most 64 deep. */
static int json_array_from_bus_values(sd_bus_message *m, struct json_object **ret) {
        _cleanup_json_ struct json_object *j = json_object_new_array();
        int r;

        if (!j)
                return -ENOMEM;

        for (;;) {
                _cleanup_json_ struct json_object *element = NULL;

                r = sd_bus_message_peek_type(m, NULL, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = json_from_bus_value(m, &element);
                if (r < 0)
                        return r;
                if (json_object_array_add(j, element) < 0)
                        return -ENOMEM;
                TAKE_PTR(element);
        }

        *ret = TAKE_PTR(j);
        return 0;
}

/* The dictionary entries from the current position of m to the end of the
 * dictionary, as a JSON object. */
/* NOLINTNEXTLINE(misc-no-recursion): D-Bus nests containers at most 64 deep. */
static int json_object_from_bus_entries(sd_bus_message *m, struct json_object **ret) {
        _cleanup_json_ struct json_object *j = json_object_new_object();
        int r;

        if (!j)
                return -ENOMEM;

        for (;;) {
                _cleanup_json_ struct json_object *key = NULL, *element = NULL;
                const char *entry_contents, *key_string;
                char key_type;

                r = sd_bus_message_peek_type(m, NULL, &entry_contents);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry_contents);
                if (r < 0)
                        return r;

                /* Keys are basic types but JSON keys are strings: numbers
                 * are used in their text form. */
                r = sd_bus_message_peek_type(m, &key_type, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -EBADMSG;
                r = json_from_bus_value(m, &key);
                if (r < 0)
                        return r;
                key_string = json_object_is_type(key, json_type_string)
                        ? json_object_get_string(key)
                        : json_object_to_json_string_ext(key, JSON_C_TO_STRING_PLAIN);
                if (!key_string)
                        return -ENOMEM;

                r = json_from_bus_value(m, &element);
                if (r < 0)
                        return r;

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;

                r = json_add(j, key_string, TAKE_PTR(element));
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(j);
        return 0;
}

/* Converts the complete value at the current position of m into JSON:
 * dictionaries become objects, arrays and structs arrays, variants their
 * content. Used for GetAll replies, so new properties show up without
 * changes here. */
/* NOLINTNEXTLINE(misc-no-recursion): D-Bus nests containers at most 64 deep. */
static int json_from_bus_value(sd_bus_message *m, struct json_object **ret) {
        _cleanup_json_ struct json_object *j = NULL;
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;

        switch (type) {

        case SD_BUS_TYPE_ARRAY:
        case SD_BUS_TYPE_STRUCT:
        case SD_BUS_TYPE_VARIANT:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;

                if (type == SD_BUS_TYPE_VARIANT)
                        r = json_from_bus_value(m, &j);
                else if (type == SD_BUS_TYPE_ARRAY && contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN)
                        r = json_object_from_bus_entries(m, &j);
                else
                        r = json_array_from_bus_values(m, &j);
                if (r < 0)
                        return r;

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                break;

        default: {
                union {
                        uint8_t u8;
                        int16_t s16;
                        uint16_t u16;
                        int32_t s32;
                        uint32_t u32;
                        int64_t s64;
                        uint64_t u64;
                        double d;
                        int b;
                        int h;
                        const char *s;
                } v;

                r = sd_bus_message_read_basic(m, type, &v);
                if (r < 0)
                        return r;

                switch (type) {
                case SD_BUS_TYPE_BYTE:
                        j = json_object_new_int64(v.u8);
                        break;
                case SD_BUS_TYPE_INT16:
                        j = json_object_new_int64(v.s16);
                        break;
                case SD_BUS_TYPE_UINT16:
                        j = json_object_new_int64(v.u16);
                        break;
                case SD_BUS_TYPE_INT32:
                        j = json_object_new_int64(v.s32);
                        break;
                case SD_BUS_TYPE_UINT32:
                        j = json_object_new_int64(v.u32);
                        break;
                case SD_BUS_TYPE_INT64:
                        j = json_object_new_int64(v.s64);
                        break;
                case SD_BUS_TYPE_UINT64:
                        j = json_object_new_uint64(v.u64);
                        break;
                case SD_BUS_TYPE_DOUBLE:
                        j = json_object_new_double(v.d);
                        break;
                case SD_BUS_TYPE_BOOLEAN:
                        j = json_object_new_boolean(v.b);
                        break;
                case SD_BUS_TYPE_UNIX_FD:
                        j = json_object_new_int64(v.h);
                        break;
                case SD_BUS_TYPE_STRING:
                case SD_BUS_TYPE_OBJECT_PATH:
                case SD_BUS_TYPE_SIGNATURE:
                        j = json_object_new_string(v.s);
                        break;
                default:
                        return -EBADMSG;
                }
                if (!j)
                        return -ENOMEM;
                break;
        }
        }

        *ret = TAKE_PTR(j);
        return 0;
}

/* NOLINTNEXTLINE(misc-no-recursion): the JSON came from D-Bus, nested at most 64 deep. */
static void print_text_value(struct json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_string:
                fputs(json_object_get_string(v), stdout);
                break;
        case json_type_boolean:
                fputs(json_object_get_boolean(v) ? "yes" : "no", stdout);
                break;
        case json_type_array: {
                size_t n = json_object_array_length(v);

                for (size_t i = 0; i < n; i++) {
                        if (i > 0)
                                fputc(' ', stdout);
                        print_text_value(json_object_array_get_idx(v, i));
                }
                break;
        }
        default:
                fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                      stdout);
        }
}

static void print_timestamp_usec(uint64_t usec) {
        time_t sec = (time_t) (usec / 1000000);
        char buf[128];
        struct tm tm;

        if (usec == 0 || !localtime_r(&sec, &tm) ||
            strftime(buf, sizeof(buf), "%a %Y-%m-%d %H:%M:%S %Z", &tm) == 0) {
                printf("%" PRIu64, usec);
                return;
        }
        fputs(buf, stdout);
}

/* "Key: value" lines. Created is the one property with a unit a person cannot
 * read off a raw number (µs since the epoch), so it is shown as a date. */
static void print_properties_text(struct json_object *properties) {
        json_object_object_foreach(properties, key, value) {
                bool empty = json_object_get_type(value) == json_type_array &&
                             json_object_array_length(value) == 0;

                printf("%s:", key);
                if (!empty)
                        fputc(' ', stdout);

                if (strcmp(key, "Created") == 0 && json_object_get_type(value) == json_type_int)
                        print_timestamp_usec(json_object_get_uint64(value));
                else
                        print_text_value(value);
                fputc('\n', stdout);
        }
}

static int get_all_properties(sd_bus *bus, const char *path, const char *interface, struct json_object **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, SERVICE_NAME, path, PROPERTIES_INTERFACE, "GetAll",
                               &error, &reply, "s", interface);
        if (r < 0) {
                log_bus_error(&error, r, "Failed to read properties");
                return r;
        }

        r = json_from_bus_value(reply, ret);
        if (r < 0) {
                log_error_msg("Failed to parse properties of %s: %s", path, strerror(-r));
                return r;
        }
        return 0;
}

/* with_path: the object is one of many, so say which (first, so a consumer
 * has the handle to it along with its state). */
static int print_properties(sd_bus *bus, const char *path, const char *interface, bool with_path) {
        _cleanup_json_ struct json_object *properties = NULL;
        int r;

        r = get_all_properties(bus, path, interface, &properties);
        if (r < 0)
                return EXIT_FAILURE;

        if (!json_object_is_type(properties, json_type_object)) {
                log_error_msg("Unexpected reply to GetAll on %s.", path);
                return EXIT_FAILURE;
        }

        if (arg_json) {
                if (with_path) {
                        _cleanup_json_ struct json_object *out = json_object_new_object();

                        if (!out || json_add(out, "Path", json_object_new_string(path)) < 0) {
                                log_error_msg("Out of memory.");
                                return EXIT_FAILURE;
                        }
                        json_object_object_foreach(properties, key, value)
                                if (json_add(out, key, json_object_get(value)) < 0) {
                                        log_error_msg("Out of memory.");
                                        return EXIT_FAILURE;
                                }
                        print_json(out);
                } else
                        print_json(properties);
        } else {
                if (with_path)
                        printf("Path: %s\n", path);
                print_properties_text(properties);
        }

        return EXIT_SUCCESS;
}

typedef struct NamespaceEntry {
        const char *path;
        const char *name;
        uint64_t id;
        uint32_t owner;
        uint32_t uid_start;
        uint32_t size;
        uint32_t target;
} NamespaceEntry;

typedef struct NamespaceList {
        /* The strings point into the reply, which is kept alive with them. */
        sd_bus_message *reply;
        NamespaceEntry *entries;
        size_t n_entries;
} NamespaceList;

static void namespace_list_done(NamespaceList *l) {
        free(l->entries);
        sd_bus_message_unref(l->reply);
        *l = (NamespaceList) {};
}

static int namespace_entry_compare(const void *a, const void *b) {
        const NamespaceEntry *x = a, *y = b;

        return strcmp(x->name, y->name);
}

static int list_namespaces(sd_bus *bus, NamespaceList *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ NamespaceEntry *entries = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE, "ListUserNamespaces",
                               &error, &reply, "t", UINT64_C(0));
        if (r < 0) {
                log_bus_error(&error, r, "Failed to list user namespaces");
                return r;
        }

        r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "(ostuuuu)");
        if (r < 0)
                goto parse_error;

        for (;;) {
                NamespaceEntry e;

                r = sd_bus_message_read(reply, "(ostuuuu)", &e.path, &e.name, &e.id, &e.owner,
                                        &e.uid_start, &e.size, &e.target);
                if (r < 0)
                        goto parse_error;
                if (r == 0)
                        break;

                if (n >= allocated) {
                        size_t want = allocated ? allocated * 2 : 16;
                        NamespaceEntry *grown = reallocarray(entries, want, sizeof(*entries));

                        if (!grown) {
                                log_error_msg("Out of memory.");
                                return -ENOMEM;
                        }
                        entries = grown;
                        allocated = want;
                }
                entries[n++] = e;
        }

        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                goto parse_error;

        if (n > 0)
                qsort(entries, n, sizeof(*entries), namespace_entry_compare);

        *ret = (NamespaceList) {
                .reply = TAKE_PTR(reply),
                .entries = TAKE_PTR(entries),
                .n_entries = n,
        };
        return 0;

parse_error:
        log_error_msg("Failed to parse the list of user namespaces: %s", strerror(-r));
        return r;
}

static int print_namespace_list_json(const NamespaceList *l) {
        _cleanup_json_ struct json_object *array = json_object_new_array();

        if (!array)
                goto oom;

        for (size_t i = 0; i < l->n_entries; i++) {
                const NamespaceEntry *e = &l->entries[i];
                struct json_object *o = json_object_new_object();

                if (!o || json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        goto oom;
                }

                /* Same keys as the properties of the namespace object, so
                 * "list" and "status" output can be handled alike. */
                if (json_add(o, "Path", json_object_new_string(e->path)) < 0 ||
                    json_add(o, "Name", json_object_new_string(e->name)) < 0 ||
                    json_add(o, "Id", json_object_new_uint64(e->id)) < 0 ||
                    json_add(o, "Owner", json_object_new_int64(e->owner)) < 0 ||
                    json_add(o, "UidStart", json_object_new_int64(e->uid_start)) < 0 ||
                    json_add(o, "Size", json_object_new_int64(e->size)) < 0 ||
                    json_add(o, "Target", json_object_new_int64(e->target)) < 0)
                        goto oom;
        }

        print_json(array);
        return EXIT_SUCCESS;

oom:
        log_error_msg("Out of memory.");
        return EXIT_FAILURE;
}

static void format_id_range(uint32_t start, uint32_t n, char *buf, size_t size) {
        if (n <= 1)
                snprintf(buf, size, "%" PRIu32, start);
        else
                snprintf(buf, size, "%" PRIu32 "-%" PRIu32, start, (uint32_t) (start + (n - 1)));
}

static int print_namespace_list_table(const NamespaceList *l) {
        int w_name = 4, w_owner = 5, w_id = 2, w_uids = 4, w_size = 4;
        char buf[64];

        for (size_t i = 0; i < l->n_entries; i++) {
                const NamespaceEntry *e = &l->entries[i];
                int n;

                n = (int) strlen(e->name);
                if (n > w_name)
                        w_name = n;
                n = snprintf(NULL, 0, "%" PRIu32, e->owner);
                if (n > w_owner)
                        w_owner = n;
                n = snprintf(NULL, 0, "%" PRIu64, e->id);
                if (n > w_id)
                        w_id = n;
                format_id_range(e->uid_start, e->size, buf, sizeof(buf));
                n = (int) strlen(buf);
                if (n > w_uids)
                        w_uids = n;
                n = snprintf(NULL, 0, "%" PRIu32, e->size);
                if (n > w_size)
                        w_size = n;
        }

        printf("%-*s %-*s %-*s %-*s %-*s %s\n",
               w_name, "NAME", w_owner, "OWNER", w_id, "ID", w_uids, "UIDS", w_size, "SIZE", "TARGET");

        for (size_t i = 0; i < l->n_entries; i++) {
                const NamespaceEntry *e = &l->entries[i];

                format_id_range(e->uid_start, e->size, buf, sizeof(buf));
                printf("%-*s %-*" PRIu32 " %-*" PRIu64 " %-*s %-*" PRIu32 " %" PRIu32 "\n",
                       w_name, e->name, w_owner, e->owner, w_id, e->id, w_uids, buf,
                       w_size, e->size, e->target);
        }

        if (l->n_entries == 0)
                fputs("No namespaces.\n", stderr);

        return EXIT_SUCCESS;
}

enum {
        ARG_VERSION = 0x100,
        ARG_JSON,
        ARG_NO_ASK_PASSWORD,
        ARG_NAME,
        ARG_SIZE,
        ARG_SELF,
        ARG_MAP_CALLER,
        ARG_TARGET,
        ARG_MANGLE,
        ARG_CGROUP,
        ARG_NET,
        ARG_IFNAME,
        ARG_BPF_TOKEN,
        ARG_BPF_ALLOW,
        ARG_BINFMT,
};

/* Accepted by every command, after the command as well as before it. */
#define COMMON_OPTIONS                                                          \
        { "help",            no_argument, NULL, 'h'                 },         \
        { "version",         no_argument, NULL, ARG_VERSION         },         \
        { "json",            no_argument, NULL, ARG_JSON            },         \
        { "verbose",         no_argument, NULL, 'v'                 },         \
        { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD }

static void help(void) {
        printf("Usage: nsresctl [OPTIONS] COMMAND ...\n"
               "\n"
               "Ask nsresd for transient UID/GID ranges for user namespaces.\n"
               "\n"
               "Commands:\n"
               "  run [RUN-OPTIONS] [--] CMD [ARGS...]\n"
               "                          Run CMD as root of a new user namespace with\n"
               "                          a range allocated by nsresd\n"
               "  bwrap [--name=NAME] -- BWRAP-ARGS...\n"
               "                          Run bubblewrap with BWRAP-ARGS in a user\n"
               "                          namespace with 64K UIDs/GIDs from nsresd and\n"
               "                          your own UID/GID as 65536; with --cap-add ALL\n"
               "                          the sandbox may switch to any of them\n"
               "  list                    List allocated user namespaces\n"
               "  status NAME|ID|PATH     Show all properties of one user namespace\n"
               "  info                    Show the state of the service\n"
               "  watch                   Print a line whenever a namespace is added or\n"
               "                          removed, until interrupted\n"
               "  doctor                  Check what on this host makes nsresd fail or\n"
               "                          degrade, with the fix for each problem (some\n"
               "                          checks need root)\n"
               "\n"
               "Options:\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "     --json               Print JSON (list, status, info, doctor: one\n"
               "                          document; watch: one object per line)\n"
               "  -v --verbose            run, bwrap: report the allocation on stderr\n"
               "     --no-ask-password    Do not let polkit ask for a password\n"
               "\n"
               "Run options:\n"
               "     --name=NAME          Name of the namespace (default: derived from CMD)\n"
               "     --mangle             Turn an invalid NAME into a valid one instead of\n"
               "                          failing\n"
               "     --size=SIZE          Number of UIDs/GIDs: 65536 (default) or 1\n"
               "     --target=ID          First UID/GID inside the namespace (default: 0);\n"
               "                          CMD runs as this UID/GID\n"
               "     --self               Map only your own UID/GID (size 1), no transient\n"
               "                          range\n"
               "     --map-caller         Also map your own UID/GID, to TARGET+SIZE\n"
               "     --cgroup=PATH        Run CMD in a control group of its own, made by\n"
               "                          nsresd in PATH (a cgroup you own, in whose\n"
               "                          subtree nsresctl runs) and delegated to the\n"
               "                          namespace\n"
               "     --net                Run CMD in a network namespace of its own, with\n"
               "                          a veth pair made by nsresd: its end inside is\n"
               "                          IFNAME, the host end is down until the host's\n"
               "                          network configuration takes it up\n"
               "     --ifname=IFNAME      The name of the veth inside (default: host0)\n"
               "     --bpf-token          Mount a bpffs at /sys/fs/bpf inside from which\n"
               "                          CMD can create a BPF token, valid only in its\n"
               "                          namespace\n"
               "     --bpf-allow=KIND=NAME[:NAME...][,KIND=...]\n"
               "                          What tokens from it allow, KIND being cmds,\n"
               "                          maps, progs or attachs and NAME as the kernel\n"
               "                          spells it, e.g. cmds=map_create,maps=array\n"
               "                          (default: any of each; kinds not named: none)\n"
               "     --binfmt             Give CMD a binfmt_misc instance of its own at\n"
               "                          /proc/sys/fs/binfmt_misc\n"
               "\n"
               "Exit status: 0 on success, 1 on failure, 2 on wrong usage. run exits with\n"
               "the status of CMD (128+N if it was killed by signal N), 126 if CMD could not\n"
               "be executed and 127 if it was not found; bwrap with the status of bwrap.\n"
               "doctor exits with 1 if a check\n"
               "failed (warnings do not count).\n");
}

typedef enum OptionResult {
        OPTION_NOT_COMMON,      /* one of the command's own options */
        OPTION_CONTINUE,
        OPTION_EXIT_SUCCESS,    /* --help, --version: done */
        OPTION_EXIT_USAGE,      /* getopt already said what was wrong */
} OptionResult;

static OptionResult handle_common_option(int c) {
        switch (c) {
        case 'h':
                help();
                return OPTION_EXIT_SUCCESS;
        case ARG_VERSION:
                printf("nsresctl %s\n", NSRESD_VERSION);
                return OPTION_EXIT_SUCCESS;
        case ARG_JSON:
                arg_json = true;
                return OPTION_CONTINUE;
        case 'v':
                arg_verbose = true;
                return OPTION_CONTINUE;
        case ARG_NO_ASK_PASSWORD:
                arg_ask_password = false;
                return OPTION_CONTINUE;
        case '?':
                return OPTION_EXIT_USAGE;
        default:
                return OPTION_NOT_COMMON;
        }
}

/* Parses the options of the command line before the command, or of a command
 * that has only the common ones. Returns -1 to go on, or the exit status to
 * stop with. */
static int parse_common_options(int argc, char *argv[], bool before_command) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                {}
        };
        int c;

        /* 0, not 1: makes glibc start over on a new argv. Before the command
         * the first argument ends the options ("+"); a command takes them
         * after its arguments too ("status NAME --json"). */
        optind = 0;
        while ((c = getopt_long(argc, argv, before_command ? "+hv" : "hv", options, NULL)) >= 0)
                switch (handle_common_option(c)) {
                case OPTION_CONTINUE:
                        break;
                case OPTION_EXIT_SUCCESS:
                        return EXIT_SUCCESS;
                case OPTION_NOT_COMMON:
                case OPTION_EXIT_USAGE:
                        return EXIT_USAGE;
                }
        return -1;
}

/* The same for a command that takes no arguments either. */
static int parse_options_no_arguments(int argc, char *argv[], const char *verb) {
        int r;

        r = parse_common_options(argc, argv, false);
        if (r >= 0)
                return r;
        if (optind < argc) {
                log_error_msg("'%s' takes no arguments.", verb);
                return EXIT_USAGE;
        }
        return -1;
}

static int verb_list(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(namespace_list_done) NamespaceList list = {};
        int r;

        r = parse_options_no_arguments(argc, argv, "list");
        if (r >= 0)
                return r;

        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;

        if (list_namespaces(bus, &list) < 0)
                return EXIT_FAILURE;

        return arg_json ? print_namespace_list_json(&list) : print_namespace_list_table(&list);
}

static bool is_all_digits(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* Finds the object path of a namespace given by id, by name, or by the name
 * without the "<uid>-" prefix the service adds for non-root owners (what the
 * user passed to --name). */
static int find_namespace(sd_bus *bus, const char *what, char **ret_path) {
        _cleanup_(namespace_list_done) NamespaceList list = {};
        const NamespaceEntry *found = NULL;
        char qualified[64];
        uint64_t id;
        int r;

        r = list_namespaces(bus, &list);
        if (r < 0)
                return r;

        if (is_all_digits(what) && parse_uint64(what, &id) >= 0)
                for (size_t i = 0; !found && i < list.n_entries; i++)
                        if (list.entries[i].id == id)
                                found = &list.entries[i];

        for (size_t i = 0; !found && i < list.n_entries; i++)
                if (strcmp(list.entries[i].name, what) == 0)
                        found = &list.entries[i];

        if (!found && getuid() != 0) {
                snprintf(qualified, sizeof(qualified), "%u-%s", (unsigned) getuid(), what);
                for (size_t i = 0; !found && i < list.n_entries; i++)
                        if (strcmp(list.entries[i].name, qualified) == 0)
                                found = &list.entries[i];
        }

        if (!found) {
                log_error_msg("No user namespace '%s' found.", what);
                return -ENOENT;
        }

        *ret_path = strdup(found->path);
        if (!*ret_path) {
                log_error_msg("Out of memory.");
                return -ENOMEM;
        }
        return 0;
}

static int verb_status(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        const char *what;
        int r;

        r = parse_common_options(argc, argv, false);
        if (r >= 0)
                return r;
        if (argc - optind != 1) {
                log_error_msg("'status' takes exactly one argument: a namespace name, id or object path.");
                return EXIT_USAGE;
        }
        what = argv[optind];

        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;

        if (what[0] == '/') {
                if (!sd_bus_object_path_is_valid(what)) {
                        log_error_msg("'%s' is not a valid object path.", what);
                        return EXIT_USAGE;
                }
                path = strdup(what);
                if (!path) {
                        log_error_msg("Out of memory.");
                        return EXIT_FAILURE;
                }
        } else if (find_namespace(bus, what, &path) < 0)
                return EXIT_FAILURE;

        return print_properties(bus, path, USERNS_INTERFACE, true);
}

static int verb_info(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = parse_options_no_arguments(argc, argv, "info");
        if (r >= 0)
                return r;

        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;

        return print_properties(bus, MANAGER_PATH, MANAGER_INTERFACE, false);
}

static int on_namespace_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *event = userdata, *path, *name;
        uint32_t owner;
        int r;

        (void) ret_error;

        r = sd_bus_message_read(m, "osu", &path, &name, &owner);
        if (r < 0) {
                log_error_msg("Ignoring malformed %s signal: %s", sd_bus_message_get_member(m), strerror(-r));
                return 0;
        }

        if (arg_json) {
                _cleanup_json_ struct json_object *o = json_object_new_object();

                if (!o ||
                    json_add(o, "Event", json_object_new_string(event)) < 0 ||
                    json_add(o, "Path", json_object_new_string(path)) < 0 ||
                    json_add(o, "Name", json_object_new_string(name)) < 0 ||
                    json_add(o, "Owner", json_object_new_int64(owner)) < 0) {
                        log_error_msg("Out of memory.");
                        return 0;
                }
                print_json(o);
        } else
                printf("%s %s owner=%" PRIu32 " %s\n", event, name, owner, path);

        /* Readers are usually pipes (scripts, tests): each event must reach
         * them when it happens, not when a buffer fills. */
        fflush(stdout);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) si;
        (void) userdata;
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

static int verb_watch(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r;

        r = parse_options_no_arguments(argc, argv, "watch");
        if (r >= 0)
                return r;

        /* sd-event takes signals through a signalfd, which only sees
         * signals that are blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error_msg("Failed to block signals: %m");
                return EXIT_FAILURE;
        }

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_msg("Failed to allocate event loop: %s", strerror(-r));
                return EXIT_FAILURE;
        }

        r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r < 0) {
                log_error_msg("Failed to watch for signals: %s", strerror(-r));
                return EXIT_FAILURE;
        }

        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;

        /* Matching on the well-known name makes the bus deliver only what the
         * service itself sent: anyone can emit a signal with this interface. */
        r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE,
                                "UserNamespaceNew", on_namespace_signal, (void *) "new");
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, MANAGER_INTERFACE,
                                        "UserNamespaceRemoved", on_namespace_signal, (void *) "removed");
        if (r < 0) {
                log_error_msg("Failed to subscribe to signals: %s", strerror(-r));
                return EXIT_FAILURE;
        }

        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                log_error_msg("Failed to attach bus to event loop: %s", strerror(-r));
                return EXIT_FAILURE;
        }

        /* Without this a lost connection would leave us waiting forever for
         * signals that can no longer arrive. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0) {
                log_error_msg("Failed to set up bus: %s", strerror(-r));
                return EXIT_FAILURE;
        }

        r = sd_event_loop(event);
        if (r < 0) {
                log_error_msg("Event loop failed: %s", strerror(-r));
                return EXIT_FAILURE;
        }
        if (r != EXIT_SUCCESS) {
                log_error_msg("Lost the connection to the system bus.");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

/* What the child reports back through a close-on-exec pipe: the setup step
 * and the errno it failed with. End of file after "go" means exec worked. */
typedef enum RunStep {
        RUN_STEP_USERNS,
        RUN_STEP_CGROUP,
        RUN_STEP_MOUNTNS,
        RUN_STEP_PROPAGATION,
        RUN_STEP_BINFMT,
        RUN_STEP_BPFFS,
        RUN_STEP_SETGROUPS,
        RUN_STEP_SETGID,
        RUN_STEP_SETUID,
        RUN_STEP_EXEC,
} RunStep;

typedef struct RunReport {
        int step;
        int error;
} RunReport;

static const char *const run_step_text[] = {
        [RUN_STEP_USERNS] = "create a user namespace (and a network namespace with --net)",
        [RUN_STEP_CGROUP] = "move into the delegated control group",
        [RUN_STEP_MOUNTNS] = "create a mount namespace",
        [RUN_STEP_PROPAGATION] = "make mounts private in the new mount namespace",
        [RUN_STEP_BINFMT] = "mount a binfmt_misc instance of its own at /proc/sys/fs/binfmt_misc",
        [RUN_STEP_BPFFS] = "attach the delegated bpffs at /sys/fs/bpf",
        [RUN_STEP_SETGROUPS] = "drop supplementary groups",
        [RUN_STEP_SETGID] = "switch to the target GID",
        [RUN_STEP_SETUID] = "switch to the target UID",
        [RUN_STEP_EXEC] = "execute",
};

/* The kinds of what a bpffs delegates, as DelegateBpf takes them. */
typedef enum BpfAllowKind {
        BPF_ALLOW_CMDS,
        BPF_ALLOW_MAPS,
        BPF_ALLOW_PROGS,
        BPF_ALLOW_ATTACHS,
        _BPF_ALLOW_KIND_MAX,
} BpfAllowKind;

static const char *const bpf_allow_kind_text[_BPF_ALLOW_KIND_MAX] = {
        [BPF_ALLOW_CMDS] = "cmds",
        [BPF_ALLOW_MAPS] = "maps",
        [BPF_ALLOW_PROGS] = "progs",
        [BPF_ALLOW_ATTACHS] = "attachs",
};

typedef struct RunArgs {
        const char *name;
        uint32_t size;
        uint32_t target;
        uint64_t flags;
        char **command;
        const char *cgroup;     /* --cgroup: where the namespace's leaf is made */
        int cgroup_fd;          /* ... opened before the child is forked */
        bool net;               /* --net: a network namespace with a veth */
        const char *ifname;     /* --ifname: the veth's name inside; NULL: the service's default */
        bool bpf_token;         /* --bpf-token: a delegated bpffs at /sys/fs/bpf */
        bool bpf_allow_given;   /* --bpf-allow: kinds it does not name delegate nothing */
        char **bpf_allow[_BPF_ALLOW_KIND_MAX]; /* ... names per kind; NULL: not named */
        bool binfmt;            /* --binfmt: a binfmt_misc instance of its own */
} RunArgs;

/* What the parent sends once the namespace is ready: "go", and what the
 * child sets up before it runs the command. One datagram, with the
 * delegated bpffs' mount fd attached for --bpf-token. */
typedef struct RunGo {
        char go;                        /* 'g' */
        char cgroup_leaf[NAME_MAX + 1]; /* in RunArgs.cgroup_fd; empty: stay where we are */
} RunGo;

static ssize_t read_full(int fd, void *buf, size_t size) {
        size_t done = 0;

        while (done < size) {
                ssize_t n = read(fd, (char *) buf + done, size - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

static int write_full(int fd, const void *buf, size_t size) {
        size_t done = 0;

        while (done < size) {
                ssize_t n = write(fd, (const char *) buf + done, size - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) n;
        }
        return 0;
}

/* "go" to the child, with fd (unless -1) passed along. */
static int send_go(int sock, const RunGo *go, int fd) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) go, .iov_len = sizeof(*go) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (fd >= 0) {
                struct cmsghdr *cmsg;

                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof(control.buf);
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
        }

        while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* The child's side: 0 with *ret_fd the passed fd or -1, -EBADMSG for
 * anything but one whole RunGo with at most one fd. */
static int receive_go(int sock, RunGo *ret_go, int *ret_fd) {
        union {
                struct cmsghdr header;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = ret_go, .iov_len = sizeof(*ret_go) };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        struct cmsghdr *cmsg;
        ssize_t n;
        int fd = -1;

        /* Close-on-exec at once: CMD must not inherit the mount fd. */
        while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0)
                if (errno != EINTR)
                        return -errno;

        for (cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg))
                if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
                    cmsg->cmsg_len == CMSG_LEN(sizeof(int)))
                        memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));

        if (n != (ssize_t) sizeof(*ret_go) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                safe_close(fd);
                return -EBADMSG;
        }
        *ret_fd = fd;
        return 0;
}

static _Noreturn void run_child_fail(int report_fd, RunStep step, int error) {
        RunReport report = { .step = step, .error = error };

        (void) write_full(report_fd, &report, sizeof(report));
        _exit(EXIT_FAILURE);
}

/* The service decides whether setgroups() stays allowed (it does for a
 * transient range, not where the caller's own ids are mapped); follow what it
 * wrote rather than guessing from our flags. */
static bool setgroups_allowed(void) {
        _cleanup_close_ int fd = -1;
        char buf[16] = {};

        fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return true;
        if (read(fd, buf, sizeof(buf) - 1) < 0)
                return true;
        return strncmp(buf, "deny", 4) != 0;
}

/* The first move into the leaf: it needs write access to the leaf's
 * cgroup.procs, which is the namespace's (we hold every capability in the
 * namespace until we switch ids), and to that of the common ancestor of
 * where we are and the leaf, which is the caller's own if nsresctl runs in
 * the subtree of the cgroup the leaf was made in. */
static int join_cgroup(int cgroup_fd, const char *leaf) {
        _cleanup_close_ int fd = -1, dir = -1;

        dir = openat(cgroup_fd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return -errno;
        fd = openat(dir, "cgroup.procs", O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* "0": whoever writes. */
        return write_full(fd, "0", 1);
}

static _Noreturn void run_child(const RunArgs *a, pid_t parent, int report_fd, int go_fd) {
        RunReport report = { .step = RUN_STEP_USERNS };
        RunGo go = {};
        int bpffs_fd = -1, r;

        /* Until "go" we wait in an unmapped namespace; if nsresctl dies
         * meanwhile no "go" can ever come. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(EXIT_FAILURE);
        if (getppid() != parent)
                _exit(EXIT_FAILURE);

        /* In one call: the network namespace then belongs to the new user
         * namespace, which the service checks before it puts a veth in. */
        if (unshare(CLONE_NEWUSER | (a->net ? CLONE_NEWNET : 0)) < 0)
                run_child_fail(report_fd, RUN_STEP_USERNS, errno);

        if (write_full(report_fd, &report, sizeof(report)) < 0)
                _exit(EXIT_FAILURE);

        if (receive_go(go_fd, &go, &bpffs_fd) < 0 || go.go != 'g' ||
            go.cgroup_leaf[sizeof(go.cgroup_leaf) - 1] != '\0' || (bpffs_fd >= 0) != a->bpf_token)
                _exit(EXIT_FAILURE);

        if (go.cgroup_leaf[0]) {
                r = join_cgroup(a->cgroup_fd, go.cgroup_leaf);
                if (r < 0)
                        run_child_fail(report_fd, RUN_STEP_CGROUP, -r);
        }

        /* A private mount namespace, owned by the new user namespace, lets
         * CMD mount as its root without touching the host's mounts. */
        if (unshare(CLONE_NEWNS) < 0)
                run_child_fail(report_fd, RUN_STEP_MOUNTNS, errno);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                run_child_fail(report_fd, RUN_STEP_PROPAGATION, errno);

        /* Both need our capabilities in the namespace: before we switch ids.
         * The binfmt_misc instance is the user namespace's own: what CMD
         * registers there applies inside it only, never on the host. */
        if (a->binfmt &&
            mount("binfmt_misc", "/proc/sys/fs/binfmt_misc", "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  NULL) < 0)
                run_child_fail(report_fd, RUN_STEP_BINFMT, errno);
        if (bpffs_fd >= 0) {
                if (move_mount(bpffs_fd, "", AT_FDCWD, "/sys/fs/bpf", MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        run_child_fail(report_fd, RUN_STEP_BPFFS, errno);
                bpffs_fd = safe_close(bpffs_fd);
        }

        /* The caller's supplementary groups are not part of the range; drop
         * them where the service allows it. Where it does not, those not
         * mapped show up as the overflow group inside. */
        if (setgroups_allowed() && setgroups(0, NULL) < 0)
                run_child_fail(report_fd, RUN_STEP_SETGROUPS, errno);
        if (setresgid(a->target, a->target, a->target) < 0)
                run_child_fail(report_fd, RUN_STEP_SETGID, errno);
        if (setresuid(a->target, a->target, a->target) < 0)
                run_child_fail(report_fd, RUN_STEP_SETUID, errno);

        execvp(a->command[0], a->command);
        run_child_fail(report_fd, RUN_STEP_EXEC, errno);
}

static void nsres_client_freep(NsresClient **c) {
        nsres_client_free(*c);
}

/* The service's messages are written for users, so they are shown as they
 * are; only where there is none do the error's name or errno text stand in. */
void log_client_error(const NsresClient *client, int r, const char *what) {
        const char *message = nsres_client_error_message(client);

        if (r == -EREMOTEIO && message)
                log_error_msg("%s", message);
        else if (r == -EREMOTEIO && nsres_client_error_name(client))
                log_error_msg("%s: %s", what, nsres_client_error_name(client));
        else
                log_error_msg("%s: %s", what, strerror(-r));
}

/* A new leaf in a->cgroup, delegated to the namespace: its name there. */
static int delegate_cgroup(NsresClient *client, const RunArgs *a, int userns_fd, char *ret_leaf, size_t size,
                           char **ret_path) {
        _cleanup_free_ char *path = NULL;
        const char *leaf;
        int r;

        r = nsres_add_cgroup(client, userns_fd, a->cgroup_fd, NSRES_CGROUP_CREATE_CHILD, &path);
        if (r < 0) {
                log_client_error(client, r, "Failed to delegate a control group");
                return r;
        }

        /* CREATE_CHILD makes the leaf right in the cgroup we passed. */
        leaf = strrchr(path, '/');
        leaf = leaf ? leaf + 1 : path;
        if (!*leaf || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0 || strlen(leaf) >= size) {
                log_error_msg("The service named an unexpected control group: '%s'.", path);
                return -EBADMSG;
        }
        strcpy(ret_leaf, leaf);
        *ret_path = TAKE_PTR(path);
        return 0;
}

/* A veth whose peer the service creates in the child's network namespace. */
static int add_network(NsresClient *client, const RunArgs *a, int userns_fd, pid_t child, char **ret_host,
                       char **ret_inside) {
        _cleanup_close_ int netns_fd = -1;
        char proc_path[64];
        int r;

        snprintf(proc_path, sizeof(proc_path), "/proc/%d/ns/net", (int) child);
        netns_fd = open(proc_path, O_RDONLY | O_CLOEXEC);
        if (netns_fd < 0) {
                r = -errno;
                log_error_msg("Failed to open %s: %m", proc_path);
                return r;
        }

        r = nsres_add_network(client, userns_fd, netns_fd, a->ifname, ret_host, ret_inside);
        if (r < 0)
                log_client_error(client, r, "Failed to add a network interface");
        return r;
}

/* A bpffs for the namespace, delegating what --bpf-allow names (without
 * it, anything): the O_PATH fd of its detached mount. */
static int delegate_bpf(NsresClient *client, const RunArgs *a, int userns_fd, int *ret_bpffs_fd) {
        static const char *const any[] = { "any", NULL }, *const none[] = { NULL };
        const char *const *names[_BPF_ALLOW_KIND_MAX];
        int r;

        for (size_t k = 0; k < _BPF_ALLOW_KIND_MAX; k++)
                names[k] = !a->bpf_allow_given ? any : a->bpf_allow[k] ? (const char *const *) a->bpf_allow[k] : none;

        r = nsres_delegate_bpf(client, userns_fd, names[BPF_ALLOW_CMDS], names[BPF_ALLOW_MAPS],
                               names[BPF_ALLOW_PROGS], names[BPF_ALLOW_ATTACHS], ret_bpffs_fd);
        if (r < 0)
                log_client_error(client, r, "Failed to delegate BPF");
        return r;
}

/* Forwards termination signals to the command until it exits, then returns
 * its exit status the way a shell reports it. Signals a terminal sends reach
 * the command directly (same process group) and are not sent twice. */
int run_wait_child(pid_t child, const sigset_t *mask) {
        for (;;) {
                siginfo_t si = {};
                int status;
                pid_t p;

                p = waitpid(child, &status, WNOHANG);
                if (p < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_msg("Failed to wait for the command: %m");
                        return EXIT_FAILURE;
                }
                if (p == child) {
                        if (WIFEXITED(status))
                                return WEXITSTATUS(status);
                        if (WIFSIGNALED(status))
                                return 128 + WTERMSIG(status);
                        return EXIT_FAILURE;
                }

                if (sigwaitinfo(mask, &si) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_msg("Failed to wait for signals: %m");
                        return EXIT_FAILURE;
                }

                if (si.si_signo != SIGCHLD && si.si_code != SI_KERNEL)
                        (void) kill(child, si.si_signo);
        }
}

static void run_kill_child(pid_t child) {
        (void) kill(child, SIGKILL);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
}

static int run_command(const RunArgs *a) {
        _cleanup_close_ int report_r = -1, report_w = -1, go_r = -1, go_w = -1, bpffs_fd = -1;
        _cleanup_(nsres_client_freep) NsresClient *client = NULL;
        _cleanup_(nsres_allocation_done) NsresAllocation allocation = {};
        static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
        _cleanup_free_ char *cgroup_path = NULL, *host_ifname = NULL, *inside_ifname = NULL;
        char proc_path[64];
        RunGo go = { .go = 'g' };
        RunReport report;
        sigset_t mask;
        pid_t parent, child;
        ssize_t n;
        int pipe_fds[2], r;

        if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
                log_error_msg("Failed to create pipe: %m");
                return EXIT_FAILURE;
        }
        report_r = pipe_fds[0];
        report_w = pipe_fds[1];
        /* Datagrams, not a pipe: "go" may carry the bpffs' fd. */
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipe_fds) < 0) {
                log_error_msg("Failed to create socket pair: %m");
                return EXIT_FAILURE;
        }
        go_r = pipe_fds[0];
        go_w = pipe_fds[1];

        /* Anything buffered would otherwise be written twice. */
        fflush(stdout);
        fflush(stderr);

        parent = getpid();
        child = fork();
        if (child < 0) {
                log_error_msg("Failed to fork: %m");
                return EXIT_FAILURE;
        }
        if (child == 0) {
                report_r = safe_close(report_r);
                go_w = safe_close(go_w);
                run_child(a, parent, report_w, go_r);
        }

        /* Only the child may hold these: the end of file on the report pipe
         * is how we learn that exec() succeeded. */
        report_w = safe_close(report_w);
        go_r = safe_close(go_r);

        /* The child may be gone by the time we say "go"; that must show up as
         * its exit status, not kill us. */
        signal(SIGPIPE, SIG_IGN);

        n = read_full(report_r, &report, sizeof(report));
        if (n != (ssize_t) sizeof(report) || report.error != 0) {
                if (n == (ssize_t) sizeof(report))
                        log_error_msg("Failed to %s: %s", run_step_text[RUN_STEP_USERNS], strerror(report.error));
                else
                        log_error_msg("Failed to %s: the child process exited.", run_step_text[RUN_STEP_USERNS]);
                run_kill_child(child);
                return EXIT_FAILURE;
        }

        {
                _cleanup_close_ int userns_fd = -1;

                snprintf(proc_path, sizeof(proc_path), "/proc/%d/ns/user", (int) child);
                /* The child is ours and not yet reaped, so its pid cannot have
                 * been reused: this is the namespace it just created. */
                userns_fd = open(proc_path, O_RDONLY | O_CLOEXEC);
                if (userns_fd < 0) {
                        log_error_msg("Failed to open %s: %m", proc_path);
                        run_kill_child(child);
                        return EXIT_FAILURE;
                }

                r = nsres_client_new(&client);
                if (r < 0)
                        log_error_msg("Failed to connect to the system bus: %s", strerror(-r));
                if (r >= 0) {
                        nsres_client_set_interactive(client, arg_ask_password);
                        r = nsres_allocate(client, userns_fd, a->name, a->size, a->target, a->flags, &allocation);
                        if (r < 0)
                                log_client_error(client, r, "Failed to allocate a user range");
                }
                if (r >= 0 && a->cgroup)
                        r = delegate_cgroup(client, a, userns_fd, go.cgroup_leaf, sizeof(go.cgroup_leaf),
                                            &cgroup_path);
                if (r >= 0 && a->net)
                        r = add_network(client, a, userns_fd, child, &host_ifname, &inside_ifname);
                if (r >= 0 && a->bpf_token)
                        r = delegate_bpf(client, a, userns_fd, &bpffs_fd);
                if (r < 0) {
                        run_kill_child(child);
                        return EXIT_FAILURE;
                }
        }

        if (arg_verbose) {
                char uids[32], gids[32], inside[32];

                format_id_range(allocation.uid_start, a->size, uids, sizeof(uids));
                format_id_range(allocation.gid_start, a->size, gids, sizeof(gids));
                format_id_range(a->target, a->size, inside, sizeof(inside));
                fprintf(stderr, "nsresctl: Allocated '%s': UIDs %s, GIDs %s, as %s inside, %s\n",
                        allocation.name, uids, gids, inside, allocation.object_path);
                if (cgroup_path)
                        fprintf(stderr, "nsresctl: Control group %s delegated to '%s'\n", cgroup_path,
                                allocation.name);
                if (host_ifname)
                        fprintf(stderr, "nsresctl: Network interface %s inside, %s on the host\n",
                                inside_ifname, host_ifname);
                if (bpffs_fd >= 0)
                        fprintf(stderr, "nsresctl: BPF delegated to '%s': its bpffs at /sys/fs/bpf inside\n",
                                allocation.name);
        }

        /* From "go" on we only relay signals; block them first so none is
         * lost between now and sigwaitinfo(). */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
                sigaddset(&mask, forwarded[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error_msg("Failed to block signals: %m");
                run_kill_child(child);
                return EXIT_FAILURE;
        }

        (void) send_go(go_w, &go, bpffs_fd);
        go_w = safe_close(go_w);
        bpffs_fd = safe_close(bpffs_fd);

        n = read_full(report_r, &report, sizeof(report));
        if (n == (ssize_t) sizeof(report)) {
                int step = report.step >= 0 && report.step <= RUN_STEP_EXEC ? report.step : RUN_STEP_EXEC;

                while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                        ;
                if (step == RUN_STEP_EXEC) {
                        log_error_msg("Failed to execute '%s': %s", a->command[0], strerror(report.error));
                        return report.error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
                }
                log_error_msg("Failed to %s: %s", run_step_text[step], strerror(report.error));
                if (step == RUN_STEP_CGROUP && report.error == EACCES)
                        log_error_msg("Moving into %s needs write access to the cgroup.procs of the closest cgroup "
                                      "above both it and the one nsresctl runs in: run nsresctl inside '%s', a "
                                      "cgroup you own.", cgroup_path, a->cgroup);
                if (step == RUN_STEP_BINFMT && report.error == EPERM)
                        log_error_msg("A binfmt_misc instance in a user namespace needs Linux 6.7 or later.");
                return EXIT_FAILURE;
        }

        return run_wait_child(child, &mask);
}

/* A name per run, so two runs of the same command do not collide on the
 * system-wide unique name; the service mangles what is not valid. */
static int default_run_name(const char *command, char **ret) {
        const char *base = strrchr(command, '/');

        base = base ? base + 1 : command;
        if (!*base)
                base = "run";

        if (asprintf(ret, "%s-%d", base, (int) getpid()) < 0)
                return -ENOMEM;
        return 0;
}

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

static void run_args_done(RunArgs *a) {
        for (size_t k = 0; k < _BPF_ALLOW_KIND_MAX; k++)
                strv_free(a->bpf_allow[k]);
}

/* "map_create:prog_load" to its names; "" to none. */
static int split_bpf_names(const char *value, char ***ret) {
        size_t n = *value ? 1 : 0, i = 0;
        char **l;

        for (const char *c = value; *c; c++)
                n += *c == ':';
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (const char *p = value; i < n; i++) {
                size_t len = strcspn(p, ":");

                if (len == 0) {
                        strv_free(l);
                        return -EINVAL;
                }
                l[i] = strndup(p, len);
                if (!l[i]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                p += len + 1;
        }
        *ret = l;
        return 0;
}

/* --bpf-allow=cmds=map_create:prog_load,maps=array; may be repeated. The
 * names themselves are the service's to check: it knows the kernel's. */
static int parse_bpf_allow(const char *spec, RunArgs *a) {
        _cleanup_free_ char *copy = strdup(spec);
        char *p, *item;
        int r;

        if (!copy) {
                log_error_msg("Out of memory.");
                return -ENOMEM;
        }
        for (p = copy; (item = strsep(&p, ","));) {
                char *value = strchr(item, '=');
                size_t k;

                if (!value) {
                        log_error_msg("Invalid --bpf-allow '%s': expected KIND=NAME[:NAME...], "
                                      "KIND being cmds, maps, progs or attachs.", spec);
                        return -EINVAL;
                }
                *value++ = '\0';
                for (k = 0; k < _BPF_ALLOW_KIND_MAX; k++)
                        if (strcmp(item, bpf_allow_kind_text[k]) == 0)
                                break;
                if (k == _BPF_ALLOW_KIND_MAX) {
                        log_error_msg("Invalid --bpf-allow '%s': unknown kind '%s', expected cmds, maps, "
                                      "progs or attachs.", spec, item);
                        return -EINVAL;
                }
                if (a->bpf_allow[k]) {
                        log_error_msg("--bpf-allow names '%s' more than once.", item);
                        return -EINVAL;
                }
                r = split_bpf_names(value, &a->bpf_allow[k]);
                if (r == -EINVAL) {
                        log_error_msg("Invalid --bpf-allow '%s': empty name in '%s'.", spec, value);
                        return r;
                }
                if (r < 0) {
                        log_error_msg("Out of memory.");
                        return r;
                }
        }
        a->bpf_allow_given = true;
        return 0;
}

static int verb_run(int argc, char *argv[]) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                { "name",       required_argument, NULL, ARG_NAME       },
                { "size",       required_argument, NULL, ARG_SIZE       },
                { "self",       no_argument,       NULL, ARG_SELF       },
                { "map-caller", no_argument,       NULL, ARG_MAP_CALLER },
                { "target",     required_argument, NULL, ARG_TARGET     },
                { "mangle",     no_argument,       NULL, ARG_MANGLE     },
                { "cgroup",     required_argument, NULL, ARG_CGROUP     },
                { "net",        no_argument,       NULL, ARG_NET        },
                { "ifname",     required_argument, NULL, ARG_IFNAME     },
                { "bpf-token",  no_argument,       NULL, ARG_BPF_TOKEN  },
                { "bpf-allow",  required_argument, NULL, ARG_BPF_ALLOW  },
                { "binfmt",     no_argument,       NULL, ARG_BINFMT     },
                {}
        };
        _cleanup_free_ char *default_name = NULL;
        _cleanup_close_ int cgroup_fd = -1;
        _cleanup_(run_args_done) RunArgs a = {
                .target = 0,
                .cgroup_fd = -1,
        };
        bool size_given = false;
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+hv", options, NULL)) >= 0) {
                switch (handle_common_option(c)) {
                case OPTION_CONTINUE:
                        continue;
                case OPTION_EXIT_SUCCESS:
                        return EXIT_SUCCESS;
                case OPTION_EXIT_USAGE:
                        return EXIT_USAGE;
                case OPTION_NOT_COMMON:
                        break;
                }

                switch (c) {
                case ARG_NAME:
                        if (!*optarg) {
                                log_error_msg("--name= must not be empty.");
                                return EXIT_USAGE;
                        }
                        a.name = optarg;
                        break;
                case ARG_SIZE:
                        if (parse_uint32(optarg, &a.size) < 0) {
                                log_error_msg("Invalid --size '%s': expected 65536 or 1.", optarg);
                                return EXIT_USAGE;
                        }
                        size_given = true;
                        break;
                case ARG_TARGET:
                        if (parse_uint32(optarg, &a.target) < 0) {
                                log_error_msg("Invalid --target '%s': expected a UID/GID.", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case ARG_SELF:
                        a.flags |= NSRES_SELF;
                        break;
                case ARG_MAP_CALLER:
                        a.flags |= NSRES_MAP_CALLER;
                        break;
                case ARG_MANGLE:
                        a.flags |= NSRES_MANGLE_NAME;
                        break;
                case ARG_CGROUP:
                        if (!*optarg) {
                                log_error_msg("--cgroup= must not be empty.");
                                return EXIT_USAGE;
                        }
                        a.cgroup = optarg;
                        break;
                case ARG_NET:
                        a.net = true;
                        break;
                case ARG_IFNAME:
                        if (!*optarg) {
                                log_error_msg("--ifname= must not be empty.");
                                return EXIT_USAGE;
                        }
                        a.ifname = optarg;
                        break;
                case ARG_BPF_TOKEN:
                        a.bpf_token = true;
                        break;
                case ARG_BPF_ALLOW:
                        r = parse_bpf_allow(optarg, &a);
                        if (r < 0)
                                return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
                        break;
                case ARG_BINFMT:
                        a.binfmt = true;
                        break;
                default:
                        return EXIT_USAGE;
                }
        }

        if (optind >= argc) {
                log_error_msg("'run' needs a command to run.");
                return EXIT_USAGE;
        }
        a.command = argv + optind;

        if (a.flags & NSRES_SELF) {
                if (size_given && a.size != 1) {
                        log_error_msg("--self maps a single UID/GID; it cannot be combined with --size=%" PRIu32 ".",
                                      a.size);
                        return EXIT_USAGE;
                }
                a.size = 1;
        } else if (!size_given)
                a.size = DEFAULT_RANGE_SIZE;

        if (a.ifname && !a.net) {
                log_error_msg("--ifname names the interface --net adds; it needs --net.");
                return EXIT_USAGE;
        }
        if (a.net && (a.flags & NSRES_SELF)) {
                log_error_msg("--net needs a range of the namespace's own; it cannot be combined with --self.");
                return EXIT_USAGE;
        }
        if (a.bpf_allow_given && !a.bpf_token) {
                log_error_msg("--bpf-allow says what --bpf-token delegates; it needs --bpf-token.");
                return EXIT_USAGE;
        }
        /* The bpffs' root belongs to the namespace's own first ids. */
        if (a.bpf_token && (a.flags & NSRES_SELF)) {
                log_error_msg("--bpf-token needs a range of the namespace's own; "
                              "it cannot be combined with --self.");
                return EXIT_USAGE;
        }

        if (a.cgroup) {
                /* A delegated cgroup is owned by the namespace's own first
                 * ids; with --self there are none. */
                if (a.flags & NSRES_SELF) {
                        log_error_msg("--cgroup needs a range of the namespace's own; "
                                      "it cannot be combined with --self.");
                        return EXIT_USAGE;
                }
                /* Opened before the child is forked: it inherits the fd. */
                cgroup_fd = open(a.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (cgroup_fd < 0) {
                        log_error_msg("Failed to open control group '%s': %m", a.cgroup);
                        return EXIT_FAILURE;
                }
                a.cgroup_fd = cgroup_fd;
        }

        if (!a.name) {
                r = default_run_name(a.command[0], &default_name);
                if (r < 0) {
                        log_error_msg("Out of memory.");
                        return EXIT_FAILURE;
                }
                a.name = default_name;
                a.flags |= NSRES_MANGLE_NAME;
        }

        return run_command(&a);
}

static int print_doctor_json(const DoctorReport *report) {
        _cleanup_json_ struct json_object *o = json_object_new_object(), *checks = json_object_new_array();
        unsigned counts[_CHECK_STATUS_MAX] = {};

        if (!o || !checks)
                goto oom;

        for (size_t i = 0; i < report->n_checks; i++) {
                const Check *c = &report->checks[i];
                struct json_object *j = json_object_new_object();

                if (!j || json_object_array_add(checks, j) < 0) {
                        json_object_put(j);
                        goto oom;
                }
                if (json_add(j, "id", json_object_new_string(c->id)) < 0 ||
                    json_add(j, "status", json_object_new_string(check_status_to_string(c->status))) < 0 ||
                    json_add(j, "message", json_object_new_string(c->message)) < 0)
                        goto oom;
                /* Every key always present: "fix" is null when there is
                 * nothing to do. */
                if (c->fix ? json_add(j, "fix", json_object_new_string(c->fix)) < 0
                           : json_object_object_add(j, "fix", NULL) < 0)
                        goto oom;
                counts[c->status]++;
        }

        if (json_add(o, "checks", TAKE_PTR(checks)) < 0 ||
            json_add(o, "failed", json_object_new_int64(counts[CHECK_FAIL])) < 0 ||
            json_add(o, "warnings", json_object_new_int64(counts[CHECK_WARN])) < 0 ||
            json_add(o, "skipped", json_object_new_int64(counts[CHECK_SKIPPED])) < 0)
                goto oom;

        print_json(o);
        return counts[CHECK_FAIL] > 0 ? EXIT_FAILURE : EXIT_SUCCESS;

oom:
        log_error_msg("Out of memory.");
        return EXIT_FAILURE;
}

/* One line per check, problems in capitals so they stand out, the fix
 * indented below. */
static int print_doctor_text(const DoctorReport *report) {
        static const char *const labels[_CHECK_STATUS_MAX] = {
                [CHECK_OK] = "ok",
                [CHECK_WARN] = "WARN",
                [CHECK_FAIL] = "FAIL",
                [CHECK_SKIPPED] = "skip",
        };
        unsigned counts[_CHECK_STATUS_MAX] = {};

        for (size_t i = 0; i < report->n_checks; i++) {
                const Check *c = &report->checks[i];

                printf("%-4s  %s: %s\n", labels[c->status], c->id, c->message);
                if (c->fix)
                        printf("      Fix: %s\n", c->fix);
                counts[c->status]++;
        }

        printf("\n%u failed, %u warning%s, %u skipped, %u ok.\n", counts[CHECK_FAIL], counts[CHECK_WARN],
               counts[CHECK_WARN] == 1 ? "" : "s", counts[CHECK_SKIPPED], counts[CHECK_OK]);
        return counts[CHECK_FAIL] > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int verb_doctor(int argc, char *argv[]) {
        _cleanup_(doctor_report_done) DoctorReport report = {};
        int r;

        r = parse_options_no_arguments(argc, argv, "doctor");
        if (r >= 0)
                return r;

        r = doctor_run(&report);
        if (r < 0) {
                log_error_msg("Out of memory.");
                return EXIT_FAILURE;
        }

        return arg_json ? print_doctor_json(&report) : print_doctor_text(&report);
}

static int verb_bwrap(int argc, char *argv[]) {
        static const struct option options[] = {
                COMMON_OPTIONS,
                { "name", required_argument, NULL, ARG_NAME },
                {}
        };
        _cleanup_free_ char *default_name = NULL;
        BwrapArgs a = {};
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "+hv", options, NULL)) >= 0) {
                switch (handle_common_option(c)) {
                case OPTION_CONTINUE:
                        continue;
                case OPTION_EXIT_SUCCESS:
                        return EXIT_SUCCESS;
                case OPTION_EXIT_USAGE:
                        return EXIT_USAGE;
                case OPTION_NOT_COMMON:
                        break;
                }

                if (c != ARG_NAME)
                        return EXIT_USAGE;
                if (!*optarg) {
                        log_error_msg("--name= must not be empty.");
                        return EXIT_USAGE;
                }
                a.name = optarg;
        }

        if (optind >= argc) {
                log_error_msg("'bwrap' needs bwrap's arguments: its options and the command to run.");
                return EXIT_USAGE;
        }
        a.args = argv + optind;

        if (!a.name) {
                if (asprintf(&default_name, "bwrap-%d", (int) getpid()) < 0) {
                        log_error_msg("Out of memory.");
                        return EXIT_FAILURE;
                }
                a.name = default_name;
                a.mangle_name = true;
        }
        a.ask_password = arg_ask_password;
        a.verbose = arg_verbose;

        return bwrap_run(&a);
}

static const struct {
        const char *name;
        int (*run)(int argc, char *argv[]);
} verbs[] = {
        { "run",    verb_run    },
        { "bwrap",  verb_bwrap  },
        { "list",   verb_list   },
        { "status", verb_status },
        { "info",   verb_info   },
        { "watch",  verb_watch  },
        { "doctor", verb_doctor },
};

int main(int argc, char *argv[]) {
        const char *verb;
        int r;

        /* getopt prefixes its messages with argv[0]; a full path there is noise. */
        argv[0] = program_invocation_short_name;

        /* Verb functions return the exit status directly: run passes on the
         * command's own. */
        r = parse_common_options(argc, argv, true);
        if (r >= 0)
                return r;

        if (optind >= argc) {
                log_error_msg("Missing command. See 'nsresctl --help'.");
                return EXIT_USAGE;
        }
        verb = argv[optind];

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verbs[i].name, verb) == 0) {
                        argv[optind] = argv[0];
                        return verbs[i].run(argc - optind, argv + optind);
                }

        log_error_msg("Unknown command '%s'. See 'nsresctl --help'.", verb);
        return EXIT_USAGE;
}
