# SPDX-License-Identifier: LGPL-2.1-or-later
"""DelegateBpf and `nsresctl run --bpf-token`: a namespace with a transient
range gets a bpffs whose superblock belongs to it, mounted with delegate_*
options, from which its root can create a BPF token. With the token the
sandbox creates maps and loads programs the host would refuse it; the token
covers only what was delegated, and only that namespace can make one.

Sandboxes belong to `nobody`. What bpf() allows inside is asked by
nsresd-bpf-probe (tests/integration/bpf-probe.c), which prints one line
such as `token=ok map=EPERM map+token=ok prog=EPERM prog+token=ok`."""

import os
import shutil
import subprocess

import pytest

import harness as h
from harness import DAEMON_USER, NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
INVALID_ARGS = h.DBUS_ERROR + 'InvalidArgs'
# The shipped defaults, plus delegate-bpf (auth_admin_keep in the policy).
BPF_ALLOWED = (h.ACTION_ALLOCATE, h.ACTION_REGISTER, h.ACTION_DELEGATE_CGROUP, h.ACTION_DELEGATE_NETIF,
               h.ACTION_DELEGATE_BPF)
USER_ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8', 'HOME': '/'}


@pytest.fixture(scope='module', autouse=True)
def bpf_refused_without_a_token():
    # With unprivileged BPF allowed, "without the token" would prove nothing.
    with open('/proc/sys/kernel/unprivileged_bpf_disabled') as f:
        assert f.read().strip() != '0', 'kernel.unprivileged_bpf_disabled=0: BPF needs no token here'


@pytest.fixture(scope='module')
def tools(environment):
    """nsresctl and the probe, copied where every user (and every id of a
    sandbox) can execute them."""
    directory = environment.root / 'bpf-token-tools'
    directory.mkdir(mode=0o755)
    for source in (h.client_binary(), h.build_dir() / 'tests' / 'nsresd-bpf-probe'):
        shutil.copy2(source, directory / source.name)
        (directory / source.name).chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def nsresctl(environment, tools):
    def run(*args, user=NOBODY, pass_fds=()):
        pw = h.passwd(user)
        env = dict(USER_ENV, DBUS_SYSTEM_BUS_ADDRESS=environment.address)
        return subprocess.run([str(tools / 'nsresctl'), *args], capture_output=True, text=True, timeout=30,
                              user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd='/',
                              pass_fds=pass_fds)
    return run


@pytest.fixture
def probe(tools):
    return str(tools / 'nsresd-bpf-probe')


@pytest.fixture
def bpf_allowed(polkit):
    polkit.allow(*BPF_ALLOWED)


def results(r):
    """The probe's line as a dict, once nsresctl and the probe succeeded."""
    assert r.returncode == 0, f'exit status {r.returncode}: {r.stderr}'
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    return dict(item.split('=', 1) for item in lines[0].split())


def published(userns, user=NOBODY, name='b'):
    """A namespace of `user` with a transient range: (Userns, object path)."""
    ns = userns(user)
    return ns, h.as_user(user, lambda c: c.allocate(name, ns)).path


def delegate_bpf(ns, **kwargs):
    """DelegateBpf as a forked client: whether it got an fd (the fd dies with
    the client)."""
    def call(c):
        os.close(c.delegate_bpf(ns, **kwargs))
        return True
    return call


def bpf_delegated(root, path):
    return root.namespace_properties(path)['BpfDelegated']


# ---- inside a sandbox ---------------------------------------------------------------

def test_the_token_creates_a_map_and_loads_a_socket_filter(daemon, bpf_allowed, nsresctl, probe):
    r = nsresctl('run', '--bpf-token', '--', probe)
    assert results(r) == {'token': 'ok', 'map': 'EPERM', 'map+token': 'ok',
                          'prog': 'EPERM', 'prog+token': 'ok'}


def test_without_bpf_token_the_sandbox_gets_no_bpf(daemon, bpf_allowed, nsresctl, probe):
    # /sys/fs/bpf inside is then the host's bpffs: no token from that one.
    r = nsresctl('run', '--', probe)
    assert results(r) == {'token': 'EPERM', 'map': 'EPERM', 'map+token': 'skipped',
                          'prog': 'EPERM', 'prog+token': 'skipped'}


# The kernel checks a program's expected attach type against attachs too,
# even for types that are never attached that way: a socket filter's is 0,
# cgroup_inet_ingress.
@pytest.mark.parametrize('allow, expected', [
    ('cmds=map_create,maps=array', {'map+token': 'ok', 'prog+token': 'EPERM'}),
    ('cmds=prog_load,progs=socket_filter,attachs=cgroup_inet_ingress', {'map+token': 'EPERM', 'prog+token': 'ok'}),
    # The command without the type, and the other way round.
    ('cmds=map_create,maps=hash', {'map+token': 'EPERM', 'prog+token': 'EPERM'}),
    ('cmds=map_create:prog_load,progs=xdp:socket_filter,attachs=cgroup_inet_ingress',
     {'map+token': 'EPERM', 'prog+token': 'ok'}),
    ('cmds=prog_load,progs=socket_filter', {'map+token': 'EPERM', 'prog+token': 'EPERM'}),
], ids=['map-only', 'prog-only', 'other-map-type', 'no-map-type', 'no-attach-type'])
def test_the_token_allows_only_what_was_delegated(daemon, bpf_allowed, nsresctl, probe, allow, expected):
    r = nsresctl('run', '--bpf-token', '--bpf-allow', allow, '--', probe)
    assert results(r) == {'token': 'ok', 'map': 'EPERM', 'prog': 'EPERM', **expected}


def test_the_bpffs_belongs_to_the_namespace(daemon, bpf_allowed, nsresctl):
    r = nsresctl('-v', 'run', '--bpf-token', '--', 'sh', '-c',
                 'stat -f -c %T /sys/fs/bpf; stat -c "%u %g" /sys/fs/bpf; grep " /sys/fs/bpf " /proc/self/mountinfo')
    assert r.returncode == 0, r.stderr
    fstype, owner, *mounts = r.stdout.splitlines()
    assert fstype == 'bpf_fs'
    # Its root is the namespace's first ids, root inside (the host's bpffs,
    # still mounted below it, belongs to an id not mapped here).
    assert owner == '0 0'
    delegated = [m for m in mounts if 'delegate_cmds=' in m]
    assert len(delegated) == 1, mounts
    options = delegated[0].split(' - ')[1].split()[2].split(',')
    assert {'delegate_cmds=any', 'delegate_maps=any', 'delegate_progs=any', 'delegate_attachs=any'} <= set(options)
    assert "BPF delegated to '65534-" in r.stderr and '/sys/fs/bpf' in r.stderr


def test_nsresctl_bpf_token_denied_by_polkit(daemon, nsresctl, probe):
    # The defaults grant allocations, not BPF.
    r = nsresctl('run', '--no-ask-password', '--bpf-token', '--', probe)
    assert r.returncode == 1
    assert 'Not authorized' in r.stderr and 'BPF' in r.stderr
    assert r.stdout == '', 'the command ran without its bpffs'
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the namespace to be released')


def test_nsresctl_bpf_options_are_checked(daemon, bpf_allowed, nsresctl):
    for args, message in [
        (['--bpf-allow', 'cmds=any'], '--bpf-token'),
        (['--bpf-token', '--bpf-allow', 'cmd=map_create'], "unknown kind 'cmd'"),
        (['--bpf-token', '--bpf-allow', 'map_create'], 'KIND=NAME'),
        (['--bpf-token', '--bpf-allow', 'cmds=map_create::prog_load'], 'empty name'),
        (['--bpf-token', '--bpf-allow', 'cmds=any', '--bpf-allow', 'cmds=map_create'], "'cmds' more than once"),
        (['--bpf-token', '--self'], '--self'),
    ]:
        r = nsresctl('run', *args, '--', 'true')
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
    # Names are the service's to check: it knows the running kernel's.
    r = nsresctl('run', '--bpf-token', '--bpf-allow', 'maps=no_such_map', '--', 'true')
    assert r.returncode == 1
    assert "maps name 'no_such_map'" in r.stderr


def test_bpf_token_with_a_network_namespace(daemon, bpf_allowed, nsresctl, probe):
    # The delegations are made one after the other before "go".
    r = nsresctl('run', '--net', '--bpf-token', '--bpf-allow', 'cmds=map_create,maps=array', '--', probe, 'map')
    assert results(r) == {'token': 'ok', 'map': 'EPERM', 'map+token': 'ok'}
    # Its veth goes with the namespace.
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the namespace to be released')


# ---- DelegateBpf on the bus ----------------------------------------------------------

def test_delegated_is_recorded(daemon, bpf_allowed, userns, root):
    ns, path = published(userns)
    assert bpf_delegated(root, path) is False
    assert h.as_user(NOBODY, delegate_bpf(ns, cmds=['map_create'], maps=['array'], progs=[], attachs=[]))
    assert bpf_delegated(root, path) is True


def test_namespace_of_another_user_is_refused(daemon, bpf_allowed, userns, root):
    ns, path = published(userns, NOBODY)
    e = h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, delegate_bpf(ns))
    assert '65534' in e.message
    assert bpf_delegated(root, path) is False


def test_the_owner_denied_by_polkit(daemon, userns, root):
    ns, path = published(userns)
    h.expect_error(ACCESS_DENIED, NOBODY, delegate_bpf(ns))
    assert bpf_delegated(root, path) is False


def test_unregistered_namespace(daemon, bpf_allowed, userns):
    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NotRegistered', NOBODY, delegate_bpf(ns))
    assert e.message


@pytest.mark.parametrize('kind', ['self', 'registered'])
def test_namespace_without_a_range_of_its_own(daemon, bpf_allowed, userns, root, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    e = h.expect_error(h.ERROR + 'NoUserRange', NOBODY, delegate_bpf(ns))
    assert kind in e.message
    assert bpf_delegated(root, path) is False


@pytest.mark.parametrize('kwargs, named', [
    ({'cmds': ['map_create', 'no_such_cmd']}, "'no_such_cmd'"),
    ({'maps': ['BPF_MAP_TYPE_ARRAY']}, "'BPF_MAP_TYPE_ARRAY'"),
    ({'progs': ['Socket_Filter']}, "'Socket_Filter'"),
    ({'attachs': ['']}, "''"),
    ({'flags': 1}, '0x1'),
    ({'flags': 1 << 63}, '0x8000000000000000'),
], ids=['cmd', 'prefixed-map', 'capitalised-prog', 'empty-attach', 'flag-0', 'flag-63'])
def test_invalid_arguments(daemon, bpf_allowed, userns, root, kwargs, named):
    ns, path = published(userns)
    e = h.expect_error(INVALID_ARGS, NOBODY, delegate_bpf(ns, **kwargs))
    assert named in e.message
    assert bpf_delegated(root, path) is False


def test_a_token_only_in_its_own_namespace(daemon, bpf_allowed, userns, root, nsresctl, probe):
    ns, _ = published(userns)
    fd = root.delegate_bpf(ns)
    try:
        # The fd from fsmount() is O_PATH: the probe reopens it through
        # /proc/self/fd before BPF_TOKEN_CREATE.
        bpffs = f'/proc/self/fd/{fd}'
        # Inside the namespace (as its root) the same fd makes a token...
        inside = subprocess.run(['nsenter', f'--user=/proc/{ns.pid}/ns/user', probe, '--bpffs', bpffs],
                                capture_output=True, text=True, timeout=30, pass_fds=(fd,))
        assert results(inside) == {'token': 'ok', 'map': 'EPERM', 'map+token': 'ok',
                                   'prog': 'EPERM', 'prog+token': 'ok'}
        # ... but not as root of the initial user namespace ...
        host = subprocess.run([probe, '--bpffs', bpffs, 'token'], capture_output=True, text=True, timeout=30,
                              pass_fds=(fd,))
        assert results(host) == {'token': 'EPERM'}
        # ... nor as root of another sandbox of the same user.
        other = nsresctl('run', '--', probe, '--bpffs', bpffs, 'token', pass_fds=(fd,))
        assert results(other) == {'token': 'EPERM'}
    finally:
        os.close(fd)
