# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Restriction= modes on a machine where the BPF LSM cannot be attached.
enforce: transient ids are refused (nothing would keep them off persistent
filesystems) with a message naming the cause and the fixes, while SELF and
registered namespaces, which hand out no transient ids, still work.
permissive: allocates anyway and says so once. off: never loads it and
removes what an earlier run pinned."""

import re

import pytest

import harness as h
from harness import BLOCK, NOBODY

enforce = pytest.mark.nsresd_config(restriction='enforce')
UNAVAILABLE = 'The BPF LSM restriction is unavailable. '
ALLOCATING_WITHOUT = 'allocating transient ranges without the BPF LSM restriction'


def log_lines(daemon, text):
    return [line for line in daemon.log().splitlines() if text in line]


def logged_reason(daemon, mode):
    """Why the daemon said the restriction is unavailable, from its one warning."""
    warnings = log_lines(daemon, UNAVAILABLE)
    assert len(warnings) == 1, warnings
    m = re.search(re.escape(UNAVAILABLE) + r'(.*)\. Restriction=' + mode + ':', warnings[0])
    assert m, warnings[0]
    return m.group(1)


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


@enforce
def test_restriction_is_reported_unavailable(daemon, root):
    assert root.manager_property('Restriction') == 'unavailable'


@enforce
@pytest.mark.parametrize('size,flags', [(BLOCK, 0), (1, 0), (BLOCK, h.MAP_CALLER)])
def test_transient_ranges_are_refused(daemon, userns, root, size, flags):
    ns = userns(NOBODY)
    free = root.manager_property('FreeRanges')
    e = h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(ns, size=size, flags=flags))
    # The message has to tell an admin what to do about it.
    assert 'permissive' in e.message or 'lsm' in e.message.lower()
    assert ns.uid_map() == []
    assert root.list() == []
    assert root.manager_property('FreeRanges') == free
    assert daemon.registry_files() == []


@enforce
def test_transient_ranges_are_refused_for_root(daemon, userns, root):
    with pytest.raises(h.BusError) as e:
        root.allocate('root', userns())
    assert e.value.name == h.ERROR + 'NotSupported'


@enforce
def test_self_still_works(daemon, userns, root):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='me', size=1, flags=h.SELF))
    assert ns.uid_map() == [(0, 65534, 1)]
    assert root.namespace_properties(a.path)['Kind'] == 'self'


@enforce
def test_register_still_works(daemon, userns, root):
    ns = userns(NOBODY, map_self=True)
    r = h.as_user(NOBODY, lambda c: c.register('reg', ns))
    assert root.namespace_properties(r.path)['Kind'] == 'registered'


def test_permissive_allocates_without_the_lsm(daemon, userns, root):
    assert root.manager_property('Restriction') == 'unavailable'
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns))
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


@enforce
def test_refusal_names_the_cause_and_the_fixes(daemon, userns, root):
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(ns))
    reason = logged_reason(daemon, 'enforce')
    assert reason in e.message
    # The kernel side of the fix (this kernel lacks the BPF LSM) ...
    assert 'lsm=' in e.message
    # ... and the configuration side.
    assert 'Restriction=permissive' in e.message
    assert 'SELF' in e.message


@enforce
def test_refusal_leaves_nothing_and_warns_once(daemon, userns, root):
    free = root.manager_property('FreeRanges')
    for i in range(3):
        h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(userns(NOBODY), name=f'r{i}'))
    assert root.manager_property('FreeRanges') == free
    assert root.manager_property('Namespaces') == 0
    assert root.namespace_paths() == []
    assert daemon.registry_files() == []
    assert len(log_lines(daemon, UNAVAILABLE)) == 1
    # Refused before anything was reserved: SELF and Register go on as usual.
    h.as_user(NOBODY, allocate(userns(NOBODY), name='me', size=1, flags=h.SELF))
    mapped = userns(NOBODY, map_self=True)
    h.as_user(NOBODY, lambda c: c.register('reg', mapped))
    assert sorted(e.name for e in root.list()) == ['65534-me', '65534-reg']


@enforce
@pytest.mark.nsresd_fault('no-bpf')
def test_fault_no_bpf_disables_the_restriction(daemon, userns, root):
    assert root.manager_property('Restriction') == 'unavailable'
    assert root.manager_property('TeardownTracking') == 'polling'
    e = h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(userns(NOBODY)))
    assert 'disabled for testing' in e.message
    assert 'disabled for testing' in logged_reason(daemon, 'enforce')


def test_permissive_says_once_that_it_allocates_without_the_lsm(daemon, userns, root):
    reason = logged_reason(daemon, 'permissive')
    assert reason
    assert log_lines(daemon, ALLOCATING_WITHOUT) == []
    for i in range(3):
        a = h.as_user(NOBODY, allocate(userns(NOBODY), name=f'p{i}'))
        assert root.namespace_properties(a.path)['Kind'] == 'transient'
    assert len(log_lines(daemon, ALLOCATING_WITHOUT)) == 1
    assert root.manager_property('Restriction') == 'unavailable'


@pytest.mark.nsresd_config(restriction='off')
def test_off(daemon, userns, root):
    assert root.manager_property('Restriction') == 'off'
    a = h.as_user(NOBODY, allocate(userns(NOBODY)))
    assert root.namespace_properties(a.path)['Kind'] == 'transient'
    # Not loaded, so nothing to warn about.
    assert log_lines(daemon, UNAVAILABLE) == []
    assert log_lines(daemon, ALLOCATING_WITHOUT) == []


@pytest.mark.nsresd_config(restriction='off')
def test_off_removes_what_an_earlier_run_pinned(daemon, root):
    assert daemon.stop() == 0
    # What an earlier version and the current one leave on bpffs.
    pinned = [daemon.bpf_dir / 'restrict-v0', daemon.bpf_dir / 'restrict-v1']
    for d in pinned:
        d.mkdir(parents=True)
    daemon.start()
    assert [d for d in pinned if d.exists()] == []
    assert root.manager_property('Restriction') == 'off'
