"""Ray Train's GPU path of the MLP: `fit_mlp_on_ray` with `RayConfig(use_gpu=True)`.

TorchTrainer with one GPU worker: `prepare_model` must move the network to the worker's GPU,
the fit must learn, the same seed must give the same weights, and the GPU fit must score like
a CPU fit of the same data.

It needs a CUDA GPU, which CI does not have, so the normal run never collects this folder
(`testpaths` in pyproject.toml leaves tests/gpu out) and its tests carry the `gpu` marker. On
a GPU machine: `python -m pytest --noconftest -m gpu tests/gpu` with MAINSAIL_REQUIRE_GPU=1
(a missing GPU then fails instead of skipping). scripts/device/pack_gpu_check.sh packs Ray and
the few other wheels a bare GPU image lacks; this module imports only numpy, scikit-learn,
torch, Ray and mainsail, and uses no fixture of tests/conftest.py.

MAINSAIL_GPU_CHECK_DRY_RUN=1 runs the same checks with `use_gpu=False` (expecting `cpu`), to
try the module and the packed Ray on a machine without a GPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mainsail.config.train import RayConfig
from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
from mainsail.train.torch_model import MLPFit

pytestmark = pytest.mark.gpu

DRY_RUN = os.environ.get("MAINSAIL_GPU_CHECK_DRY_RUN") == "1"
REQUIRE_GPU = os.environ.get("MAINSAIL_REQUIRE_GPU") == "1"
SEED = 7
PARAMS = MLPParams(hidden=(64, 32), epochs=30, batch_size=256, lr=1e-3, dropout=0.1, patience=5)


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A balanced two-class set that a small MLP separates well (chance is 0.5)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=6000,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        class_sep=1.0,
        flip_y=0.02,
        random_state=0,
    )
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    return X[:5000], y[:5000], X[5000:], y[5000:]


class Fits:
    """The data, two fits with the same seed on the GPU path and one on CPU."""

    def __init__(self, storage: Path) -> None:
        self.X, self.y, self.Xv, self.yv = _data()
        self.coding = TargetCoding.fit(self.y, "classification")
        self.seconds: dict[str, float] = {}
        """Wall time of each fit, Ray Train's worker start-up included."""
        self.gpu_a = self.fit("gpu_a", use_gpu=not DRY_RUN, storage=storage)
        self.gpu_b = self.fit("gpu_b", use_gpu=not DRY_RUN, storage=storage)
        self.cpu = self.fit("cpu", use_gpu=False, storage=storage)
        print(f"fit wall times (s): {self.seconds}")

    def fit(self, name: str, *, use_gpu: bool, storage: Path) -> MLPFit:
        from mainsail.train.mlp_ray import fit_mlp_on_ray

        start = time.perf_counter()
        fit = fit_mlp_on_ray(
            self.X,
            self.y,
            self.Xv,
            self.yv,
            self.coding,
            PARAMS,
            seed=SEED,
            ray_cfg=RayConfig(num_cpus=4, num_workers=1, use_gpu=use_gpu),
            storage_dir=storage / name,
        )
        self.seconds[name] = round(time.perf_counter() - start, 1)
        return fit

    def accuracy(self, fit: MLPFit) -> float:
        """Validation accuracy through the CPU predict path that serving uses."""
        model = MLPModel(fit.state, self.X.shape[1], PARAMS, self.coding)
        return float((model.predict(self.Xv) == self.yv).mean())


@pytest.fixture(scope="module")
def ray_gpus() -> Iterator[dict[str, object]]:
    """Local Ray through `ensure_ray`, as the pipeline starts it; what it saw of the GPU."""
    import ray
    import torch

    from mainsail.train.ray_runtime import ensure_ray

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not DRY_RUN and cuda == 0:
        message = "torch sees no CUDA GPU"
        if REQUIRE_GPU:
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as env:
        # cuBLAS reduces in a fixed order only with a pinned workspace; Ray's workers inherit
        # the driver's environment, so set it before Ray starts them.
        env.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
        ray_cfg = RayConfig(num_cpus=4)
        ensure_ray(ray_cfg)
        detected = ray.cluster_resources().get("GPU", 0.0)
        if not DRY_RUN and detected < 1:
            # Ray counts GPUs through NVML unless CUDA_VISIBLE_DEVICES names them; name them,
            # so the training checks still run, and let test_ray_detects_the_gpu report it.
            ray.shutdown()
            env.setenv("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(cuda)))
            ensure_ray(ray_cfg)
        info: dict[str, object] = {
            "torch_cuda_devices": cuda,
            "ray_detected_gpus": detected,
            "ray_gpus": ray.cluster_resources().get("GPU", 0.0),
            "name": torch.cuda.get_device_name(0) if cuda else "none",
            "torch": torch.__version__,
            "ray": ray.__version__,
        }
        print(f"GPU check: {info}")
        try:
            yield info
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def fits(ray_gpus: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Fits:
    return Fits(tmp_path_factory.mktemp("ray-gpu"))


def test_ray_detects_the_gpu(ray_gpus: dict[str, object], record_testsuite_property) -> None:
    for key, value in ray_gpus.items():
        record_testsuite_property(key, value)
    if DRY_RUN:
        pytest.skip("dry run: no GPU expected")
    assert ray_gpus["ray_detected_gpus"] >= 1, ray_gpus  # type: ignore[operator]


def test_worker_trains_on_cuda(fits: Fits, record_testsuite_property) -> None:
    for name, seconds in fits.seconds.items():
        record_testsuite_property(f"fit_seconds_{name}", seconds)
    record_testsuite_property("gpu_fit_device", fits.gpu_a.device)
    record_testsuite_property("cpu_fit_device", fits.cpu.device)
    assert fits.gpu_a.device.startswith("cpu" if DRY_RUN else "cuda"), fits.gpu_a.device
    assert fits.gpu_b.device == fits.gpu_a.device
    assert fits.cpu.device == "cpu"


def test_gpu_fit_learns(fits: Fits, record_testsuite_property) -> None:
    history = fits.gpu_a.history
    first, best = history[0]["valid_loss"], history[fits.gpu_a.best_epoch - 1]["valid_loss"]
    accuracy = fits.accuracy(fits.gpu_a)
    record_testsuite_property("gpu_epochs_run", len(history))
    record_testsuite_property("gpu_best_epoch", fits.gpu_a.best_epoch)
    record_testsuite_property("gpu_valid_loss_first_best", f"{first:.4f} {best:.4f}")
    record_testsuite_property("gpu_accuracy", accuracy)
    print(f"GPU fit: {len(history)} epochs, valid loss {first:.4f} -> {best:.4f}, acc {accuracy}")
    assert best < 0.8 * first, history
    assert accuracy >= 0.85


def test_same_seed_gives_the_same_weights_on_gpu(fits: Fits, record_testsuite_property) -> None:
    """Bitwise, not merely close: every kernel of this MLP's step is deterministic on CUDA
    (cuBLAS GEMMs with a pinned workspace, tree reductions, elementwise Adam; no atomics, no
    cuDNN), the weights start from the seeded CPU generator and dropout draws from the seeded
    CUDA generator. A difference here is a finding, not noise; the message gives its size."""
    a, b = fits.gpu_a.state, fits.gpu_b.state
    assert a.keys() == b.keys()
    max_diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    record_testsuite_property("gpu_same_seed_max_abs_diff", max_diff)
    assert fits.gpu_a.history == fits.gpu_b.history, f"max |Δweight| = {max_diff:g}"
    assert all(np.array_equal(a[k], b[k]) for k in a), f"max |Δweight| = {max_diff:g}"


def test_gpu_fit_scores_like_a_cpu_fit(fits: Fits, record_testsuite_property) -> None:
    """Same data, seed and initial weights; dropout masks differ (CUDA and CPU generators)
    and so do float rounding orders, so the two fits agree in quality, not in bits."""
    gpu, cpu = fits.accuracy(fits.gpu_a), fits.accuracy(fits.cpu)
    record_testsuite_property("cpu_accuracy", cpu)
    print(f"accuracy: GPU {gpu:.4f}, CPU {cpu:.4f}")
    assert abs(gpu - cpu) <= 0.02
    assert cpu >= 0.85
