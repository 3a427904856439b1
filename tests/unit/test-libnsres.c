/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libnsres without the service: its error names, and the namespaces
 * nsres_userns_create() makes. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nsres.h"
#include "test-util.h"
#include "util.h"

#define NOBODY_UID 65534

/* Written out here rather than derived from the library's table, so a
 * misspelt name there fails. */
static const struct {
        NsresError error;
        const char *name;
} expected_names[] = {
        { NSRES_ERROR_NOT_SUPPORTED, "org.freedesktop.NamespaceResource1.Error.NotSupported" },
        { NSRES_ERROR_INVALID_NAME, "org.freedesktop.NamespaceResource1.Error.InvalidName" },
        { NSRES_ERROR_INVALID_SIZE, "org.freedesktop.NamespaceResource1.Error.InvalidSize" },
        { NSRES_ERROR_NAME_EXISTS, "org.freedesktop.NamespaceResource1.Error.NameExists" },
        { NSRES_ERROR_NOT_A_USER_NAMESPACE, "org.freedesktop.NamespaceResource1.Error.NotAUserNamespace" },
        { NSRES_ERROR_NOT_OWNER, "org.freedesktop.NamespaceResource1.Error.NotOwner" },
        { NSRES_ERROR_BAD_NESTING, "org.freedesktop.NamespaceResource1.Error.BadNesting" },
        { NSRES_ERROR_ALREADY_MAPPED, "org.freedesktop.NamespaceResource1.Error.AlreadyMapped" },
        { NSRES_ERROR_USER_NAMESPACE_EXISTS, "org.freedesktop.NamespaceResource1.Error.UserNamespaceExists" },
        { NSRES_ERROR_NO_RANGE_AVAILABLE, "org.freedesktop.NamespaceResource1.Error.NoRangeAvailable" },
        { NSRES_ERROR_TOO_MANY_NAMESPACES, "org.freedesktop.NamespaceResource1.Error.TooManyNamespaces" },
        { NSRES_ERROR_TOO_MANY_REQUESTS, "org.freedesktop.NamespaceResource1.Error.TooManyRequests" },
        { NSRES_ERROR_NOT_REGISTERED, "org.freedesktop.NamespaceResource1.Error.NotRegistered" },
        { NSRES_ERROR_NO_USER_RANGE, "org.freedesktop.NamespaceResource1.Error.NoUserRange" },
        { NSRES_ERROR_NOT_A_CONTROL_GROUP, "org.freedesktop.NamespaceResource1.Error.NotAControlGroup" },
        { NSRES_ERROR_CONTROL_GROUP_NOT_EMPTY, "org.freedesktop.NamespaceResource1.Error.ControlGroupNotEmpty" },
        { NSRES_ERROR_CONTROL_GROUP_ALREADY_ADDED,
          "org.freedesktop.NamespaceResource1.Error.ControlGroupAlreadyAdded" },
        { NSRES_ERROR_TOO_MANY_CONTROL_GROUPS, "org.freedesktop.NamespaceResource1.Error.TooManyControlGroups" },
        { NSRES_ERROR_NOT_A_NETWORK_NAMESPACE, "org.freedesktop.NamespaceResource1.Error.NotANetworkNamespace" },
        { NSRES_ERROR_WRONG_NETWORK_NAMESPACE, "org.freedesktop.NamespaceResource1.Error.WrongNetworkNamespace" },
        { NSRES_ERROR_INVALID_INTERFACE_NAME, "org.freedesktop.NamespaceResource1.Error.InvalidInterfaceName" },
        { NSRES_ERROR_TOO_MANY_NETWORK_INTERFACES,
          "org.freedesktop.NamespaceResource1.Error.TooManyNetworkInterfaces" },
        { NSRES_ERROR_NOT_A_MOUNT, "org.freedesktop.NamespaceResource1.Error.NotAMount" },
        { NSRES_ERROR_BPF_DELEGATION_FAILED, "org.freedesktop.NamespaceResource1.Error.BpfDelegationFailed" },
        { NSRES_ERROR_BAD_CONFIGURATION, "org.freedesktop.NamespaceResource1.Error.BadConfiguration" },
        { NSRES_ERROR_ACCESS_DENIED, "org.freedesktop.DBus.Error.AccessDenied" },
        { NSRES_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
          "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" },
        { NSRES_ERROR_INVALID_ARGS, "org.freedesktop.DBus.Error.InvalidArgs" },
        { NSRES_ERROR_SERVICE_UNKNOWN, "org.freedesktop.DBus.Error.ServiceUnknown" },
};

static void test_error_names(void) {
        bool seen[_NSRES_ERROR_MAX] = {};

        for (size_t i = 0; i < ELEMENTSOF(expected_names); i++) {
                NsresError e = expected_names[i].error;

                CHECK(!seen[e]);
                seen[e] = true;
                CHECK_STREQ(nsres_error_to_name(e), expected_names[i].name);
                CHECK_EQ(nsres_error_from_name(expected_names[i].name), e);
        }

        /* Every value has a row above, or is one of the two without a name. */
        for (int e = 0; e < _NSRES_ERROR_MAX; e++)
                CHECK(seen[e] || e == NSRES_ERROR_NONE || e == NSRES_ERROR_OTHER);

        CHECK(!nsres_error_to_name(NSRES_ERROR_NONE));
        CHECK(!nsres_error_to_name(NSRES_ERROR_OTHER));
        CHECK(!nsres_error_to_name(_NSRES_ERROR_MAX));
        CHECK(!nsres_error_to_name((NsresError) -1));

        CHECK_EQ(nsres_error_from_name(NULL), NSRES_ERROR_NONE);
        CHECK_EQ(nsres_error_from_name(""), NSRES_ERROR_OTHER);
        CHECK_EQ(nsres_error_from_name("org.freedesktop.DBus.Error.NoReply"), NSRES_ERROR_OTHER);
        CHECK_EQ(nsres_error_from_name("org.freedesktop.NamespaceResource1.Error.NameExist"), NSRES_ERROR_OTHER);
        CHECK_EQ(nsres_error_from_name("org.freedesktop.NamespaceResource1.Error.NameExistsAlready"),
                 NSRES_ERROR_OTHER);
        /* What the bus says when there is no nsresd to ask. */
        CHECK_EQ(nsres_error_from_name("org.freedesktop.DBus.Error.NameHasNoOwner"), NSRES_ERROR_SERVICE_UNKNOWN);
        CHECK_EQ(nsres_error_from_name("org.freedesktop.DBus.Error.Spawn.ChildExited"),
                 NSRES_ERROR_SERVICE_UNKNOWN);
}

static void test_client_without_bus(void) {
        NsresClient *c = NULL;

        CHECK_EQ(nsres_client_new(NULL), -EINVAL);

        /* The system bus is where DBUS_SYSTEM_BUS_ADDRESS says. */
        CHECK(setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus", 1) == 0);
        CHECK(nsres_client_new(&c) < 0);
        CHECK(!c);
        CHECK(unsetenv("DBUS_SYSTEM_BUS_ADDRESS") == 0);

        /* A NULL client reads as one without an error. */
        CHECK_EQ(nsres_client_error(NULL), NSRES_ERROR_NONE);
        CHECK(!nsres_client_error_name(NULL));
        CHECK(!nsres_client_error_message(NULL));
        CHECK(!nsres_client_free(NULL));
}

static unsigned count_open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        CHECK(d);
        while (readdir(d))
                n++;
        CHECK(closedir(d) == 0);
        return n;
}

static void check_no_child(void) {
        CHECK_EQ(waitpid(-1, NULL, WNOHANG), -1);
        CHECK_EQ(errno, ECHILD);
}

static void check_ns_fd(int fd, int type) {
        struct statfs sfs;
        int flags;

        CHECK(fstatfs(fd, &sfs) == 0);
        CHECK_EQ(sfs.f_type, NSFS_MAGIC);
        CHECK_EQ(ioctl(fd, NS_GET_NSTYPE), type);
        flags = fcntl(fd, F_GETFD);
        CHECK(flags >= 0 && (flags & FD_CLOEXEC));
}

static bool same_inode(int a, int b) {
        struct stat sa, sb;

        CHECK(fstat(a, &sa) == 0);
        CHECK(fstat(b, &sb) == 0);
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_userns_create(void) {
        unsigned fds_before = count_open_fds();
        int userns_fd = -1, parent_fd, self_fd;
        uid_t owner = (uid_t) -1;

        CHECK_EQ(nsres_userns_create(0, &userns_fd, NULL), 0);
        check_ns_fd(userns_fd, CLONE_NEWUSER);
        CHECK(ioctl(userns_fd, NS_GET_OWNER_UID, &owner) == 0);
        CHECK_EQ(owner, geteuid());

        /* A new namespace, a child of ours. */
        self_fd = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
        CHECK(self_fd >= 0);
        CHECK(!same_inode(userns_fd, self_fd));
        parent_fd = ioctl(userns_fd, NS_GET_PARENT);
        CHECK(parent_fd >= 0);
        CHECK(same_inode(parent_fd, self_fd));
        close(parent_fd);
        close(self_fd);

        /* Nothing left behind: the process that made it is gone and reaped. */
        check_no_child();
        close(userns_fd);
        CHECK_EQ(count_open_fds(), fds_before);
}

static void test_userns_create_netns(void) {
        unsigned fds_before = count_open_fds();
        int userns_fd = -1, netns_fd = -1, owner_fd, host_netns_fd;

        CHECK_EQ(nsres_userns_create(NSRES_CREATE_NETNS, &userns_fd, &netns_fd), 0);
        check_ns_fd(userns_fd, CLONE_NEWUSER);
        check_ns_fd(netns_fd, CLONE_NEWNET);

        /* The network namespace belongs to the new user namespace. */
        owner_fd = ioctl(netns_fd, NS_GET_USERNS);
        CHECK(owner_fd >= 0);
        CHECK(same_inode(owner_fd, userns_fd));
        close(owner_fd);

        host_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        CHECK(host_netns_fd >= 0);
        CHECK(!same_inode(host_netns_fd, netns_fd));
        close(host_netns_fd);

        check_no_child();
        close(userns_fd);
        close(netns_fd);
        CHECK_EQ(count_open_fds(), fds_before);
}

static void test_userns_create_invalid(void) {
        unsigned fds_before = count_open_fds();
        int userns_fd = -1;

        CHECK_EQ(nsres_userns_create(UINT32_C(1) << 5, &userns_fd, NULL), -EINVAL);
        CHECK_EQ(nsres_userns_create(0, NULL, NULL), -EINVAL);
        CHECK_EQ(nsres_userns_create(NSRES_CREATE_NETNS, &userns_fd, NULL), -EINVAL);
        CHECK_EQ(userns_fd, -1);
        check_no_child();
        CHECK_EQ(count_open_fds(), fds_before);
}

/* What a sandbox tool does with the fds, as an unprivileged user: a child of
 * the caller joins both namespaces. The namespace's owner holds every
 * capability in it, which is what setns() asks for. */
static void test_join_unprivileged(void) {
        int status;
        pid_t pid;

        if (geteuid() != 0) {
                printf("skip - test_join_unprivileged needs root to become an unprivileged user\n");
                return;
        }

        fflush(stdout);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                int userns_fd = -1, netns_fd = -1, joined;
                pid_t grandchild;

                CHECK(setgroups(0, NULL) == 0);
                CHECK(setresgid(NOBODY_UID, NOBODY_UID, NOBODY_UID) == 0);
                CHECK(setresuid(NOBODY_UID, NOBODY_UID, NOBODY_UID) == 0);

                CHECK_EQ(nsres_userns_create(NSRES_CREATE_NETNS, &userns_fd, &netns_fd), 0);

                grandchild = fork();
                CHECK(grandchild >= 0);
                if (grandchild == 0) {
                        CHECK(setns(userns_fd, CLONE_NEWUSER) == 0);
                        CHECK(setns(netns_fd, CLONE_NEWNET) == 0);
                        joined = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
                        CHECK(joined >= 0);
                        CHECK(same_inode(joined, netns_fd));
                        /* Unmapped, the namespace shows us as the overflow
                         * user; the maps are the service's to write. */
                        CHECK_EQ(getuid(), NOBODY_UID);
                        _exit(EXIT_SUCCESS);
                }
                CHECK_EQ(waitpid(grandchild, &status, 0), grandchild);
                CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                _exit(EXIT_SUCCESS);
        }
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
        RUN_TEST(test_error_names);
        RUN_TEST(test_client_without_bus);
        RUN_TEST(test_userns_create);
        RUN_TEST(test_userns_create_netns);
        RUN_TEST(test_userns_create_invalid);
        RUN_TEST(test_join_unprivileged);
        return EXIT_SUCCESS;
}
