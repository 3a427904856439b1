#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsresd under a long concurrent load: nothing may fail, grow or stay behind.

Starts a private bus, the polkit mock (always yes) and nsresd as
run-bench.py does, then runs --clients nsres-bench "soak" clients at once,
each a process of its own with its own bus connection, as several
unprivileged users:

  - "mixed" clients (spread over --users) allocate and hold namespaces
    (released by closing the fd, or by the exit of the process in them),
    SELF allocations, registrations, cgroup delegations into the user's
    cgroup, veths, GetUserNamespaceByUid and property reads checked against
    what they hold, listings, GetManagedObjects, and on purpose a name they
    hold (NameExists);
  - "hoard" clients (--hoard-user) hold namespaces until the per-owner limit
    (MaxNamespacesPerOwner=--limit) answers TooManyNamespaces, let them all
    go, and start again.

First a warm-up of --warmup seconds with the same load; once everything of
it is released, the daemon's fd count and RSS are the baseline. Then the
soak proper for --duration seconds (fds and RSS sampled every 10 s); once all
clients exited and every namespace was released, fds and RSS again.

Fails (exit 1) on any error other than the two the soak provokes, on an
answer that disagrees with what the client holds, on a client that failed,
on fd growth, on RSS growth above --rss-growth-kib, and on anything left
behind: registered namespaces, registry files, tracked namespaces in the BPF
map, delegated cgroups, veths, daemon children. Prints a JSON document on
stdout and a summary on stderr. Run as root:
sudo /usr/bin/python3 tests/bench/soak.py
"""

import argparse
import contextlib
import importlib.util
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dbus

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location('run_bench', HERE / 'run-bench.py')
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)

ERROR = 'org.freedesktop.NamespaceResource1.Error.'
# What the soak provokes on purpose, and who may get it.
EXPECTED = {'mixed': {ERROR + 'NameExists'}, 'hoard': {ERROR + 'TooManyNamespaces'}}
SAMPLE_PERIOD = 10.0


def config(limit):
    # permissive: this host's kernel cannot attach the BPF LSM (see
    # run-bench.py). Requests in flight per owner stay at the default 32:
    # no user runs that many clients.
    return f'''[Security]
Restriction=permissive
[Allocator]
MaxNamespacesPerOwner={limit}
'''


def rss_kib(pid):
    with open(f'/proc/{pid}/status', encoding='utf-8') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise rb.BenchError(f'no VmRSS for {pid}')


def fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def cpu_s(pid):
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # utime and stime, fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def children(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children', encoding='utf-8') as f:
            return f.read().split()
    except FileNotFoundError:
        return []


class Daemon:
    """nsresd with its state on a private tmpfs and pins on a private bpffs."""

    def __init__(self, build_dir, vdir, env, conn, limit, stack):
        self.vdir, self.env, self.conn = vdir, env, conn
        conf = vdir / 'nsresd.conf'
        conf.write_text(config(limit))
        self.state_dir = rb.mount_state_tmpfs(vdir, stack)
        rb.mount_private('bpf', vdir / 'bpffs', 'mode=0700', stack)
        self.bpf_dir = vdir / 'bpffs' / 'nsresd'
        stack.callback(rb.remove_pin_dir, self.bpf_dir)
        self.logfile = vdir / 'nsresd.log'
        self.exit_status = None
        with open(self.logfile, 'wb') as log:
            self.proc = subprocess.Popen([str(build_dir / 'daemon' / 'nsresd'), f'--config={conf}',
                                          f'--state-dir={self.state_dir}', f'--bpf-dir={self.bpf_dir}'],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(self.stop)
        rb.wait_for_name(conn, rb.NSRES_NAME, self.proc, 'nsresd', self.logfile)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        if self.proc.poll() is not None:
            raise rb.BenchError(f'nsresd exited with {self.proc.returncode}:\n{rb.tail(self.logfile)}')

    def stop(self):
        if self.exit_status is None:
            self.exit_status = rb.stop_process(self.proc, 'nsresd')
        return self.exit_status

    def registry_files(self):
        return sorted(p.name for p in (self.state_dir / 'registry').glob('*') if p.is_file())

    def tracked(self):
        """Entries of the teardown tracker's BPF map."""
        pin = self.bpf_dir / 'v1' / 'tracked'
        if not pin.exists():
            return 0
        out = rb.run_checked(['bpftool', '-j', 'map', 'dump', 'pinned', str(pin)], 'bpftool map dump')
        return len(json.loads(out or '[]'))


def our_links(names):
    """veths whose alternative name ("ns-<namespace>-<ifname>") names one of
    our namespaces: other programs on this host may make ns- links too."""
    out = rb.run_checked(['ip', '-j', 'link', 'show'], 'ip link show')
    found = []
    for link in json.loads(out or '[]'):
        for alt in link.get('altnames', []):
            if any(alt.startswith(f'ns-{n}') for n in names):
                found.append(f'{link["ifname"]} ({alt})')
    return found


class Clients:
    """One soak phase: every client started, released at once, collected."""

    def __init__(self, bench, env, plan, seconds, token):
        self.procs = []
        for i, (user, role, cgroup) in enumerate(plan):
            pw = pwd.getpwnam(user)
            # Unique per client and run; 7 digits stay for the serial.
            prefix = f'{token}{i:02d}'
            argv = ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups',
                    str(bench), f'--prefix={prefix}', 'soak', str(seconds), role]
            if cgroup:
                argv.append(str(cgroup))
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            proc.soak = {'user': user, 'role': role}
            self.procs.append(proc)

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def wait_ready(self, timeout=60):
        for proc in self.procs:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ''
            if '"soak-ready"' not in line:
                raise rb.BenchError(f'a soak client did not get ready: {proc.stderr.read() if not ready else line}')

    def go(self):
        for proc in self.procs:
            proc.stdin.write('go\n')
            proc.stdin.flush()

    def collect(self, timeout):
        results, failures = [], []
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                failures.append(f'{proc.soak["user"]}/{proc.soak["role"]}: did not finish in time')
                continue
            for line in err.splitlines():
                rb.log(f'  nsres-bench ({proc.soak["user"]}): {line}')
            try:
                result = json.loads(out.strip().splitlines()[-1])
            except (IndexError, ValueError):
                result = None
            if proc.returncode != 0 or not result or result.get('mode') != 'soak':
                failures.append(f'{proc.soak["user"]}/{proc.soak["role"]}: exit status {proc.returncode}')
                continue
            result.update(proc.soak)
            results.append(result)
        return results, failures


def plan_clients(opts, cgroups):
    n_hoard = max(1, opts.clients // 16)
    plan = [(opts.hoard_user, 'hoard', None)] * n_hoard
    for i in range(opts.clients - n_hoard):
        user = opts.users[i % len(opts.users)]
        plan.append((user, 'mixed', cgroups[user]))
    return plan


def sample(daemon, start):
    listed = rb.list_namespaces(daemon.conn)
    per_owner = {}
    for entry in listed:
        per_owner[int(entry[3])] = per_owner.get(int(entry[3]), 0) + 1
    return {'t_s': round(time.monotonic() - start, 1), 'fds': fd_count(daemon.pid), 'rss_kib': rss_kib(daemon.pid),
            'namespaces': len(listed), 'per_owner': per_owner}


def run_phase(bench, env, plan, seconds, daemon, token, samples=None):
    clients = Clients(bench, env, plan, seconds, token)
    try:
        clients.wait_ready()
        clients.go()
        start, cpu_start = time.monotonic(), cpu_s(daemon.pid)
        next_sample = start + SAMPLE_PERIOD
        while time.monotonic() < start + seconds:
            time.sleep(max(0.0, min(next_sample, start + seconds) - time.monotonic()))
            daemon.alive()
            if samples is not None and time.monotonic() >= next_sample:
                samples.append(sample(daemon, start))
                next_sample += SAMPLE_PERIOD
        results, failures = clients.collect(timeout=seconds + 120)
        wall = time.monotonic() - start
        daemon_cpu = cpu_s(daemon.pid) - cpu_start
    finally:
        clients.kill()
    daemon.alive()
    summary = summarize(results, wall)
    # 1.0 is one core busy: the daemon is single-threaded.
    summary['daemon_cpu_share'] = round(daemon_cpu / wall, 2)
    return summary, failures


def settle(daemon, conn, cgroups, names, timeout):
    """Waits until everything of a phase is gone; returns what was left."""
    start = time.monotonic()
    while True:
        left = {
            'namespaces': len(rb.list_namespaces(conn)),
            'registry_files': len(daemon.registry_files()),
            'tracked': daemon.tracked(),
            'cgroups': sorted(f'{c.name}/{leaf}' for c in cgroups.values() for leaf in rb.leaves(c)),
            'links': our_links(names),
            'daemon_children': len(children(daemon.pid)),
        }
        if not any(left.values()) or time.monotonic() - start > timeout:
            return time.monotonic() - start, {k: v for k, v in left.items() if v}
        time.sleep(0.1)


def settled_fds(daemon, baseline, timeout=10):
    """The fd count once closing ones (helpers' pidfds, finished calls) went."""
    deadline = time.monotonic() + timeout
    while True:
        fds = fd_count(daemon.pid)
        if fds <= baseline or time.monotonic() > deadline:
            return fds
        time.sleep(0.1)


def summarize(results, wall):
    out = {'calls': 0, 'ok': 0, 'wrong_answers': 0, 'methods': {}, 'expected_errors': {},
           'unexpected_errors': {}, 'clients_by_role': {}}

    def add(into, items):
        for k, v in items.items():
            into[k] = into.get(k, 0) + v

    for r in results:
        out['calls'] += r['calls']
        out['ok'] += r['ok']
        out['wrong_answers'] += r['wrong_answers']
        add(out['methods'], r['methods'])
        add(out['clients_by_role'], {r['role']: 1})
        for name, count in r['expected_errors'].items():
            # An error provoked in one role is still unexpected in the other.
            add(out['expected_errors' if name in EXPECTED[r['role']] else 'unexpected_errors'], {name: count})
        add(out['unexpected_errors'], r['unexpected_errors'])
    out['wall_s'] = round(wall, 2)
    out['calls_per_sec'] = round(out['calls'] / wall, 1) if wall else 0
    medians = sorted(r['median_ms'] for r in results if r['median_ms'] is not None)
    out['median_of_client_medians_ms'] = medians[len(medians) // 2] if medians else None
    out['max_client_p99_ms'] = max((r['p99_ms'] for r in results if r['p99_ms'] is not None), default=None)
    return out


def run(opts, bench, build_dir, tmp):
    vdir = tmp / 'soak'
    vdir.mkdir(mode=0o755)
    out = {}
    with contextlib.ExitStack() as stack:
        address, _ = rb.start_bus(vdir, stack)
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = address
        env = dict(os.environ)
        conn = dbus.bus.BusConnection(address)
        stack.callback(conn.close)
        rb.start_polkit_mock(vdir, stack)
        cgroups = {user: rb.make_user_cgroup(user, stack) for user in opts.users}
        daemon = Daemon(build_dir, vdir, env, conn, opts.limit, stack)
        plan = plan_clients(opts, cgroups)
        token = 'k' + secrets.token_hex(1)
        names = sorted({f'{pwd.getpwnam(user).pw_uid}-{token}' for user, _, _ in plan})

        rb.log(f'warm-up: {len(plan)} clients for {opts.warmup} s')
        out['warmup'], failures = run_phase(bench, env, plan, opts.warmup, daemon, token)
        if failures:
            raise rb.BenchError('soak clients failed in the warm-up: ' + '; '.join(failures))
        waited, left = settle(daemon, conn, cgroups, names, opts.release_timeout)
        if left:
            raise rb.BenchError(f'the warm-up left things behind after {waited:.1f} s: {left}')
        out['fds_before'] = fd_count(daemon.pid)
        out['rss_before_kib'] = rss_kib(daemon.pid)

        rb.log(f'soak: {len(plan)} clients for {opts.duration} s')
        samples = [{'t_s': 0.0, 'fds': out['fds_before'], 'rss_kib': out['rss_before_kib'], 'namespaces': 0}]
        out['soak'], failures = run_phase(bench, env, plan, opts.duration, daemon, token, samples)
        out['client_failures'] = failures
        out['samples'] = samples

        rb.log('all clients exited: waiting until everything is released')
        waited, left = settle(daemon, conn, cgroups, names, opts.release_timeout)
        out['release_s'] = round(waited, 2)
        out['left_over'] = left
        out['fds_after'] = settled_fds(daemon, out['fds_before'])
        out['rss_after_kib'] = rss_kib(daemon.pid)
        out['manager'] = rb.manager_properties(conn)
        out['daemon_exit_status'] = daemon.stop()
        if out['daemon_exit_status'] != 0:
            out['daemon_log_tail'] = rb.tail(daemon.logfile)
    return out


def verdict(opts, r):
    """(what, ok) for every check."""
    s = r['soak']
    expected = s['expected_errors']
    return [
        (f'clients that failed: {len(r["client_failures"])}', not r['client_failures']),
        (f'unexpected errors: {sum(s["unexpected_errors"].values())} {s["unexpected_errors"] or ""}',
         not s['unexpected_errors']),
        (f'answers that disagreed with the client: {s["wrong_answers"]}', s['wrong_answers'] == 0),
        (f'provoked NameExists: {expected.get(ERROR + "NameExists", 0)}', expected.get(ERROR + 'NameExists', 0) > 0),
        (f'provoked TooManyNamespaces: {expected.get(ERROR + "TooManyNamespaces", 0)}',
         expected.get(ERROR + 'TooManyNamespaces', 0) > 0),
        (f'fd growth: {r["fds_after"] - r["fds_before"]} ({r["fds_before"]} -> {r["fds_after"]})',
         r['fds_after'] <= r['fds_before']),
        (f'RSS growth: {r["rss_after_kib"] - r["rss_before_kib"]} KiB ({r["rss_before_kib"]} -> '
         f'{r["rss_after_kib"]} KiB, bound {opts.rss_growth_kib} KiB)',
         r['rss_after_kib'] - r['rss_before_kib'] <= opts.rss_growth_kib),
        (f'left behind: {r["left_over"] or "nothing"}', not r['left_over']),
        (f'nsresd exit status on SIGTERM: {r["daemon_exit_status"]}', r['daemon_exit_status'] == 0),
    ]


def main():
    parser = argparse.ArgumentParser(description='nsresd under a long concurrent load (run as root).')
    parser.add_argument('--build-dir', type=Path, default=rb.REPO / 'build')
    parser.add_argument('--no-rebuild', dest='rebuild', action='store_false')
    parser.add_argument('--duration', type=int, default=60, help='seconds of soak (default: %(default)s)')
    parser.add_argument('--clients', type=int, default=64, help='concurrent clients (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=10,
                        help='seconds of the same load before the baseline is taken (default: %(default)s)')
    parser.add_argument('--users', default='nobody,daemon,bin,sys',
                        help='users of the mixed clients, comma-separated (default: %(default)s)')
    parser.add_argument('--hoard-user', default='games',
                        help='user of the clients that run into the per-owner limit (default: %(default)s)')
    # The mixed clients of one user hold at most 2 namespaces each, but
    # those they let go count until the kernel has freed them and the
    # daemon released them: under this load some 100 per user at once.
    parser.add_argument('--limit', type=int, default=256,
                        help='MaxNamespacesPerOwner, which the hoarding clients run into (default: %(default)s)')
    # After the warm-up the heap has seen the peak of the load: what the
    # soak adds is at most fragmentation of malloc's free lists, which glibc
    # keeps instead of returning, not memory in use.
    parser.add_argument('--rss-growth-kib', type=int, default=1024,
                        help='RSS growth allowed from after the warm-up to after the soak (default: %(default)s)')
    parser.add_argument('--release-timeout', type=float, default=60)
    parser.add_argument('--json', type=Path, help='also write the JSON document to this file')
    opts = parser.parse_args()
    opts.users = [u for u in opts.users.split(',') if u]
    if os.geteuid() != 0:
        rb.log('must run as root: it starts nsresd (sudo /usr/bin/python3 tests/bench/soak.py)')
        return 1
    if opts.clients < len(opts.users) + 1 or opts.clients > 99 or opts.duration < 1 or opts.warmup < 1:
        parser.error(f'--clients must be from {len(opts.users) + 1} to 99, --duration and --warmup at least 1')
    if opts.hoard_user in opts.users:
        parser.error('--hoard-user must not be one of --users: its limit errors are provoked')
    signal.signal(signal.SIGTERM, rb.on_stop_signal)

    tmp = Path(tempfile.mkdtemp(prefix='nsresd-soak-'))
    try:
        tmp.chmod(0o755)
        rb.ensure_build(opts.build_dir.resolve(), opts.rebuild)
        bench = rb.build_client(tmp)
        doc = {'machine': rb.machine_info(), 'options': {k: str(v) for k, v in vars(opts).items()},
               'result': run(opts, bench, opts.build_dir.resolve(), tmp)}
    except (rb.BenchError, dbus.exceptions.DBusException) as e:
        rb.log(f'soak failed: {e}')
        return 1
    except KeyboardInterrupt:
        rb.log('interrupted, stopped everything')
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    r = doc['result']
    checks = verdict(opts, r)
    doc['checks'] = [{'check': what, 'ok': ok} for what, ok in checks]
    text = json.dumps(doc, indent=2)
    print(text)
    if opts.json:
        opts.json.write_text(text + '\n')
    s = r['soak']
    rb.log(f'{s["clients_by_role"]} clients, {s["wall_s"]} s: {s["calls"]} calls, {s["calls_per_sec"]} calls/s, '
           f'median {s["median_of_client_medians_ms"]} ms, worst client p99 {s["max_client_p99_ms"]} ms, '
           f'nsresd busy {s["daemon_cpu_share"]:.0%} of one core')
    rb.log(f'expected errors: {s["expected_errors"]}')
    rb.log('fds/RSS/live namespaces every 10 s: ' +
           ', '.join(f'{x["fds"]}/{x["rss_kib"]}K/{x["namespaces"]}' for x in r['samples']))
    rb.log(f'released in {r["release_s"]} s')
    for what, ok in checks:
        rb.log(f'{"ok    " if ok else "FAILED"} {what}')
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
