"""Part a of the GPU check: `pytest -m cuda` over the test files that mark CUDA tests."""
from __future__ import annotations

from benchmarks.gpu_check.report import Report
from benchmarks.harness import ROOT


def run(args, rep: Report) -> None:
    """pytest -m cuda over the test files that mark CUDA tests."""
    import pytest
    files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").glob("test_*.py"))
             if "pytest.mark.cuda" in p.read_text()]
    rep.set(files=files)

    class Collect:
        def __init__(self):
            self.outcomes, self.collect_errors = {}, []

        def pytest_collectreport(self, report):
            if report.failed:
                self.collect_errors.append({"test": report.nodeid,
                                            "message": str(report.longrepr).strip().splitlines()[-1][:300]})

        def pytest_runtest_logreport(self, report):
            key = report.nodeid
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed") \
                    or (report.when == "teardown" and report.failed):
                outcome = report.outcome if report.when != "teardown" else "error"
                message = ""
                if report.failed:
                    message = str(report.longrepr).strip().splitlines()[-1][:300]
                elif report.skipped and isinstance(report.longrepr, tuple):
                    message = report.longrepr[2]
                self.outcomes[key] = {"outcome": outcome, "message": message,
                                      "seconds": round(report.duration, 3)}

    collect = Collect()
    code = pytest.main(["-m", "cuda", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                        "--continue-on-collection-errors", "-rfEs", *files], plugins=[collect])
    counts = {k: sum(1 for o in collect.outcomes.values() if o["outcome"] == k)
              for k in ("passed", "failed", "skipped", "error")}
    failures = [{"test": k, "message": o["message"]} for k, o in collect.outcomes.items()
                if o["outcome"] in ("failed", "error")]
    skips = sorted({o["message"] for o in collect.outcomes.values() if o["outcome"] == "skipped"})
    rep.set(exit_code=int(code), **counts, collection_errors=collect.collect_errors,
            failures=failures, skip_reasons=skips,
            slowest=sorted(((o["seconds"], k) for k, o in collect.outcomes.items()), reverse=True)[:5])
    rep.headline(f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
                 f"{counts['skipped']} skipped, {len(collect.collect_errors)} collection errors "
                 f"(pytest exit code {int(code)})",
                 *[f"FAILED {f['test']}: {f['message']}" for f in failures + collect.collect_errors])
    bad = counts["failed"] or counts["error"] or collect.collect_errors
    if args.device.startswith("cuda") and counts["passed"] == 0:
        rep.note("no CUDA test passed on a CUDA run")
        bad = True
    rep.status("fail" if bad else "ok")
