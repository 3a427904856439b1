# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restarts and crashes: whatever instant the service dies at, the next start
finds every live namespace with the range it had, releases the ones that died
meanwhile, and never hands out a range twice."""

import json
import os
import signal
import time

import pytest

import harness as h
from harness import BLOCK, NOBODY

FOUR_BLOCKS = {'RangeStart': 524288, 'RangeEnd': 524288 + 4 * BLOCK - 1}
TWO_BLOCKS = {'RangeStart': 524288, 'RangeEnd': 524288 + 2 * BLOCK - 1}
ONE_BLOCK = {'RangeStart': 524288, 'RangeEnd': 524288 + BLOCK - 1}


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def wait_removed(signals, path, timeout=1.0):
    return signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == path, timeout,
                            what=f'UserNamespaceRemoved for {path}')


def wait_dead():
    """Give the kernel time to free namespaces we let go of (RCU, work queue)."""
    time.sleep(0.5)


def test_bpf_objects_are_pinned_in_the_bpf_dir(daemon):
    pins = [p for p in daemon.bpf_dir.rglob('*')]
    assert pins, f'nothing pinned under {daemon.bpf_dir}'


def test_clean_restart_keeps_namespaces(daemon, userns, root, signals):
    namespaces = [userns(NOBODY) for _ in range(3)]
    before = {}
    for i, ns in enumerate(namespaces):
        a = h.as_user(NOBODY, allocate(ns, name=f'n{i}'))
        before[a.path] = root.namespace_properties(a.path)

    assert daemon.stop() == 0
    daemon.start()

    assert sorted(e.path for e in root.list()) == sorted(before)
    for path, props in before.items():
        assert root.namespace_properties(path) == props
    assert root.manager_property('TeardownTracking') == 'bpf'
    # Teardown is tracked after the restart as well.
    namespaces[0].release()
    released = time.monotonic()
    wait_removed(signals, f'{h.USERNS_PATH_PREFIX}{namespaces[0].id}')
    assert time.monotonic() - released <= 1.0


@pytest.mark.nsresd_config(allocator=FOUR_BLOCKS)
def test_kill_with_live_namespaces_some_exiting_meanwhile(daemon, userns, root, signals):
    namespaces = [userns(NOBODY) for _ in range(4)]
    allocations = [h.as_user(NOBODY, allocate(ns, name=f'n{i}')) for i, ns in enumerate(namespaces)]
    assert root.manager_property('FreeRanges') == 0

    assert daemon.kill() == -signal.SIGKILL
    dead, alive = list(zip(namespaces, allocations))[:2], list(zip(namespaces, allocations))[2:]
    for ns, _ in dead:
        ns.release()
    wait_dead()
    daemon.start()

    survivors = {(a.path, a.name, a.uid_start) for _, a in alive}
    h.wait_until(lambda: {(e.path, e.name, e.uid_start) for e in root.list()} == survivors, 1.0,
                 what='only the survivors to be listed')
    for ns, a in alive:
        props = root.namespace_properties(a.path)
        assert (props['UidStart'], props['Size'], props['Id']) == (a.uid_start, BLOCK, ns.id)
        assert root.by_uid(a.uid_start) == a.path
        assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    for _, a in dead:
        assert not root.object_exists(a.path)
    assert len(daemon.registry_files()) == 2
    assert root.manager_property('FreeRanges') == 2

    # The ranges of the dead are handed out again, and only those.
    fresh = [h.as_user(NOBODY, allocate(userns(NOBODY), name=f'new{i}')) for i in range(2)]
    assert sorted(a.uid_start for a in fresh) == sorted(a.uid_start for _, a in dead)
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='more'))

    # And the survivors are still tracked.
    ns, a = alive[0]
    ns.release()
    released = time.monotonic()
    wait_removed(signals, a.path)
    assert time.monotonic() - released <= 1.0


def test_kill_after_every_namespace_exited(daemon, userns, root):
    namespaces = [userns(NOBODY) for _ in range(3)]
    for i, ns in enumerate(namespaces):
        h.as_user(NOBODY, allocate(ns, name=f'n{i}'))
    free = root.manager_property('FreeRanges') + 3
    daemon.kill()
    for ns in namespaces:
        ns.release()
    wait_dead()
    daemon.start()
    h.wait_until(lambda: root.list() == [], 1.0, what='every namespace to be released')
    assert daemon.registry_files() == []
    assert root.manager_property('FreeRanges') == free
    assert root.manager_property('Namespaces') == 0


def test_kill_keeps_self_and_registered_namespaces(daemon, userns, root):
    s, r = userns(NOBODY), userns(NOBODY, map_self=True)
    h.as_user(NOBODY, allocate(s, name='s', size=1, flags=h.SELF))
    h.as_user(NOBODY, lambda c: c.register('r', r))
    daemon.kill()
    daemon.start()
    kinds = {e.name: root.namespace_properties(e.path)['Kind'] for e in root.list()}
    assert kinds == {'65534-s': 'self', '65534-r': 'registered'}


@pytest.mark.nsresd_config(allocator=TWO_BLOCKS)
@pytest.mark.nsresd_fault('kill-after-map:65534-crash')
def test_crash_after_writing_the_maps(daemon, userns, root, signals):
    ns = userns(NOBODY)
    with pytest.raises(h.BusError):
        h.as_user(NOBODY, allocate(ns, name='crash'))
    assert daemon.wait_exit(5) == -signal.SIGKILL
    # The maps were written before the crash: the range is the namespace's.
    maps = ns.uid_map()
    assert len(maps) == 1 and maps[0][0] == 0 and maps[0][2] == BLOCK
    crashed_start = maps[0][1]
    assert ns.gid_map() == [(0, crashed_start, BLOCK)]

    daemon.start()
    path = f'{h.USERNS_PATH_PREFIX}{ns.id}'
    assert [(e.path, e.name, e.uid_start, e.size) for e in root.list()] == \
        [(path, '65534-crash', crashed_start, BLOCK)]
    assert root.namespace_properties(path)['Kind'] == 'transient'
    assert root.by_uid(crashed_start) == path

    # Not handed out again while the namespace lives.
    other = h.as_user(NOBODY, allocate(userns(NOBODY), name='other'))
    assert other.uid_start != crashed_start
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='more'))

    # Released once it dies.
    ns.release()
    wait_removed(signals, path)
    again = h.as_user(NOBODY, allocate(userns(NOBODY), name='again'))
    assert again.uid_start == crashed_start


@pytest.mark.nsresd_config(allocator=ONE_BLOCK)
@pytest.mark.nsresd_fault('kill-after-map:65534-crash')
def test_crash_after_writing_the_maps_namespace_gone_before_restart(daemon, userns, root):
    ns = userns(NOBODY)
    with pytest.raises(h.BusError):
        h.as_user(NOBODY, allocate(ns, name='crash'))
    assert daemon.wait_exit(5) == -signal.SIGKILL
    assert ns.uid_map() != []
    ns.release()
    wait_dead()
    daemon.start()
    h.wait_until(lambda: root.list() == [], 1.0, what='the interrupted allocation to be released')
    assert daemon.registry_files() == []
    assert root.manager_property('FreeRanges') == 1
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='next')).uid_start == 524288


def _retyped(text):
    """Valid JSON, every field there, but the range a string."""
    entry = json.loads(text)
    entry['uid_start'] = str(entry['uid_start'])
    return json.dumps(entry)


def _moved(text):
    """Valid JSON naming another range than the file name does."""
    entry = json.loads(text)
    entry['uid_start'] += BLOCK
    entry['gid_start'] += BLOCK
    return json.dumps(entry)


CORRUPTIONS = {
    'not-json': lambda text: '{"this is": not json',
    'truncated': lambda text: text[:len(text) // 2],
    'empty': lambda text: '',
    'garbage': lambda text: '\x00\x7f\x1b[2J' * 64,
    'not-an-object': lambda text: '[' + text + ']',
    'wrong-types': _retyped,
    'other-range': _moved,
}


@pytest.mark.nsresd_config(allocator=ONE_BLOCK)
@pytest.mark.parametrize('corruption', sorted(CORRUPTIONS))
def test_corrupt_registry_file_keeps_its_range(daemon, userns, root, corruption):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='corrupt'))
    assert daemon.stop() == 0
    [name] = daemon.registry_files()
    path = daemon.state_dir / 'registry' / name
    path.write_text(CORRUPTIONS[corruption](path.read_text()))
    daemon.start()
    quarantine = daemon.state_dir / 'registry' / 'quarantine'
    assert os.listdir(quarantine) == [name]
    assert daemon.registry_files() == []
    # Reported, with the range that stays taken: whether the namespace lives
    # cannot be told, so its range is never handed out again this boot.
    assert f"Registry file '{quarantine / name}' is corrupt; quarantined, range {a.uid_start}+{BLOCK} " \
        'stays reserved' in daemon.log()
    assert root.manager_property('FreeRanges') == 0
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='next'))

    # Nor after the next restart: the quarantined file still holds it.
    daemon.kill()
    daemon.start()
    assert daemon.log().count(f"Registry file '{quarantine / name}' is corrupt") == 2
    assert root.manager_property('FreeRanges') == 0
    h.expect_error(h.ERROR + 'NoRangeAvailable', NOBODY, allocate(userns(NOBODY), name='next'))


@pytest.mark.nsresd_config(allocator=TWO_BLOCKS)
def test_corrupt_registry_file_of_a_single_id_keeps_it(daemon, userns, root):
    ns = userns(NOBODY)
    single = h.as_user(NOBODY, allocate(ns, name='one', size=1))
    assert daemon.stop() == 0
    [name] = daemon.registry_files()
    (daemon.state_dir / 'registry' / name).write_text('')
    daemon.start()
    assert f'range {single.uid_start}+1 stays reserved' in daemon.log()
    for i in range(3):
        other = h.as_user(NOBODY, allocate(userns(NOBODY), name=f'o{i}', size=1))
        assert other.uid_start != single.uid_start


@pytest.mark.nsresd_config(allocator=ONE_BLOCK)
def test_a_namespace_outside_a_changed_pool_is_kept_until_it_dies(daemon, userns, root, signals):
    # The admin moves the pool and restarts: a live namespace whose range is
    # no longer in it is still tracked and published, its uids still found,
    # and its range is released when it dies, not forgotten.
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='moved'))
    assert a.uid_start == ONE_BLOCK['RangeStart']

    assert daemon.stop() == 0
    moved = {'RangeStart': 524288 + 4 * BLOCK, 'RangeEnd': 524288 + 6 * BLOCK - 1}
    daemon.config_path.write_text(h.config_text(allocator=moved))
    daemon.start()

    assert 'outside the configured pools' in daemon.log()
    assert [e.path for e in root.list()] == [a.path]
    assert root.by_uid(a.uid_start + 7) == a.path
    assert root.manager_property('FreeRanges') == 2
    b = h.as_user(NOBODY, allocate(userns(NOBODY), name='new'))
    assert b.uid_start == moved['RangeStart']

    ns.release()
    wait_removed(signals, a.path, timeout=5)
    assert len(daemon.registry_files()) == 1
    assert [e.path for e in root.list()] == [b.path]
    assert 'was not taken' not in daemon.log()
    assert root.manager_property('FreeRanges') == 1
