#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End-to-end benchmark of nsresd.

Starts a private system-like bus, a polkit authority (the python-dbusmock
template, or the real polkitd) and the nsresd binary from a build tree, then
runs nsres-bench as an unprivileged user: per-call latency, throughput with
concurrent clients, and teardown latency. Prints a JSON document on stdout and
a human summary on stderr. Must run as root: the daemon and polkitd need it.

Not part of the test suite; see tests/bench/README.md.
"""

import argparse
import contextlib
import datetime
import errno
import json
import os
import platform
import pwd
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dbus
import dbusmock

REPO = Path(__file__).resolve().parents[2]
BENCH_SOURCE = Path(__file__).resolve().parent / 'nsres-bench.c'

NSRES_NAME = 'org.freedesktop.NamespaceResource1'
NSRES_PATH = '/org/freedesktop/NamespaceResource1'
NSRES_MANAGER = 'org.freedesktop.NamespaceResource1.Manager'
POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_AUTHORITY = 'org.freedesktop.PolicyKit1.Authority'
ALLOCATE_ACTION = 'org.freedesktop.NamespaceResource1.allocate-user-range'
DELEGATE_CGROUP_ACTION = 'org.freedesktop.NamespaceResource1.delegate-cgroup'
DELEGATE_NETIF_ACTION = 'org.freedesktop.NamespaceResource1.delegate-network-interface'
DELEGATED_CGROUP_FILES = ('cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control')
POLICY_FILE = 'org.freedesktop.NamespaceResource1.policy'
POLKIT_ACTIONS_DIR = Path('/usr/share/polkit-1/actions')
POLKITD = Path('/usr/lib/polkit-1/polkitd')

# Restriction=permissive: the BPF LSM cannot be attached on the machines this
# runs on, and enforce would refuse every transient allocation. The limits are
# raised so that namespaces still waiting for release never cap a phase.
DAEMON_CONFIG = '''[Security]
Restriction=permissive
[Allocator]
MaxNamespacesPerOwner=4096
MaxRequestsPerOwner=64
[Delegation]
MaxNetworkInterfacesPerOwner=4096
'''

# From the project's requirements; they apply to the run with mocked polkit.
TARGETS = [
    # (key, phase, field, comparison, limit, unit)
    ('latency_median', 'latency', 'median_ms', '<=', 1.0, 'ms'),
    ('latency_p99', 'latency', 'p99_ms', '<=', 3.0, 'ms'),
    ('throughput', 'throughput', 'per_sec', '>=', 1500.0, '/s'),
    ('teardown_median', 'teardown', 'median_ms', '<=', 60.0, 'ms'),
]

REFERENCE = ('reference on these machines: systemd-nsresourced v256 2.7–3.1 ms median per call '
             '(without any polkit call); setuid newuidmap+newgidmap 3.1 ms median')

# Each phase gets its own name prefix, so a phase never trips over names of
# namespaces the previous one left behind.
PHASE_PREFIX = {'latency': 'l', 'throughput': 't', 'teardown': 'd', 'cgroup': 'c', 'network': 'n'}


class BenchError(Exception):
    pass


def log(msg):
    print(f'run-bench: {msg}', file=sys.stderr, flush=True)


def tail(path, lines=25):
    try:
        return '\n'.join(Path(path).read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


def run_checked(argv, what, **kwargs):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise BenchError(f'{what} failed (exit status {proc.returncode}):\n{proc.stdout[-4000:]}')
    return proc.stdout


def stop_process(proc, name, timeout=10):
    '''SIGTERM, then SIGKILL after timeout seconds. Returns the exit status.'''
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f'{name} did not exit within {timeout} s of SIGTERM, killing it')
            proc.kill()
            proc.wait()
    return proc.returncode


# ---- setup ------------------------------------------------------------------

def ensure_build(build_dir, rebuild):
    if not (build_dir / 'build.ninja').exists():
        log(f'configuring {build_dir}')
        run_checked(['meson', 'setup', str(build_dir), str(REPO)], 'meson setup')
    elif not rebuild:
        return
    log(f'building {build_dir}')
    run_checked(['ninja', '-C', str(build_dir)], 'ninja')


def build_client(tmp):
    out = tmp / 'nsres-bench'
    flags = run_checked(['pkg-config', '--cflags', '--libs', 'libsystemd'], 'pkg-config libsystemd').split()
    run_checked(['gcc', '-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-Wshadow',
                 '-Wstrict-prototypes', '-Wmissing-prototypes', '-D_GNU_SOURCE',
                 str(BENCH_SOURCE), '-o', str(out), *flags, '-pthread', '-lm'],
                'building nsres-bench')
    out.chmod(0o755)
    return out


def remove_pin_dir(path):
    if not path.exists():
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


def install_policy(build_dir, stack):
    '''The real polkitd only knows actions from its actions directory.'''
    src = build_dir / 'polkit' / POLICY_FILE
    dest = POLKIT_ACTIONS_DIR / POLICY_FILE
    if dest.exists():
        if src.exists() and src.read_bytes() != dest.read_bytes():
            return f'{dest} differs from the build tree; the installed one is used'
        return None
    if not src.exists():
        raise BenchError(f'{src} is missing: build the project first')
    shutil.copyfile(src, dest)
    dest.chmod(0o644)
    stack.callback(dest.unlink, missing_ok=True)
    return None


def start_bus(vdir, stack):
    sock_dir = vdir / 'bus'
    sock_dir.mkdir(mode=0o755)
    conf = vdir / 'bus.conf'
    conf.write_text(f'''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock_dir}/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
  <include>{REPO}/dbus/{NSRES_NAME}.conf</include>
</busconfig>
''')
    logf = open(vdir / 'dbus-daemon.log', 'wb')  # pylint: disable=consider-using-with
    stack.callback(logf.close)
    proc = subprocess.Popen(['dbus-daemon', '--nofork', '--nopidfile', '--print-address=1',
                             f'--config-file={conf}'],
                            stdout=subprocess.PIPE, stderr=logf)
    stack.callback(stop_process, proc, 'dbus-daemon')
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    address = proc.stdout.readline().decode().strip() if ready else ''
    proc.stdout.close()
    if not address:
        raise BenchError(f'dbus-daemon did not start:\n{tail(vdir / "dbus-daemon.log")}')
    return address, proc


def wait_for_name(conn, name, proc, what, logfile, timeout=20):
    deadline = time.monotonic() + timeout
    while not conn.name_has_owner(name):
        if proc.poll() is not None:
            raise BenchError(f'{what} exited with status {proc.returncode}:\n{tail(logfile)}')
        if time.monotonic() > deadline:
            raise BenchError(f'{what} did not take {name} within {timeout} s:\n{tail(logfile)}')
        time.sleep(0.02)


def start_polkit_mock(vdir, stack):
    logf = open(vdir / 'polkit-mock.log', 'wb')  # pylint: disable=consider-using-with
    stack.callback(logf.close)
    proc, obj = dbusmock.DBusTestCase.spawn_server_template('polkitd', {}, stdout=logf, system_bus=True)
    stack.callback(stop_process, proc, 'polkit mock')
    # Replaces the template's method: always authorised, and every call lands
    # in the mock's call log, which is how the bench checks that nothing is
    # cached.
    obj.AddMethod(POLKIT_AUTHORITY, 'CheckAuthorization', '(sa{sv})sa{ss}us', '(bba{ss})',
                  'ret = (True, False, {})', dbus_interface=dbusmock.MOCK_IFACE)
    return dbus.Interface(obj, dbusmock.MOCK_IFACE), proc


def start_polkitd(vdir, env, conn, stack):
    logfile = vdir / 'polkitd.log'
    logf = open(logfile, 'wb')  # pylint: disable=consider-using-with
    stack.callback(logf.close)
    proc = subprocess.Popen([str(POLKITD), '--no-debug'], env=env, stdout=logf, stderr=subprocess.STDOUT)
    stack.callback(stop_process, proc, 'polkitd')
    wait_for_name(conn, POLKIT_NAME, proc, 'polkitd', logfile)
    return proc


def mount_private(fstype, where, options, stack):
    where.mkdir(mode=0o755)
    run_checked(['mount', '-t', fstype, '-o', options, f'nsresd-bench-{fstype}', str(where)],
                f'mounting {fstype} on {where}')
    stack.callback(unmount, where)


def unmount(where):
    proc = subprocess.run(['umount', str(where)], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f'could not unmount {where} ({proc.stderr.strip()}); detaching it')
        subprocess.run(['umount', '--lazy', str(where)], check=False)


def mount_state_tmpfs(vdir, stack, size='64m'):
    '''The registry lives on tmpfs in production (/run/nsresd); a disk
    filesystem would add its own cost to every call.'''
    mount_private('tmpfs', vdir / 'run', f'mode=0755,size={size}', stack)
    return vdir / 'run' / 'state'


def cgroup2_mount():
    with open('/proc/self/mountinfo', encoding='utf-8') as f:
        for line in f:
            left, _, right = line.partition(' - ')
            fields = left.split()
            if right.split()[:1] == ['cgroup2'] and fields[3] == '/':
                return Path(fields[4])
    raise BenchError('no cgroup2 file system is mounted: the cgroup phase needs one')


def remove_cgroup_tree(top):
    '''Kill what is left below top and remove it, children first.'''
    if not top.exists():
        return
    (top / 'cgroup.kill').write_text('1')
    deadline = time.monotonic() + 10
    while True:
        try:
            for root, dirs, _ in os.walk(top, topdown=False):
                for name in dirs:
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(os.path.join(root, name))
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(top)
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                log(f'could not remove {top}: {e}')
                return
            time.sleep(0.01)


def make_user_cgroup(user, stack):
    '''A cgroup the bench user owns, as its user@.service would be: the
    cgroup phase makes its leaves there.'''
    pw = pwd.getpwnam(user)
    top = cgroup2_mount() / f'nsresd-bench-{os.getpid()}-{time.monotonic_ns() % 100000}'
    top.mkdir()
    stack.callback(remove_cgroup_tree, top)
    for path in [top] + [top / name for name in DELEGATED_CGROUP_FILES]:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return top


def host_links():
    '''The host ends nsresd made ("ns-" and 12 hex digits) that still exist.'''
    return sorted(p.name for p in Path('/sys/class/net').iterdir() if re.fullmatch(r'ns-[0-9a-f]{12}', p.name))


def leaves(cgroup):
    return sorted(p.name for p in cgroup.iterdir() if p.is_dir())


def start_daemon(build_dir, vdir, env, conn, stack):
    nsresd = build_dir / 'daemon' / 'nsresd'
    conf = vdir / 'nsresd.conf'
    conf.write_text(DAEMON_CONFIG)
    state_dir = mount_state_tmpfs(vdir, stack)
    # A bpffs instance of our own for the pins: /sys/fs/bpf is shared, and
    # mounting or unmounting there could pull the filesystem from under
    # someone else's daemon.
    mount_private('bpf', vdir / 'bpffs', 'mode=0700', stack)
    bpf_dir = vdir / 'bpffs' / 'nsresd'
    stack.callback(remove_pin_dir, bpf_dir)
    logfile = vdir / 'nsresd.log'
    logf = open(logfile, 'wb')  # pylint: disable=consider-using-with
    stack.callback(logf.close)
    proc = subprocess.Popen([str(nsresd), f'--config={conf}', f'--state-dir={state_dir}',
                             f'--bpf-dir={bpf_dir}'],
                            env=env, stdout=logf, stderr=subprocess.STDOUT)
    status = {}
    stack.callback(lambda: status.setdefault('exit_status', stop_process(proc, 'nsresd')))
    wait_for_name(conn, NSRES_NAME, proc, 'nsresd', logfile)
    return proc, logfile, status


# ---- measuring --------------------------------------------------------------

def list_namespaces(conn):
    manager = conn.get_object(NSRES_NAME, NSRES_PATH)
    return manager.ListUserNamespaces(0, dbus_interface=NSRES_MANAGER, timeout=10)


def wait_released(conn, timeout):
    '''Namespaces are released asynchronously; returns (seconds waited, left over).'''
    start = time.monotonic()
    while True:
        left = len(list_namespaces(conn))
        waited = time.monotonic() - start
        if left == 0 or waited > timeout:
            return waited, left
        time.sleep(0.02)


def run_client(bench, user, env, args, timeout=1800):
    pw = pwd.getpwnam(user)
    argv = ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups', str(bench), *args]
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f'nsres-bench {" ".join(args)} did not finish within {timeout} s') from e
    for line in proc.stderr.splitlines():
        log(f'  nsres-bench: {line}')
    if proc.returncode != 0:
        raise BenchError(f'nsres-bench {" ".join(args)} failed with exit status {proc.returncode}')
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as e:
        raise BenchError(f'nsres-bench {" ".join(args)} printed no result: {proc.stdout!r}') from e


def allocations_made(result):
    '''Successful allocations: the calls that must each have asked polkit once.'''
    if result['mode'] == 'teardown':
        return result['calls'] - result['call_errors']
    if result['mode'] in ('cgroup', 'network'):
        return result['calls'] - result['allocation_errors']
    return result['calls'] - result['errors']


def expected_checks(result):
    '''CheckAuthorization calls a phase must have made, by action.'''
    expected = {ALLOCATE_ACTION: allocations_made(result)}
    if result['mode'] == 'cgroup':
        expected[DELEGATE_CGROUP_ACTION] = result['calls'] - result['errors']
    if result['mode'] == 'network':
        expected[DELEGATE_NETIF_ACTION] = result['calls'] - result['errors']
    return expected


def polkit_calls(mock):
    by_action, subject_kinds = {}, {}
    for _, call_args in mock.GetMethodCalls('CheckAuthorization'):
        subject, action = call_args[0], str(call_args[1])
        by_action[action] = by_action.get(action, 0) + 1
        kind = str(subject[0])
        subject_kinds[kind] = subject_kinds.get(kind, 0) + 1
    return by_action, subject_kinds


def manager_properties(conn):
    manager = conn.get_object(NSRES_NAME, NSRES_PATH)
    props = manager.GetAll(NSRES_MANAGER, dbus_interface='org.freedesktop.DBus.Properties', timeout=10)
    return {str(k): (str(v) if isinstance(v, str) else int(v)) for k, v in props.items()}


def cpu_seconds(pid):
    '''CPU time of a process and its reaped children (the daemon's helpers).'''
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf('SC_CLK_TCK')


def cpu_snapshot(procs):
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
    # Every child the runner reaps during a phase is the client (and setpriv).
    snap['client'] = usage.ru_utime + usage.ru_stime
    return snap


def cpu_per_call(before, after, calls):
    return {name: round((after[name] - before[name]) * 1000 / calls, 3) for name in before}


def run_variant(variant, opts, bench, build_dir, tmp):
    vdir = tmp / variant
    vdir.mkdir(mode=0o755)
    out = {'polkit': variant, 'phases': {}, 'released': {}, 'notes': []}
    with contextlib.ExitStack() as stack:
        address, bus_proc = start_bus(vdir, stack)
        # python-dbusmock finds the bus through the environment.
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
        env = dict(os.environ)
        conn = dbus.bus.BusConnection(address)
        stack.callback(conn.close)

        mock = None
        if variant == 'mock':
            mock, polkit_proc = start_polkit_mock(vdir, stack)
        else:
            note = install_policy(build_dir, stack)
            if note:
                out['notes'].append(note)
            polkit_proc = start_polkitd(vdir, env, conn, stack)

        # Before the daemon: removed after it stopped, whatever it left.
        cgroup = make_user_cgroup(opts.user, stack)
        daemon, daemon_log, daemon_status = start_daemon(build_dir, vdir, env, conn, stack)
        out['daemon'] = manager_properties(conn)
        procs = {'nsresd': daemon, 'dbus-daemon': bus_proc, 'polkit': polkit_proc}

        phases = [
            ('latency', [str(opts.calls)]),
            ('throughput', [str(opts.throughput_calls), str(opts.clients)]),
            ('teardown', [str(opts.teardown_calls)]),
            ('cgroup', [str(opts.cgroup_calls), str(cgroup)]),
            ('network', [str(opts.network_calls)]),
        ]
        for phase, phase_args in phases:
            waited, left = wait_released(conn, opts.release_timeout)
            if left:
                out['notes'].append(f'{left} namespaces still registered {waited:.1f} s before {phase}')
            if mock:
                mock.ClearCalls()

            log(f'{variant}: {phase} {" ".join(phase_args)}')
            before = cpu_snapshot(procs)
            result = run_client(bench, opts.user, env,
                                [*(['--samples'] if opts.samples else []),
                                 '--prefix', PHASE_PREFIX[phase], phase, *phase_args])
            if daemon.poll() is not None:
                raise BenchError(f'nsresd exited with status {daemon.returncode} during {phase}:\n'
                                 f'{tail(daemon_log)}')
            result['cpu_ms_per_call'] = cpu_per_call(before, cpu_snapshot(procs), result['calls'])

            if mock:
                by_action, subject_kinds = polkit_calls(mock)
                expected = expected_checks(result)
                result['polkit'] = {
                    'allocations': allocations_made(result),
                    'check_authorization_calls': by_action.get(ALLOCATE_ACTION, 0),
                    'expected': expected,
                    'by_action': {k: by_action.get(k, 0) for k in expected},
                    'other_actions': {k: v for k, v in by_action.items() if k not in expected},
                    'subject_kinds': subject_kinds,
                }
            waited, left = wait_released(conn, opts.release_timeout)
            out['released'][phase] = {'seconds': round(waited, 3), 'left_over': left}
            if phase == 'network':
                # A veth goes a moment after its network namespace.
                deadline = time.monotonic() + opts.release_timeout
                while host_links() and time.monotonic() < deadline:
                    time.sleep(0.02)
                out['released'][phase]['left_over_links'] = len(host_links())
            if phase == 'cgroup':
                # Each namespace's leaf goes with it, a moment after its object.
                deadline = time.monotonic() + opts.release_timeout
                while leaves(cgroup) and time.monotonic() < deadline:
                    time.sleep(0.02)
                out['released'][phase]['left_over_cgroups'] = len(leaves(cgroup))
            out['phases'][phase] = result

        stack.close()
        out['daemon_exit_status'] = daemon_status.get('exit_status')
        out['daemon_log_tail'] = tail(daemon_log, 10)
    return out


def run_baseline(opts, bench, env):
    '''setuid newuidmap+newgidmap, if installed and the user has sub-ids.'''
    if not (shutil.which('newuidmap') and shutil.which('newgidmap')):
        return {'skipped': 'newuidmap/newgidmap not installed (package uidmap)'}
    pw = pwd.getpwnam(opts.user)
    starts = []
    for path in ('/etc/subuid', '/etc/subgid'):
        start = None
        with contextlib.suppress(OSError), open(path, encoding='utf-8') as f:
            for line in f:
                fields = line.strip().split(':')
                if (len(fields) == 3 and fields[0] in (pw.pw_name, str(pw.pw_uid))
                        and fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) >= 65536):
                    start = fields[1]
                    break
        if start is None:
            return {'skipped': f'{path} gives {opts.user} no range of 65536 ids'}
        starts.append(start)
    return run_client(bench, opts.user, env, ['newuidmap', str(opts.baseline_calls), *starts])


# ---- report -----------------------------------------------------------------

def evaluate(doc):
    verdicts = []
    mock = doc['variants'].get('mock')
    if mock and 'error' in mock:
        mock = None
    for key, phase, field, op, limit, unit in TARGETS:
        value = mock['phases'][phase][field] if mock else None
        if value is None:
            verdict = 'n/a'
        else:
            verdict = 'PASS' if (value <= limit if op == '<=' else value >= limit) else 'MISS'
        verdicts.append({'target': key, 'limit': f'{op} {limit:g} {unit}', 'value': value, 'verdict': verdict})
    return verdicts


def check_polkit(doc):
    '''Returns a list of problems; empty when every allocation asked once.'''
    problems = []
    mock = doc['variants'].get('mock')
    if not mock or 'error' in mock:
        return problems
    for phase, result in mock['phases'].items():
        p = result['polkit']
        for action, count in p['expected'].items():
            if p['by_action'][action] != count:
                problems.append(f'{phase}: {p["by_action"][action]} CheckAuthorization calls for {action}, '
                                f'expected {count}')
        if p['other_actions']:
            problems.append(f'{phase}: unexpected actions checked: {p["other_actions"]}')
    return problems


def fmt(value, unit):
    if value is None:
        return '—'
    if unit == '/s':
        return f'{value:.0f}/s'
    return f'{value:.3f} ms'


SUMMARY_ROWS = [
    # (label, phase, field, unit, index into TARGETS or None)
    ('latency median', 'latency', 'median_ms', 'ms', 0),
    ('latency p99', 'latency', 'p99_ms', 'ms', 1),
    ('throughput', 'throughput', 'per_sec', '/s', 2),
    ('throughput median per call', 'throughput', 'median_ms', 'ms', None),
    ('teardown median', 'teardown', 'median_ms', 'ms', 3),
    ('teardown p99', 'teardown', 'p99_ms', 'ms', None),
    ('cgroup delegation median', 'cgroup', 'median_ms', 'ms', None),
    ('cgroup delegation p99', 'cgroup', 'p99_ms', 'ms', None),
    ('veth median', 'network', 'median_ms', 'ms', None),
    ('veth p99', 'network', 'p99_ms', 'ms', None),
]


def summary_table(doc, variants):
    names = list(variants)
    lines = [f'{"":44}' + ''.join(f'{"polkit " + n:>16}' for n in names) + f'{"target (mock)":>16}  verdict']
    for label, phase, field, unit, target in SUMMARY_ROWS:
        calls = variants[names[0]]['phases'][phase]['calls']
        clients = f', {doc["options"]["clients"]} clients' if phase == 'throughput' else ''
        line = f'{f"{label} ({calls}{clients})":44}'
        line += ''.join(f'{fmt(v["phases"][phase][field], unit):>16}' for v in variants.values())
        if target is not None:
            t = doc['targets'][target]
            line += f'{t["limit"]:>16}  {t["verdict"]}'
        lines.append(line)
    line = f'{"errors (latency/throughput/teardown/cgroup/network)":44}'
    for v in variants.values():
        line += f'{"/".join(str(v["phases"][p]["errors"]) for p in PHASE_PREFIX):>16}'
    lines.append(line)
    return lines


def summary(doc):
    m = doc['machine']
    variants = {n: v for n, v in doc['variants'].items() if 'error' not in v}
    daemon = next(iter(variants.values()))['daemon'] if variants else {}
    lines = [f'nsresd {daemon.get("Version", "?")} — kernel {m["kernel"]}, {m["nproc"]} CPUs, '
             f'Restriction={daemon.get("Restriction", "?")}, '
             f'TeardownTracking={daemon.get("TeardownTracking", "?")}']
    if variants:
        lines += summary_table(doc, variants)

    for n, v in doc['variants'].items():
        if 'error' in v:
            lines.append(f'polkit {n}: FAILED TO RUN: {v["error"].splitlines()[0]}')

    if 'mock' in variants:
        phases = variants['mock']['phases'].values()
        allocs = sum(r['polkit']['allocations'] for r in phases)
        calls = sum(r['polkit']['check_authorization_calls'] for r in phases)
        delegations = sum(r['polkit']['expected'].get(DELEGATE_CGROUP_ACTION, 0) for r in phases)
        delegation_calls = sum(r['polkit']['by_action'].get(DELEGATE_CGROUP_ACTION, 0) for r in phases)
        verdict = 'OK' if not doc['polkit_problems'] else 'WRONG: ' + '; '.join(doc['polkit_problems'])
        lines.append(f'polkit mock: {calls} CheckAuthorization calls for {allocs} allocations, '
                     f'{delegation_calls} for {delegations} cgroup delegations — {verdict}')

    for n, v in variants.items():
        slowest = max(r['seconds'] for r in v['released'].values())
        left = sum(r['left_over'] for r in v['released'].values())
        left_cgroups = v['released'].get('cgroup', {}).get('left_over_cgroups', 0)
        left_links = v['released'].get('network', {}).get('left_over_links', 0)
        state = f'all released (slowest drain {slowest:.2f} s)' if not left else f'{left} NOT RELEASED'
        if left_cgroups:
            state += f'; {left_cgroups} delegated cgroups NOT REMOVED'
        if left_links:
            state += f'; {left_links} network links NOT REMOVED'
        lines.append(f'polkit {n}: namespaces after each phase: {state}; '
                     f'daemon exit status {v["daemon_exit_status"]}')
        lines += [f'polkit {n}: note: {note}' for note in v['notes']]

    base = doc['baseline']
    if 'skipped' in base:
        lines.append(f'baseline newuidmap+newgidmap: skipped, {base["skipped"]}')
    else:
        lines.append(f'baseline newuidmap+newgidmap: median {fmt(base["median_ms"], "ms")}, '
                     f'p99 {fmt(base["p99_ms"], "ms")} ({base["calls"]} namespaces, {base["errors"]} errors)')
    lines.append(REFERENCE)
    return '\n'.join(lines)


def machine_info():
    model = None
    with contextlib.suppress(OSError), open('/proc/cpuinfo', encoding='utf-8') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    return {'kernel': platform.release(), 'nproc': os.cpu_count(), 'cpu': model, 'arch': platform.machine()}


def parse_args():
    parser = argparse.ArgumentParser(description='End-to-end benchmark of nsresd (run as root).')
    parser.add_argument('--build-dir', type=Path, default=REPO / 'build',
                        help='meson build tree with daemon/nsresd (default: %(default)s; set up if missing)')
    parser.add_argument('--no-rebuild', dest='rebuild', action='store_false',
                        help='use an existing build tree as it is, without running ninja')
    parser.add_argument('--polkit', choices=['mock', 'polkitd', 'both'], default='both',
                        help='polkit authority to run against (default: %(default)s)')
    parser.add_argument('--calls', type=int, default=1000, help='sequential calls for latency (default: %(default)s)')
    parser.add_argument('--throughput-calls', type=int, default=4000,
                        help='calls for throughput (default: %(default)s)')
    parser.add_argument('--clients', type=int, default=8, help='concurrent clients (default: %(default)s)')
    parser.add_argument('--teardown-calls', type=int, default=200,
                        help='namespaces for teardown latency (default: %(default)s)')
    parser.add_argument('--cgroup-calls', type=int, default=200,
                        help='AddControlGroupToUserNamespace calls, one fresh namespace each (default: %(default)s)')
    parser.add_argument('--network-calls', type=int, default=200,
                        help='AddNetworkToUserNamespace calls, one fresh namespace each (default: %(default)s)')
    parser.add_argument('--baseline-calls', type=int, default=200,
                        help='namespaces mapped with newuidmap+newgidmap, if installed (default: %(default)s)')
    parser.add_argument('--user', default='nobody', help='unprivileged user running the client (default: %(default)s)')
    parser.add_argument('--release-timeout', type=float, default=30,
                        help='seconds to wait for namespaces to be released between phases (default: %(default)s)')
    parser.add_argument('--samples', action='store_true',
                        help='include every measured sample (sorted, in ms) in the JSON document')
    parser.add_argument('--json', type=Path, help='also write the JSON document to this file')
    parser.add_argument('--keep-temp', action='store_true', help='keep the temporary directory with all logs')
    opts = parser.parse_args()
    for name in ('calls', 'throughput_calls', 'clients', 'teardown_calls', 'cgroup_calls', 'network_calls',
                 'baseline_calls'):
        if getattr(opts, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    return opts


def on_stop_signal(signum, _frame):
    # Unwinds through every cleanup on the way out.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main():
    opts = parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_stop_signal)
    if os.geteuid() != 0:
        log('must run as root: it starts nsresd and polkitd (sudo /usr/bin/python3 tests/bench/run-bench.py)')
        return 1
    try:
        if pwd.getpwnam(opts.user).pw_uid == 0:
            log(f'--user {opts.user} is root; the bench measures unprivileged callers')
            return 1
    except KeyError:
        log(f'no such user: {opts.user}')
        return 1

    variants = ['mock', 'polkitd'] if opts.polkit == 'both' else [opts.polkit]
    build_dir = opts.build_dir.resolve()
    tmp = Path(tempfile.mkdtemp(prefix='nsresd-bench-'))
    try:
        # The unprivileged client needs to reach its binary and the bus socket.
        tmp.chmod(0o755)
        ensure_build(build_dir, opts.rebuild)
        if not (build_dir / 'daemon' / 'nsresd').exists():
            raise BenchError(f'{build_dir / "daemon" / "nsresd"} is missing')
        bench = build_client(tmp)
        doc = {
            'machine': machine_info(),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'options': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            'variants': {},
        }
        for variant in variants:
            try:
                doc['variants'][variant] = run_variant(variant, opts, bench, build_dir, tmp)
            except (BenchError, dbus.exceptions.DBusException) as e:
                log(f'polkit {variant}: bench failed: {e}')
                doc['variants'][variant] = {'polkit': variant, 'error': str(e)}
        doc['baseline'] = run_baseline(opts, bench, dict(os.environ))
    except BenchError as e:
        log(f'bench failed: {e}')
        return 1
    except KeyboardInterrupt as e:
        log(f'interrupted ({e or "SIGINT"}), stopped everything')
        return 1
    finally:
        if opts.keep_temp:
            log(f'logs kept in {tmp}')
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    doc['targets'] = evaluate(doc)
    doc['polkit_problems'] = check_polkit(doc)
    text = json.dumps(doc, indent=2)
    print(text)
    if opts.json:
        opts.json.write_text(text + '\n')
    print(summary(doc), file=sys.stderr)
    failed = any('error' in v for v in doc['variants'].values())
    return 1 if failed or doc['polkit_problems'] else 0


if __name__ == '__main__':
    sys.exit(main())
