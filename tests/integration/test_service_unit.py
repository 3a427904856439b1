# SPDX-License-Identifier: LGPL-2.1-or-later
"""The systemd unit holds what the daemon really does.

The unit's sandbox is only as good as its fit: a system call outside
SystemCallFilter= fails inside the daemon, a capability missing from
CapabilityBoundingSet= makes a call fail (or a feature quietly fall back). So
the real daemon runs every path once (each kind of allocation, registration,
cgroup, veth, tap, mount, release by death, reload, restart with a live
namespace, shutdown) under strace, and every system call, socket family,
namespace flag and memory protection it used is checked against the unit;
then the same paths run with nothing but the unit's bounding set.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness as h
from harness import NOBODY

# RestrictNamespaces= names and the flags strace prints for them.
NAMESPACE_FLAGS = {
    'cgroup': 'CLONE_NEWCGROUP', 'ipc': 'CLONE_NEWIPC', 'net': 'CLONE_NEWNET', 'mnt': 'CLONE_NEWNS',
    'pid': 'CLONE_NEWPID', 'user': 'CLONE_NEWUSER', 'uts': 'CLONE_NEWUTS', 'time': 'CLONE_NEWTIME',
}
# Devices DevicePolicy=closed lets through besides DeviceAllow=.
PSEUDO_DEVICES = {'/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom'}


# ---- the unit ------------------------------------------------------------------------

def unit_settings(path):
    """{key: [value, ...]} of the [Service] section, in file order."""
    settings, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('['):
            section = line.strip('[]')
            continue
        key, _, value = line.partition('=')
        settings.setdefault((section, key), []).append(value)
    return {key: values for (section, key), values in settings.items() if section == 'Service'}


def expand_syscall_group(name, seen=None):
    """The system call names a filter entry stands for, as systemd-analyze
    (and so systemd) expands them."""
    if not name.startswith('@'):
        return {name}
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(['systemd-analyze', 'syscall-filter', '--no-pager', name],
                         check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith('#'):
            names |= expand_syscall_group(entry, seen)
    assert names, f'systemd-analyze knows no group {name}'
    return names


def syscall_filter(settings):
    """(allowed, denied): SystemCallFilter= lines applied in order, as
    systemd does: an allow list first (with @default, which systemd always
    adds to one), from which ~ lines take away."""
    lines = settings['SystemCallFilter']
    assert not lines[0].startswith('~'), 'the filter is meant to be an allow list'
    allowed, denied = expand_syscall_group('@default'), set()
    for line in lines:
        deny = line.startswith('~')
        names = set()
        for entry in line.lstrip('~').split():
            names |= expand_syscall_group(entry)
        if deny:
            allowed -= names
            denied |= names
        else:
            allowed |= names
    return allowed, denied


def bounding_set(settings):
    caps = []
    for line in settings['CapabilityBoundingSet']:
        assert not line.startswith('~'), 'the bounding set is meant to be a list of what is kept'
        caps += line.split()
    assert all(c.startswith('CAP_') for c in caps), caps
    return caps


def setpriv_prefix(caps):
    """Runs the daemon as the unit would: only these capabilities can ever
    be had (nothing inheritable either), no new privileges."""
    names = ','.join('+' + c[len('CAP_'):].lower() for c in caps)
    return ['setpriv', '--bounding-set', f'-all,{names}', '--inh-caps', '-all', '--no-new-privs', '--']


# ---- strace ---------------------------------------------------------------------------

# "1234 name(args) = ret" or "1234 name(args <unfinished ...>"; resumed
# halves, signals and exits are not calls.
CALL = re.compile(r'^(\d+) +([a-z0-9_]+)\((.*)$')


def traced_calls(paths):
    """(name, arguments as printed) of every system call in the traces."""
    calls = []
    for path in paths:
        for line in Path(path).read_text(errors='replace').splitlines():
            m = CALL.match(line)
            if m:
                calls.append((m.group(2), m.group(3)))
    return calls


# A path argument as strace -y prints it: relative to a directory fd (shown
# with its path) or AT_FDCWD, or absolute.
PATH_ARG = r'(?:(?:AT_FDCWD|-?\d+<([^>]*)>), )?"([^"]*)"'
# Calls that change what lies at their path arguments.
PATH_WRITES = {'mkdir': 1, 'mkdirat': 1, 'unlink': 1, 'unlinkat': 1, 'rmdir': 1, 'rename': 2, 'renameat': 2,
               'renameat2': 2, 'symlink': 1, 'symlinkat': 1, 'link': 2, 'linkat': 2, 'fchownat': 1,
               'fchmodat': 1, 'chown': 1, 'chmod': 1, 'lchown': 1, 'mknod': 1, 'mknodat': 1, 'truncate': 1}
# Calls that change the file behind their first argument, an fd.
FD_WRITES = {'write', 'pwrite64', 'writev', 'pwritev', 'pwritev2', 'ftruncate', 'fchown', 'fchmod',
             'fallocate', 'fsetxattr', 'fremovexattr'}


def paths_touched(calls):
    """(written, opened): absolute paths changed, and every path opened."""
    written, opened = set(), set()
    for name, args in calls:
        if re.search(r'\) += -1 E', args):
            continue
        if name in ('open', 'openat', 'openat2') or name in PATH_WRITES:
            found = re.findall(PATH_ARG, args)[:PATH_WRITES.get(name, 1)]
            paths = [Path(d or '/', p) for d, p in found]
            if name.startswith('open'):
                opened.update(paths)
                if not re.search(r'O_WRONLY|O_RDWR|O_CREAT', args):
                    continue
            written.update(paths)
        elif name in FD_WRITES:
            m = re.match(r'(\d+)<(/[^>]*)>', args)
            # stdout and stderr are the journal's under systemd.
            if m and m.group(1) not in ('1', '2'):
                written.add(Path(m.group(2)))
    return written, opened


def strace_prefix(output):
    # -D: strace is a detached grandchild and the process started is the
    # daemon itself. -y: fds printed with their paths.
    return ['strace', '-D', '-f', '-qq', '-y', '-e', 'trace=all', '-o', str(output), '--']


def reap_tracers(timeout=10.0):
    """strace -D processes end after their tracee and are adopted by us (a
    subreaper)."""
    deadline = time.monotonic() + timeout
    while True:
        tracers = [pid for pid, name, _ in h._children_of(os.getpid()) if name == 'strace']
        for pid in tracers:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                tracers.remove(pid)
        if not tracers:
            return
        if time.monotonic() >= deadline:
            for pid in tracers:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise AssertionError('strace did not end after the daemon')
        time.sleep(0.02)


# ---- every path of the daemon ---------------------------------------------------------

def reloads(daemon):
    return daemon.log().count('Configuration reloaded from')


def allocate(name, userns, **kwargs):
    return lambda c: c.allocate(name, userns, **kwargs)


def exercise(daemon, root, cgroups, tmpfs, before_start=lambda: None):
    """Runs every path of the daemon (already started) and stops it; asserts
    that each call worked. before_start() runs before the restart."""
    made, sleeper, tap_fd = [], None, None
    box = h.NetBox(NOBODY, allocate=False)
    try:
        # Transient ranges of both sizes, SELF, MAP_CALLER, a registration.
        box_alloc = h.as_user(NOBODY, allocate('box', box.fd))
        for flags, size, map_self in ((0, 1, False), (h.SELF, 1, False), (h.MAP_CALLER, h.BLOCK, False),
                                      (None, None, True)):
            ns = h.make_userns(NOBODY, map_self=map_self)
            made.append(ns)
            if map_self:
                h.as_user(NOBODY, lambda c, fd=ns.fd: c.register('reg', fd))
            else:
                h.as_user(NOBODY, allocate(f'k{flags}', ns.fd, size=size, flags=flags))
        assert len(root.list()) == 5

        # A leaf made in nobody's cgroup, with a process in it that teardown must kill.
        def add_cgroup(client):
            fd = os.open(cgroups.caller, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return client.add_cgroup(box.fd, fd, h.CREATE_CHILD)
            finally:
                os.close(fd)
        leaf = cgroups.mount / h.as_user(NOBODY, add_cgroup).lstrip('/')
        assert leaf.is_dir()
        sleeper = subprocess.Popen(['sleep', '1000'], stdin=subprocess.DEVNULL)
        (leaf / 'cgroup.procs').write_text(str(sleeper.pid))

        host, inside = h.as_user(NOBODY, lambda c: c.add_network(box.fd, box.netns_fd, 'host0'))
        assert inside == 'host0' and Path('/sys/class/net', host).exists()
        tap_host, tap_fd = root.add_tap(box.fd)
        assert Path('/sys/class/net', tap_host).exists()
        mount = tmpfs()
        root.add_mount(box.fd, mount.fd)
        # A bpffs for the namespace: a helper unshares a mount namespace
        # there and opens it, the daemon configures, creates and mounts it.
        os.close(root.delegate_bpf(box.fd, cmds=['map_create'], maps=['array'], progs=[], attachs=[]))
        props = root.namespace_properties(box_alloc.path)
        assert props['ControlGroups'] and len(props['NetworkInterfaces']) == 2 and props['Mounts']
        assert props['BpfDelegated']

        # Release by namespace death.
        for ns in made:
            ns.release()
        h.wait_until(lambda: len(root.list()) == 1, 10, what='the dead namespaces to be released')

        # Reloads: SIGHUP (ExecReload=) and the method.
        done = reloads(daemon)
        daemon.process.send_signal(signal.SIGHUP)
        h.wait_until(lambda: reloads(daemon) == done + 1, 5, what='the reload on SIGHUP')
        root.call(h.MANAGER_PATH, h.MANAGER_IFACE, 'Reload', 't', (0,))
        assert reloads(daemon) == done + 2
        assert daemon.running

        # A restart with a live namespace: it is still there afterwards.
        assert daemon.stop() == 0
        before_start()
        daemon.start()
        assert [e.path for e in root.list()] == [box_alloc.path]

        # Its death after the restart tears down all it was given.
        os.close(tap_fd)
        tap_fd = None
        box.stop()
        h.wait_until(lambda: not root.list(), 10, what='the sandbox namespace to be released')
        h.wait_until(lambda: sleeper.poll() is not None, 10, what='the process in the leaf to be killed')
        h.wait_until(lambda: not leaf.exists(), 10, what='the leaf to be removed')
        h.wait_until(lambda: not Path('/sys/class/net', host).exists(), 10, what='the veth to go')
        assert daemon.stop() == 0
    finally:
        if tap_fd is not None:
            os.close(tap_fd)
        box.stop()
        for ns in made:
            ns.release()
        if sleeper is not None:
            if sleeper.poll() is None:
                sleeper.kill()
            sleeper.wait()


# ---- fixtures --------------------------------------------------------------------------

def built_unit():
    return h.build_dir() / 'systemd' / 'nsresd.service'


@pytest.fixture
def settings():
    return unit_settings(built_unit())


@pytest.fixture
def new_daemon(environment, polkit, request, attach_log):
    """make() -> an unstarted Daemon; all are stopped (exit 0 on SIGTERM) and
    cleaned up after the test, and the tracers they ran under reaped."""
    made = []

    def make():
        d = h.Daemon(environment, request.node.name, h.config_text())
        made.append(d)
        attach_log(d.log_path)
        return d

    yield make
    problems = h.stop_daemons(made)
    reap_tracers()
    if problems:
        pytest.fail('\n'.join(problems), pytrace=False)


@pytest.fixture
def cgroups():
    """The test's cgroups, with a cgroup `caller` that nobody owns, as its
    user@.service would be."""
    tree = h.Cgroups()
    try:
        tree.caller = tree.make('caller', NOBODY)
        yield tree
    finally:
        tree.release()


@pytest.fixture
def no_links_left_behind():
    before = {p.name for p in Path('/sys/class/net').iterdir()}
    yield
    for name in {p.name for p in Path('/sys/class/net').iterdir()} - before:
        subprocess.run(['ip', 'link', 'delete', name], check=False, capture_output=True)


# ---- the unit as built -------------------------------------------------------------------

def test_systemd_analyze_verify_passes_without_a_word(tmp_path):
    text = built_unit().read_text()
    exec_start = re.search(r'^ExecStart=(\S+)', text, re.M).group(1)
    assert exec_start.endswith('/sbin/nsresd') and not re.search(r'@\w+@', text), text
    # Verified with ExecStart pointing at the binary as built (it is not
    # installed here); nothing else changes.
    unit = tmp_path / 'nsresd.service'
    unit.write_text(text.replace(f'ExecStart={exec_start}', f'ExecStart={h.daemon_binary()}'))
    result = subprocess.run(['systemd-analyze', 'verify', '--man=no', str(unit)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result

    # The man pages it points at are the project's own.
    documentation = ' '.join(re.findall(r'^Documentation=(.*)$', text, re.M))
    pages = re.findall(r'man:([\w.]+)\((\d)\)', documentation)
    assert len(set(pages)) == 3, pages
    sources = {p.name for p in h.REPO_ROOT.glob('*/*.scd')}
    for name, section in pages:
        assert f'{name}.{section}.scd' in sources, f'no man page source for {name}({section})'


# ---- system calls and the rest of the sandbox, from strace --------------------------------

def test_the_sandbox_allows_everything_the_daemon_does(new_daemon, root, cgroups, tmpfs, settings,
                                                       no_links_left_behind):
    d = new_daemon()
    traces = [d.dir / 'strace.1', d.dir / 'strace.2']
    d.command_prefix = strace_prefix(traces[0])
    d.start()

    def second_trace():
        d.command_prefix = strace_prefix(traces[1])
    exercise(d, root, cgroups, tmpfs, before_start=second_trace)
    reap_tracers()

    calls = traced_calls(traces)
    used = {name for name, _ in calls}
    # The traces hold the whole run, from the first exec on.
    assert {'execve', 'setns', 'bpf', 'open_by_handle_at', 'sendmsg'} <= used, sorted(used)

    allowed, denied = syscall_filter(settings)
    assert not used - allowed, f'system calls the unit would refuse: {sorted(used - allowed)}'
    assert not used & denied, f'system calls a ~ line denies: {sorted(used & denied)}'

    families = set()
    for name, args in calls:
        if name in ('socket', 'socketpair'):
            families.add(args.split(',')[0])
    assert families, 'no socket was traced'
    assert families <= set(' '.join(settings['RestrictAddressFamilies']).split()), families

    # RestrictNamespaces=: only the listed kinds are created or joined, and
    # setns() always names its type (systemd's filter refuses type 0).
    kept = ' '.join(settings['RestrictNamespaces']).split()
    forbidden = {flag for kind, flag in NAMESPACE_FLAGS.items() if kind not in kept}
    for name, args in calls:
        if name == 'setns':
            nstype = re.match(r'[^,]*, (\w+)', args).group(1)
            assert nstype in {NAMESPACE_FLAGS[k] for k in kept}, f'setns({args}'
        elif name in ('unshare', 'clone', 'clone3'):
            assert not forbidden & set(re.findall(r'CLONE_NEW[A-Z]+', args)), f'{name}({args}'

    # MemoryDenyWriteExecute=: no writable and executable mapping, no
    # mprotect() to executable.
    assert settings['MemoryDenyWriteExecute'] == ['yes']
    for name, args in calls:
        if name == 'mmap':
            assert not ('PROT_WRITE' in args and 'PROT_EXEC' in args), f'mmap({args}'
        elif name in ('mprotect', 'pkey_mprotect'):
            assert 'PROT_EXEC' not in args, f'{name}({args}'

    # ProtectSystem=strict and DevicePolicy=closed: what is opened for
    # writing lies where the unit lets it, with the test's state and bpf
    # directories standing for /run/nsresd and /sys/fs/bpf/nsresd.
    writable = [Path(p) for line in settings['ReadWritePaths'] for p in line.split()]
    writable += [Path('/run', p) for line in settings['RuntimeDirectory'] for p in line.split()]
    devices = {line.split()[0] for line in settings['DeviceAllow']} | PSEUDO_DEVICES
    written, opened = paths_touched(calls)
    for path in opened:
        if path.is_relative_to('/dev'):
            assert str(path) in devices, f'{path} is not allowed by DeviceAllow='
    assert written
    for path in written:
        if path.is_relative_to(d.state_dir):
            path = Path('/run/nsresd') / path.relative_to(d.state_dir)
        elif path.is_relative_to(d.bpf_dir):
            path = Path('/sys/fs/bpf/nsresd') / path.relative_to(d.bpf_dir)
        # /proc and /sys stay writable under ProtectSystem=strict; in /proc
        # the daemon writes maps and accept_ra, in /sys only what the unit
        # names.
        if path.is_relative_to('/proc'):
            assert re.fullmatch(r'/proc/\d+/(uid_map|gid_map|setgroups)|/proc/sys/net/ipv6/conf/[^/]+/accept_ra',
                                str(path)), path
        elif not path.is_relative_to('/dev'):
            assert any(path.is_relative_to(w) for w in writable), f'{path} is written, the unit keeps it read-only'


# ---- capabilities -------------------------------------------------------------------------

def test_the_bounding_set_is_enough(new_daemon, root, cgroups, tmpfs, settings, no_links_left_behind):
    caps = bounding_set(settings)
    d = new_daemon()
    # The state directory as RuntimeDirectory= makes it, and the daemon
    # under the unit's umask.
    d.state_dir.mkdir()
    d.state_dir.chmod(int(settings['RuntimeDirectoryMode'][0], 8))
    d.command_prefix = ['sh', '-c', f'umask {settings["UMask"][0]} && exec "$@"', 'sh', *setpriv_prefix(caps)]
    d.start()
    assert Path(f'/proc/{d.pid}/status').read_text().count(f'Umask:\t{settings["UMask"][0]}') == 1
    status = Path(f'/proc/{d.pid}/status').read_text()
    bounding = int(re.search(r'^CapBnd:\s*([0-9a-f]+)$', status, re.M).group(1), 16)
    assert bin(bounding).count('1') == len(set(caps)), status
    # Teardown tracking needs CAP_SYS_ADMIN (bpf) and CAP_SYSLOG (kallsyms):
    # without one it would quietly fall back to polling.
    assert root.manager_property('TeardownTracking') == 'bpf'
    exercise(d, root, cgroups, tmpfs)
    # What libnss_nsresd reads stays world-readable; the registry does not.
    assert h.file_mode(d.state_dir) == 0o755
    assert h.file_mode(d.index_path()) == 0o644
    assert h.file_mode(d.state_dir / 'registry') == 0o700


def test_without_cap_setuid_allocation_fails(new_daemon, root, userns, settings):
    """The negative control: the test above would notice a missing capability."""
    caps = [c for c in bounding_set(settings) if c != 'CAP_SETUID']
    d = new_daemon()
    d.command_prefix = setpriv_prefix(caps)
    d.start()
    ns = userns(NOBODY)
    with pytest.raises(h.BusError) as e:
        h.as_user(NOBODY, allocate('box', ns.fd))
    # Said as what it is: no privilege, not a map written by someone else.
    assert e.value.name == h.DBUS_ERROR + 'Failed', str(e.value)
    assert 'Failed to write uid_map: Operation not permitted' in e.value.message
    assert ns.uid_map() == []
    assert root.list() == []
