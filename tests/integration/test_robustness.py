# SPDX-License-Identifier: LGPL-2.1-or-later
"""Requests that lose their caller, their namespace, their polkit or their
daemon half-way: nothing leaks, nothing is handed out twice, and access is
never granted by accident."""

import time

import pytest

import harness as h
from harness import BLOCK, NOBODY


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def wait_clean(daemon, root, free, timeout=2.0):
    h.wait_until(lambda: root.list() == [] and root.manager_property('Namespaces') == 0, timeout,
                 what='every namespace to be released')
    assert daemon.registry_files() == []
    assert root.manager_property('FreeRanges') == free


@pytest.mark.nsresd_config(allocator={'MaxNamespacesPerOwner': 1})
def test_caller_gone_while_polkit_decides(daemon, polkit, userns, root):
    free = root.manager_property('FreeRanges')
    ns = userns(NOBODY)
    polkit.hang()
    call = h.spawn_as_user(NOBODY, allocate(ns, name='gone'))
    h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
    call.kill()
    polkit.hang(False)
    polkit.release()
    time.sleep(0.3)
    ns.release()
    wait_clean(daemon, root, free)
    # Name and quota slot are free again.
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='gone')).name == '65534-gone'


def test_namespace_and_caller_gone_while_polkit_decides(daemon, polkit, userns, root):
    free = root.manager_property('FreeRanges')
    ns = userns(NOBODY, hold_process=False)
    polkit.hang()
    call = h.spawn_as_user(NOBODY, allocate(ns, name='orphan'))
    h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
    # From here on only the service's own copy of the fd, if any, holds it.
    ns.release()
    call.kill()
    polkit.hang(False)
    polkit.release()
    # Before the answer reaches the service everything looks clean already:
    # wait until it published the namespace or failed the call.
    h.wait_until(lambda: '65534-orphan' in daemon.log(), 5, what="the service to act on polkit's answer")
    wait_clean(daemon, root, free)


def test_stop_with_a_request_in_flight(daemon, polkit, userns, root):
    ns = userns(NOBODY)
    polkit.hang()
    call = h.spawn_as_user(NOBODY, allocate(ns, name='inflight'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
        assert daemon.stop() == 0
        with pytest.raises(h.BusError):
            call.result(timeout=30)
    finally:
        call.kill()
    assert ns.uid_map() == []
    assert daemon.registry_files() == []
    polkit.hang(False)
    daemon.start()
    assert root.list() == []
    a = h.as_user(NOBODY, allocate(ns, name='inflight'))
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_polkit_gone_means_no_access(daemon, polkit, userns, root):
    polkit.stop()
    ns = userns(NOBODY)
    start = time.monotonic()
    e = h.expect_error(h.DBUS_ERROR + 'AccessDenied', NOBODY, allocate(ns), timeout=60)
    assert time.monotonic() - start < 30
    assert e.message
    assert ns.uid_map() == []
    assert root.list() == []
    # Root does not need polkit.
    assert root.allocate('root', userns()).name == 'root'


def test_kill_with_a_request_in_flight(daemon, polkit, userns, root):
    ns = userns(NOBODY)
    polkit.hang()
    call = h.spawn_as_user(NOBODY, allocate(ns, name='inflight'))
    try:
        h.wait_until(polkit.has_hanging_calls, 5, what='the allocation to reach polkit')
        daemon.kill()
        with pytest.raises(h.BusError):
            call.result(timeout=30)
    finally:
        call.kill()
    polkit.hang(False)
    daemon.start()
    # Nothing was written before polkit answered: nothing to keep.
    assert root.list() == []
    assert daemon.registry_files() == []
    assert ns.uid_map() == []
    assert h.as_user(NOBODY, allocate(ns, name='inflight')).name == '65534-inflight'
