#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds the initramfs of the test VM: a gzip-compressed newc cpio archive.

It holds busybox (static) with a link per applet, the init script, the
modules that prepare.sh left in CACHE/kernel with their load order, a small
empty ext4 image (/ext4.img) and the extra files given as SOURCE:DEST.

The archive is written directly rather than staged in a directory and handed
to cpio: device nodes and owners then need no privileges, and the output is
the same for the same inputs (mtimes are 0).

    mkinitramfs.py --kernel-dir build/vm/kernel --output build/vm/initrd.gz \\
        --file build/tests/vm/nsresd-vmtest:/nsresd-vmtest
"""

import argparse
import gzip
import os
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

BUSYBOX = '/bin/busybox'
EXT4_IMAGE_MIB = 16


class CpioWriter:
    """The newc format: a 110-byte ASCII header, the name, the data, each
    padded to 4 bytes; the archive ends with an entry named TRAILER!!!."""

    def __init__(self, stream):
        self.stream = stream
        self.inode = 1
        self.written = set()

    def _pad(self, n):
        self.stream.write(b'\0' * (-n % 4))

    def _entry(self, name, mode, data=b'', rdev=(0, 0)):
        name = name.lstrip('/')
        encoded = name.encode() + b'\0'
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.inode += 1
        header = b'070701' + b''.join(b'%08x' % f for f in fields)
        self.stream.write(header + encoded)
        self._pad(len(header) + len(encoded))
        self.stream.write(data)
        self._pad(len(data))

    def directory(self, path, mode=0o755):
        path = path.strip('/')
        if not path or path in self.written:
            return
        self.directory(os.path.dirname(path))
        self.written.add(path)
        self._entry(path, stat.S_IFDIR | mode)

    def _parents(self, path):
        self.directory(os.path.dirname(path.strip('/')))
        if path.strip('/') in self.written:
            raise ValueError(f'{path} is in the archive twice')
        self.written.add(path.strip('/'))

    def file(self, path, data, mode=0o644):
        self._parents(path)
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path, target):
        self._parents(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, path, major, minor, mode=0o600):
        self._parents(path)
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def close(self):
        self._entry('TRAILER!!!', 0)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def busybox_applets():
    out = subprocess.run([BUSYBOX, '--list-full'], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def make_ext4_image():
    # mkfs.ext4 wants a file of the final size; a sparse one costs nothing.
    with tempfile.NamedTemporaryFile(suffix='.img') as f:
        f.truncate(EXT4_IMAGE_MIB << 20)
        f.flush()
        mkfs = shutil.which('mkfs.ext4') or '/usr/sbin/mkfs.ext4'
        subprocess.run([mkfs, '-q', '-F', '-L', 'nsresd-test', '-E', 'root_owner=0:0', f.name],
                       check=True)
        f.seek(0)
        return f.read()


def parse_file_argument(value):
    source, sep, dest = value.rpartition(':')
    if not sep or not source or not dest.startswith('/'):
        raise argparse.ArgumentTypeError(f'expected SOURCE:/DEST, got {value!r}')
    return source, dest


def build(kernel_dir, output, files, init=os.path.join(HERE, 'init'), ext4=True):
    """Writes the initramfs to output; files is a list of (source, dest)."""
    if not os.access(BUSYBOX, os.X_OK):
        raise RuntimeError(f'{BUSYBOX} is missing: install busybox-static (prepare.sh does)')

    tmp = output + '.tmp'
    with open(tmp, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=6, mtime=0) as z:
        cpio = CpioWriter(z)
        for d in ('dev', 'proc', 'sys', 'tmp', 'run', 'mnt', 'root', 'etc', 'lib/modules',
                  'bin', 'sbin', 'usr/bin', 'usr/sbin'):
            cpio.directory(d)
        # The kernel opens /dev/console for init before devtmpfs is mounted.
        cpio.char_device('/dev/console', 5, 1)
        cpio.char_device('/dev/null', 1, 3, mode=0o666)

        cpio.file('/bin/busybox', read(BUSYBOX), mode=0o755)
        for applet in busybox_applets():
            if applet != 'bin/busybox':
                target = os.path.relpath('/bin/busybox', os.path.dirname('/' + applet))
                cpio.symlink(applet, target)

        cpio.file('/init', read(init), mode=0o755)
        cpio.file('/etc/passwd', b'root:x:0:0:root:/root:/bin/sh\n')
        cpio.file('/etc/group', b'root:x:0:\n')

        load = os.path.join(kernel_dir, 'modules.load')
        if os.path.exists(load):
            cpio.file('/lib/modules/modules.load', read(load))
            with open(load) as f:
                for name in f.read().split():
                    cpio.file(f'/lib/modules/{name}', read(os.path.join(kernel_dir, 'modules', name)))

        if ext4:
            cpio.file('/ext4.img', make_ext4_image())

        for source, dest in files:
            mode = 0o755 if os.access(source, os.X_OK) else 0o644
            cpio.file(dest, read(source), mode=mode)
        cpio.close()
    os.replace(tmp, output)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--kernel-dir', required=True, help='CACHE/kernel as filled by prepare.sh')
    p.add_argument('--output', required=True)
    p.add_argument('--init', default=os.path.join(HERE, 'init'))
    p.add_argument('--no-ext4', action='store_true', help='leave out /ext4.img')
    p.add_argument('--file', action='append', default=[], type=parse_file_argument,
                   metavar='SOURCE:/DEST', help='add a file (executable if the source is)')
    args = p.parse_args()
    build(args.kernel_dir, args.output, args.file, init=args.init, ext4=not args.no_ext4)
    print(f'{args.output}: {os.path.getsize(args.output)} bytes', file=sys.stderr)


if __name__ == '__main__':
    main()
