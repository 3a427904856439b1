# SPDX-License-Identifier: LGPL-2.1-or-later
"""Configuration: a file the service does not understand stops it before it
takes the bus name, with a message naming the file and line; drop-ins under
"<config>.d/*.conf" override the main file in name order; a missing file
means the built-in defaults."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dbus
import dbus.bus
import pytest

import harness as h
from harness import BLOCK, NOBODY

REFUSAL_DEADLINE = 5.0


class NameWatch:
    """Every change of owner of the service's name on the bus, recorded
    from before the daemon starts."""

    def __init__(self, address):
        from dbus.mainloop.glib import DBusGMainLoop
        from gi.repository import GLib

        self._context = GLib.MainContext.default()
        self.bus = dbus.bus.BusConnection(address, mainloop=DBusGMainLoop())
        self.changes = []
        self._match = self.bus.add_signal_receiver(
            lambda name, old, new: self.changes.append((str(name), str(old), str(new))),
            signal_name='NameOwnerChanged', dbus_interface='org.freedesktop.DBus',
            bus_name='org.freedesktop.DBus', path='/org/freedesktop/DBus', arg0=h.BUS_NAME)
        # Round trip: the match rule is in place once this returns.
        self.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                               'GetId', '', ())

    def owned(self):
        # Another round trip first: anything the bus sent before it is queued.
        self.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                               'GetId', '', ())
        while self._context.pending():
            self._context.iteration(False)
        return [c for c in self.changes if c[2]]

    def close(self):
        self._match.remove()
        self.bus.close()



@pytest.fixture
def refused_start(environment, attach_log):
    """run(main_text, dropins={name: text}) -> {'rc', 'stderr', 'elapsed',
    'config', 'owned'} for a daemon that must exit by itself."""
    made = []

    def run(main_text, dropins=None):
        workdir = Path(tempfile.mkdtemp(prefix='config-', dir=environment.root))
        bpf_dir = environment.new_bpf_dir()
        made.append((workdir, bpf_dir))
        config = workdir / 'nsresd.conf'
        config.write_text(main_text)
        if dropins:
            (workdir / 'nsresd.conf.d').mkdir()
            for name, text in dropins.items():
                (workdir / 'nsresd.conf.d' / name).write_text(text)
        log_path = environment.logs / f'config-{workdir.name}.log'
        attach_log(log_path)
        argv = [str(h.daemon_binary()), f'--config={config}', f'--state-dir={workdir / "state"}',
                f'--bpf-dir={bpf_dir}']
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=environment.address)
        env.pop('NSRESD_FAULT', None)
        env.pop('NOTIFY_SOCKET', None)
        watch = NameWatch(environment.address)
        try:
            start = time.monotonic()
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env)
            try:
                out, err = process.communicate(timeout=REFUSAL_DEADLINE + 5)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
                raise AssertionError(f'nsresd accepted the configuration and kept running:\n'
                                     f'{err.decode(errors="replace")}') from None
            elapsed = time.monotonic() - start
            owned = watch.owned()
        finally:
            watch.close()
        log_path.write_bytes(out + err)
        return dict(rc=process.returncode, stderr=err.decode(errors='replace'), elapsed=elapsed,
                       config=config, owned=owned)

    yield run
    for workdir, bpf_dir in made:
        h.remove_bpf_pins(bpf_dir)
        shutil.rmtree(workdir, ignore_errors=True)


def assert_refused(result, root):
    assert result['rc'] > 0, f'exit status {result["rc"]}: {result["stderr"]}'
    assert result['elapsed'] < REFUSAL_DEADLINE
    assert result['owned'] == []
    assert not root.name_has_owner()
    assert result['stderr'].strip(), 'no message on stderr'


@pytest.mark.parametrize('text,words', [
    ('[Allocator]\nRangeStart=524288\nNoSuchKey=1\n', ['NoSuchKey']),
    ('[Allocator]\n# pool\n[NoSuchSection]\nRangeStart=524288\n', ['NoSuchSection']),
    ('[Allocator]\nRangeStart=524288\nMaxNamespacesPerOwner=many\n', ['MaxNamespacesPerOwner', 'many']),
    ('[Allocator]\nRangeStart=524288\nMaxNamespacesPerOwner=0\n', ['MaxNamespacesPerOwner']),
    ('[Security]\n\nRestriction=sometimes\n', ['Restriction', 'sometimes']),
    ('[Allocator]\nMaxRequestsPerOwner=4\nRangeStart\n', ['RangeStart']),
    # A key that exists, in the wrong section.
    ('[Security]\nRestriction=off\nRangeStart=524288\n', ['RangeStart']),
], ids=['unknown-key', 'unknown-section', 'bad-number', 'zero-count', 'bad-restriction', 'no-equals',
        'wrong-section'])
def test_bad_configuration_is_refused_with_file_and_line(refused_start, root, text, words):
    result = refused_start(text)
    assert_refused(result, root)
    assert f'{result["config"]}:3' in result['stderr'], result['stderr']
    for word in words:
        assert word in result['stderr'], result['stderr']


BAD_POOLS = {
    'start-not-aligned': ('[Allocator]\n# pool\nRangeStart=524289\n', ['RangeStart', '524289']),
    'end-not-aligned': ('[Allocator]\nRangeStart=524288\nRangeEnd=600000\n', ['RangeEnd', '600000']),
    'start-above-end': ('[Allocator]\nRangeStart=1048576\nRangeEnd=655359\n', ['RangeStart', 'RangeEnd']),
    'single-overlaps': ('[Allocator]\nSingleRangeStart=524288\nSingleRangeEnd=524300\n', ['SingleRangeStart']),
}


@pytest.mark.parametrize('case', sorted(BAD_POOLS))
def test_bad_pool_is_refused(refused_start, root, case):
    text, words = BAD_POOLS[case]
    result = refused_start(text)
    assert_refused(result, root)
    for word in words:
        assert word in result['stderr'], result['stderr']


def test_bad_pool_names_file_and_line(refused_start, root):
    result = refused_start(BAD_POOLS['start-not-aligned'][0])
    assert_refused(result, root)
    assert f'{result["config"]}:3' in result['stderr'], result['stderr']


def test_error_in_a_dropin_names_the_dropin(refused_start, root):
    result = refused_start('[Allocator]\nMaxNamespacesPerOwner=4\n',
                           {'10-good.conf': '[Allocator]\nMaxRequestsPerOwner=8\n',
                            '20-bad.conf': '# local\n[Allocator]\nMaxRequestsPerOwnr=8\n'})
    assert_refused(result, root)
    dropin = result['config'].parent / 'nsresd.conf.d' / '20-bad.conf'
    assert f'{dropin}:3' in result['stderr'], result['stderr']
    assert 'MaxRequestsPerOwnr' in result['stderr']


# ---- configurations that are accepted -----------------------------------------------------

@pytest.fixture
def unstarted_daemon(environment, polkit, request, attach_log):
    """make(main_text or None, dropins) -> a Daemon not started yet; its
    main file is absent when main_text is None. Stopped (exit 0 on SIGTERM)
    and removed after the test."""
    made = []

    def make(main_text, dropins=None):
        d = h.Daemon(environment, request.node.name, main_text or '')
        made.append(d)
        attach_log(d.log_path)
        if main_text is None:
            d.config_path.unlink()
        if dropins:
            directory = Path(f'{d.config_path}.d')
            directory.mkdir()
            for name, text in dropins.items():
                (directory / name).write_text(text)
        return d

    yield make
    problems = h.stop_daemons(made)
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def test_dropins_override_the_main_file(unstarted_daemon, userns, root):
    d = unstarted_daemon('[Allocator]\nMaxNamespacesPerOwner=3\n[Security]\nRestriction=permissive\n',
                         {'10-first.conf': '[Allocator]\nMaxNamespacesPerOwner=5\n',
                          '20-second.conf': '[Allocator]\nMaxNamespacesPerOwner=1\n',
                          # Not a drop-in: ignored.
                          '30-ignored.conf.disabled': '[Allocator]\nMaxNamespacesPerOwner=7\n',
                          'README': 'not a configuration file\n'})
    d.start()
    first = h.as_user(NOBODY, allocate(userns(NOBODY), name='first'))
    assert first.name == '65534-first'
    e = h.expect_error(h.ERROR + 'TooManyNamespaces', NOBODY, allocate(userns(NOBODY), name='second'))
    assert 'limit is 1' in e.message, e.message
    assert [x.name for x in root.list()] == ['65534-first']


def test_dropin_overrides_the_pool(unstarted_daemon, userns, root):
    d = unstarted_daemon('[Allocator]\nRangeStart=524288\nRangeEnd=1879048191\n'
                         '[Security]\nRestriction=permissive\n',
                         {'pool.conf': '[Allocator]\nRangeStart=1048576\nRangeEnd=1179647\n'})
    d.start()
    props = root.manager_properties()
    assert (props['RangeStart'], props['RangeEnd'], props['FreeRanges']) == (1048576, 1179647, 2)
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns))
    assert a.uid_start in (1048576, 1048576 + BLOCK)
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]


def test_missing_file_means_defaults(unstarted_daemon, userns, root):
    d = unstarted_daemon(None)
    assert not d.config_path.exists()
    d.start()
    props = root.manager_properties()
    assert (props['RangeStart'], props['RangeEnd']) == (h.DEFAULT_RANGE_START, h.DEFAULT_RANGE_END)
    # Restriction=enforce by default, and the BPF LSM cannot run here.
    assert props['Restriction'] == 'unavailable'

    ns = userns(NOBODY)
    e = h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(ns, name='transient'))
    assert e.message
    assert ns.uid_map() == []
    assert root.list() == []

    own = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(own, name='self', size=1, flags=h.SELF))
    assert own.uid_map() == [(0, 65534, 1)]
    assert own.setgroups() == 'deny'
    assert root.namespace_properties(a.path)['Kind'] == 'self'


def test_dropins_apply_without_a_main_file(unstarted_daemon, userns, root):
    d = unstarted_daemon(None, {'local.conf': '[Security]\nRestriction=permissive\n'})
    d.start()
    assert root.manager_property('RangeStart') == h.DEFAULT_RANGE_START
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, allocate(ns, name='transient'))
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
