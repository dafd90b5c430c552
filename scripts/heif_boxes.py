"""Edits HEIF boxes for the test fixtures heif-enc 1.15 cannot make (scripts/heif-fixtures.sh).

    python3 heif_boxes.py irot IN OUT ANGLE          # ANGLE in 90° steps, anticlockwise
    python3 heif_boxes.py ispe IN OUT WIDTH HEIGHT   # the primary item's ispe claims another size
    python3 heif_boxes.py grid OUT COLS ROWS TILE... # one grid item over single-image tile files
    python3 heif_boxes.py nclx IN OUT PRIMARIES TRANSFER  # the `colr` nclx box's code points
    python3 heif_boxes.py patches OUT.png            # the colour patches of PATCHES, as a PNG

Only what the fixtures need: the `meta` box comes before `mdat`, items are stored in the file
(iloc construction method 0) or, for the grid's own data, in `idat` (method 1).
"""

import struct
import sys
import zlib

# Four flat 64×64 patches, 2×2, in row order: three mid-saturation colours, whose values move
# when converted between colour spaces, and a gray, which does not (worker/tests/heif.rs).
PATCHES = [(200, 100, 50), (60, 160, 90), (70, 90, 200), (128, 128, 128)]


def u16(b, o):
    return struct.unpack_from(">H", b, o)[0]


def u32(b, o):
    return struct.unpack_from(">I", b, o)[0]


def uint(b, o, n):
    return int.from_bytes(b[o : o + n], "big") if n else 0


def boxes(data):
    """Splits data into [type, payload] pairs (32-bit sizes only; the fixtures have no others)."""
    out, o = [], 0
    while o < len(data):
        size, kind = struct.unpack_from(">I4s", data, o)
        assert size >= 8, f"box {kind!r}: size {size} (64-bit and to-end sizes are not handled)"
        out.append([kind, data[o + 8 : o + size]])
        o += size
    return out


def box(kind, payload):
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def join(children):
    return b"".join(box(k, p) for k, p in children)


def child(children, kind):
    return next(c for c in children if c[0] == kind)


class Iloc:
    """The `iloc` box, parsed far enough to move offsets and rewrite it with the same field sizes."""

    def __init__(self, p):
        self.version = p[0]
        self.offset_size, self.length_size = p[4] >> 4, p[4] & 15
        self.base_offset_size = p[5] >> 4
        self.index_size = p[5] & 15 if self.version in (1, 2) else 0
        o = 6
        id_size = 4 if self.version == 2 else 2
        count = uint(p, o, id_size)
        o += id_size
        self.items = []
        for _ in range(count):
            item = {"id": uint(p, o, id_size)}
            o += id_size
            item["method"] = 0
            if self.version in (1, 2):
                item["method"] = u16(p, o) & 15
                o += 2
            item["dref"] = u16(p, o)
            item["base"] = uint(p, o + 2, self.base_offset_size)
            o += 2 + self.base_offset_size
            extents = []
            count_extents = u16(p, o)
            o += 2
            for _ in range(count_extents):
                index = uint(p, o, self.index_size)
                o += self.index_size
                offset = uint(p, o, self.offset_size)
                o += self.offset_size
                length = uint(p, o, self.length_size)
                o += self.length_size
                extents.append([index, offset, length])
            item["extents"] = extents
            self.items.append(item)

    def payload(self):
        id_size = 4 if self.version == 2 else 2
        p = bytes([self.version, 0, 0, 0, self.offset_size << 4 | self.length_size])
        p += bytes([self.base_offset_size << 4 | self.index_size])
        p += len(self.items).to_bytes(id_size, "big")
        for item in self.items:
            p += item["id"].to_bytes(id_size, "big")
            if self.version in (1, 2):
                p += struct.pack(">H", item["method"])
            p += struct.pack(">H", item["dref"]) + item["base"].to_bytes(self.base_offset_size, "big")
            p += struct.pack(">H", len(item["extents"]))
            for index, offset, length in item["extents"]:
                p += index.to_bytes(self.index_size, "big") if self.index_size else b""
                p += offset.to_bytes(self.offset_size, "big") + length.to_bytes(self.length_size, "big")
        return p

    def shift(self, delta):
        """Moves every file-stored item by delta bytes (the meta box before them grew)."""
        for item in self.items:
            if item["method"] != 0:
                continue
            if item["base"]:
                item["base"] += delta
            else:
                for extent in item["extents"]:
                    extent[1] += delta

    def data(self, item_id, file):
        item = next(i for i in self.items if i["id"] == item_id)
        assert item["method"] == 0
        return b"".join(file[item["base"] + off : item["base"] + off + n] for _, off, n in item["extents"])


def parse_ipma(p):
    version, flags = p[0], u32(p, 0) & 0xFFFFFF
    o, entries = 8, []
    for _ in range(u32(p, 4)):
        item_id = u32(p, o) if version >= 1 else u16(p, o)
        o += 4 if version >= 1 else 2
        assoc, count = [], p[o]
        o += 1
        for _ in range(count):
            if flags & 1:
                v = u16(p, o)
                assoc.append((bool(v >> 15), v & 0x7FFF))
                o += 2
            else:
                assoc.append((bool(p[o] >> 7), p[o] & 0x7F))
                o += 1
        entries.append([item_id, assoc])
    return entries


def ipma(entries):
    """Writes an `ipma` (version 0, 16-bit property indices)."""
    p = struct.pack(">II", 1, len(entries))
    for item_id, assoc in entries:
        p += struct.pack(">HB", item_id, len(assoc))
        p += b"".join(struct.pack(">H", (0x8000 if essential else 0) | index) for essential, index in assoc)
    return p


class Heif:
    """A single-file view: the top-level boxes, the meta box's children, iloc, ipco and ipma."""

    def __init__(self, data):
        self.data = data
        self.top = boxes(data)
        kinds = [k for k, _ in self.top]
        assert kinds.index(b"meta") < kinds.index(b"mdat"), "meta must come before mdat"
        meta = child(self.top, b"meta")[1]
        self.meta_head, self.meta = meta[:4], boxes(meta[4:])
        self.iloc = Iloc(child(self.meta, b"iloc")[1])
        self.iprp = boxes(child(self.meta, b"iprp")[1])
        self.ipco = boxes(child(self.iprp, b"ipco")[1])
        self.ipma = parse_ipma(child(self.iprp, b"ipma")[1])
        self.primary = u16(child(self.meta, b"pitm")[1], 4)

    def properties(self, item_id):
        """The item's properties as [essential, type, payload] in association order."""
        assoc = next(a for i, a in self.ipma if i == item_id)
        return [[essential, *self.ipco[index - 1]] for essential, index in assoc]

    def write(self):
        """Serialises the edited boxes, moving the stored items by what meta grew or shrank."""
        old_meta = len(child(self.top, b"meta")[1])
        child(self.iprp, b"ipco")[1] = join(self.ipco)
        child(self.iprp, b"ipma")[1] = ipma(self.ipma)
        child(self.meta, b"iprp")[1] = join(self.iprp)
        for _ in range(2):  # the iloc box keeps its size, so one more pass settles the offsets
            new_meta = self.meta_head + join(self.meta)
            delta = len(new_meta) - old_meta
            if delta == 0:
                break
            self.iloc.shift(delta)
            child(self.meta, b"iloc")[1] = self.iloc.payload()
            old_meta = len(new_meta)
        child(self.top, b"meta")[1] = self.meta_head + join(self.meta)
        return join(self.top)


def add_irot(data, angle):
    heif = Heif(data)
    heif.ipco.append([b"irot", bytes([angle & 3])])
    entry = next(e for e in heif.ipma if e[0] == heif.primary)
    entry[1].append((True, len(heif.ipco)))  # transformative properties come last, essential
    return heif.write()


def set_ispe(data, width, height):
    heif = Heif(data)
    for _, index in next(a for i, a in heif.ipma if i == heif.primary):
        if heif.ipco[index - 1][0] == b"ispe":
            heif.ipco[index - 1][1] = struct.pack(">III", 0, width, height)
    return heif.write()


def infe(item_id, kind, hidden):
    """An `infe` version 2 entry; flag 1 hides the item (a grid's tiles are not images of their own)."""
    return box(b"infe", struct.pack(">BBHHH4s", 2, 0, 1 if hidden else 0, item_id, 0, kind) + b"\0")


def grid(tiles, cols, rows):
    """One file with the tiles as hidden hvc1 items and a primary grid item over them."""
    parsed = [Heif(t) for t in tiles]
    ipco, entries, coded, colr = [], [], [], None
    tile_w = tile_h = None
    for item_id, heif in enumerate(parsed, start=1):
        assoc = []
        for essential, kind, payload in heif.properties(heif.primary):
            if kind == b"ispe":
                _, w, h = struct.unpack(">III", payload)
                assert (tile_w or w, tile_h or h) == (w, h), "tiles differ in size"
                tile_w, tile_h = w, h
            if kind == b"colr":
                colr = colr or payload
            if [kind, payload] not in ipco:
                ipco.append([kind, payload])
            assoc.append((essential, ipco.index([kind, payload]) + 1))
        entries.append([item_id, assoc])
        coded.append(heif.iloc.data(heif.primary, heif.data))
    grid_id = len(parsed) + 1
    ipco.append([b"ispe", struct.pack(">III", 0, tile_w * cols, tile_h * rows)])
    grid_assoc = [(False, len(ipco))]
    if colr:
        grid_assoc.append((False, next(i for i, c in enumerate(ipco, 1) if c == [b"colr", colr])))
    entries.append([grid_id, grid_assoc])
    # ImageGrid: version 0, flags 0 (16-bit sizes), rows - 1, columns - 1, output width, height.
    grid_data = struct.pack(">BBBBHH", 0, 0, rows - 1, cols - 1, tile_w * cols, tile_h * rows)
    ftyp = child(parsed[0].top, b"ftyp")[1]
    items = [{"id": i, "method": 0, "dref": 0, "base": 0, "extents": [[0, 0, len(c)]]} for i, c in enumerate(coded, 1)]
    items.append({"id": grid_id, "method": 1, "dref": 0, "base": 0, "extents": [[0, 0, len(grid_data)]]})
    iloc = Iloc(bytes([1, 0, 0, 0, 0x44, 0, 0, 0]))  # version 1, 32-bit offsets and lengths
    iloc.items = items

    def build():
        iinf = struct.pack(">IH", 0, grid_id) + b"".join(infe(i, b"hvc1", True) for i in range(1, grid_id))
        iinf += infe(grid_id, b"grid", False)
        dimg = struct.pack(">HH", grid_id, len(coded)) + b"".join(struct.pack(">H", i) for i in range(1, grid_id))
        meta = [
            [b"hdlr", struct.pack(">II4s12s", 0, 0, b"pict", b"") + b"\0"],
            [b"pitm", struct.pack(">IH", 0, grid_id)],
            [b"iinf", iinf],
            [b"iref", struct.pack(">I", 0) + box(b"dimg", dimg)],
            [b"iprp", join([[b"ipco", join(ipco)], [b"ipma", ipma(entries)]])],
            [b"iloc", iloc.payload()],
            [b"idat", grid_data],
        ]
        return box(b"ftyp", ftyp) + box(b"meta", b"\0\0\0\0" + join(meta))

    head = build()
    offset = len(head) + 8
    for item, c in zip(items, coded):
        item["extents"][0][1] = offset
        offset += len(c)
    head = build()  # same size: only offsets changed
    assert len(head) + 8 == items[0]["extents"][0][1]
    return head + box(b"mdat", b"".join(coded))


def set_nclx(data, primaries, transfer):
    """The `colr` box's nclx colour primaries and transfer characteristics (H.273 code points)
    set in place: heif-enc 1.15 writes 2 (unspecified) whatever its options say."""
    at = data.find(b"colrnclx")
    assert at > 0, "no nclx colr box"
    out = bytearray(data)
    out[at + 8 : at + 12] = struct.pack(">HH", primaries, transfer)
    return bytes(out)


def patches_png():
    rows = []
    for y in range(128):
        row = b"".join(bytes(PATCHES[(y // 64) * 2 + x // 64]) for x in range(128))
        rows.append(b"\0" + row)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 128, 128, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def main(argv):
    cmd, rest = argv[1], argv[2:]
    if cmd == "irot":
        src, dst, angle = rest
        out = add_irot(open(src, "rb").read(), int(angle))
    elif cmd == "ispe":
        src, dst, w, h = rest
        out = set_ispe(open(src, "rb").read(), int(w), int(h))
    elif cmd == "grid":
        dst, cols, rows, *tiles = rest
        out = grid([open(t, "rb").read() for t in tiles], int(cols), int(rows))
    elif cmd == "nclx":
        src, dst, primaries, transfer = rest
        out = set_nclx(open(src, "rb").read(), int(primaries), int(transfer))
    elif cmd == "patches":
        (dst,) = rest
        out = patches_png()
    else:
        sys.exit(__doc__)
    with open(dst, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv)
