#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresd at scale: many live namespaces at once.

Starts a private bus, the polkit mock (always yes) and nsresd as
run-bench.py does, then, with nsres-bench's "scale" mode running as an
unprivileged user:

  1. start-up time to READY=1 with an empty registry;
  2. allocation latency with nothing live (S calls, held);
  3. fills up to N live namespaces (held by the client's fds);
  4. the daemon's RSS and fd count with N live;
  5. restarts the daemon (SIGTERM, start): time to READY=1 with N registry
     entries, and its RSS after loading them;
  6. allocation latency with N live (S calls), ListUserNamespaces and
     GetManagedObjects with N + 2S namespaces;
  7. the client exits, every namespace dies at once: time until all are
     released.

Prints a JSON document on stdout and a summary on stderr; exits 1 if a
target is missed. Run as root: sudo /usr/bin/python3 tests/bench/scale.py
"""

import argparse
import contextlib
import importlib.util
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dbus
import dbus.lowlevel

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location('run_bench', HERE / 'run-bench.py')
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)

# The per-owner limits must not cap what is measured.
CONFIG = '''[Security]
Restriction=permissive
[Allocator]
MaxNamespacesPerOwner=65536
MaxRequestsPerOwner=64
'''

# (key, comparison, limit, unit): the project's requirements.
TARGETS = [
    ('latency_ratio', '<=', 1.5, 'x'),
    ('rss_mib', '<=', 32.0, 'MiB'),
    ('list_ms', '<=', 50.0, 'ms'),
    ('managed_objects_ms', '<=', 50.0, 'ms'),
    ('startup_full_ms', '<=', 500.0, 'ms'),
    ('startup_empty_ms', '<=', 100.0, 'ms'),
]


def rss_mib(pid):
    with open(f'/proc/{pid}/status', encoding='utf-8') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise rb.BenchError(f'no VmRSS for {pid}')


def fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def namespace_count(conn):
    manager = conn.get_object(rb.NSRES_NAME, rb.NSRES_PATH)
    return int(manager.Get(rb.NSRES_MANAGER, 'Namespaces', dbus_interface='org.freedesktop.DBus.Properties',
                           timeout=10))


def wait_released(conn, timeout):
    """(seconds until none is left, how many are left). It polls the
    Namespaces count: a listing of thousands of namespaces every 20 ms
    would take the daemon's time from the releases being measured."""
    start = time.monotonic()
    while True:
        left = namespace_count(conn)
        waited = time.monotonic() - start
        if left == 0 or waited > timeout:
            return waited, left
        time.sleep(0.02)


class Daemon:
    """nsresd with its state on a private tmpfs and pins on a private bpffs,
    started again and again on the same state."""

    def __init__(self, build_dir, vdir, env, stack):
        self.binary = build_dir / 'daemon' / 'nsresd'
        self.vdir, self.env = vdir, env
        self.conf = vdir / 'nsresd.conf'
        self.conf.write_text(CONFIG)
        # One page per registry file: 16384 entries take 64 MiB of tmpfs.
        self.state_dir = rb.mount_state_tmpfs(vdir, stack, size='512m')
        rb.mount_private('bpf', vdir / 'bpffs', 'mode=0700', stack)
        self.bpf_dir = vdir / 'bpffs' / 'nsresd'
        stack.callback(rb.remove_pin_dir, self.bpf_dir)
        self.logfile = vdir / 'nsresd.log'
        self.proc = None
        stack.callback(self.stop)

    def start(self):
        """Returns ms from exec to READY=1."""
        notify_path = self.vdir / 'notify'
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            env = dict(self.env, NOTIFY_SOCKET=str(notify_path))
            with open(self.logfile, 'ab') as log:
                start = time.monotonic()
                self.proc = subprocess.Popen([str(self.binary), f'--config={self.conf}',
                                              f'--state-dir={self.state_dir}', f'--bpf-dir={self.bpf_dir}'],
                                             env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = start + 60
            while True:
                ready, _, _ = select.select([notify], [], [], 0.1)
                if ready and b'READY=1' in notify.recv(4096).split(b'\n'):
                    return (time.monotonic() - start) * 1000
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise rb.BenchError(f'nsresd did not get ready:\n{rb.tail(self.logfile)}')

    def stop(self):
        if self.proc and self.proc.poll() is None:
            status = rb.stop_process(self.proc, 'nsresd')
            if status != 0:
                raise rb.BenchError(f'nsresd exited with {status}:\n{rb.tail(self.logfile)}')


def cpu_ms(pid):
    """User and system CPU time of a process so far."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf('SC_CLK_TCK')


def managed_objects_cost(conn, daemon_pid, bus_pid, calls=10):
    """Where a GetManagedObjects goes: CPU of nsresd building the reply and
    of dbus-daemon checking and forwarding it, and the reply's size. The
    reply is not unpacked here: the wall time is the bus's and the
    service's, plus libdbus receiving it."""
    before = (cpu_ms(daemon_pid), cpu_ms(bus_pid))
    wall = []
    for _ in range(calls):
        call = dbus.lowlevel.MethodCallMessage(rb.NSRES_NAME, '/org/freedesktop/NamespaceResource1',
                                               'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects')
        start = time.monotonic()
        conn.send_message_with_reply_and_block(call, 60)
        wall.append((time.monotonic() - start) * 1000)
    after = (cpu_ms(daemon_pid), cpu_ms(bus_pid))
    return {'calls': calls, 'median_wall_ms': round(sorted(wall)[calls // 2], 1),
            'nsresd_cpu_ms_per_call': round((after[0] - before[0]) / calls, 1),
            'dbus_daemon_cpu_ms_per_call': round((after[1] - before[1]) / calls, 1)}


def run(opts, bench, build_dir, tmp):
    vdir = tmp / 'scale'
    vdir.mkdir(mode=0o755)
    out = {}
    with contextlib.ExitStack() as stack:
        address, bus_proc = rb.start_bus(vdir, stack)
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
        env = dict(os.environ)
        conn = dbus.bus.BusConnection(address)
        stack.callback(conn.close)
        rb.start_polkit_mock(vdir, stack)

        daemon = Daemon(build_dir, vdir, env, stack)
        out['startup_empty_ms'] = round(daemon.start(), 1)
        out['rss_empty_mib'] = round(rss_mib(daemon.proc.pid), 2)
        out['fds_empty'] = fd_count(daemon.proc.pid)

        pw = pwd.getpwnam(opts.user)
        client = subprocess.Popen(['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups',
                                   str(bench), '--prefix', 's', 'scale', str(opts.live), str(opts.samples)],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stack.callback(lambda: client.poll() is None and (client.kill(), client.wait()))
        rb.log(f'filling up to {opts.live} live namespaces')
        holding = json.loads(client.stdout.readline() or 'null') or {}
        if holding.get('mode') != 'scale-holding':
            raise rb.BenchError('the client did not reach the holding point')
        live = holding['live']
        out['live'] = live
        out['rss_live_mib'] = round(rss_mib(daemon.proc.pid), 2)
        out['fds_live'] = fd_count(daemon.proc.pid)

        rb.log(f'restarting nsresd with {live} registry entries')
        daemon.stop()
        out['registry_entries'] = len(list((daemon.state_dir / 'registry').glob('*.json')))
        out['startup_full_ms'] = round(daemon.start(), 1)
        out['rss_after_restart_mib'] = round(rss_mib(daemon.proc.pid), 2)
        out['namespaces_after_restart'] = len(rb.list_namespaces(conn))
        out['managed_objects_cost'] = dict(managed_objects_cost(conn, daemon.proc.pid, bus_proc.pid),
                                           objects=out['namespaces_after_restart'])

        client.stdin.write('go\n')
        client.stdin.flush()
        result = json.loads(client.stdout.readline() or 'null')
        if client.wait(timeout=600) != 0 or not result:
            raise rb.BenchError(f'nsres-bench scale failed with {client.returncode}')
        out['client'] = result
        out['rss_full_mib'] = round(rss_mib(daemon.proc.pid), 2)
        out['rss_mib'] = max(out['rss_live_mib'], out['rss_after_restart_mib'], out['rss_full_mib'])
        out['latency_empty_ms'] = result['empty']['median_ms']
        out['latency_full_ms'] = result['full']['median_ms']
        out['latency_ratio'] = round(result['full']['median_ms'] / result['empty']['median_ms'], 3)
        out['list_ms'] = result['list']['median_ms']
        out['managed_objects_ms'] = result['managed_objects']['median_ms']

        rb.log('the client exited: waiting for every namespace to be released')
        waited, left = wait_released(conn, opts.release_timeout)
        out['release_all_s'] = round(waited, 2)
        out['left_over'] = left
        out['listed_after_release'] = len(rb.list_namespaces(conn))
        out['fds_after_release'] = fd_count(daemon.proc.pid)
        out['rss_after_release_mib'] = round(rss_mib(daemon.proc.pid), 2)
        daemon.stop()
    return out


def main():
    parser = argparse.ArgumentParser(description='nsresd with many live namespaces (run as root).')
    parser.add_argument('--build-dir', type=Path, default=rb.REPO / 'build')
    parser.add_argument('--no-rebuild', dest='rebuild', action='store_false')
    parser.add_argument('--live', type=int, default=16384, help='namespaces held at once (default: %(default)s)')
    parser.add_argument('--samples', type=int, default=200,
                        help='timed allocations empty and full (default: %(default)s)')
    parser.add_argument('--user', default='nobody')
    parser.add_argument('--release-timeout', type=float, default=300)
    parser.add_argument('--json', type=Path, help='also write the JSON document to this file')
    parser.add_argument('--keep-temp', action='store_true', help="keep the temporary directory with nsresd's log")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        rb.log('must run as root: it starts nsresd (sudo /usr/bin/python3 tests/bench/scale.py)')
        return 1
    if not 0 < opts.samples < opts.live:
        parser.error('--samples must be between 1 and --live')
    signal.signal(signal.SIGTERM, rb.on_stop_signal)

    tmp = Path(tempfile.mkdtemp(prefix='nsresd-scale-'))
    try:
        tmp.chmod(0o755)
        rb.ensure_build(opts.build_dir.resolve(), opts.rebuild)
        bench = rb.build_client(tmp)
        doc = {'machine': rb.machine_info(), 'options': {k: str(v) for k, v in vars(opts).items()},
               'result': run(opts, bench, opts.build_dir.resolve(), tmp)}
    except (rb.BenchError, dbus.exceptions.DBusException) as e:
        rb.log(f'scale bench failed: {e}')
        return 1
    except KeyboardInterrupt:
        rb.log('interrupted, stopped everything')
        return 1
    finally:
        if opts.keep_temp:
            rb.log(f'logs kept in {tmp}')
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    r = doc['result']
    doc['targets'] = {}
    for key, op, limit, unit in TARGETS:
        value = r[key]
        ok = value <= limit if op == '<=' else value >= limit
        doc['targets'][key] = {'value': value, 'limit': f'{op} {limit} {unit}', 'met': ok}
    text = json.dumps(doc, indent=2)
    print(text)
    if opts.json:
        opts.json.write_text(text + '\n')
    for key, t in doc['targets'].items():
        rb.log(f'{key:20} {t["value"]:>10} {t["limit"]:>12}  {"ok" if t["met"] else "MISSED"}')
    cost = r['managed_objects_cost']
    rb.log(f'GetManagedObjects of {cost["objects"]} objects: CPU per call nsresd {cost["nsresd_cpu_ms_per_call"]} ms, '
           f'dbus-daemon {cost["dbus_daemon_cpu_ms_per_call"]} ms')
    rb.log(f'live {r["live"]}: fill {r["client"]["fill_per_sec"]}/s, all released in {r["release_all_s"]} s, '
           f'daemon fds {r["fds_empty"]} empty / {r["fds_live"]} live / {r["fds_after_release"]} after')
    return 0 if all(t['met'] for t in doc['targets'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
