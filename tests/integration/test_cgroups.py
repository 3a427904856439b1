# SPDX-License-Identifier: LGPL-2.1-or-later
"""AddControlGroupToUserNamespace: a namespace with a transient range gets a
cgroup2 leaf of its own, owned by its first uid and gid. The caller passes an
empty leaf it owns, or (CREATE_CHILD) a cgroup it owns in which the service
makes the leaf. Inside, the namespace runs its own subtree and cannot leave
it or lift its limits; once the namespace is dead the service kills what is
left in the leaf and removes it, and nothing above it.

The cgroups are made by the test (root) in a directory of its own below the
cgroup2 mount and removed after every test, whatever happened. Callers are
`nobody`; the first process of a sandbox is put into a cgroup its user owns
before anything else, as a login manager puts a user's processes into the
user's own subtree."""

import errno
import json
import os
import pickle
import secrets
import signal
import socket
import stat
import struct
import subprocess
import time
import traceback
from pathlib import Path

import pytest

import harness as h
from harness import DAEMON_USER, NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
# What systemd hands to the owner of a delegated subtree, and nsresd too.
DELEGATED_FILES = h.DELEGATED_FILES
# Files of the leaf itself that stay out of the namespace's reach.
KEPT_FILES = ('cgroup.max.depth', 'cgroup.max.descendants', 'cgroup.freeze', 'cgroup.kill', 'cgroup.type')
MAX_CONTROL_GROUPS = 16
DEFAULT_MAX_DESCENDANTS = 256
DEFAULT_MAX_DEPTH = 16
NOBODY_UID = h.passwd(NOBODY).pw_uid
NOBODY_GID = h.passwd(NOBODY).pw_gid


def owner(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cgroup_id(path):
    # On cgroup2 the inode number is the cgroup id (what a file handle holds).
    return os.stat(path).st_ino


# ---- the first process of a sandbox ---------------------------------------------------

def _read_exact(fd, n):
    data = b''
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send(fd, obj):
    data = pickle.dumps(obj)
    h._write_all(fd, struct.pack('!I', len(data)) + data)


def _recv(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    return pickle.loads(_read_exact(fd, struct.unpack('!I', head)[0]))


def _op_unshare(user):
    h.drop_privileges(user)
    h._unshare_user()


def _op_join(leaf):
    # Still the caller's uid, with every capability in its own namespace:
    # allowed into the leaf (owned by the namespace's ids) by the capability,
    # out of the caller's cgroup (the common ancestor) as its owner.
    Path(leaf, 'cgroup.procs').write_text('0')


def _op_become_root():
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _op_cgroup():
    for line in Path('/proc/self/cgroup').read_text().splitlines():
        if line.startswith('0::'):
            return line[3:]
    return None


OPS = {
    'unshare': _op_unshare,
    'join': _op_join,
    'become-root': _op_become_root,
    'cgroup': _op_cgroup,
    'ids': lambda: (os.getresuid(), os.getresgid()),
    'mkdir': os.mkdir,
    'rmdir': os.rmdir,
    'write': lambda path, text: Path(path).write_text(text),
    'read': lambda path: Path(path).read_text(),
}


def _serve(cmd_fd, res_fd):
    while True:
        message = _recv(cmd_fd)
        if message is None:
            return
        op, args = message
        try:
            reply = ('ok', OPS[op](*args))
        except OSError as e:
            reply = ('oserror', e.errno)
        except BaseException:  # noqa: B902 - everything goes back to the test
            reply = ('error', traceback.format_exc())
        _send(res_fd, reply)


class Member:
    """The first process of a sandbox. Forked as root and put into
    `cgroup`, it drops to `user` and creates its own user namespace, then
    runs the operations it is sent (OPS), one at a time."""

    def __init__(self, user, cgroup):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                h._close_fds_except({cmd_r, res_w})
                _serve(cmd_r, res_w)
            finally:
                os._exit(0)
        os.close(cmd_r)
        os.close(res_w)
        self.pid, self._cmd, self._res = pid, cmd_w, res_r
        self.userns_fd = None
        try:
            h.Cgroups.move(pid, cgroup)
            self.call('unshare', user)
            self.userns_fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
            self.id = h.ns_id(self.userns_fd)
        except BaseException:
            self.stop()
            raise

    def call(self, op, *args):
        _send(self._cmd, (op, args))
        reply = _recv(self._res)
        if reply is None:
            raise AssertionError(f'the sandbox process died during {op}')
        kind, value = reply
        if kind == 'ok':
            return value
        if kind == 'oserror':
            raise OSError(value, f'{op}{args}: {os.strerror(value)}')
        raise AssertionError(f'{op}{args} failed in the sandbox process:\n{value}')

    def errno_of(self, op, *args):
        """0 if op succeeds, else its errno."""
        try:
            self.call(op, *args)
        except OSError as e:
            return e.errno
        return 0

    def stop(self):
        """Kill it and let go of the namespace: it dies."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        for fd in (self._cmd, self._res, self.userns_fd):
            if fd is not None:
                os.close(fd)
        self._cmd = self._res = self.userns_fd = None


# ---- fixtures ----------------------------------------------------------------------

@pytest.fixture
def cgroups():
    tree = h.Cgroups()
    yield tree
    tree.release()


@pytest.fixture
def caller_cgroup(cgroups):
    """A cgroup nobody owns, as its user@.service would be."""
    return cgroups.make('caller')


@pytest.fixture
def members(cgroups):
    """make(cgroup, user=NOBODY) -> Member; all are killed after the test
    (before the cgroups are removed)."""
    made = []

    def make(cgroup, user=NOBODY):
        m = Member(user, cgroup)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


@pytest.fixture
def sleepers(cgroups):
    """start(cgroup) -> a process of root's (of no sandbox) in cgroup; all
    are killed after the test."""
    started = []

    def start(cgroup):
        p = subprocess.Popen(['sleep', '1000'], stdin=subprocess.DEVNULL)
        started.append(p)
        h.Cgroups.move(p.pid, cgroup)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


class Sandbox:
    def __init__(self, member, allocation):
        self.member = member
        self.allocation = allocation
        self.path = allocation.path
        self.name = allocation.name
        self.uid_start = allocation.uid_start
        self.fd = member.userns_fd


@pytest.fixture
def sandbox(members, caller_cgroup):
    """make(name='box', cgroup=caller cgroup, user=NOBODY) -> a Sandbox: its
    first process in `cgroup`, its namespace allocated a transient range."""
    def make(name='box', cgroup=None, user=NOBODY):
        m = members(cgroup or caller_cgroup, user)
        a = h.as_user(user, lambda c: c.allocate(name, m.userns_fd))
        return Sandbox(m, a)
    return make


def add_cgroup(userns_fd, path, flags=0):
    """Calls AddControlGroupToUserNamespace with an fd the caller opened of path."""
    def call(client):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return client.add_cgroup(userns_fd, fd, flags)
        finally:
            os.close(fd)
    return call


def control_groups(root, path):
    return root.namespace_properties(path)['ControlGroups']


def registry_entry(daemon, ns_id):
    files = [f for f in daemon.registry_files() if f.startswith(f'{ns_id}-')]
    assert len(files) <= 1, files
    if not files:
        return None
    return json.loads((daemon.state_dir / 'registry' / files[0]).read_text())


def wait_gone(path, timeout=5.0):
    h.wait_until(lambda: not Path(path).exists(), timeout, what=f'{path} to be removed')


# ---- delegating ---------------------------------------------------------------------

def test_create_child_makes_and_delegates_a_leaf(daemon, polkit, cgroups, caller_cgroup, sandbox, root, signals):
    box = sandbox()
    assert control_groups(root, box.path) == []

    path = h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))

    leaf = caller_cgroup / 'nsresd-65534-box'
    assert path == cgroups.rel(leaf)
    assert leaf.is_dir()
    ids = (box.uid_start, box.allocation.gid_start)
    assert owner(leaf) == ids and mode(leaf) == 0o755
    for name in DELEGATED_FILES:
        assert owner(leaf / name) == ids and mode(leaf / name) == 0o644, name
    # Made by root; only the delegated files changed hands.
    for name in KEPT_FILES:
        assert owner(leaf / name) == (0, 0), name
    assert (leaf / 'cgroup.max.descendants').read_text().strip() == str(DEFAULT_MAX_DESCENDANTS)
    assert (leaf / 'cgroup.max.depth').read_text().strip() == str(DEFAULT_MAX_DEPTH)
    # Nothing above the leaf changed.
    assert owner(caller_cgroup) == (NOBODY_UID, NOBODY_GID)
    assert owner(caller_cgroup / 'cgroup.procs') == (NOBODY_UID, NOBODY_GID)

    assert control_groups(root, box.path) == [path]
    changed = signals.wait_for(lambda e: e[1] == 'PropertiesChanged' and e[2] == box.path and
                               'ControlGroups' in e[3][1], what='PropertiesChanged of ControlGroups')
    assert changed[3][1]['ControlGroups'] == [path]

    checks = [line for line in polkit.log().splitlines() if 'CheckAuthorization' in line]
    assert h.ACTION_DELEGATE_CGROUP in checks[-1]
    assert '"name": "65534-box"' in checks[-1] and '"kind": "transient"' in checks[-1]


def test_the_namespace_runs_its_leaf(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    m = box.member

    # The first move, from the caller's cgroup into the leaf.
    m.call('join', leaf)
    assert m.call('cgroup') == cgroups.rel(leaf)
    assert h.Cgroups.members(leaf) == [m.pid]

    # As root of the namespace (its first uid): children, and moves between them.
    m.call('become-root')
    assert m.call('ids') == ((0, 0, 0), (0, 0, 0))
    m.call('mkdir', leaf / 'a')
    m.call('mkdir', leaf / 'b')
    m.call('mkdir', leaf / 'b' / 'c')
    assert owner(leaf / 'a') == (box.uid_start, box.allocation.gid_start)
    m.call('write', leaf / 'a' / 'cgroup.procs', '0')
    assert m.call('cgroup') == cgroups.rel(leaf / 'a')
    m.call('write', leaf / 'b' / 'c' / 'cgroup.procs', '0')
    assert m.call('cgroup') == cgroups.rel(leaf / 'b' / 'c')
    # Its children are its own to configure, and to remove.
    m.call('write', leaf / 'a' / 'cgroup.max.depth', '1')
    m.call('rmdir', leaf / 'a')
    assert not (leaf / 'a').exists()


def test_the_namespace_cannot_leave_its_leaf(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    m = box.member
    m.call('join', leaf)
    m.call('become-root')
    m.call('mkdir', leaf / 'a')
    m.call('write', leaf / 'a' / 'cgroup.procs', '0')

    for outside in (caller_cgroup, cgroups.top, cgroups.mount):
        assert m.errno_of('write', outside / 'cgroup.procs', '0') == errno.EACCES, outside
        assert m.errno_of('mkdir', outside / 'escape') == errno.EACCES, outside
    # Into the leaf itself is inside; still in its subtree.
    m.call('write', leaf / 'cgroup.procs', '0')
    assert m.call('cgroup') == cgroups.rel(leaf)
    assert h.Cgroups.members(caller_cgroup) == []
    # The leaf cannot be removed from inside either: its parent is the caller's.
    assert m.errno_of('rmdir', leaf) == errno.EACCES


def test_the_namespace_cannot_lift_its_limits(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    m = box.member
    m.call('join', leaf)
    m.call('become-root')

    kept = list(KEPT_FILES) + sorted(p.name for p in leaf.iterdir()
                                     if p.name.endswith('.max') and p.name not in KEPT_FILES)
    for name in kept:
        assert m.errno_of('write', leaf / name, '1') == errno.EACCES, name
    assert (leaf / 'cgroup.max.depth').read_text().strip() == str(DEFAULT_MAX_DEPTH)
    assert (leaf / 'cgroup.freeze').read_text().strip() == '0'


@pytest.mark.nsresd_config(delegation={'ControlGroupMaxDescendants': 2, 'ControlGroupMaxDepth': 1})
def test_limits_come_from_the_configuration(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    assert (leaf / 'cgroup.max.descendants').read_text().strip() == '2'
    assert (leaf / 'cgroup.max.depth').read_text().strip() == '1'
    m = box.member
    m.call('join', leaf)
    m.call('become-root')
    m.call('mkdir', leaf / 'a')
    # One level below the leaf, two cgroups in all.
    assert m.errno_of('mkdir', leaf / 'a' / 'deeper') == errno.EAGAIN
    m.call('mkdir', leaf / 'b')
    assert m.errno_of('mkdir', leaf / 'c') == errno.EAGAIN


def test_an_empty_leaf_is_delegated_as_it_is(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    given = cgroups.make('given', parent=caller_cgroup)

    path = h.as_user(NOBODY, add_cgroup(box.fd, given))

    assert path == cgroups.rel(given)
    assert list(p for p in given.iterdir() if p.is_dir()) == []
    ids = (box.uid_start, box.allocation.gid_start)
    assert owner(given) == ids
    for name in DELEGATED_FILES:
        assert owner(given / name) == ids, name
    assert (given / 'cgroup.max.depth').read_text().strip() == str(DEFAULT_MAX_DEPTH)
    assert control_groups(root, box.path) == [path]
    # The sandbox moves in from the caller's cgroup, the common ancestor.
    box.member.call('join', given)
    box.member.call('become-root')
    box.member.call('mkdir', given / 'inner')
    assert owner(given / 'inner') == ids


def test_loose_modes_are_tightened(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    given = cgroups.make('given', parent=caller_cgroup)
    given.chmod(0o777)
    for name in DELEGATED_FILES:
        (given / name).chmod(0o666)

    h.as_user(NOBODY, add_cgroup(box.fd, given))

    assert mode(given) == 0o755
    for name in DELEGATED_FILES:
        assert mode(given / name) == 0o644, name


def test_root_delegates_without_polkit(daemon, polkit, cgroups, sandbox, root):
    box = sandbox()
    # Root may pass a cgroup of anyone's.
    given = cgroups.make('given', user=DAEMON_USER)
    path = add_cgroup(box.fd, given)(root)
    assert path == cgroups.rel(given)
    assert owner(given)[0] == box.uid_start
    assert not [line for line in polkit.log().splitlines()
                if 'CheckAuthorization' in line and h.ACTION_DELEGATE_CGROUP in line]


def test_polkit_says_no(daemon, polkit, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    polkit.allow(h.ACTION_ALLOCATE)
    e = h.expect_error(ACCESS_DENIED, NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    assert 'control group' in e.message
    assert not (caller_cgroup / 'nsresd-65534-box').exists()
    assert control_groups(root, box.path) == []
    # Its slot is free again.
    polkit.allow_defaults()
    h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))


def test_a_cgroup_of_another_user(daemon, cgroups, sandbox, root):
    box = sandbox()
    theirs = cgroups.make('theirs', user=DAEMON_USER)
    e = h.expect_error(h.ERROR + 'NotOwner', NOBODY, add_cgroup(box.fd, theirs, h.CREATE_CHILD))
    assert '/theirs' in e.message and str(h.passwd(DAEMON_USER).pw_uid) in e.message
    e = h.expect_error(h.ERROR + 'NotOwner', NOBODY, add_cgroup(box.fd, theirs))
    assert list(p for p in theirs.iterdir() if p.is_dir()) == []
    assert owner(theirs)[0] == h.passwd(DAEMON_USER).pw_uid
    assert control_groups(root, box.path) == []


def test_a_namespace_of_another_user(daemon, polkit, cgroups, sandbox, root):
    box = sandbox()
    mine = cgroups.make('mine', user=DAEMON_USER)
    e = h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, add_cgroup(box.fd, mine, h.CREATE_CHILD))
    assert str(NOBODY_UID) in e.message
    assert control_groups(root, box.path) == []

    # An administrator ('manage') may; the cgroup is still theirs.
    polkit.allow(h.ACTION_MANAGE)
    path = h.as_user(DAEMON_USER, add_cgroup(box.fd, mine, h.CREATE_CHILD))
    assert path == cgroups.rel(mine / 'nsresd-65534-box')
    checks = [line for line in polkit.log().splitlines() if 'CheckAuthorization' in line]
    assert h.ACTION_MANAGE in checks[-1]


def test_a_cgroup_with_a_process(daemon, cgroups, caller_cgroup, sandbox, sleepers, root):
    box = sandbox()
    busy = cgroups.make('busy', parent=caller_cgroup)
    sleeper = sleepers(busy)
    e = h.expect_error(h.ERROR + 'ControlGroupNotEmpty', NOBODY, add_cgroup(box.fd, busy))
    assert 'CREATE_CHILD' in e.message
    assert owner(busy) == (NOBODY_UID, NOBODY_GID)
    assert h.Cgroups.members(busy) == [sleeper.pid]
    assert control_groups(root, box.path) == []


def test_a_cgroup_with_a_child(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    parent = cgroups.make('parent', parent=caller_cgroup)
    cgroups.make('child', parent=parent)
    h.expect_error(h.ERROR + 'ControlGroupNotEmpty', NOBODY, add_cgroup(box.fd, parent))
    assert owner(parent) == (NOBODY_UID, NOBODY_GID)
    # In it a leaf can be made.
    h.as_user(NOBODY, add_cgroup(box.fd, parent, h.CREATE_CHILD))


def test_a_cgroup_above_the_leaf(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    other = sandbox('other')
    # The caller's own cgroup holds the leaf (and the sandboxes' processes).
    h.expect_error(h.ERROR + 'ControlGroupNotEmpty', NOBODY, add_cgroup(other.fd, caller_cgroup))
    # Further up it is not theirs.
    h.expect_error(h.ERROR + 'NotOwner', NOBODY, add_cgroup(other.fd, cgroups.top))
    h.expect_error(h.ERROR + 'NotOwner', NOBODY, add_cgroup(other.fd, cgroups.top, h.CREATE_CHILD))
    assert owner(caller_cgroup) == (NOBODY_UID, NOBODY_GID)
    assert owner(cgroups.top) == (0, 0)
    assert control_groups(root, other.path) == []
    # Nor is the leaf below it, which belongs to the first namespace now.
    h.expect_error(h.ERROR + 'NotOwner', NOBODY, add_cgroup(other.fd, leaf))


def test_the_root_cgroup(daemon, cgroups, sandbox, root):
    box = sandbox()
    with pytest.raises(h.BusError) as e:
        add_cgroup(box.fd, cgroups.mount)(root)
    assert e.value.name == h.ERROR + 'ControlGroupNotEmpty'


def open_not_a_cgroup(kind, cgroups, tmp):
    if kind == 'directory elsewhere':
        return os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    if kind == 'cgroup file':
        return os.open(cgroups.top / 'cgroup.procs', os.O_RDONLY)
    if kind == 'pipe':
        return os.pipe()[0]
    return socket.socketpair()[0].detach()


@pytest.mark.parametrize('kind', ['directory elsewhere', 'cgroup file', 'pipe', 'socket'])
def test_not_a_control_group(daemon, cgroups, sandbox, root, tmp_path, kind):
    box = sandbox()
    fd = open_not_a_cgroup(kind, cgroups, tmp_path)
    try:
        with pytest.raises(h.BusError) as e:
            root.add_cgroup(box.fd, fd)
    finally:
        os.close(fd)
    assert e.value.name == h.ERROR + 'NotAControlGroup'
    assert 'cgroup' in e.value.message
    assert control_groups(root, box.path) == []


@pytest.mark.parametrize('name', [os.fsdecode(b'bad\xff'), 'tab\tin'], ids=['not-utf8', 'control'])
def test_a_path_that_cannot_be_recorded(daemon, cgroups, caller_cgroup, sandbox, root, name):
    box = sandbox()
    # Answers and properties quote paths, and D-Bus strings are UTF-8.
    given = cgroups.make(name, parent=caller_cgroup)
    e = h.expect_error(h.DBUS_ERROR + 'InvalidArgs', NOBODY, add_cgroup(box.fd, given))
    assert 'cannot be recorded' in e.message
    h.expect_error(h.DBUS_ERROR + 'InvalidArgs', NOBODY, add_cgroup(box.fd, given, h.CREATE_CHILD))
    assert list(p for p in given.iterdir() if p.is_dir()) == []
    assert owner(given) == (NOBODY_UID, NOBODY_GID)
    assert control_groups(root, box.path) == []


@pytest.mark.parametrize('flags', [2, 4, 1 << 63])
def test_unknown_flags(daemon, caller_cgroup, sandbox, root, flags):
    box = sandbox()
    e = h.expect_error(h.DBUS_ERROR + 'InvalidArgs', NOBODY, add_cgroup(box.fd, caller_cgroup, flags | 1))
    assert hex(flags) in e.message
    assert list(p for p in caller_cgroup.iterdir() if p.is_dir()) == []
    assert control_groups(root, box.path) == []


def test_namespace_not_registered(daemon, members, caller_cgroup):
    m = members(caller_cgroup)
    e = h.expect_error(h.ERROR + 'NotRegistered', NOBODY, add_cgroup(m.userns_fd, caller_cgroup, h.CREATE_CHILD))
    assert str(m.id) in e.message
    assert list(p for p in caller_cgroup.iterdir() if p.is_dir()) == []


@pytest.mark.parametrize('kind', ['self', 'registered'])
def test_namespace_without_a_transient_range(daemon, userns, caller_cgroup, root, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    e = h.expect_error(h.ERROR + 'NoUserRange', NOBODY, add_cgroup(ns, caller_cgroup, h.CREATE_CHILD))
    assert kind in e.message
    with pytest.raises(h.BusError) as e:
        add_cgroup(ns, caller_cgroup, h.CREATE_CHILD)(root)
    assert e.value.name == h.ERROR + 'NoUserRange'
    assert list(p for p in caller_cgroup.iterdir() if p.is_dir()) == []
    assert control_groups(root, path) == []


# ---- limits and duplicates ------------------------------------------------------------

def test_the_17th_cgroup_fails(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    parents = [cgroups.make(f'p{i}', parent=caller_cgroup) for i in range(MAX_CONTROL_GROUPS + 1)]
    paths = [h.as_user(NOBODY, add_cgroup(box.fd, p, h.CREATE_CHILD)) for p in parents[:MAX_CONTROL_GROUPS]]
    assert len(set(paths)) == MAX_CONTROL_GROUPS
    assert sorted(control_groups(root, box.path)) == sorted(paths)

    e = h.expect_error(h.ERROR + 'TooManyControlGroups', NOBODY,
                       add_cgroup(box.fd, parents[-1], h.CREATE_CHILD))
    assert str(MAX_CONTROL_GROUPS) in e.message
    assert not (parents[-1] / 'nsresd-65534-box').exists()
    # As it is, too; and for root.
    given = cgroups.make('given', parent=parents[-1])
    h.expect_error(h.ERROR + 'TooManyControlGroups', NOBODY, add_cgroup(box.fd, given))
    with pytest.raises(h.BusError) as e:
        add_cgroup(box.fd, given)(root)
    assert e.value.name == h.ERROR + 'TooManyControlGroups'
    assert owner(given) == (NOBODY_UID, NOBODY_GID)
    assert len(control_groups(root, box.path)) == MAX_CONTROL_GROUPS


def test_calls_waiting_for_polkit_hold_their_slots(daemon, polkit, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    parents = [cgroups.make(f'p{i}', parent=caller_cgroup) for i in range(MAX_CONTROL_GROUPS + 1)]
    polkit.hang()
    calls = [h.spawn_as_user(NOBODY, add_cgroup(box.fd, p, h.CREATE_CHILD)) for p in parents[:MAX_CONTROL_GROUPS]]
    try:
        h.wait_until(lambda: len(polkit.mock.GetMethodCalls('CheckAuthorization')) >= MAX_CONTROL_GROUPS, 30,
                     what='every call to wait for polkit')
        # Nothing is delegated yet, and still no slot is left.
        assert control_groups(root, box.path) == []
        h.expect_error(h.ERROR + 'TooManyControlGroups', NOBODY, add_cgroup(box.fd, parents[-1], h.CREATE_CHILD))
        polkit.release()
        paths = [c.result() for c in calls]
    finally:
        for c in calls:
            c.kill()
    assert sorted(control_groups(root, box.path)) == sorted(paths)
    assert len(paths) == MAX_CONTROL_GROUPS


def test_a_cgroup_is_delegated_once(daemon, cgroups, caller_cgroup, sandbox, root):
    box, other = sandbox(), sandbox('other')
    given = cgroups.make('given', parent=caller_cgroup)
    path = h.as_user(NOBODY, add_cgroup(box.fd, given))
    # It belongs to the namespace now, so for nobody it is someone else's;
    # root is told what it is.
    with pytest.raises(h.BusError) as e:
        add_cgroup(box.fd, given)(root)
    assert e.value.name == h.ERROR + 'ControlGroupAlreadyAdded'
    assert path in e.value.message
    with pytest.raises(h.BusError) as e:
        add_cgroup(other.fd, given)(root)
    assert e.value.name == h.ERROR + 'ControlGroupAlreadyAdded'
    assert control_groups(root, box.path) == [path]
    assert control_groups(root, other.path) == []


def test_one_leaf_per_namespace_in_a_cgroup(daemon, cgroups, caller_cgroup, sandbox, root):
    box, other = sandbox(), sandbox('other')
    path = h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    e = h.expect_error(h.ERROR + 'ControlGroupAlreadyAdded', NOBODY,
                       add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    assert 'nsresd-65534-box' in e.message
    assert control_groups(root, box.path) == [path]
    # Another namespace gets a leaf of its own there.
    assert h.as_user(NOBODY, add_cgroup(other.fd, caller_cgroup, h.CREATE_CHILD)) == \
        cgroups.rel(caller_cgroup / 'nsresd-65534-other')


def test_a_name_taken_by_another_cgroup(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    taken = cgroups.make('nsresd-65534-box', parent=caller_cgroup)
    e = h.expect_error(h.DBUS_ERROR + 'FileExists', NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    assert 'nsresd-65534-box' in e.message
    assert owner(taken) == (NOBODY_UID, NOBODY_GID)
    assert control_groups(root, box.path) == []


# ---- records and teardown ---------------------------------------------------------------

def test_the_registry_records_the_cgroup(daemon, cgroups, caller_cgroup, sandbox, root):
    box = sandbox()
    assert registry_entry(daemon, box.member.id)['cgroups'] == []
    made = h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    given = cgroups.make('given', parent=caller_cgroup)
    h.as_user(NOBODY, add_cgroup(box.fd, given))

    recorded = registry_entry(daemon, box.member.id)['cgroups']
    assert recorded == [
        {'id': str(cgroup_id(cgroups.mount / made.lstrip('/'))), 'parent': str(cgroup_id(caller_cgroup)),
         'path': made, 'created': True, 'pending': False},
        {'id': str(cgroup_id(given)), 'parent': '0', 'path': cgroups.rel(given), 'created': False,
         'pending': False},
    ]

    box.member.stop()
    h.wait_until(lambda: registry_entry(daemon, box.member.id) is None, 5, what='the registry entry to go')
    wait_gone(cgroups.mount / made.lstrip('/'))
    wait_gone(given)


def test_teardown_removes_the_leaf_and_nothing_above(daemon, cgroups, caller_cgroup, sandbox, sleepers, signals):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    m = box.member
    m.call('join', leaf)
    m.call('become-root')
    for sub in ('a', 'a/b', 'a/b/c', 'd'):
        m.call('mkdir', leaf / sub)
    m.call('write', leaf / 'a' / 'b' / 'c' / 'cgroup.procs', '0')
    # A process of no sandbox inside: teardown kills it as well.
    stray = sleepers(leaf / 'd')
    neighbour = cgroups.make('neighbour', parent=caller_cgroup)
    neighbour_sleeper = sleepers(neighbour)

    m.stop()
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == box.path, 5,
                     what='UserNamespaceRemoved')
    wait_gone(leaf)
    assert stray.wait(5) == -signal.SIGKILL
    # Above the leaf and beside it everything is as it was.
    assert caller_cgroup.is_dir() and neighbour.is_dir() and cgroups.top.is_dir()
    assert owner(caller_cgroup) == (NOBODY_UID, NOBODY_GID)
    assert owner(caller_cgroup / 'cgroup.procs') == (NOBODY_UID, NOBODY_GID)
    assert neighbour_sleeper.poll() is None
    assert h.Cgroups.members(neighbour) == [neighbour_sleeper.pid]
    assert 'Removed control group' in daemon.log()


def test_teardown_removes_a_leaf_given_as_it_was(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    given = cgroups.make('given', parent=caller_cgroup)
    h.as_user(NOBODY, add_cgroup(box.fd, given))
    box.member.call('join', given)
    box.member.call('become-root')
    box.member.call('mkdir', given / 'inner')

    box.member.stop()
    # Owned by the namespace's ids, which go to the next namespace: removed,
    # not left to them. Its parent stays the caller's.
    wait_gone(given)
    assert caller_cgroup.is_dir()
    assert owner(caller_cgroup) == (NOBODY_UID, NOBODY_GID)


@pytest.mark.nsresd_fault('no-cgroup-kill')
def test_teardown_without_cgroup_kill(daemon, cgroups, caller_cgroup, sandbox, sleepers):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    box.member.call('join', leaf)
    box.member.call('become-root')
    box.member.call('mkdir', leaf / 'inner')
    strays = [sleepers(leaf / 'inner'), sleepers(leaf / 'inner')]

    box.member.stop()
    wait_gone(leaf)
    for stray in strays:
        assert stray.wait(5) == -signal.SIGKILL


def test_delegations_survive_restarts(daemon, cgroups, caller_cgroup, sandbox, root, signals):
    box = sandbox()
    path = h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    leaf = cgroups.mount / path.lstrip('/')

    assert daemon.stop() == 0
    daemon.start()
    assert control_groups(root, box.path) == [path]
    daemon.kill()
    daemon.start()
    assert control_groups(root, box.path) == [path]
    assert owner(leaf)[0] == box.uid_start
    # Still known as delegated, and still torn down.
    e = h.expect_error(h.ERROR + 'ControlGroupAlreadyAdded', NOBODY,
                       add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    assert e.message
    box.member.stop()
    wait_gone(leaf)


def test_a_namespace_dead_while_the_service_was_down(daemon, cgroups, caller_cgroup, sandbox):
    box = sandbox()
    leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD)).lstrip('/')
    daemon.kill()
    box.member.stop()
    time.sleep(0.3)
    assert leaf.is_dir()
    daemon.start()
    wait_gone(leaf)
    assert daemon.registry_files() == []


# ---- crashes ------------------------------------------------------------------------------

def crash_during(daemon, call):
    with pytest.raises(h.BusError):
        h.as_user(NOBODY, call)
    assert daemon.wait_exit(5) == -signal.SIGKILL


@pytest.mark.parametrize('create', [True, False], ids=['create-child', 'as-it-is'])
@pytest.mark.nsresd_fault('kill-after-cgroup-record:65534-box')
def test_crash_after_recording_a_live_namespace(daemon, cgroups, caller_cgroup, sandbox, root, create):
    box = sandbox()
    target = caller_cgroup if create else cgroups.make('given', parent=caller_cgroup)
    crash_during(daemon, add_cgroup(box.fd, target, h.CREATE_CHILD if create else 0))
    recorded = registry_entry(daemon, box.member.id)['cgroups']
    assert len(recorded) == 1 and recorded[0]['pending']

    daemon.start()
    if create:
        # Nothing was made before the crash: the record goes, and the call can be made again.
        assert control_groups(root, box.path) == []
        assert registry_entry(daemon, box.member.id)['cgroups'] == []
        assert list(p for p in caller_cgroup.iterdir() if p.is_dir()) == []
        path = h.as_user(NOBODY, add_cgroup(box.fd, target, h.CREATE_CHILD))
        leaf = cgroups.mount / path.lstrip('/')
    else:
        # The namespace lives: it keeps what the record gave it.
        leaf = target
        assert control_groups(root, box.path) == [cgroups.rel(target)]
        assert registry_entry(daemon, box.member.id)['cgroups'][0]['pending'] is False
    assert owner(leaf) == (box.uid_start, box.allocation.gid_start)
    assert (leaf / 'cgroup.max.depth').read_text().strip() == str(DEFAULT_MAX_DEPTH)
    box.member.stop()
    wait_gone(leaf)


@pytest.mark.parametrize('create', [True, False], ids=['create-child', 'as-it-is'])
@pytest.mark.nsresd_fault('kill-after-cgroup-record:65534-box')
def test_crash_after_recording_a_dead_namespace(daemon, cgroups, caller_cgroup, sandbox, create):
    box = sandbox()
    target = caller_cgroup if create else cgroups.make('given', parent=caller_cgroup)
    crash_during(daemon, add_cgroup(box.fd, target, h.CREATE_CHILD if create else 0))
    box.member.stop()
    time.sleep(0.3)

    daemon.start()
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')
    if create:
        assert list(p for p in caller_cgroup.iterdir() if p.is_dir()) == []
    else:
        wait_gone(target)
    assert caller_cgroup.is_dir()


@pytest.mark.parametrize('alive', [True, False], ids=['alive', 'dead'])
@pytest.mark.nsresd_fault('kill-after-cgroup-create:65534-box')
def test_crash_after_making_the_leaf(daemon, cgroups, caller_cgroup, sandbox, root, alive):
    box = sandbox()
    crash_during(daemon, add_cgroup(box.fd, caller_cgroup, h.CREATE_CHILD))
    leaf = caller_cgroup / 'nsresd-65534-box'
    # Made, but not handed over yet; its id is not recorded.
    assert owner(leaf) == (0, 0)
    assert registry_entry(daemon, box.member.id)['cgroups'][0]['id'] == '0'
    if not alive:
        box.member.stop()
        time.sleep(0.3)

    daemon.start()
    if alive:
        assert control_groups(root, box.path) == [cgroups.rel(leaf)]
        assert owner(leaf) == (box.uid_start, box.allocation.gid_start)
        assert registry_entry(daemon, box.member.id)['cgroups'][0]['id'] == str(cgroup_id(leaf))
        box.member.stop()
    wait_gone(leaf)
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')


# ---- nsresctl ---------------------------------------------------------------------------

@pytest.fixture
def cli(environment):
    """The built nsresctl where every user can execute it."""
    path = environment.root / f'nsresctl-{secrets.token_hex(4)}'
    path.write_bytes(h.client_binary().read_bytes())
    path.chmod(0o755)
    yield path
    path.unlink()


def run_in(environment, cgroup, argv, user=NOBODY, background=False):
    """argv as `user`, started in `cgroup` (root puts it there first)."""
    pw = h.passwd(user)

    def place_and_drop():
        Path(cgroup, 'cgroup.procs').write_text('0')
        os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)

    env = {'PATH': '/usr/local/bin:/usr/bin:/bin', 'LANG': 'C.UTF-8', 'HOME': '/',
           'DBUS_SYSTEM_BUS_ADDRESS': environment.address}
    kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                  cwd='/', preexec_fn=place_and_drop)
    if background:
        return subprocess.Popen(argv, **kwargs)
    return subprocess.run(argv, timeout=30, check=False, **kwargs)


def test_nsresctl_runs_a_command_in_its_cgroup(daemon, environment, cli, cgroups, caller_cgroup):
    r = run_in(environment, caller_cgroup,
               [str(cli), 'run', '--name', 'cg', '--cgroup', str(caller_cgroup), '--', 'cat', '/proc/self/cgroup'])
    assert r.returncode == 0, r.stderr
    leaf = caller_cgroup / 'nsresd-65534-cg'
    assert f'0::{cgroups.rel(leaf)}\n' in r.stdout
    # The command was its namespace's last process.
    wait_gone(leaf)
    assert caller_cgroup.is_dir()


def test_nsresctl_status_shows_the_cgroup(daemon, environment, cli, cgroups, caller_cgroup):
    p = run_in(environment, caller_cgroup, [str(cli), 'run', '--name', 'st', '--cgroup', str(caller_cgroup),
                                            '--', 'sleep', '60'], background=True)
    leaf = caller_cgroup / 'nsresd-65534-st'
    try:
        h.wait_until(lambda: leaf.exists() and h.Cgroups.members(leaf), 10, what='the command in its cgroup')
        r = run_in(environment, caller_cgroup, [str(cli), 'status', 'st'])
        assert r.returncode == 0, r.stderr
        assert f'ControlGroups: {cgroups.rel(leaf)}\n' in r.stdout
        r = run_in(environment, caller_cgroup, [str(cli), 'status', 'st', '--json'])
        assert json.loads(r.stdout)['ControlGroups'] == [cgroups.rel(leaf)]
        # nsresctl passes SIGTERM on to the command.
        p.terminate()
        p.communicate(timeout=10)
        assert p.returncode == 128 + signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
    wait_gone(leaf)


def test_nsresctl_outside_the_cgroup(daemon, environment, cli, cgroups, caller_cgroup):
    # Started beside the caller's cgroup: the first move needs the common
    # ancestor's cgroup.procs, which is root's here.
    elsewhere = cgroups.make('elsewhere')
    r = run_in(environment, elsewhere,
               [str(cli), 'run', '--name', 'out', '--cgroup', str(caller_cgroup), '--', 'true'])
    assert r.returncode == 1
    assert 'control group' in r.stderr and 'Permission denied' in r.stderr
    wait_gone(caller_cgroup / 'nsresd-65534-out')


def test_nsresctl_with_a_cgroup_of_another_user(daemon, environment, cli, cgroups):
    theirs = cgroups.make('theirs', user=DAEMON_USER)
    r = run_in(environment, theirs, [str(cli), 'run', '--cgroup', str(theirs), '--', 'true'])
    assert r.returncode == 1
    assert 'belongs to uid' in r.stderr
    assert list(p for p in theirs.iterdir() if p.is_dir()) == []
