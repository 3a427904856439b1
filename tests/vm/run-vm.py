#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Boots the test VM once and returns what its serial console printed.

The kernel is Debian's stock one that prepare.sh left in CACHE/kernel. Two
modes differ only in the kernel's lsm= list: "enforce" is the distribution's
CONFIG_LSM with bpf in it, "control" the same list without bpf, so that BPF
LSM programs load and attach but are never called.

qemu exits 0 whatever happens inside the guest: callers read the lines
(init prints "EXIT <status>" and "VM-DONE", see the init script).

    run-vm.py --cache build/vm --mode enforce \\
        --file build/tests/vm/nsresd-vmtest:/nsresd-vmtest
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mkinitramfs  # noqa: E402

MODES = ('enforce', 'control')
DEFAULT_TIMEOUT = 600


class BootResult:
    def __init__(self, lines, seconds, timed_out, returncode, qemu_stderr, command):
        self.lines = lines
        self.seconds = seconds
        self.timed_out = timed_out
        self.returncode = returncode
        self.qemu_stderr = qemu_stderr
        self.command = command

    @property
    def done(self):
        """Whether init got to its last line, rather than the VM dying early."""
        return 'VM-DONE' in self.lines

    @property
    def exit_status(self):
        """The test program's exit status as init printed it, or None."""
        for line in self.lines:
            if line.startswith('EXIT '):
                try:
                    return int(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None


def read_kernel_env(kernel_dir):
    env = {}
    with open(os.path.join(kernel_dir, 'kernel.env')) as f:
        for line in f:
            key, sep, value = line.rstrip('\n').partition('=')
            if sep:
                env[key] = value
    return env


def lsm_list(config_lsm, mode):
    """The lsm= value: the kernel's default order, with or without bpf."""
    names = [n for n in config_lsm.split(',') if n and n != 'bpf']
    if mode == 'enforce':
        names.append('bpf')
    elif mode != 'control':
        raise ValueError(f'unknown mode {mode!r}, expected one of {", ".join(MODES)}')
    return ','.join(names)


def kernel_command_line(kernel_env, mode, test='/nsresd-vmtest', params=None):
    words = [
        'console=ttyS0',
        # A panic reboots at once, and -no-reboot turns that into qemu exiting.
        'panic=-1',
        'quiet',
        f'lsm={lsm_list(kernel_env["CONFIG_LSM"], mode)}',
        f'nsresd.mode={mode}',
        f'nsresd.test={test}',
    ]
    for key, value in (params or {}).items():
        if any(c.isspace() for c in f'{key}{value}'):
            raise ValueError(f'kernel parameter {key}={value!r} may not contain white space')
        words.append(f'nsresd.{key}={value}')
    return ' '.join(words)


def accelerator():
    # TCG by default: a /dev/kvm can be present on a CPU without
    # virtualisation, and qemu then hangs instead of failing.
    return os.environ.get('NSRESD_VM_ACCEL', 'tcg')


def boot(kernel_dir, initramfs, mode, log_path, test='/nsresd-vmtest', params=None,
         timeout=DEFAULT_TIMEOUT, memory='512M'):
    """Boots once, waits at most timeout seconds (then kills qemu), writes
    the serial output to log_path and returns a BootResult."""
    kernel_env = read_kernel_env(kernel_dir)
    command = [
        'qemu-system-x86_64',
        '-accel', accelerator(),
        '-cpu', 'max',
        '-smp', '1',
        '-m', memory,
        '-nodefaults', '-no-user-config',
        '-display', 'none',
        '-no-reboot',
        '-serial', f'file:{log_path}',
        '-kernel', os.path.join(kernel_dir, 'vmlinuz'),
        '-initrd', initramfs,
        '-append', kernel_command_line(kernel_env, mode, test, params),
    ]
    if os.path.exists(log_path):
        os.unlink(log_path)

    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, _ = proc.communicate()
    finally:
        # Also on KeyboardInterrupt: no qemu may outlive the caller.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start

    try:
        with open(log_path, 'rb') as f:
            text = f.read().decode(errors='replace')
    except FileNotFoundError:
        text = ''
    if timed_out:
        with open(log_path, 'a') as f:
            f.write(f'\n[run-vm: killed qemu after {timeout} s]\n')
    lines = [line.rstrip('\r') for line in text.split('\n')]
    while lines and not lines[-1]:
        lines.pop()
    return BootResult(lines, seconds, timed_out, proc.returncode, out.decode(errors='replace'), command)


def parse_param(value):
    key, sep, val = value.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE, got {value!r}')
    return key, val


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cache', required=True, help='the directory prepare.sh filled')
    p.add_argument('--mode', choices=MODES, required=True)
    p.add_argument('--initramfs', help='boot this initramfs instead of building one from --file')
    p.add_argument('--file', action='append', default=[], type=mkinitramfs.parse_file_argument,
                   metavar='SOURCE:/DEST', help='put a file into the initramfs')
    p.add_argument('--test', default='/nsresd-vmtest', help='the program init runs')
    p.add_argument('--param', action='append', default=[], type=parse_param, metavar='KEY=VALUE',
                   help='add nsresd.KEY=VALUE to the kernel command line')
    p.add_argument('--log', help='serial log (default CACHE/serial-MODE.log)')
    p.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT)
    args = p.parse_args()

    kernel_dir = os.path.join(args.cache, 'kernel')
    initramfs = args.initramfs
    if initramfs is None:
        initramfs = os.path.join(args.cache, 'initramfs-cli.gz')
        mkinitramfs.build(kernel_dir, initramfs, args.file)
    log = args.log or os.path.join(args.cache, f'serial-{args.mode}.log')

    result = boot(kernel_dir, initramfs, args.mode, log, test=args.test, params=dict(args.param),
                  timeout=args.timeout)
    for line in result.lines:
        print(line)
    if result.qemu_stderr.strip():
        print(f'qemu: {result.qemu_stderr.strip()}', file=sys.stderr)
    state = 'timed out' if result.timed_out else 'done' if result.done else 'ended early'
    print(f'run-vm: {args.mode} boot {state} in {result.seconds:.1f} s, '
          f'test exit status {result.exit_status}, log {log}', file=sys.stderr)
    return 0 if result.done and result.exit_status == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
