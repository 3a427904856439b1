# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresctl doctor: what it finds on this host is what the host's sources of
truth say, and each problem a host can have shows up with its fix. Problems
this host does not have are made in a private mount namespace (bind mounts and
tmpfs over the files the doctor reads), never on the host itself."""

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

import harness as h
from harness import NOBODY

ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8'}
STATUSES = {'ok', 'warn', 'fail', 'skipped'}
# The order the doctor shows its checks in.
CHECK_IDS = ['lsm', 'btf', 'lsm-programs', 'bpffs', 'cgroup2', 'unprivileged-userns-clone', 'apparmor-userns',
             'max-user-namespaces', 'other-allocator', 'config', 'daemon', 'restriction', 'teardown-tracking',
             'subid-ranges']


def run_doctor(address, *args, setup=None, user=None, binary=None):
    """nsresctl doctor ARGS; setup: shell commands run first in a private
    mount namespace of the doctor's own, to change what it sees."""
    argv = [str(binary or h.client_binary()), 'doctor', *args]
    env = dict(ENV, DBUS_SYSTEM_BUS_ADDRESS=address)
    kwargs = {}
    if user is not None:
        pw = h.passwd(user)
        kwargs = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd='/')
    if setup:
        script = ' && '.join(setup) + ' && exec ' + shlex.join(argv)
        argv = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-ec', script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, **kwargs)


def doctor_json(address, setup=None, user=None, binary=None):
    """(exit status, {id: check}, document)"""
    p = run_doctor(address, '--json', setup=setup, user=user, binary=binary)
    assert p.stderr == ''
    doc = json.loads(p.stdout)
    checks = doc['checks']
    assert [c['id'] for c in checks] == CHECK_IDS
    for c in checks:
        assert set(c) == {'id', 'status', 'message', 'fix'}
        assert c['status'] in STATUSES
        assert c['message']
        # A fix for every problem, none where there is nothing to do.
        assert (c['fix'] is not None) == (c['status'] in ('warn', 'fail')), c
    counts = {s: sum(c['status'] == s for c in checks) for s in STATUSES}
    assert (doc['failed'], doc['warnings'], doc['skipped']) == (counts['fail'], counts['warn'], counts['skipped'])
    # Warnings do not fail.
    assert p.returncode == (1 if counts['fail'] else 0), p.stdout
    return p.returncode, {c['id']: c for c in checks}, doc


def active_lsm_list():
    """The active LSM list, read as the kernel shows it (securityfs mounted
    privately where the host has not mounted it)."""
    p = subprocess.run(['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-ec',
                        'mountpoint -q /sys/kernel/security || '
                        'mount -t securityfs securityfs /sys/kernel/security; cat /sys/kernel/security/lsm'],
                       capture_output=True, text=True, check=True)
    return p.stdout.strip()


def cgroup2_mount_point():
    with open('/proc/self/mountinfo') as f:
        for line in f:
            before, _, after = line.partition(' - ')
            if after.split()[0] == 'cgroup2':
                return before.split()[4]
    return None


def test_host_facts(daemon, environment, root):
    status, checks, _ = doctor_json(environment.address)

    lsms = active_lsm_list()
    assert f': {lsms}.' in checks['lsm']['message']
    assert checks['lsm']['status'] == ('ok' if 'bpf' in lsms.split(',') else 'fail')

    assert checks['btf']['status'] == ('ok' if os.path.exists('/sys/kernel/btf/vmlinux') else 'fail')
    assert checks['bpffs']['status'] == 'ok'
    where = cgroup2_mount_point()
    assert checks['cgroup2']['status'] == ('ok' if where else 'warn')
    assert f'mounted at {where}:' in checks['cgroup2']['message']

    with open('/proc/sys/user/max_user_namespaces') as f:
        max_userns = int(f.read())
    assert f'is {max_userns}' in checks['max-user-namespaces']['message']
    assert checks['max-user-namespaces']['status'] == ('ok' if max_userns >= 1024 else 'warn')
    for sysctl, check in (('unprivileged_userns_clone', 'unprivileged-userns-clone'),
                          ('apparmor_restrict_unprivileged_userns', 'apparmor-userns')):
        if not os.path.exists(f'/proc/sys/kernel/{sysctl}'):
            assert checks[check]['status'] == 'ok'
            assert 'does not exist' in checks[check]['message']

    nsresourced = (os.path.exists('/run/systemd/io.systemd.NamespaceResource') or
                   os.path.exists('/run/systemd/nsresource/registry'))
    assert checks['other-allocator']['status'] == ('warn' if nsresourced else 'ok')

    # What the running daemon says about itself.
    props = root.manager_properties()
    assert checks['daemon']['status'] == 'ok'
    assert f'nsresd {props["Version"]} runs' in checks['daemon']['message']
    assert environment.address in checks['daemon']['message']
    assert f'Restriction={props["Restriction"]}' in checks['restriction']['message']
    assert checks['restriction']['status'] == {'enforcing': 'ok', 'unavailable': 'fail'}[props['Restriction']]
    assert checks['teardown-tracking']['status'] == ('ok' if props['TeardownTracking'] == 'bpf' else 'warn')
    assert (f"the running nsresd's pool {props['RangeStart']}-{props['RangeEnd']}"
            in checks['subid-ranges']['message'])

    # The machines this runs on have bpf in the LSM list and refuse every
    # trampoline program: the doctor's own attempt fails like the daemon's.
    if props['Restriction'] == 'enforcing':
        assert checks['lsm-programs']['status'] == 'ok'
    elif checks['lsm']['status'] == 'ok' and checks['btf']['status'] == 'ok':
        assert checks['lsm-programs']['status'] == 'fail'
        assert 'refused' in checks['lsm-programs']['message']
        assert 'Restriction=permissive' in checks['lsm-programs']['fix']
        assert status == 1


def test_human_output_matches_json(daemon, environment):
    _, checks, doc = doctor_json(environment.address)
    p = run_doctor(environment.address)
    assert p.returncode == (1 if doc['failed'] else 0)
    lines = p.stdout.splitlines()
    label = {'ok': 'ok', 'warn': 'WARN', 'fail': 'FAIL', 'skipped': 'skip'}
    for check_id, check in checks.items():
        line = f'{label[check["status"]]:<4}  {check_id}: {check["message"]}'
        assert line in lines
        i = lines.index(line)
        if check['fix']:
            assert lines[i + 1] == f'      Fix: {check["fix"]}'
    ok = sum(c['status'] == 'ok' for c in checks.values())
    assert re.search(rf'^{doc["failed"]} failed, {doc["warnings"]} warnings?, {doc["skipped"]} skipped, {ok} ok\.$',
                     p.stdout, re.M)


@pytest.mark.nsresd_config(allocator={'RangeStart': 1048576, 'RangeEnd': 2097151})
def test_subid_ranges_overlapping_the_daemons_pool(daemon, environment, tmp_path):
    if not os.path.exists('/etc/subuid') or not os.path.exists('/etc/subgid'):
        pytest.skip('/etc/subuid or /etc/subgid is missing: nothing to bind-mount over')
    subuid = tmp_path / 'subuid'
    # Line 2 lies in the default pool but not in this daemon's; line 4 spans
    # two of its blocks.
    subuid.write_text('# comment\nalice:600000:65536\nbob:100000:65536\ncarol:1114000:200\n')
    subgid = tmp_path / 'subgid'
    subgid.write_text('alice:2097151:10\n')

    setup = [f'mount --bind {subuid} /etc/subuid', f'mount --bind {subgid} /etc/subgid']
    status, checks, _ = doctor_json(environment.address, setup=setup)
    c = checks['subid-ranges']
    assert c['status'] == 'warn'
    assert "2 subordinate id ranges overlap the running nsresd's pool 1048576-2097151" in c['message']
    assert "/etc/subuid:4: 'carol' 1114000-1114199" in c['message']
    assert "/etc/subgid:1: 'alice' 2097151-2097160" in c['message']
    assert 'alice:600000' not in c['message'] and "'bob'" not in c['message']
    assert 'skips the 3 blocks of 65536' in c['message']
    assert 'RangeStart=' in c['fix'] and '--del-subuids' in c['fix']

    # The host's files stay as they were.
    assert 'carol' not in open('/etc/subuid').read()


def test_sysctls_that_stop_user_namespaces(daemon, environment, tmp_path):
    max_userns = tmp_path / 'max_user_namespaces'
    max_userns.write_text('0\n')
    setup = ['mount -t tmpfs tmpfs /proc/sys/kernel',
             'echo 0 > /proc/sys/kernel/unprivileged_userns_clone',
             'echo 1 > /proc/sys/kernel/apparmor_restrict_unprivileged_userns',
             f'mount --bind {max_userns} /proc/sys/user/max_user_namespaces']
    status, checks, _ = doctor_json(environment.address, setup=setup)
    assert status == 1

    c = checks['unprivileged-userns-clone']
    assert c['status'] == 'fail' and 'is 0' in c['message']
    assert 'sysctl -w kernel.unprivileged_userns_clone=1' in c['fix']
    assert '/etc/sysctl.d/' in c['fix']

    c = checks['apparmor-userns']
    assert c['status'] == 'fail' and 'is 1' in c['message']
    assert 'userns,' in c['fix']
    # The profile names this binary.
    assert str(h.client_binary().resolve()) in c['fix']
    assert 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' in c['fix']

    c = checks['max-user-namespaces']
    assert c['status'] == 'fail' and 'is 0' in c['message']
    assert 'sysctl -w user.max_user_namespaces=' in c['fix']


def test_few_user_namespaces_warn(daemon, environment, tmp_path):
    max_userns = tmp_path / 'max_user_namespaces'
    max_userns.write_text('100\n')
    _, checks, _ = doctor_json(environment.address,
                               setup=[f'mount --bind {max_userns} /proc/sys/user/max_user_namespaces'])
    c = checks['max-user-namespaces']
    assert c['status'] == 'warn' and 'is 100' in c['message']


def test_systemd_nsresourced_present(daemon, environment):
    make_socket = shlex.join([shutil.which('python3') or '/usr/bin/python3', '-c',
                              'import socket; socket.socket(socket.AF_UNIX).bind('
                              '"/run/systemd/io.systemd.NamespaceResource")'])
    setup = ['mkdir -p /run/systemd',
             'mount -t tmpfs tmpfs /run/systemd',
             'mkdir -p /run/systemd/nsresource/registry',
             'touch /run/systemd/nsresource/registry/a.user /run/systemd/nsresource/registry/b.user',
             make_socket]
    _, checks, _ = doctor_json(environment.address, setup=setup)
    c = checks['other-allocator']
    assert c['status'] == 'warn'
    assert 'its socket /run/systemd/io.systemd.NamespaceResource exists' in c['message']
    assert 'its registry /run/systemd/nsresource/registry/ exists (2 entries)' in c['message']
    assert 'systemctl disable --now systemd-nsresourced.socket' in c['fix']


def test_bpf_missing_from_the_lsm_list(daemon, environment):
    setup = ['mount -t tmpfs tmpfs /sys/kernel/security',
             'echo lockdown,capability,landlock > /sys/kernel/security/lsm']
    status, checks, _ = doctor_json(environment.address, setup=setup)
    assert status == 1
    c = checks['lsm']
    assert c['status'] == 'fail'
    assert 'bpf is missing from the active LSM list (/sys/kernel/security/lsm): lockdown,capability,landlock' \
        in c['message']
    assert 'lsm=lockdown,capability,landlock,bpf ' in c['fix']


def test_no_system_bus(environment, tmp_path):
    address = f'unix:path={tmp_path}/no-bus-here'
    status, checks, _ = doctor_json(address)
    assert status == 1
    assert checks['daemon']['status'] == 'fail'
    assert 'not reachable' in checks['daemon']['message'] and address in checks['daemon']['message']
    for check in ('restriction', 'teardown-tracking'):
        assert checks[check]['status'] == 'skipped'
        assert 'not reachable' in checks[check]['message']
    # Without a daemon the pool comes from the configuration.
    assert 'the configured pool' in checks['subid-ranges']['message']


def test_bus_without_daemon(environment):
    status, checks, _ = doctor_json(environment.address)
    assert status == 1
    assert checks['daemon']['status'] == 'fail'
    assert 'not running' in checks['daemon']['message']
    assert 'systemctl enable --now nsresd.service' in checks['daemon']['fix']
    assert checks['restriction']['status'] == 'skipped'


def test_unprivileged_user(daemon, environment):
    # The build tree may be in a directory only root can enter.
    binary = environment.root / 'nsresctl-doctor'
    shutil.copy2(h.client_binary(), binary)
    binary.chmod(0o755)
    try:
        _, checks, _ = doctor_json(environment.address, user=NOBODY, binary=binary)
    finally:
        binary.unlink()
    c = checks['lsm-programs']
    assert c['status'] == 'skipped'
    assert 'root' in c['message']
    # What everyone can read is read all the same.
    assert checks['btf']['status'] == ('ok' if os.path.exists('/sys/kernel/btf/vmlinux') else 'fail')
    assert checks['daemon']['status'] == 'ok'


def test_doctor_takes_no_arguments(environment):
    p = run_doctor(environment.address, 'extra')
    assert p.returncode == 2
    assert "'doctor' takes no arguments" in p.stderr
