#!/usr/bin/env bash
# A whole GPU lease in one background job, for device machines that are given back after a
# short idle time and whose calls last at most 10 minutes:
#
#   bash benchmarks/gpu_session.sh start [SECONDS]   # build in place, start the stages in the
#                                                    # background (setsid), collect SECONDS after
#                                                    # the call began (the build counts: keep it
#                                                    # under the call's limit, e.g. 540 of 600)
#   bash benchmarks/gpu_session.sh wait SECONDS      # wait (until done at the latest), collect
#   bash benchmarks/gpu_session.sh collect           # $OUT/fgs.tgz + the progress so far
#
# Stages (STAGES="gputests step fid data models bench tests", in that order by default):
#   gputests  pytest -m gpu (every GPU test) with pytest-xdist
#   step      benchmarks/step_e2e.py, the full issue-9 configuration, batches 64 and 256, (c)'s
#             cold compilation first in parallel processes (STEP_ARGS passes flags)
#   fid       benchmarks/fid50k.py (FID-50k end to end)
#   data      benchmarks/bench_data.py on 20,000 generated CelebA-like JPEGs (nvjpeg with 2, 1 and 4
#             batches decoding ahead, cache, cpu, plain)
#   models    every model for 200 steps at 64x64 with --amp from the GPU-resident cache
#   bench     the kernel benchmarks, file by file (BENCH_FILES), JSON each + one markdown report
#   tests     the rest of the test suite (not gpu) with pytest-xdist
# A lease holds 30 minutes of device time and is given back after ~30 s idle: call `wait`
# at once after every return (the background job dies with the machine), and name the
# stages that matter first: all of them by default take about 80 minutes of limits, so the
# later ones would never start. One `start` for the whole lease, then `wait`s (a second
# `start` rebuilds and clears $FGS: it refuses while a runner is still going):
#   STAGES="gputests data step bench" STEP_S=700 STEP_ARGS="--budget-s 560" BENCH_S=420 \
#     bash benchmarks/gpu_session.sh start 540                   # timeout_s 600
#   bash benchmarks/gpu_session.sh wait 570                       # twice if need be
# On 2026-11-22 (H100) the build took 57 s, gputests 71-92 s, data 153 s, bench 388 s and
# step's batch-64 configurations ~480 s (batch 256 never ran: --budget-s 420 cut it).
# Each stage runs under a timeout; results and logs go to $FGS (default /tmp/fgs), which
# `collect` packs into $OUT/fgs.tgz. A prebuilt extension carried in .prebuilt/ (the .so a
# previous `collect` returned) is used instead of a build when its csrc/ hash matches, or
# when PREBUILT=1 says that csrc/ has not changed since it was built.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
FGS=${FGS:-/tmp/fgs}
PY=${PYTHON:-python3}
CMD=${1:-collect}

collect() {
  [ -d "$FGS" ] || { echo "gpu_session: nothing under $FGS"; return; }
  [ -n "${OUT:-}" ] && tar czf "$OUT/fgs.tgz" -C "$(dirname "$FGS")" "$(basename "$FGS")" 2>/dev/null
  # the built extension travels inside fgs.tgz (alone it passes the 16 MiB a returned file may
  # have): unpack it into .prebuilt/ with csrc.sha to skip the next lease's build
  echo "== progress"; cat "$FGS/progress.log" 2>/dev/null
  for f in "$FGS"/*-summary.txt; do [ -f "$f" ] && { echo "== $(basename "$f")"; tail -40 "$f"; }; done
}

wait_for() {  # seconds
  local end=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$end" ] && [ ! -f "$FGS/done" ]; do sleep 5; done
}

stage() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $name (limit ${limit}s)" >> "$FGS/progress.log"
  local t0=$(date +%s)
  timeout --kill-after=20 "$limit" "$@" > "$FGS/$name.log" 2>&1
  local rc=$?
  echo "$(date -u +%H:%M:%S) end $name rc=$rc in $(( $(date +%s) - t0 ))s" >> "$FGS/progress.log"
  return $rc
}

run_stages() {
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 FASTGAN_REQUIRE_EXT=1
  local data=/tmp/fastgan-bench-20000
  # pytest-timeout is on the device image, not in fastgan's dev extra: its flag only where it is
  local timeout_args=""
  $PY -c "import pytest_timeout" 2>/dev/null && timeout_args="--timeout 300"
  for s in ${STAGES:-gputests step fid data models bench tests}; do
    case $s in
      gputests)
        (cd /tmp && stage gputests "${GPUTESTS_S:-480}" $PY -P -m pytest "$REPO/tests" -m "gpu and not slow" \
           -n "${XDIST:-8}" -q -rfEs -p no:cacheprovider $timeout_args ${TESTS_ARGS:-})
        tail -60 "$FGS/gputests.log" > "$FGS/gputests-summary.txt" ;;
      step)
        mkdir -p "$FGS/step"
        # shellcheck disable=SC2086
        # step_e2e.py checks its --budget-s (420, precompilation included) only as a
        # configuration starts: the last one to start can end ~80 s later, plus start-up
        stage step "${STEP_S:-570}" $PY -P "$REPO/benchmarks/step_e2e.py" --out "$FGS/step" ${STEP_ARGS:-}
        tail -30 "$FGS/step.log" > "$FGS/step-summary.txt" ;;
      fid)
        (cd /tmp && stage fid "${FID_S:-240}" $PY "$REPO/benchmarks/fid50k.py" --json "$FGS/fid50k.json")
        tail -25 "$FGS/fid.log" > "$FGS/fid-summary.txt" ;;
      data)
        FASTGAN_BENCH_DATA=$data FASTGAN_BENCH_N=20000 stage data "${DATA_S:-420}" \
          $PY -P "$REPO/benchmarks/bench_data.py" --backends "${DATA_BACKENDS:-nvjpeg,nvjpeg:1,nvjpeg:4,cache,cpu,plain}" \
          --workers 8 --json "$FGS/data.json"
        tail -25 "$FGS/data.log" > "$FGS/data-summary.txt" ;;
      models)
        [ -d "$data" ] || FASTGAN_BENCH_DATA=$data FASTGAN_BENCH_N=20000 $PY -P "$REPO/benchmarks/bench_data.py" \
          --backends cache > "$FGS/models-data.log" 2>&1
        for spec in gan:dcgan dcgan lsgan wgan wgan-gp wgan-gp:resnet ebgan began dragan; do
          model=${spec%%:*}; arch=${spec#*:}; [ "$arch" = "$spec" ] && arch=""
          name=$model${arch:+-$arch}
          (cd /tmp && stage "model-$name" 150 $PY -m fastgan train --model "$model" ${arch:+--arch "$arch"} \
             --data "$data" --amp --steps 200 --data-backend cache --out "/tmp/fgm-$name" --overwrite \
             --no-progress --set log_every=50 --set tensorboard=false)
          cp "/tmp/fgm-$name/metrics.jsonl" "$FGS/model-$name.jsonl" 2>/dev/null
        done
        $PY - "$FGS" > "$FGS/models-summary.txt" 2>&1 <<'PYEOF'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
print("| model | images/s (last log window of 50 steps) | loss/d | loss/g |")
print("|---|---|---|---|")
for f in sorted(d.glob("model-*.jsonl")):
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "images_per_s" in r]
    if rows:
        r = rows[-1]
        print(f"| {f.stem[6:]} | {r['images_per_s']:.0f} | {r.get('loss/d', float('nan')):.4g} "
              f"| {r.get('loss/g', float('nan')):.4g} |")
PYEOF
        ;;
      bench)
        # file by file, each with its own JSON, within BENCH_S in all: a file cut off by the
        # time left loses its own results only (pytest-benchmark writes its JSON at the end).
        # bench_step_e2e (the step stage's work) and bench_cpu_isa (CPU builds) are left out.
        mkdir -p "$FGS/bench"
        local bench_end=$(( $(date +%s) + ${BENCH_S:-600} )) f left
        for f in ${BENCH_FILES:-penalty wgan_gp_step clip_weights rmsprop_clip conv_bn_act bias_leaky_relu \
                   began_loss gather_images sampling sample_norm_act resnet fid}; do
          left=$(( bench_end - $(date +%s) ))
          if [ "$left" -lt 20 ]; then echo "$(date -u +%H:%M:%S) bench: no time left for bench_$f" >> "$FGS/progress.log"; continue; fi
          # shellcheck disable=SC2086
          (cd "$REPO" && stage "bench-$f" "$left" $PY -P -m pytest "benchmarks/bench_$f.py" -q -p no:cacheprovider \
             --benchmark-json "$FGS/bench/$f.json" --benchmark-columns=median,iqr ${BENCH_ARGS:-})
        done
        (cd "$REPO" && $PY benchmarks/report.py "$FGS"/bench/*.json --out "$FGS/bench.md" \
           --title "fastgan kernel benchmarks, $(cat "$FGS/gpu")" --notes "$FGS/env.txt" > "$FGS/report.log" 2>&1)
        { for f in "$FGS"/bench-*.log; do echo "$(basename "$f"): $(tail -1 "$f")"; done
          tail -3 "$FGS/report.log"; } > "$FGS/bench-summary.txt" ;;
      tests)
        (cd /tmp && stage tests "${TESTS_S:-600}" $PY -P -m pytest "$REPO/tests" -m "not gpu and not slow" \
           -n "${XDIST:-12}" -q -rfE -p no:cacheprovider $timeout_args)
        tail -40 "$FGS/tests.log" > "$FGS/tests-summary.txt" ;;
      *) echo "unknown stage $s" >> "$FGS/progress.log" ;;
    esac
  done
  touch "$FGS/done"
}

case $CMD in
  start)
    t0=$(date +%s)
    if [ -f "$FGS/runner.pid" ] && [ ! -f "$FGS/done" ] && kill -0 "$(cat "$FGS/runner.pid")" 2>/dev/null; then
      echo "gpu_session: a runner (pid $(cat "$FGS/runner.pid")) is still going in $FGS: use wait, or kill it first" >&2
      collect; exit 3
    fi
    rm -rf "$FGS"; mkdir -p "$FGS"
    {
      echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
      $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda,
                                          '| triton', triton.__version__)"
      nvcc --version 2>/dev/null | tail -1
      echo "nproc: $(nproc)"
    } > "$FGS/env.txt" 2>&1
    $PY -c "import torch; print(torch.cuda.get_device_name(0))" > "$FGS/gpu" 2>/dev/null || echo unknown > "$FGS/gpu"
    cat "$FGS/env.txt"
    sha=$(cd "$REPO" && find csrc setup.py -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
    echo "$sha" > "$FGS/csrc.sha"
    if ls "$REPO"/.prebuilt/_C*.so >/dev/null 2>&1 && { [ "${PREBUILT:-}" = 1 ] \
         || [ "$(cat "$REPO/.prebuilt/csrc.sha" 2>/dev/null)" = "$sha" ]; }; then
      cp "$REPO"/.prebuilt/_C*.so "$REPO/fastgan/"
      echo "$(date -u +%H:%M:%S) prebuilt extension used (csrc $sha)" >> "$FGS/progress.log"
    else
      (cd "$REPO" && FASTGAN_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
         stage build 420 $PY setup.py build_ext --inplace) \
        || { tail -40 "$FGS/build.log"; echo "gpu_session: build failed"; collect; exit 1; }
      cp "$REPO"/fastgan/_C*.so "$FGS/"
      # without its debug information (-g): 37 MB, 13 MB in fgs.tgz, near the 16 MiB a returned file may have
      strip --strip-debug "$FGS"/_C*.so 2>/dev/null || true
    fi
    (cd /tmp && PYTHONPATH=$REPO $PY -m fastgan info) > "$FGS/info.txt" 2>&1; cat "$FGS/info.txt"
    export -f run_stages stage
    export REPO FGS PY
    setsid bash -c run_stages > "$FGS/runner.log" 2>&1 < /dev/null &
    echo $! > "$FGS/runner.pid"
    wait_for $(( t0 + ${2:-0} - $(date +%s) )); collect ;;
  wait) wait_for "${2:-0}"; collect ;;
  collect) collect ;;
  *) echo "gpu_session: unknown command $CMD (start, wait, collect)" >&2; exit 2 ;;
esac
