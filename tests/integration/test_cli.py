# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresctl as a user runs it: unprivileged, on the system bus, reading its
output the way a person or a script would."""

import json
import select
import shutil
import signal
import subprocess
import time

import pytest

import harness as h
from harness import BLOCK, NOBODY

USER_ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8'}


@pytest.fixture(scope='module')
def cli(environment):
    """The built nsresctl, copied where every user can execute it (the build
    tree may be in a directory only root can enter)."""
    path = environment.root / 'nsresctl'
    shutil.copy2(h.client_binary(), path)
    path.chmod(0o755)
    yield path
    path.unlink()


def user_kwargs(environment, user):
    pw = h.passwd(user)
    env = dict(USER_ENV, DBUS_SYSTEM_BUS_ADDRESS=environment.address, HOME='/')
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd='/')


@pytest.fixture
def nsresctl(environment, cli):
    def run(*args, user=NOBODY, timeout=30, **kwargs):
        return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=timeout,
                              **user_kwargs(environment, user), **kwargs)
    return run


@pytest.fixture
def spawn_nsresctl(environment, cli):
    """Background nsresctl processes, killed and reaped after the test."""
    started = []

    def spawn(*args, user=NOBODY):
        p = subprocess.Popen([str(cli), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, **user_kwargs(environment, user))
        started.append(p)
        return p

    yield spawn
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            stream.close()


def allocated(userns, name):
    ns = userns(NOBODY)
    return ns, h.as_user(NOBODY, lambda c: c.allocate(name, ns))


def test_run_is_root_inside(daemon, nsresctl):
    r = nsresctl('run', '--', 'id', '-u')
    assert (r.returncode, r.stdout) == (0, '0\n'), r.stderr
    r = nsresctl('run', '--', 'id', '-g')
    assert (r.returncode, r.stdout) == (0, '0\n'), r.stderr


def test_run_shows_the_allocated_range(daemon, root, spawn_nsresctl):
    p = spawn_nsresctl('run', '--name', 'cli', '--', 'sh', '-c',
                       'cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; read wait || true')
    uid_map, gid_map, setgroups = (h.read_line(p) for _ in range(3))
    [entry] = root.list()
    assert entry.name == '65534-cli'
    assert h.parse_map(uid_map) == [(0, entry.uid_start, BLOCK)]
    assert h.parse_map(gid_map) == [(0, entry.uid_start, BLOCK)]
    assert setgroups.strip() == 'allow'
    p.stdin.close()
    assert p.wait(10) == 0


def test_run_releases_the_range_when_the_command_ends(daemon, root, nsresctl, signals):
    r = nsresctl('run', '--name', 'short', '--', 'true')
    ended = time.monotonic()
    assert r.returncode == 0, r.stderr
    new = signals.wait_for(lambda e: e[1] == 'UserNamespaceNew', what='UserNamespaceNew')
    assert new[3][1:] == ('65534-short', 65534)
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == new[3][0],
                     max(0.1, 1.0 - (time.monotonic() - ended)), what='UserNamespaceRemoved')
    assert root.list() == []


def test_run_self(daemon, nsresctl):
    r = nsresctl('run', '--self', '--', 'sh', '-c', 'id -u; cat /proc/self/uid_map /proc/self/setgroups')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '0'
    assert h.parse_map(lines[1]) == [(0, 65534, 1)]
    assert lines[2] == 'deny'


def test_run_size_one(daemon, nsresctl):
    r = nsresctl('run', '--size', '1', '--', 'cat', '/proc/self/uid_map')
    assert r.returncode == 0, r.stderr
    [(inside, outside, count)] = h.parse_map(r.stdout)
    assert (inside, count) == (0, 1)
    assert h.SINGLE_RANGE_START <= outside <= h.SINGLE_RANGE_END


def test_run_passes_on_the_exit_status(daemon, nsresctl):
    assert nsresctl('run', '--', 'sh', '-c', 'exit 7').returncode == 7


def test_run_error_carries_the_services_message(daemon, userns, nsresctl, root):
    ns = userns(NOBODY)
    expected = h.expect_error(h.ERROR + 'InvalidName', NOBODY, lambda c: c.allocate('-bad', ns))
    r = nsresctl('run', '--name', '-bad', '--', 'true')
    assert r.returncode != 0
    assert expected.message in r.stderr
    assert root.list() == []


def test_run_denied_by_polkit(daemon, polkit, userns, nsresctl, root):
    polkit.deny_all()
    ns = userns(NOBODY)
    expected = h.expect_error(h.DBUS_ERROR + 'AccessDenied', NOBODY, lambda c: c.allocate('x', ns))
    r = nsresctl('run', '--no-ask-password', '--name', 'denied', '--', 'true')
    assert r.returncode != 0
    assert expected.message in r.stderr
    assert r.stdout == ''


def test_list(daemon, userns, nsresctl):
    _, a = allocated(userns, 'listed')
    r = nsresctl('list')
    assert r.returncode == 0, r.stderr
    assert '65534-listed' in r.stdout
    assert f'{a.uid_start}-{a.uid_start + BLOCK - 1}' in r.stdout


def test_list_json(daemon, userns, nsresctl):
    ns, a = allocated(userns, 'listed')
    r = nsresctl('list', '--json')
    assert r.returncode == 0, r.stderr
    [entry] = [e for e in json.loads(r.stdout) if e['Name'] == '65534-listed']
    assert entry['Path'] == a.path
    assert (entry['Id'], entry['Owner'], entry['UidStart'], entry['Size'], entry['Target']) == \
        (ns.id, 65534, a.uid_start, BLOCK, 0)


def test_list_json_without_namespaces(daemon, nsresctl):
    r = nsresctl('list', '--json')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_status_by_name(daemon, userns, nsresctl):
    _, a = allocated(userns, 'shown')
    r = nsresctl('status', 'shown')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'Name: 65534-shown' in lines
    assert f'UidStart: {a.uid_start}' in lines
    assert 'Kind: transient' in lines


def test_status_json_by_path(daemon, userns, nsresctl):
    ns, a = allocated(userns, 'shown')
    r = nsresctl('status', '--json', a.path, user='daemon')
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert (status['Name'], status['Id'], status['UidStart'], status['Kind']) == \
        ('65534-shown', ns.id, a.uid_start, 'transient')


def test_status_shows_delegated_mounts(daemon, userns, root, tmpfs, nsresctl):
    ns, _ = allocated(userns, 'mounted')
    first, second = tmpfs(), tmpfs()
    r = nsresctl('status', 'mounted')
    assert 'Mounts:' in r.stdout.splitlines()
    root.add_mount(ns, first.fd)
    root.add_mount(ns, second.fd)
    r = nsresctl('status', 'mounted')
    assert r.returncode == 0, r.stderr
    assert f'Mounts: {first.id()} {second.id()}' in r.stdout.splitlines()
    r = nsresctl('status', '--json', 'mounted')
    assert json.loads(r.stdout)['Mounts'] == [first.id(), second.id()]


def test_status_of_an_unknown_namespace(daemon, nsresctl):
    r = nsresctl('status', 'nothing-here')
    assert r.returncode != 0
    assert 'nothing-here' in r.stderr


def test_info(daemon, nsresctl):
    r = nsresctl('info')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'TeardownTracking: bpf' in lines
    assert f'RangeStart: {h.DEFAULT_RANGE_START}' in lines
    assert 'Namespaces: 0' in lines


def test_info_json(daemon, root, nsresctl):
    r = nsresctl('--json', 'info')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == root.manager_properties()


def test_watch_prints_new_and_removed(daemon, userns, root, spawn_nsresctl):
    watch = spawn_nsresctl('watch')
    # The subscription is in place once a probe shows up.
    deadline = time.monotonic() + 10
    while True:
        probe = userns(NOBODY)
        name = f'probe{int(time.monotonic() * 1000) % 100000}'
        h.as_user(NOBODY, lambda c: c.allocate(name, probe))
        probe.release()
        try:
            h.read_line(watch, timeout=0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, 'nsresctl watch printed nothing for 10 s'
    while root.list():
        time.sleep(0.02)
    time.sleep(0.3)
    while select.select([watch.stdout], [], [], 0)[0]:
        h.read_line(watch)

    ns, a = allocated(userns, 'watched')
    line = h.read_line(watch)
    assert 'new' in line.lower() and '65534-watched' in line and a.path in line, line
    ns.release()
    line = h.read_line(watch, timeout=2)
    assert 'removed' in line.lower() and '65534-watched' in line and a.path in line, line

    watch.send_signal(signal.SIGTERM)
    assert watch.wait(5) == 0


def test_watch_json(daemon, userns, spawn_nsresctl):
    watch = spawn_nsresctl('watch', '--json')
    deadline = time.monotonic() + 10
    namespaces = []
    while True:
        ns = userns(NOBODY)
        namespaces.append(ns)
        h.as_user(NOBODY, lambda c: c.allocate(f'json{len(namespaces)}', ns))
        try:
            event = json.loads(h.read_line(watch, timeout=0.5))
            break
        except AssertionError:
            assert time.monotonic() < deadline, 'nsresctl watch --json printed nothing for 10 s'
    assert event['Name'].startswith('65534-json')
    assert event['Owner'] == 65534
    assert event['Path'].startswith(h.USERNS_PATH_PREFIX)
