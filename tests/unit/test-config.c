/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "test-util.h"
#include "util.h"

static const char *tmp_root;

static bool configs_equal(const Config *a, const Config *b) {
        return a->range_start == b->range_start && a->range_end == b->range_end &&
               a->single_range_start == b->single_range_start && a->single_range_end == b->single_range_end &&
               a->max_namespaces_per_owner == b->max_namespaces_per_owner &&
               a->max_requests_per_owner == b->max_requests_per_owner &&
               a->max_control_groups == b->max_control_groups &&
               a->control_group_max_descendants == b->control_group_max_descendants &&
               a->control_group_max_depth == b->control_group_max_depth &&
               a->max_network_interfaces == b->max_network_interfaces &&
               a->max_network_interfaces_per_owner == b->max_network_interfaces_per_owner &&
               a->restriction == b->restriction && a->polkit_timeout_sec == b->polkit_timeout_sec &&
               a->teardown_ring_buffer_size == b->teardown_ring_buffer_size;
}

/* Parsing `text` must fail with a message that contains `needle`, and leave
 * the configuration as it was. */
static bool parse_fails(const char *text, const char *needle) {
        _cleanup_free_ char *error = NULL;
        Config c, before;
        int r;

        config_defaults(&c);
        before = c;
        r = config_parse_text(&c, text, "test.conf", &error);
        if (r != -EINVAL || !error || !strstr(error, needle) || !configs_equal(&c, &before)) {
                fprintf(stderr, "for %s\n  got r=%d error=%s, wanted '%s'\n", text, r, error ? error : "(null)", needle);
                return false;
        }
        /* Without a place for the message the result is the same. */
        return config_parse_text(&c, text, "test.conf", NULL) == -EINVAL;
}

static void test_defaults(void) {
        _cleanup_free_ char *error = NULL;
        Config c;

        config_defaults(&c);
        CHECK(c.range_start == 524288);
        CHECK(c.range_end == 1879048191);
        CHECK(c.single_range_start == 61184);
        CHECK(c.single_range_end == 65519);
        CHECK(c.max_namespaces_per_owner == 256);
        CHECK(c.max_requests_per_owner == 32);
        CHECK(c.max_control_groups == 16);
        CHECK(c.control_group_max_descendants == 256);
        CHECK(c.control_group_max_depth == 16);
        CHECK(c.max_network_interfaces == 16);
        CHECK(c.max_network_interfaces_per_owner == 64);
        CHECK(c.restriction == RESTRICTION_ENFORCE);
        CHECK(c.polkit_timeout_sec == 25);
        CHECK(c.teardown_ring_buffer_size == 262144);
        CHECK(config_verify(&c, &error) == 0);
        CHECK(error == NULL);

        CHECK(strcmp(restriction_mode_to_string(RESTRICTION_ENFORCE), "enforce") == 0);
        CHECK(strcmp(restriction_mode_to_string(RESTRICTION_PERMISSIVE), "permissive") == 0);
        CHECK(strcmp(restriction_mode_to_string(RESTRICTION_OFF), "off") == 0);
        CHECK(restriction_mode_to_string((RestrictionMode) 17) == NULL);
}

static void test_every_key(void) {
        static const char text[] =
                "# nsresd configuration\n"
                "; another comment style\n"
                "\n"
                "[Allocator]\n"
                "RangeStart=1048576\n"
                "  RangeEnd  =  2147483647  \n"
                "SingleRangeStart=\t60000\t\n"
                "SingleRangeEnd=60999   # inline comment\n"
                "MaxNamespacesPerOwner=1\n"
                "MaxRequestsPerOwner=4294967295\n"
                "\t# indented comment\n"
                "[Delegation]\n"
                "MaxControlGroups=3\n"
                "ControlGroupMaxDescendants=7\n"
                "ControlGroupMaxDepth = 2\n"
                "MaxNetworkInterfaces=4\n"
                "MaxNetworkInterfacesPerOwner=5\r\n"
                "  [Security]  # trailing comment\n"
                "Restriction=permissive\n";
        _cleanup_free_ char *error = NULL;
        Config c;

        config_defaults(&c);
        CHECK(config_parse_text(&c, text, "test.conf", &error) == 0);
        CHECK(error == NULL);
        CHECK(c.range_start == 1048576);
        CHECK(c.range_end == 2147483647);
        CHECK(c.single_range_start == 60000);
        CHECK(c.single_range_end == 60999);
        CHECK(c.max_namespaces_per_owner == 1);
        CHECK(c.max_requests_per_owner == 4294967295u);
        CHECK(c.max_control_groups == 3);
        CHECK(c.control_group_max_descendants == 7);
        CHECK(c.control_group_max_depth == 2);
        CHECK(c.max_network_interfaces == 4);
        CHECK(c.max_network_interfaces_per_owner == 5);
        CHECK(c.restriction == RESTRICTION_PERMISSIVE);
        CHECK(config_verify(&c, &error) == 0);

        CHECK(config_parse_text(&c, "[Security]\nRestriction=off", "t", NULL) == 0);
        CHECK(c.restriction == RESTRICTION_OFF);
        CHECK(config_parse_text(&c, "[Security]\nRestriction = enforce # yes", "t", NULL) == 0);
        CHECK(c.restriction == RESTRICTION_ENFORCE);
        CHECK(config_parse_text(&c, "[Security]\nPolkitTimeoutSec=2\n", "t", NULL) == 0);
        CHECK(c.polkit_timeout_sec == 2);
        CHECK(config_parse_text(&c, "[Security]\nPolkitTimeoutSec=3600\n", "t", NULL) == 0);
        CHECK(c.polkit_timeout_sec == 3600);
        CHECK(config_parse_text(&c, "[Tracking]\nTeardownRingBufferSize=4096\n", "t", NULL) == 0);
        CHECK(c.teardown_ring_buffer_size == 4096);
        CHECK(config_parse_text(&c, "[Tracking]\nTeardownRingBufferSize=67108864\n", "t", NULL) == 0);
        CHECK(c.teardown_ring_buffer_size == 67108864);

        /* Ids take the whole 32-bit range, sections may repeat, an empty text changes nothing. */
        CHECK(config_parse_text(&c, "[Allocator]\nSingleRangeStart=0\n[Security]\n[Allocator]\nSingleRangeEnd=4294967295\n",
                                "t", NULL) == 0);
        CHECK(c.single_range_start == 0 && c.single_range_end == 4294967295u);
        /* The highest values each limit takes. */
        CHECK(config_parse_text(&c, "[Delegation]\nMaxControlGroups=256\nControlGroupMaxDescendants=2147483647\n"
                                "ControlGroupMaxDepth=64\n", "t", NULL) == 0);
        CHECK(c.max_control_groups == 256 && c.control_group_max_descendants == 2147483647u &&
              c.control_group_max_depth == 64);
        {
                Config before = c;

                CHECK(config_parse_text(&c, "", "t", NULL) == 0);
                CHECK(config_parse_text(&c, "\n\n# only comments\n", "t", NULL) == 0);
                CHECK(configs_equal(&c, &before));
        }
}

static void test_errors(void) {
        CHECK(parse_fails("[Allocator]\nRangeStart=524288\nBogus=1\n", "test.conf:3:"));
        CHECK(parse_fails("[Allocator]\nRangeStart=524288\nBogus=1\n", "Bogus"));
        CHECK(parse_fails("[Allocator]\n\n[Bogus]\nRangeStart=1\n", "test.conf:3:"));
        CHECK(parse_fails("[Allocator]\n\n[Bogus]\nRangeStart=1\n", "Bogus"));
        CHECK(parse_fails("RangeStart=524288\n", "test.conf:1:"));
        CHECK(parse_fails("[Allocator]\nRangeStart\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator\n", "test.conf:1:"));
        CHECK(parse_fails("[]\n", "test.conf:1:"));
        CHECK(parse_fails("[allocator]\n", "test.conf:1:"));
        CHECK(parse_fails("[Allocator]\n=5\n", "test.conf:2:"));
        /* A key in the wrong section is unknown there. */
        CHECK(parse_fails("[Security]\nRangeStart=524288\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator]\nrangestart=524288\n", "test.conf:2:"));

        /* Bad numbers. */
        CHECK(parse_fails("[Allocator]\nRangeStart=abc\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator]\nRangeStart=\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator]\nRangeStart=-1\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=+5\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=4294967296\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=99999999999999999999999\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=0x80000\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=1 2\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=524288#glued\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]#glued\n", "test.conf:1:"));
        CHECK(parse_fails("[Allocator]\nRangeStart= # no value\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nRangeStart=524288 ; not a comment here\n", "RangeStart"));
        CHECK(parse_fails("[Allocator]\nMaxNamespacesPerOwner=0\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator]\nMaxRequestsPerOwner=0\n", "MaxRequestsPerOwner"));
        CHECK(parse_fails("[Delegation]\nMaxControlGroups=0\n", "MaxControlGroups"));
        /* What one registry entry can hold. */
        CHECK(parse_fails("[Delegation]\nMaxControlGroups=257\n", "from 1 to 256"));
        /* The kernel takes an int; the teardown walk holds an fd per level. */
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDescendants=0\n", "ControlGroupMaxDescendants"));
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDescendants=2147483648\n", "from 1 to 2147483647"));
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDescendants=max\n", "ControlGroupMaxDescendants"));
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDepth=0\n", "test.conf:2:"));
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDepth=65\n", "from 1 to 64"));
        CHECK(parse_fails("[Delegation]\nControlGroupMaxDepth=-1\n", "ControlGroupMaxDepth"));
        CHECK(parse_fails("[Allocator]\nControlGroupMaxDepth=4\n", "Unknown key"));
        CHECK(parse_fails("[Delegation]\nMaxNetworkInterfaces=0\n", "MaxNetworkInterfaces"));
        CHECK(parse_fails("[Delegation]\nMaxNetworkInterfacesPerOwner=-3\n", "MaxNetworkInterfacesPerOwner"));
        CHECK(parse_fails("[Security]\nRestriction=bogus\n", "test.conf:2:"));
        CHECK(parse_fails("[Security]\nRestriction=Enforce\n", "Restriction"));
        CHECK(parse_fails("[Security]\nRestriction=\n", "Restriction"));
        /* A check that may never time out would hold its reservations forever. */
        CHECK(parse_fails("[Security]\nPolkitTimeoutSec=0\n", "PolkitTimeoutSec"));
        CHECK(parse_fails("[Security]\nPolkitTimeoutSec=3601\n", "from 1 to 3600"));
        CHECK(parse_fails("[Security]\nPolkitTimeoutSec=2s\n", "test.conf:2:"));
        CHECK(parse_fails("[Allocator]\nPolkitTimeoutSec=2\n", "Unknown key"));
        /* The kernel takes only a power of two of whole pages for a ring buffer. */
        CHECK(parse_fails("[Tracking]\nTeardownRingBufferSize=5000\n", "power of two"));
        CHECK(parse_fails("[Tracking]\nTeardownRingBufferSize=2048\n", "test.conf:2:"));
        CHECK(parse_fails("[Tracking]\nTeardownRingBufferSize=0\n", "TeardownRingBufferSize"));
        CHECK(parse_fails("[Tracking]\nTeardownRingBufferSize=134217728\n", "67108864"));
        CHECK(parse_fails("[Tracking]\nTeardownRingBufferSize=256k\n", "not '256k'"));
        CHECK(parse_fails("[Security]\nTeardownRingBufferSize=4096\n", "Unknown key"));

        /* The first error counts; earlier good lines are not applied. */
        CHECK(parse_fails("[Allocator]\nRangeStart=1048576\nRangeEnd=x\nBogus=1\n", "test.conf:3:"));
}

static void test_verify(void) {
        static const struct {
                const char *text;
                const char *needle;
        } cases[] = {
                { "RangeStart=524289", "RangeStart" },
                { "RangeEnd=1879048192", "RangeEnd" },
                { "RangeStart=1048576\nRangeEnd=1048575", "RangeEnd" },
                { "RangeStart=1048576\nRangeEnd=983039", "RangeStart" },
                { "RangeStart=0\nRangeEnd=65535\nSingleRangeStart=70000\nSingleRangeEnd=70001", "RangeStart" },
                { "RangeEnd=4294967295", "RangeEnd" },
                { "SingleRangeStart=61185\nSingleRangeEnd=61184", "SingleRangeEnd" },
                { "SingleRangeStart=0", "SingleRangeStart" },
                { "SingleRangeStart=600000\nSingleRangeEnd=600001", "SingleRangeStart" },
                { "SingleRangeStart=600000\nSingleRangeEnd=600001", "RangeStart" },
                { "SingleRangeStart=61184\nSingleRangeEnd=524288", "SingleRangeEnd" },
                { "SingleRangeStart=1879048191\nSingleRangeEnd=1879048200", "RangeEnd" },
                { "SingleRangeStart=1\nSingleRangeEnd=4294967295\nRangeStart=65536\nRangeEnd=131071", "SingleRange" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL, *error = NULL;
                Config c;

                config_defaults(&c);
                CHECK(asprintf(&text, "[Allocator]\n%s\n", cases[i].text) > 0);
                CHECK(config_parse_text(&c, text, "t", NULL) == 0);
                if (config_verify(&c, &error) != -EINVAL || !error || !strstr(error, cases[i].needle)) {
                        fprintf(stderr, "%s:%d: verify of '%s' gave '%s', wanted '%s'\n", __FILE__, __LINE__,
                                cases[i].text, error ? error : "(null)", cases[i].needle);
                        exit(EXIT_FAILURE);
                }
                CHECK(config_verify(&c, NULL) == -EINVAL);
        }

        /* Pools just touching, and the highest usable block. */
        {
                Config c;

                config_defaults(&c);
                c.single_range_start = 65536;
                c.single_range_end = 524287;
                CHECK(config_verify(&c, NULL) == 0);
                c.single_range_end = 524288;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                config_defaults(&c);
                c.range_end = 4294901759u;
                CHECK(config_verify(&c, NULL) == 0);
                c.single_range_start = c.single_range_end = 100;
                CHECK(config_verify(&c, NULL) == 0);
                c.max_control_groups = 0;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                c.max_control_groups = 257;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                config_defaults(&c);
                c.control_group_max_descendants = 0;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                c.control_group_max_descendants = 2147483648u;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                config_defaults(&c);
                c.control_group_max_depth = 0;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                c.control_group_max_depth = 65;
                CHECK(config_verify(&c, NULL) == -EINVAL);
                c.control_group_max_depth = 64;
                CHECK(config_verify(&c, NULL) == 0);
                config_defaults(&c);
                c.restriction = (RestrictionMode) 9;
                CHECK(config_verify(&c, NULL) == -EINVAL);
        }
}

static void test_load(void) {
        _cleanup_free_ char *main_path = test_path_join(tmp_root, "nsresd.conf");
        _cleanup_free_ char *dropins = test_path_join(tmp_root, "nsresd.conf.d");
        _cleanup_free_ char *missing = test_path_join(tmp_root, "missing.conf");
        _cleanup_free_ char *a = test_path_join(dropins, "10-a.conf");
        _cleanup_free_ char *b = test_path_join(dropins, "20-b.conf");
        _cleanup_free_ char *ignored = test_path_join(dropins, "30-c.conf.disabled");
        _cleanup_free_ char *hidden = test_path_join(dropins, ".conf");
        _cleanup_free_ char *bad = test_path_join(dropins, "99-bad.conf");
        _cleanup_free_ char *error = NULL;
        Config c, defaults;

        config_defaults(&defaults);

        /* No file at all: defaults, no message. */
        c = defaults;
        CHECK(config_load(&c, missing, &error) == 0);
        CHECK(error == NULL);
        CHECK(configs_equal(&c, &defaults));

        test_write_text(main_path,
                        "[Allocator]\n"
                        "RangeStart=1048576\n"
                        "MaxNamespacesPerOwner=10\n"
                        "[Security]\n"
                        "Restriction=off\n");
        c = defaults;
        CHECK(config_load(&c, main_path, &error) == 0);
        CHECK(c.range_start == 1048576 && c.max_namespaces_per_owner == 10 && c.restriction == RESTRICTION_OFF);

        /* Drop-ins in lexical order, each overriding what came before. Their
         * directory entries are created in the opposite order on purpose. */
        CHECK(mkdir(dropins, 0755) == 0);
        test_write_text(b, "[Allocator]\nMaxNamespacesPerOwner=30\n[Delegation]\nMaxControlGroups=7\n"
                           "ControlGroupMaxDepth=5\n");
        test_write_text(a, "[Allocator]\nMaxNamespacesPerOwner=20\nMaxRequestsPerOwner=9\n[Security]\nRestriction=permissive\n");
        test_write_text(ignored, "[Allocator]\nMaxNamespacesPerOwner=99\n");
        test_write_text(hidden, "garbage without equals\n");
        c = defaults;
        CHECK(config_load(&c, main_path, &error) == 0);
        CHECK(error == NULL);
        CHECK(c.range_start == 1048576);
        CHECK(c.max_namespaces_per_owner == 30);
        CHECK(c.max_requests_per_owner == 9);
        CHECK(c.max_control_groups == 7);
        CHECK(c.control_group_max_depth == 5);
        CHECK(c.control_group_max_descendants == 256);
        CHECK(c.restriction == RESTRICTION_PERMISSIVE);

        /* Drop-ins apply even without a main file. */
        {
                _cleanup_free_ char *lonely = test_path_join(tmp_root, "lonely.conf");
                _cleanup_free_ char *lonely_d = test_path_join(tmp_root, "lonely.conf.d");
                _cleanup_free_ char *x = test_path_join(lonely_d, "x.conf");

                CHECK(mkdir(lonely_d, 0755) == 0);
                test_write_text(x, "[Delegation]\nMaxNetworkInterfaces=2\n");
                c = defaults;
                CHECK(config_load(&c, lonely, &error) == 0);
                CHECK(c.max_network_interfaces == 2);
        }

        /* An error in a drop-in names that file and line; nothing is applied. */
        test_write_text(bad, "[Allocator]\n\nUnknownKey=1\n");
        c = defaults;
        CHECK(config_load(&c, main_path, &error) == -EINVAL);
        CHECK(error && strstr(error, bad) && strstr(error, "99-bad.conf:3:"));
        CHECK(configs_equal(&c, &defaults));
        free(error);
        error = NULL;
        CHECK(unlink(bad) == 0);

        /* An error in the main file names it. */
        test_write_text(main_path, "[Allocator]\nRangeStart=1048576\n[Nope]\n");
        c = defaults;
        CHECK(config_load(&c, main_path, &error) == -EINVAL);
        CHECK(error && strstr(error, "nsresd.conf:3:"));
        free(error);
        error = NULL;

        /* Values that parse but do not fit together fail verification. */
        test_write_text(main_path, "[Allocator]\nRangeStart=1000\n");
        c = defaults;
        CHECK(config_load(&c, main_path, &error) == -EINVAL);
        CHECK(error && strstr(error, "RangeStart"));
        CHECK(configs_equal(&c, &defaults));
        free(error);
        error = NULL;

        /* A main "file" that cannot be read is an error, not defaults. */
        {
                _cleanup_free_ char *dir = test_path_join(tmp_root, "dir.conf");

                CHECK(mkdir(dir, 0755) == 0);
                c = defaults;
                CHECK(config_load(&c, dir, &error) < 0);
                CHECK(error && strstr(error, dir));
                free(error);
                error = NULL;
        }

        /* A NUL byte is not silently cut off. */
        {
                FILE *f = fopen(main_path, "we");

                CHECK(f);
                fwrite("[Allocator]\nRangeStart=1048576\0\n", 1, 32, f);
                CHECK(fclose(f) == 0);
                c = defaults;
                CHECK(config_load(&c, main_path, &error) == -EINVAL);
                CHECK(error && strstr(error, main_path));
        }
}

/* What a reload logs as changed: every key that differs, and only those. */
static void test_describe_changes(void) {
        _cleanup_free_ char *none = NULL, *some = NULL;
        Config a, b;

        config_defaults(&a);
        b = a;
        none = config_describe_changes(&a, &b);
        CHECK_STREQ(none, "");
        CHECK(!config_pool_differs(&a, &b));

        b.max_namespaces_per_owner = 2;
        b.restriction = RESTRICTION_OFF;
        b.single_range_end = 65000;
        some = config_describe_changes(&a, &b);
        CHECK_STREQ(some, "SingleRangeEnd=65519->65000, MaxNamespacesPerOwner=256->2, Restriction=enforce->off");
        CHECK(config_pool_differs(&a, &b));
}

int main(void) {
        tmp_root = test_tmpdir();

        RUN_TEST(test_defaults);
        RUN_TEST(test_every_key);
        RUN_TEST(test_errors);
        RUN_TEST(test_verify);
        RUN_TEST(test_load);
        RUN_TEST(test_describe_changes);
        return EXIT_SUCCESS;
}
