# SPDX-License-Identifier: LGPL-2.1-or-later
"""Limits hold under pressure: per-owner quota and in-flight caps even with
hundreds of calls at once (reservations are made before the asynchronous
polkit check), pool exhaustion, a map-writing helper stopped by its caller,
and a thousand allocate/exit cycles that leave nothing behind."""

import time

import pytest

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

TOO_MANY_NAMESPACES = h.ERROR + 'TooManyNamespaces'
TINY_POOL = {'RangeStart': 524288, 'RangeEnd': 655359}      # two blocks
TINY_SINGLE_POOL = {'SingleRangeStart': 61184, 'SingleRangeEnd': 61185}
PARALLEL_LIMITS = {'MaxNamespacesPerOwner': 256, 'MaxRequestsPerOwner': 512}


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def release_all(namespaces):
    for ns in namespaces:
        ns.release()


def wait_empty(root, daemon, timeout=10):
    h.wait_until(lambda: root.manager_property('Namespaces') == 0, timeout, 0.05,
                 what='every namespace to be released')
    assert root.list() == []
    assert daemon.registry_files() == []


def parallel_allocations(userns, count, size=BLOCK):
    # Only our fds hold these namespaces: no process per namespace.
    namespaces = [userns(NOBODY, hold_process=False) for _ in range(count)]
    requests = [('allocate', (f'p{i}', ns.fd, size, 0, 0)) for i, ns in enumerate(namespaces)]
    return namespaces, requests


def outcomes(results):
    ok = [r for r in results if r['outcome'] == 'ok']
    errors = [r['value'] for r in results if r['outcome'] == 'error']
    return ok, errors


@pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 2})
def test_per_owner_limit(daemon, userns, root):
    kept = [userns(NOBODY) for _ in range(2)]
    for i, ns in enumerate(kept):
        h.as_user(NOBODY, allocate(ns, name=f'n{i}'))
    extra = userns(NOBODY)
    e = h.expect_error(TOO_MANY_NAMESPACES, NOBODY, allocate(extra, name='n2'))
    assert e.message
    assert extra.uid_map() == []
    # SELF namespaces count too: they are namespaces the owner holds.
    h.expect_error(TOO_MANY_NAMESPACES, NOBODY, allocate(userns(NOBODY), name='s', size=1, flags=h.SELF))
    # The limit is per owner.
    h.as_user(DAEMON_USER, allocate(userns(DAEMON_USER), name='other'))
    assert len(root.list()) == 3


@pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 1})
def test_per_owner_limit_frees_up_on_release(daemon, userns, root, signals):
    first = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(first, name='first'))
    h.expect_error(TOO_MANY_NAMESPACES, NOBODY, allocate(userns(NOBODY), name='second'))
    first.release()
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == a.path, 2,
                     what='the first namespace to be released')
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='second')).name == '65534-second'


@pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 1})
def test_refused_request_does_not_use_the_quota(daemon, userns, root):
    h.expect_error(h.ERROR + 'AlreadyMapped', NOBODY, allocate(userns(NOBODY, map_self=True), name='a'))
    h.expect_error(h.ERROR + 'InvalidSize', NOBODY, allocate(userns(NOBODY), name='b', size=7))
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='c')).name == '65534-c'


@pytest.mark.nsresd_config(allocator=TINY_POOL)
def test_pool_exhausted(daemon, userns, root):
    got = [h.as_user(NOBODY, allocate(userns(NOBODY), name=f'n{i}')) for i in range(2)]
    assert sorted(a.uid_start for a in got) == [524288, 524288 + BLOCK]
    assert root.manager_property('FreeRanges') == 0
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(ns, name='n2'))
    assert e.message
    assert ns.uid_map() == []
    assert len(root.list()) == 2
    assert len(daemon.registry_files()) == 2
    # SELF needs no range.
    h.as_user(NOBODY, allocate(userns(NOBODY), name='self', size=1, flags=h.SELF))


@pytest.mark.nsresd_config(allocator=TINY_SINGLE_POOL)
def test_single_id_pool_exhausted(daemon, userns, root):
    got = [h.as_user(NOBODY, allocate(userns(NOBODY), name=f'n{i}', size=1)) for i in range(2)]
    assert sorted(a.uid_start for a in got) == [61184, 61185]
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='n2', size=1))
    # The 65536-block pool is separate.
    h.as_user(NOBODY, allocate(userns(NOBODY), name='big'))


@pytest.mark.nsresd_config(allocator={'MaxRequestsPerOwner': 2})
def test_requests_in_flight_per_owner(daemon, polkit, userns, root):
    polkit.hang()
    namespaces, requests = parallel_allocations(userns, 3)
    results = h.as_user(NOBODY, h.run_parallel, requests, release_polkit_after_errors=1, timeout=30)
    assert [r['outcome'] for r in results] == ['ok', 'ok', 'error'], results
    assert results[2]['value'] == h.ERROR + 'TooManyRequests'
    assert results[2]['message']
    assert results[2]['ok_before'] == 0
    assert len(root.list()) == 2
    # Finished requests no longer count.
    polkit.hang(False)
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='later')).name == '65534-later'


@pytest.mark.nsresd_config(allocator={'MaxRequestsPerOwner': 1})
def test_requests_in_flight_are_counted_per_caller(daemon, polkit, userns, root):
    polkit.hang_actions(h.ACTION_REGISTER)
    held = userns(NOBODY, map_self=True)
    call = h.spawn_as_user(NOBODY, lambda c: c.register('held', held))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the registration to reach polkit')
        h.expect_error(h.ERROR + 'TooManyRequests', NOBODY, allocate(userns(NOBODY), name='second'))
        h.as_user(DAEMON_USER, allocate(userns(DAEMON_USER), name='other'))
        polkit.release()
        assert call.result(10).name == '65534-held'
    finally:
        call.kill()


@pytest.mark.nsresd_config(allocator=PARALLEL_LIMITS)
def test_300_parallel_calls_respect_the_per_owner_limit(daemon, userns, root):
    namespaces, requests = parallel_allocations(userns, 300)
    results = h.as_user(NOBODY, h.run_parallel, requests, timeout=180)
    ok, errors = outcomes(results)
    assert len(ok) == 256, errors[:5]
    assert errors == [TOO_MANY_NAMESPACES] * 44
    assert root.manager_property('Namespaces') == 256
    assert len({e.uid_start for e in root.list()}) == 256
    assert len(daemon.registry_files()) == 256
    release_all(namespaces)
    wait_empty(root, daemon)


@pytest.mark.nsresd_config(allocator=PARALLEL_LIMITS)
def test_300_parallel_calls_with_slow_polkit(daemon, polkit, userns, root):
    # Every check takes a while: the quota has to be held across it.
    polkit.delay(0.02)
    namespaces, requests = parallel_allocations(userns, 300)
    results = h.as_user(NOBODY, h.run_parallel, requests, timeout=180)
    ok, errors = outcomes(results)
    assert len(ok) == 256, errors[:5]
    assert errors == [TOO_MANY_NAMESPACES] * 44
    assert root.manager_property('Namespaces') == 256
    release_all(namespaces)
    wait_empty(root, daemon)


@pytest.mark.nsresd_config(allocator=PARALLEL_LIMITS)
def test_300_parallel_calls_refused_before_polkit_answers(daemon, polkit, userns, root):
    # polkit answers nothing until every refusal has arrived: the refusals
    # can only come from reservations made before asking it.
    polkit.hang()
    namespaces, requests = parallel_allocations(userns, 300)
    results = h.as_user(NOBODY, h.run_parallel, requests, release_polkit_after_errors=44, timeout=180)
    ok, errors = outcomes(results)
    assert len(ok) == 256, errors[:5]
    assert errors == [TOO_MANY_NAMESPACES] * 44
    assert all(r['ok_before'] == 0 for r in results if r['outcome'] == 'error')
    release_all(namespaces)
    wait_empty(root, daemon)


def test_callers_within_their_limits_are_not_refused_on_a_stock_bus(environment, attach_log):
    # dbus-daemon lets one connection wait for at most 128 replies on the
    # system bus (Debian 12 keeps that default). Two users with 100 requests
    # each stay within their own limit; the service has to keep its polkit
    # checks within the bus' limit or refuse explicitly, not deny access.
    bus = h.Environment(raised_limits=False, primary=False)
    polkit = daemon = None
    calls, namespaces = [], []
    try:
        bus.start()
        polkit_log = environment.logs / 'polkit-stock-bus.log'
        attach_log(polkit_log)
        polkit = h.PolkitMock(bus, polkit_log)
        daemon = h.Daemon(bus, 'stock-bus', h.config_text({'MaxRequestsPerOwner': 100}))
        # Kept with the session's logs: this bus' directory is gone by the report.
        daemon.log_path = environment.logs / 'nsresd-stock-bus.log'
        attach_log(daemon.log_path)
        daemon.start()
        polkit.hang()
        for user in (NOBODY, DAEMON_USER):
            mine = [h.make_userns(user, hold_process=False) for _ in range(100)]
            namespaces += mine
            requests = [('allocate', (f'n{i}', ns.fd, BLOCK, 0, 0)) for i, ns in enumerate(mine)]
            calls.append(h.spawn_as_user(user, h.run_parallel, requests, timeout=60))
        time.sleep(2)
        polkit.release()
        errors = []
        for call in calls:
            errors += [(r['value'], r['message']) for r in call.result(120) if r['outcome'] == 'error']
        assert all(name == h.ERROR + 'TooManyRequests' for name, _ in errors), \
            f'{len(errors)} of 200 refused, e.g. {errors[:1]}'
    finally:
        for call in calls:
            call.kill()
        release_all(namespaces)
        if daemon:
            daemon.stop()
            daemon.cleanup()
        if polkit:
            polkit.stop()
        bus.close()


@pytest.mark.nsresd_fault('helper-stop:65534-stuck')
def test_stopped_helper_does_not_stall_the_service(daemon, userns, root):
    stuck = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    started = time.monotonic()
    call = h.spawn_as_user(NOBODY, lambda c: c.allocate('stuck', stuck, timeout=60))
    try:
        # Other calls go through while the stopped helper is waited for.
        others = []
        for i in range(5):
            ns = userns()
            t = time.monotonic()
            others.append(root.allocate(f'other{i}', ns, timeout=10))
            assert time.monotonic() - t < 1.0
            assert ns.uid_map() == [(0, others[-1].uid_start, BLOCK)]
        assert time.monotonic() - started < 4.5
        with pytest.raises(h.BusError) as e:
            call.result(timeout=30)
    finally:
        call.kill()
    took = time.monotonic() - started
    assert 4.5 <= took < 15, took
    assert e.value.message
    # Nothing of the failed request is left: no object, file, range or helper.
    assert stuck.uid_map() == []
    assert sorted(x.name for x in root.list()) == [f'other{i}' for i in range(5)]
    assert len(daemon.registry_files()) == 5
    assert root.manager_property('FreeRanges') == free - 5
    h.wait_until(lambda: daemon.children() == [], 5, what='the stopped helper to be reaped')
    # The same namespace can be allocated afterwards.
    a = h.as_user(NOBODY, allocate(stuck, name='unstuck'))
    assert stuck.uid_map() == [(0, a.uid_start, BLOCK)]


def allocate_and_exit(client, count):
    for i in range(count):
        ns = h.make_userns()
        try:
            client.allocate(f'c{i}', ns)
        finally:
            ns.release()
    return count


def test_thousand_allocate_exit_cycles_leave_nothing(daemon, userns, root):
    # One full cycle first: whatever the service opens once and keeps is
    # not a leak.
    assert h.as_user(NOBODY, allocate_and_exit, 1) == 1
    wait_empty(root, daemon)
    h.wait_until(lambda: daemon.children() == [], 5, what='helpers to be reaped')
    fds = daemon.fd_count()
    objects = root.namespace_paths()
    free = root.manager_property('FreeRanges')

    assert h.as_user(NOBODY, allocate_and_exit, 1000, timeout=600) == 1000

    wait_empty(root, daemon, timeout=20)
    assert root.namespace_paths() == objects == []
    assert root.manager_property('FreeRanges') == free
    h.wait_until(lambda: daemon.children() == [], 5, what='helpers to be reaped')
    h.wait_until(lambda: daemon.fd_count() == fds, 5,
                 what=f'the fd count to return to {fds} (now {daemon.fd_count()})')
    # The NSS index is rewritten a few ms after the last change.
    h.wait_until(lambda: daemon.index_entries() == [], 2, what='the NSS index to be empty')
