# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresd --cleanup, for package removal: it removes the BPF pins and the
state, but never while a namespace of the registry lives (its range would be
handed out again after a new start) unless forced, and never under a running
daemon. Running it again is harmless."""

import subprocess

import pytest

import harness as h
from harness import BLOCK, NOBODY


def cleanup(daemon, *extra):
    return subprocess.run([str(h.daemon_binary()), '--cleanup', *extra, f'--state-dir={daemon.state_dir}',
                           f'--bpf-dir={daemon.bpf_dir}'],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def pins(daemon):
    return sorted(str(p.relative_to(daemon.bpf_dir)) for p in daemon.bpf_dir.rglob('*') if p.is_file())


@pytest.fixture
def stopped_with_namespace(daemon, userns, root):
    """A daemon that handed out a range and was stopped; the namespace lives."""
    ns = userns(NOBODY)
    a = h.as_user(NOBODY, lambda c: c.allocate('keep', ns))
    ns_id = root.namespace_properties(a.path)['Id']
    assert daemon.stop() == 0
    assert pins(daemon), 'the tracker pins its maps under the bpf directory'
    assert daemon.registry_files()
    return daemon, ns, a, ns_id


def test_refused_while_a_namespace_lives(stopped_with_namespace):
    daemon, ns, a, ns_id = stopped_with_namespace
    before = pins(daemon)
    r = cleanup(daemon)
    assert r.returncode == 1
    assert "'65534-keep'" in r.stderr
    assert f'{a.uid_start}+{BLOCK}' in r.stderr
    assert f'ns id {ns_id}' in r.stderr
    assert '--force' in r.stderr
    assert pins(daemon) == before
    assert daemon.registry_files()
    assert daemon.index_path().exists()


def test_removes_everything_once_the_namespace_is_gone(stopped_with_namespace):
    daemon, ns, a, ns_id = stopped_with_namespace
    ns.release()
    # The kernel frees a namespace a moment after its last user goes (RCU).
    results = []
    h.wait_until(lambda: results.append(cleanup(daemon)) or results[-1].returncode == 0, 5,
                 what='cleanup to find the namespace dead')
    r = results[-1]
    assert all('refusing' in x.stderr for x in results[:-1])
    assert not daemon.bpf_dir.exists()
    assert not daemon.state_dir.exists()
    assert 'Removed the BPF pins' in r.stdout
    assert 'Removed the state' in r.stdout

    again = cleanup(daemon)
    assert again.returncode == 0, again.stderr
    assert 'Nothing to remove' in again.stdout


def test_force_removes_a_live_namespace_state(stopped_with_namespace):
    daemon, ns, a, ns_id = stopped_with_namespace
    r = cleanup(daemon, '--force')
    assert r.returncode == 0, r.stderr
    assert "'65534-keep'" in r.stderr
    assert not daemon.bpf_dir.exists()
    assert not daemon.state_dir.exists()


def test_refused_under_a_running_daemon(daemon, root):
    before = pins(daemon)
    r = cleanup(daemon, '--force')
    assert r.returncode == 1
    assert 'running' in r.stderr
    assert pins(daemon) == before and before
    assert daemon.state_dir.exists()
    # The daemon is none the worse for it.
    assert root.list() == []


def test_a_second_daemon_on_the_same_state_is_refused(daemon, daemon_factory):
    second = h.Daemon(daemon.environment, 'second', h.config_text())
    second.state_dir = daemon.state_dir
    try:
        with pytest.raises(AssertionError, match='exited with 1'):
            second.start(timeout=5)
        assert 'Another nsresd runs on' in second.log()
    finally:
        second.cleanup()


def test_force_needs_cleanup(daemon):
    r = subprocess.run([str(h.daemon_binary()), '--force'], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert '--force only goes with --cleanup' in r.stderr
