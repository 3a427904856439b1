# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restriction=enforce on a machine where the BPF LSM cannot be attached:
transient ids are refused (nothing would keep them off persistent
filesystems), while SELF and registered namespaces, which hand out no
transient ids, still work."""

import pytest

import harness as h
from harness import BLOCK, NOBODY

enforce = pytest.mark.nsresd_config(restriction='enforce')


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
