# SPDX-License-Identifier: LGPL-2.1-or-later
"""Authorization: polkit decides for unprivileged callers, asked anew on every
call and asynchronously; a denial leaves no trace; acting on someone else's
namespace needs the 'manage' action; the bus policy lets only root own the
service's name."""

import time

import pytest

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
INTERACTIVE = h.DBUS_ERROR + 'InteractiveAuthorizationRequired'


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def register(ns, name='x', **kwargs):
    return lambda c: c.register(name, ns, **kwargs)


def test_denied_allocation(daemon, polkit, userns, root):
    polkit.deny_all()
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    e = h.expect_error(ACCESS_DENIED, NOBODY, allocate(ns))
    assert e.message
    assert ns.uid_map() == []
    assert root.list() == []
    assert daemon.registry_files() == []
    assert root.manager_property('FreeRanges') == free


def test_denied_registration(daemon, polkit, userns, root):
    polkit.allow(h.ACTION_ALLOCATE)
    h.expect_error(ACCESS_DENIED, NOBODY, register(userns(NOBODY, map_self=True)))
    assert root.list() == []


def test_allocation_allowed_but_registration_denied_is_per_action(daemon, polkit, userns):
    polkit.allow(h.ACTION_REGISTER)
    h.expect_error(ACCESS_DENIED, NOBODY, allocate(userns(NOBODY)))
    assert h.as_user(NOBODY, register(userns(NOBODY, map_self=True))).name == '65534-x'


@pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 1})
def test_denial_releases_every_reservation(daemon, polkit, userns, root):
    ns = userns(NOBODY)
    polkit.deny_all()
    h.expect_error(ACCESS_DENIED, NOBODY, allocate(ns, name='again'))
    polkit.allow_defaults()
    # Same namespace, same name, and the only quota slot: all were given back.
    a = h.as_user(NOBODY, allocate(ns, name='again'))
    assert a.name == '65534-again'
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_challenge_without_interaction(daemon, polkit, userns, root):
    polkit.challenge()
    ns = userns(NOBODY)
    e = h.expect_error(INTERACTIVE, NOBODY, allocate(ns))
    assert e.message
    assert ns.uid_map() == []
    assert root.list() == []


def test_challenge_on_registration(daemon, polkit, userns, root):
    polkit.challenge()
    h.expect_error(INTERACTIVE, NOBODY, register(userns(NOBODY, map_self=True)))
    assert root.list() == []


def test_answers_are_not_cached(daemon, polkit, userns):
    polkit.deny_all()
    h.expect_error(ACCESS_DENIED, NOBODY, allocate(userns(NOBODY), name='a'))
    polkit.allow_defaults()
    h.as_user(NOBODY, allocate(userns(NOBODY), name='b'))
    polkit.deny_all()
    h.expect_error(ACCESS_DENIED, NOBODY, allocate(userns(NOBODY), name='c'))


def test_root_is_not_asked(daemon, polkit, userns, root):
    # Were polkit asked, the call would hang until the client's timeout.
    polkit.deny_all()
    polkit.hang()
    start = time.monotonic()
    a = root.allocate('root-ns', userns(), timeout=10)
    assert time.monotonic() - start < 2
    assert a.name == 'root-ns'
    assert not polkit.has_hanging_calls()


def test_another_users_namespace_without_manage(daemon, polkit, userns, root):
    ns = userns(NOBODY)
    h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, allocate(ns))
    assert ns.uid_map() == []


def test_another_users_namespace_with_manage(daemon, polkit, userns, root):
    polkit.allow(h.ACTION_ALLOCATE, h.ACTION_REGISTER, h.ACTION_MANAGE)
    ns = userns(NOBODY)
    a = h.as_user(DAEMON_USER, allocate(ns, name='managed'))
    props = root.namespace_properties(a.path)
    assert props['Owner'] == 65534
    assert a.name == '65534-managed'
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_manage_alone_does_not_allow_own_allocations(daemon, polkit, userns):
    polkit.allow(h.ACTION_MANAGE)
    h.expect_error(ACCESS_DENIED, NOBODY, allocate(userns(NOBODY)))


def test_pending_polkit_check_does_not_block_other_calls(daemon, polkit, userns, root):
    polkit.hang_actions(h.ACTION_REGISTER)
    held = userns(NOBODY, map_self=True)
    call = h.spawn_as_user(NOBODY, register(held, name='held'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the registration to reach polkit')
        start = time.monotonic()
        a = h.as_user(NOBODY, allocate(userns(NOBODY), name='other'), timeout=10)
        assert time.monotonic() - start < 2
        assert [e.name for e in root.list()] == [a.name]
        polkit.release()
        assert call.result(timeout=10).name == '65534-held'
    finally:
        call.kill()
    assert sorted(e.name for e in root.list()) == ['65534-held', '65534-other']


def test_a_hung_polkit_check_can_complete_later(daemon, polkit, userns, root):
    polkit.hang()
    ns = userns(NOBODY)
    call = h.spawn_as_user(NOBODY, allocate(ns, name='late'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
        # Nothing is published before polkit said yes.
        assert root.list() == []
        assert ns.uid_map() == []
        polkit.release()
        a = call.result(timeout=10)
    finally:
        call.kill()
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_only_root_may_own_the_service_name(daemon):
    def take_name(client):
        return client.bus.request_name('org.freedesktop.NamespaceResource1')

    h.expect_error(ACCESS_DENIED, NOBODY, take_name)


def test_properties_are_read_only_for_users(daemon, root):
    def set_property(client):
        return client.call(h.MANAGER_PATH, h.PROPERTIES_IFACE, 'Set', 'ssv',
                           (h.MANAGER_IFACE, 'RangeStart', h.dbus.UInt32(0, variant_level=1)))

    with pytest.raises(h.BusError):
        h.as_user(NOBODY, set_property)
    assert root.manager_property('RangeStart') == h.DEFAULT_RANGE_START
