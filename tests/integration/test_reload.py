# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reloading the configuration (SIGHUP, or the Reload method with the manage
action): limits and Restriction= apply to the next calls, a bad file leaves
the running configuration in place and is named with its line, and a changed
pool waits for a restart: ranges already handed out may lie outside it."""

import os
import signal
import socket
import time

import pytest

import harness as h
from harness import NOBODY

RELOAD_ERROR = h.ERROR + 'BadConfiguration'


def reload(client, flags=0):
    client.call(h.MANAGER_PATH, h.MANAGER_IFACE, 'Reload', 't', (flags,))


def allocate(ns, name):
    return lambda c: c.allocate(name, ns)


def wait_log(daemon, text, start=0, timeout=5):
    return h.wait_until(lambda: text in daemon.log()[start:], timeout, what=f'{text!r} in the log')


def test_sighup_applies_owner_limit(daemon_factory, userns):
    daemon = daemon_factory(h.config_text(allocator={'MaxNamespacesPerOwner': 1}))
    h.as_user(NOBODY, allocate(userns(NOBODY), 'first'))
    e = h.expect_error(h.ERROR + 'TooManyNamespaces', NOBODY, allocate(userns(NOBODY), 'second'))
    assert 'limit is 1' in e.message

    daemon.config_path.write_text(h.config_text(allocator={'MaxNamespacesPerOwner': 2}))
    mark = len(daemon.log())
    os.kill(daemon.pid, signal.SIGHUP)
    wait_log(daemon, 'Configuration reloaded', mark)
    assert 'MaxNamespacesPerOwner=1->2' in daemon.log()[mark:]

    h.as_user(NOBODY, allocate(userns(NOBODY), 'second'))
    e = h.expect_error(h.ERROR + 'TooManyNamespaces', NOBODY, allocate(userns(NOBODY), 'third'))
    assert 'limit is 2' in e.message


def test_sighup_notifies_reloading_then_ready(daemon):
    # The daemon's NOTIFY_SOCKET path is free again once it is ready: listen there.
    path = daemon.dir / 'notify'
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    notify.bind(str(path))
    try:
        notify.settimeout(5)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        os.kill(daemon.pid, signal.SIGHUP)
        first = dict(line.split('=', 1) for line in notify.recv(4096).decode().splitlines())
        second = dict(line.split('=', 1) for line in notify.recv(4096).decode().splitlines())
    finally:
        notify.close()
        path.unlink(missing_ok=True)
    assert first['RELOADING'] == '1'
    assert before <= int(first['MONOTONIC_USEC']) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert second['READY'] == '1'


def test_reload_method_applies_dropins(daemon, userns, root):
    h.as_user(NOBODY, allocate(userns(NOBODY), 'first'))
    dropins = daemon.config_path.with_name(daemon.config_path.name + '.d')
    dropins.mkdir()
    (dropins / '50-limit.conf').write_text('[Allocator]\nMaxNamespacesPerOwner=1\n')
    reload(root)
    e = h.expect_error(h.ERROR + 'TooManyNamespaces', NOBODY, allocate(userns(NOBODY), 'second'))
    assert 'limit is 1' in e.message


def test_bad_configuration_keeps_the_running_one(daemon_factory, userns, root):
    daemon = daemon_factory(h.config_text(allocator={'MaxNamespacesPerOwner': 1}))
    daemon.config_path.write_text('[Allocator]\nMaxNamespacesPerOwner=5\nMaxRequestsPerOwner=many\n')
    with pytest.raises(h.BusError) as e:
        reload(root)
    assert e.value.name == RELOAD_ERROR
    assert f'{daemon.config_path}:3:' in e.value.message
    assert "'many'" in e.value.message

    mark = len(daemon.log())
    os.kill(daemon.pid, signal.SIGHUP)
    wait_log(daemon, f'{daemon.config_path}:3:', mark)
    assert daemon.running

    h.as_user(NOBODY, allocate(userns(NOBODY), 'first'))
    e = h.expect_error(h.ERROR + 'TooManyNamespaces', NOBODY, allocate(userns(NOBODY), 'second'))
    assert 'limit is 1' in e.message


def test_unknown_flags(daemon, root):
    with pytest.raises(h.BusError) as e:
        reload(root, flags=1)
    assert e.value.name == h.DBUS_ERROR + 'InvalidArgs'


def test_users_need_manage(daemon, polkit):
    e = h.expect_error(h.DBUS_ERROR + 'AccessDenied', NOBODY, reload)
    assert 'reload the configuration' in e.message
    assert h.ACTION_MANAGE in polkit.log()

    polkit.allow(h.ACTION_MANAGE)
    h.as_user(NOBODY, reload)


def test_pool_change_waits_for_restart(daemon, root):
    before = root.manager_properties()
    daemon.config_path.write_text(h.config_text(allocator={'RangeStart': 2 * 65536 * 16,
                                                           'MaxNamespacesPerOwner': 7}))
    mark = len(daemon.log())
    reload(root)
    after = root.manager_properties()
    assert (after['RangeStart'], after['RangeEnd']) == (before['RangeStart'], before['RangeEnd'])
    assert after['FreeRanges'] == before['FreeRanges']
    log = daemon.log()[mark:]
    assert 'restart it to apply the new one' in log
    assert 'MaxNamespacesPerOwner=256->7' in log


@pytest.mark.nsresd_config(restriction='enforce')
def test_enforce_to_permissive(daemon, userns, root):
    # This host cannot run BPF LSM programs: enforce refuses transient ranges.
    assert root.manager_property('Restriction') == 'unavailable'
    h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(userns(NOBODY), 'refused'))

    daemon.config_path.write_text(h.config_text(restriction='permissive'))
    reload(root)
    a = h.as_user(NOBODY, allocate(userns(NOBODY), 'allowed'))
    assert a.name == '65534-allowed'

    daemon.config_path.write_text(h.config_text(restriction='enforce'))
    reload(root)
    h.expect_error(h.ERROR + 'NotSupported', NOBODY, allocate(userns(NOBODY), 'refused'))


def test_restriction_off_and_on_again(daemon, userns, root, signals):
    assert root.manager_property('Restriction') == 'unavailable'

    daemon.config_path.write_text(h.config_text(restriction='off'))
    reload(root)
    assert root.manager_property('Restriction') == 'off'
    signals.wait_for(lambda e: e[1] == 'PropertiesChanged' and 'Restriction' in (e[3][1] or {}), 5,
                     what='PropertiesChanged for Restriction')
    h.as_user(NOBODY, allocate(userns(NOBODY), 'unrestricted'))

    daemon.config_path.write_text(h.config_text(restriction='permissive'))
    reload(root)
    assert root.manager_property('Restriction') == 'unavailable'
