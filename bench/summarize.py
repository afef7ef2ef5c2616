"""Markdown tables from benchmark results files (bench/results/<device>-<date>.json).

    python bench/summarize.py                       # newest results file of each device
    python bench/summarize.py bench/results/X.json  # given files
    python bench/summarize.py --op fps --readme README.md   # replace the README's table block

Per case: ours, then every other implementation with its median, min, the ratio of its median
to ours (measured in the same run: above 1 means ours is faster), peak extra memory and what its
correctness check verified. Implementations that were not installed are listed under the table.
With --readme, the text between `<!-- bench-results:begin -->` and `<!-- bench-results:end -->`
is replaced (the markers must exist).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_bytes(b: Optional[int]) -> str:
    if b is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b} B"


def fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return "-"
    return f"{r:.3g}x" if r < 100 else f"{r:.0f}x"


def newest_per_device(folder: Path) -> List[Path]:
    """The newest results file of every device in `folder` (file names sort by date)."""
    best: Dict[str, Path] = {}
    for p in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("schema") != 1 or "cases" not in doc:
            continue  # another tool's results (e.g. the data-pipeline benchmark)
        prev = best.get(doc["device"])
        if prev is None or json.loads(prev.read_text()).get("finished", "") <= doc.get("finished", ""):
            best[doc["device"]] = p
    return [best[d] for d in sorted(best)]


def table(doc: Dict[str, Any], op: Optional[str] = None, source: str = "") -> str:
    m = doc["machine"]
    v = doc["versions"]
    load = m.get("load_avg")
    head = (f"**{doc['device_name']}** ({doc['device']}), {doc['started'][:10]}; torch {v.get('torch')}, "
            f"mentor3ad_ext {v.get('mentor3ad_ext')} ({doc['build_info'].get('threads')} threads), "
            f"{doc['mode']}" + (f"; load average at the end {load[0]:.1f}" if load else "")
            + (f"; source `{source}`" if source else "") + ".")
    lines = [head, "",
             "| case | implementation | median | min | vs ours (median) | vs ours (min) | peak extra memory | check |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    notes: List[str] = []
    skipped: List[str] = []
    for c in doc["cases"]:
        if op is not None and c["op"] != op:
            continue
        label = f"{c['op']} {c['case']}" + ("" if c["device"] == "cpu" else f" ({c['device']})")
        rows = ([dict(c["ours"], ratio_vs_ours=1.0, ratio_vs_ours_min=1.0)] if c.get("ours") else []) + c["peers"]
        for i, r in enumerate(rows):
            name = f"**{r['impl']}**" if r["role"] == "ours" else r["impl"]
            if r.get("note"):
                if r["note"] not in notes:
                    notes.append(r["note"])
                name += f" [{notes.index(r['note']) + 1}]"
            ratio = "1" if r["role"] == "ours" else fmt_ratio(r.get("ratio_vs_ours"))
            ratio_min = "1" if r["role"] == "ours" else fmt_ratio(r.get("ratio_vs_ours_min"))
            lines.append(f"| {label if i == 0 else ''} | {name} | {fmt_time(r.get('median_s'))} | "
                         f"{fmt_time(r.get('min_s'))} | {ratio} | {ratio_min} | "
                         f"{fmt_bytes(r.get('peak_mem_bytes'))} | {r.get('check') or ''} |")
        for s in c["skipped"]:
            if s["impl"] not in skipped:
                skipped.append(f"{s['impl']} ({s['reason']})")
    lines.append("")
    lines.append("vs ours: its time / our time in the same run, from the medians and from the fastest "
                 "rounds (above 1: ours is faster; on a busy machine the min ratio is the steadier one). "
                 "Peak extra memory: " + _mem_method(doc) + ".")
    for i, n in enumerate(notes, 1):
        lines.append(f"[{i}] {n}.")
    if skipped:
        lines.append("Not run: " + "; ".join(sorted(set(skipped))) + ".")
    lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".")
    return "\n".join(lines) + "\n"


def _mem_method(doc: Dict[str, Any]) -> str:
    methods = {(r or {}).get("mem_method") for c in doc["cases"] for r in [c.get("ours"), *c["peers"]]}
    methods.discard(None)
    text = {"rss-hwm": "process RSS high-water mark during one call minus RSS before it",
            "rss-sampled": "process RSS sampled every 0.2 ms during one call minus RSS before it",
            "cuda-allocator-peak": "torch CUDA allocator peak during one call minus memory before it"}
    return "; ".join(sorted({text.get(m.split(" (")[0], m) for m in methods})) or "-"


def replace_block(readme: Path, text: str) -> None:
    body = readme.read_text()
    if BEGIN not in body or END not in body:
        raise SystemExit(f"{readme}: add the markers {BEGIN} and {END} where the tables go")
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}{END}", body, flags=re.S)
    readme.write_text(new)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="results files (default: newest per device)")
    ap.add_argument("--op", help="only this op (e.g. fps)")
    ap.add_argument("--readme", type=Path, help="write the tables into this file between the markers")
    args = ap.parse_args(argv)
    files = args.files or newest_per_device(RESULTS)
    if not files:
        print(f"no results files in {RESULTS}; run `pytest bench` first", file=sys.stderr)
        return 1
    root = RESULTS.parent.parent
    parts = []
    for f in files:
        try:
            shown = f.resolve().relative_to(root)
        except ValueError:
            shown = f
        parts.append(table(json.loads(f.read_text()), args.op, str(shown)))
    text = "\n".join(parts)
    if args.readme:
        replace_block(args.readme, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
