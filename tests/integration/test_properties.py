# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the service shows about itself: Manager properties, the ObjectManager
view of the per-namespace objects, introspection, and the signals."""

import os
import subprocess

import pytest

import harness as h
from harness import BLOCK, NOBODY

DEFAULT_POOL_BLOCKS = (h.DEFAULT_RANGE_END + 1 - h.DEFAULT_RANGE_START) // BLOCK


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def test_manager_properties(daemon, root):
    props = root.manager_properties()
    version = subprocess.run([str(h.daemon_binary()), '--version'], check=True, capture_output=True,
                             text=True).stdout.split()
    assert props['Version'] == version[-1]
    # permissive: the LSM cannot be loaded on these machines.
    assert props['Restriction'] == 'unavailable'
    assert props['TeardownTracking'] == 'bpf'
    assert props['RangeStart'] == h.DEFAULT_RANGE_START
    assert props['RangeEnd'] == h.DEFAULT_RANGE_END
    assert 0 < props['FreeRanges'] <= DEFAULT_POOL_BLOCKS
    assert props['Namespaces'] == 0


def test_manager_properties_for_users(daemon):
    props = h.as_user(NOBODY, lambda c: c.manager_properties())
    assert props['TeardownTracking'] == 'bpf'
    assert props['Namespaces'] == 0


@pytest.mark.nsresd_config(allocator={'RangeStart': 524288, 'RangeEnd': 655359})
def test_pool_follows_the_configuration(daemon, root):
    props = root.manager_properties()
    assert (props['RangeStart'], props['RangeEnd'], props['FreeRanges']) == (524288, 655359, 2)


@pytest.mark.nsresd_config(restriction='off')
def test_restriction_off(daemon, userns, root):
    assert root.manager_property('Restriction') == 'off'
    a = h.as_user(NOBODY, allocate(userns(NOBODY)))
    assert a.uid_start >= h.DEFAULT_RANGE_START


def test_counts_follow_allocations(daemon, userns, root):
    free = root.manager_property('FreeRanges')
    h.as_user(NOBODY, allocate(userns(NOBODY), name='a'))
    assert (root.manager_property('Namespaces'), root.manager_property('FreeRanges')) == (1, free - 1)
    h.as_user(NOBODY, allocate(userns(NOBODY), name='b', size=1))
    h.as_user(NOBODY, allocate(userns(NOBODY), name='c', size=1, flags=h.SELF))
    registered = userns(NOBODY, map_self=True)
    h.as_user(NOBODY, lambda c: c.register('d', registered))
    # Only 65536-blocks count as ranges.
    assert (root.manager_property('Namespaces'), root.manager_property('FreeRanges')) == (4, free - 1)


def test_object_manager_lists_namespaces(daemon, userns, root):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='om'))
    objects = root.managed_objects()
    assert a.path in objects
    props = objects[a.path][h.USERNS_IFACE]
    assert props['Name'] == '65534-om'
    assert props['Id'] == ns.id
    assert (props['UidStart'], props['Size'], props['Kind']) == (a.uid_start, BLOCK, 'transient')
    assert props == root.namespace_properties(a.path)
    assert root.namespace_paths() == [a.path]


def test_object_manager_is_readable_by_users(daemon, userns):
    a = h.as_user(NOBODY, allocate(userns(NOBODY), name='om'))
    assert h.as_user(h.DAEMON_USER, lambda c: c.namespace_paths()) == [a.path]


def test_object_manager_signals(daemon, userns, root, signals):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='om'))
    added = signals.wait_for(lambda e: e[1] == 'InterfacesAdded' and e[3][0] == a.path,
                             what='InterfacesAdded')
    assert added[2] == h.MANAGER_PATH
    assert added[3][1][h.USERNS_IFACE]['Name'] == '65534-om'
    ns.release()
    removed = signals.wait_for(lambda e: e[1] == 'InterfacesRemoved' and e[3][0] == a.path,
                               what='InterfacesRemoved')
    assert h.USERNS_IFACE in removed[3][1]


def test_introspection_lists_namespace_nodes(daemon, userns, root):
    ns = userns(NOBODY)
    h.as_user(NOBODY, allocate(ns))
    xml = root.introspect(h.MANAGER_PATH + '/userns')
    assert f'<node name="{ns.id}"/>' in xml
    xml = root.introspect(f'{h.USERNS_PATH_PREFIX}{ns.id}')
    assert h.USERNS_IFACE in xml


def test_manager_introspection_names_every_method(daemon, root):
    xml = root.introspect(h.MANAGER_PATH)
    for member in ('AllocateUserRange', 'RegisterUserNamespace', 'AddControlGroupToUserNamespace',
                   'AddNetworkToUserNamespace', 'AddTapToUserNamespace', 'ListUserNamespaces', 'GetUserNamespaceByUid', 'UserNamespaceNew', 'UserNamespaceRemoved',
                   h.OBJECT_MANAGER_IFACE):
        assert member in xml


def test_unknown_namespace_object(daemon, root):
    assert not root.object_exists(h.USERNS_PATH_PREFIX + '12345678')
    with pytest.raises(h.BusError):
        root.namespace_properties(h.USERNS_PATH_PREFIX + 'abc')


def test_new_signal(daemon, userns, signals):
    ns = userns(h.DAEMON_USER)
    a = h.as_user(h.DAEMON_USER, allocate(ns, name='sig'))
    event = signals.wait_for(lambda e: e[1] == 'UserNamespaceNew', what='UserNamespaceNew')
    assert event[0] == h.MANAGER_IFACE
    assert event[2] == h.MANAGER_PATH
    assert event[3] == (a.path, '1-sig', 1)


def test_new_signal_for_every_kind(daemon, userns, signals):
    h.as_user(NOBODY, allocate(userns(NOBODY), name='t'))
    h.as_user(NOBODY, allocate(userns(NOBODY), name='s', size=1, flags=h.SELF))
    registered = userns(NOBODY, map_self=True)
    h.as_user(NOBODY, lambda c: c.register('r', registered))
    signals.wait_for(lambda e: len(signals.of('UserNamespaceNew')) == 3, what='three UserNamespaceNew')
    assert sorted(e[3][1] for e in signals.of('UserNamespaceNew')) == ['65534-r', '65534-s', '65534-t']


def test_no_signal_for_a_refused_request(daemon, userns, signals):
    h.expect_error(h.ERROR + 'InvalidSize', NOBODY, allocate(userns(NOBODY), size=3))
    h.expect_error(h.ERROR + 'AlreadyMapped', NOBODY, allocate(userns(NOBODY, map_self=True)))
    h.as_user(NOBODY, allocate(userns(NOBODY), name='ok'))
    signals.wait_for(lambda e: e[1] == 'UserNamespaceNew', what='UserNamespaceNew')
    assert [e[3][1] for e in signals.of('UserNamespaceNew')] == ['65534-ok']


# ---- GetManagedObjects --------------------------------------------------------------

# What sd-bus lists for every object besides its own interfaces, always empty.
STANDARD_INTERFACES = ['org.freedesktop.DBus.Peer', 'org.freedesktop.DBus.Introspectable',
                       'org.freedesktop.DBus.Properties']


def typed(value):
    """A reply as nested lists that keep what plain() drops: every D-Bus
    type, variant level and the order of every dictionary."""
    level = getattr(value, 'variant_level', 0)
    if isinstance(value, dict):
        return (type(value).__name__, str(value.signature), level,
                [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return (type(value).__name__, str(value.signature), level, [typed(v) for v in value])
    return (type(value).__name__, level, value)


def raw_managed_objects(client):
    return client.call(h.MANAGER_PATH, h.OBJECT_MANAGER_IFACE, 'GetManagedObjects')


def raw_get_all(client, path):
    return client.call(path, h.PROPERTIES_IFACE, 'GetAll', 's', (h.USERNS_IFACE,))


def assert_managed_objects_match_get_all(client):
    """Every namespace listed exactly as GetAll shows it; returns the paths."""
    objects = raw_managed_objects(client)
    assert str(objects.signature) == 'oa{sa{sv}}'
    assert sorted(objects) == sorted(e.path for e in client.list())
    for path, interfaces in objects.items():
        assert list(interfaces) == STANDARD_INTERFACES + [h.USERNS_IFACE], path
        for name in STANDARD_INTERFACES:
            assert typed(interfaces[name]) == ('Dictionary', 'sv', 0, []), (path, name)
        assert typed(interfaces[h.USERNS_IFACE]) == typed(raw_get_all(client, path)), path
    return sorted(str(p) for p in objects)


def test_managed_objects_empty(daemon, root):
    objects = raw_managed_objects(root)
    assert objects == {}
    assert str(objects.signature) == 'oa{sa{sv}}'


def test_managed_objects_match_get_all_for_every_kind(daemon, userns, root, tmpfs):
    transient = userns(NOBODY)
    delegated = userns()
    single = userns(NOBODY)
    self_ns = userns(NOBODY)
    registered = userns(NOBODY, map_self=True)
    paths = [h.as_user(NOBODY, allocate(transient, name='t')).path,
             root.allocate('d', delegated).path,
             h.as_user(NOBODY, allocate(single, name='one', size=1)).path,
             h.as_user(NOBODY, allocate(self_ns, name='s', size=1, flags=h.SELF)).path,
             h.as_user(NOBODY, lambda c: c.register('r', registered)).path]
    # Delegations fill the list properties of one of them.
    root.add_mount(delegated, tmpfs().fd)
    root.add_mount(delegated, tmpfs().fd)
    host, tap = root.add_tap(delegated)
    cgroups = h.Cgroups()
    try:
        fd = os.open(cgroups.make('c', user=None), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            leaf = root.add_cgroup(delegated, fd, flags=1)
        finally:
            os.close(fd)
        props = root.namespace_properties(paths[1])
        assert len(props['Mounts']) == 2
        assert props['NetworkInterfaces'] == [host]
        assert props['ControlGroups'] == [leaf]

        assert assert_managed_objects_match_get_all(root) == sorted(paths)
        kinds = {p: root.namespace_properties(p)['Kind'] for p in paths}
        assert sorted(kinds.values()) == ['registered', 'self', 'transient', 'transient', 'transient']
        # Anyone may read them, and sees the same.
        assert h.as_user(NOBODY, lambda c: typed(raw_managed_objects(c))) == typed(raw_managed_objects(root))
    finally:
        os.close(tap)
        delegated.release()
        cgroups.release()


def test_managed_objects_follow_releases(daemon, userns, root):
    kept, gone = userns(NOBODY), userns(NOBODY)
    a = h.as_user(NOBODY, allocate(kept, name='kept'))
    b = h.as_user(NOBODY, allocate(gone, name='gone'))
    assert assert_managed_objects_match_get_all(root) == sorted([a.path, b.path])
    gone.release()
    h.wait_until(lambda: b.path not in raw_managed_objects(root), 5, what='the released namespace to go')
    assert assert_managed_objects_match_get_all(root) == [a.path]


def test_managed_objects_refuses_arguments(daemon, root):
    with pytest.raises(h.BusError) as e:
        root.call(h.MANAGER_PATH, h.OBJECT_MANAGER_IFACE, 'GetManagedObjects', 's', ('x',))
    assert e.value.name == h.DBUS_ERROR + 'InvalidArgs'


def test_managed_objects_only_on_the_manager(daemon, userns, root):
    a = h.as_user(NOBODY, allocate(userns(NOBODY)))
    for path in (h.USERNS_PATH_PREFIX.rstrip('/'), a.path):
        with pytest.raises(h.BusError) as e:
            root.call(path, h.OBJECT_MANAGER_IFACE, 'GetManagedObjects')
        assert e.value.name == h.DBUS_ERROR + 'UnknownMethod'
