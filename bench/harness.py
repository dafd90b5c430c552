"""Times imgpipe and its peers on the corpus and prints the comparison tables.

Run through bench/run.sh, which installs everything first. Each tool processes each subset of
the corpus (baseline JPEG, progressive JPEG, PNG+WebP) as one batch in one process pinned to
one core; the whole-corpus figures are the sums over the three batches.
"""

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from peers import flat_rgb

HERE = os.path.dirname(os.path.abspath(__file__))
SUBSETS = ["baseline", "progressive", "pngwebp"]
TOOLS = ["imgpipe", "pyvips", "vipsthumbnail", "pillow", "pillow-resize", "djpeg-floor"]
ENV = dict(os.environ, VIPS_CONCURRENCY="1", OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1")


def load_corpus(corpus):
    with open(os.path.join(corpus, "manifest.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["path"] = os.path.join(corpus, r["file"])
        r["w"], r["h"], r["mp"] = int(r["width"]), int(r["height"]), float(r["megapixels"])
        if r["format"] == "JPEG":
            r["subset"] = "progressive" if r["progressive"] == "1" else "baseline"
        else:
            r["subset"] = "pngwebp"
    return rows


def dct_denominator(w, h, size):
    k = min(size / w, size / h, 1.0)
    ow, oh = max(1, round(w * k)), max(1, round(h * k))
    for d in (8, 4):
        if w / d >= 2 * ow and h / d >= 2 * oh:
            return d
    # imgpipe's half scale only needs the decoded image to cover the output.
    return 2 if w / 2 >= ow and h / 2 >= oh else 1


def command(tool, size, out_dir, files, rows, imgpipe):
    py = sys.executable
    if tool == "imgpipe":
        return [imgpipe, "process", *files, "--out", out_dir, "--width", str(size), "--height", str(size),
                "--quality", "80", "--name", "t", "--quiet"]
    if tool == "vipsthumbnail":
        return ["vipsthumbnail", "-s", f"{size}x{size}>", "-o", f"{out_dir}/%s_t.jpg[Q=80,strip]", *files]
    if tool in ("pyvips", "pillow", "pillow-resize"):
        return [py, os.path.join(HERE, "peers.py"), tool, str(size), out_dir, *files]
    if tool == "djpeg-floor":
        lines = [f"djpeg -scale 1/{dct_denominator(r['w'], r['h'], size)} -outfile /dev/null '{r['path']}'"
                 for r in rows]
        return ["sh", "-c", "\n".join(lines)]
    raise ValueError(tool)


def run_batch(tool, size, out_dir, rows, imgpipe):
    """Returns (CPU seconds, peak RSS in MB) of one batch run.

    CPU time (user + system of the batch process and its threads) rather than wall time, so a
    busy machine slows the figures less; pinned to one core, the two agree when it is idle.
    """
    files = [r["path"] for r in rows]
    cmd = command(tool, size, out_dir, files, rows, imgpipe)
    with tempfile.NamedTemporaryFile() as t:
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", t.name, "taskset", "-c", "1", *cmd]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(wrapped, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        elapsed = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rss_kb = int(open(t.name).read().strip().splitlines()[-1] or 0)
    if proc.returncode != 0:
        print(f"  ! {tool} {size}px exited {proc.returncode}: {proc.stderr.strip()[:300]}", file=sys.stderr)
    return elapsed, rss_kb / 1024


def luma(a):
    a = a.astype(np.float64)
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def psnr_table(rows, tools, sizes, out_root):
    """Mean luma PSNR of each tool's outputs against a full-decode Lanczos reference."""
    scores = {(t, s): [] for t in tools for s in sizes}
    for r in rows:
        with Image.open(r["path"]) as src:
            # The same flattening on white the peers apply, then RGB for the luma of every mode.
            full = flat_rgb(src).convert("RGB")
        refs = {}
        for t in tools:
            for s in sizes:
                out = os.path.join(out_root, t, str(s), os.path.splitext(r["file"])[0] + "_t.jpg")
                if not os.path.exists(out):
                    continue
                got = np.asarray(Image.open(out).convert("RGB"))
                h, w = got.shape[:2]
                if (w, h) not in refs:
                    refs[(w, h)] = luma(np.asarray(full.resize((w, h), Image.LANCZOS)))
                mse = np.mean((luma(got) - refs[(w, h)]) ** 2)
                scores[(t, s)].append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
    return {k: (statistics.mean(v) if v else None) for k, v in scores.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--imgpipe", required=True)
    ap.add_argument("--quick", action="store_true", help="512 px only, one run per tool")
    ap.add_argument("--repeat", type=int, default=None, help="runs per batch, median kept (default 5)")
    ap.add_argument("--sizes", default=None, help="comma-separated longest edges (default 128,512,1600)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-psnr", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in (args.sizes or ("512" if args.quick else "128,512,1600")).split(",")]
    repeat = args.repeat or (1 if args.quick else 5)
    tools = args.tools.split(",")
    rows = load_corpus(args.corpus)
    by_subset = {s: [r for r in rows if r["subset"] == s] for s in SUBSETS}
    out_root = os.path.join(HERE, "out", "runs")
    shutil.rmtree(out_root, ignore_errors=True)

    results = {}  # (tool, size, subset) -> (seconds, rss)
    for size in sizes:
        for tool in tools:
            out_dir = os.path.join(out_root, tool, str(size))
            os.makedirs(out_dir, exist_ok=True)
            for subset in SUBSETS:
                batch = by_subset[subset]
                if tool == "djpeg-floor" and subset == "pngwebp":
                    continue
                runs = [run_batch(tool, size, out_dir, batch, args.imgpipe) for _ in range(repeat)]
                results[(tool, size, subset)] = (statistics.median(t for t, _ in runs), max(m for _, m in runs))
            print(f"  timed {tool} at {size}px", file=sys.stderr)

    psnr = {} if args.no_psnr else psnr_table(rows, [t for t in tools if t != "djpeg-floor"], sizes, out_root)
    mp = {s: sum(r["mp"] for r in by_subset[s]) for s in SUBSETS}
    count = {s: len(by_subset[s]) for s in SUBSETS}
    lines = [f"# imgpipe benchmark: {len(rows)} files, {sum(mp.values()):.1f} MP, one core, JPEG q80, "
             f"CPU time, median of {repeat}", ""]
    for size in sizes:
        def rate(tool, subsets):
            got = [results.get((tool, size, s)) for s in subsets]
            if any(g is None for g in got):
                return None
            secs = sum(g[0] for g in got)
            return sum(mp[s] for s in subsets) / secs, sum(count[s] for s in subsets) / secs
        cols = [("whole", SUBSETS), ("JPEG", ["baseline", "progressive"]), ("baseline", ["baseline"]),
                ("progressive", ["progressive"]), ("PNG+WebP", ["pngwebp"])]
        lines += [f"## {size} px (MP/s of input per core; imgpipe ratio = imgpipe MP/s ÷ tool MP/s)", "",
                  "| tool | img/s | " + " | ".join(c for c, _ in cols) + " | peak RSS MB | PSNR dB | imgpipe ratio whole / JPEG / base / prog / PNG+WebP |",
                  "| --- " * (len(cols) + 5) + "|"]
        for tool in tools:
            whole = rate(tool, SUBSETS)
            cells = []
            for _, subs in cols:
                v = rate(tool, subs)
                cells.append(f"{v[0]:.1f}" if v else "–")
            rss = max((results[(tool, size, s)][1] for s in SUBSETS if (tool, size, s) in results), default=0)
            p = psnr.get((tool, size))
            ratios = []
            for _, subs in cols:
                a, b = rate("imgpipe", subs), rate(tool, subs)
                ratios.append(f"{a[0] / b[0]:.2f}" if a and b else "–")
            lines.append(f"| {tool} | {whole[1]:.1f} | " if whole else f"| {tool} | – | ")
            lines[-1] += " | ".join(cells) + f" | {rss:.0f} | " + (f"{p:.2f}" if p else "–") + " | " + " / ".join(ratios) + " |"
        lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(HERE, "out", "results.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
