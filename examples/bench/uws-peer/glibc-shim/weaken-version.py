#!/usr/bin/env python3
"""Copies an ELF shared object, marking its need for one symbol version as weak.

usage: weaken-version.py IN OUT VERSION   (e.g. GLIBC_2.38)

The dynamic loader refuses a library that needs a version its libc lacks; a weak
need (VER_FLG_WEAK in the .gnu.version_r entry) is only a warning, and the symbols of
that version are then looked up like any other (here: in the LD_PRELOADed shim).
Nothing else in the file changes. 64-bit little-endian only (x86_64, aarch64)."""
import struct
import sys

VER_FLG_WEAK = 0x2
SHT_GNU_VERNEED = 0x6FFFFFFE


def main(src, dst, version):
    data = bytearray(open(src, "rb").read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"{src}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    patched = 0
    for _name, kind, _flags, _addr, offset, _size, link, info, _align, _entsize in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]

        def string(at):
            end = data.index(b"\0", strtab + at)
            return data[strtab + at:end].decode()

        need = offset
        for _ in range(info):
            _vn_version, vn_cnt, _file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, need)
            aux = need + vn_aux
            for _ in range(vn_cnt):
                _hash, flags, _other, name, next_aux = struct.unpack_from("<IHHII", data, aux)
                if string(name) == version:
                    struct.pack_into("<H", data, aux + 4, flags | VER_FLG_WEAK)
                    patched += 1
                aux += next_aux
            need += vn_next
    if not patched:
        sys.exit(f"{src}: needs no version {version}; nothing to patch")
    open(dst, "wb").write(data)
    print(f"{dst}: {patched} need(s) of {version} marked weak")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
