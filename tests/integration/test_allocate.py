# SPDX-License-Identifier: LGPL-2.1-or-later
"""AllocateUserRange, RegisterUserNamespace, ListUserNamespaces and
GetUserNamespaceByUid doing what the contract says, called the way a client
calls them: an unprivileged user passes an fd of a user namespace it made."""

import os
import re
import time

import pytest

import harness as h
from harness import BLOCK, NOBODY, DAEMON_USER

VALID_FINAL_NAME = re.compile(r'65534-[A-Za-z0-9_][A-Za-z0-9_-]{0,15}')


def allocate_as(user, name, ns, **kwargs):
    return h.as_user(user, lambda c: c.allocate(name, ns, **kwargs))


def register_as(user, name, ns, **kwargs):
    return h.as_user(user, lambda c: c.register(name, ns, **kwargs))


def realtime_usec():
    return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000


def test_transient_range_maps_65536_ids_at_zero(daemon, userns):
    ns = userns(NOBODY)
    a = allocate_as(NOBODY, 'tr', ns)
    assert a.name == '65534-tr'
    assert a.path == f'{h.USERNS_PATH_PREFIX}{ns.id}'
    assert a.uid_start % BLOCK == 0
    assert h.DEFAULT_RANGE_START <= a.uid_start <= h.DEFAULT_RANGE_END - BLOCK + 1
    assert a.gid_start == a.uid_start
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    assert ns.gid_map() == [(0, a.gid_start, BLOCK)]
    # The ids are the namespace's own: dropping groups inside harms nobody.
    assert ns.setgroups() == 'allow'


def test_transient_range_at_a_target(daemon, userns):
    ns = userns(NOBODY)
    a = allocate_as(NOBODY, 'target', ns, target=1000)
    assert ns.uid_map() == [(1000, a.uid_start, BLOCK)]
    assert ns.gid_map() == [(1000, a.gid_start, BLOCK)]


def test_namespace_object_describes_the_allocation(daemon, userns, root):
    ns = userns(NOBODY)
    before = realtime_usec()
    a = allocate_as(NOBODY, 'props', ns, target=10)
    after = realtime_usec()
    props = root.namespace_properties(a.path)
    assert props['Name'] == '65534-props'
    assert props['Owner'] == 65534
    assert props['Id'] == ns.id
    assert props['Inode'] == os.fstat(ns.fd).st_ino
    assert props['UidStart'] == a.uid_start
    assert props['GidStart'] == a.gid_start
    assert props['Size'] == BLOCK
    assert props['Target'] == 10
    assert props['Kind'] == 'transient'
    assert before <= props['Created'] <= after
    assert props['ControlGroups'] == []
    assert props['NetworkInterfaces'] == []
    assert props['Mounts'] == []
    assert props['BpfDelegated'] is False


def test_size_one_transient_comes_from_the_single_pool(daemon, userns, root):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    a = allocate_as(NOBODY, 'one', ns, size=1)
    assert h.SINGLE_RANGE_START <= a.uid_start <= h.SINGLE_RANGE_END
    assert a.gid_start == a.uid_start
    assert ns.uid_map() == [(0, a.uid_start, 1)]
    assert ns.gid_map() == [(0, a.gid_start, 1)]
    assert ns.setgroups() == 'allow'
    props = root.namespace_properties(a.path)
    assert (props['Kind'], props['Size']) == ('transient', 1)
    # Size-1 ids do not come out of the 65536-block pool.
    assert root.manager_property('FreeRanges') == free


def test_allocations_get_disjoint_ranges(daemon, userns):
    big = [allocate_as(NOBODY, f'big{i}', userns(NOBODY)) for i in range(3)]
    small = [allocate_as(NOBODY, f'small{i}', userns(NOBODY), size=1) for i in range(3)]
    assert len({a.uid_start for a in big}) == 3
    assert len({a.uid_start for a in small}) == 3


def test_self_maps_only_the_callers_ids(daemon, userns, root):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    a = allocate_as(NOBODY, 'me', ns, size=1, target=1000, flags=h.SELF)
    assert a.name == '65534-me'
    assert ns.uid_map() == [(1000, 65534, 1)]
    assert ns.gid_map() == [(1000, 65534, 1)]
    # The caller's real ids are mapped: it must not shed its groups.
    assert ns.setgroups() == 'deny'
    props = root.namespace_properties(a.path)
    assert props['Kind'] == 'self'
    assert (props['UidStart'], props['Size'], props['Target']) == (65534, 1, 1000)
    assert root.manager_property('FreeRanges') == free


def test_self_uses_the_callers_primary_group(daemon, userns):
    ns = userns(DAEMON_USER)
    allocate_as(DAEMON_USER, 'me', ns, size=1, flags=h.SELF)
    pw = h.passwd(DAEMON_USER)
    assert ns.uid_map() == [(0, pw.pw_uid, 1)]
    assert ns.gid_map() == [(0, pw.pw_gid, 1)]


def test_map_caller_adds_the_caller_after_the_range(daemon, userns):
    ns = userns(NOBODY)
    a = allocate_as(NOBODY, 'bwrap', ns, flags=h.MAP_CALLER)
    assert ns.uid_map() == [(0, a.uid_start, BLOCK), (BLOCK, 65534, 1)]
    assert ns.gid_map() == [(0, a.gid_start, BLOCK), (BLOCK, 65534, 1)]
    assert ns.setgroups() == 'deny'


def test_map_caller_at_a_target(daemon, userns):
    ns = userns(DAEMON_USER)
    a = allocate_as(DAEMON_USER, 'bwrap', ns, target=100, flags=h.MAP_CALLER)
    assert a.name == '1-bwrap'
    assert ns.uid_map() == [(100, a.uid_start, BLOCK), (100 + BLOCK, 1, 1)]
    assert ns.gid_map() == [(100, a.gid_start, BLOCK), (100 + BLOCK, 1, 1)]


@pytest.mark.parametrize('given', ['with space', 'x' * 40, '-leading-dash', 'dots.and/slash', 'ümlaut'])
def test_mangle_name_turns_a_bad_name_into_a_valid_one(daemon, userns, given):
    a = allocate_as(NOBODY, given, userns(NOBODY), flags=h.MANGLE_NAME)
    assert VALID_FINAL_NAME.fullmatch(a.name), a.name


def test_mangle_name_keeps_a_valid_name(daemon, userns):
    a = allocate_as(NOBODY, 'Fine_name-1', userns(NOBODY), flags=h.MANGLE_NAME)
    assert a.name == '65534-Fine_name-1'


def test_longest_valid_name_is_accepted(daemon, userns):
    a = allocate_as(NOBODY, 'x' * 16, userns(NOBODY))
    assert a.name == '65534-' + 'x' * 16


def test_names_are_prefixed_with_the_owner_uid(daemon, userns):
    a = allocate_as(DAEMON_USER, 'same', userns(DAEMON_USER))
    b = allocate_as(NOBODY, 'same', userns(NOBODY))
    assert (a.name, b.name) == ('1-same', '65534-same')


def test_root_keeps_its_name(daemon, userns, root):
    ns = userns()
    a = root.allocate('plain', ns)
    assert a.name == 'plain'
    assert root.namespace_properties(a.path)['Owner'] == 0
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_root_may_allocate_for_another_users_namespace(daemon, userns, root):
    ns = userns(NOBODY)
    a = root.allocate('for-nobody', ns)
    # The range belongs to whoever owns the namespace.
    assert root.namespace_properties(a.path)['Owner'] == 65534
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_register_accepts_a_self_mapped_namespace(daemon, userns, root):
    ns = userns(NOBODY, map_self=True, inside=1000)
    free = root.manager_property('FreeRanges')
    r = register_as(NOBODY, 'reg', ns)
    assert r.path == f'{h.USERNS_PATH_PREFIX}{ns.id}'
    assert r.name == '65534-reg'
    props = root.namespace_properties(r.path)
    assert props['Kind'] == 'registered'
    assert (props['Owner'], props['Id'], props['Target']) == (65534, ns.id, 1000)
    # Registering changes nothing in the namespace and takes no range.
    assert ns.uid_map() == [(1000, 65534, 1)]
    assert ns.gid_map() == [(1000, 65534, 1)]
    assert root.manager_property('FreeRanges') == free


def test_register_a_namespace_another_user_mapped_to_itself(daemon, userns, root):
    ns = userns(DAEMON_USER, map_self=True, inside=0)
    pw = h.passwd(DAEMON_USER)
    assert ns.uid_map() == [(0, pw.pw_uid, 1)]
    assert ns.gid_map() == [(0, pw.pw_gid, 1)]
    r = register_as(DAEMON_USER, 'mine', ns)
    props = root.namespace_properties(r.path)
    assert (props['Owner'], props['Kind'], props['Target']) == (pw.pw_uid, 'registered', 0)


def test_list_shows_every_kind(daemon, userns, root):
    t_ns, s_ns, r_ns = userns(NOBODY), userns(NOBODY), userns(NOBODY, map_self=True)
    t = allocate_as(NOBODY, 't', t_ns, target=5)
    s = allocate_as(NOBODY, 's', s_ns, size=1, flags=h.SELF)
    r = register_as(NOBODY, 'r', r_ns)
    entries = {e.name: e for e in root.list()}
    assert set(entries) == {'65534-t', '65534-s', '65534-r'}
    assert entries['65534-t'] == h.ListEntry(t.path, '65534-t', t_ns.id, 65534, t.uid_start, BLOCK, 5)
    assert entries['65534-s'][:5] == (s.path, '65534-s', s_ns.id, 65534, 65534)
    assert entries['65534-s'].size == 1
    assert entries['65534-r'][:4] == (r.path, '65534-r', r_ns.id, 65534)


def test_list_is_readable_by_every_user(daemon, userns, root):
    ns = userns()
    root.allocate('roots', ns)
    listed = h.as_user(DAEMON_USER, lambda c: c.list())
    assert [e.name for e in listed] == ['roots']


def test_list_is_empty_without_namespaces(daemon, root):
    assert root.list() == []


@pytest.mark.parametrize('offset', [0, 1, BLOCK // 2, BLOCK - 1])
def test_get_by_uid_finds_the_range(daemon, userns, root, offset):
    a = allocate_as(NOBODY, 'byuid', userns(NOBODY))
    assert root.by_uid(a.uid_start + offset) == a.path
    assert h.as_user(NOBODY, lambda c: c.by_uid(a.uid_start + offset)) == a.path


def test_get_by_uid_finds_a_size_one_range(daemon, userns, root):
    a = allocate_as(NOBODY, 'single', userns(NOBODY), size=1)
    assert root.by_uid(a.uid_start) == a.path


def test_get_by_uid_stops_at_the_range_edges(daemon, userns, root):
    a = allocate_as(NOBODY, 'edges', userns(NOBODY))
    for uid in (a.uid_start - 1, a.uid_start + BLOCK):
        with pytest.raises(h.BusError) as e:
            root.by_uid(uid)
        assert e.value.name == h.ERROR + 'NotRegistered'


@pytest.mark.parametrize('uid', [0, 1000, 65534, h.DEFAULT_RANGE_START, h.DEFAULT_RANGE_END, h.UID_MAX])
def test_get_by_uid_of_an_unallocated_uid(daemon, root, uid):
    with pytest.raises(h.BusError) as e:
        root.by_uid(uid)
    assert e.value.name == h.ERROR + 'NotRegistered'
    assert e.value.message


def test_get_by_uid_never_returns_self_or_registered(daemon, userns, root):
    allocate_as(NOBODY, 'self', userns(NOBODY), size=1, flags=h.SELF)
    register_as(NOBODY, 'reg', userns(NOBODY, map_self=True))
    assert len(root.list()) == 2
    with pytest.raises(h.BusError) as e:
        root.by_uid(65534)
    assert e.value.name == h.ERROR + 'NotRegistered'


def test_registry_file_and_index_entry_per_namespace(daemon, userns):
    assert daemon.registry_files() == []
    a = allocate_as(NOBODY, 'stored', userns(NOBODY))
    assert len(daemon.registry_files()) == 1
    # Listed before the reply: the namespace's ids resolve (NSS) at once.
    assert daemon.index_entries() == [(a.uid_start, BLOCK, a.name)]


@pytest.mark.nsresd_config(allocator={'RangeStart': 524288, 'RangeEnd': 524288 + BLOCK - 1})
def test_a_reused_range_is_listed_under_its_new_name_only(daemon, userns, signals):
    # The index drops a released namespace a little later (rewrites are
    # coalesced); a new namespace given the same range at once must not be
    # listed next to the old name.
    for i in range(5):
        ns = userns(NOBODY)
        a = allocate_as(NOBODY, f'r{i}', ns)
        assert daemon.index_entries() == [(524288, BLOCK, a.name)]
        ns.release()
        signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == a.path, 5,
                         what=f'{a.name} to be released')


def test_index_is_world_readable_and_registry_is_not(daemon, userns):
    allocate_as(NOBODY, 'idx', userns(NOBODY))
    h.wait_until(daemon.index_entries, 2, what='the index')
    assert h.file_mode(daemon.index_path()) & 0o004

    def look(client, index, registry):
        with open(index) as f:
            text = f.read()
        try:
            os.listdir(registry)
            registry_listed = True
        except PermissionError:
            registry_listed = False
        return text, registry_listed

    text, registry_listed = h.as_user(NOBODY, look, str(daemon.index_path()),
                                      str(daemon.state_dir / 'registry'))
    assert '65534-idx' in text
    assert not registry_listed


def test_index_leaves_out_self_and_registered(daemon, userns):
    a = allocate_as(NOBODY, 'shown', userns(NOBODY))
    allocate_as(NOBODY, 'hidden1', userns(NOBODY), size=1, flags=h.SELF)
    register_as(NOBODY, 'hidden2', userns(NOBODY, map_self=True))
    h.wait_until(daemon.index_entries, 2, what='the index')
    time.sleep(0.2)
    assert daemon.index_entries() == [(a.uid_start, BLOCK, a.name)]
