# SPDX-License-Identifier: LGPL-2.1-or-later
"""Audit trail: when stderr is the journal, allocation and release reach it
over the journal's native protocol with stable MESSAGE_IDs and fields naming
the namespace, its owner, range and ids; without a journal, plain lines on
stderr say the same in words.

There is no journald here: the daemon runs in a private mount namespace where
/run/systemd/journal is a directory of the test's, whose datagram socket
'socket' the test reads."""

import os
import socket
import struct
import tempfile
import threading
from pathlib import Path

import pytest

import harness as h
from harness import BLOCK, NOBODY

ALLOCATED = '9b4762abf6ab42c69d4f93be048a1b2a'
RELEASED = '7258491f02a840949a2fd3e9654f9334'
RELOADED = '24bf1a0eb12e44b3836b813d3626aeca'
LOG_INFO = 6


def parse_native(data):
    """One datagram of the native protocol: KEY=value lines, or KEY, a
    newline, a little-endian 64-bit length and that many bytes of value."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b'\n', i)
        line = data[i:nl]
        if b'=' in line:
            key, value = line.split(b'=', 1)
            i = nl + 1
        else:
            key = line
            (length,) = struct.unpack_from('<Q', data, nl + 1)
            start = nl + 9
            value = data[start:start + length]
            assert data[start + length:start + length + 1] == b'\n'
            i = start + length + 1
        fields[key.decode()] = value.decode()
    return fields


class JournalSocket:
    """The journal's native socket, read on a thread so the daemon never
    blocks on a full queue."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(str(self.directory / 'socket'))
        self.sock.settimeout(0.1)
        self.records = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.records.append(parse_native(data))

    def find(self, **match):
        with self._lock:
            return [r for r in self.records if all(r.get(k) == v for k, v in match.items())]

    def wait_for(self, timeout=5, **match):
        h.wait_until(lambda: self.find(**match), timeout, what=f'a journal record with {match}')
        return self.find(**match)[0]

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def journal(environment):
    directory = tempfile.mkdtemp(prefix='journal-', dir=environment.root)
    j = JournalSocket(directory)
    yield j
    j.close()


@pytest.fixture
def journal_daemon(environment, polkit, journal, request):
    """A daemon whose stderr is 'the journal', in a mount namespace of its own
    where the test's socket is /run/systemd/journal/socket."""
    d = h.Daemon(environment, request.node.name, h.config_text())
    request.node.__dict__.setdefault('nsresd_logs', []).append(d.log_path)
    # /run/systemd/journal does not exist on a machine without systemd: a
    # tmpfs over /run/systemd, private to the daemon, holds the mount point.
    d.command_prefix = ['unshare', '--mount', '--propagation', 'private', '--',
                        'sh', '-c', 'mount -t tmpfs -o mode=0755 tmpfs /run/systemd && '
                                    'mkdir /run/systemd/journal && '
                                    'mount --bind "$0" /run/systemd/journal && exec "$@"',
                        str(journal.directory)]
    d.journal_stream = True
    try:
        d.start()
        yield d
    finally:
        problems = h.stop_daemons([d])
    assert not problems, problems


def expect_fields(record, a, props, kind='transient', size=BLOCK):
    assert record['NSRESD_NAME'] == a.name
    assert record['NSRESD_OWNER'] == '65534'
    assert record['NSRESD_KIND'] == kind
    assert record['NSRESD_UID_START'] == str(a.uid_start)
    assert record['NSRESD_GID_START'] == str(a.gid_start)
    assert record['NSRESD_SIZE'] == str(size)
    assert record['NSRESD_TARGET'] == '0'
    assert record['NSRESD_NS_ID'] == str(props['Id'])
    assert record['NSRESD_NS_INODE'] == str(props['Inode'])
    assert record['NSRESD_OBJECT'] == a.path
    assert record['SYSLOG_IDENTIFIER'] == 'nsresd'
    assert record['PRIORITY'] == str(LOG_INFO)
    assert a.name in record['MESSAGE']


def test_allocation_and_release_are_journal_records(journal_daemon, journal, userns, root):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, lambda c: c.allocate('audit', ns))
    props = root.namespace_properties(a.path)

    allocated = journal.wait_for(MESSAGE_ID=ALLOCATED, NSRESD_NAME='65534-audit')
    expect_fields(allocated, a, props)

    ns.release()
    released = journal.wait_for(MESSAGE_ID=RELEASED, NSRESD_NAME='65534-audit')
    expect_fields(released, a, props)
    assert str(a.uid_start) in released['MESSAGE']


@pytest.mark.parametrize('kind', ['self', 'registered'])
def test_every_kind_is_recorded(journal_daemon, journal, userns, root, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    props = root.namespace_properties(path)
    record = journal.wait_for(MESSAGE_ID=ALLOCATED, NSRESD_OBJECT=path)
    assert record['NSRESD_KIND'] == kind
    assert record['NSRESD_NS_ID'] == str(props['Id'])
    assert record['NSRESD_UID_START'] == str(props['UidStart'])
    assert record['NSRESD_SIZE'] == '1'


def test_every_message_goes_to_the_journal(journal_daemon, journal, root):
    h.wait_until(lambda: any(r['MESSAGE'].startswith('Ready:') for r in journal.find()), 5,
                 what='the Ready message in the journal')
    ready = next(r for r in journal.find() if r['MESSAGE'].startswith('Ready:'))
    assert ready['PRIORITY'] == str(LOG_INFO)
    assert 'MESSAGE_ID' not in ready
    # Nothing fell back to stderr.
    assert 'Ready:' not in journal_daemon.log()

    root.call(h.MANAGER_PATH, h.MANAGER_IFACE, 'Reload', 't', (0,))
    reloaded = journal.wait_for(MESSAGE_ID=RELOADED)
    assert reloaded['NSRESD_CONFIG'] == str(journal_daemon.config_path)


def test_plain_lines_without_a_journal(daemon, userns, root):
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, lambda c: c.allocate('plain', ns))
    ns_id = root.namespace_properties(a.path)['Id']
    ns.release()
    h.wait_until(lambda: 'Releasing namespace' in daemon.log(), 5, what='the release in the log')

    lines = daemon.log().splitlines()
    allocated = [line for line in lines if "Namespace '65534-plain'" in line]
    released = [line for line in lines if "Releasing namespace '65534-plain'" in line]
    assert allocated and released
    for line in allocated + released:
        assert line.startswith('nsresd: ')
        assert f'id {ns_id}' in line
        assert 'owner 65534' in line
        assert f'{a.uid_start}+{BLOCK}' in line


def test_a_stale_journal_stream_is_not_the_journal(daemon_factory, environment, userns):
    # Inherited from somewhere else: JOURNAL_STREAM names another file.
    other = Path(tempfile.mkstemp(dir=environment.root)[1])
    st = other.stat()
    saved = os.environ.get('JOURNAL_STREAM')
    os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'
    try:
        d = daemon_factory()
    finally:
        if saved is None:
            del os.environ['JOURNAL_STREAM']
        else:
            os.environ['JOURNAL_STREAM'] = saved
        other.unlink()
    ready = [line for line in d.log().splitlines() if 'Ready:' in line]
    assert ready and ready[0].startswith('nsresd: Ready:')
