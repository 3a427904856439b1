# SPDX-License-Identifier: LGPL-2.1-or-later
"""`nsresctl run --binfmt`: the sandbox gets a binfmt_misc instance of its
own at /proc/sys/fs/binfmt_misc. Its root registers an interpreter for a
made-up magic there (as one would qemu-user for another architecture),
files with that magic run through it inside, and the host's binfmt_misc
never sees the entry.

The sandboxes belong to `nobody`; the host's instance is looked at by root
in a mount namespace of its own, never by mounting on the host."""

import errno
import secrets
import shutil
import subprocess

import pytest

import harness as h
from harness import NOBODY

USER_ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8', 'HOME': '/'}
MAGIC = b'\x7fNSRT'
BINFMT = '/proc/sys/fs/binfmt_misc'


class Format:
    """A made-up binary format: a handler script and a file with its magic,
    in a directory every user and every sandbox id can read."""

    def __init__(self, directory):
        self.name = f'nsrt{secrets.token_hex(4)}'
        self.directory = directory
        directory.mkdir(mode=0o755)
        self.handler = directory / 'handler'
        self.handler.write_text('#!/bin/sh\necho "handled $1 as uid $(id -u)"\n')
        self.handler.chmod(0o755)
        self.file = directory / 'program.nsrt'
        self.file.write_bytes(MAGIC + b'\0not a real program\n')
        self.file.chmod(0o755)

    def register_command(self):
        """Shell words that register the format (binfmt_misc unescapes \\x7f itself)."""
        return f"printf ':{self.name}:M::\\\\x7fNSRT::{self.handler}:' > {BINFMT}/register"

    def remove(self):
        shutil.rmtree(self.directory)


@pytest.fixture
def binfmt_format(environment):
    f = Format(environment.root / f'binfmt-{secrets.token_hex(4)}')
    yield f
    f.remove()


@pytest.fixture(scope='module')
def cli(environment):
    path = environment.root / 'nsresctl-binfmt'
    shutil.copy2(h.client_binary(), path)
    path.chmod(0o755)
    yield path
    path.unlink()


def user_kwargs(environment):
    pw = h.passwd(NOBODY)
    return dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd='/',
                env=dict(USER_ENV, DBUS_SYSTEM_BUS_ADDRESS=environment.address))


@pytest.fixture
def nsresctl(environment, cli):
    def run(*args):
        return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=30,
                              **user_kwargs(environment))
    return run


@pytest.fixture
def spawn_nsresctl(environment, cli):
    """nsresctl in the background; killed and reaped after the test."""
    started = []

    def spawn(*args):
        p = subprocess.Popen([str(cli), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, **user_kwargs(environment))
        started.append(p)
        return p

    yield spawn
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()


def host_binfmt_entries():
    """The entries of the initial user namespace's binfmt_misc, read in a
    mount namespace of our own that is gone again afterwards."""
    r = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                        f'mount -t binfmt_misc binfmt_misc {BINFMT} && ls -1 {BINFMT}'],
                       capture_output=True, text=True, timeout=30, check=True)
    return set(r.stdout.split()) - {'register', 'status'}


def test_the_sandbox_runs_a_registered_format(daemon, nsresctl, binfmt_format):
    f = binfmt_format
    script = (f'"{f.file}" 2>/dev/null || echo "not runnable before"; '
              f'{f.register_command()} && cat {BINFMT}/{f.name} && "{f.file}" arg')
    r = nsresctl('run', '--binfmt', '--', 'sh', '-c', script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'not runnable before'
    assert 'enabled' in lines
    assert f'interpreter {f.handler}' in lines
    assert 'magic 7f4e535254' in lines
    # The kernel ran the handler with the file's path, as root inside.
    assert lines[-1] == f'handled {f.file} as uid 0'


def test_the_host_does_not_see_the_entry(daemon, spawn_nsresctl, binfmt_format):
    f = binfmt_format
    # The sandbox stays up, its entry registered, until we say so.
    p = spawn_nsresctl('run', '--binfmt', '--', 'sh', '-c',
                       f'{f.register_command()} && echo registered && read line && "{f.file}"')
    assert p.stdout.readline() == 'registered\n', p.stderr.read()

    assert f.name not in host_binfmt_entries()
    # Nor does the host run the file through the sandbox's handler.
    with pytest.raises(OSError) as e:
        subprocess.run([str(f.file)], capture_output=True, timeout=30)
    assert e.value.errno == errno.ENOEXEC

    # Still registered inside all along.
    out, err = p.communicate('go\n', timeout=30)
    assert p.returncode == 0, err
    assert out == f'handled {f.file} as uid 0\n'


def test_without_binfmt_registering_fails(daemon, nsresctl, binfmt_format):
    f = binfmt_format
    before = host_binfmt_entries()
    r = nsresctl('run', '--', 'sh', '-c', f'{f.register_command()} && "{f.file}"')
    assert r.returncode != 0
    assert 'handled' not in r.stdout
    assert f'{BINFMT}/register' in r.stderr
    assert host_binfmt_entries() == before


def test_binfmt_entries_end_with_the_sandbox(daemon, nsresctl, binfmt_format):
    f = binfmt_format
    r = nsresctl('run', '--binfmt', '--', 'sh', '-c', f'{f.register_command()} && ls {BINFMT}')
    assert r.returncode == 0, r.stderr
    assert f.name in r.stdout.split()
    # A new sandbox starts with an empty instance of its own.
    r = nsresctl('run', '--binfmt', '--', 'ls', BINFMT)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {'register', 'status'}


def test_binfmt_after_switching_ids_is_not_possible(daemon, nsresctl, binfmt_format):
    # The instance is mounted while nsresctl's child is root inside; a
    # command running as another id cannot register in it.
    f = binfmt_format
    r = nsresctl('run', '--binfmt', '--target', '1000', '--', 'sh', '-c', f.register_command())
    assert r.returncode != 0
    assert 'ermission denied' in r.stderr
