"""The GPU check's harness: the parent runs each part in a child process under its time budget and
keeps OUT's summary current; the child runs one part and reports as it goes."""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.gpu_check.report import Report, now, one_line, write_json
from benchmarks.harness import ROOT

DEFAULT_BUDGET = 470.0
# run order: title, nominal seconds out of DEFAULT_BUDGET (scaled with --budget-s), the module of
# benchmarks/gpu_check/ whose run(args, rep) is the part (part e: run(args) -> the machine's facts)
PARTS = {
    "e": ("machine and commit", 10, "machine"),
    "a": ("CUDA tests (pytest -m cuda)", 60, "cuda_tests"),
    "d": ("CPU vs CUDA agreement (science level, RNG bits)", 90, "agreement"),
    "b": ("toy DDPM, 1000 seeds x 3 generations: throughput, phases, memory, figure5-paper", 210,
          "toy_speed"),
    "c": ("EDM digits loop: 2 generations, SIMS guidance, FID", 90, "edm_loop"),
}


def part_module(key: str):
    """The module of part `key`."""
    return importlib.import_module(f"benchmarks.gpu_check.{PARTS[key][2]}")


class Check:
    """Runs the parts in turn, each in a child process under its budget, and keeps OUT's
    summary current."""

    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.log = open(self.out / "gpu_check.log", "a", buffering=1)
        self.started = time.time()
        self.proc = None
        signal.signal(signal.SIGTERM, self.terminated)
        self.summary = {"check": "madlab GPU check (issue 12)", "started": now(), "finished": None,
                        "device": args.device, "tiny": args.tiny, "budget_s": args.budget_s,
                        "argv": sys.argv[1:], "status": "running",
                        "parts": {p: {"title": PARTS[p][0], "status": "pending" if p in args.parts
                                      else "skipped", "seconds": None, "budget_s": None,
                                      "results": {}, "notes": [] if p in args.parts else ["not requested"],
                                      "error": None} for p in sorted(PARTS)}}
        self.write()

    def say(self, text: str) -> None:
        line = f"[{now()}] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def write(self) -> None:
        write_json(self.out / "summary.json", self.summary)
        (self.out / "summary.md").write_text(render_markdown(self.summary))

    def budget(self, part: str) -> float:
        scale = self.args.budget_s / DEFAULT_BUDGET
        later = [p for p in list(PARTS)[list(PARTS).index(part) + 1:] if p in self.args.parts]
        left = self.args.budget_s - (time.time() - self.started)
        reserve = sum(PARTS[p][1] * scale for p in later)   # the later parts' nominal budgets
        nominal = PARTS[part][1] * scale
        # this part's share and whatever earlier parts left unused, but never so much that the
        # later parts get under 60 % of theirs
        return max(5.0, min(max(nominal, left - reserve), left - 0.6 * reserve))

    def record(self, part: str, data: dict, seconds: float, budget: float) -> None:
        entry = self.summary["parts"][part]
        entry.update(seconds=round(seconds, 1), budget_s=round(budget, 1))
        for key in ("status", "results", "notes", "error"):
            if key in data:
                entry[key] = data[key]
        if data.get("substep_errors"):
            entry["substep_errors"] = [{k: v for k, v in e.items() if k != "traceback"}
                                       for e in data["substep_errors"]]
        self.write()

    def traceback(self, part: str, text: str) -> None:
        with open(self.out / "tracebacks.txt", "a") as f:
            f.write(f"==== part {part}: {PARTS[part][0]} ({now()})\n{text.rstrip()}\n\n")

    def run_header(self) -> bool:
        start = time.time()
        self.summary["parts"]["e"]["status"] = "running"
        self.write()
        try:
            info = part_module("e").run(self.args)
            gpu = info.get("gpu", {})
            headline = [f"GPU: {gpu.get('name', 'none')} (capability {gpu.get('capability', '-')}, "
                        f"{gpu.get('memory_gib', '-')} GiB); nvidia-smi: {info['nvidia_smi'] or 'n/a'}",
                        f"torch {info['torch']} (CUDA {info['torch_cuda']}), python {info['python']}, "
                        f"{info['cpu_cores']} CPU cores ({info.get('cpu_model', '?')}), C compiler: {info['c_compiler']}",
                        f"commit {info['commit']} ({info['uncommitted_files']} uncommitted files), "
                        f"source digest {info['source_digest']}",
                        "packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["packages"].items())]
            info["headline"] = headline
            status, error = "ok", None
            if self.args.device.startswith("cuda") and not info["cuda_available"]:
                status, error = "fail", f"--device {self.args.device}, but torch sees no CUDA device"
            for line in headline:
                self.say(f"  {line}")
            self.record("e", {"status": status, "results": info, "error": error}, time.time() - start, 0)
            return status == "ok"
        except Exception as err:  # noqa: BLE001
            self.traceback("e", traceback.format_exc())
            self.record("e", {"status": "error", "error": one_line(err)}, time.time() - start, 0)
            return not self.args.device.startswith("cuda")

    def run_part(self, part: str) -> None:
        budget = self.budget(part)
        path = self.work / f"{part}.json"
        deadline = time.time() + budget
        cmd = [sys.executable, "-m", "benchmarks", "gpu_check", "--child", part, "--child-file", str(path),
               "--deadline", str(deadline), *self.args.passthrough]
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.say(f"part {part}: {PARTS[part][0]} -- budget {budget:.0f} s")
        self.summary["parts"][part].update(status="running", budget_s=round(budget, 1))
        self.write()
        start = time.time()
        self.log.flush()
        proc = self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        seen, timed_out = 0.0, False
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            if path.exists() and path.stat().st_mtime != seen:   # partial results, as they come
                seen = path.stat().st_mtime
                with contextlib.suppress(ValueError, OSError):
                    self.record(part, json.loads(path.read_text()), time.time() - start, budget)
            if time.time() > deadline:
                timed_out = True
                self.kill(proc)
                break
        data = {}
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(path.read_text())
        if timed_out:
            data.update(status="timeout", error=f"ran past its budget of {budget:.0f} s: killed; "
                        "partial results kept")
        elif data.get("status") in (None, "running"):
            data.update(status="crashed", error=f"the part's process ended with exit code "
                        f"{proc.returncode} before reporting; see gpu_check.log")
        if data.get("traceback"):
            self.traceback(part, data["traceback"])
        for sub in data.get("substep_errors", []):
            self.traceback(part, f"(sub-step {sub['step']})\n{sub['traceback']}")
        data.pop("traceback", None)
        self.record(part, data, time.time() - start, budget)
        self.say(f"part {part}: {data.get('status')} in {time.time() - start:.1f} s"
                 + (f" -- {data['error']}" if data.get("error") else ""))

    def terminated(self, signum, frame) -> None:
        """Killed from outside (the device tool's limit): end the running part's processes too,
        and leave the summary saying so."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.summary.update(status="terminated", finished=now())
        self.write()
        sys.exit(143)

    @staticmethod
    def kill(proc) -> None:
        """The part's process group (its own session: pool workers and pytest children too)."""
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def run(self) -> int:
        self.say(f"madlab GPU check: parts {','.join(self.args.parts)}, device {self.args.device}, "
                 f"budget {self.args.budget_s:.0f} s{' (tiny)' if self.args.tiny else ''}; out {self.out}")
        can_go = self.run_header() if "e" in self.args.parts else True
        for part in PARTS:
            if part == "e" or part not in self.args.parts:
                continue
            if not can_go:
                self.record(part, {"status": "skipped", "error": "no CUDA device (see part e)"}, 0, 0)
                continue
            self.run_part(part)
        statuses = [p["status"] for p in self.summary["parts"].values() if p["status"] != "skipped"]
        self.summary.update(finished=now(), seconds=round(time.time() - self.started, 1),
                            status="ok" if all(s == "ok" for s in statuses) else "fail")
        self.write()
        self.say(f"done in {time.time() - self.started:.0f} s: {self.summary['status']}")
        print("\n" + (self.out / "summary.md").read_text(), flush=True)
        self.log.close()
        return 0 if self.summary["status"] == "ok" else 1


def render_markdown(summary: dict) -> str:
    lines = [f"# madlab GPU check: {summary['status']}", "",
             f"device {summary['device']}{' (tiny)' if summary['tiny'] else ''}, budget "
             f"{summary['budget_s']:.0f} s, started {summary['started']}, finished {summary['finished'] or '-'}"
             + (f" ({summary.get('seconds')} s)" if summary.get("seconds") else ""), ""]
    lines += ["| part | what | status | s / budget |", "|---|---|---|---|"]
    for key, p in summary["parts"].items():
        sec = "-" if p["seconds"] is None else f"{p['seconds']} / {p['budget_s'] or '-'}"
        lines.append(f"| {key} | {p['title']} | {p['status']} | {sec} |")
    for key in ("e", "a", "d", "b", "c"):
        p = summary["parts"][key]
        lines += ["", f"## {key}. {p['title']}: {p['status']}"]
        if p.get("error"):
            lines.append(f"error: {p['error']}")
        for sub in p.get("substep_errors", []):
            lines.append(f"sub-step {sub['step']} failed: {sub['error']}")
        for line in (p.get("results") or {}).get("headline", []):
            lines.append(f"- {line}")
        for note in p.get("notes") or []:
            lines.append(f"- note: {note}")
    lines += ["", "Everything else: summary.json (per generation, per call, per configuration)."]
    return "\n".join(lines) + "\n"


def watchdog(deadline: float) -> None:
    """The part's process ends itself if the check that started it is gone (killed from
    outside: its children run in their own session) or 30 s after its deadline."""
    import threading
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(2.0)
            if os.getppid() != parent or time.time() > deadline + 30:
                os.killpg(os.getpgrp(), signal.SIGKILL)   # this part's own process group
    threading.Thread(target=watch, daemon=True).start()


def child(args) -> int:
    watchdog(args.deadline)
    rep = Report(Path(args.child_file), args.child)
    print(f"---- part {args.child} (pid {os.getpid()}), {args.deadline - time.time():.0f} s left", flush=True)
    try:
        plant = dict(item.split(":") for item in args.plant.split(",") if ":" in item)
        if plant.get(args.child) == "error":       # the tests' broken part
            raise RuntimeError("planted error")
        if plant.get(args.child) == "hang":        # the tests' part that never ends
            rep.set(partial="reported before the hang")
            time.sleep(3600)
        if args.tiny or args.device == "cpu":
            import torch
            torch.set_num_threads(min(2, torch.get_num_threads()))
        part_module(args.child).run(args, rep)
        if rep.data["status"] == "running":
            rep.status("ok")
        return 0
    except BaseException as err:  # noqa: BLE001 -- reported, then the process ends
        rep.data.update(status="error", error=one_line(err), traceback=traceback.format_exc())
        rep.flush()
        traceback.print_exc()
        return 1
