#!/bin/bash
# The codec end to end on a lent GPU machine that lacks PyAV and zstandard: both travel as wheels
# in devgpu/whl (README of the device tool: pip download --only-binary ... av zstandard, python 3.12).
# Writes into $OUT: each model's .vtk of the bundled example and its decode there (compare them here with
# vtcodec.decode_frames on the CPU), and `vtcodec bench` on CUDA.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site devgpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src
python3 -c "import av, zstandard, torch, vtcodec; print('av', av.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m vtcodec models
for m in tivtok vidtok; do
  python3 -m vtcodec encode examples/pan_astronaut.mp4 -o $OUT/ex_$m.vtk --model $m --device cuda
  python3 - $m <<'PY'
import os, sys, time, numpy as np, torch
from vtcodec.codec import decode_frames
m = sys.argv[1]
f = decode_frames(f"{os.environ['OUT']}/ex_{m}.vtk", device="cuda")
np.savez_compressed(f"{os.environ['OUT']}/ex_{m}_cuda.npz", frames=f)
print(m, "decoded on cuda", f.shape, "peak GPU MiB", torch.cuda.max_memory_allocated() >> 20)
PY
done
timeout 170 python3 -m vtcodec bench --device cuda --json $OUT/bench_cuda.json 2>&1 | tee $OUT/bench_cuda.txt
ls -la $OUT
