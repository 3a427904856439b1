/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one place where nsresd creates network links for a client: a veth
 * pair whose peer is created directly inside the client's network namespace,
 * or a tap device whose fd is handed to the client.
 *
 * The host end belongs to the host: it is created down, with IPv6 address
 * generation off and router advertisements ignored, and without addresses.
 * What the host does with it is the admin's network configuration; nothing
 * the peer sends configures it.
 *
 * Host names are "ns-" and 12 hex digits of a keyed hash (HMAC-SHA-256 under
 * a key only the daemon knows) of the namespace id, the namespace name and
 * the link's name inside: nobody can predict, and so take first, the name of
 * someone else's link, and a namespace that is recreated quickly under the
 * same name has a new id, so its link never collides with one the kernel is
 * still deleting. The name is computed apart from creation, so that the
 * daemon can record it before the link exists.
 *
 * Every call is synchronous (a few rtnetlink round trips on a socket of its
 * own, in the caller's network namespace) and returns a negative errno on
 * failure.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NETIF_KEY_SIZE 32
/* IFNAMSIZ: a name of up to 15 characters and its NUL. */
#define NETIF_NAME_SIZE 16
/* The name of a veth peer when the client asks for none. */
#define NETIF_DEFAULT_IFNAME "host0"
/* The key file in the state directory. */
#define NETIF_KEY_FILE "netif.key"

typedef enum NetifKind {
        NETIF_VETH,
        NETIF_TAP,
} NetifKind;

/* A name the kernel takes as given: 1–15 printable ASCII characters, none of
 * them '/', ':' or '%', and not "." or "..". The kernel itself also allows
 * control and non-ASCII bytes (kept out of logs and D-Bus replies here) and
 * '%' (which it would replace by a number, so the link would not get the
 * name asked for). */
bool netif_name_is_valid(const char *name);

/* Reads the key from <state_dir>/netif.key, or creates that file (0600) with
 * a new random key if it is missing, not a regular file, not ours, readable
 * by others, or not exactly NETIF_KEY_SIZE bytes long. Replacing the key only
 * changes the names of links created from then on: the names of existing
 * links are in the registry. */
int netif_key_load(const char *state_dir, uint8_t ret[static NETIF_KEY_SIZE]);

/* The host name of a link: "ns-" and 12 lowercase hex digits. ifname is the
 * veth peer's name inside (NULL or "": NETIF_DEFAULT_IFNAME), or the tap's
 * label. -EINVAL if ifname (or the label) is not a valid name, or ns_name is
 * NULL. */
int netif_host_name(
                const uint8_t key[static NETIF_KEY_SIZE],
                NetifKind kind,
                uint64_t ns_id,
                const char *ns_name,
                const char *ifname,
                char ret[static NETIF_NAME_SIZE]);

typedef struct NetifVethParams {
        const uint8_t *key;     /* NETIF_KEY_SIZE bytes */
        uint64_t ns_id;
        /* As registered: "<owner uid>-<name>" for a non-root owner. */
        const char *ns_name;
        /* The client's network namespace; the caller has verified it. */
        int netns_fd;
        /* The peer's name inside; NULL or "": NETIF_DEFAULT_IFNAME. */
        const char *ifname;
} NetifVethParams;

/* Creates the pair: the host end in the caller's network namespace, named
 * netif_host_name(), and the peer directly inside netns_fd, under ifname.
 * Both get locally administered unicast MAC addresses derived from the same
 * keyed hash. The host end also gets the alternative name
 * "ns-<ns_name>-<ifname>" ("ns-<ns_name>" for the default ifname) where the
 * kernel takes it: it is a convenience for admins and not unique, so a clash
 * is no failure.
 *   -EINVAL  ifname is not a valid name (netif_name_is_valid())
 *   -EEXIST  the host name, or ifname inside the namespace, is taken
 *   other    the kernel's answer; nothing is left behind */
int netif_create_veth(const NetifVethParams *p, char ret_host[static NETIF_NAME_SIZE]);

typedef struct NetifTapParams {
        const uint8_t *key;     /* NETIF_KEY_SIZE bytes */
        uint64_t ns_id;
        const char *ns_name;
        /* Told apart in the name and alternative name: e.g. "tap0". */
        const char *label;
        /* The device's owner and group: the namespace's first uid and gid,
         * who may attach to it from inside. */
        uid_t uid;
        gid_t gid;
} NetifTapParams;

/* Creates a tap device (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR) named
 * netif_host_name(NETIF_TAP, label) and returns its fd (O_CLOEXEC). The
 * device is not persistent: it is removed when the last copy of the fd is
 * closed. Errors as netif_create_veth(); -EEXIST if a link of that name
 * exists, whatever it is. */
int netif_create_tap(const NetifTapParams *p, int *ret_fd, char ret_host[static NETIF_NAME_SIZE]);

/* Deletes a host end created here (a veth takes its peer with it). A link
 * that does not exist is no failure (0): a veth whose namespace died is
 * deleted by the kernel. -EMEDIUMTYPE if the name belongs to a link that is
 * neither veth nor tun/tap, which is left alone. */
int netif_delete(const char *host_name);
