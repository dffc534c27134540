"""The tables of the throughput benchmark (:mod:`benchmarks.throughput`), printed from its result.

:func:`print_table` prints every producer of every method with its rates and ratios (and the
operator counts and cost split when measured); :func:`print_quick` one line per method, its
pipeline against the decode ceiling and the peer loader.
"""
from __future__ import annotations

from benchmarks.common import describe


def sizes_line(sizes: dict) -> str:
    """The clip size of every measured pipeline, for the header: the paper configuration's unless marked."""
    return "clip sizes: " + ", ".join("decode: the window only" if size is None else f"{label} {size}x{size}"
                                      for label, size in sizes.items()) + " (name@size: besides the paper's)"


def table_rows(name: str, entry: dict) -> str:
    lines = []
    for r in entry["results"]:
        clips = f"{r['clips_per_s']:9.1f}" if r["clips_per_s"] else f"{'-':>9}"
        ref = f"{r['vs_reference']:6.2f}x" if r["vs_reference"] else f"{'-':>7}"
        peer = f"{r['vs_peer']:6.2f}x" if r.get("vs_peer") else f"{'-':>7}"
        ceil = f"{100 * r['vs_ceiling']:6.0f}%" if r["vs_ceiling"] else f"{'-':>7}"
        win = f"{100 * r['vs_window_ceiling']:6.0f}%" if r.get("vs_window_ceiling") else f"{'-':>7}"
        who = r["producer"] + (f" x{r['cores']}" if r["producer"].startswith("ceiling") else "")
        loads = [v for v in r.get("other_load", []) if v is not None]
        other = f"{100 * max(loads):6.0f}%" if loads else f"{'-':>7}"
        nvdec = f"  NVDEC {r['nvdec_busy_percent']:.0f}%" if r.get("nvdec_busy_percent") is not None else ""
        cpu = f"{r['cpu_ms_per_window']:8.1f}" if r.get("cpu_ms_per_window") else f"{'-':>8}"
        lines.append(f"{name:10s} {who:28s} {r['window']:4d} {r['windows_per_s']:10.1f} {clips} "
                     f"{r['decoded_frames_per_s']:11.0f} {peer} {ref} {ceil} {win} {cpu} {other}{nvdec}")
    return "\n".join(lines)


def print_table(result: dict) -> None:
    print()
    print(describe(result["environment"]))
    print(sizes_line(result["clip_sizes"]))
    print(f"{result['videos']} videos {result['resolution'][0]}x{result['resolution'][1]} {result['codec']}, "
          f"batch {result['batch_size']}, {result['workers']} workers, {result['cores']} cores; "
          f"{result['definition']}; 'cpu ms/w' = CPU time per window of the producer (all its processes "
          f"and threads); 'others' = the largest share of the machine's CPU time that other processes used "
          f"during a timed repeat")
    print(f"{'pipeline':10s} {'producer':28s} {'W':>4s} {'windows/s':>10s} {'clips/s':>9s} {'frames/s':>11s} "
          f"{'vs peer':>7s} {'vs ref':>7s} {'vs ceil':>7s} {'vs win':>7s} {'cpu ms/w':>8s} {'others':>7s}")
    for name, entry in result["pipelines"].items():
        print(table_rows(name, entry))
        if "operators_per_batch" in entry:
            ops = entry["operators_per_batch"]
            print(f"{'':10s} {sum(ops.values())} DALI operators per batch: "
                  + ", ".join(f"{k} {v}" for k, v in ops.items()))
        if "profile" in entry:
            p = entry["profile"]
            extra = "".join(f", {label} {1e3 * p[key]:.1f}" for key, label in
                            (("graph_1thread_unfused", "unfused graph 1-thread"), ("peer_1thread", "peer build 1-thread"))
                            if p.get(key) is not None)
            print(f"{'':10s} profile ms/sample: decode 1-thread {1e3 * p['decode_1thread']:.1f}, read_window "
                  f"{1e3 * p['decode_read_window']:.1f}, draw {1e3 * p['draw']:.2f}, graph 1-thread "
                  f"{1e3 * p['graph_1thread']:.1f}, graph {result['threads']}-thread {1e3 * p['graph_nthreads']:.1f}, "
                  f"hand-off {1e3 * p['handoff']:.1f}{extra}; budget {p['budget_windows_per_s']:.1f} windows/s")
            c = p["cpu"]
            print(f"{'':10s} CPU ms/sample, one thread: decode {1e3 * c['decode_1thread']:.1f}, graph "
                  f"{1e3 * c['graph_1thread']:.1f}"
                  + "".join(f", {label} {1e3 * c[key]:.1f}" for key, label in
                            (("graph_1thread_unfused", "unfused graph"), ("peer_1thread", "peer build")) if key in c)
                  + f"; graph/decode {p['graph_per_decode_cpu']:.2f}"
                  + (f" (/ the ceiling's decode {p['graph_per_ceiling_decode']:.2f})"
                     if p.get("graph_per_ceiling_decode") else ""))


def print_quick(result: dict) -> None:
    """One short table: each method's pipeline against the decode ceiling and the peer loader (PyAV both)."""
    print()
    print(describe(result["environment"]))
    print(f"quick check: {result['videos']} videos {result['resolution'][0]}x{result['resolution'][1]} "
          f"{result['codec']}, batch {result['batch_size']}, {result['workers']} workers, {result['cores']} cores; "
          f"median of {result['repeats']} x {result['batches']} batches; 'others' = the largest share of the CPU "
          "other processes took during a repeat")
    print(f"{'method':10s} {'size':>7s} {'vs ceil':>7s} {'vs win':>7s} {'vs peer':>7s} {'cpu ms/w':>8s} {'others':>7s}")
    for label, entry in result["pipelines"].items():
        rows = [r for r in entry["results"] if r["producer"].startswith("pipeline")]
        if not rows:
            continue
        row = next((r for r in rows if r["producer"] == "pipeline[pyav]"), rows[0])
        size = f"{entry['size']}x{entry['size']}" if isinstance(entry["size"], int) else "window"
        ceil = f"{100 * row['vs_ceiling']:6.0f}%" if row.get("vs_ceiling") else f"{'-':>7}"
        win = f"{100 * row['vs_window_ceiling']:6.0f}%" if row.get("vs_window_ceiling") else f"{'-':>7}"
        peer = f"{row['vs_peer']:6.2f}x" if row.get("vs_peer") else f"{'-':>7}"
        cpu = f"{row['cpu_ms_per_window']:8.1f}" if row.get("cpu_ms_per_window") else f"{'-':>8}"
        loads = [v for v in row.get("other_load", []) if v is not None]
        other = f"{100 * max(loads):6.0f}%" if loads else f"{'-':>7}"
        print(f"{label:10s} {size:>7s} {ceil} {win} {peer} {cpu} {other}")
