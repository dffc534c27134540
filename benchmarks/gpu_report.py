"""The GPU check's report (:mod:`benchmarks.gpu_check`): ``gpu_check.json`` and ``gpu_check.md``, written after every stage.

The Markdown opens with the machine and a verdict table (stage, pass / FAIL / OUT OF TIME,
seconds against the limit, figure), then the details a stage measured: the GPU tests one
by one, the NVDEC size table, NVDEC's decode rate, the paper path's steady-state figures.
"""
from __future__ import annotations

import json
import os

from benchmarks.gpu_stages import OUT_OF_TIME, paper_methods


def markdown(report: dict) -> str:
    env = next((s["details"] for s in report["stages"] if s["stage"] == "environment" and s["status"] == "passed"),
               {})
    lines = ["## GPU acceptance check", "",
             f"`{report['command']}` on {', '.join(env.get('gpus', ['no usable GPU']))} (driver "
             f"{env.get('driver', '?')}, CUDA {env.get('torch_cuda', '?')}), torch {env.get('torch', '?')}, DALI "
             f"{env.get('dali', '?')}, {report['date']}; {report.get('seconds', 0):.0f} s"
             + ("" if report.get("finished") else " so far (the check did not finish)") + ".", "",
             "| stage | verdict | seconds (limit) | figure |", "|---|---|---|---|"]
    for s in report["stages"]:
        verdict = {"passed": "pass", OUT_OF_TIME: "OUT OF TIME"}.get(s["status"], "FAIL")
        lines.append(f"| {s['stage']} | {verdict} | {s['seconds']} "
                     f"({s.get('limit', '–')}) | {s['message'] or s.get('figure', '')} |")
    for s in report["stages"]:
        d = s["details"]
        if s["stage"] == "pytest" and d.get("cases"):
            lines += ["", "pytest:", ""] + [f"- {c['outcome']}: `{c['test']}` ({c['seconds']} s)" for c in d["cases"]]
        if s["stage"] == "nvdec_sizes" and d.get("rows"):
            lines += ["", "| codec | case | size | NVDEC |", "|---|---|---|---|"]
            lines += [f"| {r['codec']} | {r['case']} | {r['size'][0]}x{r['size'][1]} | {r.get('outcome', '')}"
                      f"{'' if r['nvdec'] == 'ok' else ': ' + r['nvdec']} |" for r in d["rows"]]
        if s["stage"] == "nvdec_rate" and d.get("rows"):
            lines += ["", f"NVDEC: {d['frames_per_s']} frames/s decoded (16-frame windows of H.264 320x240, batch 8, "
                          f"synchronised, after the first batch); NVDEC utilisation "
                          + (f"{d['nvdec_mean_percent']} % mean, {d['nvdec_peak_percent']:.0f} % peak"
                             if "nvdec_peak_percent" in d else "not reported by NVML here") + "."]
        if s["stage"] == "paper_path":
            lines += ["", "Steady state: the synchronised steps after a 5-step warm-up (and after MoQuad's phase switch).",
                      "Device memory: all of it in use at the peak (NVML: PyTorch's cache, DALI's pools, every CUDA "
                      "context), and before the run.", "",
                      "| method | s/step | clips/s | waiting for data (share of step time) | PyTorch peak | device "
                      "memory at peak (before) | retrieval top-1 (toy data) |", "|---|---|---|---|---|---|---|"]
            for name in paper_methods():
                e = d.get(name, {})
                if isinstance(e, dict) and "clips_per_s" in e:
                    lines.append(f"| {name} | {e['step_s']} | {e['clips_per_s']} | "
                                 f"{100 * e['data_wait']:.1f} % | {e['gpu_mem_gib']} GiB | "
                                 f"{e.get('device_mem_peak_gib', '–')} GiB ({e.get('device_mem_before_gib', '–')}) | "
                                 f"{e.get('retrieval_top1', '–')} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str) -> None:
    from motionssl.pipelines import files

    files.write_text(os.path.join(out, "gpu_check.json"), json.dumps(report, indent=1, default=str))
    files.write_text(os.path.join(out, "gpu_check.md"), markdown(report))
