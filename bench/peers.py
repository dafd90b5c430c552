"""Python peers for the benchmark, one process per batch: `peers.py TOOL SIZE OUT_DIR FILE...`.

TOOL is `pyvips` (Image.thumbnail, size='down'), `pillow` (Image.thumbnail with Lanczos, which
uses JPEG draft mode) or `pillow-resize` (a plain full-size decode and Lanczos resize).
"""

import os
import sys


def out_path(out_dir, path):
    return os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + "_t.jpg")


def run_pyvips(size, out_dir, files):
    import pyvips

    for f in files:
        pyvips.Image.thumbnail(f, size, height=size, size="down").jpegsave(out_path(out_dir, f), Q=80, strip=True)


def flat_rgb(img):
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    return img.convert("RGB") if img.mode not in ("RGB", "L") else img


def run_pillow(size, out_dir, files, draft):
    from PIL import Image

    for f in files:
        with Image.open(f) as img:
            if draft:
                img.thumbnail((size, size), Image.LANCZOS)
            else:
                w, h = img.size
                k = min(size / w, size / h, 1.0)
                img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.LANCZOS)
            flat_rgb(img).save(out_path(out_dir, f), "JPEG", quality=80)


def main():
    tool, size, out_dir, files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    if tool == "pyvips":
        run_pyvips(size, out_dir, files)
    elif tool == "pillow":
        run_pillow(size, out_dir, files, draft=True)
    elif tool == "pillow-resize":
        run_pillow(size, out_dir, files, draft=False)
    else:
        sys.exit(f"unknown tool {tool}")


if __name__ == "__main__":
    main()
