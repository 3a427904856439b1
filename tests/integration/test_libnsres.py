# SPDX-License-Identifier: LGPL-2.1-or-later
"""libnsres as a sandbox tool uses it: tests/integration/nsres-example.c, built
on <nsres.h> alone, run by an unprivileged user. It makes the namespace with
the library, has the daemon set it up, and joins it from a child process."""

import os
import subprocess
from pathlib import Path

import pytest

import harness as h
from harness import BLOCK, NOBODY

ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8', 'HOME': '/'}
EXIT_NAME_TAKEN = 3


def example_binary():
    return h.build_dir() / 'tests' / 'nsres-example'


def results(stderr):
    """The example's key=value lines."""
    return dict(line.split('=', 1) for line in stderr.splitlines() if '=' in line and ' ' not in line)


@pytest.fixture
def example(environment):
    """start(*args, cgroup=None): the example as nobody (put in `cgroup`
    first, by root), stdin a pipe the command may wait on."""
    started = []
    pw = h.passwd(NOBODY)

    def start(*args, cgroup=None):
        def place_and_drop():
            if cgroup:
                Path(cgroup, 'cgroup.procs').write_text('0')
            os.setgroups([])
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)

        p = subprocess.Popen([str(example_binary()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd='/', preexec_fn=place_and_drop,
                             env=dict(ENV, DBUS_SYSTEM_BUS_ADDRESS=environment.address))
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()


def read_until_waiting(p, marker='waiting'):
    """The command's output up to the line it prints before it waits."""
    lines = []
    while (line := p.stdout.readline()) != f'{marker}\n':
        assert line, f'the example ended early: {p.stderr.read()}'
        lines.append(line.rstrip('\n'))
    return lines


def finish(p):
    out, err = p.communicate('\n', timeout=30)
    return p.returncode, out, err


def wait_released(root, path):
    h.wait_until(lambda: not root.object_exists(path), 5, what=f'{path} to go')
    assert root.list() == []


def test_runs_the_command_as_root_of_its_range(daemon, example, root):
    p = example('--name', 'ex', '--', 'sh', '-c',
                'id -u; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; echo waiting; read x')
    uid, uid_map, gid_map, setgroups = read_until_waiting(p)

    # nsresd published the namespace while it runs.
    [(path, name, _, owner, uid_start, size, target)] = root.list()
    assert (name, owner, size, target) == ('65534-ex', 65534, BLOCK, 0)
    props = root.namespace_properties(path)
    assert (props['Kind'], props['UidStart']) == ('transient', uid_start)

    assert uid == '0'
    assert h.parse_map(uid_map) == [(0, uid_start, BLOCK)]
    assert h.parse_map(gid_map) == [(0, uid_start, BLOCK)]
    assert setgroups == 'allow'

    status, _, err = finish(p)
    assert status == 0, err
    assert results(err) == {'name': '65534-ex', 'uid_start': str(uid_start), 'object': path}
    # The command held the namespace last: its range goes with it.
    wait_released(root, path)


def test_passes_on_the_exit_status(daemon, example, root):
    status, _, err = finish(example('--name', 'st', '--', 'sh', '-c', 'exit 7'))
    assert status == 7, err
    wait_released(root, results(err)['object'])


def test_network(daemon, example, root):
    p = example('--name', 'net', '--net', '--', 'sh', '-c', 'cat /proc/net/dev; echo waiting; read x')
    lines = read_until_waiting(p)
    names = {line.split(':')[0].strip() for line in lines[2:]}
    [(path, *_)] = root.list()
    [host_ifname] = root.namespace_properties(path)['NetworkInterfaces']
    assert Path('/sys/class/net', host_ifname).exists()

    status, _, err = finish(p)
    assert status == 0, err
    info = results(err)
    assert names == {'lo', info['namespace_ifname']}
    assert info['host_ifname'] == host_ifname
    wait_released(root, path)
    h.wait_until(lambda: not Path('/sys/class/net', host_ifname).exists(), 5, what='the veth to go')


def test_cgroup(daemon, example, root):
    cgroups = h.Cgroups()
    try:
        caller = cgroups.make('caller')
        p = example('--name', 'cg', '--cgroup', str(caller), '--', 'cat', '/proc/self/cgroup', cgroup=caller)
        status, out, err = finish(p)
        assert status == 0, err
        leaf = caller / 'nsresd-65534-cg'
        assert results(err)['cgroup'] == cgroups.rel(leaf)
        assert f'0::{cgroups.rel(leaf)}\n' in out
        wait_released(root, results(err)['object'])
        h.wait_until(lambda: not leaf.exists(), 5, what='the leaf to go')
    finally:
        cgroups.release()


def test_a_refused_call_gives_the_typed_error_and_the_services_message(daemon, userns, example, root):
    ns, other = userns(NOBODY), userns(NOBODY)
    h.as_user(NOBODY, lambda c: c.allocate('taken', ns))
    expected = h.expect_error(h.ERROR + 'NameExists', NOBODY, lambda c: c.allocate('taken', other))

    status, out, err = finish(example('--name', 'taken', '--', 'echo', 'never'))
    assert status == EXIT_NAME_TAKEN, err
    assert out == ''
    assert f'{expected.message} ({h.ERROR}NameExists)' in err
    # Nothing was allocated for the refused call.
    assert [entry[1] for entry in root.list()] == ['65534-taken']
