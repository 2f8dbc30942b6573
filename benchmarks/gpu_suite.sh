#!/usr/bin/env bash
# Everything GPU-related in one call, for a lent GPU machine (never yet timed on one):
#   build fastgan with its CUDA kernels, run the whole test suite (GPU tests included),
#   run every benchmark, write the raw report, print a short table last.
#
#   bash benchmarks/gpu_suite.sh            # report in benchmarks/results/
#   OUT=/some/dir bash benchmarks/gpu_suite.sh
#   bash benchmarks/gpu_suite.sh tests      # build + tests only; "bench": build + benchmarks only
#                                           # (two calls when one would pass a 10-minute limit)
#   bash benchmarks/gpu_suite.sh e2e        # build + data backends (bench_data.py, 20,000 CelebA-like
#                                           # JPEGs) + short WGAN-GP and DCGAN runs at 64x64 on them
#   bash benchmarks/gpu_suite.sh models     # build + every model (and wgan-gp --arch resnet) for 200
#                                           # steps at 64x64 with --amp on those JPEGs: images/s each
#   bash benchmarks/gpu_suite.sh fid        # build + FID-50k of a 64x64 generator end to end
#                                           # (benchmarks/fid50k.py; target < 60 s)
#   bash benchmarks/gpu_suite.sh step       # build + the end-to-end step benchmark (benchmarks/step_e2e.py,
#                                           # full configuration, < 8 min): report in $OUT, short table last;
#                                           # STEP_ARGS="--models wgan-gp-dcgan" passes flags to it
#
# The e2e stage needs tqdm and pyyaml: a machine without network installs them from wheels in
# .whl/ (git-ignored; `pip download -d .whl tqdm pyyaml` here, then carry .whl).
#
# Needs: a CUDA GPU, torch with CUDA, nvcc, triton, pytest, pytest-benchmark (no network).
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
case "$STAGE" in all|tests|bench|e2e|models|fid|step) ;; *) echo "gpu_suite: unknown stage $STAGE (all, tests, bench, e2e, models, fid, step)" >&2; exit 2;; esac
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: no CUDA GPU is visible to torch; run this on a GPU machine" >&2
  exit 2
fi
gpu=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
stamp=$(date -u +%Y-%m-%d)
tag="$stamp-$gpu"
notes="$OUT/$tag-notes.txt"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__)"
  nvcc --version 2>/dev/null | tail -1
} | tee "$notes"

echo "== build (FASTGAN_CUDA=1)"
if ! FASTGAN_CUDA=1 $PY -m pip install --no-build-isolation --no-deps -q . > "$OUT/$tag-build.log" 2>&1; then
  tail -40 "$OUT/$tag-build.log"; echo "gpu_suite: build failed" >&2; exit 1
fi
(cd /tmp && $PY -m fastgan info) | tee -a "$notes"

if [ "$STAGE" = models ]; then
  [ -d .whl ] && $PY -m pip install -q --no-index --find-links .whl tqdm pyyaml
  rm -f "$OUT/$tag-model-"*.jsonl  # an earlier run's of the same day are not this one's
  data=${FASTGAN_BENCH_DATA:-/tmp/fastgan-bench-20000}
  # the data set (bench_data.py generates it once; the cache backend keeps the runs off the decoder)
  FASTGAN_BENCH_DATA=$data FASTGAN_BENCH_N=20000 $PY -P benchmarks/bench_data.py --backends cache \
    > "$OUT/$tag-models-data.log" 2>&1
  models_rc=0
  for spec in gan:dcgan dcgan lsgan wgan wgan-gp wgan-gp:resnet ebgan began dragan; do
    model=${spec%%:*}; arch=${spec#*:}; [ "$arch" = "$spec" ] && arch=""
    name=$model${arch:+-$arch}
    echo "== training $name, 64x64, --amp, 200 steps"
    (cd /tmp && $PY -m fastgan train --model "$model" ${arch:+--arch "$arch"} --data "$data" --amp \
       --steps 200 --data-backend cache --out "/tmp/fastgan-models-$name" --overwrite --no-progress \
       --set log_every=50 --set tensorboard=false) 2>&1 | tail -2
    rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && models_rc=$rc
    cp "/tmp/fastgan-models-$name/metrics.jsonl" "$OUT/$tag-model-$name.jsonl" \
      || echo "gpu_suite: $name wrote no metrics.jsonl" >&2
  done
  # images/s: the last log window of each run (the first holds compilation and cuDNN autotuning)
  $PY - "$OUT" "$tag" <<'PYEOF' | tee "$OUT/$tag-models.md"
import json, pathlib, sys
out, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
print("| model | images/s (real images through the critic, last 50 steps) | loss/d | loss/g |")
print("|---|---|---|---|")
for f in sorted(out.glob(f"{tag}-model-*.jsonl")):
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "images_per_s" in r]  # training log rows (not evaluations)
    if not rows:
        print(f"| {f.stem.split('-model-')[1]} | no training log row | | |")
        continue
    last = rows[-1]
    print(f"| {f.stem.split('-model-')[1]} | {last['images_per_s']:.0f} | {last.get('loss/d', float('nan')):.4g} "
          f"| {last.get('loss/g', float('nan')):.4g} |")
PYEOF
  echo "models exit $models_rc"
  exit "$models_rc"
fi

if [ "$STAGE" = step ]; then
  [ -d .whl ] && $PY -m pip install -q --no-index --find-links .whl pyyaml
  echo "== end-to-end step benchmark (benchmarks/step_e2e.py)"
  # shellcheck disable=SC2086
  $PY -P benchmarks/step_e2e.py --out "$OUT" ${STEP_ARGS:-} > "$OUT/$tag-step-table.txt" 2> "$OUT/$tag-step.log"
  step_rc=$?
  grep -v -e '^USDT' -e 'Profiler record function' "$OUT/$tag-step.log" | tail -5
  echo "step exit $step_rc"
  cat "$OUT/$tag-step-table.txt"
  exit "$step_rc"
fi

if [ "$STAGE" = fid ]; then
  [ -d .whl ] && $PY -m pip install -q --no-index --find-links .whl tqdm pyyaml
  echo "== FID-50k end to end"
  repo=$(pwd); outabs=$(cd "$OUT" && pwd)
  (cd /tmp && $PY "$repo/benchmarks/fid50k.py" --json "$outabs/$tag-fid50k.json") 2>&1 \
    | tee "$OUT/$tag-fid50k.md"
  fid_rc=${PIPESTATUS[0]}
  echo "fid exit $fid_rc"
  exit "$fid_rc"
fi

if [ "$STAGE" = e2e ]; then
  [ -d .whl ] && $PY -m pip install -q --no-index --find-links .whl tqdm pyyaml
  data=${FASTGAN_BENCH_DATA:-/tmp/fastgan-bench-20000}
  echo "== data backends ($data)"
  FASTGAN_BENCH_DATA=$data FASTGAN_BENCH_N=20000 $PY -P benchmarks/bench_data.py \
    --backends dali,nvjpeg,cache --json "$OUT/$tag-data.json" 2>&1 | tee "$OUT/$tag-data.log"
  e2e_rc=${PIPESTATUS[0]}
  for model in wgan-gp dcgan; do
    echo "== training $model, 64x64, --amp, 300 steps"
    (cd /tmp && $PY -m fastgan train --model "$model" --data "$data" --amp --steps 300 \
       --out "/tmp/fastgan-e2e-$model" --overwrite --no-progress --set log_every=50 \
       --set tensorboard=false) 2>&1 | tail -3
    rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && e2e_rc=$rc
    cp "/tmp/fastgan-e2e-$model/metrics.jsonl" "$OUT/$tag-train-$model.jsonl" 2>/dev/null
    $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sys.argv[2], 'images/s by log window:', [round(x['images_per_s']) for x in r])" \
      "$OUT/$tag-train-$model.jsonl" "$model" | tee -a "$notes"
  done
  echo "e2e exit $e2e_rc"
  exit "$e2e_rc"
fi

tests_rc=0
bench_rc=0
if [ "$STAGE" != bench ]; then
echo "== tests"
FASTGAN_REQUIRE_EXT=1 $PY -P -m pytest tests -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/$tag-tests.log" | tail -30
tests_rc=${PIPESTATUS[0]}
# kept apart from the notes, which each call rewrites: a later "bench" call attaches it
echo "tests ($(date -u '+%H:%M UTC')): $(tail -1 "$OUT/$tag-tests.log") (exit $tests_rc)" > "$OUT/$tag-tests-result.txt"
fi
[ "$STAGE" = tests ] && { echo "tests exit $tests_rc"; exit "$tests_rc"; }

echo "== benchmarks"
$PY -P -m pytest benchmarks -q -p no:cacheprovider --benchmark-json "$OUT/$tag-bench.json" \
  --benchmark-columns=median,iqr > "$OUT/$tag-bench.log" 2>&1
bench_rc=$?
tail -3 "$OUT/$tag-bench.log"

echo "== report: $OUT/$tag.md"
[ -f "$OUT/$tag-tests-result.txt" ] && cat "$OUT/$tag-tests-result.txt" >> "$notes"
$PY benchmarks/report.py "$OUT/$tag-bench.json" --out "$OUT/$tag.md" \
  --title "fastgan GPU suite, $gpu, $stamp" --notes "$notes"
echo "tests exit $tests_rc, benchmarks exit $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
