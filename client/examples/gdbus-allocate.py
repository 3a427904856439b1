#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Give a user namespace 65536 ids of its own through nsresd, with GDBus.

What a GLib sandbox does: make an empty user namespace, pass an fd of it to
AllocateUserRange, and let go of the namespace when done; nsresd frees the
range once the kernel destroyed it and says so with UserNamespaceRemoved.

Run as a normal user (the system bus, or DBUS_SYSTEM_BUS_ADDRESS):

    gdbus-allocate.py [NAME]

It prints one "key: value" line per step.
"""

import os
import subprocess
import sys

from gi.repository import Gio, GLib

BUS_NAME = 'org.freedesktop.NamespaceResource1'
MANAGER_PATH = '/org/freedesktop/NamespaceResource1'
MANAGER_IFACE = BUS_NAME + '.Manager'
USERNS_IFACE = BUS_NAME + '.UserNamespace'
SIZE = 65536
RELEASE_TIMEOUT_S = 10


def start_sandbox():
    """An empty user namespace held by a waiting shell: it reports when it
    is inside the namespace, then waits for a line on stdin and prints its
    uid_map as seen from inside."""
    sandbox = subprocess.Popen(['unshare', '--user', '--', 'sh', '-c',
                                'echo ready; read -r _; cat /proc/self/uid_map'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Opening ns/user before unshare(2) ran would give our own namespace.
    if sandbox.stdout.readline() != 'ready\n':
        sandbox.kill()
        sandbox.wait()
        raise SystemExit('could not create a user namespace (unshare --user failed)')
    return sandbox


def allocate(bus, name, userns_fd):
    fds = Gio.UnixFDList.new()
    # The 'h' argument is an index into the fd list sent with the message.
    index = fds.append(userns_fd)
    try:
        reply, _ = bus.call_with_unix_fd_list_sync(
            BUS_NAME, MANAGER_PATH, MANAGER_IFACE, 'AllocateUserRange',
            GLib.Variant('(suuht)', (name, SIZE, 0, index, 0)), GLib.VariantType('(osuu)'),
            # An administrator may have made polkit ask for a password.
            Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, -1, fds, None)
    finally:
        # The list holds a copy of the fd, which holds the namespace as
        # much as ours does: close it now, not whenever the list is freed.
        for fd in fds.steal_fds():
            os.close(fd)
    return reply.unpack()


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else 'gdbus-example'
    # Before connecting: GDBus runs a thread, and forking around it is best avoided.
    sandbox = start_sandbox()
    userns_fd = os.open(f'/proc/{sandbox.pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
    try:
        bus = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
        path, final_name, uid_start, _ = allocate(bus, name, userns_fd)
    except GLib.Error as e:
        os.close(userns_fd)
        sandbox.kill()
        sandbox.wait()
        # The message reads "GDBus.Error:NAME: what the service said".
        remote = Gio.DBusError.get_remote_error(e)
        message = e.message.removeprefix(f'GDBus.Error:{remote}: ') if remote else e.message
        raise SystemExit(f'error: {remote or e.domain}: {message}')
    print(f'object: {path}')
    print(f'name: {final_name}')
    print(f'uid_start: {uid_start}')

    loop = GLib.MainLoop()
    released = []

    def on_removed(_bus, _sender, _path, _iface, _member, args):
        if args[0] == path:
            released.append(args.unpack())
            loop.quit()

    subscription = bus.signal_subscribe(BUS_NAME, MANAGER_IFACE, 'UserNamespaceRemoved', MANAGER_PATH,
                                        None, Gio.DBusSignalFlags.NONE, on_removed)
    # A proxy loads every property at once; as a round trip it also makes
    # sure the bus has our match rule before the namespace can go away.
    proxy = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.NONE, None, BUS_NAME, path, USERNS_IFACE, None)
    print(f'kind: {proxy.get_cached_property("Kind").unpack()}')
    print(f'size: {proxy.get_cached_property("Size").unpack()}')

    out, _ = sandbox.communicate('\n')
    print(f'uid_map: {" ".join(out.split())}')
    # Our fd holds the namespace as much as the sandbox did.
    os.close(userns_fd)

    GLib.timeout_add_seconds(RELEASE_TIMEOUT_S, loop.quit)
    loop.run()
    bus.signal_unsubscribe(subscription)
    if not released:
        raise SystemExit(f'error: no UserNamespaceRemoved for {path} within {RELEASE_TIMEOUT_S} s')
    _, removed_name, owner = released[0]
    print(f'released: {path} {removed_name} {owner}')


if __name__ == '__main__':
    main()
