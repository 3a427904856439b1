# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end with the real polkitd instead of the mock.

The policy polkitd reads is the one `meson install` puts into a staging
directory (DESTDIR), translations included. polkitd runs in a mount namespace
of its own where that actions directory and a rules directory of the tests'
are bind-mounted over polkit's, so the host's polkit configuration is never
touched and the host's rules play no part. It owns its name on a bus of its
own (the session's bus has the mock on org.freedesktop.PolicyKit1).

Without logind the subject is in no session, so the allow_any defaults and
the rules decide: allocate-user-range and register-user-namespace are 'yes';
'manage', 'delegate-mount' and 'delegate-bpf' are auth_admin_keep, which,
with no authentication agent, polkitd answers with a challenge. The tests'
rule denies delegate-network-interface to `nobody` alone."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import dbus
import pytest

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

POLKITD = Path('/usr/lib/polkit-1/polkitd')
POLKIT_BUS_POLICY = Path('/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf')
# Where polkitd looks; inside its mount namespace these are ours.
POLKIT_ACTIONS_DIR = Path('/usr/share/polkit-1/actions')
POLKIT_RULES_DIRS = (Path('/etc/polkit-1/rules.d'), Path('/usr/share/polkit-1/rules.d'))
POLICY_NAME = 'org.freedesktop.NamespaceResource1.policy'
ACTION_DELEGATE_BPF = h.BUS_NAME + '.delegate-bpf'

ACCESS_DENIED = h.DBUS_ERROR + 'AccessDenied'
INTERACTIVE = h.DBUS_ERROR + 'InteractiveAuthorizationRequired'
POLKIT_ERRORS = {ACCESS_DENIED, INTERACTIVE}

# PolkitImplicitAuthorization: not_authorized 0, auth_self 1, auth_admin 2,
# auth_self_keep 3, auth_admin_keep 4, yes 5.
IMPLICIT_AUTH_ADMIN_KEEP = 4
IMPLICIT_YES = 5
# CheckAuthorization flags.
POLKIT_ALLOW_USER_INTERACTION = 1

# The tests' local policy: the network interface action is denied to one user.
TEST_RULES = """\
polkit.addRule(function(action, subject) {
        if (action.id == "org.freedesktop.NamespaceResource1.delegate-network-interface" &&
            subject.user == "nobody")
                return polkit.Result.NO;
});
"""


def allocate(ns, name='x', **kwargs):
    return lambda c: c.allocate(name, ns, **kwargs)


def register(ns, name='x', **kwargs):
    return lambda c: c.register(name, ns, **kwargs)


# ---- module set-up: the installed policy, a bus, polkitd ----------------------------------

@pytest.fixture(scope='module')
def polkit_tree():
    """`meson install` into a staging directory, plus the tests' rules:
    the directories polkitd gets instead of its own. Readable by the
    polkitd user, which polkitd drops to."""
    root = Path(tempfile.mkdtemp(prefix='nsresd-polkit-'))
    try:
        root.chmod(0o755)
        destdir = root / 'dest'
        result = subprocess.run(['meson', 'install', '--no-rebuild', '--quiet', '-C', str(h.build_dir()),
                                 '--destdir', str(destdir)], capture_output=True, text=True)
        assert result.returncode == 0, f'meson install failed:\n{result.stdout}{result.stderr}'
        policies = list(destdir.glob(f'**/share/polkit-1/actions/{POLICY_NAME}'))
        assert len(policies) == 1, f'meson install put {POLICY_NAME} at {policies}'
        rules = root / 'rules.d'
        rules.mkdir(mode=0o755)
        (rules / '50-nsresd-test.rules').write_text(TEST_RULES)
        empty = root / 'empty'
        empty.mkdir(mode=0o755)
        for p in root.rglob('*'):
            p.chmod(p.stat().st_mode | (0o755 if p.is_dir() else 0o644))
        yield {'actions': policies[0].parent, 'rules': rules, 'empty': empty, 'policy': policies[0]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


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


def polkitd_command(tree):
    """polkitd in a private mount namespace that sees the installed actions
    and the tests' rules (and no other rules) in polkit's own directories."""
    binds = [(tree['actions'], POLKIT_ACTIONS_DIR), (tree['rules'], POLKIT_RULES_DIRS[0]),
             (tree['empty'], POLKIT_RULES_DIRS[1])]
    script = ''.join(f'mount --bind "{source}" "{target}" && ' for source, target in binds if target.is_dir())
    return ['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
            script + f'exec {POLKITD} --no-debug']


@pytest.fixture(scope='module')
def polkitd(environment, polkit_bus, polkit_tree):
    """The real polkitd, started as root; it drops to the polkitd user."""
    log_path = environment.logs / 'polkitd-real.log'
    env = {k: v for k, v in os.environ.items() if not k.startswith('DBUS_')}
    env['DBUS_SYSTEM_BUS_ADDRESS'] = polkit_bus.address
    with open(log_path, 'ab') as log:
        process = subprocess.Popen(polkitd_command(polkit_tree), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=log, env=env)
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


def enumerate_actions(client, locale=''):
    """polkitd's view of our actions: id -> (description, message, (any, inactive, active))."""
    # (action_id, description, message, vendor_name, vendor_url, icon_name,
    #  implicit_any, implicit_inactive, implicit_active, annotations)
    actions = client.bus.call_blocking(h.POLKIT_NAME, h.POLKIT_PATH, h.POLKIT_IFACE,
                                       'EnumerateActions', 's', (locale,))
    return {str(a[0]): (str(a[1]), str(a[2]), (int(a[6]), int(a[7]), int(a[8]))) for a in actions}


def policy_texts(policy, lang):
    """action id -> (description, message) in `lang` (None: untranslated) from the policy file."""
    xml_lang = '{http://www.w3.org/XML/1998/namespace}lang'
    texts = {}
    for action in ET.parse(policy).getroot().iter('action'):
        pick = [next(e.text for e in action.findall(tag) if e.get(xml_lang) == lang)
                for tag in ('description', 'message')]
        texts[action.get('id')] = tuple(pick)
    return texts


def test_the_installed_policy_is_what_polkitd_knows(polkitd, bus_client):
    # polkitd sees our installed actions directory and nothing else.
    actions = enumerate_actions(bus_client)
    defaults = {action: implicit for action, (_, _, implicit) in actions.items()}
    assert defaults == {
        h.ACTION_ALLOCATE: (IMPLICIT_YES,) * 3,
        h.ACTION_REGISTER: (IMPLICIT_YES,) * 3,
        h.ACTION_DELEGATE_CGROUP: (IMPLICIT_YES,) * 3,
        h.ACTION_DELEGATE_NETIF: (IMPLICIT_YES,) * 3,
        h.ACTION_DELEGATE_MOUNT: (IMPLICIT_AUTH_ADMIN_KEEP,) * 3,
        ACTION_DELEGATE_BPF: (IMPLICIT_AUTH_ADMIN_KEEP,) * 3,
        h.ACTION_MANAGE: (IMPLICIT_AUTH_ADMIN_KEEP,) * 3,
    }


def test_pkaction_reads_the_installed_policy(polkitd, polkit_bus):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=polkit_bus.address, LANG='C.UTF-8')
    out = subprocess.run(['pkaction', '--verbose', '--action-id', ACTION_DELEGATE_BPF], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert 'load BPF programs' in out
    for field in ('implicit any', 'implicit inactive', 'implicit active'):
        assert f'{field}:' in out
        assert out.split(f'{field}:')[1].split()[0] == 'auth_admin_keep'


@pytest.mark.parametrize('locale,lang', [('de_DE.UTF-8', 'de'), ('fr_FR.UTF-8', 'fr'), ('de_AT.UTF-8', 'de')])
def test_polkitd_serves_the_translations(polkitd, polkit_tree, bus_client, locale, lang):
    # What an authentication agent shows comes from polkitd, in the locale
    # the agent registered with; EnumerateActions takes the same locale.
    # (pkaction of polkit 122 always asks with an empty locale, so it
    # shows the untranslated texts whatever LANG says.)
    english = policy_texts(polkit_tree['policy'], None)
    translated = policy_texts(polkit_tree['policy'], lang)
    served = {action: (description, message)
              for action, (description, message, _) in enumerate_actions(bus_client, locale).items()}
    assert served == translated
    for action, texts in translated.items():
        assert texts[0] != english[action][0] and texts[1] != english[action][1], action
        # The variables polkit substitutes survive translation.
        for variable in ('$(name)', '$(mode)'):
            assert (variable in texts[1]) == (variable in english[action][1]), (action, variable)


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


AGENT_INTERFACE = """<node><interface name="org.freedesktop.PolicyKit1.AuthenticationAgent">
  <method name="BeginAuthentication">
    <arg type="s" name="action_id" direction="in"/><arg type="s" name="message" direction="in"/>
    <arg type="s" name="icon_name" direction="in"/><arg type="a{ss}" name="details" direction="in"/>
    <arg type="s" name="cookie" direction="in"/><arg type="a(sa{sv})" name="identities" direction="in"/>
  </method>
  <method name="CancelAuthentication"><arg type="s" name="cookie" direction="in"/></method>
</interface></node>"""


def _ask_through_an_agent(client, fd, locale):
    """As the caller (with its own connection, not `client`): register an authentication agent for this process in
    `locale`, then AllocateUserRange for `fd` allowing interaction. The
    agent declines whatever it is asked. Returns (what the agent was asked,
    the call's error name)."""
    from gi.repository import Gio, GLib

    conn = Gio.DBusConnection.new_for_address_sync(
        h.bus_address(),
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    loop = GLib.MainLoop()
    asked, outcome = [], []

    def on_agent_call(connection, sender, path, interface, method, parameters, invocation):
        if method == 'BeginAuthentication':
            action, message, _, details, _, _ = parameters.unpack()
            asked.append((action, message, details))
        invocation.return_dbus_error('org.freedesktop.PolicyKit1.Error.Cancelled', 'declined by the test agent')

    def on_reply(connection, result):
        try:
            connection.call_with_unix_fd_list_finish(result)
            outcome.append(None)
        except GLib.Error as e:
            outcome.append(Gio.DBusError.get_remote_error(e))
        loop.quit()

    try:
        node = Gio.DBusNodeInfo.new_for_xml(AGENT_INTERFACE)
        conn.register_object('/nsresd/test/agent', node.interfaces[0], on_agent_call, None, None)
        pid = os.getpid()
        with open(f'/proc/{pid}/stat') as f:
            start_time = int(f.read().rsplit(')', 1)[1].split()[19])
        subject = GLib.Variant('(sa{sv})', ('unix-process', {'pid': GLib.Variant('u', pid),
                                                             'start-time': GLib.Variant('t', start_time),
                                                             'uid': GLib.Variant('i', os.getuid())}))
        conn.call_sync(h.POLKIT_NAME, h.POLKIT_PATH, h.POLKIT_IFACE, 'RegisterAuthenticationAgent',
                       GLib.Variant.new_tuple(subject, GLib.Variant('s', locale),
                                              GLib.Variant('s', '/nsresd/test/agent')),
                       None, Gio.DBusCallFlags.NONE, 10000, None)
        fds = Gio.UnixFDList.new()
        index = fds.append(fd)
        conn.call_with_unix_fd_list(h.BUS_NAME, h.MANAGER_PATH, h.MANAGER_IFACE, 'AllocateUserRange',
                                    GLib.Variant('(suuht)', ('agent', BLOCK, 0, index, 0)), None,
                                    Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, 30000, fds, None,
                                    on_reply)
        GLib.timeout_add_seconds(30, loop.quit)
        loop.run()
        return asked, outcome
    finally:
        conn.close_sync(None)


@pytest.mark.parametrize('locale,lang', [('de_DE.UTF-8', 'de'), ('fr_FR.UTF-8', 'fr')])
def test_an_agent_is_asked_in_its_language(nsresd, polkit_tree, userns, bus_client, locale, lang):
    # Someone else's namespace needs 'manage' (auth_admin_keep): with an
    # agent registered for the caller, polkitd asks it, with the policy's
    # message in the agent's language and the namespace's name filled in.
    ns = userns(DAEMON_USER)
    free = bus_client.manager_property('FreeRanges')
    asked, outcome = h.as_user(NOBODY, _ask_through_an_agent, ns.fd, locale)
    _, message = policy_texts(polkit_tree['policy'], lang)[h.ACTION_MANAGE]
    assert [(action, text) for action, text, _ in asked] == [(h.ACTION_MANAGE, message.replace('$(name)', '1-agent'))]
    # The agent declined: polkit's answer is a plain no, and nothing was allocated.
    assert outcome == [h.ERROR + 'NotOwner']
    _assert_nothing_left(nsresd, bus_client, ns, free)


# ---- the tests' rule and the admin-only actions -------------------------------------------

def test_a_rule_denies_network_interfaces_to_one_user_only(nsresd, bus_client):
    boxes = []
    try:
        denied = h.NetBox(NOBODY, name='ruled')
        boxes.append(denied)
        e = h.expect_error(ACCESS_DENIED, NOBODY,
                           lambda c: c.add_network(denied.fd, denied.netns_fd, 'eth0'))
        assert 'network interface' in e.message
        assert bus_client.namespace_properties(denied.path)['NetworkInterfaces'] == []
        assert denied.inside() == {'lo'}

        allowed = h.NetBox(DAEMON_USER, name='other')
        boxes.append(allowed)
        host, inside = h.as_user(DAEMON_USER, lambda c: c.add_network(allowed.fd, allowed.netns_fd, 'eth0'))
        assert inside == 'eth0'
        assert bus_client.namespace_properties(allowed.path)['NetworkInterfaces'] == [host]
        assert allowed.inside() == {'lo', 'eth0'}
    finally:
        for b in boxes:
            b.stop()
    # The kernel deletes the veth with its namespace; the daemon forgets it.
    h.wait_until(lambda: bus_client.list() == [], 10, what='the namespaces to be released')


def _check_own_authorization(client, action, flags):
    """CheckAuthorization of the caller's own bus name, as a service asks it."""
    subject = ('system-bus-name', {'name': dbus.String(client.bus.get_unique_name(), variant_level=1)})
    authorized, challenge, details = client.bus.call_blocking(
        h.POLKIT_NAME, h.POLKIT_PATH, h.POLKIT_IFACE, 'CheckAuthorization', '(sa{sv})sa{ss}us',
        (subject, action, {}, flags, ''), timeout=30)
    return bool(authorized), bool(challenge), {str(k): str(v) for k, v in details.items()}


@pytest.mark.parametrize('action', [ACTION_DELEGATE_BPF, h.ACTION_DELEGATE_MOUNT, h.ACTION_MANAGE])
def test_admin_actions_without_an_agent(polkitd, action):
    # auth_admin_keep: polkitd answers "not authorised, a challenge would
    # help", whether or not interaction was allowed (no agent could take
    # it). The service turns that into InteractiveAuthorizationRequired for
    # a call that did not allow interaction and into AccessDenied for one
    # that did (see the tests with 'manage' and 'delegate-mount' above).
    # Root is authorised outright.
    for user in (NOBODY, DAEMON_USER):
        for flags in (0, POLKIT_ALLOW_USER_INTERACTION):
            assert h.as_user(user, _check_own_authorization, action, flags)[:2] == (False, True), (user, flags)
    client = h.Client()
    try:
        assert _check_own_authorization(client, action, 0)[:2] == (True, False)
    finally:
        client.close()


def test_the_rule_is_what_polkitd_applies(polkitd):
    action = h.ACTION_DELEGATE_NETIF
    assert h.as_user(NOBODY, _check_own_authorization, action, 0)[:2] == (False, False)
    assert h.as_user(DAEMON_USER, _check_own_authorization, action, 0)[:2] == (True, False)
