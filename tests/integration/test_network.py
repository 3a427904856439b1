# SPDX-License-Identifier: LGPL-2.1-or-later
"""AddNetworkToUserNamespace and AddTapToUserNamespace: a namespace with a
transient range gets a veth pair whose peer the service creates right inside
the network namespace the caller passes (one its user namespace owns), or a
tap device owned by its first ids. The host end is the host's: down, without
addresses, IPv6 address generation off. Links are recorded before they
exist and deleted once the namespace is dead.

Callers are `nobody`, whose sandbox process makes its user namespace and a
network namespace owned by it in one unshare(). Root calls where only the
number of links matters: taps live only as long as their fd, and a forked
caller's fds end with it."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness as h
from harness import DAEMON_USER, NOBODY

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
FILE_EXISTS = h.DBUS_ERROR + 'FileExists'
INVALID_ARGS = h.DBUS_ERROR + 'InvalidArgs'
MAX_NETWORK_INTERFACES = 16
HOST_NAME = re.compile(r'^ns-[0-9a-f]{12}$')


@pytest.fixture
def box():
    """make(user=NOBODY, name='box', allocate=True) -> NetBox; all are killed after the test."""
    made = []

    def make(**kwargs):
        b = h.NetBox(**kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def taps():
    """Tap fds the test holds; closed after it (which removes the devices)."""
    fds = []
    yield fds
    for fd in fds:
        os.close(fd)


@pytest.fixture(autouse=True)
def no_links_left_behind():
    """Links a test made go when it ends, whatever happened: fixtures end the
    namespaces (the kernel deletes their veths), and any host end left after
    that is deleted here."""
    before = host_links()
    yield
    try:
        h.wait_until(lambda: not (host_links() - before), 5, what='the test\'s links to go')
    finally:
        for name in host_links() - before:
            subprocess.run(['ip', 'link', 'delete', name], check=False, capture_output=True)


# ---- helpers -------------------------------------------------------------------------

def host_links():
    return {p.name for p in Path('/sys/class/net').iterdir() if p.name.startswith('ns-')}


def link_exists(name):
    return Path('/sys/class/net', name).exists()


def ip_json(*args):
    return json.loads(subprocess.run(['ip', '-j', *args], check=True, capture_output=True, text=True).stdout)


def add_network(b, ifname='', flags=0, netns_fd=None):
    def call(client):
        return client.add_network(b.fd, b.netns_fd if netns_fd is None else netns_fd, ifname, flags)
    return call


def network_interfaces(root, path):
    return root.namespace_properties(path)['NetworkInterfaces']


def registry_entry(daemon, ns_id):
    files = [f for f in daemon.registry_files() if f.startswith(f'{ns_id}-')]
    assert len(files) <= 1, files
    if not files:
        return None
    return json.loads((daemon.state_dir / 'registry' / files[0]).read_text())


def wait_links_gone(names, timeout=5.0):
    # A veth goes asynchronously once its network namespace is freed.
    h.wait_until(lambda: not any(link_exists(n) for n in names), timeout, what=f'{sorted(names)} to go')


# ---- veth ----------------------------------------------------------------------------

def test_the_peer_appears_inside_under_the_name_asked(daemon, box, root):
    b = box()
    host, inside = h.as_user(NOBODY, add_network(b, 'eth7'))
    assert HOST_NAME.match(host), host
    assert inside == 'eth7'
    assert 'eth7' in b.inside()
    assert link_exists(host)
    # The veth's other end is the host end.
    info = ip_json('-d', 'link', 'show', 'dev', host)[0]
    assert info['linkinfo']['info_kind'] == 'veth'
    out = subprocess.run(['nsenter', f'--net=/proc/{b.pid}/ns/net', 'ip', '-j', '-d', 'link', 'show', 'dev', 'eth7'],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)[0]['linkinfo']['info_kind'] == 'veth'


def test_the_host_end_is_down_and_has_no_addresses(daemon, box):
    b = box()
    host, _ = h.as_user(NOBODY, add_network(b))
    info = ip_json('link', 'show', 'dev', host)[0]
    assert 'UP' not in info['flags']
    assert info['operstate'] == 'DOWN'
    assert ip_json('addr', 'show', 'dev', host)[0]['addr_info'] == []
    conf = Path('/proc/sys/net/ipv6/conf', host)
    assert (conf / 'addr_gen_mode').read_text().strip() == '1'     # none
    assert (conf / 'accept_ra').read_text().strip() == '0'
    # Even brought up, it gets no IPv6 link-local address.
    subprocess.run(['ip', 'link', 'set', 'dev', host, 'up'], check=True)
    time.sleep(0.1)
    assert not [a for a in ip_json('addr', 'show', 'dev', host)[0]['addr_info'] if a['family'] == 'inet6']


def test_the_default_name_is_host0(daemon, box):
    b = box()
    host, inside = h.as_user(NOBODY, add_network(b, ''))
    assert inside == 'host0'
    assert 'host0' in b.inside()
    assert HOST_NAME.match(host)


def test_host_names_differ_by_namespace_and_name(daemon, box):
    one, two = box(name='one'), box(name='two')
    a, _ = h.as_user(NOBODY, add_network(one))
    b, _ = h.as_user(NOBODY, add_network(two))
    c, _ = h.as_user(NOBODY, add_network(one, 'eth1'))
    assert len({a, b, c}) == 3


@pytest.mark.parametrize('name', ['a/b', 'a:b', 'a b', '.', '..', 'x' * 16, 'eth%d', 'tab\t'])
def test_an_invalid_interface_name(daemon, box, root, name):
    b = box()
    e = h.expect_error(h.ERROR + 'InvalidInterfaceName', NOBODY, add_network(b, name))
    assert '15' in e.message
    assert network_interfaces(root, b.path) == []
    assert b.inside() == {'lo'}


def test_a_name_taken_inside(daemon, box, root):
    b = box()
    # Every network namespace has "lo".
    e = h.expect_error(FILE_EXISTS, NOBODY, add_network(b, 'lo'))
    assert "'lo'" in e.message
    h.as_user(NOBODY, add_network(b, 'eth0'))
    h.expect_error(FILE_EXISTS, NOBODY, add_network(b, 'eth0'))
    # The failed calls left no record and no link.
    assert len(network_interfaces(root, b.path)) == 1
    assert len(registry_entry(daemon, b.id)['netifs']) == 1
    assert b.inside() == {'lo', 'eth0'}


def test_a_network_namespace_of_another_user_namespace(daemon, box, root):
    b, other = box(name='b'), box(name='other')
    e = h.expect_error(h.ERROR + 'WrongNetworkNamespace', NOBODY, add_network(b, netns_fd=other.netns_fd))
    assert '65534-b' in e.message
    # The host's own, which the caller can open too.
    host_netns = os.open('/proc/self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
    try:
        h.expect_error(h.ERROR + 'WrongNetworkNamespace', NOBODY, add_network(b, netns_fd=host_netns))
    finally:
        os.close(host_netns)
    assert network_interfaces(root, b.path) == []
    assert other.inside() == {'lo'}


@pytest.mark.parametrize('kind', ['userns', 'file', 'mntns'])
def test_not_a_network_namespace(daemon, box, root, tmp_path, kind):
    b = box()
    if kind == 'userns':
        fd = os.dup(b.fd)
    elif kind == 'mntns':
        fd = os.open('/proc/self/ns/mnt', os.O_RDONLY | os.O_CLOEXEC)
    else:
        (tmp_path / 'f').write_text('')
        fd = os.open(tmp_path / 'f', os.O_RDONLY | os.O_CLOEXEC)
    try:
        h.expect_error(h.ERROR + 'NotANetworkNamespace', NOBODY, add_network(b, netns_fd=fd))
    finally:
        os.close(fd)
    assert network_interfaces(root, b.path) == []


@pytest.mark.parametrize('flags', [1, 1 << 63])
def test_unknown_flags(daemon, box, root, flags):
    b = box()
    h.expect_error(INVALID_ARGS, NOBODY, add_network(b, flags=flags))
    with pytest.raises(h.BusError) as e:
        root.add_tap(b.fd, flags)
    assert e.value.name == INVALID_ARGS


def test_namespace_not_registered(daemon, box):
    b = box(allocate=False)
    h.expect_error(h.ERROR + 'NotRegistered', NOBODY, add_network(b))
    h.expect_error(h.ERROR + 'NotRegistered', NOBODY, lambda c: c.add_tap(b.fd))


@pytest.mark.parametrize('kind', ['self', 'size-1', 'map-caller'])
def test_namespace_without_a_transient_range(daemon, userns, root, kind):
    ns, path = h.publish_kind(userns, NOBODY, kind)
    netns = os.open('/proc/self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
    try:
        if kind == 'self':
            e = h.expect_error(h.ERROR + 'NoUserRange', NOBODY, lambda c: c.add_network(ns, netns))
            assert 'self' in e.message
            h.expect_error(h.ERROR + 'NoUserRange', NOBODY, lambda c: c.add_tap(ns))
        else:
            # Transient ranges of any size: the netns is what is wrong here.
            h.expect_error(h.ERROR + 'WrongNetworkNamespace', NOBODY, lambda c: c.add_network(ns, netns))
    finally:
        os.close(netns)
    assert network_interfaces(root, path) == []


# ---- tap ------------------------------------------------------------------------------

def test_a_tap_for_the_caller(daemon, box, root):
    b = box()

    def call(client):
        host, fd = client.add_tap(b.fd)
        try:
            # While the caller holds the fd.
            sysfs = Path('/sys/class/net', host)
            return (host, int((sysfs / 'owner').read_text()), int((sysfs / 'group').read_text()),
                    (sysfs / 'tun_flags').read_text().strip(), os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    host, owner, group, flags, _ = h.as_user(NOBODY, call)
    assert HOST_NAME.match(host)
    assert (owner, group) == (b.uid_start, b.allocation.gid_start)
    # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
    assert int(flags, 16) & 0x5002 == 0x5002
    # Not persistent: gone with the caller's fd.
    h.wait_until(lambda: not link_exists(host), 5, what='the tap to go with its fd')


def test_a_tap_fd_works_and_counts(daemon, box, root, taps):
    b = box()
    host, fd = root.add_tap(b.fd)
    taps.append(fd)
    assert link_exists(host)
    assert int(Path('/sys/class/net', host, 'owner').read_text()) == b.uid_start
    info = ip_json('link', 'show', 'dev', host)[0]
    assert 'UP' not in info['flags']
    assert network_interfaces(root, b.path) == [host]
    assert registry_entry(daemon, b.id)['netifs'] == [{'host': host, 'kind': 'tap', 'inside': 'tap0'}]
    second, fd2 = root.add_tap(b.fd)
    taps.append(fd2)
    assert second != host
    assert registry_entry(daemon, b.id)['netifs'][1]['inside'] == 'tap1'


# ---- limits ---------------------------------------------------------------------------

def test_the_17th_link_fails(daemon, box, root, taps):
    b = box()
    hosts = []
    for i in range(MAX_NETWORK_INTERFACES // 2):
        hosts.append(root.add_network(b.fd, b.netns_fd, f'eth{i}')[0])
        host, fd = root.add_tap(b.fd)
        taps.append(fd)
        hosts.append(host)
    assert len(set(hosts)) == MAX_NETWORK_INTERFACES
    assert sorted(network_interfaces(root, b.path)) == sorted(hosts)
    e = h.expect_error(h.ERROR + 'TooManyNetworkInterfaces', NOBODY, add_network(b, 'eth99'))
    assert str(MAX_NETWORK_INTERFACES) in e.message
    with pytest.raises(h.BusError) as e:
        root.add_tap(b.fd)
    assert e.value.name == h.ERROR + 'TooManyNetworkInterfaces'
    assert 'eth99' not in b.inside()

    # A tap whose fd is closed is gone, and so is its slot.
    os.close(taps.pop())
    h.wait_until(lambda: not link_exists(hosts[-1]), 5, what='the tap to go')
    h.as_user(NOBODY, add_network(b, 'eth99'))
    assert 'eth99' in b.inside()


@pytest.mark.nsresd_config(delegation={'MaxNetworkInterfacesPerOwner': 3})
def test_the_limit_per_owner(daemon, box, root):
    one, two = box(name='one'), box(name='two')
    h.as_user(NOBODY, add_network(one, 'a'))
    h.as_user(NOBODY, add_network(one, 'b'))
    h.as_user(NOBODY, add_network(two, 'a'))
    e = h.expect_error(h.ERROR + 'TooManyNetworkInterfaces', NOBODY, add_network(two, 'b'))
    assert 'MaxNetworkInterfacesPerOwner' in e.message
    # Another owner is not held back by nobody's links.
    other = box(user=DAEMON_USER, name='other')
    h.as_user(DAEMON_USER, add_network(other))
    # A dead namespace gives its slots back.
    one.stop()
    h.wait_until(lambda: registry_entry(daemon, one.id) is None, 5, what='the namespace to be released')
    h.as_user(NOBODY, add_network(two, 'b'))


@pytest.mark.nsresd_config(delegation={'MaxNetworkInterfaces': 2})
def test_calls_waiting_for_polkit_hold_their_slots(daemon, polkit, box, root):
    b = box()
    polkit.hang()
    calls = [h.spawn_as_user(NOBODY, add_network(b, f'eth{i}')) for i in range(2)]
    try:
        h.wait_until(lambda: len(polkit.mock.GetMethodCalls('CheckAuthorization')) >= 2, 30,
                     what='both calls to wait for polkit')
        assert network_interfaces(root, b.path) == []
        h.expect_error(h.ERROR + 'TooManyNetworkInterfaces', NOBODY, add_network(b, 'eth2'))
        polkit.release()
        results = [c.result() for c in calls]
    finally:
        for c in calls:
            c.kill()
    assert sorted(inside for _, inside in results) == ['eth0', 'eth1']
    assert b.inside() == {'lo', 'eth0', 'eth1'}


# ---- authorization ---------------------------------------------------------------------

def test_polkit_says_no(daemon, polkit, box, root):
    b = box()
    polkit.allow(h.ACTION_ALLOCATE)
    e = h.expect_error(ACCESS_DENIED, NOBODY, add_network(b))
    assert 'veth' in e.message
    e = h.expect_error(ACCESS_DENIED, NOBODY, lambda c: c.add_tap(b.fd))
    assert 'tap' in e.message
    assert network_interfaces(root, b.path) == []
    assert b.inside() == {'lo'}
    checks = [line for line in polkit.log().splitlines() if 'CheckAuthorization' in line]
    assert h.ACTION_DELEGATE_NETIF in checks[-1]
    # The slot is free again.
    polkit.allow_defaults()
    h.as_user(NOBODY, add_network(b))


@pytest.mark.nsresd_config(delegation={'MaxNetworkInterfaces': 1})
def test_root_needs_no_polkit(daemon, polkit, box, root):
    b = box()
    polkit.deny_all()
    host, inside = root.add_network(b.fd, b.netns_fd, '')
    assert inside == 'host0' and link_exists(host)


def test_a_namespace_of_another_user(daemon, polkit, box, root):
    b = box()
    e = h.expect_error(h.ERROR + 'NotOwner', DAEMON_USER, add_network(b))
    assert str(h.passwd(NOBODY).pw_uid) in e.message
    assert network_interfaces(root, b.path) == []
    assert b.inside() == {'lo'}
    # An administrator ('manage') may.
    polkit.allow(h.ACTION_MANAGE)
    host, _ = h.as_user(DAEMON_USER, add_network(b))
    assert network_interfaces(root, b.path) == [host]


# ---- the record ------------------------------------------------------------------------

def test_the_registry_and_the_property_list_the_links(daemon, box, root, signals, taps):
    b = box()
    assert registry_entry(daemon, b.id)['netifs'] == []
    veth, _ = h.as_user(NOBODY, add_network(b, 'eth0'))
    tap, fd = root.add_tap(b.fd)
    taps.append(fd)
    assert registry_entry(daemon, b.id)['netifs'] == [
        {'host': veth, 'kind': 'veth', 'inside': 'eth0'},
        {'host': tap, 'kind': 'tap', 'inside': 'tap0'},
    ]
    assert network_interfaces(root, b.path) == [veth, tap]
    signals.wait_for(lambda e: e[1] == 'PropertiesChanged' and e[2] == b.path and
                     e[3][1].get('NetworkInterfaces') == [veth, tap], what='PropertiesChanged')


def test_links_survive_a_restart(daemon, box, root):
    b = box()
    host, _ = h.as_user(NOBODY, add_network(b))
    daemon.restart()
    assert network_interfaces(root, b.path) == [host]
    assert link_exists(host)
    b.stop()
    wait_links_gone([host])
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')


# ---- teardown ---------------------------------------------------------------------------

def test_teardown_deletes_the_links(daemon, box, root, taps):
    b = box()
    veth, _ = h.as_user(NOBODY, add_network(b, 'eth0'))
    tap, fd = root.add_tap(b.fd)
    # Someone still holds the tap's fd: the service deletes it all the same.
    taps.append(fd)
    assert link_exists(veth) and link_exists(tap)
    b.stop()
    wait_links_gone([veth, tap])
    h.wait_until(lambda: registry_entry(daemon, b.id) is None, 5, what='the registry entry to go')
    assert f"'{tap}'" in daemon.log()


def test_a_namespace_dead_while_the_service_was_down(daemon, box, root, taps):
    b = box()
    veth, _ = h.as_user(NOBODY, add_network(b))
    tap, fd = root.add_tap(b.fd)
    taps.append(fd)
    daemon.stop()
    b.stop()
    daemon.start()
    wait_links_gone([veth, tap])
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')


# ---- crashes ------------------------------------------------------------------------------

def crash_during(daemon, call):
    with pytest.raises(h.BusError):
        h.as_user(NOBODY, call)
    assert daemon.wait_exit(5) == -signal.SIGKILL


@pytest.mark.nsresd_fault('kill-after-netif-record:65534-box')
def test_crash_after_recording_a_live_namespace(daemon, box, root):
    b = box()
    before = host_links()
    crash_during(daemon, add_network(b, 'eth0'))
    recorded = registry_entry(daemon, b.id)['netifs']
    assert len(recorded) == 1 and recorded[0]['inside'] == 'eth0'
    assert not link_exists(recorded[0]['host'])

    daemon.start()
    # The link was never made: the record goes, and the call can be made again.
    assert registry_entry(daemon, b.id)['netifs'] == []
    assert network_interfaces(root, b.path) == []
    assert host_links() == before
    host, _ = h.as_user(NOBODY, add_network(b, 'eth0'))
    assert host == recorded[0]['host']
    assert 'eth0' in b.inside()


@pytest.mark.nsresd_fault('kill-after-netif-record:65534-box')
def test_crash_after_recording_a_dead_namespace(daemon, box, root):
    b = box()
    before = host_links()
    crash_during(daemon, add_network(b))
    b.stop()
    daemon.start()
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')
    assert host_links() == before


# ---- nsresctl ----------------------------------------------------------------------------

@pytest.fixture
def nsresctl(environment):
    """nsresctl as nobody, from a copy every user can execute."""
    path = environment.root / 'nsresctl-net'
    path.write_bytes(Path(h.client_binary()).read_bytes())
    path.chmod(0o755)
    pw = h.passwd(NOBODY)
    env = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'LANG': 'C.UTF-8', 'HOME': '/',
           'DBUS_SYSTEM_BUS_ADDRESS': environment.address}

    def run(*args, timeout=30):
        return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=timeout,
                              user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env, cwd='/')
    yield run
    path.unlink()


def test_nsresctl_run_net(daemon, nsresctl):
    before = host_links()
    r = nsresctl('run', '--net', '--', 'cat', '/proc/net/dev')
    assert r.returncode == 0, r.stderr
    names = {line.split(':')[0].strip() for line in r.stdout.splitlines()[2:]}
    assert names == {'lo', 'host0'}
    # The command's namespace is gone, and so is its link.
    h.wait_until(lambda: host_links() == before, 5, what='the link to go')
    h.wait_until(lambda: daemon.registry_files() == [], 5, what='the registry to empty')


def test_nsresctl_run_net_with_a_name(daemon, nsresctl):
    r = nsresctl('-v', 'run', '--net', '--ifname', 'veth-in', '--', 'cat', '/proc/net/dev')
    assert r.returncode == 0, r.stderr
    assert 'veth-in:' in r.stdout
    assert re.search(r"ns-[0-9a-f]{12}", r.stderr), r.stderr
    r = nsresctl('run', '--ifname', 'x', '--', 'true')
    assert r.returncode == 2 and '--net' in r.stderr
    r = nsresctl('run', '--net', '--ifname', 'a/b', '--', 'true')
    assert r.returncode == 1 and 'nterface name' in r.stderr


def test_nsresctl_status_shows_the_links(daemon, box, nsresctl):
    b = box(name='shown')
    host, _ = h.as_user(NOBODY, add_network(b))
    r = nsresctl('status', 'shown')
    assert r.returncode == 0, r.stderr
    assert f'NetworkInterfaces: {host}' in r.stdout.splitlines()
    r = nsresctl('status', '--json', 'shown')
    assert json.loads(r.stdout)['NetworkInterfaces'] == [host]
