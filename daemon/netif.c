/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* glibc's <net/if.h> before <linux/if.h>: in this order the uapi header
 * leaves out what glibc already defines. */
#include <net/if.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#include "fileio.h"
#include "log.h"
#include "netif.h"
#include "sha256.h"
#include "util.h"

static_assert(NETIF_NAME_SIZE == IFNAMSIZ, "NETIF_NAME_SIZE must be IFNAMSIZ");

#define MAC_SIZE 6
/* "ns-" and 12 hex digits: 48 bits of the hash. */
#define HOST_NAME_HASH_BYTES 6

static inline void nl_socket_freep(struct nl_sock **s) {
        if (*s)
                nl_socket_free(*s);
}

static inline void nlmsg_freep(struct nl_msg **m) {
        if (*m)
                nlmsg_free(*m);
}

static inline void rtnl_link_putp(struct rtnl_link **l) {
        if (*l)
                rtnl_link_put(*l);
}

static inline void nl_addr_putp(struct nl_addr **a) {
        if (*a)
                nl_addr_put(*a);
}

#define _cleanup_nl_socket_ _cleanup_(nl_socket_freep)
#define _cleanup_nlmsg_ _cleanup_(nlmsg_freep)
#define _cleanup_rtnl_link_ _cleanup_(rtnl_link_putp)
#define _cleanup_nl_addr_ _cleanup_(nl_addr_putp)

bool netif_name_is_valid(const char *name) {
        size_t n;

        if (!name || name[0] == '\0')
                return false;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return false;

        for (n = 0; name[n] != '\0'; n++) {
                unsigned char c = (unsigned char) name[n];

                if (n >= NETIF_NAME_SIZE - 1)
                        return false;
                /* Space, control characters and non-ASCII included. */
                if (c <= ' ' || c >= 0x7f)
                        return false;
                if (c == '/' || c == ':' || c == '%')
                        return false;
        }

        return true;
}

static int key_file_read(int dir_fd, uint8_t ret[static NETIF_KEY_SIZE]) {
        _cleanup_close_ int fd = -1;
        uint8_t buf[NETIF_KEY_SIZE + 1];
        struct stat st;
        ssize_t n;

        fd = openat(dir_fd, NETIF_KEY_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                /* ELOOP: a symlink, which we never create. */
                return errno == ELOOP ? -EBADMSG : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        /* A key others could have read, or written, is no secret. */
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077) != 0)
                return -EBADMSG;

        /* One byte more than a key, to notice a file that is too long. */
        n = read_full(fd, buf, sizeof(buf));
        if (n < 0)
                return (int) n;
        if (n != NETIF_KEY_SIZE) {
                explicit_bzero(buf, sizeof(buf));
                return -EBADMSG;
        }

        memcpy(ret, buf, NETIF_KEY_SIZE);
        explicit_bzero(buf, sizeof(buf));
        return 0;
}

static int key_file_create(int dir_fd, uint8_t ret[static NETIF_KEY_SIZE]) {
        char tmp[sizeof("." NETIF_KEY_FILE ".") + 16];
        uint8_t key[NETIF_KEY_SIZE];
        _cleanup_close_ int fd = -1;
        uint64_t suffix;
        ssize_t n;
        int r = 0;

        /* Blocks only until the kernel's pool is initialised, once per boot. */
        n = getrandom(key, sizeof(key), 0);
        if (n != (ssize_t) sizeof(key))
                return n < 0 ? -errno : -EIO;
        n = getrandom(&suffix, sizeof(suffix), 0);
        if (n != (ssize_t) sizeof(suffix)) {
                r = n < 0 ? -errno : -EIO;
                goto finish;
        }
        snprintf(tmp, sizeof(tmp), "." NETIF_KEY_FILE ".%016" PRIx64, suffix);

        /* The umask can only take bits away from 0600. */
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                goto finish;
        }
        n = write(fd, key, sizeof(key));
        if (n != (ssize_t) sizeof(key))
                r = n < 0 ? -errno : -EIO;
        /* Readers see the old file or the complete new one, never a part. */
        else if (fsync(fd) < 0 || renameat(dir_fd, tmp, dir_fd, NETIF_KEY_FILE) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                goto finish;
        }
        memcpy(ret, key, sizeof(key));

finish:
        explicit_bzero(key, sizeof(key));
        return r;
}

int netif_key_load(const char *state_dir, uint8_t ret[static NETIF_KEY_SIZE]) {
        _cleanup_close_ int dir_fd = -1;
        int r;

        if (!state_dir)
                return -EINVAL;

        dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return -errno;

        r = key_file_read(dir_fd, ret);
        if (r != -ENOENT && r != -EBADMSG)
                return r;
        if (r == -EBADMSG)
                log_warning("Key file '%s/%s' is not a private %d-byte file, replacing it.",
                            state_dir, NETIF_KEY_FILE, NETIF_KEY_SIZE);

        return key_file_create(dir_fd, ret);
}

static const char *ifname_or_default(const char *ifname) {
        return ifname && ifname[0] != '\0' ? ifname : NETIF_DEFAULT_IFNAME;
}

/* HMAC-SHA-256 under the key of
 *     "nsresd netif 1" NUL, purpose NUL, ns_id (8 bytes, little-endian),
 *     ns_name NUL, ifname NUL
 * with one purpose per use ("veth name", "veth host mac", "veth peer mac",
 * "tap name", "tap mac"), so that a name and a MAC address never share bits.
 * Strings end with their NUL: no two different inputs are the same bytes. */
static void netif_hash(
                const uint8_t key[static NETIF_KEY_SIZE],
                const char *purpose,
                uint64_t ns_id,
                const char *ns_name,
                const char *ifname,
                uint8_t ret[static SHA256_DIGEST_SIZE]) {

        static const char domain[] = "nsresd netif 1";
        uint8_t id[8];
        HmacSha256 h;

        for (size_t i = 0; i < sizeof(id); i++)
                id[i] = (uint8_t) (ns_id >> (8 * i));

        hmac_sha256_init(&h, key, NETIF_KEY_SIZE);
        hmac_sha256_update(&h, domain, sizeof(domain));
        hmac_sha256_update(&h, purpose, strlen(purpose) + 1);
        hmac_sha256_update(&h, id, sizeof(id));
        hmac_sha256_update(&h, ns_name, strlen(ns_name) + 1);
        hmac_sha256_update(&h, ifname, strlen(ifname) + 1);
        hmac_sha256_finish(&h, ret);
}

int netif_host_name(
                const uint8_t key[static NETIF_KEY_SIZE],
                NetifKind kind,
                uint64_t ns_id,
                const char *ns_name,
                const char *ifname,
                char ret[static NETIF_NAME_SIZE]) {

        uint8_t hash[SHA256_DIGEST_SIZE];
        char name[NETIF_NAME_SIZE] = "ns-";

        if (!ns_name)
                return -EINVAL;
        if (kind == NETIF_VETH)
                ifname = ifname_or_default(ifname);
        else if (kind != NETIF_TAP)
                return -EINVAL;
        if (!netif_name_is_valid(ifname))
                return -EINVAL;

        netif_hash(key, kind == NETIF_VETH ? "veth name" : "tap name", ns_id, ns_name, ifname, hash);
        for (size_t i = 0; i < HOST_NAME_HASH_BYTES; i++)
                snprintf(name + 3 + 2 * i, 3, "%02x", hash[i]);

        memcpy(ret, name, NETIF_NAME_SIZE);
        return 0;
}

static void netif_mac(
                const uint8_t key[static NETIF_KEY_SIZE],
                const char *purpose,
                uint64_t ns_id,
                const char *ns_name,
                const char *ifname,
                uint8_t ret[static MAC_SIZE]) {

        uint8_t hash[SHA256_DIGEST_SIZE];

        netif_hash(key, purpose, ns_id, ns_name, ifname, hash);
        memcpy(ret, hash, MAC_SIZE);
        /* Unicast (bit 0 clear), locally administered (bit 1 set). */
        ret[0] = (uint8_t) ((ret[0] & ~0x01u) | 0x02u);
}

/* libnl folds errnos into its own codes, many of them into NLE_FAILURE:
 * this is for what libnl reports itself; the kernel's errno is taken from
 * its reply. */
static int errno_from_nl(int nl_error) {
        switch (nl_error < 0 ? -nl_error : nl_error) {
        case NLE_NOMEM:
                return -ENOMEM;
        case NLE_AGAIN:
                return -EAGAIN;
        case NLE_INTR:
                return -EINTR;
        case NLE_INVAL:
                return -EINVAL;
        case NLE_MSGSIZE:
                return -EMSGSIZE;
        case NLE_PERM:
                return -EPERM;
        case NLE_NOACCESS:
                return -EACCES;
        case NLE_EXIST:
                return -EEXIST;
        case NLE_OBJ_NOTFOUND:
        case NLE_NODEV:
                return -ENODEV;
        case NLE_OPNOTSUPP:
                return -EOPNOTSUPP;
        case NLE_AF_NOSUPPORT:
                return -EAFNOSUPPORT;
        case NLE_BUSY:
                return -EBUSY;
        case NLE_RANGE:
                return -ERANGE;
        default:
                return -EIO;
        }
}

static int rtnl_open(struct nl_sock **ret) {
        _cleanup_nl_socket_ struct nl_sock *sk = NULL;
        int r;

        sk = nl_socket_alloc();
        if (!sk)
                return -ENOMEM;
        r = nl_connect(sk, NETLINK_ROUTE);
        if (r < 0)
                return errno_from_nl(r);

        *ret = TAKE_PTR(sk);
        return 0;
}

typedef int (*reply_parser)(struct nlmsghdr *h, void *userdata);

typedef struct Transaction {
        bool done;
        int error;
        reply_parser parse;
        void *userdata;
} Transaction;

static int on_reply(struct nl_msg *msg, void *arg) {
        Transaction *t = arg;

        if (t->parse && t->error == 0)
                t->error = t->parse(nlmsg_hdr(msg), t->userdata);
        return NL_OK;
}

static int on_ack(struct nl_msg *msg, void *arg) {
        Transaction *t = arg;

        (void) msg;
        t->done = true;
        return NL_STOP;
}

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg) {
        Transaction *t = arg;

        (void) who;
        t->done = true;
        t->error = e->error < 0 ? e->error : -EIO;
        return NL_STOP;
}

/* Sends msg with NLM_F_ACK and waits for the kernel's answer: 0, or its
 * negative errno exactly as it gave it. Replies before the ACK go to parse. */
static int rtnl_transact(struct nl_sock *sk, struct nl_msg *msg, reply_parser parse, void *userdata) {
        Transaction t = { .parse = parse, .userdata = userdata };
        struct nl_cb *sk_cb, *cb;
        int r;

        nlmsg_hdr(msg)->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        r = nl_send_auto(sk, msg);
        if (r < 0)
                return errno_from_nl(r);

        /* nl_socket_get_cb() hands out a reference of its own. */
        sk_cb = nl_socket_get_cb(sk);
        cb = nl_cb_clone(sk_cb);
        nl_cb_put(sk_cb);
        if (!cb)
                return -ENOMEM;
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_reply, &t);
        nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &t);
        nl_cb_err(cb, NL_CB_CUSTOM, on_error, &t);

        while (!t.done) {
                r = nl_recvmsgs(sk, cb);
                /* cppcheck-suppress knownConditionTrueFalse ; the callbacks set t.done through &t */
                if (r < 0 && !t.done) {
                        t.error = errno_from_nl(r);
                        break;
                }
        }

        nl_cb_put(cb);
        return t.error;
}

/* A request about the link called name, addressed by name. */
static int link_message(int type, int flags, const char *name, struct nl_msg **ret) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };

        msg = nlmsg_alloc_simple(type, flags);
        if (!msg)
                return -ENOMEM;
        if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
            nla_put_string(msg, IFLA_IFNAME, name) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(msg);
        return 0;
}

/* Not part of RTM_NEWLINK: the kernel checks IFLA_AF_SPEC against the new
 * device before registering it, when it has no IPv6 state yet, and refuses
 * the whole request with EAFNOSUPPORT (6.18; iproute2's "ip link add ...
 * addrgenmode none" fails alike). Hence the dormant link mode below. */
static int link_set_addr_gen_mode_none(struct nl_sock *sk, const char *name) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        struct nlattr *af_spec, *inet6;
        int r;

        r = link_message(RTM_SETLINK, 0, name, &msg);
        if (r < 0)
                return r;
        af_spec = nla_nest_start(msg, IFLA_AF_SPEC);
        if (!af_spec)
                return -ENOMEM;
        inet6 = nla_nest_start(msg, AF_INET6);
        if (!inet6)
                return -ENOMEM;
        if (nla_put_u8(msg, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE) < 0)
                return -ENOMEM;
        nla_nest_end(msg, inet6);
        nla_nest_end(msg, af_spec);

        r = rtnl_transact(sk, msg, NULL, NULL);
        /* A kernel without IPv6 generates no addresses to begin with. */
        if (r == -EAFNOSUPPORT)
                return 0;
        return r;
}

/* Router advertisements from the peer would give the host addresses and
 * routes (a default route, too): the peer is the client's. There is no
 * netlink attribute for this, only the sysctl. */
static int link_ignore_router_advertisements(const char *name) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;

        if (asprintf(&path, "/proc/sys/net/ipv6/conf/%s/accept_ra", name) < 0)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                /* No IPv6 on this kernel. */
                return errno == ENOENT ? 0 : -errno;
        if (write(fd, "0\n", 2) != 2)
                return errno > 0 ? -errno : -EIO;
        return 0;
}

/* The veth host end is created dormant: addrconf generates no link-local
 * address on a link that is not operationally up, even if something brings
 * it up and the peer provides carrier before address generation is off.
 * Back to the default mode; IF_OPER_UP only moves a dormant link on, a link
 * that is down stays down. */
static int link_release_dormant(struct nl_sock *sk, const char *name) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        int r;

        r = link_message(RTM_SETLINK, 0, name, &msg);
        if (r < 0)
                return r;
        if (nla_put_u8(msg, IFLA_LINKMODE, IF_LINK_MODE_DEFAULT) < 0 ||
            nla_put_u8(msg, IFLA_OPERSTATE, IF_OPER_UP) < 0)
                return -ENOMEM;

        return rtnl_transact(sk, msg, NULL, NULL);
}

static int link_set_mac(struct nl_sock *sk, const char *name, const uint8_t mac[static MAC_SIZE]) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        int r;

        r = link_message(RTM_SETLINK, 0, name, &msg);
        if (r < 0)
                return r;
        if (nla_put(msg, IFLA_ADDRESS, MAC_SIZE, mac) < 0)
                return -ENOMEM;

        return rtnl_transact(sk, msg, NULL, NULL);
}

/* libnl 3.7 has no call for alternative names. */
static int link_add_altname(struct nl_sock *sk, const char *name, const char *altname) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        struct nlattr *list;
        int r;

        r = link_message(RTM_NEWLINKPROP, NLM_F_EXCL | NLM_F_CREATE, name, &msg);
        if (r < 0)
                return r;
        /* The kernel parses property requests strictly: a nest must say it
         * is one. */
        list = nla_nest_start(msg, IFLA_PROP_LIST | NLA_F_NESTED);
        if (!list)
                return -ENOMEM;
        if (nla_put_string(msg, IFLA_ALT_IFNAME, altname) < 0)
                return -ENOMEM;
        nla_nest_end(msg, list);

        return rtnl_transact(sk, msg, NULL, NULL);
}

/* The alternative name is for admins reading "ip link": a clash (the same
 * namespace name and ifname twice) or a kernel without alternative names
 * costs nothing else. */
static void link_try_altname(struct nl_sock *sk, const char *host, const char *ns_name, const char *suffix) {
        char altname[ALTIFNAMSIZ];
        int n, r;

        if (suffix)
                n = snprintf(altname, sizeof(altname), "ns-%s-%s", ns_name, suffix);
        else
                n = snprintf(altname, sizeof(altname), "ns-%s", ns_name);
        if (n < 0 || (size_t) n >= sizeof(altname)) {
                log_debug("Alternative name for '%s' would be too long, not setting one.", host);
                return;
        }

        r = link_add_altname(sk, host, altname);
        if (r == -EEXIST)
                log_debug("Alternative name '%s' is taken, '%s' goes without.", altname, host);
        else if (r == -EOPNOTSUPP)
                log_debug("Kernel has no alternative names, '%s' goes without.", host);
        else if (r < 0)
                log_warning_errno(r, "Failed to give '%s' the alternative name '%s', continuing without: %m",
                                  host, altname);
}

typedef struct LinkInfo {
        int ifindex;
        char name[NETIF_NAME_SIZE];
        char kind[32];
} LinkInfo;

static int parse_link(struct nlmsghdr *h, void *userdata) {
        struct nlattr *tb[IFLA_MAX + 1], *info[IFLA_INFO_MAX + 1];
        LinkInfo *link = userdata;
        struct ifinfomsg *ifi;

        if (h->nlmsg_type != RTM_NEWLINK)
                return 0;
        if (nlmsg_parse(h, sizeof(*ifi), tb, IFLA_MAX, NULL) < 0)
                return -EBADMSG;
        ifi = nlmsg_data(h);
        link->ifindex = ifi->ifi_index;

        if (tb[IFLA_IFNAME])
                nla_strlcpy(link->name, tb[IFLA_IFNAME], sizeof(link->name));
        if (tb[IFLA_LINKINFO] &&
            nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], NULL) >= 0 &&
            info[IFLA_INFO_KIND])
                nla_strlcpy(link->kind, info[IFLA_INFO_KIND], sizeof(link->kind));
        return 0;
}

static int link_get(struct nl_sock *sk, const char *name, LinkInfo *ret) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        LinkInfo link = {};
        int r;

        r = link_message(RTM_GETLINK, 0, name, &msg);
        if (r < 0)
                return r;
        r = rtnl_transact(sk, msg, parse_link, &link);
        if (r < 0)
                return r;
        if (link.ifindex <= 0)
                return -EBADMSG;

        *ret = link;
        return 0;
}

static int link_delete_index(struct nl_sock *sk, int ifindex) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };

        msg = nlmsg_alloc_simple(RTM_DELLINK, 0);
        if (!msg)
                return -ENOMEM;
        if (nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0)
                return -ENOMEM;

        return rtnl_transact(sk, msg, NULL, NULL);
}

static int link_delete_name(struct nl_sock *sk, const char *name) {
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        int r;

        r = link_message(RTM_DELLINK, 0, name, &msg);
        if (r < 0)
                return r;
        return rtnl_transact(sk, msg, NULL, NULL);
}

static int mac_addr(const uint8_t mac[static MAC_SIZE], struct nl_addr **ret) {
        struct nl_addr *a;

        a = nl_addr_build(AF_LLC, mac, MAC_SIZE);
        if (!a)
                return -ENOMEM;
        *ret = a;
        return 0;
}

static int veth_add(struct nl_sock *sk, const NetifVethParams *p, const char *host, const char *ifname) {
        _cleanup_rtnl_link_ struct rtnl_link *link = NULL, *peer = NULL;
        _cleanup_nl_addr_ struct nl_addr *host_mac = NULL, *peer_mac = NULL;
        _cleanup_nlmsg_ struct nl_msg *msg = NULL;
        uint8_t mac[MAC_SIZE];
        int r;

        netif_mac(p->key, "veth host mac", p->ns_id, p->ns_name, ifname, mac);
        r = mac_addr(mac, &host_mac);
        if (r < 0)
                return r;
        netif_mac(p->key, "veth peer mac", p->ns_id, p->ns_name, ifname, mac);
        r = mac_addr(mac, &peer_mac);
        if (r < 0)
                return r;

        link = rtnl_link_veth_alloc();
        if (!link)
                return -ENOMEM;
        peer = rtnl_link_veth_get_peer(link);
        if (!peer)
                return -ENOMEM;

        /* Neither end gets IFF_UP: both are created down. */
        rtnl_link_set_name(link, host);
        rtnl_link_set_addr(link, host_mac);
        rtnl_link_set_linkmode(link, IF_LINK_MODE_DORMANT);

        /* IFLA_NET_NS_FD inside the peer's attributes: the kernel registers
         * the peer in that namespace. It never exists on the host, so its
         * name cannot clash there, and nothing on the host sees it come and
         * go as it would with a move. */
        rtnl_link_set_name(peer, ifname);
        rtnl_link_set_addr(peer, peer_mac);
        rtnl_link_set_ns_fd(peer, p->netns_fd);

        /* Without NLM_F_EXCL the kernel would change an existing link of
         * that name instead of failing. */
        r = rtnl_link_build_add_request(link, NLM_F_CREATE | NLM_F_EXCL, &msg);
        if (r < 0)
                return errno_from_nl(r);

        return rtnl_transact(sk, msg, NULL, NULL);
}

int netif_create_veth(const NetifVethParams *p, char ret_host[static NETIF_NAME_SIZE]) {
        _cleanup_nl_socket_ struct nl_sock *sk = NULL;
        char host[NETIF_NAME_SIZE];
        const char *ifname;
        int r;

        if (!p || !p->key || !p->ns_name || p->netns_fd < 0)
                return -EINVAL;
        ifname = ifname_or_default(p->ifname);

        r = netif_host_name(p->key, NETIF_VETH, p->ns_id, p->ns_name, ifname, host);
        if (r < 0)
                return r;

        r = rtnl_open(&sk);
        if (r < 0)
                return r;

        r = veth_add(sk, p, host, ifname);
        if (r < 0)
                return r;

        /* Address generation off and router advertisements ignored, both
         * before the link may become operational. */
        r = link_set_addr_gen_mode_none(sk, host);
        if (r >= 0)
                r = link_ignore_router_advertisements(host);
        if (r >= 0)
                r = link_release_dormant(sk, host);
        if (r < 0) {
                /* Takes the peer with it. */
                (void) link_delete_name(sk, host);
                return r;
        }

        link_try_altname(sk, host, p->ns_name,
                         strcmp(ifname, NETIF_DEFAULT_IFNAME) == 0 ? NULL : ifname);

        memcpy(ret_host, host, NETIF_NAME_SIZE);
        return 0;
}

int netif_create_tap(const NetifTapParams *p, int *ret_fd, char ret_host[static NETIF_NAME_SIZE]) {
        _cleanup_nl_socket_ struct nl_sock *sk = NULL;
        _cleanup_close_ int fd = -1;
        char host[NETIF_NAME_SIZE];
        uint8_t mac[MAC_SIZE];
        struct ifreq ifr = {};
        int r;

        if (!p || !p->key || !p->ns_name || !p->label || !ret_fd)
                return -EINVAL;

        r = netif_host_name(p->key, NETIF_TAP, p->ns_id, p->ns_name, p->label, host);
        if (r < 0)
                return r;

        r = rtnl_open(&sk);
        if (r < 0)
                return r;

        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;

        memcpy(ifr.ifr_name, host, sizeof(host));
        /* IFF_TUN_EXCL: without it, a tap of that name that someone made
         * persistent would be attached to instead of a new one created. */
        ifr.ifr_flags = (short) (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return errno == EBUSY ? -EEXIST : -errno;

        /* From here on, closing fd removes the device again. */
        if (ioctl(fd, TUNSETOWNER, (unsigned long) p->uid) < 0 ||
            ioctl(fd, TUNSETGROUP, (unsigned long) p->gid) < 0 ||
            ioctl(fd, TUNSETPERSIST, 0UL) < 0)
                return -errno;

        /* Unlike the veth, a tap cannot be created dormant (TUNSETIFF
         * registers it in one step) and has carrier at once: something that
         * brought it up before the next call would see a link-local address
         * generated. It is created down, and the fd is not the client's yet. */
        r = link_set_addr_gen_mode_none(sk, host);
        if (r < 0)
                return r;
        r = link_ignore_router_advertisements(host);
        if (r < 0)
                return r;
        netif_mac(p->key, "tap mac", p->ns_id, p->ns_name, p->label, mac);
        r = link_set_mac(sk, host, mac);
        if (r < 0)
                return r;

        link_try_altname(sk, host, p->ns_name, p->label);

        *ret_fd = TAKE_FD(fd);
        memcpy(ret_host, host, NETIF_NAME_SIZE);
        return 0;
}

int netif_delete(const char *host_name) {
        _cleanup_nl_socket_ struct nl_sock *sk = NULL;
        LinkInfo link;
        int r;

        if (!netif_name_is_valid(host_name))
                return -EINVAL;

        r = rtnl_open(&sk);
        if (r < 0)
                return r;

        r = link_get(sk, host_name, &link);
        if (r == -ENODEV)
                return 0;
        if (r < 0)
                return r;

        /* The kernel also finds a link by an alternative name: only a link
         * that carries this as its name, and of a kind created here, is
         * ours. */
        if (strcmp(link.name, host_name) != 0)
                return 0;
        if (strcmp(link.kind, "veth") != 0 && strcmp(link.kind, "tun") != 0)
                return -EMEDIUMTYPE;

        /* By index: the name could have moved to another link meanwhile. */
        r = link_delete_index(sk, link.ifindex);
        if (r == -ENODEV)
                return 0;
        return r;
}
