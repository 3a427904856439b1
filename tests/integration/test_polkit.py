# SPDX-License-Identifier: LGPL-2.1-or-later
"""Authorization: polkit decides for unprivileged callers, asked anew on every
call and asynchronously; a denial leaves no trace; acting on someone else's
namespace needs the 'manage' action; the bus policy lets only root own the
service's name; a polkit that hangs (PolkitTimeoutSec=) or goes away fails
its calls with AccessDenied saying so, gives back what they reserved, and
holds up no one else."""

import os
import signal
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


# ---- a polkit that hangs or goes away ---------------------------------------------------

POLKIT_TIMEOUT = 2


def config_with_polkit_timeout(seconds, allocator=None):
    # config_text() ends with the [Security] section.
    return h.config_text(allocator=allocator) + f'PolkitTimeoutSec={seconds}\n'


def test_a_hung_polkit_check_times_out_and_gives_everything_back(daemon_factory, polkit, userns, root):
    # Two namespaces per owner: the registration below takes one, so the
    # retry at the end only fits if the hung call's slot came back.
    d = daemon_factory(config=config_with_polkit_timeout(POLKIT_TIMEOUT, allocator={'MaxNamespacesPerOwner': 2}))
    free = root.manager_property('FreeRanges')
    polkit.hang_actions(h.ACTION_ALLOCATE)
    ns = userns(NOBODY)
    start = time.monotonic()
    call = h.spawn_as_user(NOBODY, allocate(ns, name='hung'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')

        # Meanwhile others are answered: root (never asked), and the same
        # user with a call whose check does not hang.
        other = root.allocate('root-ns', userns(), timeout=10)
        registered = h.as_user(NOBODY, register(userns(NOBODY, map_self=True), name='other'), timeout=10)
        assert time.monotonic() - start < POLKIT_TIMEOUT * h.DAEMON_SLOWDOWN

        with pytest.raises(h.BusError) as caught:
            call.result(timeout=30)
    finally:
        call.kill()
    waited = time.monotonic() - start
    assert caught.value.name == ACCESS_DENIED
    assert f'polkit did not answer within {POLKIT_TIMEOUT} s' in caught.value.message
    assert 'allocate a user namespace range' in caught.value.message
    assert POLKIT_TIMEOUT - 0.5 <= waited < POLKIT_TIMEOUT + 5 * h.DAEMON_SLOWDOWN

    # Nothing of the timed-out call was kept.
    assert ns.uid_map() == []
    assert sorted(e.name for e in root.list()) == sorted([other.name, registered.name])
    assert len(d.registry_files()) == 2
    assert root.manager_property('FreeRanges') == free - 1

    # polkit recovers: the late answer to the old check changes nothing, new
    # checks are answered, and the name and quota slot are free again.
    polkit.hang_actions()
    polkit.release()
    a = h.as_user(NOBODY, allocate(ns, name='hung'), timeout=10)
    assert a.name == '65534-hung'
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    assert sorted(e.name for e in root.list()) == sorted([other.name, registered.name, a.name])


def test_a_timed_out_check_is_counted_once(daemon_factory, polkit, userns, root):
    d = daemon_factory(config=config_with_polkit_timeout(1))
    polkit.hang()
    for name in ('one', 'two'):
        e = h.expect_error(ACCESS_DENIED, NOBODY, allocate(userns(NOBODY), name=name), timeout=30)
        assert 'polkit did not answer within 1 s' in e.message
    polkit.release()
    # The in-flight count of the caller went back to zero each time: a
    # leak would show as TooManyRequests long before the limit of 32.
    for i in range(3):
        h.as_user(NOBODY, allocate(userns(NOBODY), name=f'after{i}'), timeout=10)
    assert len(root.list()) == 3
    assert d.running


def test_polkit_going_away_mid_call_fails_the_call_at_once(daemon_factory, environment, polkit, userns, root):
    # A timeout far away: the call must end with polkit, not with it.
    daemon_factory(config=config_with_polkit_timeout(60))
    polkit.hang()
    ns = userns(NOBODY)
    call = h.spawn_as_user(NOBODY, allocate(ns, name='orphan'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
        start = time.monotonic()
        os.kill(polkit.process.pid, signal.SIGKILL)
        with pytest.raises(h.BusError) as caught:
            call.result(timeout=30)
    finally:
        call.kill()
    assert time.monotonic() - start < 5 * h.DAEMON_SLOWDOWN
    assert caught.value.name == ACCESS_DENIED
    assert 'polkit went away without answering' in caught.value.message
    assert ns.uid_map() == []
    assert root.list() == []

    # With no polkit at all a call fails at once, saying so; root is not
    # asked and goes on.
    e = h.expect_error(ACCESS_DENIED, NOBODY, allocate(ns, name='orphan'), timeout=30)
    assert 'polkit is not running' in e.message
    assert root.allocate('root-ns', userns(), timeout=10).name == 'root-ns'

    # polkit comes back: the same call works, on the same daemon.
    log = environment.logs / 'polkit-restarted.log'
    again = h.PolkitMock(environment, log)
    try:
        a = h.as_user(NOBODY, allocate(ns, name='orphan'), timeout=10)
    finally:
        again.stop()
    assert a.name == '65534-orphan'
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
