# SPDX-License-Identifier: LGPL-2.1-or-later
"""When the kernel destroys a namespace, the service lets go of it within a
second: the object and the registry file go, the range is free again, and
UserNamespaceRemoved says so. A namespace that is still referenced (here: by
an open fd, its process gone) is never released."""

import time

import pytest

import harness as h
from harness import BLOCK, NOBODY

RELEASE_DEADLINE = 1.0


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def wait_removed(signals, path, timeout=RELEASE_DEADLINE):
    return signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == path, timeout,
                            what=f'UserNamespaceRemoved for {path}')


def test_teardown_tracking_is_bpf(daemon, root):
    # The machines the tests run on support tp_btf: polling would be a regression.
    assert root.manager_property('TeardownTracking') == 'bpf'


def test_transient_namespace_released_within_a_second(daemon, userns, root, signals):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    a = h.as_user(NOBODY, allocate(ns, name='gone'))
    assert root.manager_property('FreeRanges') == free - 1
    h.wait_until(daemon.index_entries, 2, what='the index entry')

    ns.release()
    exited = time.monotonic()
    event = wait_removed(signals, a.path)
    assert time.monotonic() - exited <= RELEASE_DEADLINE
    assert event[3] == (a.path, '65534-gone', 65534)

    assert not root.object_exists(a.path)
    assert root.list() == []
    assert root.namespace_paths() == []
    assert daemon.registry_files() == []
    props = root.manager_properties()
    assert (props['Namespaces'], props['FreeRanges']) == (0, free)
    h.wait_until(lambda: daemon.index_entries() == [], 2, what='the index entry to go')


@pytest.mark.parametrize('kind', ['size-1', 'self', 'registered', 'map-caller'])
def test_every_kind_is_released(daemon, userns, root, signals, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    ns.release()
    exited = time.monotonic()
    wait_removed(signals, path)
    assert time.monotonic() - exited <= RELEASE_DEADLINE
    assert root.list() == []
    assert daemon.registry_files() == []


def test_open_fd_keeps_the_namespace(daemon, userns, root, signals):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='held'))
    # The process is gone; the namespace lives on through our fd.
    ns.end_process()
    time.sleep(1.5)
    assert [e.name for e in root.list()] == ['65534-held']
    assert root.object_exists(a.path)
    assert not signals.of('UserNamespaceRemoved')

    ns.close_fd()
    closed = time.monotonic()
    wait_removed(signals, a.path)
    assert time.monotonic() - closed <= RELEASE_DEADLINE


def test_process_keeps_the_namespace(daemon, userns, root):
    ns = userns(NOBODY)
    h.as_user(NOBODY, allocate(ns, name='proc'))
    ns.close_fd()
    time.sleep(1.5)
    assert [e.name for e in root.list()] == ['65534-proc']


@pytest.mark.nsresd_config(allocator={'RangeStart': 524288, 'RangeEnd': 589823})
def test_released_range_is_handed_out_again(daemon, userns, root, signals):
    first_ns = userns(NOBODY)
    first = h.as_user(NOBODY, allocate(first_ns, name='first'))
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='second'))
    first_ns.release()
    wait_removed(signals, first.path)
    second_ns = userns(NOBODY)
    second = h.as_user(NOBODY, allocate(second_ns, name='second'))
    assert second.uid_start == first.uid_start
    assert second_ns.uid_map() == [(0, first.uid_start, BLOCK)]


def test_released_name_can_be_used_again(daemon, userns, signals):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='reuse'))
    ns.release()
    wait_removed(signals, a.path)
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='reuse')).name == '65534-reuse'


def test_many_namespaces_exiting_together(daemon, userns, root, signals):
    namespaces = [userns(NOBODY) for _ in range(20)]

    def allocate_all(client):
        return [client.allocate(f'n{i}', ns).path for i, ns in enumerate(namespaces)]

    paths = h.as_user(NOBODY, allocate_all)
    for ns in namespaces:
        ns.release()
    exited = time.monotonic()
    for path in paths:
        wait_removed(signals, path, timeout=max(0.1, RELEASE_DEADLINE - (time.monotonic() - exited)))
    assert root.list() == []
    assert daemon.registry_files() == []


def test_one_exit_releases_only_that_namespace(daemon, userns, root, signals):
    stay, go = userns(NOBODY), userns(NOBODY)
    kept = h.as_user(NOBODY, allocate(stay, name='stay'))
    gone = h.as_user(NOBODY, allocate(go, name='go'))
    go.release()
    wait_removed(signals, gone.path)
    time.sleep(0.2)
    assert [e.name for e in root.list()] == ['65534-stay']
    assert root.by_uid(kept.uid_start) == kept.path
    assert len(signals.of('UserNamespaceRemoved')) == 1
