# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every request the contract refuses is refused with its named error, and a
refused request leaves nothing behind: no object, no registry file, no range,
no map written."""

import os
import socket

import pytest

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

INVALID_ARGS = h.DBUS_ERROR + 'InvalidArgs'


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def register(ns, name='x', **kwargs):
    return lambda c: c.register(name, ns, **kwargs)


def assert_nothing_left(daemon, root, free_before=None):
    assert root.list() == []
    assert root.namespace_paths() == []
    assert daemon.registry_files() == []
    props = root.manager_properties()
    assert props['Namespaces'] == 0
    if free_before is not None:
        assert props['FreeRanges'] == free_before


def write_maps(ns, uid_map=None, gid_map=None, setgroups=None):
    """Write maps from outside, as root may (in the namespace's parent)."""
    for name, text in (('setgroups', setgroups), ('uid_map', uid_map), ('gid_map', gid_map)):
        if text is not None:
            with open(f'/proc/{ns.pid}/{name}', 'w') as f:
                f.write(text)


# ---- flags ----------------------------------------------------------------------

@pytest.mark.parametrize('flags', [1 << 3, 1 << 31, 1 << 63])
def test_unknown_allocate_flags(daemon, userns, root, flags):
    ns = userns(NOBODY)
    h.expect_error(INVALID_ARGS, NOBODY, allocate(ns, flags=flags))
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


@pytest.mark.parametrize('flags', [1, 1 << 63])
def test_unknown_register_flags(daemon, userns, root, flags):
    ns = userns(NOBODY, map_self=True)
    h.expect_error(INVALID_ARGS, NOBODY, register(ns, flags=flags))
    assert_nothing_left(daemon, root)


def test_unknown_list_flags(daemon):
    h.expect_error(INVALID_ARGS, NOBODY, lambda c: c.list(flags=1))


def test_unknown_get_by_uid_flags(daemon, userns):
    a = h.as_user(NOBODY, allocate(userns(NOBODY)))
    h.expect_error(INVALID_ARGS, NOBODY, lambda c: c.by_uid(a.uid_start, flags=1))


# ---- names and sizes ------------------------------------------------------------

INVALID_NAMES = ['', '-dash', 'x' * 17, 'with space', 'ümlaut', 'a/b', 'a.b', 'tab\there', 'new\nline']


@pytest.mark.parametrize('name', INVALID_NAMES)
def test_invalid_name_allocate(daemon, userns, root, name):
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'InvalidName', NOBODY, allocate(ns, name=name))
    assert e.message
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


@pytest.mark.parametrize('name', ['', '-dash', 'x' * 17, 'with space'])
def test_invalid_name_register(daemon, userns, root, name):
    h.expect_error(h.ERROR + 'InvalidName', NOBODY, register(userns(NOBODY, map_self=True), name=name))
    assert_nothing_left(daemon, root)


def test_invalid_name_from_root(daemon, userns, root):
    with pytest.raises(h.BusError) as e:
        root.allocate('bad name', userns())
    assert e.value.name == h.ERROR + 'InvalidName'


@pytest.mark.parametrize('size', [0, 2, 1000, BLOCK - 1, BLOCK + 1, 2 * BLOCK, h.UID_MAX])
def test_invalid_size(daemon, userns, root, size):
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'InvalidSize', NOBODY, allocate(ns, size=size))
    assert e.message
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


def test_self_with_a_range_size(daemon, userns, root):
    ns = userns(NOBODY)
    h.expect_error(h.ERROR + 'InvalidSize', NOBODY, allocate(ns, size=BLOCK, flags=h.SELF))
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


# ---- target ---------------------------------------------------------------------

@pytest.mark.parametrize('size,target,flags', [
    (BLOCK, h.UID_MAX - BLOCK + 1, 0),          # target + size = 2^32
    (BLOCK, h.UID_MAX, 0),
    (1, h.UID_MAX, 0),
    (1, h.UID_MAX, h.SELF),
    (BLOCK, h.UID_MAX - BLOCK, h.MAP_CALLER),   # the caller would land on 4294967295
])
def test_target_past_the_last_id(daemon, userns, root, size, target, flags):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    e = h.expect_error(INVALID_ARGS, NOBODY, allocate(ns, size=size, target=target, flags=flags))
    assert e.message
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root, free)


def test_highest_target_for_a_range(daemon, userns):
    ns = userns(NOBODY)
    target = h.UID_MAX - BLOCK
    a = h.as_user(NOBODY, allocate(ns, target=target))
    assert ns.uid_map() == [(target, a.uid_start, BLOCK)]


def test_highest_target_with_map_caller(daemon, userns):
    ns = userns(NOBODY)
    target = h.UID_MAX - BLOCK - 1
    a = h.as_user(NOBODY, allocate(ns, target=target, flags=h.MAP_CALLER))
    assert ns.uid_map() == [(target, a.uid_start, BLOCK), (h.UID_MAX - 1, 65534, 1)]


def test_highest_target_for_self(daemon, userns):
    ns = userns(NOBODY)
    h.as_user(NOBODY, allocate(ns, size=1, target=h.UID_MAX - 1, flags=h.SELF))
    assert ns.uid_map() == [(h.UID_MAX - 1, 65534, 1)]


# ---- what the fd is -------------------------------------------------------------

def open_fd_of_kind(kind):
    if kind == 'pipe':
        return os.pipe()[0]
    if kind == 'socket':
        return socket.socketpair()[0].detach()
    if kind == 'regular file':
        return os.open('/etc/passwd', os.O_RDONLY)
    if kind == 'directory':
        return os.open('/', os.O_RDONLY | os.O_DIRECTORY)
    if kind == 'character device':
        return os.open('/dev/null', os.O_RDONLY)
    if kind == 'proc file':
        return os.open('/proc/self/status', os.O_RDONLY)
    return os.open(f'/proc/self/ns/{kind}', os.O_RDONLY)


FD_KINDS = ['pipe', 'socket', 'regular file', 'directory', 'character device', 'proc file',
            'net', 'mnt', 'pid', 'uts', 'ipc', 'cgroup']


@pytest.mark.parametrize('kind', FD_KINDS)
def test_allocate_with_an_fd_that_is_not_a_user_namespace(daemon, root, kind):
    e = h.expect_error(h.ERROR + 'NotAUserNamespace', NOBODY,
                       lambda c: c.allocate('x', open_fd_of_kind(kind)))
    assert e.message
    assert_nothing_left(daemon, root)


@pytest.mark.parametrize('kind', ['pipe', 'regular file', 'net'])
def test_register_with_an_fd_that_is_not_a_user_namespace(daemon, root, kind):
    h.expect_error(h.ERROR + 'NotAUserNamespace', NOBODY, lambda c: c.register('x', open_fd_of_kind(kind)))
    assert_nothing_left(daemon, root)


def test_namespace_of_another_user(daemon, userns, root):
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, allocate(ns))
    assert e.message
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


def test_namespace_of_root_passed_by_a_user(daemon, userns, root):
    ns = userns()
    h.expect_error(h.ERROR + 'NotOwner', NOBODY, allocate(ns))
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


def test_register_namespace_of_another_user(daemon, userns, root):
    ns = userns(NOBODY, map_self=True)
    h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, register(ns))
    assert_nothing_left(daemon, root)


def test_nested_namespace(daemon, userns, root):
    ns = userns(NOBODY, nested=True)
    e = h.expect_error(h.ERROR + 'BadNesting', NOBODY, allocate(ns))
    assert e.message
    assert ns.uid_map() == []
    assert_nothing_left(daemon, root)


def test_nested_namespace_from_root(daemon, userns, root):
    # Root may pass anyone's namespace, but not one nested in another.
    ns = userns(NOBODY, nested=True)
    with pytest.raises(h.BusError) as e:
        root.allocate('x', ns)
    assert e.value.name == h.ERROR + 'BadNesting'


def test_the_services_own_user_namespace(daemon, root):
    fd = os.open('/proc/self/ns/user', os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(h.BusError) as e:
            root.allocate('init', fd)
    finally:
        os.close(fd)
    assert e.value.name == h.ERROR + 'BadNesting'
    assert_nothing_left(daemon, root)


# ---- maps -----------------------------------------------------------------------

def test_allocate_for_a_mapped_namespace(daemon, userns, root):
    ns = userns(NOBODY, map_self=True)
    free = root.manager_property('FreeRanges')
    e = h.expect_error(h.ERROR + 'AlreadyMapped', NOBODY, allocate(ns))
    assert e.message
    assert ns.uid_map() == [(0, 65534, 1)]
    assert_nothing_left(daemon, root, free)


def test_self_for_a_mapped_namespace(daemon, userns, root):
    ns = userns(NOBODY, map_self=True)
    h.expect_error(h.ERROR + 'AlreadyMapped', NOBODY, allocate(ns, size=1, flags=h.SELF))
    assert_nothing_left(daemon, root)


@pytest.mark.parametrize('which', ['uid_map', 'gid_map'])
def test_allocate_when_one_map_is_written(daemon, userns, root, which):
    ns = userns(NOBODY)
    write_maps(ns, **{which: '0 65534 1'})
    free = root.manager_property('FreeRanges')
    h.expect_error(h.ERROR + 'AlreadyMapped', NOBODY, allocate(ns))
    assert_nothing_left(daemon, root, free)


@pytest.mark.parametrize('uid_map,gid_map,setgroups', [
    (None, None, None),                                 # nothing mapped
    ('0 65534 1', None, 'deny'),                        # no gid_map
    ('0 65534 2', '0 65534 1', 'deny'),                 # more than the caller's uid
    ('0 65534 1\n1 200000 10', '0 65534 1', 'deny'),    # a second extent
    ('0 0 1', '0 65534 1', 'deny'),                     # someone else's uid
    ('0 65534 1', '0 0 1', 'deny'),                     # someone else's gid
    ('0 65534 1', '0 65534 1', None),                   # setgroups still allowed
], ids=['unmapped', 'no-gid-map', 'count-2', 'two-extents', 'other-uid', 'other-gid', 'setgroups-allowed'])
def test_register_with_maps_that_are_not_the_self_map(daemon, userns, root, uid_map, gid_map, setgroups):
    ns = userns(NOBODY)
    write_maps(ns, uid_map, gid_map, setgroups)
    e = h.expect_error(INVALID_ARGS, NOBODY, register(ns))
    assert e.message
    assert_nothing_left(daemon, root)


# ---- uniqueness -----------------------------------------------------------------

def test_allocate_twice_for_one_namespace(daemon, userns, root):
    ns = userns(NOBODY)
    first = h.as_user(NOBODY, allocate(ns, name='first'))
    e = h.expect_error(h.ERROR + 'UserNamespaceExists', NOBODY, allocate(ns, name='second'))
    assert e.message
    assert [x.name for x in root.list()] == ['65534-first']
    assert ns.uid_map() == [(0, first.uid_start, BLOCK)]


def test_register_an_allocated_namespace(daemon, userns, root):
    ns = userns(NOBODY)
    h.as_user(NOBODY, allocate(ns, name='first'))
    h.expect_error(h.ERROR + 'UserNamespaceExists', NOBODY, register(ns, name='second'))


def test_register_twice(daemon, userns, root):
    ns = userns(NOBODY, map_self=True)
    h.as_user(NOBODY, register(ns, name='first'))
    h.expect_error(h.ERROR + 'UserNamespaceExists', NOBODY, register(ns, name='second'))
    assert len(root.list()) == 1


def test_namespace_with_a_request_in_flight(daemon, polkit, userns, root):
    ns = userns(NOBODY)
    polkit.hang()
    results = h.as_user(NOBODY, h.run_parallel, [
        ('allocate', ('first', ns.fd, BLOCK, 0, 0)),
        ('allocate', ('second', ns.fd, BLOCK, 0, 0)),
    ], release_polkit_after_errors=1)
    assert results[1]['outcome'] == 'error'
    assert results[1]['value'] == h.ERROR + 'UserNamespaceExists'
    # Refused while the first one still waited for polkit.
    assert results[1]['ok_before'] == 0
    assert results[0]['outcome'] == 'ok', results[0]
    assert [x.name for x in root.list()] == ['65534-first']


def test_name_taken(daemon, userns, root):
    h.as_user(NOBODY, allocate(userns(NOBODY), name='dup'))
    other = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NameExists', NOBODY, allocate(other, name='dup'))
    assert e.message
    assert other.uid_map() == []
    assert len(root.list()) == 1


def test_name_taken_by_another_kind(daemon, userns, root):
    h.as_user(NOBODY, register(userns(NOBODY, map_self=True), name='dup'))
    h.expect_error(h.ERROR + 'NameExists', NOBODY, allocate(userns(NOBODY), name='dup', size=1, flags=h.SELF))


def test_names_are_unique_system_wide(daemon, userns, root):
    a = h.as_user(NOBODY, allocate(userns(NOBODY), name='dup'))
    with pytest.raises(h.BusError) as e:
        root.allocate(a.name, userns())
    assert e.value.name == h.ERROR + 'NameExists'


def test_name_with_a_request_in_flight(daemon, polkit, userns, root):
    one, two = userns(NOBODY), userns(NOBODY)
    polkit.hang()
    results = h.as_user(NOBODY, h.run_parallel, [
        ('allocate', ('dup', one.fd, BLOCK, 0, 0)),
        ('allocate', ('dup', two.fd, BLOCK, 0, 0)),
    ], release_polkit_after_errors=1)
    assert (results[1]['outcome'], results[1]['value']) == ('error', h.ERROR + 'NameExists')
    assert results[1]['ok_before'] == 0
    assert results[0]['outcome'] == 'ok', results[0]
    assert two.uid_map() == []
