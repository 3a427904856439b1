# SPDX-License-Identifier: LGPL-2.1-or-later
"""The NSS module libnss_nsresd.so.2: allocated ids get names.

Everything that changes what a program sees under /etc or /run happens in a
private mount namespace. The bus of this module runs its dbus-daemon in one,
where /etc/nsswitch.conf is a file of the test (with or without 'nsresd') and
/run/nsresd is the state directory of the test's nsresd; getent runs in that
same mount namespace (nsenter), and the module is found through
LD_LIBRARY_PATH (dbus-daemon and getent are not setuid). The robustness tests
call the module's entry points directly in a forked child with a tmpfs of its
own on /run, where they can put any index they like."""

import ctypes
import errno
import os
import select
import pickle
import re
import signal
import stat
import subprocess
import time
import traceback
from pathlib import Path

import pytest

import harness as h
from harness import BLOCK, NOBODY

NSSWITCH_WITH_MODULE = 'passwd: files nsresd\ngroup: files nsresd\nshadow: files\n'
NSSWITCH_WITHOUT_MODULE = 'passwd: files\ngroup: files\nshadow: files\n'

INDEX = Path('/run/nsresd/index')
EXPORTED = {'_nss_nsresd_getpwuid_r', '_nss_nsresd_getpwnam_r', '_nss_nsresd_getgrgid_r',
            '_nss_nsresd_getgrnam_r'}

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# enum nss_status
NSS_STATUS_TRYAGAIN = -2
NSS_STATUS_UNAVAIL = -1
NSS_STATUS_NOTFOUND = 0
NSS_STATUS_SUCCESS = 1

GETENT_NOT_FOUND = 2

_libc = ctypes.CDLL(None, use_errno=True)


def module_dir():
    return h.build_dir() / 'client' / 'nss'


def module_path():
    return module_dir() / 'libnss_nsresd.so.2'


def busctl_call(method, signature, *args):
    return ['busctl', '--system', '--no-pager', '--timeout=30', 'call', h.BUS_NAME, h.MANAGER_PATH,
            h.MANAGER_IFACE, method, signature, *[str(a) for a in args]]


# ---- a bus in a private mount namespace -------------------------------------------------

# Runs under `unshare --mount --propagation private`, then becomes the bus.
MOUNT_SETUP = r'''
set -e
mount --bind "$1" /etc/nsswitch.conf
mount -t tmpfs -o mode=0755 nsresd-test /run
mkdir -m 0755 /run/nsresd
mount --bind "$2" /run/nsresd
shift 2
exec "$@"
'''


class PrivateMountBus(h.Environment):
    """A system-like bus (not the primary one) whose dbus-daemon runs in a
    private mount namespace of its own, with the test's nsswitch.conf and a
    daemon's state directory at /run/nsresd. The namespace ends with the
    bus."""

    def __init__(self):
        super().__init__(primary=False)
        self.nsswitch = self.root / 'nsswitch.conf'
        self.process = None

    def set_nsswitch(self, text):
        # Rewritten in place: the bind mount holds this inode, and glibc
        # notices the change and reads it again.
        with open(self.nsswitch, 'r+' if self.nsswitch.exists() else 'w') as f:
            f.write(text)
            f.truncate()
        os.chmod(self.nsswitch, 0o644)

    def start(self, state_dir):
        socket_path = self.root / 'system_bus_socket'
        include = f'<include>{h.BUS_POLICY}</include>'
        conf = (h.HERE / 'system-bus.conf.in').read_text()
        conf_path = self.root / 'system-bus.conf'
        conf_path.write_text(conf.replace('@SOCKET@', str(socket_path)).replace('@INCLUDE@', include))
        self.set_nsswitch(NSSWITCH_WITH_MODULE)
        env = dict(os.environ, LD_LIBRARY_PATH=str(module_dir()))
        env.pop('DBUS_SYSTEM_BUS_ADDRESS', None)
        with open(self.logs / 'dbus-daemon.log', 'ab') as log:
            self.process = subprocess.Popen(
                ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', MOUNT_SETUP, 'sh',
                 str(self.nsswitch), str(state_dir),
                 'dbus-daemon', '--nofork', '--nopidfile', f'--config-file={conf_path}'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        self.bus_pid = self.process.pid

        def listening():
            if self.process.poll() is not None:
                raise AssertionError(f'the bus exited with {self.process.returncode}: '
                                     f'{(self.logs / "dbus-daemon.log").read_text(errors="replace")}')
            return socket_path.exists()

        h.wait_until(listening, 10, what='the bus socket')
        socket_path.chmod(0o777)
        self.address = f'unix:path={socket_path}'
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = self.address

    def run_inside(self, argv, **kwargs):
        """argv in the bus's mount namespace, finding the module."""
        env = dict(os.environ, LD_LIBRARY_PATH=str(module_dir()))
        return subprocess.run(['nsenter', f'--target={self.bus_pid}', '--mount', '--', *argv],
                              env=env, capture_output=True, text=True, timeout=30, **kwargs)

    def getent(self, database, key):
        """(exit status, the entry's fields)."""
        r = self.run_inside(['getent', database, str(key)])
        return r.returncode, r.stdout.rstrip('\n').split(':') if r.stdout else []

    def close(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.bus_pid = None
        super().close()


@pytest.fixture(scope='module')
def world(environment, request):
    """(bus, daemon, polkit mock) for this module: nsresd on a bus whose
    dbus-daemon resolves users through the module."""
    if not module_path().exists():
        pytest.fail(f'{module_path()} was not built', pytrace=False)
    bus = PrivateMountBus()
    daemon = polkit = None
    try:
        daemon = h.Daemon(bus, 'nss', h.config_text())
        # It must exist to be bound before the bus (and so before the
        # daemon, which needs the bus) starts.
        daemon.state_dir.mkdir(mode=0o755)
        bus.start(daemon.state_dir)
        polkit = h.PolkitMock(bus, bus.logs / 'polkit.log')
        daemon.start()
        yield bus, daemon, polkit
    finally:
        problems = h.stop_daemons([daemon]) if daemon else []
        if polkit:
            polkit.stop()
        bus.close()
    assert h.bus_address() == environment.address
    assert not problems, problems


@pytest.fixture
def bus(world):
    bus, _, polkit = world
    polkit.allow_defaults()
    bus.set_nsswitch(NSSWITCH_WITH_MODULE)
    yield bus
    # The test's namespaces are gone (the userns fixture ends first); the
    # next test starts once the daemon has released them.
    client = h.Client(bus.address)
    try:
        h.wait_until(lambda: not client.list(), 10, what='the namespaces of the test to be released')
    finally:
        client.close()


@pytest.fixture
def nss_daemon(world):
    return world[1]


def allocate(daemon, userns, user=NOBODY, name='web', **kwargs):
    """A transient namespace of `user`. The index lists it by the time the
    reply arrives: the namespace's processes may resolve its ids at once."""
    ns = userns(user)
    a = h.as_user(user, lambda c: c.allocate(name, ns, **kwargs))
    assert a.name in [e[2] for e in daemon.index_entries()]
    return ns, a


def wait_unlisted(daemon, name):
    h.wait_until(lambda: name not in [e[2] for e in daemon.index_entries()], 10,
                 what=f"'{name}' to leave the index")


# ---- names through glibc ----------------------------------------------------------------

def test_allocated_ids_have_user_and_group_names(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    assert a.name == f'{h.passwd(NOBODY).pw_uid}-web'
    uid = a.uid_start
    gecos = f'nsresd user namespace {a.name}'

    assert bus.getent('passwd', uid) == (0, [f'ns-{a.name}-0', '!*', str(uid), str(uid), gecos, '/',
                                             '/usr/sbin/nologin'])
    assert bus.getent('passwd', f'ns-{a.name}-5') == (0, [f'ns-{a.name}-5', '!*', str(uid + 5), str(uid + 5),
                                                         gecos, '/', '/usr/sbin/nologin'])
    last = BLOCK - 1
    assert bus.getent('passwd', uid + last)[1][0] == f'ns-{a.name}-{last}'
    assert bus.getent('group', uid + 7) == (0, [f'ns-{a.name}-7', '!*', str(uid + 7), ''])
    assert bus.getent('group', f'ns-{a.name}-0') == (0, [f'ns-{a.name}-0', '!*', str(uid), ''])


def test_ids_and_names_outside_a_range_are_unknown(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    others = {e[0] for e in nss_daemon.index_entries()}
    assert a.uid_start + BLOCK not in others
    for database in ('passwd', 'group'):
        assert bus.getent(database, a.uid_start + BLOCK)[0] == GETENT_NOT_FOUND
        assert bus.getent(database, a.uid_start - 1)[0] == GETENT_NOT_FOUND
        for name in (f'ns-{a.name}-{BLOCK}', f'ns-{a.name}-01', f'ns-{a.name}-', f'ns-{a.name}-+1',
                     f'ns-{a.name}-4294967296', f'ns-{a.name}', f'{a.name}-0', 'ns-unknown-0',
                     f'NS-{a.name}-0', f'ns-{a.name}-0 '):
            assert bus.getent(database, name)[0] == GETENT_NOT_FOUND, name


def test_single_id_range_and_root_names(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns, user=0, name='one', size=1)
    assert a.name == 'one'
    assert bus.getent('passwd', a.uid_start)[1][:3] == ['ns-one-0', '!*', str(a.uid_start)]
    assert bus.getent('passwd', 'ns-one-0')[1][2] == str(a.uid_start)
    assert bus.getent('passwd', 'ns-one-1')[0] == GETENT_NOT_FOUND


def test_names_vanish_with_the_namespace(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    assert bus.getent('passwd', a.uid_start)[0] == 0
    ns.release()
    wait_unlisted(nss_daemon, a.name)
    assert bus.getent('passwd', a.uid_start)[0] == GETENT_NOT_FOUND
    assert bus.getent('passwd', f'ns-{a.name}-0')[0] == GETENT_NOT_FOUND
    assert bus.getent('group', a.uid_start)[0] == GETENT_NOT_FOUND


def test_self_and_registered_namespaces_get_no_names(bus, nss_daemon, userns):
    self_ns = userns(NOBODY)
    h.as_user(NOBODY, lambda c: c.allocate('selfish', self_ns, size=1, flags=h.SELF))
    registered = userns(NOBODY, map_self=True)
    h.as_user(NOBODY, lambda c: c.register('mine', registered))
    nobody = str(h.passwd(NOBODY).pw_uid)
    for name in (f'ns-{nobody}-selfish-0', f'ns-{nobody}-mine-0'):
        assert bus.getent('passwd', name)[0] == GETENT_NOT_FOUND, name
    # The caller's own uid keeps its own name.
    assert bus.getent('passwd', nobody)[1][0] == NOBODY


# ---- the namespace's root on the system bus ----------------------------------------------

def enter_as_root(userns_fd):
    """preexec_fn: join the user namespace and become its root, whose host
    uid is the first id of the range."""
    def enter():
        if _libc.setns(userns_fd, h.CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), 'setns')
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    return enter


def run_as_namespace_root(bus, ns, argv):
    # sd-bus clients (busctl, nsresctl) authenticate with the kernel's view
    # of their uid; libdbus sends its own, which inside a namespace is the
    # wrong one. sd-bus's debug log says where a connection ended.
    env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'DBUS_SYSTEM_BUS_ADDRESS': bus.address,
           'SYSTEMD_LOG_LEVEL': 'debug'}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=enter_as_root(ns.fd), pass_fds=(ns.fd,))


def test_namespace_root_talks_to_the_bus_only_with_the_module(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    call = busctl_call('ListUserNamespaces', 't', 0)
    probe = ['sh', '-c', 'echo "$(id -u) $(cat /proc/self/uid_map)"']
    inside = run_as_namespace_root(bus, ns, probe)
    assert inside.stdout.split()[:3] == ['0', '0', str(a.uid_start)], inside

    # Without a passwd entry for its uid, dbus-daemon drops the connection.
    bus.set_nsswitch(NSSWITCH_WITHOUT_MODULE)
    assert bus.getent('passwd', a.uid_start)[0] == GETENT_NOT_FOUND
    refused = run_as_namespace_root(bus, ns, call)
    assert refused.returncode != 0, refused
    # Dropped during Hello, not answered with an error.
    assert os.strerror(errno.ENOTCONN) in refused.stderr, refused.stderr
    assert a.name not in refused.stdout

    bus.set_nsswitch(NSSWITCH_WITH_MODULE)
    allowed = run_as_namespace_root(bus, ns, call)
    assert allowed.returncode == 0, allowed
    assert allowed.stdout.startswith('a(ostuuuu) '), allowed.stdout
    assert f'"{a.path}" "{a.name}"' in allowed.stdout


class ErrorMonitor:
    """dbus-monitor watching the error replies on the bus (nsresctl prints
    an error's message, not its name)."""

    def __init__(self, bus):
        self.process = subprocess.Popen(['dbus-monitor', '--address', bus.address, '--monitor', "type='error'"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = ''
        # It prints the NameAcquired of its connection once BecomeMonitor
        # has returned.
        self._read_until('member=NameAcquired')

    def _read_until(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            chunk = os.read(self.process.stdout.fileno(), 1 << 16) if ready else b''
            if not chunk:
                raise AssertionError(f'dbus-monitor showed no {text!r}; it showed:\n{self.output}')
            self.output += chunk.decode(errors='replace')

    def wait_error(self, name):
        self._read_until(f'error_name={name}')

    def close(self):
        self.process.terminate()
        self.process.wait(5)
        self.process.stdout.close()


def test_allocation_from_inside_a_namespace_is_bad_nesting(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    monitor = ErrorMonitor(bus)
    try:
        # nsresctl makes a namespace inside the allocated one and asks for
        # a range for it.
        r = run_as_namespace_root(bus, ns, [str(h.client_binary()), 'run', '--name=nested', '--', 'true'])
        assert r.returncode != 0, r
        assert 'not a direct child' in r.stderr, r.stderr
        monitor.wait_error(h.ERROR + 'BadNesting')
    finally:
        monitor.close()
    assert [e[2] for e in nss_daemon.index_entries()] == [a.name]


# ---- the module on its own ----------------------------------------------------------------

class Passwd(ctypes.Structure):
    _fields_ = [('pw_name', ctypes.c_char_p), ('pw_passwd', ctypes.c_char_p), ('pw_uid', ctypes.c_uint),
                ('pw_gid', ctypes.c_uint), ('pw_gecos', ctypes.c_char_p), ('pw_dir', ctypes.c_char_p),
                ('pw_shell', ctypes.c_char_p)]


class Group(ctypes.Structure):
    _fields_ = [('gr_name', ctypes.c_char_p), ('gr_passwd', ctypes.c_char_p), ('gr_gid', ctypes.c_uint),
                ('gr_mem', ctypes.POINTER(ctypes.c_char_p))]


class Module:
    """The module's entry points, called directly."""

    def __init__(self):
        self.lib = ctypes.CDLL(str(module_path()))

    def _call(self, function, key, result, buflen):
        buf = ctypes.create_string_buffer(max(buflen, 1))
        err = ctypes.c_int(0)
        if isinstance(key, str):
            key = key.encode()
        status = getattr(self.lib, function)(key, ctypes.byref(result), buf, ctypes.c_size_t(buflen),
                                             ctypes.byref(err))
        # The strings of the entry live in buf: the caller keeps it while
        # reading them.
        return status, err.value, buf

    def passwd(self, key, buflen=1024):
        """(status, errno, (name, passwd, uid, gid, gecos, dir, shell) or None)"""
        pw = Passwd()
        function = '_nss_nsresd_getpwnam_r' if isinstance(key, str) else '_nss_nsresd_getpwuid_r'
        status, err, buf = self._call(function, key, pw, buflen)
        if status != NSS_STATUS_SUCCESS:
            return status, err, None
        entry = (pw.pw_name.decode(), pw.pw_passwd.decode(), pw.pw_uid, pw.pw_gid, pw.pw_gecos.decode(),
                 pw.pw_dir.decode(), pw.pw_shell.decode())
        del buf
        return status, err, entry

    def group(self, key, buflen=1024):
        """(status, errno, (name, passwd, gid, members) or None)"""
        gr = Group()
        function = '_nss_nsresd_getgrnam_r' if isinstance(key, str) else '_nss_nsresd_getgrgid_r'
        status, err, buf = self._call(function, key, gr, buflen)
        if status != NSS_STATUS_SUCCESS:
            return status, err, None
        members = []
        while gr.gr_mem[len(members)] is not None:
            members.append(gr.gr_mem[len(members)].decode())
        entry = (gr.gr_name.decode(), gr.gr_passwd.decode(), gr.gr_gid, members)
        del buf
        return status, err, entry

    def found(self, key):
        return self.passwd(key)[0] == NSS_STATUS_SUCCESS


def with_private_run(func, timeout=30):
    """func(Module()) in a forked child that has a mount namespace of its
    own with an empty tmpfs on /run; returns what func returned."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                if _libc.unshare(CLONE_NEWNS) != 0:
                    raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNS)')
                if _libc.mount(b'none', b'/', None, MS_REC | MS_PRIVATE, None) != 0:
                    raise OSError(ctypes.get_errno(), 'mount --make-rprivate /')
                if _libc.mount(b'nsresd-test', b'/run', b'tmpfs', 0, b'mode=0755') != 0:
                    raise OSError(ctypes.get_errno(), 'mount tmpfs /run')
                payload = ('return', func(Module()))
            except BaseException:  # noqa: B902 - everything goes back to the test
                payload = ('raise', AssertionError(traceback.format_exc()))
            h._write_all(write_fd, pickle.dumps(payload))
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b''
    try:
        with os.fdopen(read_fd, 'rb') as f:
            while True:
                ready, _, _ = select.select([f], [], [], timeout)
                if not ready:
                    raise AssertionError(f'the lookup did not finish within {timeout} s')
                chunk = os.read(f.fileno(), 1 << 16)
                if not chunk:
                    break
                data += chunk
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == 'raise':
        raise value
    return value


def write_index(text, mode=0o644, owner=0):
    INDEX.parent.mkdir(mode=0o755, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    INDEX.write_bytes(data)
    os.chown(INDEX, owner, owner)
    os.chmod(INDEX, mode)


GOOD = '524288 65536 65534-web\n655360 65536 box\n61184 1 one\n'


def test_module_exports_only_lookups_by_key():
    # No setpwent/getpwent: nsresd enumerates NSS users to find claimed ids
    # and must not find its own ranges there.
    symbols = subprocess.run(['nm', '-D', '--defined-only', str(module_path())], capture_output=True,
                             text=True, check=True).stdout
    assert {line.split()[-1] for line in symbols.splitlines() if line.strip()} == EXPORTED
    needed = subprocess.run(['readelf', '-d', str(module_path())], capture_output=True, text=True,
                            check=True).stdout
    assert re.findall(r'\(NEEDED\).*\[(.*)\]', needed) == ['libc.so.6']


def test_entries_as_the_module_returns_them():
    def lookups(m):
        write_index(GOOD)
        return [m.passwd(524288 + 65535), m.passwd('ns-box-3'), m.group(655360 + 9), m.group('ns-one-0'),
                m.passwd(0), m.passwd('root')]

    pw_last, pw_box, gr, gr_one, root_uid, root_name = with_private_run(lookups)
    assert pw_last == (NSS_STATUS_SUCCESS, 0, ('ns-65534-web-65535', '!*', 589823, 589823,
                                               'nsresd user namespace 65534-web', '/', '/usr/sbin/nologin'))
    assert pw_box[2][:4] == ('ns-box-3', '!*', 655363, 655363)
    assert gr == (NSS_STATUS_SUCCESS, 0, ('ns-box-9', '!*', 655369, []))
    assert gr_one == (NSS_STATUS_SUCCESS, 0, ('ns-one-0', '!*', 61184, []))
    assert root_uid[:2] == (NSS_STATUS_NOTFOUND, errno.ENOENT)
    assert root_name[0] == NSS_STATUS_NOTFOUND


def test_small_buffers_ask_for_more():
    def sweep(m):
        write_index(GOOD)
        out = {}
        for what, key in (('passwd', 'ns-65534-web-123'), ('group', 'ns-65534-web-123'),
                          ('passwd', 524288 + 123), ('group', 524288 + 123)):
            lookup = getattr(m, what)
            sizes = []
            for size in range(0, 512):
                status, err, _ = lookup(key, buflen=size)
                sizes.append((size, status, err))
                if status == NSS_STATUS_SUCCESS:
                    break
            out[(what, str(key))] = sizes
        return out

    for key, sizes in with_private_run(sweep).items():
        *small, (size, status, _) = sizes
        assert status == NSS_STATUS_SUCCESS and size > 0, key
        assert all(s == NSS_STATUS_TRYAGAIN and e == errno.ERANGE for _, s, e in small), (key, small)


def test_bad_lines_are_skipped():
    lines = [
        '524288 65536 ok-a',
        '',
        'garbage',
        '589824 65536',
        '589824  65536 double-space',
        '0589824 65536 leading-zero',
        '-1 65536 negative',
        '4294901760 65536 past-the-end',
        '4294967295 1 no-id',
        '720896 0 empty',
        '786432 65536 bad/name',
        '851968 65536 -dash',
        '917504 65536 ' + 'x' * 28,
        '983040 65536 trailing ',
        '1048576 65536 ok-b',
        '1114112 65536 ' + 'y' * 5000,
        '1179648 65536 ok-c',
        '1245184 65536 cut-short',
    ]

    def lookups(m):
        write_index('\n'.join(lines))
        return {key: m.found(key) for key in (
            524288, 'ns-ok-a-0', 1048576, 'ns-ok-b-1', 1179648 + 65535, 'ns-ok-c-2',
            589824, 'ns-double-space-0', 'ns-leading-zero-0', 'ns-past-the-end-0', 4294901760, 4294967295,
            'ns-no-id-0', 720896, 'ns-empty-0', 786432, 851968, 'ns--dash-0', 917504, 983040,
            'ns-trailing-0', 1114112, 1245184, 'ns-cut-short-0')}

    found = with_private_run(lookups)
    assert {k for k, v in found.items() if v} == {524288, 'ns-ok-a-0', 1048576, 'ns-ok-b-1', 1179648 + 65535,
                                                  'ns-ok-c-2'}


def test_untrusted_index_files_are_ignored():
    def cases(m):
        out = {}
        write_index(GOOD)
        out['good'] = m.found(524288)
        os.chmod(INDEX, 0o664)
        out['group-writable'] = m.found(524288)
        os.chmod(INDEX, 0o646)
        out['world-writable'] = m.found(524288)
        write_index(GOOD, owner=65534)
        out['not root'] = m.found(524288)
        INDEX.unlink()
        real = INDEX.with_name('real')
        real.write_text(GOOD)
        os.chmod(real, 0o644)
        INDEX.symlink_to(real)
        out['symlink'] = m.found(524288)
        INDEX.unlink()
        real.unlink()
        INDEX.mkdir()
        out['directory'] = m.found(524288)
        INDEX.rmdir()
        os.mkfifo(INDEX, 0o644)
        out['fifo'] = m.passwd(524288)[0]
        INDEX.unlink()
        out['missing'] = m.passwd(524288)[:2]
        INDEX.parent.rmdir()
        out['no directory'] = m.passwd('ns-box-0')[:2]
        return out

    out = with_private_run(cases)
    assert out.pop('good') is True
    assert out.pop('fifo') == NSS_STATUS_NOTFOUND
    assert out.pop('missing') == (NSS_STATUS_NOTFOUND, errno.ENOENT)
    assert out.pop('no directory') == (NSS_STATUS_NOTFOUND, errno.ENOENT)
    assert out == {k: False for k in out}, out


def test_huge_index_is_read_only_so_far():
    def lookups(m):
        INDEX.parent.mkdir(mode=0o755)
        with open(INDEX, 'wb') as f:
            f.write(b'524288 65536 early\n')
            # Sparse: a GiB of NUL bytes costs no memory on tmpfs.
            f.truncate(1 << 30)
            f.seek(1 << 30)
            f.write(b'\n655360 65536 late\n')
        os.chmod(INDEX, 0o644)
        return m.found('ns-early-0'), m.found('ns-late-0'), m.found(655360)

    early, late, late_uid = with_private_run(lookups, timeout=60)
    assert early is True
    assert late is False and late_uid is False


def test_lookups_in_many_threads_agree():
    def threads(m):
        import threading
        write_index(GOOD + ''.join(f'{(20 + i) * 65536} 65536 n{i}\n' for i in range(2000)))
        wrong = []

        def worker(seed):
            for i in range(200):
                n = (seed * 31 + i * 7) % 2000
                uid = (20 + n) * 65536 + i
                status, _, entry = m.passwd(uid)
                if status != NSS_STATUS_SUCCESS or entry[0] != f'ns-n{n}-{i}':
                    wrong.append((uid, status, entry))
                status, _, entry = m.group(f'ns-n{n}-{i}')
                if status != NSS_STATUS_SUCCESS or entry[2] != uid:
                    wrong.append((n, i, status, entry))

        fds_before = sorted(os.listdir('/proc/self/fd'))
        ts = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return wrong, fds_before, sorted(os.listdir('/proc/self/fd'))

    wrong, fds_before, fds_after = with_private_run(threads, timeout=120)
    assert wrong == []
    # No descriptor outlives a lookup. (Inherited ones the child's garbage
    # collector closes meanwhile may be gone.)
    assert set(fds_after) <= set(fds_before), (fds_before, fds_after)


def test_index_mode_and_owner_as_the_daemon_writes_it(bus, nss_daemon, userns):
    ns, a = allocate(nss_daemon, userns)
    st = os.stat(nss_daemon.index_path())
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0
    assert (a.uid_start, BLOCK, a.name) in nss_daemon.index_entries()
