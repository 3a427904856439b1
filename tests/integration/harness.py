# SPDX-License-Identifier: LGPL-2.1-or-later
"""Building blocks of the nsresd integration tests.

Everything here talks to the real daemon on a private system-like bus: a
client wrapper, calling as another user from a forked child, user namespaces
made the way a client makes them, the daemon process itself and the polkit
mock. The fixtures in conftest.py put them together; the test modules only
describe behaviour.
"""

import ctypes
import errno
import fcntl
import json
import os
import pickle
import pwd
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import traceback
from collections import namedtuple
from pathlib import Path

import dbus
import dbus.bus
import dbus.types

BUS_NAME = 'org.freedesktop.NamespaceResource1'
MANAGER_PATH = '/org/freedesktop/NamespaceResource1'
MANAGER_IFACE = BUS_NAME + '.Manager'
USERNS_IFACE = BUS_NAME + '.UserNamespace'
USERNS_PATH_PREFIX = MANAGER_PATH + '/userns/'
ERROR = BUS_NAME + '.Error.'
DBUS_ERROR = 'org.freedesktop.DBus.Error.'
PROPERTIES_IFACE = 'org.freedesktop.DBus.Properties'
OBJECT_MANAGER_IFACE = 'org.freedesktop.DBus.ObjectManager'

ACTION_ALLOCATE = BUS_NAME + '.allocate-user-range'
ACTION_REGISTER = BUS_NAME + '.register-user-namespace'
ACTION_MANAGE = BUS_NAME + '.manage'
ACTION_DELEGATE_MOUNT = BUS_NAME + '.delegate-mount'
ACTION_DELEGATE_CGROUP = BUS_NAME + '.delegate-cgroup'
ACTION_DELEGATE_NETIF = BUS_NAME + '.delegate-network-interface'
ACTION_DELEGATE_BPF = BUS_NAME + '.delegate-bpf'

POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_PATH = '/org/freedesktop/PolicyKit1/Authority'
POLKIT_IFACE = 'org.freedesktop.PolicyKit1.Authority'
MOCK_IFACE = 'org.freedesktop.DBus.Mock'

MANGLE_NAME = 1 << 0
SELF = 1 << 1
MAP_CALLER = 1 << 2
# AddControlGroupToUserNamespace
CREATE_CHILD = 1 << 0

BLOCK = 65536
DEFAULT_RANGE_START = 524288
DEFAULT_RANGE_END = 1879048191
SINGLE_RANGE_START = 61184
SINGLE_RANGE_END = 65519
UID_MAX = 4294967295

NOBODY = 'nobody'
DAEMON_USER = 'daemon'

# _IOR(0xb7, 13, __u64): the 64-bit namespace id (Linux 6.18).
NS_GET_ID = 0x8008b70d
AT_EMPTY_PATH = 0x1000
STATX_MNT_ID = 0x1000
STATX_MNT_ID_UNIQUE = 0x4000
MNT_DETACH = 2
CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
BPF_FS_MAGIC = 0xcafe4a11
BPF_MOUNT_POINT = Path('/sys/fs/bpf')
# The kernel puts these iterators into every new bpffs: they are not pins.
BPFFS_PRELOADED = {'maps.debug', 'progs.debug'}

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
BUS_POLICY = REPO_ROOT / 'dbus' / 'org.freedesktop.NamespaceResource1.conf'

_libc = ctypes.CDLL(None, use_errno=True)


def safe_file_name(label):
    return re.sub(r'[^A-Za-z0-9_.-]', '_', label)[:80]


def build_dir():
    return Path(os.environ.get('NSRESD_BUILD_DIR') or REPO_ROOT / 'build').resolve()


def build_options():
    """The meson options the build directory was configured with."""
    path = build_dir() / 'meson-info' / 'intro-buildoptions.json'
    return {o['name']: o['value'] for o in json.loads(path.read_text())}


def sanitized_build():
    return build_options().get('b_sanitize', 'none') != 'none'


def daemon_binary():
    return build_dir() / 'daemon' / 'nsresd'


def client_binary():
    return build_dir() / 'client' / 'nsresctl'


# NSRESD_VALGRIND=1 runs every daemon that a test starts without a prefix of
# its own under memcheck: an invalid access or a definite leak makes it exit
# 99, which fails the test as any non-zero exit on SIGTERM does. valgrind
# cannot follow clone(CLONE_VM), so its helpers are forked.
VALGRIND = bool(os.environ.get('NSRESD_VALGRIND'))
VALGRIND_ARGV = ['valgrind', '--quiet', '--error-exitcode=99', '--leak-check=full',
                 '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
                 '--child-silent-after-fork=yes', '--track-origins=yes',
                 f'--suppressions={Path(__file__).parent / "valgrind.supp"}']
# Starting and stopping take that much longer under it.
DAEMON_SLOWDOWN = 10 if VALGRIND else 1
# What a daemon and its forked helpers are called in /proc/PID/stat.
DAEMON_COMMS = ('nsresd', 'memcheck-amd64-') if VALGRIND else ('nsresd',)


def bus_address():
    return os.environ['DBUS_SYSTEM_BUS_ADDRESS']


def wait_until(predicate, timeout=5.0, interval=0.01, what='condition'):
    """Poll predicate() until it returns something true; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(interval)


# ---- values crossing process and bus boundaries ---------------------------

class BusError(Exception):
    """A D-Bus error reply, as plain strings (picklable across fork)."""

    def __init__(self, name, message):
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self):
        return f'{self.name}: {self.message}'


class ChildError(AssertionError):
    """Something other than a bus error went wrong in a forked child."""


Allocation = namedtuple('Allocation', 'path name uid_start gid_start')
Registration = namedtuple('Registration', 'path name')
ListEntry = namedtuple('ListEntry', 'path name id owner uid_start size target')


def plain(value):
    """dbus-python values to plain Python values (bool before int: a
    dbus.Boolean is an int)."""
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.Byte, dbus.Int16, dbus.UInt16, dbus.Int32, dbus.UInt32,
                          dbus.Int64, dbus.UInt64)):
        return int(value)
    if isinstance(value, dbus.Double):
        return float(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature)):
        return str(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, dbus.Struct):
        return tuple(plain(v) for v in value)
    if isinstance(value, tuple) and hasattr(value, '_fields'):
        return type(value)(*(plain(v) for v in value))
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _bus_call(method, *args, **kwargs):
    try:
        return method(*args, **kwargs)
    except dbus.exceptions.DBusException as e:
        raise BusError(e.get_dbus_name(), e.get_dbus_message()) from None


def _fd_of(userns):
    return userns.fd if isinstance(userns, Userns) else userns


# ---- a client ---------------------------------------------------------------

class Client:
    """One private connection to the bus, with the Manager's methods.

    Calls go to the well-known name every time (no proxy objects: those bind
    to the unique name of the owner they found first, which a restart of the
    daemon changes)."""

    def __init__(self, address=None, mainloop=None):
        self.bus = dbus.bus.BusConnection(address or bus_address(), mainloop=mainloop)

    def close(self):
        self.bus.close()

    def call(self, path, interface, method, signature='', args=(), timeout=30):
        return _bus_call(self.bus.call_blocking, BUS_NAME, path, interface, method, signature, args,
                         timeout=timeout)

    def allocate(self, name, userns, size=BLOCK, target=0, flags=0, timeout=30):
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'AllocateUserRange', 'suuht',
                      (name, size, target, dbus.types.UnixFd(_fd_of(userns)), flags), timeout)
        return Allocation(str(r[0]), str(r[1]), int(r[2]), int(r[3]))

    def register(self, name, userns, flags=0, timeout=30):
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'RegisterUserNamespace', 'sht',
                      (name, dbus.types.UnixFd(_fd_of(userns)), flags), timeout)
        return Registration(str(r[0]), str(r[1]))

    def add_mount(self, userns, mount_fd, flags=0, timeout=30):
        self.call(MANAGER_PATH, MANAGER_IFACE, 'AddMountToUserNamespace', 'hht',
                  (dbus.types.UnixFd(_fd_of(userns)), dbus.types.UnixFd(mount_fd), flags), timeout)

    def add_cgroup(self, userns, cgroup_fd, flags=0, timeout=30):
        return str(self.call(MANAGER_PATH, MANAGER_IFACE, 'AddControlGroupToUserNamespace', 'hht',
                             (dbus.types.UnixFd(_fd_of(userns)), dbus.types.UnixFd(cgroup_fd), flags), timeout))

    def add_network(self, userns, netns_fd, ifname='', flags=0, timeout=30):
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'AddNetworkToUserNamespace', 'hhst',
                      (dbus.types.UnixFd(_fd_of(userns)), dbus.types.UnixFd(netns_fd), ifname, flags), timeout)
        return str(r[0]), str(r[1])

    def delegate_bpf(self, userns, cmds=('any',), maps=('any',), progs=('any',), attachs=('any',), flags=0,
                     timeout=30):
        """The fd of the bpffs mount made for the namespace: the caller's to close."""
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'DelegateBpf', 'hasasasast',
                      (dbus.types.UnixFd(_fd_of(userns)), dbus.Array(cmds, signature='s'),
                       dbus.Array(maps, signature='s'), dbus.Array(progs, signature='s'),
                       dbus.Array(attachs, signature='s'), flags), timeout)
        return r.take()

    def add_tap(self, userns, flags=0, timeout=30):
        """(host name, tap fd): the fd is the caller's to close."""
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'AddTapToUserNamespace', 'ht',
                      (dbus.types.UnixFd(_fd_of(userns)), flags), timeout)
        return str(r[0]), r[1].take()

    def list(self, flags=0):
        r = self.call(MANAGER_PATH, MANAGER_IFACE, 'ListUserNamespaces', 't', (flags,))
        return [ListEntry(*plain(e)) for e in r]

    def by_uid(self, uid, flags=0):
        return str(self.call(MANAGER_PATH, MANAGER_IFACE, 'GetUserNamespaceByUid', 'ut', (uid, flags)))

    def get_all(self, path, interface):
        return plain(self.call(path, PROPERTIES_IFACE, 'GetAll', 's', (interface,)))

    def manager_properties(self):
        return self.get_all(MANAGER_PATH, MANAGER_IFACE)

    def manager_property(self, name):
        return plain(self.call(MANAGER_PATH, PROPERTIES_IFACE, 'Get', 'ss', (MANAGER_IFACE, name)))

    def namespace_properties(self, path):
        return self.get_all(path, USERNS_IFACE)

    def managed_objects(self):
        return plain(self.call(MANAGER_PATH, OBJECT_MANAGER_IFACE, 'GetManagedObjects'))

    def introspect(self, path):
        return str(self.call(path, 'org.freedesktop.DBus.Introspectable', 'Introspect'))

    def namespace_paths(self):
        """Per-namespace objects as the ObjectManager lists them."""
        return sorted(p for p in self.managed_objects() if p.startswith(USERNS_PATH_PREFIX))

    def object_exists(self, path):
        try:
            self.namespace_properties(path)
            return True
        except BusError:
            return False

    def name_has_owner(self, name=BUS_NAME):
        return bool(self.bus.name_has_owner(name))


# ---- privileges -------------------------------------------------------------

def passwd(user):
    return pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)


def drop_privileges(user):
    pw = passwd(user)
    os.setgroups([])
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    # A change of credentials makes the process undumpable, and /proc/<pid>
    # of an undumpable process (ns/user, uid_map) belongs to root: a client
    # started as this user would be dumpable.
    if _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_DUMPABLE)')


def _close_fds_except(keep):
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


# ---- user namespaces ----------------------------------------------------------

# Write ends of the pipes that keep namespace holder processes waiting. A
# forked child must not keep a copy, or closing ours would not let the holder
# exit.
_holder_pipes = set()


def ns_id(fd):
    return struct.unpack('Q', fcntl.ioctl(fd, NS_GET_ID, b'\0' * 8))[0]


def _unshare_user():
    if _libc.unshare(CLONE_NEWUSER) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f'unshare(CLONE_NEWUSER): {os.strerror(e)}')


def _map_self(inside, uid, gid):
    """Map `inside` to uid/gid: the ids before the unshare, since inside
    an unmapped namespace every id reads as the overflow id."""
    with open('/proc/self/setgroups', 'w') as f:
        f.write('deny')
    with open('/proc/self/uid_map', 'w') as f:
        f.write(f'{inside} {uid} 1')
    with open('/proc/self/gid_map', 'w') as f:
        f.write(f'{inside} {gid} 1')


def parse_map(text):
    return [tuple(int(x) for x in line.split()) for line in text.splitlines() if line.strip()]


class Userns:
    """A user namespace made the way a client makes one: a child process
    unshares it and waits; we hold an fd of /proc/<child>/ns/user. The
    namespace dies when the process is gone and the fd is closed."""

    def __init__(self, pid, fd, go_fd):
        self.pid = pid
        self.fd = fd
        self._go = go_fd
        self.id = ns_id(fd)

    def _read(self, name):
        with open(f'/proc/{self.pid}/{name}') as f:
            return f.read()

    def uid_map(self):
        return parse_map(self._read('uid_map'))

    def gid_map(self):
        return parse_map(self._read('gid_map'))

    def setgroups(self):
        return self._read('setgroups').strip()

    def close_fd(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def end_process(self):
        """Let the holder process exit and reap it; an open fd still holds
        the namespace."""
        if self._go is not None:
            _holder_pipes.discard(self._go)
            os.close(self._go)
            self._go = None
        if self.pid is not None:
            _reap(self.pid, timeout=5)
            self.pid = None

    def release(self):
        """Drop every reference we have: the namespace dies."""
        self.close_fd()
        self.end_process()


def _reap(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.002)


def make_userns(user=None, *, map_self=False, inside=0, nested=False, hold_process=True):
    """Create a user namespace owned by `user` (default: the current uid).

    map_self: the child maps its own uid/gid to `inside` itself (setgroups
    denied), as `unshare -r` does. nested: the namespace is created inside
    another one (the child maps itself in the outer one first: creating a
    namespace needs a mapped uid). hold_process=False: the child exits at once
    and only our fd holds the namespace.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _close_fds_except({ready_w, go_r})
            if user is not None:
                drop_privileges(user)
            if nested:
                uid, gid = os.geteuid(), os.getegid()
                _unshare_user()
                _map_self(0, uid, gid)
            uid, gid = os.geteuid(), os.getegid()
            _unshare_user()
            if map_self:
                _map_self(inside, uid, gid)
            _write_all(ready_w, b'ok')
            os.read(go_r, 1)
        except BaseException as e:  # noqa: B902 - report anything to the parent
            try:
                _write_all(ready_w, f'{type(e).__name__}: {e}'.encode())
            except BaseException:
                pass
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        message = os.read(ready_r, 4096)
    finally:
        os.close(ready_r)
    if message != b'ok':
        os.close(go_w)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise RuntimeError(f'could not create the user namespace: {message.decode(errors="replace")}')
    try:
        fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(go_w)
        _reap(pid, 5)
        raise
    _holder_pipes.add(go_w)
    ns = Userns(pid, fd, go_w)
    if not hold_process:
        ns.end_process()
    return ns


# ---- mounts ---------------------------------------------------------------------

def mount_id(fd):
    """(id, unique) of the mount fd is on, as statx reports it: the unique
    id where the kernel has one (6.8+), else the reusable one."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(fd, b'', AT_EMPTY_PATH, STATX_MNT_ID | STATX_MNT_ID_UNIQUE, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f'statx: {os.strerror(e)}')
    mask, = struct.unpack_from('I', buf, 0)
    # struct statx: stx_mnt_id follows the four timestamps and the device numbers.
    mnt_id, = struct.unpack_from('Q', buf, 144)
    return mnt_id, bool(mask & STATX_MNT_ID_UNIQUE)


SYS_open_tree = 428     # the same number on every architecture
OPEN_TREE_CLONE = 1
_libc.syscall.restype = ctypes.c_long


def open_tree_clone(fd):
    """A detached copy of the mount fd is the root of (open_tree(2) with
    OPEN_TREE_CLONE): a mount of its own, gone when the fd is closed."""
    new = _libc.syscall(ctypes.c_long(SYS_open_tree), ctypes.c_int(fd), ctypes.c_char_p(b''),
                        ctypes.c_uint(OPEN_TREE_CLONE | AT_EMPTY_PATH | os.O_CLOEXEC))
    if new < 0:
        e = ctypes.get_errno()
        raise OSError(e, f'open_tree: {os.strerror(e)}')
    return new


class Tmpfs:
    """A tmpfs mounted on a new directory below `parent`, for as long as the
    test needs it. fd: O_PATH of its root, what a client delegates."""

    def __init__(self, parent):
        self.path = Path(tempfile.mkdtemp(prefix='mnt-', dir=parent))
        if _libc.mount(b'tmpfs', str(self.path).encode(), b'tmpfs', 0, b'mode=0755') != 0:
            e = ctypes.get_errno()
            self.path.rmdir()
            raise OSError(e, f'mount tmpfs on {self.path}: {os.strerror(e)}')
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def id(self):
        return mount_id(self.fd)[0]

    def close_fd(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def unmount(self):
        """Not lazily: fails with EBUSY while anyone holds the mount."""
        if _libc.umount2(str(self.path).encode(), 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f'umount {self.path}: {os.strerror(e)}')

    def release(self):
        self.close_fd()
        if os.path.ismount(self.path):
            _libc.umount2(str(self.path).encode(), MNT_DETACH)
        self.path.rmdir()


# ---- calling as another user ----------------------------------------------------

class ChildCall:
    """A function running in a forked child as another user."""

    def __init__(self, pid, read_fd, what):
        self.pid = pid
        self._fd = read_fd
        self._what = what
        self._data = b''
        self._done = False

    def result(self, timeout=120):
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'{self._what} did not finish within {timeout} s')
                ready, _, _ = select.select([self._fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    break
                self._data += chunk
        finally:
            self._finish()
        if not self._data:
            raise ChildError(f'{self._what} died without a result')
        kind, value = pickle.loads(self._data)
        if kind == 'return':
            return value
        raise value

    def _finish(self):
        if self._done:
            return
        self._done = True
        os.close(self._fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)

    def kill(self):
        self._finish()


def spawn_as_user(user, func, *args, **kwargs):
    """Run func(client, *args, **kwargs) in a forked child that dropped to
    `user` and opened its own connection. The result (or the BusError, or the
    failure) comes back through ChildCall.result()."""
    read_fd, write_fd = os.pipe()
    what = f'{getattr(func, "__name__", func)} as {user}'
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            for fd in list(_holder_pipes):
                try:
                    os.close(fd)
                except OSError:
                    pass
            _holder_pipes.clear()
            try:
                drop_privileges(user)
                client = Client()
                payload = ('return', plain(func(client, *args, **kwargs)))
            except BusError as e:
                payload = ('raise', e)
            except dbus.exceptions.DBusException as e:
                payload = ('raise', BusError(e.get_dbus_name(), e.get_dbus_message()))
            except BaseException:  # noqa: B902 - everything goes back to the test
                payload = ('raise', ChildError(f'{what} failed:\n{traceback.format_exc()}'))
            try:
                data = pickle.dumps(payload)
            except Exception:
                data = pickle.dumps(('raise', ChildError(f'{what}: unpicklable result {payload!r}')))
            _write_all(write_fd, data)
        finally:
            os._exit(0)
    os.close(write_fd)
    return ChildCall(pid, read_fd, what)


def as_user(user, func, *args, timeout=120, **kwargs):
    return spawn_as_user(user, func, *args, **kwargs).result(timeout)


def expect_error(name, user, func, *args, **kwargs):
    """Call func as user and return the BusError, asserting its name."""
    try:
        value = as_user(user, func, *args, **kwargs)
    except BusError as e:
        assert e.name == name, f'expected {name}, got {e}'
        return e
    raise AssertionError(f'expected {name}, but the call returned {value!r}')


def run_parallel(client, requests, release_polkit_after_errors=None, timeout=120):
    """Send every request at once on one connection and wait for all replies.

    requests: (method, args) with method 'allocate' (name, fd, size, target,
    flags) or 'register' (name, fd, flags). Returns one dict per request:
    outcome ('ok'/'error'), value (final name or error name), message, t
    (seconds after the first send) and ok_before (successes seen before this
    reply). release_polkit_after_errors=N: once N errors have arrived, tell the
    polkit mock to answer its held calls.
    """
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib

    bus = dbus.bus.BusConnection(bus_address(), mainloop=DBusGMainLoop())
    loop = GLib.MainLoop()
    results = [None] * len(requests)
    state = {'pending': len(requests), 'ok': 0, 'errors': 0, 'released': False}
    start = time.monotonic()

    def maybe_release():
        if (release_polkit_after_errors is not None and not state['released']
                and state['errors'] >= release_polkit_after_errors):
            state['released'] = True
            # Stop hanging first: checks still queued in the service reach
            # polkit only after this.
            bus.call_blocking(POLKIT_NAME, POLKIT_PATH, MOCK_IFACE, 'SimulateHang', 'b', (False,), timeout=30)
            bus.call_blocking(POLKIT_NAME, POLKIT_PATH, MOCK_IFACE, 'ReleaseHangingCalls', '', (), timeout=30)

    def finish(i, outcome, value, message=''):
        results[i] = {'outcome': outcome, 'value': value, 'message': message,
                      't': time.monotonic() - start, 'ok_before': state['ok']}
        state['ok' if outcome == 'ok' else 'errors'] += 1
        state['pending'] -= 1
        if outcome == 'error':
            maybe_release()
        if state['pending'] == 0:
            loop.quit()

    def on_reply(i):
        return lambda *r: finish(i, 'ok', str(r[1]))

    def on_error(i):
        return lambda e: finish(i, 'error', e.get_dbus_name(), e.get_dbus_message())

    for i, (method, args) in enumerate(requests):
        if method == 'allocate':
            name, fd, size, target, flags = args
            member, signature = 'AllocateUserRange', 'suuht'
            args = (name, size, target, dbus.types.UnixFd(fd), flags)
        else:
            name, fd, flags = args
            member, signature = 'RegisterUserNamespace', 'sht'
            args = (name, dbus.types.UnixFd(fd), flags)
        bus.call_async(BUS_NAME, MANAGER_PATH, MANAGER_IFACE, member, signature, args,
                       on_reply(i), on_error(i), timeout=timeout)
    GLib.timeout_add(int(timeout * 1000), loop.quit)
    maybe_release()
    loop.run()
    bus.close()
    return results


# ---- signals ---------------------------------------------------------------------

class SignalRecorder:
    """Records every signal the service sends, on its own connection driven
    by a GLib main loop that wait_for() pumps."""

    def __init__(self, address=None):
        from dbus.mainloop.glib import DBusGMainLoop
        from gi.repository import GLib

        self._context = GLib.MainContext.default()
        self.bus = dbus.bus.BusConnection(address or bus_address(), mainloop=DBusGMainLoop())
        self.events = []
        self._match = self.bus.add_signal_receiver(
            self._on_signal, path_keyword='path', member_keyword='member',
            interface_keyword='interface', sender_keyword='sender')
        # Round trip: the match rule is in place once this returns.
        self.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                               'GetId', '', ())

    def _on_signal(self, *args, path=None, member=None, interface=None, sender=None):
        if path is None or not str(path).startswith(MANAGER_PATH):
            return
        self.events.append((str(interface), str(member), str(path), plain(args)))

    def pump(self):
        while self._context.pending():
            self._context.iteration(False)

    def of(self, member):
        self.pump()
        return [e for e in self.events if e[1] == member]

    def wait_for(self, predicate, timeout=5.0, what='signal'):
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            found = [e for e in self.events if predicate(e)]
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise AssertionError(f'timed out after {timeout} s waiting for {what}; got {self.events}')
            self._context.iteration(False) or time.sleep(0.002)

    def close(self):
        self._match.remove()
        self.bus.close()
        self.pump()


# ---- the test environment: bus and bpffs -------------------------------------------

def _mounted_fs_type(path):
    fstype = None
    with open('/proc/self/mounts') as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[1] == str(path):
                fstype = fields[2]
    return fstype


class Environment:
    """Session-wide: a private system bus and a bpffs mount.

    raised_limits=False keeps dbus-daemon's own system-bus limits; a
    secondary environment (primary=False) is a further bus only: it leaves
    bpffs and child reaping to the primary one. extra_policies: further bus
    policy files to include (e.g. the one that lets the real polkitd own its
    name)."""

    def __init__(self, raised_limits=True, primary=True, extra_policies=()):
        self.raised_limits = raised_limits
        self.primary = primary
        self.extra_policies = [Path(p) for p in extra_policies]
        self.root = Path(tempfile.mkdtemp(prefix='nsresd-it-'))
        # Clients run as nobody and daemon: they must reach the socket and
        # the state directories below.
        self.root.chmod(0o755)
        self.logs = self.root / 'logs'
        self.logs.mkdir(mode=0o755)
        self.bus_pid = None
        self.mounted_bpffs = False
        self._saved_address = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')

    def start(self):
        # Like pid 1 on a real system, adopt and reap what a killed daemon
        # leaves behind (its map-writing helpers): an unreaped zombie still
        # holds its user namespace.
        if self.primary:
            if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')
            self._mount_bpffs()
        socket_path = self.root / 'system_bus_socket'
        include = (f'<include ignore_missing="yes">{BUS_POLICY}</include>'
                   if BUS_POLICY.exists() else '')
        include += ''.join(f'\n  <include>{p}</include>' for p in self.extra_policies)
        conf = (HERE / 'system-bus.conf.in').read_text()
        conf = conf.replace('@SOCKET@', str(socket_path)).replace('@INCLUDE@', include)
        if not self.raised_limits:
            conf = '\n'.join(line for line in conf.splitlines() if '<limit ' not in line)
        if VALGRIND:
            # The daemon connects, then loads its BPF objects before it
            # first talks to the bus: under memcheck that outlasts the
            # bus's time limit for completing authentication.
            conf = conf.replace('</busconfig>', '  <limit name="auth_timeout">300000</limit>\n</busconfig>')
        conf_path = self.root / 'system-bus.conf'
        conf_path.write_text(conf)

        import dbusmock
        self.bus_pid, self.address = dbusmock.DBusTestCase.start_dbus(conf=str(conf_path))
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        wait_until(socket_path.exists, 5, what='the bus socket')
        mode = socket_path.stat().st_mode
        if mode & 0o006 != 0o006:
            socket_path.chmod(0o777)

    def _mount_bpffs(self):
        if _mounted_fs_type(BPF_MOUNT_POINT) == 'bpf':
            return
        subprocess.run(['mount', '-t', 'bpf', 'bpf', str(BPF_MOUNT_POINT)], check=True)
        self.mounted_bpffs = True

    def new_bpf_dir(self):
        return BPF_MOUNT_POINT / f'nsresd-test-{secrets.token_hex(6)}'

    def close(self):
        if self.bus_pid:
            # dbus-daemon --fork left it to us (we are a subreaper).
            os.kill(self.bus_pid, signal.SIGTERM)
            _reap(self.bus_pid, timeout=5)
            self.bus_pid = None
        if self.primary:
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        if self._saved_address is None:
            os.environ.pop('DBUS_SYSTEM_BUS_ADDRESS', None)
        else:
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = self._saved_address
        # Unmount only what we mounted, and only if nobody else pinned
        # anything there meanwhile: unmounting would drop their pins.
        if self.mounted_bpffs and not (set(os.listdir(BPF_MOUNT_POINT)) - BPFFS_PRELOADED):
            subprocess.run(['umount', str(BPF_MOUNT_POINT)], check=False)
        self.mounted_bpffs = False
        shutil.rmtree(self.root, ignore_errors=True)



# Ways to get a namespace published, by the kind of mapping it ends up with.
NAMESPACE_KINDS = {'size-1': (0, 1), 'self': (SELF, 1), 'map-caller': (MAP_CALLER, BLOCK)}


def publish_kind(make_userns, user, kind, name='k'):
    """A namespace of `user` published as `kind` ('registered' or a key of
    NAMESPACE_KINDS); returns (Userns, object path)."""
    ns = make_userns(user, map_self=(kind == 'registered'))
    if kind == 'registered':
        return ns, as_user(user, lambda c: c.register(name, ns)).path
    flags, size = NAMESPACE_KINDS[kind]
    return ns, as_user(user, lambda c: c.allocate(name, ns, size=size, flags=flags)).path


def stop_daemons(daemons):
    """Stop and clean up every daemon; a daemon must exit 0 on SIGTERM within
    5 s and must not have exited on its own. Returns what went wrong."""
    problems = []
    for d in daemons:
        try:
            if d.running:
                pid = d.pid
                rc = d.stop(timeout=5 * DAEMON_SLOWDOWN)
                if rc != 0:
                    problems.append(f'nsresd (pid {pid}) ended with {rc} on SIGTERM '
                                    f'(None: still running after {5 * DAEMON_SLOWDOWN} s), expected 0')
            elif d.process is not None:
                problems.append(f'nsresd (pid {d.pid}) exited on its own during the test '
                                f'with {d.process.returncode}')
        finally:
            d.cleanup()
    return problems

# ---- polkit ---------------------------------------------------------------------------

class PolkitMock:
    """python-dbusmock's polkitd template on the test bus."""

    def __init__(self, environment, log_path):
        import dbusmock
        self._log = open(log_path, 'ab')
        self.process, _ = dbusmock.DBusTestCase.spawn_server_template(
            'polkitd', {}, stdout=self._log, system_bus=True)
        self.bus = dbus.bus.BusConnection(environment.address)
        self.mock = dbus.Interface(self.bus.get_object(POLKIT_NAME, POLKIT_PATH), MOCK_IFACE)
        self.mock.AllowUnknown(False)
        self.allow_defaults()

    def allow(self, *actions):
        self.mock.SetAllowed(dbus.Array(actions, signature='s'))

    def allow_defaults(self):
        """What the shipped policy grants every user without asking."""
        self.allow(ACTION_ALLOCATE, ACTION_REGISTER, ACTION_DELEGATE_CGROUP, ACTION_DELEGATE_NETIF)

    def deny_all(self):
        self.allow()

    def challenge(self):
        """Answer every check with 'authentication required'."""
        self.mock.AddMethod(POLKIT_IFACE, 'CheckAuthorization', '(sa{sv})sa{ss}us', '(bba{ss})',
                            'ret = (False, True, {"polkit.retains_authorization_after_challenge": "1"})')

    def log(self):
        """What the mock was asked, one call per line."""
        self._log.flush()
        return Path(self._log.name).read_text(errors='replace')

    def hang(self, on=True):
        self.mock.SimulateHang(on)

    def hang_actions(self, *actions):
        self.mock.SimulateHangActions(dbus.Array(actions, signature='s'))

    def release(self):
        """Answer the checks that hang, and every later one."""
        self.mock.SimulateHang(False)
        self.mock.ReleaseHangingCalls()

    def has_hanging_calls(self):
        return bool(self.mock.HaveHangingCalls())

    def delay(self, seconds):
        self.mock.SetDelay(dbus.Double(seconds))

    def stop(self):
        if self.process.returncode is not None:
            return
        self.bus.close()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# ---- the daemon ---------------------------------------------------------------------------

def config_text(allocator=None, restriction='permissive', delegation=None):
    lines = []
    if allocator:
        lines.append('[Allocator]')
        lines.extend(f'{k}={v}' for k, v in allocator.items())
    if delegation:
        lines.append('[Delegation]')
        lines.extend(f'{k}={v}' for k, v in delegation.items())
    lines.append('[Security]')
    lines.append(f'Restriction={restriction}')
    return '\n'.join(lines) + '\n'


def remove_bpf_pins(path):
    """Pins are files on bpffs: unlink them, then the directories."""
    path = Path(path)
    if not path.exists():
        return
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def _children_of(pid):
    """(pid, name, state) of every child process of pid."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index('(') + 1:text.rindex(')')]
        # The command name may contain spaces and parentheses.
        fields = text[text.rindex(')') + 2:].split()
        if int(fields[1]) == pid:
            found.append((int(entry), name, fields[0]))
    return found


def reap_orphaned_helpers(timeout=2.0):
    """Reap the helpers of daemons that died (adopted by us as subreaper);
    they get SIGKILL when their daemon dies."""
    deadline = time.monotonic() + timeout
    while True:
        orphans = [pid for pid, name, _ in _children_of(os.getpid())
                   if name in DAEMON_COMMS and pid not in Daemon.live_pids]
        for pid in orphans:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not orphans or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


class Daemon:
    """One nsresd with its own config, state directory and bpf directory.
    kill() and start() again reuse both, like a restart of the service."""

    live_pids = set()

    def __init__(self, environment, label, config, fault=None):
        self.environment = environment
        self.dir = Path(tempfile.mkdtemp(prefix='daemon-', dir=environment.root))
        self.dir.chmod(0o755)
        self.state_dir = self.dir / 'state'
        self.config_path = self.dir / 'nsresd.conf'
        self.config_path.write_text(config)
        self.bpf_dir = environment.new_bpf_dir()
        self.log_path = environment.logs / f'{safe_file_name(label)}-{self.dir.name}.log'
        self.fault = fault
        self.process = None
        self.starts = 0
        # Run before the daemon's own argv (strace -D, setpriv): something
        # that ends up as the daemon itself, so pid and signals stay its own.
        self.command_prefix = []
        # Set JOURNAL_STREAM to the device:inode of the daemon's stderr, as
        # systemd does when stderr is the journal.
        self.journal_stream = False

    @property
    def pid(self):
        return self.process.pid

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        try:
            return self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def start(self, fault=None, timeout=10):
        assert not self.running
        self.starts += 1
        notify_path = self.dir / 'notify'
        if notify_path.exists():
            notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        notify.bind(str(notify_path))
        env = dict(os.environ)
        env['DBUS_SYSTEM_BUS_ADDRESS'] = self.environment.address
        env['NOTIFY_SOCKET'] = str(notify_path)
        env.pop('NSRESD_FAULT', None)
        fault = fault if fault is not None else (self.fault if self.starts == 1 else None)
        if fault:
            env['NSRESD_FAULT'] = fault
        if 'ASAN_OPTIONS' in env and any(Path(a).name == 'strace' for a in self.command_prefix):
            # LeakSanitizer stops the daemon's threads with ptrace, which
            # strace already holds.
            env['ASAN_OPTIONS'] += ':detect_leaks=0'
        memcheck = VALGRIND and not self.command_prefix
        if memcheck:
            env['NSRESD_HELPER'] = 'fork'
            timeout *= DAEMON_SLOWDOWN
        argv = [*self.command_prefix, *(VALGRIND_ARGV if memcheck else []), str(daemon_binary()),
                f'--config={self.config_path}', f'--state-dir={self.state_dir}', f'--bpf-dir={self.bpf_dir}']
        with open(self.log_path, 'ab') as log:
            if self.journal_stream:
                st = os.fstat(log.fileno())
                env['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'
            log.write(f'---- start #{self.starts}: {" ".join(argv)}'
                      f'{" NSRESD_FAULT=" + fault if fault else ""}\n'.encode())
            log.flush()
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        Daemon.live_pids.add(self.process.pid)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f'nsresd exited with {self.process.returncode} before READY=1:\n'
                                         f'{self.log()[-4000:]}')
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f'nsresd sent no READY=1 within {timeout} s:\n{self.log()[-4000:]}')
                ready, _, _ = select.select([notify], [], [], min(left, 0.1))
                if ready and b'READY=1' in notify.recv(4096).split(b'\n'):
                    break
        except BaseException:
            self.kill()
            raise
        finally:
            notify.close()
            notify_path.unlink(missing_ok=True)
        return self

    def stop(self, timeout=5):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self._ended()

    def _ended(self):
        rc = self.process.returncode
        Daemon.live_pids.discard(self.process.pid)
        self.process = None
        reap_orphaned_helpers()
        return rc

    def kill(self):
        """kill -9, as a crash would."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return self._ended()

    def wait_exit(self, timeout):
        """Wait for the daemon to end by itself; its exit status, or None."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._ended()

    def restart(self):
        self.kill()
        return self.start()

    def cleanup(self):
        self.kill()
        remove_bpf_pins(self.bpf_dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    # What the daemon holds, as seen from outside.

    def fd_count(self):
        return len(os.listdir(f'/proc/{self.pid}/fd'))

    def children(self):
        return [pid for pid, _, _ in _children_of(self.pid)]

    def registry_files(self):
        registry = self.state_dir / 'registry'
        if not registry.exists():
            return []
        return sorted(p.name for p in registry.iterdir() if p.is_file() and p.name.endswith('.json'))

    def index_path(self):
        return self.state_dir / 'index'

    def index_entries(self):
        try:
            text = self.index_path().read_text()
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 3:
                entries.append((int(fields[0]), int(fields[1]), fields[2]))
        return entries


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- sandboxes with a network namespace, and cgroups of the tests' own -------------------

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
# The files of a cgroup that are handed over with it, as systemd delegates.
DELEGATED_FILES = ('cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control')


class NetBox:
    """A process of `user` in a new user namespace and a new network
    namespace owned by it; its namespace gets a transient range."""

    def __init__(self, user=NOBODY, name='box', allocate=True):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _close_fds_except({ready_w, go_r})
                drop_privileges(user)
                # One call: the new network namespace belongs to the new user namespace.
                if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), 'unshare')
                _write_all(ready_w, b'ok')
                os.read(go_r, 1)
            except BaseException as e:  # noqa: B902 - report anything to the parent
                _write_all(ready_w, repr(e).encode())
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(go_r)
        self.pid, self._go = pid, go_w
        self.fd = self.netns_fd = None
        try:
            message = os.read(ready_r, 4096)
            os.close(ready_r)
            assert message == b'ok', message
            self.fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
            self.netns_fd = os.open(f'/proc/{pid}/ns/net', os.O_RDONLY | os.O_CLOEXEC)
            self.id = ns_id(self.fd)
            if allocate:
                self.allocation = as_user(user, lambda c: c.allocate(name, self.fd))
                self.path = self.allocation.path
                self.uid_start = self.allocation.uid_start
        except BaseException:
            self.stop()
            raise

    def inside(self):
        """The names of the links in its network namespace."""
        lines = Path(f'/proc/{self.pid}/net/dev').read_text().splitlines()[2:]
        return {line.split(':')[0].strip() for line in lines}

    def stop(self):
        """Kill it and let go of the namespaces: they die."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        for fd in (self._go, self.fd, self.netns_fd):
            if fd is not None:
                os.close(fd)
        self._go = self.fd = self.netns_fd = None


def cgroup2_mount():
    with open('/proc/self/mountinfo') as f:
        for line in f:
            left, _, right = line.partition(' - ')
            fields = left.split()
            if right.split()[:1] == ['cgroup2'] and fields[3] == '/':
                return Path(fields[4])
    raise AssertionError('no cgroup2 file system is mounted')


def _rmdir_if_there(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class Cgroups:
    """The test's own directory below the cgroup2 mount."""

    def __init__(self):
        self.mount = cgroup2_mount()
        self.top = self.mount / f'nsresd-test-{secrets.token_hex(4)}'
        self.top.mkdir()

    def rel(self, path):
        """A cgroup as the service names it: its path below the mount."""
        return '/' + str(Path(path).relative_to(self.mount))

    def make(self, name, user=NOBODY, parent=None):
        """A cgroup in `parent` (default: the top); its directory and the
        files systemd delegates are `user`'s (root's if None)."""
        path = (parent or self.top) / name
        path.mkdir()
        if user is not None:
            pw = passwd(user)
            for p in [path] + [path / f for f in DELEGATED_FILES]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
        return path

    @staticmethod
    def move(pid, path):
        (Path(path) / 'cgroup.procs').write_text(str(pid))

    @staticmethod
    def members(path):
        return [int(x) for x in (Path(path) / 'cgroup.procs').read_text().split()]

    def release(self):
        """Kill everything below the top and remove it, children first."""
        if not self.top.exists():
            return
        (self.top / 'cgroup.kill').write_text('1')
        deadline = time.monotonic() + 10
        while True:
            try:
                for dirpath, dirnames, _ in os.walk(self.top, topdown=False):
                    for name in dirnames:
                        _rmdir_if_there(Path(dirpath) / name)
                _rmdir_if_there(self.top)
                return
            except OSError as e:
                # Killed processes leave a moment later.
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def read_line(process, timeout=5.0):
    """One line of a background process' stdout, or fail after timeout."""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    line = b''
    while not line.endswith(b'\n'):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0, left))
        if not ready:
            raise AssertionError(f'no complete line within {timeout} s (got {line!r})')
        byte = os.read(fd, 1)
        if not byte:
            raise AssertionError(f'the process closed its output (got {line!r}); '
                                 f'stderr: {process.stderr.read().decode(errors="replace")}')
        line += byte
    return line.decode()
