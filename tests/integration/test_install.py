# SPDX-License-Identifier: LGPL-2.1-or-later
"""What `meson install` puts on a system, installed into a DESTDIR: exactly
the expected files with sane modes, a polkit policy with the contract's
actions and translations, D-Bus files that match the running daemon, a
configuration the daemon starts with, and man pages that render."""

import configparser
import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET

import pytest

import harness as h
from harness import NOBODY

SOURCE_ROOT = h.REPO_ROOT
POLICY = 'org.freedesktop.NamespaceResource1.policy'
INTERFACE_XML = 'org.freedesktop.NamespaceResource1.xml'
BUS_CONF = 'org.freedesktop.NamespaceResource1.conf'
ACTIVATION = 'org.freedesktop.NamespaceResource1.service'
TRANSLATIONS = ('de', 'fr')
XML_LANG = '{http://www.w3.org/XML/1998/namespace}lang'

# The contract: action id -> (allow_any, allow_inactive, allow_active).
ACTIONS = {
    'allocate-user-range': ('yes',) * 3,
    'register-user-namespace': ('yes',) * 3,
    'delegate-cgroup': ('yes',) * 3,
    'delegate-network-interface': ('yes',) * 3,
    'delegate-mount': ('auth_admin_keep',) * 3,
    'delegate-bpf': ('auth_admin_keep',) * 3,
    'manage': ('auth_admin_keep',) * 3,
}

MAN_PAGES = (('nsresd', '8'), ('nsresd.conf', '5'), ('nsresctl', '1'),
             ('org.freedesktop.NamespaceResource1', '5'), ('nsres', '3'))


build_options = h.build_options


class Layout:
    """Where the build installs what, as absolute paths on the target system."""

    def __init__(self, options):
        prefix = options['prefix']

        def under_prefix(name):
            return os.path.join(prefix, options[name])

        sysconfdir = options['sysconfdir'] if options['sysconfdir'].startswith('/') else '/etc'
        datadir = under_prefix('datadir')
        self.sbin = under_prefix('sbindir')
        self.bin = under_prefix('bindir')
        self.lib = under_prefix('libdir')
        self.include = under_prefix('includedir')
        self.man = under_prefix('mandir')
        self.conf_dir = os.path.join(sysconfdir, 'nsresd')
        self.policy = os.path.join(datadir, 'polkit-1', 'actions', POLICY)
        self.interface_xml = os.path.join(datadir, 'dbus-1', 'interfaces', INTERFACE_XML)
        self.bus_conf = os.path.join(datadir, 'dbus-1', 'system.d', BUS_CONF)
        self.activation = os.path.join(datadir, 'dbus-1', 'system-services', ACTIVATION)
        self.unit = os.path.join(prefix, 'lib', 'systemd', 'system', 'nsresd.service')
        self.config = os.path.join(self.conf_dir, 'nsresd.conf')
        self.dropin_dir = os.path.join(self.conf_dir, 'nsresd.conf.d')

    def man_page(self, name, section):
        return os.path.join(self.man, f'man{section}', f'{name}.{section}')


def man_pages_built(options):
    return options.get('man') != 'disabled' and shutil.which('scdoc') is not None


class Installed:
    def __init__(self, destdir, layout):
        self.destdir = destdir
        self.layout = layout

    def path(self, absolute):
        return self.destdir / absolute.lstrip('/')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    destdir = tmp_path_factory.mktemp('destdir')
    try:
        result = subprocess.run(['meson', 'install', '--destdir', str(destdir), '--no-rebuild',
                                 '-C', str(h.build_dir())],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f'meson install failed:\n{result.stdout}\n{result.stderr}'
        yield Installed(destdir, Layout(build_options()))
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


def parse_xml(path):
    return ET.parse(path).getroot()


# ---- the files ----------------------------------------------------------------------------

def test_installs_exactly_the_expected_files(installed):
    layout = installed.layout
    executables = {os.path.join(layout.sbin, 'nsresd'), os.path.join(layout.bin, 'nsresctl'),
                   os.path.join(layout.lib, 'libnss_nsresd.so.2'), os.path.join(layout.lib, 'libnsres.so.0.1.0')}
    data = {layout.policy, layout.interface_xml, layout.bus_conf, layout.activation, layout.unit,
            layout.config, os.path.join(layout.include, 'nsres.h'),
            os.path.join(layout.lib, 'pkgconfig', 'libnsres.pc')}
    # libnsres' soname and development links, each to the next.
    links = {os.path.join(layout.lib, 'libnsres.so.0'): 'libnsres.so.0.1.0',
             os.path.join(layout.lib, 'libnsres.so'): 'libnsres.so.0'}
    if man_pages_built(build_options()):
        data |= {layout.man_page(name, section) for name, section in MAN_PAGES}

    found = {}
    for dirpath, _, files in os.walk(installed.destdir):
        for name in files:
            full = os.path.join(dirpath, name)
            found['/' + os.path.relpath(full, installed.destdir)] = os.lstat(full).st_mode
    assert set(found) == executables | data | set(links)

    for path, target in links.items():
        assert stat.S_ISLNK(found.pop(path)), path
        assert os.readlink(installed.path(path)) == target, path

    for path, mode in found.items():
        assert stat.S_ISREG(mode), path
        # Nothing setuid, nothing writable by anyone but root.
        assert stat.S_IMODE(mode) == (0o755 if path in executables else 0o644), f'{path}: {oct(mode)}'

    dropins = installed.path(layout.dropin_dir)
    assert dropins.is_dir() and not any(dropins.iterdir())
    assert stat.S_IMODE(dropins.stat().st_mode) == 0o755


# ---- polkit -------------------------------------------------------------------------------

def placeholders(text):
    return sorted(re.findall(r'\$\((\w+)\)', text))


def test_policy_has_the_contract_actions_and_translations(installed):
    path = installed.path(installed.layout.policy)
    if shutil.which('xmllint'):
        subprocess.run(['xmllint', '--noout', str(path)], check=True)
    root = parse_xml(path)
    assert root.tag == 'policyconfig'

    actions = {a.get('id'): a for a in root.findall('action')}
    assert set(actions) == {f'{h.BUS_NAME}.{name}' for name in ACTIONS}
    for name, defaults in ACTIONS.items():
        action = actions[f'{h.BUS_NAME}.{name}']
        got = tuple(action.findtext(f'defaults/{k}') for k in ('allow_any', 'allow_inactive', 'allow_active'))
        assert got == defaults, name

        for tag in ('description', 'message'):
            elements = action.findall(tag)
            english = [e for e in elements if e.get(XML_LANG) is None]
            assert len(english) == 1, f'{name}: {tag}'
            langs = {e.get(XML_LANG): e.text for e in elements if e.get(XML_LANG)}
            assert set(langs) == set(TRANSLATIONS), f'{name}: {tag}'
            for lang, text in langs.items():
                assert text and text != english[0].text, f'{name}: {tag} [{lang}]'
                # polkit fills these in from the call's details: a translation
                # must name the same ones, spelled the same.
                assert placeholders(text) == placeholders(english[0].text), f'{name}: {tag} [{lang}]'

        # Every message names the namespace it grants something for.
        assert '$(name)' in action.findtext('message'), name
    network = actions[f'{h.BUS_NAME}.delegate-network-interface']
    assert '$(mode)' in network.findtext('message')


# ---- D-Bus --------------------------------------------------------------------------------

def interface_shape(node, name):
    """Methods, properties and signals of one interface, without annotations."""
    iface = next((i for i in node.findall('interface') if i.get('name') == name), None)
    assert iface is not None, f'no interface {name}'
    methods = {m.get('name'): [(a.get('name'), a.get('type'), a.get('direction', 'in')) for a in m.findall('arg')]
               for m in iface.findall('method')}
    signals = {s.get('name'): [(a.get('name'), a.get('type')) for a in s.findall('arg')]
               for s in iface.findall('signal')}
    properties = {p.get('name'): (p.get('type'), p.get('access')) for p in iface.findall('property')}
    return {'methods': methods, 'signals': signals, 'properties': properties}


def test_interface_xml_matches_the_running_daemon(installed, daemon, userns, root):
    shipped = parse_xml(installed.path(installed.layout.interface_xml))

    live = ET.fromstring(root.introspect(h.MANAGER_PATH))
    assert interface_shape(shipped, h.MANAGER_IFACE) == interface_shape(live, h.MANAGER_IFACE)

    ns = userns(NOBODY)
    h.as_user(NOBODY, lambda c: c.allocate('shape', ns))
    live = ET.fromstring(root.introspect(f'{h.USERNS_PATH_PREFIX}{ns.id}'))
    assert interface_shape(shipped, h.USERNS_IFACE) == interface_shape(live, h.USERNS_IFACE)

    shipped_names = {i.get('name') for i in shipped.findall('interface')}
    assert shipped_names == {h.MANAGER_IFACE, h.USERNS_IFACE}


def test_bus_policy_lets_only_root_own_the_name(installed):
    path = installed.path(installed.layout.bus_conf)
    text = path.read_text()
    assert '<!DOCTYPE busconfig' in text
    root = parse_xml(path)
    assert root.tag == 'busconfig'

    owners = [(p.attrib, rule.get('own')) for p in root.findall('policy') for rule in p.findall('allow')
              if rule.get('own') is not None]
    assert owners == [({'user': 'root'}, h.BUS_NAME)]

    default = [p for p in root.findall('policy') if p.get('context') == 'default']
    assert len(default) == 1
    allowed = {(r.get('send_interface'), r.get('send_member'))
               for r in default[0].findall('allow') if r.get('send_destination') == h.BUS_NAME}
    # Methods of the Manager, reading properties, the ObjectManager; never
    # Properties.Set (nothing is writable).
    assert (h.MANAGER_IFACE, None) in allowed
    assert ('org.freedesktop.DBus.Properties', 'Get') in allowed
    assert ('org.freedesktop.DBus.Properties', 'GetAll') in allowed
    assert ('org.freedesktop.DBus.ObjectManager', 'GetManagedObjects') in allowed
    assert ('org.freedesktop.DBus.Introspectable', None) in allowed
    assert not any(i == 'org.freedesktop.DBus.Properties' and m in (None, 'Set') for i, m in allowed)
    assert default[0].find('deny').get('send_destination') == h.BUS_NAME


def test_activation_file_starts_the_installed_daemon(installed):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(installed.path(installed.layout.activation).read_text())
    service = dict(parser['D-BUS Service'])
    exec_path = os.path.join(installed.layout.sbin, 'nsresd')
    assert service == {'Name': h.BUS_NAME, 'Exec': exec_path, 'User': 'root',
                       'SystemdService': 'nsresd.service'}
    assert os.access(installed.path(exec_path), os.X_OK)


# ---- libnsres -----------------------------------------------------------------------------

def header_functions():
    header = (SOURCE_ROOT / 'client' / 'nsres.h').read_text()
    return set(re.findall(r'^[A-Za-z].*?\b(nsres_\w+)\(', header, re.MULTILINE))


def test_libnsres_exports_exactly_its_header(installed):
    library = installed.path(os.path.join(installed.layout.lib, 'libnsres.so.0.1.0'))
    result = subprocess.run(['nm', '-D', '--defined-only', str(library)], capture_output=True, text=True,
                            check=True)
    symbols = dict(re.findall(r'^\S+ T (\w+)@@(\w+)$', result.stdout, re.MULTILINE))
    assert set(symbols) == header_functions()
    assert set(symbols.values()) == {'LIBNSRES_0'}


def test_a_program_builds_with_the_installed_libnsres(installed, tmp_path):
    """The example, compiled with what pkg-config says about the installed
    files and nothing from the source tree."""
    lib = installed.path(installed.layout.lib)
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=str(installed.destdir),
               PKG_CONFIG_PATH=str(lib / 'pkgconfig'))
    flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'libnsres'], capture_output=True, text=True,
                           env=env, check=True).stdout.split()
    program = tmp_path / 'nsres-example'
    subprocess.run(['cc', '-Wall', '-Werror', '-o', str(program),
                    str(SOURCE_ROOT / 'tests' / 'integration' / 'nsres-example.c'), *flags], check=True)
    needed = subprocess.run(['readelf', '-d', str(program)], capture_output=True, text=True, check=True).stdout
    assert '[libnsres.so.0]' in needed

    # It loads the installed library (usage: no --name).
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, LD_LIBRARY_PATH=str(lib)))
    assert result.returncode == 1
    assert result.stderr.startswith('Usage:')


# ---- configuration ------------------------------------------------------------------------

def config_keys_of_the_daemon():
    """The keys daemon/config.c accepts."""
    source = (SOURCE_ROOT / 'daemon' / 'config.c').read_text()
    return set(re.findall(r'\{\s*SECTION_\w+,\s*"(\w+)"', source))


def commented_keys(text):
    return dict(re.findall(r'^#(\w+)=(\S+)$', text, re.MULTILINE))


def test_installed_config_starts_the_daemon(installed, daemon_factory, root):
    text = installed.path(installed.layout.config).read_text()
    daemon_factory(config=text)
    props = root.manager_properties()
    assert (props['RangeStart'], props['RangeEnd']) == (h.DEFAULT_RANGE_START, h.DEFAULT_RANGE_END)
    # Restriction=enforce is the default: on a kernel that refuses BPF LSM
    # programs that reads "unavailable", never "off".
    assert props['Restriction'] in ('enforcing', 'unavailable')


def test_installed_config_documents_every_key_with_its_default(installed, daemon_factory, root):
    text = installed.path(installed.layout.config).read_text()
    keys = commented_keys(text)
    assert set(keys) == config_keys_of_the_daemon()
    # Not one key is set: the file changes nothing until someone edits it.
    assert not re.search(r'^\s*\w+\s*=', text, re.MULTILINE)

    # Uncommented, the documented defaults are accepted and are the defaults.
    daemon_factory(config=re.sub(r'^#(\w+=)', r'\1', text, flags=re.MULTILINE))
    props = root.manager_properties()
    assert props['RangeStart'] == int(keys['RangeStart']) == h.DEFAULT_RANGE_START
    assert props['RangeEnd'] == int(keys['RangeEnd']) == h.DEFAULT_RANGE_END
    assert props['Restriction'] in ('enforcing', 'unavailable')


def test_config_man_page_names_every_key():
    page = (SOURCE_ROOT / 'daemon' / 'nsresd.conf.5.scd').read_text()
    documented = set(re.findall(r'^\*(\w+)\*=', page, re.MULTILINE))
    assert documented == config_keys_of_the_daemon()


# ---- man pages ----------------------------------------------------------------------------

@pytest.mark.parametrize('name,section', MAN_PAGES)
def test_man_page_renders(installed, name, section):
    if not man_pages_built(build_options()):
        pytest.skip('man pages are not built here (no scdoc, or -Dman=disabled)')
    path = installed.path(installed.layout.man_page(name, section))
    troff = path.read_text()
    assert re.search(rf'^\.TH "{re.escape(name)}" "{section}"', troff, re.MULTILINE)
    if not shutil.which('man'):
        return
    env = dict(os.environ, MANPAGER='cat', PAGER='cat', MANWIDTH='100', LC_ALL='C.UTF-8')
    result = subprocess.run(['man', '--warnings', '-l', str(path)], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    assert 'NAME' in result.stdout and 'SEE ALSO' in result.stdout
    assert len(result.stdout.splitlines()) > 40
