#!/usr/bin/env bash
# The GPU checks in one bounded run, for a lent GPU machine whose image has CUDA torch but not this
# project's environment (docs/benchmarks.md, "GPU"). Writes each step's output under $OUT (default
# /tmp/warmserve-gpu) and goes on after a failed step, so one run reports every check.
#
#   tests/gpu/device_check.sh [SITE_TARBALL]
#
# SITE_TARBALL: a tar.xz of Python packages the image lacks (Ray, pydantic, jsonschema), unpacked onto
# PYTHONPATH first. Ray's working_dir upload ships the checkout, so the tarball should lie outside it.
# Built here (Python 3.12 wheels for the lent image; Ray's Java jars and dashboard UI dropped: 33 MB xz):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d whl ray==2.60.0 pydantic==2.14.3 pydantic-core==2.50.4 \
#     annotated-types typing-inspection typing_extensions jsonschema==4.26.0 referencing rpds-py \
#     jsonschema-specifications
#   mkdir site && for w in whl/*.whl; do unzip -qo "$w" -d site; done
#   rm -rf site/ray/jars site/ray/dashboard/client/build && tar cC site . | xz -T2 > site.tar.xz
set -u
OUT="${OUT:-/tmp/warmserve-gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
if [ $# -ge 1 ] && [ -f "$1" ]; then
  mkdir -p /tmp/warmserve-site/bin && tar xJf "$1" -C /tmp/warmserve-site
  # Unpacked wheels have no console scripts; cluster.ray_control runs the `ray` CLI.
  printf '#!/usr/bin/env python3\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n' \
    > /tmp/warmserve-site/bin/ray && chmod +x /tmp/warmserve-site/bin/ray
  export PYTHONPATH="/tmp/warmserve-site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/warmserve-site/bin:$PATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  python3 --version
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0), "nccl", torch.cuda.nccl.version())'
  python3 -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
  for module in ray pydantic tensorrt vllm; do
    python3 -c "import $module; print('$module', $module.__version__)" 2>/dev/null || echo "$module: not importable"
  done
} 2>&1 | tee "$OUT/environment.txt"

timeout 300 python3 -m pytest tests/gpu -v -s -p no:cacheprovider -o addopts="-ra" 2>&1 | tee "$OUT/pytest_gpu.txt"

for precision in fp32 fp16; do
  # torch (channels-last on CUDA) against torch-nchw (contiguous NCHW, what it ran before), same run.
  timeout 150 python3 -m cluster.bench_vision --model resnet50 --device cuda --backends torch,torch-nchw \
    --baseline torch-nchw --precision "$precision" --batch-sizes 1,8,32,128 --runs 3 --min-time-s 1 \
    2>&1 | tee "$OUT/bench_vision_$precision.txt"
done
