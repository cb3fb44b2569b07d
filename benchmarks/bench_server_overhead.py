"""Server round trip vs calling the engine in-process: what the HTTP layer costs.

    python benchmarks/bench_server_overhead.py                 # tiny Qwen3-VL, 448 and 1344 px
    python benchmarks/bench_server_overhead.py --model DIR --sizes 448 1344 --rounds 30

One engine instance serves both paths: a live uvicorn server (on its own thread and event loop, exactly
as `zwz serve` runs it) reached over HTTP by a client in a separate process (as real clients are; it
imports no torch, so it never competes with the engine's threads), and direct calls to that same engine
on the server's loop. Requests are identical (same JPEG, question, greedy, max_tokens) and interleaved
(server, engine, server, ...), so drift hits both alike and only the HTTP layer differs: the client,
JSON, base64 + JPEG decoding, validation, routing and the response.
Sequential requests give latency; bursts of --concurrency requests give throughput; "overhead" is the
median of the per-round differences (server - engine), the HTTP layer's fixed cost in ms.
Target: p50 ratio (server / engine) <= 1.10 at 448 px.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import subprocess
import sys
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
import uvicorn
from PIL import Image

from zwz.serve_process import free_port
from zwz.server.api.app import create_app
from zwz.server.engines.base import ChatMessage, GenerationRequest, SamplingParams
from zwz.server.launch import build_engine
from zwz.server.settings import ServerSettings
from zwz.tiny_models import build_tiny_model

from _workload import percentile, scene  # noqa: E402  (sibling script module)

QUESTION = "What is written on the small sign near the door?"


# The HTTP client process: reads "N" lines, sends N concurrent requests, prints the elapsed seconds.
_CLIENT = """
import asyncio, json, sys, time, httpx
base, body_path = sys.argv[1], sys.argv[2]
body = json.load(open(body_path))
async def main():
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:
        async def one():
            r = await http.post("/v1/chat/completions", json=body)
            r.raise_for_status()
        for line in sys.stdin:
            t0 = time.perf_counter()
            await asyncio.gather(*[one() for _ in range(int(line))])
            print(time.perf_counter() - t0, flush=True)
asyncio.run(main())
"""


class HttpClientProcess:
    def __init__(self, base: str, body: dict) -> None:
        self._body_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(body, self._body_file)
        self._body_file.close()
        self.proc = subprocess.Popen([sys.executable, "-c", _CLIENT, base, self._body_file.name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def burst(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the HTTP client process died")
        return float(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        Path(self._body_file.name).unlink(missing_ok=True)


def start_server(model: Path):
    port = free_port()
    settings = ServerSettings(model=str(model), engine="transformers", max_queue=256)
    engine = build_engine(settings)
    app = create_app(settings, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, engine, f"http://127.0.0.1:{port}", app.state.served_model_names[0]


def run(args: argparse.Namespace) -> None:
    model = Path(args.model) if args.model else build_tiny_model("qwen3_vl", Path(tempfile.mkdtemp()) / "tiny-qwen3-vl")
    server, engine, base, model_name = start_server(model)
    server_loop = engine._scheduler.get_loop()  # the engine lives on the server's event loop
    rows = []
    try:
        for size in args.sizes:
            jpeg = scene(size)
            image = Image.open(io.BytesIO(jpeg)).convert("RGB")
            body = {
                "model": model_name, "max_tokens": args.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}},
                    {"type": "text", "text": QUESTION}]}],
            }

            client = HttpClientProcess(base, body)
            async def one_engine() -> None:
                request = GenerationRequest(messages=[ChatMessage("user", [image, QUESTION])],
                                            sampling=SamplingParams(max_tokens=args.max_tokens, temperature=0), stream=False)
                async for _ in await engine.submit(request):
                    pass

            def via_server(n: int) -> float:
                return client.burst(n)  # timed inside the client process

            def via_engine(n: int) -> float:
                async def burst():
                    await asyncio.gather(*[one_engine() for _ in range(n)])
                t0 = time.perf_counter()
                asyncio.run_coroutine_threadsafe(burst(), server_loop).result()
                return time.perf_counter() - t0

            paths = {"server": via_server, "engine": via_engine}
            for fn in paths.values():  # warm-up
                fn(1)
            latency = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name, fn in paths.items():
                    latency[name].append(fn(1))
            throughput = {name: [] for name in paths}
            for _ in range(args.burst_rounds):
                for name, fn in paths.items():
                    throughput[name].append(args.concurrency / fn(args.concurrency))
            client.close()
            rows.append((size, latency, throughput))
    finally:
        server.should_exit = True

    print(f"\nmodel: {model}  max_tokens={args.max_tokens}  rounds={args.rounds}  "
          f"burst={args.concurrency} x {args.burst_rounds}  torch threads={torch.get_num_threads()}")
    header = (f"{'px':>5} | {'server p50':>10} {'p90':>8} {'req/s':>7} | {'engine p50':>10} {'p90':>8} {'req/s':>7} | "
              f"{'p50 ratio':>9} {'p90 ratio':>9} {'tput ratio':>10} | {'overhead':>8}")
    print(header)
    print("-" * len(header))
    for size, lat, tput in rows:
        s50, s90 = percentile(lat["server"], 0.5), percentile(lat["server"], 0.9)
        e50, e90 = percentile(lat["engine"], 0.5), percentile(lat["engine"], 0.9)
        st, et = statistics.median(tput["server"]), statistics.median(tput["engine"])
        # Rounds are interleaved pairs (server, engine): the median of their differences is the HTTP layer's
        # fixed cost, less shaken than a ratio of medians when the machine's load drifts.
        overhead = statistics.median(s - e for s, e in zip(lat["server"], lat["engine"]))
        print(f"{size:>5} | {s50 * 1e3:>8.1f}ms {s90 * 1e3:>6.1f}ms {st:>7.2f} | {e50 * 1e3:>8.1f}ms {e90 * 1e3:>6.1f}ms "
              f"{et:>7.2f} | {s50 / e50:>9.3f} {s90 / e90:>9.3f} {st / et:>10.3f} | {overhead * 1e3:>6.1f}ms")
    first = rows[0]
    ratio = percentile(first[1]["server"], 0.5) / percentile(first[1]["engine"], 0.5)
    print(f"\ntarget: p50 ratio <= 1.10 at {first[0]} px -> {ratio:.3f} ({'met' if ratio <= 1.10 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a freshly built tiny Qwen3-VL)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1344])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--burst-rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
