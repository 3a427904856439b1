# SPDX-License-Identifier: LGPL-2.1-or-later
"""DelegateBpf as the service keeps it: polkit is asked with what is
delegated, every delegation is recorded before the caller gets the file
system and survives a restart, the per-namespace limit holds with calls in
flight, and what fails leaves no record. (What the sandbox can do with the
file system is in test_bpf_token.py.)"""

import ctypes
import fcntl
import json
import os
import stat

import pytest

import harness as h
from harness import NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
LIMITS_EXCEEDED = h.DBUS_ERROR + 'LimitsExceeded'
BPF_FS_MAGIC = 0xcafe4a11
ALLOWED = (h.ACTION_ALLOCATE, h.ACTION_DELEGATE_BPF)
_libc = ctypes.CDLL(None, use_errno=True)


def published(userns, name='b'):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, lambda c: c.allocate(name, ns))
    return ns, a


def registry_entry(daemon, ns):
    [name] = [n for n in daemon.registry_files() if n.startswith(f'{ns.id}-')]
    return json.loads((daemon.state_dir / 'registry' / name).read_text())


def delegate(ns, **kwargs):
    def call(client):
        fd = client.delegate_bpf(ns, **kwargs)
        try:
            st = os.fstat(fd)
            return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), os.fstatvfs(fd).f_fsid
        finally:
            os.close(fd)
    return call


def bpf_checks(polkit):
    """The CheckAuthorization calls polkit got for delegate-bpf."""
    return [line for line in polkit.log().splitlines()
            if 'CheckAuthorization' in line and h.ACTION_DELEGATE_BPF in line]


def test_the_owner_delegates_with_polkit(daemon, polkit, userns, root):
    ns, a = published(userns)
    polkit.allow(*ALLOWED)
    uid, gid, _, _ = h.as_user(NOBODY, delegate(ns, cmds=['map_create', 'prog_load'], maps=['array'],
                                                progs=['any'], attachs=[]))
    # The file system's root is the namespace's first ids, not the host's root.
    assert (uid, gid) == (a.uid_start, a.gid_start)
    assert root.namespace_properties(a.path)['BpfDelegated'] is True
    # polkit saw what is delegated, in the kernel's words.
    checks = bpf_checks(polkit)
    assert len(checks) == 1
    for detail in ('"name": "65534-b"', '"kind": "transient"', '"cmds": "map_create:prog_load"',
                   '"maps": "array"', '"progs": "any"', '"attachs": ""'):
        assert detail in checks[-1], checks[-1]
    # Recorded, and said in the log.
    bpf = registry_entry(daemon, ns)['bpf']
    assert bpf == {'delegations': 1, 'cmds': str((1 << 0) | (1 << 5)), 'maps': str(1 << 2),
                   'progs': str(2**64 - 1), 'attachs': '0'}
    assert "BPF delegated to '65534-b'" in daemon.log()
    assert 'cmds=map_create:prog_load maps=array progs=any attachs=' in daemon.log()


class StatFs(ctypes.Structure):
    _fields_ = [('f_type', ctypes.c_long), ('rest', ctypes.c_long * 15)]


def test_what_comes_back_is_a_bpffs_mount(daemon, userns, root):
    ns, a = published(userns)
    fd = root.delegate_bpf(ns)
    try:
        sfs = StatFs()
        assert _libc.fstatfs(fd, ctypes.byref(sfs)) == 0
        assert sfs.f_type & 0xffffffff == BPF_FS_MAGIC
        # fsmount() gives an O_PATH fd of the mount's root, attached nowhere.
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH
    finally:
        os.close(fd)


def test_denied_by_polkit_leaves_no_record(daemon, polkit, userns, root):
    ns, a = published(userns)
    # The defaults grant allocations, not BPF.
    e = h.expect_error(ACCESS_DENIED, NOBODY, delegate(ns))
    assert 'load BPF programs' in e.message
    assert root.namespace_properties(a.path)['BpfDelegated'] is False
    assert 'bpf' not in registry_entry(daemon, ns)


def test_kept_across_a_restart(daemon, userns, root):
    ns, a = published(userns)
    os.close(root.delegate_bpf(ns, cmds=['any'], maps=[], progs=[], attachs=[]))
    os.close(root.delegate_bpf(ns, cmds=['map_create'], maps=['hash'], progs=[], attachs=[]))
    assert daemon.stop() == 0
    daemon.start()
    assert root.namespace_properties(a.path)['BpfDelegated'] is True
    assert registry_entry(daemon, ns)['bpf']['delegations'] == 2


@pytest.mark.nsresd_config(delegation={'MaxBpfDelegations': 2})
def test_the_limit_counts_calls_in_flight(daemon, polkit, userns, root):
    ns, a = published(userns)
    polkit.allow(*ALLOWED)
    # Held back by polkit, both take a slot: the third is refused at once.
    polkit.hang_actions(h.ACTION_DELEGATE_BPF)
    calls = [h.spawn_as_user(NOBODY, delegate(ns)) for _ in range(2)]
    try:
        h.wait_until(lambda: len(bpf_checks(polkit)) >= 2, 5, what='both calls to reach polkit')
        e = h.expect_error(LIMITS_EXCEEDED, NOBODY, delegate(ns))
        assert 'the limit is 2' in e.message
        polkit.release()
        for call in calls:
            assert call.result(10)[0] == a.uid_start
    finally:
        for call in calls:
            call.kill()
    assert registry_entry(daemon, ns)['bpf']['delegations'] == 2
    # And once both are recorded.
    h.expect_error(LIMITS_EXCEEDED, NOBODY, delegate(ns))
