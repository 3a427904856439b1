# SPDX-License-Identifier: LGPL-2.1-or-later
"""Teardown tracking without BPF: NSRESD_FAULT=no-bpf makes the service
behave as if the tracker could not be loaded. It says so
(TeardownTracking=polling) and falls back to a liveness sweep every second,
which proves death with the stored nsfs handle: a namespace is released
within a couple of sweeps of dying, and never while an fd still holds it."""

import signal
import time

import pytest

import harness as h
from harness import BLOCK, NOBODY

NO_BPF = 'no-bpf'
# One sweep period (1 s), plus the time the sweep may have just run, plus
# slack for a loaded machine.
RELEASE_DEADLINE = 2.5

pytestmark = pytest.mark.nsresd_fault(NO_BPF)


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def wait_removed(signals, path, timeout=RELEASE_DEADLINE):
    return signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == path, timeout,
                            what=f'UserNamespaceRemoved for {path}')


def test_tracking_is_reported_as_polling(daemon, root):
    assert root.manager_property('TeardownTracking') == 'polling'
    assert 'polling' in daemon.log()


def test_namespace_released_after_its_last_process_exits(daemon, userns, root, signals):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    a = h.as_user(NOBODY, allocate(ns, name='polled'))
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    assert len(daemon.registry_files()) == 1
    h.wait_until(daemon.index_entries, 2, what='the index entry')

    # Our fd goes first: the holder process is the last reference.
    ns.close_fd()
    ns.end_process()
    exited = time.monotonic()
    event = wait_removed(signals, a.path)
    assert time.monotonic() - exited <= RELEASE_DEADLINE
    assert event[3] == (a.path, '65534-polled', 65534)

    assert not root.object_exists(a.path)
    assert root.list() == []
    assert root.namespace_paths() == []
    assert daemon.registry_files() == []
    props = root.manager_properties()
    assert (props['Namespaces'], props['FreeRanges']) == (0, free)
    h.wait_until(lambda: daemon.index_entries() == [], 2, what='the index entry to go')


@pytest.mark.parametrize('kind', ['self', 'registered'])
def test_other_kinds_are_released(daemon, userns, root, signals, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    ns.release()
    exited = time.monotonic()
    wait_removed(signals, path)
    assert time.monotonic() - exited <= RELEASE_DEADLINE
    assert root.list() == []
    assert daemon.registry_files() == []


def test_a_namespace_held_by_an_fd_is_not_released(daemon, userns, root, signals):
    # No process is left in it: a sweep that judged by /proc would free a
    # range that is still in use.
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='held'))
    ns.end_process()
    time.sleep(RELEASE_DEADLINE + 0.5)
    assert [e.name for e in root.list()] == ['65534-held']
    assert root.object_exists(a.path)
    assert len(daemon.registry_files()) == 1
    assert not signals.of('UserNamespaceRemoved')

    ns.close_fd()
    closed = time.monotonic()
    wait_removed(signals, a.path)
    assert time.monotonic() - closed <= RELEASE_DEADLINE
    assert daemon.registry_files() == []


def test_several_namespaces_dying_in_one_period(daemon, userns, root, signals):
    namespaces = [userns(NOBODY) for _ in range(5)]
    keep = userns(NOBODY)
    paths = [h.as_user(NOBODY, allocate(ns, name=f'n{i}')).path for i, ns in enumerate(namespaces)]
    kept = h.as_user(NOBODY, allocate(keep, name='keep'))
    for ns in namespaces:
        ns.release()
    exited = time.monotonic()
    for path in paths:
        wait_removed(signals, path, timeout=max(0.1, RELEASE_DEADLINE - (time.monotonic() - exited)))
    assert [e.path for e in root.list()] == [kept.path]
    assert len(daemon.registry_files()) == 1


@pytest.mark.nsresd_config(allocator={'RangeStart': 524288, 'RangeEnd': 524288 + 4 * BLOCK - 1})
def test_kill_and_restart_in_polling_mode(daemon, userns, root, signals):
    namespaces = [userns(NOBODY) for _ in range(4)]
    allocations = [h.as_user(NOBODY, allocate(ns, name=f'n{i}')) for i, ns in enumerate(namespaces)]
    assert root.manager_property('FreeRanges') == 0

    assert daemon.kill() == -signal.SIGKILL
    dead = list(zip(namespaces, allocations))[:2]
    alive = list(zip(namespaces, allocations))[2:]
    for ns, _ in dead:
        ns.release()
    # Let the kernel free them (RCU, work queue) while the service is down.
    time.sleep(0.5)
    daemon.start(fault=NO_BPF)
    assert root.manager_property('TeardownTracking') == 'polling'

    survivors = sorted((a.path, a.name, a.uid_start) for _, a in alive)
    h.wait_until(lambda: sorted((e.path, e.name, e.uid_start) for e in root.list()) == survivors,
                 RELEASE_DEADLINE, what='only the survivors to be listed')
    for _, a in dead:
        assert not root.object_exists(a.path)
    for ns, a in alive:
        assert root.namespace_properties(a.path)['Id'] == ns.id
        assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    assert len(daemon.registry_files()) == 2
    assert root.manager_property('FreeRanges') == 2

    # The ranges of the dead are handed out again, and only those.
    fresh = [h.as_user(NOBODY, allocate(userns(NOBODY), name=f'fresh{i}')) for i in range(2)]
    assert sorted(a.uid_start for a in fresh) == sorted(a.uid_start for _, a in dead)
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='more'))

    # And the survivors are still polled after the restart.
    ns, a = alive[0]
    ns.release()
    released = time.monotonic()
    wait_removed(signals, a.path)
    assert time.monotonic() - released <= RELEASE_DEADLINE
    assert not root.object_exists(a.path)
    assert len(daemon.registry_files()) == 3
