# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresctl bwrap: bubblewrap as Debian ships it (not setuid), run by a user
who alone could map one UID, gets a sandbox with 64K of them."""

import os
import secrets
import shutil
import signal
import subprocess
import time

import pytest

import harness as h
from harness import BLOCK, NOBODY

USER_ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8'}
# In the environment of every process started here, to tell them from those of
# other tests running as the same user.
MARK = ('NSRESD_TEST_BWRAP', secrets.token_hex(8))
BWRAP = shutil.which('bwrap')
# A sandbox of the host's files, read-only, in which its root may do anything
# its user namespace allows.
SANDBOX = ('--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--cap-add', 'ALL')

pytestmark = pytest.mark.skipif(BWRAP is None, reason='bubblewrap is not installed')


@pytest.fixture(scope='module')
def cli(environment):
    """The built nsresctl, where every user can execute it."""
    path = environment.root / 'nsresctl-bwrap'
    shutil.copy2(h.client_binary(), path)
    path.chmod(0o755)
    yield path
    path.unlink()


@pytest.fixture(scope='module', autouse=True)
def bwrap_mount_point():
    """bwrap makes /tmp/.bubblewrap-<uid> to mount its root on: removed
    again if it was not there before."""
    path = f'/tmp/.bubblewrap-{h.passwd(NOBODY).pw_uid}'
    existed = os.path.exists(path)
    yield
    if not existed and os.path.isdir(path):
        os.rmdir(path)


def user_kwargs(environment, path=None):
    pw = h.passwd(NOBODY)
    env = dict(USER_ENV, DBUS_SYSTEM_BUS_ADDRESS=environment.address, HOME='/', **dict([MARK]))
    if path:
        env['PATH'] = path
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd='/')


@pytest.fixture
def nsresctl(environment, cli):
    def run(*args, timeout=30, path=None):
        return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=timeout,
                              **user_kwargs(environment, path))
    return run


@pytest.fixture
def fake_bwrap(environment):
    """A directory with a 'bwrap' that reports its own pid as the sandbox's
    without making a namespace (what a setuid bwrap or an impostor could
    do), then waits to be unblocked."""
    directory = environment.root / 'fake-bwrap'
    directory.mkdir(mode=0o755)
    script = directory / 'bwrap'
    # $3: the block fd, $5: the info fd (after --unshare-user --userns-block-fd R --info-fd W).
    script.write_text('#!/bin/sh\n'
                      'eval "printf \'{ \\"child-pid\\": %d }\\n\' $$ >&$5"\n'
                      'eval "read unblocked <&$3"\n'
                      'exec "$@"\n')
    script.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def spawn_nsresctl(environment, cli):
    """Background nsresctl processes, killed and reaped after the test."""
    started = []

    def spawn(*args):
        p = subprocess.Popen([str(cli), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, **user_kwargs(environment))
        started.append(p)
        return p

    yield spawn
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            stream.close()


def processes_left():
    """pid -> (state, command) of the processes this module started as the
    caller (nsresctl, bwrap, the sandbox: they inherit MARK), and of zombies
    that one of them has not reaped. Other tests may run as the same user
    at the same time."""
    uid = h.passwd(NOBODY).pw_uid
    status, marked = {}, set()
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/status') as f:
                fields = dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)
            if int(fields['Uid'].split()[0]) != uid:
                continue
            with open(f'/proc/{entry}/environ', 'rb') as f:
                environ = f.read().split(b'\0')
        except (FileNotFoundError, ProcessLookupError):
            continue
        status[int(entry)] = fields
        if f'{MARK[0]}={MARK[1]}'.encode() in environ:
            marked.add(int(entry))
    return {pid: (f['State'].split()[0], f['Name']) for pid, f in status.items()
            if pid in marked or int(f['PPid']) in marked}


def assert_no_process_left(timeout=0.0):
    if timeout:
        try:
            h.wait_until(lambda: not processes_left(), timeout, what="the caller's processes to be gone")
        except AssertionError:
            pass
    assert processes_left() == {}


def bwrap(*command, name=None):
    return ('bwrap', *(('--name', name) if name else ()), '--', *SANDBOX, *command)


def test_bwrap_maps_a_full_range_and_the_caller(daemon, root, spawn_nsresctl):
    p = spawn_nsresctl('--verbose', *bwrap('sh', '-c', 'cat /proc/self/uid_map; echo; cat /proc/self/gid_map; '
                                           'echo; read wait || true'))
    uid_lines, gid_lines = [], []
    while (line := h.read_line(p, timeout=10)).strip():
        uid_lines.append(line)
    while (line := h.read_line(p, timeout=10)).strip():
        gid_lines.append(line)
    [entry] = root.list()
    caller = h.passwd(NOBODY)
    assert sorted(h.parse_map(''.join(uid_lines))) == [(0, entry.uid_start, BLOCK), (BLOCK, caller.pw_uid, 1)]
    assert sorted(h.parse_map(''.join(gid_lines))) == [(0, entry.uid_start, BLOCK), (BLOCK, caller.pw_gid, 1)]
    assert (entry.owner, entry.size, entry.target) == (caller.pw_uid, BLOCK, 0)
    assert entry.name.startswith(f'{caller.pw_uid}-bwrap-')
    p.stdin.close()
    assert p.wait(10) == 0
    stderr = p.stderr.read().decode()
    assert f"Allocated '{entry.name}'" in stderr and entry.path in stderr, stderr


def test_bwrap_sandbox_switches_to_an_id_of_the_range(daemon, root, nsresctl):
    # Alone, nobody could map no UID but its own: 1000 comes from the range.
    # The caller's own UID/GID is mapped too, so setgroups() stays denied (the
    # caller's supplementary groups could otherwise be dropped): the groups
    # are kept, not cleared.
    r = nsresctl(*bwrap('sh', '-c', 'id -u; cat /proc/self/setgroups; '
                        'setpriv --reuid=1000 --regid=1000 --keep-groups touch /tmp/f && stat -c %u:%g /tmp/f'))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(BLOCK), 'deny', '1000:1000']


def test_bwrap_releases_the_range_when_the_sandbox_ends(daemon, root, signals, nsresctl):
    r = nsresctl(*bwrap('true', name='short'))
    assert r.returncode == 0, r.stderr
    assert_no_process_left()
    new = signals.wait_for(lambda e: e[1] == 'UserNamespaceNew', what='UserNamespaceNew')
    assert new[3][1:] == ('65534-short', 65534)
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == new[3][0], 2,
                     what='UserNamespaceRemoved')
    assert root.list() == []


def test_bwrap_passes_on_the_exit_status(daemon, nsresctl):
    assert nsresctl(*bwrap('sh', '-c', 'exit 7')).returncode == 7


def test_bwrap_name_taken_stops_bwrap(daemon, userns, root, signals, nsresctl):
    ns = userns(NOBODY)
    h.as_user(NOBODY, lambda c: c.allocate('taken', ns))
    other = userns(NOBODY)
    expected = h.expect_error(h.ERROR + 'NameExists', NOBODY, lambda c: c.allocate('taken', other))
    [existing] = root.list()

    r = nsresctl(*bwrap('echo', 'ran', name='taken'))
    assert r.returncode == 1
    assert expected.message in r.stderr
    assert r.stdout == ''
    assert_no_process_left()
    assert root.list() == [existing]
    assert len(signals.of('UserNamespaceNew')) == 1


def test_bwrap_denied_by_polkit_stops_bwrap(daemon, polkit, root, signals, nsresctl):
    polkit.deny_all()
    r = nsresctl('--no-ask-password', *bwrap('echo', 'ran'))
    assert r.returncode == 1
    assert 'ran' not in r.stdout
    assert 'not authorized' in r.stderr.lower() or 'denied' in r.stderr.lower(), r.stderr
    assert_no_process_left()
    assert root.list() == []
    assert signals.of('UserNamespaceNew') == []


def test_bwrap_missing_command_gives_bwraps_status(daemon, environment, root, signals, nsresctl):
    r = nsresctl(*bwrap('/nonexistent/command'))
    plain = subprocess.run([BWRAP, '--unshare-user', *SANDBOX, '/nonexistent/command'], capture_output=True,
                           text=True, timeout=30, **user_kwargs(environment))
    assert plain.returncode != 0
    assert r.returncode == plain.returncode
    assert '/nonexistent/command' in r.stderr
    assert_no_process_left()
    # It got its range all the same, and lost it with the sandbox.
    new = signals.wait_for(lambda e: e[1] == 'UserNamespaceNew', what='UserNamespaceNew')
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == new[3][0], 2,
                     what='UserNamespaceRemoved')
    assert root.list() == []


def test_bwrap_refused_arguments_give_bwraps_status(daemon, root, signals, nsresctl):
    r = nsresctl('bwrap', '--', '--no-such-option', 'true')
    assert r.returncode == 1
    assert '--no-such-option' in r.stderr
    assert_no_process_left()
    assert root.list() == []
    assert signals.of('UserNamespaceNew') == []


def test_bwrap_without_a_namespace_of_its_own_is_stopped(daemon, root, signals, nsresctl, fake_bwrap):
    r = nsresctl(*bwrap('echo', 'ran'), path=f'{fake_bwrap}:{USER_ENV["PATH"]}')
    assert r.returncode == 1
    assert 'did not create a user namespace' in r.stderr, r.stderr
    assert 'ran' not in r.stdout
    assert_no_process_left()
    assert root.list() == []
    assert signals.of('UserNamespaceNew') == []


def test_bwrap_not_installed(daemon, environment, root, nsresctl):
    empty = environment.root / 'empty-path'
    empty.mkdir(mode=0o755)
    try:
        r = nsresctl(*bwrap('true'), path=str(empty))
    finally:
        empty.rmdir()
    assert r.returncode == 127
    assert "'bwrap'" in r.stderr
    assert root.list() == []


def test_bwrap_keeps_the_fds_it_passes(daemon, nsresctl):
    r = nsresctl('bwrap', '--', '--info-fd', '1', *SANDBOX, 'true')
    assert r.returncode == 2
    assert "'--info-fd'" in r.stderr


def test_bwrap_relays_sigterm_and_leaves_nothing(daemon, root, signals, spawn_nsresctl):
    # Without a PID namespace the sandbox's PIDs are ours.
    p = spawn_nsresctl(*bwrap('sh', '-c', 'echo $$; exec sleep 60'))
    sandbox = int(h.read_line(p, timeout=10))
    [entry] = root.list()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 128 + signal.SIGTERM
    # bwrap died of it, and nsresctl killed the sandbox bwrap left behind.
    # Orphaned, it is reaped by init: here that is the test process (a
    # subreaper, see harness.Environment), and its zombie would hold the
    # namespace.
    h.wait_until(lambda: (sandbox, 'Z') in [(pid, state) for pid, _, state in h._children_of(os.getpid())],
                 what='the sandbox to die')
    os.waitpid(sandbox, 0)
    assert_no_process_left()
    signals.wait_for(lambda e: e[1] == 'UserNamespaceRemoved' and e[3][0] == entry.path, 2,
                     what='UserNamespaceRemoved')
    assert root.list() == []
