# SPDX-License-Identifier: LGPL-2.1-or-later
"""AddMountToUserNamespace: a namespace with a transient range is given a
mount its ids may write to despite the restriction. The mount is passed as
an fd of its root and recorded by its unique mount id: listed in the
namespace's Mounts, kept in the registry across restarts. It is checked like
every other call: the namespace must be published with a transient range,
the caller must own it (or be root, or have 'manage'), and polkit must allow
'delegate-mount' for anyone but root."""

import errno
import json
import os
import socket

import pytest

import harness as h
from harness import DAEMON_USER, NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
# The shipped defaults, plus delegate-mount (auth_admin_keep in the policy).
MOUNTS_ALLOWED = (h.ACTION_ALLOCATE, h.ACTION_REGISTER, h.ACTION_DELEGATE_MOUNT)
MAX_MOUNTS = 1024


def add_mount(ns, fd, flags=0):
    return lambda c: c.add_mount(ns, fd, flags)


def mounts(root, path):
    return root.namespace_properties(path)['Mounts']


def published(userns, user=NOBODY, name='m'):
    """A namespace of `user` with a transient range: (Userns, object path)."""
    ns = userns(user)
    return ns, h.as_user(user, lambda c: c.allocate(name, ns)).path


def registry_entry(daemon, ns):
    files = [f for f in daemon.registry_files() if f.startswith(f'{ns.id}-')]
    assert len(files) == 1, files
    return json.loads((daemon.state_dir / 'registry' / files[0]).read_text())


# ---- delegating ---------------------------------------------------------------------

def test_root_delegates_a_mount(daemon, userns, root, tmpfs, signals):
    ns = userns()
    path = root.allocate('box', ns).path
    mount = tmpfs()
    mnt_id, unique = h.mount_id(mount.fd)
    assert unique, 'this kernel reports no unique mount ids (Linux 6.8+)'
    assert mounts(root, path) == []

    root.add_mount(ns, mount.fd)

    assert mounts(root, path) == [mnt_id]
    changed = signals.wait_for(lambda e: e[1] == 'PropertiesChanged' and e[2] == path and
                               'Mounts' in e[3][1], what='PropertiesChanged of Mounts')
    assert changed[3][0] == h.USERNS_IFACE
    assert changed[3][1]['Mounts'] == [mnt_id]
    assert registry_entry(daemon, ns)['mounts'] == [str(mnt_id)]


def test_delegating_a_mount_again_changes_nothing(daemon, userns, root, tmpfs):
    ns = userns()
    path = root.allocate('box', ns).path
    first, second = tmpfs(), tmpfs()
    root.add_mount(ns, first.fd)
    root.add_mount(ns, first.fd)
    # Another fd of the same mount root is the same mount.
    again = os.open(first.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root.add_mount(ns, again)
    finally:
        os.close(again)
    assert mounts(root, path) == [first.id()]
    root.add_mount(ns, second.fd)
    assert sorted(mounts(root, path)) == sorted([first.id(), second.id()])


def test_a_detached_mount_from_open_tree(daemon, userns, root, tmpfs):
    ns = userns()
    path = root.allocate('box', ns).path
    clone = h.open_tree_clone(tmpfs().fd)
    try:
        mnt_id = h.mount_id(clone)[0]
        root.add_mount(ns, clone)
    finally:
        os.close(clone)
    assert mounts(root, path) == [mnt_id]


def test_the_service_does_not_hold_a_mount_with_a_unique_id(daemon, userns, root, tmpfs):
    ns = userns()
    path = root.allocate('box', ns).path
    mount = tmpfs()
    mnt_id = mount.id()
    root.add_mount(ns, mount.fd)
    # Anyone's open fd keeps a mount busy, ours included ...
    with pytest.raises(OSError) as e:
        mount.unmount()
    assert e.value.errno == errno.EBUSY
    # ... and with ours closed nothing holds it: the service keeps the id
    # only. (It may still be freeing the call's message, and its fd, for a
    # moment after the reply.)
    mount.close_fd()

    def unmounted():
        try:
            mount.unmount()
            return True
        except OSError as e:
            assert e.errno == errno.EBUSY
            return False

    h.wait_until(unmounted, 2.0, what='the mount to be free')
    assert mounts(root, path) == [mnt_id]


def test_the_owner_delegates_with_polkit(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns)
    mount = tmpfs()
    polkit.allow(*MOUNTS_ALLOWED)
    h.as_user(NOBODY, add_mount(ns, mount.fd))
    assert mounts(root, path) == [mount.id()]
    # Asked for the mount action, with what the policy's message names.
    checks = [line for line in polkit.log().splitlines() if 'CheckAuthorization' in line]
    assert h.ACTION_DELEGATE_MOUNT in checks[-1]
    assert '"name": "65534-m"' in checks[-1] and '"kind": "transient"' in checks[-1]


def test_the_owner_denied_by_polkit(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns)
    mount = tmpfs()
    # The defaults grant allocations, not mounts.
    e = h.expect_error(ACCESS_DENIED, NOBODY, add_mount(ns, mount.fd))
    assert e.message
    assert mounts(root, path) == []
    assert registry_entry(daemon, ns)['mounts'] == []


def test_a_challenge_without_interaction(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns)
    polkit.challenge()
    e = h.expect_error(h.DBUS_ERROR + 'InteractiveAuthorizationRequired', NOBODY, add_mount(ns, tmpfs().fd))
    assert 'interactive' in e.message
    assert mounts(root, path) == []


def test_polkit_answers_are_not_cached(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns)
    first, second = tmpfs(), tmpfs()
    polkit.allow(*MOUNTS_ALLOWED)
    h.as_user(NOBODY, add_mount(ns, first.fd))
    polkit.allow_defaults()
    h.expect_error(ACCESS_DENIED, NOBODY, add_mount(ns, second.fd))
    assert mounts(root, path) == [first.id()]


def test_namespace_of_another_user(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns, NOBODY)
    mount = tmpfs()
    polkit.allow(*MOUNTS_ALLOWED)
    e = h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, add_mount(ns, mount.fd))
    assert '65534' in e.message
    assert mounts(root, path) == []


def test_manage_acts_on_another_users_namespace(daemon, polkit, userns, root, tmpfs):
    ns, path = published(userns, NOBODY)
    mount = tmpfs()
    polkit.allow(h.ACTION_MANAGE)
    h.as_user(DAEMON_USER, add_mount(ns, mount.fd))
    assert mounts(root, path) == [mount.id()]


def test_mounts_survive_restarts(daemon, userns, root, tmpfs):
    ns, path = published(userns)
    first, second = tmpfs(), tmpfs()
    root.add_mount(ns, first.fd)
    root.add_mount(ns, second.fd)
    expected = sorted([first.id(), second.id()])

    assert daemon.stop() == 0
    daemon.start()
    assert sorted(mounts(root, path)) == expected

    daemon.kill()
    daemon.start()
    assert sorted(mounts(root, path)) == expected
    # And the list still grows from there.
    third = tmpfs()
    root.add_mount(ns, third.fd)
    assert sorted(mounts(root, path)) == sorted(expected + [third.id()])


def test_mounts_go_with_their_namespace(daemon, userns, root, tmpfs, signals):
    ns, path = published(userns)
    root.add_mount(ns, tmpfs().fd)
    ns.release()
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == path, 2.0,
                     what='UserNamespaceRemoved')
    assert daemon.registry_files() == []
    assert not root.object_exists(path)


def test_limit_per_namespace(daemon, userns, root, tmpfs):
    ns = userns()
    path = root.allocate('box', ns).path
    mount = tmpfs()
    root.add_mount(ns, mount.fd)
    for _ in range(MAX_MOUNTS - 1):
        clone = h.open_tree_clone(mount.fd)
        try:
            root.add_mount(ns, clone)
        finally:
            os.close(clone)
    assert len(mounts(root, path)) == MAX_MOUNTS
    clone = h.open_tree_clone(mount.fd)
    try:
        with pytest.raises(h.BusError) as e:
            root.add_mount(ns, clone)
    finally:
        os.close(clone)
    assert e.value.name == h.DBUS_ERROR + 'LimitsExceeded'
    assert str(MAX_MOUNTS) in e.value.message
    # One that is there already is no new mount.
    root.add_mount(ns, mount.fd)
    assert len(mounts(root, path)) == MAX_MOUNTS


# ---- refusals -------------------------------------------------------------------------

@pytest.mark.parametrize('flags', [1, 2, 1 << 63])
def test_unknown_flags(daemon, userns, root, tmpfs, flags):
    ns = userns()
    path = root.allocate('box', ns).path
    with pytest.raises(h.BusError) as e:
        root.add_mount(ns, tmpfs().fd, flags)
    assert e.value.name == h.DBUS_ERROR + 'InvalidArgs'
    assert mounts(root, path) == []


def open_not_a_mount(kind, mount):
    if kind == 'subdirectory':
        (mount.path / 'sub').mkdir()
        return os.open(mount.path / 'sub', os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if kind == 'file on the mount':
        (mount.path / 'file').write_text('x')
        return os.open(mount.path / 'file', os.O_RDONLY | os.O_CLOEXEC)
    if kind == 'pipe':
        return os.pipe()[0]
    return socket.socketpair()[0].detach()


@pytest.mark.parametrize('kind', ['subdirectory', 'file on the mount', 'pipe', 'socket'])
def test_not_the_root_of_a_mount(daemon, userns, root, tmpfs, kind):
    ns = userns()
    path = root.allocate('box', ns).path
    fd = open_not_a_mount(kind, tmpfs())
    try:
        with pytest.raises(h.BusError) as e:
            root.add_mount(ns, fd)
    finally:
        os.close(fd)
    assert e.value.name == h.ERROR + 'NotAMount'
    # It has to say what to pass instead.
    assert 'root' in e.value.message and 'open_tree' in e.value.message
    assert mounts(root, path) == []


def test_namespace_not_registered(daemon, userns, root, tmpfs):
    with pytest.raises(h.BusError) as e:
        root.add_mount(userns(), tmpfs().fd)
    assert e.value.name == h.ERROR + 'NotRegistered'
    assert e.value.message


def test_namespace_not_registered_as_a_user(daemon, polkit, userns, root, tmpfs):
    polkit.allow(*MOUNTS_ALLOWED)
    h.expect_error(h.ERROR + 'NotRegistered', NOBODY, add_mount(userns(NOBODY), tmpfs().fd))


def test_fd_that_is_not_a_user_namespace(daemon, root, tmpfs):
    mount = tmpfs()
    with pytest.raises(h.BusError) as e:
        root.add_mount(mount.fd, mount.fd)
    assert e.value.name == h.ERROR + 'NotAUserNamespace'


@pytest.mark.parametrize('kind', ['self', 'registered'])
def test_namespace_without_a_transient_range(daemon, polkit, userns, root, tmpfs, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    mount = tmpfs()
    polkit.allow(*MOUNTS_ALLOWED)
    e = h.expect_error(h.ERROR + 'NoUserRange', NOBODY, add_mount(ns, mount.fd))
    assert kind in e.message
    with pytest.raises(h.BusError) as e:
        root.add_mount(ns, mount.fd)
    assert e.value.name == h.ERROR + 'NoUserRange'
    assert mounts(root, path) == []
