#!/usr/bin/env bash
# Pack what the GPU check (tests/gpu) needs on a device machine into a wheel folder (default .whl/).
#
# Why: the lent GPU machine (an image with python3 3.12, torch+CUDA, numpy, pandas, pyarrow,
# scikit-learn, pytest, ...) has no Ray, pydantic or jsonschema and no internet, so they travel
# as wheels inside the working tree, which may weigh 64 MiB in all. The stock Ray wheel (79 MB)
# is too big; strip_ray_wheel.py drops the parts a Ray Train run never loads (Java jar,
# dashboard web client, rllib, serve, llm), leaving ~42 MB. The other wheels are the ones Ray
# core / ray.train and mainsail.config need that the image lacks, at the versions of
# requirements/pipeline.lock.
#
# Usage: scripts/device/pack_gpu_check.sh [PYTHON_VERSION [OUT_DIR]]
#   PYTHON_VERSION  3.12 for the device (default); 3.11 builds the same set for a local dry run
#   OUT_DIR         default .whl (kept out of git by .git/info/exclude, which this adds)
# The stock Ray wheels are cached in $RAY_WHEEL_CACHE (default /tmp/whl).
# Then, on the device:  python3 -m pip install -q --no-index --no-deps --no-compile \
#   --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

py=${1:-3.12}
out=${2:-.whl}
tag=cp${py/./}
cache=${RAY_WHEEL_CACHE:-/tmp/whl}
lock=requirements/pipeline.lock
# What Ray core + ray.train/ray.tune (Requires-Dist of ray and of its `train` extra) and
# mainsail.config need beyond the device image; pure-Python ones except rpds-py and
# pydantic-core. typing-extensions rides along because pydantic needs a recent one.
deps=(jsonschema jsonschema-specifications referencing rpds-py pydantic pydantic-core
  annotated-types typing-inspection typing-extensions tensorboardx)

pin() {  # NAME -> NAME==VERSION from the pipeline lock
  local line
  line=$(grep -i -m1 "^$1==" "$lock") || { echo "pack: $1 is not in $lock" >&2; exit 1; }
  echo "${line%% *}"
}

pip_download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 "$@"
}

ray_pin=$(pin ray)
ray_whl=$(ls "$cache"/ray-"${ray_pin#*==}"-"$tag"-"$tag"-manylinux*_x86_64.whl 2>/dev/null | head -1 || true)
if [ -z "$ray_whl" ]; then
  mkdir -p "$cache"
  pip_download -d "$cache" "$ray_pin"
  ray_whl=$(ls "$cache"/ray-"${ray_pin#*==}"-"$tag"-"$tag"-manylinux*_x86_64.whl | head -1)
fi

mkdir -p "$out"
rm -f "$out"/*.whl  # one version of each: two stop the install
if [ "$out" = .whl ] && ! grep -qxF /.whl/ .git/info/exclude 2>/dev/null; then
  echo /.whl/ >>.git/info/exclude
fi
python3 scripts/device/strip_ray_wheel.py "$ray_whl" "$out"
pins=()
for d in "${deps[@]}"; do pins+=("$(pin "$d")"); done
pip_download -d "$out" "${pins[@]}"
ls -l "$out"
du -sb "$out" | awk '{printf "pack: %s holds %.1f MB\n", $2, $1 / 1e6}'
