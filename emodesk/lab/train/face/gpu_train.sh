#!/usr/bin/env bash
# Train face members on a lent GPU (the `device` tool), checkpoints straight into $OUT.
# Carry build/gpu/fer.npz (FER-2013 train+val as uint8 arrays, written by `emodesk train face
# --cache build/gpu/fer.npz`). RUNS is a list of arch:lr:name; they train side by side.
# Export and test-set scoring happen afterwards on the dev machine, from best.pt:
#   emodesk train face --arch m --data build/gpu/fer.npz --checkpoint-dir DIR --export-only --out models/X.onnx
set -u
OUT=${OUT:-build/gpu-out}
EPOCHS=${EPOCHS:-80}
RUNS=${RUNS:-"s:0.1:face-s m:0.1:face-m"}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
for run in $RUNS; do
  IFS=: read -r arch lr name <<< "$run"
  PYTHONPATH=. python -m emodesk train face --arch "$arch" --lr "$lr" --data build/gpu/fer.npz \
    --device cuda --epochs "$EPOCHS" --quiet --no-export --checkpoint-dir "$OUT/$name" \
    --out "$OUT/$name.onnx" > "$OUT/$name.log" 2>&1 &
done
wait
for f in "$OUT"/*.log; do tail -n 2 "$f"; done
for d in "$OUT"/*/; do rm -f "$d/last.pt"; done  # too big to bring back; best.pt + history.json are
