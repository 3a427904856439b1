# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end with the real polkitd instead of the mock.

polkitd runs on a bus of its own (the session's bus has the mock on
org.freedesktop.PolicyKit1) and reads the project's policy from
/usr/share/polkit-1/actions/, the only place it looks. Without logind the
subject is in no session, so only the allow_any defaults decide:
allocate-user-range and register-user-namespace are 'yes'; 'manage' is
auth_admin_keep, which, with no authentication agent, polkitd answers with a
challenge."""

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

POLKITD = Path('/usr/lib/polkit-1/polkitd')
POLKIT_BUS_POLICY = Path('/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf')
ACTIONS_DIR = Path('/usr/share/polkit-1/actions')
POLICY_NAME = 'org.freedesktop.NamespaceResource1.policy'

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
INTERACTIVE = h.DBUS_ERROR + 'InteractiveAuthorizationRequired'
POLKIT_ERRORS = {ACCESS_DENIED, INTERACTIVE}

# PolkitImplicitAuthorization: not_authorized 0, auth_self 1, auth_admin 2,
# auth_self_keep 3, auth_admin_keep 4, yes 5.
IMPLICIT_AUTH_ADMIN_KEEP = 4
IMPLICIT_YES = 5


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def register(ns, name='x', **kwargs):
    return lambda c: c.register(name, ns, **kwargs)


# ---- module set-up: the policy file, a bus, polkitd ---------------------------------------

@pytest.fixture(scope='module')
def installed_policy():
    """The built policy in polkitd's actions directory for this module.

    Installed only if it is missing or different; what was there before is
    put back afterwards (a file we added is removed again)."""
    source = h.build_dir() / 'polkit' / POLICY_NAME
    if not source.is_file():
        pytest.fail(f'{source} was not built', pytrace=False)
    target = ACTIONS_DIR / POLICY_NAME
    wanted = source.read_bytes()
    original = None
    if target.exists():
        original = (target.read_bytes(), os.stat(target).st_mode & 0o7777)
        if original[0] == wanted:
            yield target
            return

    def put(data, mode):
        # Written next to it and renamed: polkitd watches the directory and
        # must never read half a file. The temporary name is not *.policy.
        tmp = ACTIONS_DIR / f'.{POLICY_NAME}.nsresd-test'
        with open(tmp, 'wb') as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.rename(tmp, target)

    ACTIONS_DIR.mkdir(parents=True, exist_ok=True)
    put(wanted, 0o644)
    try:
        yield target
    finally:
        if original is None:
            target.unlink(missing_ok=True)
        else:
            put(*original)


@pytest.fixture(scope='module')
def polkit_bus(environment):
    """A second system-like bus on which the polkitd user may own its name.
    While it is up, clients made without an address (as_user) use it."""
    if not POLKITD.exists():
        pytest.skip(f'{POLKITD} is not installed (Debian package polkitd)')
    if not POLKIT_BUS_POLICY.exists():
        pytest.skip(f'{POLKIT_BUS_POLICY} is missing (Debian package polkitd)')
    bus = h.Environment(primary=False, extra_policies=[POLKIT_BUS_POLICY])
    try:
        bus.start()
        yield bus
    finally:
        bus.close()
    assert h.bus_address() == environment.address


@pytest.fixture(scope='module')
def polkitd(environment, polkit_bus, installed_policy):
    """The real polkitd, started as root; it drops to the polkitd user."""
    log_path = environment.logs / 'polkitd-real.log'
    env = {k: v for k, v in os.environ.items() if not k.startswith('DBUS_')}
    env['DBUS_SYSTEM_BUS_ADDRESS'] = polkit_bus.address
    with open(log_path, 'ab') as log:
        process = subprocess.Popen([str(POLKITD)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=env)
    client = h.Client(polkit_bus.address)
    try:
        def owned():
            if process.poll() is not None:
                raise AssertionError(f'polkitd exited with {process.returncode}:\n'
                                     f'{log_path.read_text(errors="replace")}')
            return client.name_has_owner(h.POLKIT_NAME)

        h.wait_until(owned, 15, interval=0.05, what='polkitd to own org.freedesktop.PolicyKit1')
        yield process, log_path
    finally:
        client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def bus_client(polkit_bus):
    client = h.Client(polkit_bus.address)
    yield client
    client.close()


@pytest.fixture
def nsresd(environment, polkit_bus, polkitd, request, attach_log):
    """A fresh daemon on the polkitd bus, for each test."""
    attach_log(polkitd[1])
    assert h.bus_address() == polkit_bus.address
    d = h.Daemon(polkit_bus, request.node.name, h.config_text())
    # Kept with the session's logs: this bus' directory goes with the module.
    d.log_path = environment.logs / f'nsresd-real-polkit-{h.safe_file_name(request.node.name)}.log'
    attach_log(d.log_path)
    try:
        d.start()
        yield d
        pid = d.pid
        rc = d.stop(timeout=5)
        assert rc == 0, f'nsresd (pid {pid}) ended with {rc} on SIGTERM, expected 0'
    finally:
        d.cleanup()


# ---- the tests ---------------------------------------------------------------------------------

def test_the_authority_is_the_real_polkitd(polkitd, bus_client):
    owner = bus_client.bus.get_name_owner(h.POLKIT_NAME)
    uid = int(bus_client.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                           'org.freedesktop.DBus', 'GetConnectionUnixUser', 's', (owner,)))
    assert uid == pwd.getpwnam('polkitd').pw_uid
    xml = str(bus_client.bus.call_blocking(h.POLKIT_NAME, h.POLKIT_PATH,
                                           'org.freedesktop.DBus.Introspectable', 'Introspect', '', ()))
    assert h.POLKIT_IFACE in xml
    assert h.MOCK_IFACE not in xml


def test_the_policy_is_known_to_polkitd(polkitd, bus_client):
    # (action_id, description, message, vendor_name, vendor_url, icon_name,
    #  implicit_any, implicit_inactive, implicit_active, annotations)
    actions = bus_client.bus.call_blocking(h.POLKIT_NAME, h.POLKIT_PATH, h.POLKIT_IFACE,
                                           'EnumerateActions', 's', ('',))
    defaults = {str(a[0]): (int(a[6]), int(a[7]), int(a[8])) for a in actions
                if str(a[0]).startswith(h.BUS_NAME + '.')}
    assert defaults[h.ACTION_ALLOCATE] == (IMPLICIT_YES,) * 3
    assert defaults[h.ACTION_REGISTER] == (IMPLICIT_YES,) * 3
    assert defaults[h.ACTION_DELEGATE_CGROUP] == (IMPLICIT_YES,) * 3
    assert defaults[h.ACTION_MANAGE] == (IMPLICIT_AUTH_ADMIN_KEEP,) * 3
    assert defaults[h.ACTION_DELEGATE_MOUNT] == (IMPLICIT_AUTH_ADMIN_KEEP,) * 3


def test_allocation_with_a_fresh_namespace(nsresd, userns, bus_client):
    ns = userns(NOBODY)
    free = bus_client.manager_property('FreeRanges')
    a = h.as_user(NOBODY, allocate(ns, name='fresh'))
    assert a.name == '65534-fresh'
    assert ns.uid_map() == [(0, a.uid_start, BLOCK)]
    assert ns.gid_map() == [(0, a.gid_start, BLOCK)]
    props = bus_client.namespace_properties(a.path)
    assert (props['Owner'], props['Kind'], props['Id']) == (65534, 'transient', ns.id)
    assert [e.path for e in bus_client.list()] == [a.path]
    assert len(nsresd.registry_files()) == 1
    assert bus_client.manager_property('FreeRanges') == free - 1


def test_registration_of_a_self_mapped_namespace(nsresd, userns, bus_client):
    ns = userns(NOBODY, map_self=True)
    r = h.as_user(NOBODY, register(ns, name='mine'))
    assert r.name == '65534-mine'
    props = bus_client.namespace_properties(r.path)
    assert (props['Owner'], props['Kind'], props['Id']) == (65534, 'registered', ns.id)
    assert ns.uid_map() == [(0, 65534, 1)]
    assert len(nsresd.registry_files()) == 1


def _assert_nothing_left(nsresd, bus_client, ns, free):
    assert ns.uid_map() == []
    assert ns.gid_map() == []
    assert bus_client.list() == []
    assert bus_client.namespace_paths() == []
    assert nsresd.registry_files() == []
    assert bus_client.manager_property('FreeRanges') == free


def test_someone_elses_namespace_is_refused(nsresd, userns, bus_client):
    # 'manage' is auth_admin_keep: no agent, no interaction allowed, so
    # polkitd answers "not authorized, but a challenge would help".
    ns = userns(DAEMON_USER)
    free = bus_client.manager_property('FreeRanges')
    e = h.expect_error(INTERACTIVE, NOBODY, allocate(ns, name='theirs'))
    assert e.name in POLKIT_ERRORS
    assert e.message
    _assert_nothing_left(nsresd, bus_client, ns, free)
    # The refusal is logged, under the name qualified by the namespace's owner.
    assert '1-theirs' in nsresd.log()


def test_a_mount_needs_an_admin(nsresd, userns, tmpfs, bus_client):
    # delegate-mount is auth_admin_keep: even the namespace's owner is asked.
    ns = userns(NOBODY)
    path = h.as_user(NOBODY, allocate(ns, name='mounting')).path
    mount = tmpfs()
    e = h.expect_error(INTERACTIVE, NOBODY, lambda c: c.add_mount(ns, mount.fd))
    assert 'mounting' in e.message
    assert bus_client.namespace_properties(path)['Mounts'] == []
    # Root is not asked.
    bus_client.add_mount(ns, mount.fd)
    assert bus_client.namespace_properties(path)['Mounts'] == [mount.id()]


def _allocate_allowing_interaction(client, fd, name):
    """AllocateUserRange with ALLOW_INTERACTIVE_AUTHORIZATION set (GDBus:
    dbus-python cannot set that header flag). Returns the final name, or
    raises BusError."""
    from gi.repository import Gio, GLib

    conn = Gio.DBusConnection.new_for_address_sync(
        h.bus_address(),
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    try:
        fds = Gio.UnixFDList.new()
        index = fds.append(fd)
        try:
            reply, _ = conn.call_with_unix_fd_list_sync(
                h.BUS_NAME, h.MANAGER_PATH, h.MANAGER_IFACE, 'AllocateUserRange',
                GLib.Variant('(suuht)', (name, BLOCK, 0, index, 0)), None,
                Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, 60000, fds, None)
        except GLib.Error as e:
            raise h.BusError(Gio.DBusError.get_remote_error(e) or str(e), e.message) from None
        return reply.unpack()[1]
    finally:
        conn.close_sync(None)


def test_someone_elses_namespace_is_refused_even_allowing_interaction(nsresd, userns, bus_client):
    # No authentication agent is registered: there is nobody to ask, so the
    # call must still fail with one of polkit's outcomes, and fast.
    ns = userns(DAEMON_USER)
    free = bus_client.manager_property('FreeRanges')
    start = time.monotonic()
    with pytest.raises(h.BusError) as e:
        h.as_user(NOBODY, _allocate_allowing_interaction, ns.fd, 'theirs', timeout=60)
    # polkit already tried to ask and could not: asking again would not
    # help, so this is a denial, not a request for interaction.
    assert e.value.name == ACCESS_DENIED, str(e.value)
    assert 'no polkit agent' in e.value.message
    assert time.monotonic() - start < 30
    _assert_nothing_left(nsresd, bus_client, ns, free)


def test_own_namespace_allowing_interaction_is_allowed(nsresd, userns, bus_client):
    # The same path as above, but for an action that polkitd allows: shows
    # that the refusal above comes from 'manage', not from the flag.
    ns = userns(NOBODY)
    name = h.as_user(NOBODY, _allocate_allowing_interaction, ns.fd, 'asked')
    assert name == '65534-asked'
    assert len(ns.uid_map()) == 1


def test_root_is_authorised_without_polkit(nsresd, polkitd, userns, bus_client):
    # With polkitd stopped a check would hang until the client gives up:
    # root's calls must not ask it at all, for its own namespaces or anyone's.
    process, _ = polkitd
    mine, theirs = userns(), userns(NOBODY)
    process.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        a = bus_client.allocate('root-ns', mine, timeout=10)
        b = bus_client.allocate('for-nobody', theirs, timeout=10)
        elapsed = time.monotonic() - start
    finally:
        process.send_signal(signal.SIGCONT)
    assert elapsed < 2
    assert a.name == 'root-ns'
    assert mine.uid_map() == [(0, a.uid_start, BLOCK)]
    assert bus_client.namespace_properties(a.path)['Owner'] == 0
    assert theirs.uid_map() == [(0, b.uid_start, BLOCK)]
    assert bus_client.namespace_properties(b.path)['Owner'] == 65534
    # polkitd still answers afterwards.
    assert h.as_user(NOBODY, allocate(userns(NOBODY), name='after')).name == '65534-after'
