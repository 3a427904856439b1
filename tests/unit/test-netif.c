/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Network links against the running kernel (needs root for the links): the
 * keyed hash against published test vectors, interface name validation, host
 * names, the key file, and veth pairs and tap devices as a client would get
 * them. A sandbox must not learn or pre-empt another's host names, must find
 * its peer inside under the name it asked for, and must not be able to give
 * the host end an address; nothing the test creates outlives it.
 */

#include <net/if.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include "netif.h"
#include "sha256.h"
#include "test-util.h"
#include "util.h"

#define POLL_TIMEOUT_USEC (2 * 1000 * 1000ULL)
#define TIMING_ROUNDS 50
#define TAP_UID 524288
#define TAP_GID 524289

/* Everything that must not outlive the test, also when a check fails. */
static char created[64][NETIF_NAME_SIZE];
static size_t n_created;
static pid_t holders[8];
static size_t n_holders;

static uint8_t key[NETIF_KEY_SIZE];

static void cleanup(void) {
        for (size_t i = 0; i < n_created; i++)
                (void) netif_delete(created[i]);
        for (size_t i = 0; i < n_holders; i++)
                if (holders[i] > 0) {
                        (void) kill(holders[i], SIGKILL);
                        (void) waitpid(holders[i], NULL, 0);
                }
}

static void remember(const char *host) {
        CHECK(n_created < ELEMENTSOF(created));
        memcpy(created[n_created++], host, NETIF_NAME_SIZE);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static void hex(const uint8_t *data, size_t size, char *ret) {
        for (size_t i = 0; i < size; i++)
                sprintf(ret + 2 * i, "%02x", data[i]);
}

static void check_sha256(const void *data, size_t size, const char *expected) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char s[2 * SHA256_DIGEST_SIZE + 1];

        sha256(data, size, digest);
        hex(digest, sizeof(digest), s);
        CHECK_STREQ(s, expected);
}

static void check_hmac(const void *k, size_t k_size, const void *data, size_t size, const char *expected) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char s[2 * SHA256_DIGEST_SIZE + 1];

        hmac_sha256(k, k_size, data, size, digest);
        hex(digest, sizeof(digest), s);
        /* RFC 4231 test case 5 gives only the first 128 bits. */
        CHECK(strncmp(s, expected, strlen(expected)) == 0);
}

static void test_sha256_vectors(void) {
        static const char million_a_digest[] =
                "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        uint8_t digest[SHA256_DIGEST_SIZE];
        char s[2 * SHA256_DIGEST_SIZE + 1];
        char chunk[997];
        size_t left = 1000000;
        Sha256 h;

        /* FIPS 180-4 examples (NIST CSRC "Examples with Intermediate
         * Values") and the long-message vector. */
        check_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        check_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        check_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
                     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        check_sha256("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                     "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", 112,
                     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

        /* A million 'a', fed in pieces that straddle block boundaries. */
        memset(chunk, 'a', sizeof(chunk));
        sha256_init(&h);
        while (left > 0) {
                size_t n = left < sizeof(chunk) ? left : sizeof(chunk);

                sha256_update(&h, chunk, n);
                left -= n;
        }
        sha256_finish(&h, digest);
        hex(digest, sizeof(digest), s);
        CHECK_STREQ(s, million_a_digest);

        /* The same one byte at a time. */
        sha256_init(&h);
        for (size_t i = 0; i < 1000000; i++)
                sha256_update(&h, "a", 1);
        sha256_finish(&h, digest);
        hex(digest, sizeof(digest), s);
        CHECK_STREQ(s, million_a_digest);
}

static void test_hmac_sha256_vectors(void) {
        uint8_t k[131], data[50];

        /* RFC 4231 §4.2–4.8. */
        memset(k, 0x0b, 20);
        check_hmac(k, 20, "Hi There", 8,
                   "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

        check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

        memset(k, 0xaa, 20);
        memset(data, 0xdd, 50);
        check_hmac(k, 20, data, 50,
                   "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

        for (size_t i = 0; i < 25; i++)
                k[i] = (uint8_t) (i + 1);
        memset(data, 0xcd, 50);
        check_hmac(k, 25, data, 50,
                   "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

        memset(k, 0x0c, 20);
        check_hmac(k, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");

        memset(k, 0xaa, 131);
        check_hmac(k, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

        check_hmac(k, 131,
                   "This is a test using a larger than block-size key and a larger than block-size data."
                   " The key needs to be hashed before being used by the HMAC algorithm.", 152,
                   "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_name_validation(void) {
        static const struct {
                const char *name;
                bool valid;
        } table[] = {
                { "host0", true },
                { "eth1", true },
                { "a", true },
                { "x-y_z.w@1", true },
                { "...", true },
                { "123456789012345", true },    /* 15: the longest */
                { "1234567890123456", false },  /* 16 */
                { "", false },
                { ".", false },
                { "..", false },
                { "a/b", false },
                { "a:b", false },               /* the old alias syntax */
                { "a b", false },
                { "a\tb", false },
                { "a\nb", false },
                { "eth%d", false },             /* the kernel would pick a number */
                { "a\x01", false },
                { "a\x7f", false },
                { "\xc3\xa9th0", false },       /* "éth0" */
        };

        CHECK(!netif_name_is_valid(NULL));
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (netif_name_is_valid(table[i].name) != table[i].valid) {
                        fprintf(stderr, "name '%s': expected %s\n", table[i].name,
                                table[i].valid ? "valid" : "invalid");
                        CHECK(false);
                }
}

static bool is_host_name(const char *s) {
        if (strlen(s) != 15 || strncmp(s, "ns-", 3) != 0)
                return false;
        for (size_t i = 3; i < 15; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static void test_host_names(void) {
        uint8_t k[NETIF_KEY_SIZE], other_key[NETIF_KEY_SIZE];
        char a[NETIF_NAME_SIZE], b[NETIF_NAME_SIZE];

        for (size_t i = 0; i < sizeof(k); i++) {
                k[i] = (uint8_t) i;
                other_key[i] = (uint8_t) i;
        }
        other_key[31] ^= 1;

        /* Known answers, computed independently (Python's hmac module) from
         * the documented input encoding. */
        CHECK_EQ(netif_host_name(k, NETIF_VETH, UINT64_C(0x0102030405060708), "1000-demo", "host0", a), 0);
        CHECK_STREQ(a, "ns-132887211c67");
        CHECK_EQ(netif_host_name(k, NETIF_TAP, UINT64_C(0x0102030405060708), "1000-demo", "tap0", a), 0);
        CHECK_STREQ(a, "ns-0a82261ad8eb");

        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", "host0", a), 0);
        CHECK(is_host_name(a));

        /* Stable. */
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", "host0", b), 0);
        CHECK_STREQ(a, b);
        /* The default inside name. */
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", NULL, b), 0);
        CHECK_STREQ(a, b);
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", "", b), 0);
        CHECK_STREQ(a, b);

        /* Every input counts. */
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 8, "1000-web", "host0", b), 0);
        CHECK(strcmp(a, b) != 0);
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-wed", "host0", b), 0);
        CHECK(strcmp(a, b) != 0);
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", "host1", b), 0);
        CHECK(strcmp(a, b) != 0);
        CHECK_EQ(netif_host_name(other_key, NETIF_VETH, 7, "1000-web", "host0", b), 0);
        CHECK(strcmp(a, b) != 0);
        CHECK_EQ(netif_host_name(k, NETIF_TAP, 7, "1000-web", "host0", b), 0);
        CHECK(strcmp(a, b) != 0);
        /* Fields do not run into each other. */
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-we", "bhost0", b), 0);
        CHECK(strcmp(a, b) != 0);

        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, "1000-web", "bad/name", b), -EINVAL);
        CHECK_EQ(netif_host_name(k, NETIF_TAP, 7, "1000-web", NULL, b), -EINVAL);
        CHECK_EQ(netif_host_name(k, NETIF_VETH, 7, NULL, "host0", b), -EINVAL);
}

static off_t file_size(const char *path, mode_t *ret_mode) {
        struct stat st;

        CHECK(lstat(path, &st) == 0);
        if (ret_mode)
                *ret_mode = st.st_mode;
        return st.st_size;
}

static void test_key_file(void) {
        _cleanup_free_ char *dir = test_path_join(test_tmpdir(), "state");
        _cleanup_free_ char *path = NULL;
        uint8_t a[NETIF_KEY_SIZE], b[NETIF_KEY_SIZE];
        mode_t mode;

        CHECK_EQ(netif_key_load(dir, a), -ENOENT);
        CHECK(mkdir(dir, 0700) == 0);
        path = test_path_join(dir, NETIF_KEY_FILE);

        /* Created private, then read back. */
        CHECK_EQ(netif_key_load(dir, a), 0);
        CHECK_EQ(file_size(path, &mode), NETIF_KEY_SIZE);
        CHECK(S_ISREG(mode));
        CHECK_EQ(mode & 07777, 0600);
        CHECK_EQ(netif_key_load(dir, b), 0);
        CHECK(memcmp(a, b, sizeof(a)) == 0);

        /* Too short: replaced. */
        test_write_text(path, "short");
        CHECK(chmod(path, 0600) == 0);
        CHECK_EQ(netif_key_load(dir, b), 0);
        CHECK(memcmp(a, b, sizeof(a)) != 0);
        CHECK_EQ(file_size(path, NULL), NETIF_KEY_SIZE);
        CHECK_EQ(netif_key_load(dir, a), 0);
        CHECK(memcmp(a, b, sizeof(a)) == 0);

        /* Readable by others: no secret any more. */
        CHECK(chmod(path, 0644) == 0);
        CHECK_EQ(netif_key_load(dir, b), 0);
        CHECK(memcmp(a, b, sizeof(a)) != 0);
        CHECK_EQ(file_size(path, &mode), NETIF_KEY_SIZE);
        CHECK_EQ(mode & 07777, 0600);

        /* A symlink is replaced, never followed. */
        CHECK(unlink(path) == 0);
        CHECK(symlink("/etc/hostname", path) == 0);
        CHECK_EQ(netif_key_load(dir, a), 0);
        CHECK_EQ(file_size(path, &mode), NETIF_KEY_SIZE);
        CHECK(S_ISREG(mode));

        /* The test's own key for the links below. */
        memcpy(key, a, sizeof(key));
}

/* A process in a network namespace of its own, which lives until killed. */
typedef struct Holder {
        pid_t pid;
        int netns_fd;
} Holder;

static void holder_start(Holder *ret) {
        char path[64], c;
        int ready[2];
        pid_t pid;

        CHECK(n_holders < ELEMENTSOF(holders));
        CHECK(pipe2(ready, O_CLOEXEC) == 0);

        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                /* A test that dies takes the namespace, and with it every
                 * veth into it, along. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || unshare(CLONE_NEWNET) < 0)
                        _exit(EXIT_FAILURE);
                if (write(ready[1], "x", 1) != 1)
                        _exit(EXIT_FAILURE);
                for (;;)
                        pause();
        }
        holders[n_holders++] = pid;

        close(ready[1]);
        CHECK(read(ready[0], &c, 1) == 1);
        close(ready[0]);

        snprintf(path, sizeof(path), "/proc/%i/ns/net", (int) pid);
        ret->netns_fd = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(ret->netns_fd >= 0);
        ret->pid = pid;
}

static void holder_stop(Holder *h) {
        CHECK(kill(h->pid, SIGKILL) == 0);
        CHECK(waitpid(h->pid, NULL, 0) == h->pid);
        for (size_t i = 0; i < n_holders; i++)
                if (holders[i] == h->pid)
                        holders[i] = 0;
        close(TAKE_FD(h->netns_fd));
}

static struct nl_sock *rtnl_connect(void) {
        struct nl_sock *sk = nl_socket_alloc();

        CHECK(sk);
        CHECK(nl_connect(sk, NETLINK_ROUTE) == 0);
        return sk;
}

/* A socket keeps the namespace it was created in. */
static struct nl_sock *rtnl_connect_in(int netns_fd) {
        _cleanup_close_ int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        struct nl_sock *sk;

        CHECK(self >= 0);
        CHECK(setns(netns_fd, CLONE_NEWNET) == 0);
        sk = rtnl_connect();
        CHECK(setns(self, CLONE_NEWNET) == 0);
        return sk;
}

typedef struct Call {
        bool done;
        int error;
        int ifindex;
} Call;

static int on_valid(struct nl_msg *msg, void *arg) {
        Call *c = arg;
        struct nlmsghdr *h = nlmsg_hdr(msg);

        if (h->nlmsg_type == RTM_NEWLINK)
                c->ifindex = ((struct ifinfomsg *) nlmsg_data(h))->ifi_index;
        return NL_OK;
}

static int on_ack(struct nl_msg *msg, void *arg) {
        (void) msg;
        ((Call *) arg)->done = true;
        return NL_STOP;
}

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg) {
        Call *c = arg;

        (void) who;
        c->done = true;
        c->error = e->error;
        return NL_STOP;
}

/* Sends msg (and frees it), returns the kernel's errno; *ret_ifindex from a
 * link in the reply. */
static int rtnl_call(struct nl_sock *sk, struct nl_msg *msg, int *ret_ifindex) {
        struct nl_cb *sk_cb = nl_socket_get_cb(sk), *cb = nl_cb_clone(sk_cb);
        Call c = {};

        nl_cb_put(sk_cb);
        CHECK(cb);
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &c);
        nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &c);
        nl_cb_err(cb, NL_CB_CUSTOM, on_error, &c);

        nlmsg_hdr(msg)->nlmsg_flags |= NLM_F_ACK;
        CHECK(nl_send_auto(sk, msg) >= 0);
        nlmsg_free(msg);
        while (!c.done)
                CHECK(nl_recvmsgs(sk, cb) >= 0 || c.done);
        nl_cb_put(cb);

        if (ret_ifindex)
                *ret_ifindex = c.ifindex;
        return c.error;
}

/* A link request naming the link by attr (IFLA_IFNAME, IFLA_ALT_IFNAME);
 * flags are set and changed. */
static struct nl_msg *link_msg(int type, unsigned flags, const char *name, int attr) {
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_flags = flags, .ifi_change = flags };
        struct nl_msg *msg = nlmsg_alloc_simple(type, 0);

        CHECK(msg);
        CHECK(nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) == 0);
        CHECK(nla_put_string(msg, attr, name) == 0);
        return msg;
}

/* ifindex of the link with that alternative name, or 0. */
static int ifindex_by_altname(struct nl_sock *sk, const char *altname) {
        int ifindex = 0, r;

        r = rtnl_call(sk, link_msg(RTM_GETLINK, 0, altname, IFLA_ALT_IFNAME), &ifindex);
        if (r == -ENODEV)
                return 0;
        CHECK_EQ(r, 0);
        return ifindex;
}

static void link_set_up(struct nl_sock *sk, const char *name) {
        CHECK_EQ(rtnl_call(sk, link_msg(RTM_SETLINK, IFF_UP, name, IFLA_IFNAME), NULL), 0);
}

/* NULL if there is no such link. */
static struct rtnl_link *link_get(struct nl_sock *sk, const char *name) {
        struct rtnl_link *link = NULL;
        int r;

        r = rtnl_link_get_kernel(sk, 0, name, &link);
        if (r == -NLE_NODEV || r == -NLE_OBJ_NOTFOUND)
                return NULL;
        CHECK_EQ(r, 0);
        return link;
}

static bool link_exists(struct nl_sock *sk, const char *name) {
        struct rtnl_link *link = link_get(sk, name);

        if (!link)
                return false;
        rtnl_link_put(link);
        return true;
}

static void wait_link_gone(struct nl_sock *sk, const char *name, uint64_t *ret_usec) {
        uint64_t start = now_usec();

        while (link_exists(sk, name)) {
                if (now_usec() - start >= POLL_TIMEOUT_USEC) {
                        fprintf(stderr, "link '%s' still there after 2 s\n", name);
                        CHECK(false);
                }
                usleep(2000);
        }
        if (ret_usec)
                *ret_usec = now_usec() - start;
}

static void check_mac_local_unicast(struct rtnl_link *link, uint8_t ret[static 6]) {
        struct nl_addr *a = rtnl_link_get_addr(link);
        const uint8_t *mac;

        CHECK(a);
        CHECK_EQ(nl_addr_get_len(a), 6);
        mac = nl_addr_get_binary_addr(a);
        CHECK((mac[0] & 0x01) == 0);    /* unicast */
        CHECK((mac[0] & 0x02) != 0);    /* locally administered */
        memcpy(ret, mac, 6);
}

static void read_line(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "re");

        CHECK(f);
        CHECK(fgets(buf, (int) size, f));
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
}

static void check_sysfs(const char *format, const char *name, const char *expected) {
        char path[256], value[64];

        snprintf(path, sizeof(path), format, name);
        read_line(path, value, sizeof(value));
        if (strcmp(value, expected) != 0) {
                fprintf(stderr, "%s: '%s', expected '%s'\n", path, value, expected);
                CHECK(false);
        }
}

/* Lines of an if_inet6 file (/proc/<pid>/net/: that process's namespace)
 * that belong to the link. */
static unsigned count_inet6(const char *path, const char *name) {
        FILE *f = fopen(path, "re");
        char line[256];
        unsigned n = 0;

        if (!f) {
                CHECK(errno == ENOENT);
                return 0;
        }
        while (fgets(line, sizeof(line), f)) {
                char *last = strrchr(line, ' ');

                CHECK(last);
                last[strcspn(last, "\n")] = '\0';
                if (strcmp(last + 1, name) == 0)
                        n++;
        }
        fclose(f);
        return n;
}

static unsigned count_addresses(struct nl_sock *sk, int ifindex) {
        struct nl_cache *cache;
        unsigned n = 0;

        CHECK(rtnl_addr_alloc_cache(sk, &cache) == 0);
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o))
                if (rtnl_addr_get_ifindex((struct rtnl_addr *) o) == ifindex)
                        n++;
        nl_cache_free(cache);
        return n;
}

/* What the host end must look like, whatever the client does: down, no
 * address of any family, address generation off, router advertisements
 * ignored, back in the default link mode. */
static int check_host_end(struct nl_sock *sk, const char *host, const char *kind, uint8_t ret_mac[static 6]) {
        struct rtnl_link *link = link_get(sk, host);
        int ifindex;

        CHECK(link);
        CHECK_STREQ(rtnl_link_get_type(link), kind);
        CHECK((rtnl_link_get_flags(link) & IFF_UP) == 0);
        check_mac_local_unicast(link, ret_mac);
        ifindex = rtnl_link_get_ifindex(link);
        rtnl_link_put(link);

        CHECK_EQ(count_addresses(sk, ifindex), 0);
        CHECK_EQ(count_inet6("/proc/net/if_inet6", host), 0);
        check_sysfs("/proc/sys/net/ipv6/conf/%s/addr_gen_mode", host, "1");
        check_sysfs("/proc/sys/net/ipv6/conf/%s/accept_ra", host, "0");
        check_sysfs("/sys/class/net/%s/link_mode", host, "0");
        return ifindex;
}

static void test_veth(void) {
        _cleanup_free_ char *altname = NULL, *inet6_inside = NULL;
        struct nl_sock *sk = rtnl_connect(), *sk_ns;
        uint8_t host_mac[6], peer_mac[6];
        char host[NETIF_NAME_SIZE], expected[NETIF_NAME_SIZE], other[NETIF_NAME_SIZE];
        struct rtnl_link *peer;
        int ifindex, host_ifindex;
        Holder h;

        holder_start(&h);
        sk_ns = rtnl_connect_in(h.netns_fd);
        CHECK(asprintf(&inet6_inside, "/proc/%i/net/if_inet6", (int) h.pid) > 0);

        NetifVethParams p = {
                .key = key,
                .ns_id = 4242,
                .ns_name = "1000-web",
                .netns_fd = h.netns_fd,
        };

        CHECK_EQ(netif_host_name(key, NETIF_VETH, p.ns_id, p.ns_name, NULL, expected), 0);
        /* Crash safety: the name is known before the link exists. */
        CHECK(!link_exists(sk, expected));

        CHECK_EQ(netif_create_veth(&p, host), 0);
        remember(host);
        CHECK_STREQ(host, expected);
        CHECK(is_host_name(host));

        host_ifindex = check_host_end(sk, host, "veth", host_mac);
        CHECK_EQ(ifindex_by_altname(sk, "ns-1000-web"), host_ifindex);

        /* The peer was created inside, under the name asked for. */
        peer = link_get(sk_ns, NETIF_DEFAULT_IFNAME);
        CHECK(peer);
        CHECK_STREQ(rtnl_link_get_type(peer), "veth");
        CHECK((rtnl_link_get_flags(peer) & IFF_UP) == 0);
        check_mac_local_unicast(peer, peer_mac);
        rtnl_link_put(peer);
        CHECK(memcmp(host_mac, peer_mac, 6) != 0);

        /* The same request again: the host name is taken. The first link
         * is untouched. */
        CHECK_EQ(netif_create_veth(&p, other), -EEXIST);
        CHECK(link_exists(sk, host));

        /* Another host name, but host0 is taken inside: nothing is left on
         * the host. */
        p.ns_id++;
        CHECK_EQ(netif_host_name(key, NETIF_VETH, p.ns_id, p.ns_name, NULL, expected), 0);
        CHECK_EQ(netif_create_veth(&p, other), -EEXIST);
        CHECK(!link_exists(sk, expected));
        p.ns_id--;

        /* A second link with a name of the client's choosing. */
        p.ifname = "eth1";
        CHECK_EQ(netif_create_veth(&p, other), 0);
        remember(other);
        CHECK(strcmp(host, other) != 0);
        CHECK(link_exists(sk_ns, "eth1"));
        ifindex = check_host_end(sk, other, "veth", host_mac);
        CHECK_EQ(ifindex_by_altname(sk, "ns-1000-web-eth1"), ifindex);

        /* Names that are not interface names never reach the kernel. */
        p.ifname = "bad/name";
        CHECK_EQ(netif_create_veth(&p, other), -EINVAL);
        p.ifname = "eth%d";
        CHECK_EQ(netif_create_veth(&p, other), -EINVAL);
        p.ifname = "1234567890123456";
        CHECK_EQ(netif_create_veth(&p, other), -EINVAL);
        p.ifname = NULL;

        /* The client brings its end up and gets IPv6 inside; the host end,
         * brought up by the admin, still generates no address. */
        link_set_up(sk_ns, NETIF_DEFAULT_IFNAME);
        link_set_up(sk, host);
        {
                uint64_t start = now_usec();
                char path[128], state[32];

                snprintf(path, sizeof(path), "/sys/class/net/%s/operstate", host);
                for (;;) {
                        read_line(path, state, sizeof(state));
                        if (strcmp(state, "up") == 0 && count_inet6(inet6_inside, NETIF_DEFAULT_IFNAME) > 0)
                                break;
                        CHECK(now_usec() - start < POLL_TIMEOUT_USEC);
                        usleep(5000);
                }
        }
        CHECK_EQ(count_inet6("/proc/net/if_inet6", host), 0);
        CHECK_EQ(count_addresses(sk, host_ifindex), 0);

        /* Deleting the host end takes the peer along. */
        CHECK_EQ(netif_delete(host), 0);
        CHECK(!link_exists(sk, host));
        wait_link_gone(sk_ns, NETIF_DEFAULT_IFNAME, NULL);
        CHECK(link_exists(sk_ns, "eth1"));
        /* Idempotent. */
        CHECK_EQ(netif_delete(host), 0);
        CHECK_EQ(netif_delete("ns-000000000000"), 0);
        /* Only links made here. */
        CHECK_EQ(netif_delete("lo"), -EMEDIUMTYPE);
        CHECK(link_exists(sk, "lo"));
        CHECK_EQ(netif_delete("bad/name"), -EINVAL);
        CHECK_EQ(netif_delete(NULL), -EINVAL);

        /* Recreated from the same inputs: the same name and addresses. */
        {
                uint8_t again[6];

                CHECK_EQ(netif_create_veth(&p, other), 0);
                CHECK_STREQ(other, host);
                peer = link_get(sk_ns, NETIF_DEFAULT_IFNAME);
                CHECK(peer);
                check_mac_local_unicast(peer, again);
                rtnl_link_put(peer);
                CHECK(memcmp(again, peer_mac, 6) == 0);
        }

        /* The namespace dies: the kernel deletes the pair, asynchronously. */
        {
                uint64_t usec;

                /* A socket inside would keep the namespace alive. */
                nl_socket_free(TAKE_PTR(sk_ns));
                holder_stop(&h);
                wait_link_gone(sk, host, &usec);
                wait_link_gone(sk, created[n_created - 1], NULL);
                printf("# host end gone %.1f ms after its namespace died\n", usec / 1000.0);
        }

        nl_socket_free(sk);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static void test_veth_timing(void) {
        uint64_t create[TIMING_ROUNDS], delete[TIMING_ROUNDS];
        char host[NETIF_NAME_SIZE];
        Holder h;

        holder_start(&h);
        NetifVethParams p = {
                .key = key,
                .ns_id = 77,
                .ns_name = "1000-bench",
                .netns_fd = h.netns_fd,
        };

        for (size_t i = 0; i < TIMING_ROUNDS; i++) {
                uint64_t t0, t1, t2;

                t0 = now_usec();
                CHECK_EQ(netif_create_veth(&p, host), 0);
                t1 = now_usec();
                if (i == 0)
                        remember(host);
                CHECK_EQ(netif_delete(host), 0);
                t2 = now_usec();
                create[i] = t1 - t0;
                delete[i] = t2 - t1;
        }

        qsort(create, TIMING_ROUNDS, sizeof(create[0]), cmp_u64);
        qsort(delete, TIMING_ROUNDS, sizeof(delete[0]), cmp_u64);
        printf("# netif_create_veth: median %" PRIu64 " us, min %" PRIu64 " us, max %" PRIu64 " us (%d rounds)\n",
               create[TIMING_ROUNDS / 2], create[0], create[TIMING_ROUNDS - 1], TIMING_ROUNDS);
        printf("# netif_delete (veth): median %" PRIu64 " us, min %" PRIu64 " us, max %" PRIu64 " us\n",
               delete[TIMING_ROUNDS / 2], delete[0], delete[TIMING_ROUNDS - 1]);

        holder_stop(&h);
}

static void test_tap(void) {
        struct nl_sock *sk = rtnl_connect();
        char host[NETIF_NAME_SIZE], expected[NETIF_NAME_SIZE], other[NETIF_NAME_SIZE], value[32], path[128];
        uint8_t mac[6];
        int fd = -1, fd2 = -1, ifindex;
        unsigned long tun_flags;

        NetifTapParams p = {
                .key = key,
                .ns_id = 4343,
                .ns_name = "1000-vm",
                .label = "tap0",
                .uid = TAP_UID,
                .gid = TAP_GID,
        };

        CHECK_EQ(netif_host_name(key, NETIF_TAP, p.ns_id, p.ns_name, p.label, expected), 0);
        CHECK_EQ(netif_create_tap(&p, &fd, host), 0);
        remember(host);
        CHECK_STREQ(host, expected);
        CHECK(fd >= 0);
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        ifindex = check_host_end(sk, host, "tun", mac);
        CHECK_EQ(ifindex_by_altname(sk, "ns-1000-vm-tap0"), ifindex);
        snprintf(value, sizeof(value), "%u", TAP_UID);
        check_sysfs("/sys/class/net/%s/owner", host, value);
        snprintf(value, sizeof(value), "%u", TAP_GID);
        check_sysfs("/sys/class/net/%s/group", host, value);

        snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", host);
        read_line(path, value, sizeof(value));
        tun_flags = strtoul(value, NULL, 16);
        CHECK_EQ(tun_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        CHECK_EQ(tun_flags & IFF_PERSIST, 0);

        /* Taken while the first one lives; never attached to. */
        CHECK_EQ(netif_create_tap(&p, &fd2, other), -EEXIST);
        CHECK_EQ(fd2, -1);

        p.label = "bad label";
        CHECK_EQ(netif_create_tap(&p, &fd2, other), -EINVAL);
        p.label = NULL;
        CHECK_EQ(netif_create_tap(&p, &fd2, other), -EINVAL);

        /* Not persistent: it goes with its fd. */
        close(TAKE_FD(fd));
        wait_link_gone(sk, host, NULL);

        /* Deleted while the fd is still open. */
        p.label = "tap1";
        CHECK_EQ(netif_create_tap(&p, &fd, other), 0);
        remember(other);
        CHECK(strcmp(other, host) != 0);
        CHECK_EQ(netif_delete(other), 0);
        CHECK(!link_exists(sk, other));
        close(TAKE_FD(fd));

        nl_socket_free(sk);
}

int main(void) {
        RUN_TEST(test_sha256_vectors);
        RUN_TEST(test_hmac_sha256_vectors);
        RUN_TEST(test_name_validation);
        RUN_TEST(test_host_names);
        RUN_TEST(test_key_file);

        if (geteuid() != 0) {
                printf("# skipped: links need root\n");
                return 77;
        }

        CHECK(atexit(cleanup) == 0);
        RUN_TEST(test_veth);
        RUN_TEST(test_veth_timing);
        if (access("/dev/net/tun", F_OK) == 0)
                RUN_TEST(test_tap);
        else
                printf("# skipped test_tap: no /dev/net/tun\n");

        return EXIT_SUCCESS;
}
