# SPDX-License-Identifier: LGPL-2.1-or-later
"""Faults: the service killed at random moments under load, and teardown
events lost because the ring buffer overflowed while nobody read it. After
either, what the kernel says (the maps of the namespaces that live) and what
the service says (its list, registry, index and BPF maps) must agree, and
nothing of a dead namespace may be left behind."""

import ctypes
import json
import os
import pickle
import random
import select
import signal
import struct
import subprocess
import time

import harness as h
from harness import BLOCK, DAEMON_USER, NOBODY

SMALL_RING = 4096
LOST_EVENTS = 'Teardown events were lost'


def config_with(ring_size=None, **allocator):
    text = h.config_text(allocator=allocator or None)
    if ring_size is not None:
        text += f'[Tracking]\nTeardownRingBufferSize={ring_size}\n'
    return text


# ---- BPF maps, as bpftool sees them -----------------------------------------------------

def bpftool(*args):
    out = subprocess.run(['bpftool', '-j', *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def track_pin(daemon, name):
    return daemon.bpf_dir / 'v1' / name


def tracked_ids(daemon):
    """The namespace ids in the tracker's pinned hash map."""
    ids = set()
    for entry in bpftool('map', 'dump', 'pinned', str(track_pin(daemon, 'tracked'))):
        key = entry.get('key')
        if isinstance(key, list):
            ids.add(int.from_bytes(bytes(int(b, 16) for b in key), 'little'))
        else:
            ids.add(int(entry['formatted']['key']) if 'formatted' in entry else int(key))
    return ids


def drop_count(daemon):
    [entry] = bpftool('map', 'dump', 'pinned', str(track_pin(daemon, 'drops')))
    value = entry['value']
    if isinstance(value, list):
        return int.from_bytes(bytes(int(b, 16) for b in value), 'little')
    return int(value)


def map_info(path):
    return bpftool('map', 'show', 'pinned', str(path))


def restriction_maps(daemon):
    """Pinned restriction maps of namespaces (none where it could not load)."""
    return sorted(daemon.bpf_dir.glob('restrict-*/restricted'))


def map_entry_count(path):
    return len(bpftool('map', 'dump', 'pinned', str(path)))


# ---- ring buffer overflow ----------------------------------------------------------------

def make_held(count):
    """Namespaces of root held by our fd only (their processes exited)."""
    return [h.make_userns(None, hold_process=False) for _ in range(count)]


def allocate_all(root, namespaces, prefix):
    """Allocate every namespace as root, a few calls in flight at once."""
    allocations = {}
    for start in range(0, len(namespaces), 24):
        batch = namespaces[start:start + 24]
        results = h.run_parallel(root, [
            ('allocate', (f'{prefix}{start + i}', ns.fd, BLOCK, 0, 0)) for i, ns in enumerate(batch)])
        for ns, result in zip(batch, results):
            assert result['outcome'] == 'ok', result
            allocations[ns.id] = result['value']
    return allocations


def wait_for_count(daemon, text, count, timeout):
    h.wait_until(lambda: daemon.log().count(text) >= count, timeout, what=f'{count} log lines with {text!r}')


def overflow_round(daemon, root, prefix, stop, resume, lost_before):
    """Allocate more namespaces than the ring buffer has room for, let all
    but a few die while the service does not read events, resume it: the
    loss is logged, the dead are released, the living stay, the drop
    counter is back to 0."""
    namespaces = make_held(200)
    try:
        allocate_all(root, namespaces, prefix)
        alive, dying = namespaces[:8], namespaces[8:]
        stop()
        for ns in dying:
            ns.release()
        # Every teardown is in the ring or counted as dropped before we go on.
        h.wait_until(lambda: drop_count(daemon) > 0, 5, what='the ring buffer to overflow')
        time.sleep(0.3)
        resume()

        wait_for_count(daemon, LOST_EVENTS, lost_before + 1, 5)
        # Released at once, not by the backstop sweep a minute later.
        h.wait_until(lambda: {e.id for e in root.list()} == {ns.id for ns in alive}, 3,
                     what='only the living to be listed')
        assert len(daemon.registry_files()) == len(alive)
        assert tracked_ids(daemon) == {ns.id for ns in alive}
        assert drop_count(daemon) == 0
        for path in restriction_maps(daemon):
            assert map_entry_count(path) == len(alive)
    finally:
        for ns in namespaces:
            ns.release()
    h.wait_until(lambda: root.list() == [], 3, what='the last living ones to be released')
    assert tracked_ids(daemon) == set()


def test_default_ring_buffer_holds_the_teardowns_of_a_restart(daemon_factory, root):
    # The negative control: with the default size 192 teardowns while the
    # service is down fit, and no loss is reported.
    daemon = daemon_factory(config=config_with())
    assert map_info(track_pin(daemon, 'events'))['max_entries'] == 262144
    namespaces = make_held(192)
    try:
        allocate_all(root, namespaces, 'd')
        daemon.kill()
        for ns in namespaces:
            ns.release()
        time.sleep(0.5)
        assert drop_count(daemon) == 0
        daemon.start()
        assert root.list() == []
        assert LOST_EVENTS not in daemon.log()
    finally:
        for ns in namespaces:
            ns.release()


def test_ring_buffer_overflow_while_killed_and_while_stopped(daemon_factory, root):
    daemon = daemon_factory(config=config_with(ring_size=SMALL_RING))
    assert map_info(track_pin(daemon, 'events'))['max_entries'] == SMALL_RING

    def kill():
        assert daemon.kill() == -signal.SIGKILL

    def pause():
        os.kill(daemon.pid, signal.SIGSTOP)

    def resume():
        os.kill(daemon.pid, signal.SIGCONT)

    # Down: the next start finds the loss.
    overflow_round(daemon, root, 'k', kill, daemon.start, 0)
    assert 'while the service was down' in daemon.log()
    # Stopped: the first read after SIGCONT finds it.
    overflow_round(daemon, root, 's', pause, resume, 1)
    # The counter was reset: the same again.
    overflow_round(daemon, root, 't', pause, resume, 2)
    overflow_round(daemon, root, 'l', kill, daemon.start, 3)


def test_a_resized_ring_buffer_replaces_the_pinned_one(daemon_factory, root):
    daemon = daemon_factory(config=config_with())
    ns = h.make_userns(None, hold_process=False)
    try:
        a = root.allocate('resized', ns)
        assert daemon.stop() == 0
        daemon.config_path.write_text(config_with(ring_size=SMALL_RING))
        daemon.start()
        assert 'Replacing the pinned teardown ring buffer of 262144 bytes with one of 4096 bytes' in daemon.log()
        assert map_info(track_pin(daemon, 'events'))['max_entries'] == SMALL_RING
        # The program feeding the new ring buffer reports teardowns.
        assert [e.path for e in root.list()] == [a.path]
        ns.release()
        h.wait_until(lambda: root.list() == [], 2, what='the namespace to be released')
    finally:
        ns.release()


# ---- kill -9 under load -------------------------------------------------------------------

KILLS = 50
WORKERS = ((NOBODY, 0), (NOBODY, 1), (DAEMON_USER, 2), (DAEMON_USER, 3))
# Errors a call may get because the service died during it or is not back yet.
DOWN_ERRORS = {h.DBUS_ERROR + 'NoReply', h.DBUS_ERROR + 'ServiceUnknown', h.DBUS_ERROR + 'NameHasNoOwner',
               h.DBUS_ERROR + 'Disconnected', h.DBUS_ERROR + 'TimedOut', h.DBUS_ERROR + 'Timeout'}
# What each worker asks for, with its weight.
KINDS = (('transient', 8), ('transient+cgroup', 2), ('transient+net', 2), ('single', 2), ('self', 1),
         ('map-caller', 1), ('registered', 1))
# What happens to a namespace once its call returned: held to the end, let go
# at once, or let go a little later.
FATES = (('keep', 3), ('exit', 4), ('later', 3))
# Live namespaces one worker holds at most (the per-owner limit is 256).
MAX_HELD = 24
# Every start of the service kills itself right after writing the maps of the
# namespace called this (worker 0, as nobody): random kills rarely land in
# that window, the one where a range could be handed out twice.
CRASH_NAME = 'crash'

CLONE_NEWNET = 0x40000000


class Holder:
    """A process of the worker's user in a new user namespace (and network
    namespace, for a veth), waiting until told to exit. The worker holds no
    fd of it once its calls are done: the namespace lives exactly as long as
    the process."""

    def __init__(self, net=False, map_self=False):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                h._close_fds_except({ready_w, go_r})
                # Inside, before a map is written, we are the overflow id.
                uid, gid = os.geteuid(), os.getegid()
                if h._libc.unshare(h.CLONE_NEWUSER | (CLONE_NEWNET if net else 0)) != 0:
                    raise OSError(ctypes.get_errno(), 'unshare')
                if map_self:
                    for name, text in (('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {gid} 1')):
                        with open(f'/proc/self/{name}', 'w') as f:
                            f.write(text)
                h._write_all(ready_w, b'ok')
                os.read(go_r, 1)
            except BaseException as e:  # noqa: B902 - report anything to the worker
                h._write_all(ready_w, repr(e).encode())
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(go_r)
        self.pid, self._go = pid, go_w
        self.fd = self.netns_fd = None
        message = os.read(ready_r, 4096)
        os.close(ready_r)
        if message != b'ok':
            self.release()
            raise RuntimeError(f'holder failed: {message!r}')
        self.fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
        self.netns_fd = os.open(f'/proc/{pid}/ns/net', os.O_RDONLY | os.O_CLOEXEC) if net else None
        self.id = h.ns_id(self.fd)

    def uid_map(self):
        with open(f'/proc/{self.pid}/uid_map') as f:
            return h.parse_map(f.read())

    def close_fds(self):
        for fd in (self.fd, self.netns_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self.netns_fd = None

    def release(self):
        self.close_fds()
        if self._go is not None:
            os.close(self._go)
            self._go = None
        if self.pid is not None:
            h._reap(self.pid, timeout=5)
            self.pid = None


def _pick(rng, weighted):
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def _stop_asked(ctl):
    return bool(select.select([ctl], [], [], 0)[0])


def _call_until_answered(client, call, deadline):
    """call(client), again while the service is down: (result, None) or
    (None, BusError). NoReply is returned, not retried: the service died
    with the call, and only the caller can find out what it did."""
    while True:
        try:
            return call(client), None
        except h.BusError as e:
            if e.name not in DOWN_ERRORS or e.name == h.DBUS_ERROR + 'NoReply' or time.monotonic() > deadline:
                return None, e
        time.sleep(0.02)


def load_worker(client, index, seed, tag, cgroup, ctl, report):
    """Allocate namespaces of many kinds as fast as the service answers,
    keeping some, letting others go. Reports what lives at the end and what
    went wrong, then holds it until told to let go."""
    rng = random.Random(seed * 1000 + index)
    held, later, problems = [], [], []
    counts = {'ok': 0, 'kept-after-failure': 0, 'calls': 0}
    serial = 0
    while not _stop_asked(ctl):
        now = time.monotonic()
        for item in [x for x in later if x[0] <= now]:
            later.remove(item)
            item[1].release()
        if len(held) >= MAX_HELD:
            victim = held.pop(rng.randrange(len(held)))
            victim['holder'].release()
        kind = _pick(rng, KINDS)
        fate = _pick(rng, FATES)
        serial += 1
        name = f'{tag}{index}x{serial}'
        crash = index == 0 and rng.random() < 0.1
        if crash:
            # One at a time: the last one's name must be free again.
            for r in [r for r in held if r['name'].endswith(CRASH_NAME)]:
                held.remove(r)
                r['holder'].release()
            kind, fate, name = 'transient', 'keep', f'{tag}{CRASH_NAME}'
        holder = Holder(net=kind == 'transient+net', map_self=kind == 'registered')
        size, flags = {'single': (1, 0), 'self': (1, h.SELF), 'map-caller': (BLOCK, h.MAP_CALLER)}.get(kind, (BLOCK, 0))
        if kind == 'registered':
            def call(c):
                return c.register(name, holder.fd, timeout=10)
        elif crash:
            def call(c):
                # The name is free once the last one is proven dead.
                free_by = time.monotonic() + 3
                while True:
                    try:
                        return c.allocate(name, holder.fd, timeout=10)
                    except h.BusError as e:
                        if e.name != h.ERROR + 'NameExists' or time.monotonic() > free_by:
                            raise
                    time.sleep(0.05)
        else:
            def call(c):
                return c.allocate(name, holder.fd, size=size, flags=flags, timeout=10)

        counts['calls'] += 1
        deadline = time.monotonic() + 20
        result, error = _call_until_answered(client, call, deadline)
        record = {'kind': kind, 'name': name, 'id': holder.id, 'pid': holder.pid, 'reply': None}
        if error is not None and error.name == h.DBUS_ERROR + 'NoReply' and kind == 'registered':
            # Registered or not, a second try tells.
            result, error = _call_until_answered(client, call, deadline)
            if error is not None and error.name in (h.ERROR + 'UserNamespaceExists', h.ERROR + 'NameExists'):
                result, error = 'registered-by-an-earlier-try', None
        elif error is not None and error.name == h.DBUS_ERROR + 'NoReply':
            if holder.uid_map() == []:
                # Nothing was written: an allocation like any other, once more.
                result, error = _call_until_answered(client, call, deadline)
            else:
                # Mapped before the service died: the range is the namespace's
                # for as long as it lives, which it does to the end (the
                # rarest case, and the one where a range could go twice).
                record['reply'] = 'failed-but-mapped'
                fate = 'keep'
                error = None
                # The next start must have kept it: ask the first service
                # that answers, before anything could have hidden a loss.
                listed, list_error = _call_until_answered(client, lambda c: c.list(), time.monotonic() + 20)
                if list_error is None and holder.id not in {e.id for e in listed}:
                    problems.append(f'{kind} {name}: mapped before the service died, but not registered '
                                    f'after the restart: {holder.uid_map()}')

        if error is not None:
            if error.name not in DOWN_ERRORS:
                problems.append(f'{kind} {name}: {error}')
            holder.release()
            continue
        if result is not None and record['reply'] is None:
            record['reply'] = h.plain(tuple(result)) if isinstance(result, tuple) else result
            counts['ok'] += 1
        else:
            counts['kept-after-failure'] += 1

        if record['reply'] not in ('failed-but-mapped',) and kind == 'transient+cgroup':
            try:
                fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    record['cgroup'] = client.add_cgroup(holder.fd, fd, h.CREATE_CHILD, timeout=10)
                finally:
                    os.close(fd)
            except h.BusError as e:
                if e.name not in DOWN_ERRORS:
                    problems.append(f'cgroup of {name}: {e}')
        if record['reply'] not in ('failed-but-mapped',) and kind == 'transient+net':
            try:
                record['link'] = client.add_network(holder.fd, holder.netns_fd, timeout=10)[0]
            except h.BusError as e:
                if e.name not in DOWN_ERRORS:
                    problems.append(f'link of {name}: {e}')
        holder.close_fds()
        record['holder'] = holder
        if fate == 'keep':
            held.append(record)
        elif fate == 'exit':
            holder.release()
        else:
            later.append((time.monotonic() + rng.uniform(0.01, 0.5), holder))

    for _, holder in later:
        holder.release()
    live = [{k: v for k, v in r.items() if k != 'holder'} for r in held]
    data = pickle.dumps({'live': live, 'problems': problems, 'counts': counts})
    h._write_all(report, struct.pack('I', len(data)) + data)
    # Held until the test has compared them with what the service says.
    os.read(ctl, 1)
    os.read(ctl, 1)
    for r in held:
        r['holder'].release()
    return counts


def read_report(fd, timeout=60):
    data = b''
    deadline = time.monotonic() + timeout
    while len(data) < 4 or len(data) < 4 + struct.unpack('I', data[:4])[0]:
        left = deadline - time.monotonic()
        assert left > 0, 'a load worker sent no report'
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            assert chunk, 'a load worker died without a report'
            data += chunk
    return pickle.loads(data[4:])


def read_kernel_maps(pid, ns_id):
    """uid_map and gid_map of the namespace process pid is in, checking it
    is the namespace the worker reported."""
    fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert h.ns_id(fd) == ns_id, f'process {pid} is no longer in namespace {ns_id}'
    finally:
        os.close(fd)
    with open(f'/proc/{pid}/uid_map') as f:
        uid_map = h.parse_map(f.read())
    with open(f'/proc/{pid}/gid_map') as f:
        gid_map = h.parse_map(f.read())
    return uid_map, gid_map


def registry_entries(daemon):
    entries = {}
    for name in daemon.registry_files():
        e = json.loads((daemon.state_dir / 'registry' / name).read_text())
        assert int(e['id']) not in entries, f'two registry files for namespace {e["id"]}'
        entries[int(e['id'])] = e
    return entries


def links_named_after(tag):
    """Host links whose alternative name carries a namespace name with tag."""
    found = []
    for link in json.loads(subprocess.run(['ip', '-j', 'link', 'show'], check=True, capture_output=True,
                                          text=True).stdout):
        if any(f'-{tag}' in name for name in link.get('altnames', [])):
            found.append(link['ifname'])
    return found


def expected_maps(entry):
    """uid_map and gid_map the registry entry says the kernel must show."""
    uid_map = [(entry['target'], entry['uid_start'], entry['size'])]
    gid_map = [(entry['target'], entry['gid_start'], entry['size'])]
    if entry.get('map_caller'):
        uid_map.append((entry['target'] + entry['size'], entry['caller_uid'], 1))
        gid_map.append((entry['target'] + entry['size'], entry['caller_gid'], 1))
    return uid_map, gid_map


def test_kill_9_under_load(daemon_factory, root):
    seed = int(os.environ.get('NSRESD_FAULT_SEED') or random.SystemRandom().randrange(1 << 32))
    print(f'kill -9 under load: seed {seed} (NSRESD_FAULT_SEED={seed} replays the kills and the load)')
    rng = random.Random(seed)
    tag = f'f{seed % 10000:04d}'
    daemon = daemon_factory(config=config_with(MaxNamespacesPerOwner=256))
    cgroups = h.Cgroups()
    workers, ctls = [], []
    try:
        for user, index in WORKERS:
            cgroup = cgroups.make(f'w{index}', user=user)
            ctl_r, ctl_w = os.pipe()
            report_r, report_w = os.pipe()
            call = h.spawn_as_user(user, load_worker, index, seed, tag, str(cgroup), ctl_r, report_w)
            os.close(ctl_r)
            os.close(report_w)
            workers.append((call, report_r))
            ctls.append(ctl_w)

        crash_fault = f'kill-after-map:{h.passwd(NOBODY).pw_uid}-{tag}{CRASH_NAME}'
        downtimes, killed_starting = [], 0
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.02, 0.3))
            assert daemon.kill() == -signal.SIGKILL
            time.sleep(rng.choice((0, 0, 0.01, 0.05)))
            if rng.random() < 0.25:
                # Killed again while it starts: loading the registry,
                # finishing interrupted calls, sweeping.
                try:
                    daemon.start(fault=crash_fault, timeout=rng.uniform(0.002, 0.08))
                except AssertionError as e:
                    assert 'sent no READY=1' in str(e), e
                    killed_starting += 1
                if daemon.running:
                    assert daemon.kill() == -signal.SIGKILL
            started = time.monotonic()
            daemon.start(fault=crash_fault)
            downtimes.append(time.monotonic() - started)
        # The last start stays up to the end.
        daemon.kill()
        daemon.start(fault='')
        time.sleep(0.3)

        for ctl, (call, _) in zip(ctls, workers):
            try:
                os.write(ctl, b's')
            except BrokenPipeError:
                call.result(5)
                raise AssertionError('a load worker ended before it was told to stop') from None
        reports = [read_report(fd) for _, fd in workers]
        problems = [p for r in reports for p in r['problems']]
        assert problems == [], 'the load found problems other than the service being down:\n' + \
            '\n'.join(problems)
        live = [r for report in reports for r in report['live']]
        counts = {k: sum(r['counts'][k] for r in reports) for k in reports[0]['counts']}
        crashes = daemon.log().count('Fault injection: killing the daemon after writing the maps')
        print(f'{counts}, {len(live)} live at the end, {killed_starting} kills during start-up, {crashes} '
              f'crashes after writing maps, start-up took {max(downtimes):.3f} s at most')
        assert crashes > 0
        assert counts['ok'] >= 100, f'too little load got through: {counts}'

        # Dead namespaces are released by their teardown events.
        live_ids = {r['id'] for r in live}
        try:
            h.wait_until(lambda: {e.id for e in root.list()} == live_ids, 5,
                         what='the service to list exactly the live namespaces')
        except AssertionError:
            listed = {e.id: e for e in root.list()}
            raise AssertionError(f'listed but not alive: {[listed[i] for i in set(listed) - live_ids]}; '
                                 f'alive but not listed: {[r for r in live if r["id"] not in listed]}') from None
        listed = root.list()
        assert len(listed) == len(live_ids), 'a namespace is listed twice'
        by_id = {e.id: e for e in listed}
        entries = registry_entries(daemon)
        assert set(entries) == live_ids
        assert all(not e['pending'] for e in entries.values())

        transient = []
        for r in live:
            e, listing = entries[r['id']], by_id[r['id']]
            uid_map, gid_map = read_kernel_maps(r['pid'], r['id'])
            want_uid, want_gid = expected_maps(e)
            assert (listing.uid_start, listing.size, listing.target) == (e['uid_start'], e['size'], e['target'])
            if r['kind'] == 'registered':
                assert e['kind'] == 'registered'
                assert uid_map == [(0, e['caller_uid'], 1)]
                continue
            assert uid_map == want_uid, f'{r}: kernel {uid_map}, registry {e}'
            if r['reply'] == 'failed-but-mapped':
                # The service may have died between the two maps.
                assert gid_map in (want_gid, []), f'{r}: kernel {gid_map}, registry {e}'
            else:
                assert gid_map == want_gid, f'{r}: kernel {gid_map}, registry {e}'
                assert tuple(r['reply'][:3]) == (listing.path, e['name'], e['uid_start'])
            if e['kind'] == 'transient':
                transient.append((e['uid_start'], e['size'], e['name']))
        # No id is handed out twice.
        transient.sort()
        for (a, size, name), (b, _, other) in zip(transient, transient[1:]):
            assert a + size <= b, f'{name} ({a}+{size}) overlaps {other} ({b})'
        assert sorted(tracked_ids(daemon)) == sorted(live_ids)
        # The index is rewritten a moment after a change.
        want_index = sorted(u for u, _, _ in transient)
        h.wait_until(lambda: sorted(u for u, _, _ in daemon.index_entries()) == want_index, 2,
                     what='the index to list exactly the live transient ranges')

        # Let everything go: nothing may be left behind.
        for ctl in ctls:
            os.write(ctl, b'r')
        for call, _ in workers:
            call.result(60)
        h.wait_until(lambda: root.list() == [], 5, what='every namespace to be released')
        assert daemon.registry_files() == []
        h.wait_until(lambda: daemon.index_entries() == [], 3, what='an empty index')
        assert tracked_ids(daemon) == set()
        for path in restriction_maps(daemon):
            assert map_entry_count(path) == 0
        for _, index in WORKERS:
            leftovers = [p.name for p in (cgroups.top / f'w{index}').iterdir() if p.is_dir()]
            assert leftovers == [], f'control groups left behind: {leftovers}'
        h.wait_until(lambda: links_named_after(tag) == [], 3, what='every link to be gone')
        assert sorted(os.listdir(daemon.state_dir / 'registry')) in ([], ['quarantine'])
        # Nothing written at any instant is ever found corrupt, doubled or
        # freed twice.
        for sign in ('corrupt', 'duplicates another', 'cannot be reserved', 'was not taken'):
            assert sign not in daemon.log()
    finally:
        for ctl in ctls:
            try:
                os.write(ctl, b'rr')
            except OSError:
                pass
            os.close(ctl)
        for call, fd in workers:
            try:
                call.result(30)
            except BaseException:  # noqa: B902 - the first failure is the one to report
                pass
            os.close(fd)
        cgroups.release()
