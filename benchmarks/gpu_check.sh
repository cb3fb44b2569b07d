#!/usr/bin/env bash
# What a lent H100/H200 runs in under 8 minutes (torch, transformers, triton; no vLLM there), as one JSON:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]          # writes OUT_DIR/gpu_check.json (default: ./gpu_check)
#
# 1. `pytest -m gpu`: the GPU-only tests (the Triton kernel against its references, compiled, not interpreted);
# 2. the kernel's achieved bandwidth vs the device's peak on a real-size KV cache (Qwen2.5-VL-7B and
#    Qwen3-VL-8B shapes, all layers, bf16, 4k / 8k / 16k image tokens): benchmarks/bench_image_attention.py;
# 3. answer + map vs answer at real size with random bf16 weights (the transformers engine's capture path;
#    the vLLM engine runs the same kernel inside its workers): benchmarks/bench_attention_maps.py --preset.
# Each step has its own time limit, so one slow step cannot take the whole budget; a step that fails or
# times out is recorded with its exit status and output, and the next one still runs. On a machine without
# a GPU the same script runs its CPU-safe parts (the tests skip, the benchmarks take their CPU paths).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${1:-$root/gpu_check}"
mkdir -p "$out"
cd "$root"
if ! python -c "import zwz.kernels, zwz.analytics.attention" 2>/dev/null; then
    # A bare checkout (the GPU machine has no zwz installed): lay out the `zwz.` namespace as pyproject's
    # package-dir maps it (zwz.server -> server/, ...) with symlinks, instead of installing anything.
    shim="$out/pkg/zwz"
    rm -rf "$out/pkg" && mkdir -p "$shim"
    for f in "$root"/zwz/*; do ln -s "$f" "$shim/"; done
    for d in server kernels analytics distill train ui loadtest; do ln -s "$root/$d" "$shim/$d"; done
    export PYTHONPATH="$out/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi

cuda=$(python -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$cuda" = 1 ]; then
    tokens="4096 8192 16384"; sizes="448 1344 2048"; rounds=3; presets="qwen2_5_vl_7b qwen3_vl_8b"
else  # CPU: check the script's parts run, at sizes a CPU finishes quickly
    tokens="256 1024"; sizes="448"; rounds=1; presets=""
fi

step() {  # step NAME LIMIT_S CMD...: run CMD with a time limit, keep its output and status
    local name="$1" limit="$2"; shift 2
    local t0; t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local t1; t1=$(date +%s.%N)
    echo "$name $rc $(python -c "print(round($t1 - $t0, 1))")" >>"$out/steps.txt"
    echo "[gpu_check] $name: exit $rc ($limit s limit)"
}

: >"$out/steps.txt"
python - >"$out/device.json" <<'EOF'
import json, platform, torch
info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "python": platform.python_version()}
try:
    import transformers, triton
    info.update(transformers=transformers.__version__, triton=triton.__version__)
except ImportError as exc:
    info["import_error"] = str(exc)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=torch.cuda.get_device_name(), memory_gib=round(p.total_memory / 2**30, 1))
print(json.dumps(info))
EOF

# Only the files that hold GPU tests: collecting the whole suite would import what that machine lacks (vLLM, ...).
gpu_tests=$(grep -rlE "mark\.gpu|mark\(\"gpu\"\)" tests --include="test_*.py" | sort)
# shellcheck disable=SC2086
step pytest_gpu 150 python -m pytest -m gpu -q -p no:cacheprovider $gpu_tests
# shellcheck disable=SC2086
step kernel_bandwidth 120 python benchmarks/bench_image_attention.py --image-tokens $tokens --skip-reference \
    --warmup 2 --iters 10
for preset in $presets; do
    # shellcheck disable=SC2086
    step "maps_$preset" 110 python benchmarks/bench_attention_maps.py --preset "$preset" --sizes $sizes \
        --rounds "$rounds" --max-tokens 16
done
if [ -z "$presets" ]; then
    step maps_tiny 200 python benchmarks/bench_attention_maps.py --family qwen3_vl --sizes $sizes --rounds 1 \
        --max-tokens 8
fi

python - "$out" <<'EOF'
import json, pathlib, re, sys

out = pathlib.Path(sys.argv[1])
report = {"device": json.loads((out / "device.json").read_text()), "steps": {}}
for line in (out / "steps.txt").read_text().splitlines():
    name, rc, seconds = line.split()
    log = (out / f"{name}.log").read_text(errors="replace").splitlines()
    step = {"exit": int(rc), "seconds": float(seconds)}
    # The benchmarks print tables: keep each table row (a line with '|' and a number) as split cells.
    rows = [[cell.strip() for cell in re.split(r"\s*\|\s*", ln.strip())] for ln in log
            if "|" in ln and re.search(r"\d", ln) and not ln.startswith(("-", "E "))
            and "it/s" not in ln and "Completed" not in ln]  # not progress bars
    if rows:
        step["table"] = rows
    summary = [ln for ln in log if re.search(r"\b(passed|failed|skipped|error)\b", ln)]
    if name.startswith("pytest") and summary:
        step["summary"] = summary[-1]
    step["tail"] = log[-25:]
    report["steps"][name] = step
(out / "gpu_check.json").write_text(json.dumps(report, indent=1))
print(f"[gpu_check] wrote {out / 'gpu_check.json'}")
EOF
