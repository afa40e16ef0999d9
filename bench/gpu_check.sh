#!/usr/bin/env bash
# When a GPU is lent: `bash bench/gpu_check.sh [OUT_JSON] [--device cuda|cpu] [--quick]`
#
# One run of every GPU measurement nada needs, in order of importance, each part fail-soft (a part that fails or
# runs out of time is recorded and the next one runs):
#   1. adapt_tf32_off  one adaptation step at 1024 px, paper settings (batch 2, ViT-B/32 + ViT-B/16), without the
#                      probe (every layer: the paper recipe) and with it (2/3 of the rows), bf16 off/on, TF32 off
#                      (the app's default): `python -m bench --cases adapt1024_*`
#   2. zoo             K compact styles trained together in one batch, K = 1, 8 and 32 at 1024 px (issue 36):
#                      `python -m bench --cases zoo1024_compact_k1,zoo1024_compact_k8,zoo1024_compact_k32`; the
#                      seconds per style-step show what batching buys on a GPU
#   2a. hyper          one hypernetwork training step at 1024 px with K = 8 prompts, and text -> instant style
#                      (issue 37): `python -m bench --cases hyper_step_1024_k8,hyper_style`; steps x s/step is what
#                      training a real hypernetwork costs
#   2b. adapt_tf32_on  the adaptation cases of part 1 with NADA_TF32=1
#   3. rehearsal       the real app on the GPU (NADA_DEVICE=cuda) against a local hub of real-size random weights:
#                      `python -m bench.rehearsal --device cuda` (Generate, Invert, a probed Adapt, a style upload)
#   4. bench           every other benchmark case: `python -m bench --device cuda`
# After each part, bench/gpu_report.py merges what exists into ONE JSON file (device name, per-case s/step and peak
# GPU memory, a 300-step estimate, ZeroGPU step counts, the rehearsal's call times and memory) and, at the end,
# prints the s/step at the ZeroGPU defaults, from which the default step count is sized.
#
# OUT_JSON defaults to $OUT/gpu_check.json ($OUT: the device machine's output folder), else ./gpu_check.json.
# Installs nothing: the virtual environment must exist (PYTHON=... to pick its python; default: python on PATH).
# Finishes within GPU_CHECK_BUDGET_S seconds (default 540; 900 with --quick) plus a few seconds of merging: a part
# starts only with time left, and gets at most the time that is left. --device cpu --quick checks the invocations
# on a CPU in a few minutes (one 256 px adaptation case, small rehearsal files, two cheap benchmark cases).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

device=cuda
quick=0
out_json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="${2:?--device needs a value}"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) out_json="$1"; shift ;;
  esac
done
out_json="${out_json:-${OUT:-.}/gpu_check.json}"
python="${PYTHON:-python}"
budget="${GPU_CHECK_BUDGET_S:-$([ "$quick" = 1 ] && echo 900 || echo 540)}"
parts="$(mktemp -d "${TMPDIR:-/tmp}/nada-gpu-check.XXXXXX")"
trap 'rm -rf "$parts"' EXIT
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1  # nothing here reaches the internet
start=$(date +%s)

# run_part NAME LIMIT_S COMMAND...: run with a time limit (never past the budget), log, record, merge.
run_part() {
  local name="$1" limit="$2"
  shift 2
  local left=$(( budget - ($(date +%s) - start) ))
  if [ "$left" -lt 30 ]; then
    echo "=== $name: skipped (${left}s of the ${budget}s budget left)"
    printf '%s\tskipped\t0\n' "$name" >> "$parts/parts.tsv"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (up to ${limit}s): $*"
  local t0
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$parts/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$parts/parts.tsv"
  "$python" -m bench.gpu_report "$out_json" "$parts" --quiet || echo "merging the parts failed" >&2
}

adapt_limit=150  # per adaptation part; its cases get case_limit each
case_limit=110
if [ "$quick" = 1 ]; then
  adapt_limit=240  # a 256 px step takes ~6 s on 2 quiet CPU cores, several times that on a busy machine
  case_limit=220
  adapt_args=(--quick --cases adapt256_noprobe)
  bench_args=(--quick --cases gen256_b8,align)
  rehearsal_args=(--small)
  zoo_args=(--quick --cases zoo256_compact_k1)
  zoo_limit=240
  zoo_case_limit=220
  hyper_args=(--quick --cases hyper_step_256,hyper_style)
  hyper_limit=240
  hyper_case_limit=220
else
  adapt_args=(--cases "adapt1024_noprobe,adapt1024_probe,adapt1024_noprobe_bf16,adapt1024_probe_bf16")
  # every default case but adapt1024_probe, which parts 1 and 2 measure
  bench_args=(--cases gen1024_b1,gen1024_b4,gen256_b8,gen1024_fwdbwd_b2,adapt256_probe,adapt256_noprobe,adapt256_probe_bf16,adapt256_noprobe_bf16,e4e_enc,e4e_encdec,align)
  rehearsal_args=(--probe --steps 20)
  zoo_args=(--quick --cases zoo1024_compact_k1,zoo1024_compact_k8,zoo1024_compact_k32)
  zoo_limit=150
  zoo_case_limit=60
  hyper_args=(--quick --cases hyper_step_1024_k8,hyper_style)
  hyper_limit=100
  hyper_case_limit=60
fi

echo "nada GPU check: device $device, budget ${budget}s, output $out_json"
"$python" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.cuda.is_available() and torch.cuda.get_device_name(0))" || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

run_part adapt_tf32_off "$adapt_limit" env NADA_TF32=0 "$python" -m bench --device "$device" "${adapt_args[@]}" \
  --case-timeout "$case_limit" --json "$parts/adapt_tf32_off.json"
run_part zoo "$zoo_limit" "$python" -m bench --device "$device" "${zoo_args[@]}" --case-timeout "$zoo_case_limit" \
  --json "$parts/zoo.json"
run_part hyper "$hyper_limit" "$python" -m bench --device "$device" "${hyper_args[@]}" \
  --case-timeout "$hyper_case_limit" --json "$parts/hyper.json"
run_part adapt_tf32_on "$adapt_limit" env NADA_TF32=1 "$python" -m bench --device "$device" "${adapt_args[@]}" \
  --case-timeout "$case_limit" --json "$parts/adapt_tf32_on.json"
run_part rehearsal 240 "$python" -m bench.rehearsal --device "$device" "${rehearsal_args[@]}" \
  --json "$parts/rehearsal.json"
run_part bench 200 "$python" -m bench --device "$device" "${bench_args[@]}" --case-timeout 60 \
  --json "$parts/bench.json"

"$python" -m bench.gpu_report "$out_json" "$parts"
echo "total $(( $(date +%s) - start ))s"
