# SPDX-License-Identifier: LGPL-2.1-or-later
"""The API through GLib's own D-Bus implementation (GDBus), as a GLib
sandbox in the flatpak style uses it: an unprivileged user passes a user
namespace with Gio.UnixFDList, reads the namespace's object through
org.freedesktop.DBus.Properties and a Gio.DBusProxy, is told about its end
by a signal subscription, and gets the service's errors as GLib.Error.

Every GDBus connection lives in a forked child: GDBus runs a worker thread
that a later fork would leave behind in its children. client/examples/
gdbus-allocate.py, the documented example, is run as nobody."""

import os
import pickle
import pwd
import re
import select
import signal
import subprocess
import time
import traceback

from gi.repository import Gio, GLib

import harness as h
from harness import BLOCK, NOBODY

EXAMPLE = h.REPO_ROOT / 'client' / 'examples' / 'gdbus-allocate.py'
CALL_TIMEOUT_MS = 30000
SIGNAL_TIMEOUT_S = 5.0
USERNS_PATH = re.compile(re.escape(h.USERNS_PATH_PREFIX) + r'[0-9]+')


# ---- GDBus, the way a GLib program calls -------------------------------------------

def connect():
    return Gio.DBusConnection.new_for_address_sync(
        h.bus_address(),
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)


def allocate(bus, name, fd, size=BLOCK, target=0, flags=0):
    fds = Gio.UnixFDList.new()
    index = fds.append(fd)
    try:
        reply, _ = bus.call_with_unix_fd_list_sync(
            h.BUS_NAME, h.MANAGER_PATH, h.MANAGER_IFACE, 'AllocateUserRange',
            GLib.Variant('(suuht)', (name, size, target, index, flags)), GLib.VariantType('(osuu)'),
            Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, fds, None)
    finally:
        # The list's copy of the fd holds the namespace too: the tests end
        # namespaces by closing fds, so close it now, not when it is freed.
        for copy in fds.steal_fds():
            os.close(copy)
    return h.Allocation(*reply.unpack())


def get_all(bus, path, interface):
    reply = bus.call_sync(h.BUS_NAME, path, h.PROPERTIES_IFACE, 'GetAll', GLib.Variant('(s)', (interface,)),
                          GLib.VariantType('(a{sv})'), Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
    return reply.unpack()[0]


def list_namespaces(bus):
    reply = bus.call_sync(h.BUS_NAME, h.MANAGER_PATH, h.MANAGER_IFACE, 'ListUserNamespaces',
                          GLib.Variant('(t)', (0,)), GLib.VariantType('(a(ostuuuu))'),
                          Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
    return [h.ListEntry(*e) for e in reply.unpack()[0]]


def error_of(e):
    """A GLib.Error from a D-Bus reply as (remote error name, the service's
    own message, whether GIO mapped it to Gio.DBusError.INVALID_ARGS)."""
    remote = Gio.DBusError.get_remote_error(e)
    invalid_args = e.matches(Gio.dbus_error_quark(), Gio.DBusError.INVALID_ARGS)
    # GDBus keeps the remote name in the message as "GDBus.Error:NAME: ";
    # Gio.DBusError.strip_remote_error() would strip a copy in Python.
    prefix = f'GDBus.Error:{remote}: '
    message = e.message[len(prefix):] if remote and e.message.startswith(prefix) else e.message
    return remote, message, invalid_args


class Subscription:
    """Signals of the Manager with one member, as a GLib program subscribes
    to them; wait() runs a GLib main loop until one matches."""

    def __init__(self, bus, member):
        self.bus = bus
        self.received = []
        self._loop = GLib.MainLoop()
        bus.signal_subscribe(h.BUS_NAME, h.MANAGER_IFACE, member, h.MANAGER_PATH, None,
                                        Gio.DBusSignalFlags.NONE, self._on_signal)
        # Round trip: the bus has our match rule once the reply is here.
        bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId',
                      None, None, Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)

    def _on_signal(self, _bus, _sender, _path, _interface, _member, args):
        self.received.append(args.unpack())
        self._loop.quit()

    def wait(self, predicate, timeout=SIGNAL_TIMEOUT_S):
        """The args of the first signal that matches, or None after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for args in self.received:
                if predicate(args):
                    return args
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            timed_out = []

            def on_timeout():
                timed_out.append(True)
                self._loop.quit()
                return GLib.SOURCE_REMOVE

            timer = GLib.timeout_add(max(1, int(left * 1000)), on_timeout)
            self._loop.run()
            if not timed_out:
                GLib.source_remove(timer)


# ---- running it as another user ------------------------------------------------------

def run_as(user, func, timeout=60):
    """func() in a forked child that dropped to `user` (root if None): its
    return value; a failure in the child fails the test with its traceback."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                if user is not None:
                    h.drop_privileges(user)
                payload = ('return', func())
            except BaseException:  # noqa: B902 - everything goes back to the test
                payload = ('raise', traceback.format_exc())
            with os.fdopen(write_fd, 'wb') as f:
                f.write(pickle.dumps(payload))
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b''
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'{func.__name__} as {user} did not finish within {timeout} s')
            ready, _, _ = select.select([read_fd], [], [], left)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    assert data, f'{func.__name__} as {user} died without a result'
    kind, value = pickle.loads(data)
    if kind == 'raise':
        raise AssertionError(f'{func.__name__} as {user} failed:\n{value}')
    return value


# ---- the tests ------------------------------------------------------------------------------

def test_gdbus_client_allocates_with_an_fd_list_and_reads_the_object(daemon):
    def client():
        # The namespace first: its holder is forked before GDBus starts a thread.
        ns = h.make_userns()
        try:
            bus = connect()
            a = allocate(bus, 'gdbus', ns.fd, target=0)
            props = get_all(bus, a.path, h.USERNS_IFACE)
            proxy = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.NONE, None, h.BUS_NAME, a.path,
                                           h.USERNS_IFACE, None)
            cached = {n: proxy.get_cached_property(n).unpack() for n in proxy.get_cached_property_names()}
            return {'allocation': a, 'props': props, 'cached': cached, 'id': ns.id,
                    'inode': os.fstat(ns.fd).st_ino, 'uid_map': ns.uid_map(), 'gid_map': ns.gid_map(),
                    'listed': list_namespaces(bus)}
        finally:
            ns.release()

    r = run_as(NOBODY, client)
    a, props = r['allocation'], r['props']
    assert USERNS_PATH.fullmatch(a.path) and a.path == f'{h.USERNS_PATH_PREFIX}{r["id"]}'
    assert a.name == '65534-gdbus'
    assert a.uid_start % BLOCK == 0 and h.DEFAULT_RANGE_START <= a.uid_start <= h.DEFAULT_RANGE_END
    assert a.gid_start == a.uid_start
    assert props['Name'] == '65534-gdbus'
    assert props['Owner'] == 65534
    assert props['Id'] == r['id']
    assert props['Inode'] == r['inode']
    assert props['UidStart'] == a.uid_start
    assert props['GidStart'] == a.gid_start
    assert props['Size'] == BLOCK
    assert props['Target'] == 0
    assert props['Kind'] == 'transient'
    # The proxy's cache holds the same values GetAll returned.
    assert r['cached'] == props
    assert r['uid_map'] == [(0, a.uid_start, BLOCK)]
    assert r['gid_map'] == [(0, a.gid_start, BLOCK)]
    assert [(e.path, e.name, e.id, e.owner, e.uid_start, e.size) for e in r['listed']] == \
        [(a.path, '65534-gdbus', r['id'], 65534, a.uid_start, BLOCK)]


def test_gdbus_subscription_receives_new_and_removed(daemon):
    def client():
        ns = h.make_userns()
        try:
            bus = connect()
            new = Subscription(bus, 'UserNamespaceNew')
            removed = Subscription(bus, 'UserNamespaceRemoved')
            a = allocate(bus, 'gone', ns.fd)
            new_args = new.wait(lambda args: args[0] == a.path)
            # Nothing of the namespace is left with us: the kernel destroys it.
            ns.release()
            removed_args = removed.wait(lambda args: args[0] == a.path)
            try:
                get_all(bus, a.path, h.USERNS_IFACE)
                after = None
            except GLib.Error as e:
                after = error_of(e)[0]
            return {'allocation': a, 'new': new_args, 'removed': removed_args, 'after': after,
                    'listed': list_namespaces(bus)}
        finally:
            ns.release()

    r = run_as(NOBODY, client)
    a = r['allocation']
    assert r['new'] == (a.path, '65534-gone', 65534)
    assert r['removed'] == (a.path, '65534-gone', 65534), \
        f'no UserNamespaceRemoved for {a.path} within {SIGNAL_TIMEOUT_S} s'
    # The object went with the signal.
    assert r['after'] == h.DBUS_ERROR + 'UnknownObject'
    assert r['listed'] == []


def test_gdbus_errors_are_glib_errors_with_the_contract_name(daemon, userns):
    first, second = userns(NOBODY), userns(NOBODY)

    def client():
        bus = connect()
        allocate(bus, 'dup', first.fd)
        outcomes = {}
        for what, kwargs in (('name taken', {'name': 'dup'}),
                             ('unknown flag', {'name': 'flags', 'flags': 1 << 40}),
                             ('bad size', {'name': 'size', 'size': 7})):
            try:
                kwargs.setdefault('fd', second.fd)
                outcomes[what] = ('returned', allocate(bus, **kwargs))
            except GLib.Error as e:
                outcomes[what] = error_of(e)
        return outcomes

    r = run_as(NOBODY, client)
    remote, message, invalid_args = r['name taken']
    assert remote == h.ERROR + 'NameExists'
    assert not invalid_args
    # The service's own words.
    assert message.startswith("The name '65534-dup' is already in use")
    # GIO knows the standard errors: the remote name survives its mapping.
    remote, message, invalid_args = r['unknown flag']
    assert (remote, invalid_args) == (h.DBUS_ERROR + 'InvalidArgs', True)
    assert 'flag' in message.lower()
    assert r['bad size'][0] == h.ERROR + 'InvalidSize'
    assert r['bad size'][1]
    # The refused calls left the second namespace as it was.
    assert second.uid_map() == [] and second.gid_map() == []


def test_gdbus_polkit_refusals_are_glib_errors(daemon, polkit, userns):
    ns = userns(NOBODY)

    def client():
        try:
            allocate(connect(), 'denied', ns.fd)
        except GLib.Error as e:
            return error_of(e)
        return None

    polkit.deny_all()
    remote, message, _ = run_as(NOBODY, client)
    assert remote == h.DBUS_ERROR + 'AccessDenied'
    assert message
    # A call without ALLOW_INTERACTIVE_AUTHORIZATION cannot answer a challenge.
    polkit.challenge()
    remote, message, _ = run_as(NOBODY, client)
    assert remote == h.DBUS_ERROR + 'InteractiveAuthorizationRequired'
    assert message
    assert ns.uid_map() == []


# ---- the documented example ------------------------------------------------------------------

def run_example(user, *args, timeout=60):
    pw = pwd.getpwnam(user)
    env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': '/', 'LANG': 'C.UTF-8',
           'DBUS_SYSTEM_BUS_ADDRESS': h.bus_address()}
    return subprocess.run(['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups',
                           '/usr/bin/python3', str(EXAMPLE), *args],
                          env=env, cwd='/', capture_output=True, text=True, timeout=timeout)


def example_output(stdout):
    return dict(line.split(': ', 1) for line in stdout.splitlines())


def test_gdbus_example_allocates_and_sees_the_release(daemon):
    p = run_example(NOBODY, 'gdbus-ex')
    assert p.returncode == 0, p.stderr
    out = example_output(p.stdout)
    assert list(out) == ['object', 'name', 'uid_start', 'kind', 'size', 'uid_map', 'released']
    assert USERNS_PATH.fullmatch(out['object'])
    assert out['name'] == '65534-gdbus-ex'
    uid_start = int(out['uid_start'])
    assert uid_start % BLOCK == 0 and h.DEFAULT_RANGE_START <= uid_start <= h.DEFAULT_RANGE_END
    assert (out['kind'], out['size']) == ('transient', str(BLOCK))
    # What the sandbox itself read from /proc/self/uid_map.
    assert out['uid_map'] == f'0 {uid_start} {BLOCK}'
    assert out['released'] == f'{out["object"]} 65534-gdbus-ex 65534'
    assert daemon.registry_files() == []
    # The NSS index drops removed lines a moment later (they are coalesced).
    h.wait_until(lambda: daemon.index_entries() == [], 5, what='the NSS index to be empty')


def test_gdbus_example_reports_the_service_error_and_leaves_nothing(daemon, userns):
    taken = userns(NOBODY)
    run_as(NOBODY, lambda: allocate(connect(), 'taken', taken.fd))
    p = run_example(NOBODY, 'taken')
    assert p.returncode == 1
    assert p.stdout == ''
    assert p.stderr.startswith(f'error: {h.ERROR}NameExists: ')
    assert "'65534-taken'" in p.stderr and 'GDBus.Error' not in p.stderr
    # Only the namespace that holds the name is known.
    assert len(daemon.registry_files()) == 1
