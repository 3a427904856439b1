# SPDX-License-Identifier: LGPL-2.1-or-later
"""The BPF LSM enforcement, checked in a VM running Debian's stock kernel.

Boots the guest program twice: "enforce" (bpf in lsm=) and "control" (the
same list without bpf), and compares what it prints with expected-MODE.txt.

Guest protocol, one line each on the console:
    CASE <name> <expected> <got>    one per check; names are unique
    RESTRICTION enforcing|unavailable
    BPFOBJ <sha256 hex>             of the BPF object the guest loaded
    PASS or FAIL
init adds "EXIT <status>" and "VM-DONE".

Environment:
    NSRESD_BUILD_DIR       meson build directory (default: build/ at the top)
    NSRESD_VMTEST_BIN      guest program (default BUILD/tests/vm/nsresd-vmtest)
    NSRESD_VMTEST_BPFOBJ   the BPF object the guest program embeds (default
                           BUILD/bpf/userns-restrict.stripped.o): its hash must
                           be the one the guest prints
    NSRESD_VM_TIMEOUT      seconds a boot may take (default 600)

Run as root (prepare.sh installs packages). The kernel and modules are
cached in BUILD/vm, with the initramfs and a serial log per mode. The two
boots run at the same time; each takes 10 to 20 s under TCG.
"""

import concurrent.futures
import difflib
import hashlib
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

GUEST_BIN = '/nsresd-vmtest'

MODES = ('enforce', 'control')
RESTRICTION = {'enforce': 'enforcing', 'control': 'unavailable'}


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_vm = _load('run_vm', HERE / 'run-vm.py')
mkinitramfs = _load('mkinitramfs', HERE / 'mkinitramfs.py')


def build_dir():
    return Path(os.environ.get('NSRESD_BUILD_DIR') or REPO_ROOT / 'build').resolve()


def read_table(path):
    """expected-MODE.txt: {name: result}; '#' starts a comment."""
    table = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if len(words) != 2 or words[0] in table:
                raise ValueError(f'{path}:{number}: expected a new "<name> <result>", got {line!r}')
            table[words[0]] = words[1]
    return table


def parse_output(lines):
    """The protocol lines of one boot, as a dict of lists."""
    out = {'CASE': [], 'RESTRICTION': [], 'BPFOBJ': [], 'EXIT': [], 'verdict': [], 'malformed': []}
    for line in lines:
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key == 'CASE':
            if len(words) == 4:
                out['CASE'].append(tuple(words[1:]))
            else:
                out['malformed'].append(line)
        elif key in ('RESTRICTION', 'BPFOBJ', 'EXIT'):
            if len(words) == 2:
                out[key].append(words[1])
            else:
                out['malformed'].append(line)
        elif line.strip() in ('PASS', 'FAIL'):
            out['verdict'].append(line.strip())
    out['done'] = 'VM-DONE' in (line.strip() for line in lines)
    return out


def compare(mode, parsed, table, bpfobj_sha256):
    """Every way the boot's output differs from what is expected, as lines
    of text; empty if none."""
    problems = []

    names = [case[0] for case in parsed['CASE']]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f'CASE names printed more than once: {" ".join(duplicates)}')
    got = {name: result for name, _, result in parsed['CASE']}
    if got != table:
        want_lines = [f'{n} {r}\n' for n, r in sorted(table.items())]
        got_lines = [f'{n} {r}\n' for n, r in sorted(got.items())]
        problems.append(f'CASE results differ from expected-{mode}.txt (- expected, + guest):')
        problems.extend(line.rstrip('\n') for line in
                        difflib.unified_diff(want_lines, got_lines, 'expected', 'guest', n=0)
                        if not line.startswith(('---', '+++', '@@')))
    for name, expected, result in parsed['CASE']:
        if expected != result:
            problems.append(f'the guest expected {name} to give {expected}, it gave {result}')

    def one(key, want):
        values = parsed[key]
        if values != [want]:
            shown = ', '.join(values) if values else 'nothing'
            problems.append(f'{key}: expected exactly one line "{key} {want}", got {shown}')

    one('RESTRICTION', RESTRICTION[mode])
    one('BPFOBJ', bpfobj_sha256)
    if parsed['verdict'] != ['PASS']:
        problems.append(f'expected a single PASS, got {", ".join(parsed["verdict"]) or "no verdict"}')
    one('EXIT', '0')
    if parsed['malformed']:
        problems.append('malformed protocol lines:')
        problems.extend(f'  {line}' for line in parsed['malformed'])
    if not parsed['done']:
        problems.append('no VM-DONE: the guest did not get to the end of init')
    return problems


@pytest.fixture(scope='module')
def vm():
    if os.geteuid() != 0:
        pytest.fail('the VM tests install packages and unpack a kernel: run them as root', pytrace=False)
    build = build_dir()
    binary = Path(os.environ.get('NSRESD_VMTEST_BIN') or build / 'tests' / 'vm' / 'nsresd-vmtest')
    bpfobj = Path(os.environ.get('NSRESD_VMTEST_BPFOBJ') or build / 'bpf' / 'userns-restrict.stripped.o')
    missing = [str(p) for p in (binary, bpfobj) if not p.is_file()]
    if missing:
        pytest.fail(f'not built: {", ".join(missing)}. Build the project first (ninja -C build) '
                    f'or point NSRESD_BUILD_DIR at a build directory.', pytrace=False)

    cache = build / 'vm'
    cache.mkdir(parents=True, exist_ok=True)
    prepare = subprocess.run(['bash', str(HERE / 'prepare.sh'), str(cache)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if prepare.returncode != 0:
        pytest.fail(f'prepare.sh failed ({prepare.returncode}):\n{prepare.stdout}', pytrace=False)

    initramfs = cache / 'initramfs.gz'
    mkinitramfs.build(str(cache / 'kernel'), str(initramfs), [(str(binary), GUEST_BIN)])
    timeout = float(os.environ.get('NSRESD_VM_TIMEOUT') or run_vm.DEFAULT_TIMEOUT)

    # Both boots at once: each qemu emulates one CPU on one host thread.
    def boot(mode):
        return run_vm.boot(str(cache / 'kernel'), str(initramfs), mode, str(cache / f'serial-{mode}.log'),
                           test=GUEST_BIN, params={}, timeout=timeout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(MODES)) as pool:
        results = dict(zip(MODES, pool.map(boot, MODES)))
    return {
        'cache': cache,
        'timeout': timeout,
        'results': results,
        'bpfobj_sha256': hashlib.sha256(bpfobj.read_bytes()).hexdigest(),
    }


@pytest.mark.parametrize('mode', MODES)
def test_guest(vm, mode):
    table = read_table(HERE / f'expected-{mode}.txt')
    log = vm['cache'] / f'serial-{mode}.log'
    result = vm['results'][mode]
    print(f'{mode} boot: {result.seconds:.1f} s, serial log {log}')

    problems = compare(mode, parse_output(result.lines), table, vm['bpfobj_sha256'])
    if result.timed_out:
        problems.insert(0, f'qemu killed after {vm["timeout"]:.0f} s')
    if result.qemu_stderr.strip():
        problems.append(f'qemu said: {result.qemu_stderr.strip()}')
    if problems:
        tail = '\n'.join(result.lines[-40:])
        pytest.fail(f'{mode}: ' + '\n'.join(problems) + f'\n\nserial log {log}, last lines:\n{tail}',
                    pytrace=False)


# The comparison itself, on made-up output: no VM needed.

SHA = 'ab' * 32


def _output(*cases, restriction='enforcing', sha=SHA, verdict='PASS', status=0):
    lines = ['LSM lockdown,capability,bpf', 'MODULE loop ok']
    lines += [f'CASE {n} {e} {g}' for n, e, g in cases]
    lines += [f'RESTRICTION {restriction}', f'BPFOBJ {sha}', verdict, f'EXIT {status}', 'VM-DONE']
    return parse_output(lines)


def test_compare_accepts_matching_output():
    table = {'a': 'EPERM', 'b': 'ok'}
    assert compare('enforce', _output(('b', 'ok', 'ok'), ('a', 'EPERM', 'EPERM')), table, SHA) == []


def test_compare_reports_missing_extra_and_differing_cases():
    table = {'a': 'EPERM', 'b': 'ok', 'c': 'ok'}
    parsed = _output(('a', 'EPERM', 'ok'), ('b', 'ok', 'ok'), ('d', 'ok', 'ok'), verdict='FAIL', status=1)
    text = '\n'.join(compare('enforce', parsed, table, SHA))
    for expected in ('-a EPERM', '+a ok', '-c ok', '+d ok', 'the guest expected a to give EPERM',
                     'got FAIL', '"EXIT 0", got 1'):
        assert expected in text


def test_compare_checks_restriction_hash_and_end():
    parsed = _output(('a', 'ok', 'ok'), restriction='enforcing', sha='00' * 32)
    parsed['done'] = False
    text = '\n'.join(compare('control', parsed, {'a': 'ok'}, SHA))
    assert '"RESTRICTION unavailable", got enforcing' in text
    assert f'"BPFOBJ {SHA}", got {"00" * 32}' in text
    assert 'no VM-DONE' in text


def test_compare_rejects_duplicate_and_malformed_lines():
    parsed = parse_output(['CASE a ok ok', 'CASE a ok ok', 'CASE b ok', 'RESTRICTION enforcing',
                           f'BPFOBJ {SHA}', 'PASS', 'EXIT 0', 'VM-DONE'])
    text = '\n'.join(compare('enforce', parsed, {'a': 'ok'}, SHA))
    assert 'printed more than once: a' in text
    assert 'CASE b ok' in text


def test_lsm_lists():
    debian = 'landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf'
    assert run_vm.lsm_list(debian, 'enforce') == debian
    assert run_vm.lsm_list(debian, 'control') == debian[:-len(',bpf')]
    assert run_vm.lsm_list('lockdown,yama', 'enforce') == 'lockdown,yama,bpf'
