"""R2I distillation throughput: items/s and teacher calls per kept item, local vs Ray, by calls in flight.

    python benchmarks/bench_distill.py                                  # 50 ZoomWorld images, 200 ms teachers
    python benchmarks/bench_distill.py --images 50 --latency 0.2 --inflight 1 8 32 --backends local ray

The teachers are the scripted stand-in (:mod:`zwz.distill.scripted_teacher`) in a separate process, sleeping
``--latency`` seconds per call (a cloud VLM's round trip); two answer teachers x 4 samples, one question
teacher and a student, as in the paper. ``--inflight N`` is the calls in flight per endpoint. Each run starts
from an empty folder (no call cache). Prints one line per (backend, in flight) and the time per stage.
Target: throughput grows near-linearly with calls in flight up to 32 (the pipeline is not the bottleneck).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zwz.serve_process import free_port


def _start_teacher(items_jsonl: Path, latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = ("import uvicorn, sys; from zwz.distill.scripted_teacher import scripted_teacher_app; "
            f"uvicorn.run(scripted_teacher_app(sys.argv[1], latency={latency}), host='127.0.0.1', port={port}, "
            "log_level='warning')")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(items_jsonl)])
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the scripted teacher did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per teacher call")
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--max-boxes", type=int, default=1, help="regions per image")
    parser.add_argument("--work", help="folder for the pool and runs (default: a temporary one)")
    args = parser.parse_args()

    from zwz.distill.config import DistillConfig
    from zwz.distill.pipeline import run_local
    from zwz.distill.teachers import Endpoint
    from zwz.distill.zoomworld import write_zoomworld

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-distill-"))
    pool = work / f"zoomworld-{args.images}"
    if not (pool / "items.jsonl").exists():
        t = time.perf_counter()
        write_zoomworld(pool, args.images, seed=0)
        print(f"generated {args.images} ZoomWorld images in {time.perf_counter() - t:.1f} s", flush=True)
    proc, url = _start_teacher(pool / "items.jsonl", args.latency)
    results = []
    try:
        for backend in args.backends:
            for inflight in args.inflight:
                config = DistillConfig(
                    images=str(pool / "images"), annotations=str(pool / "items.jsonl"),
                    teachers=[Endpoint(url, "oracle-1"), Endpoint(url, "oracle-2")],
                    question_teacher=Endpoint(url, "oracle"), student=Endpoint(url, "student"),
                    max_boxes=args.max_boxes, concurrency=inflight, progress=False, backend=backend, ray_actors=1,
                )  # fmt: skip
                out = work / f"run-{backend}-{inflight}"
                shutil.rmtree(out, ignore_errors=True)
                t = time.perf_counter()
                if backend == "ray":
                    from zwz.distill.ray_backend import run_ray

                    report = run_ray(config, out)
                else:
                    report = run_local(config, out)
                seconds = time.perf_counter() - t
                kept = report["kept"]
                items_in = report["stages"][0]["items_in"]
                row = {
                    "backend": backend, "inflight": inflight, "seconds": round(seconds, 1),
                    "images_per_s": round(items_in / seconds, 3), "kept": kept,
                    "kept_per_s": round(kept / seconds, 3), "requests": report["calls"]["requests"],
                    "requests_per_kept": report["requests_per_kept_item"],
                    "stage_seconds": {s["name"]: s["seconds"] for s in report["stages"]},
                }  # fmt: skip
                results.append(row)
                print(f"{backend:>5} inflight {inflight:>2}: {seconds:7.1f} s, {row['images_per_s']:.3f} images/s, "
                      f"{kept} kept ({row['kept_per_s']:.3f}/s), {row['requests']} requests "
                      f"({row['requests_per_kept']} per kept item)", flush=True)  # fmt: skip
                if backend == "local":
                    print("      per stage (s): " + ", ".join(f"{k} {v}" for k, v in row["stage_seconds"].items()),
                          flush=True)  # fmt: skip
    finally:
        proc.kill()
    (work / "bench_distill.json").write_text(json.dumps(results, indent=2))
    print(f"results: {work / 'bench_distill.json'}")


if __name__ == "__main__":
    main()
