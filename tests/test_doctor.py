"""doctor: the machine checks against the requirements, the advice, the recommended settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from webui.config import MemoryMode, PathsConfig, PerfConfig
from webui.doctor import Machine, check_machine, describe_perf, precision_problem, recommend, with_recommended

REPO = Path(__file__).resolve().parent.parent


def machine(**kw) -> Machine:
    base = dict(python=(3, 11, 7), torch_version="2.5.0", torch_cuda="12.4", cuda_available=True,
                gpu_name="NVIDIA GeForce RTX 3060", vram_gb=12.0, gpu_capability=(8, 6), mps=False, cores=8,
                ram_gb=32.0, disk_free_gb=950.0, disk_total_gb=1000.0, nvidia_driver=True, gfpgan=False,
                xformers=False)
    return Machine(**{**base, **kw})


def by_name(checks):
    return {c.name: c for c in checks}


def test_good_gpu_machine(tmp_path):
    paths = PathsConfig(models_dir=tmp_path / "models", checkpoints_dir=tmp_path / "ck")
    (paths.sd_dir / "mine").mkdir(parents=True)
    (paths.sd_dir / "mine" / "model_index.json").write_text("{}")
    (paths.sd_dir / "v1-5.safetensors").write_bytes(b"x")
    checks = by_name(check_machine(machine(), paths))
    assert checks["GPU"].status == "ok" and "RTX 3060" in checks["GPU"].detail
    assert checks["CPU cores"].status == checks["RAM"].status == checks["Disk"].status == "ok"
    assert checks["Stable Diffusion models"].detail == "mine, v1-5.safetensors"
    perf, reasons = recommend(machine())
    assert (perf.device, perf.precision, perf.memory, perf.attention) == ("cuda", "fp16", MemoryMode.NORMAL, "sdpa")
    low, _ = recommend(machine(vram_gb=4.5, xformers=True))
    assert low.memory == MemoryMode.MODEL_OFFLOAD and low.attention == "xformers" and low.vae_tiling


def test_torch_without_cuda_and_small_machine(tmp_path):
    paths = PathsConfig(models_dir=tmp_path / "models", checkpoints_dir=tmp_path / "ck")
    m = machine(torch_version="2.5.0+cpu", torch_cuda=None, cuda_available=False, gpu_name=None, vram_gb=None,
                gpu_capability=None, cores=2, ram_gb=8.0, disk_free_gb=50.0, python=(3, 12, 1))
    checks = by_name(check_machine(m, paths))
    assert checks["GPU"].status == "fail" and "this torch has no CUDA" in checks["GPU"].advice
    assert "download.pytorch.org/whl/cu" in checks["torch"].advice
    assert {checks[k].status for k in ("CPU cores", "RAM", "Disk", "Python")} == {"warn"}
    perf, reasons = recommend(m)
    assert perf.device == "cpu" and perf.precision == "fp32" and any("40x" in r for r in reasons)


def test_precision_refusal_and_words():
    assert "40x" in precision_problem(PerfConfig(precision="bf16"), "cpu")
    assert precision_problem(PerfConfig(precision="fp16"), "cuda") is None
    assert precision_problem(PerfConfig(precision="fp32"), "cpu") is None
    text = describe_perf(PerfConfig(precision="fp32", vae_tiling=True))
    assert "PerfConfig" not in text and "precision fp32" in text and "VAE tiling" in text
    merged = with_recommended(PerfConfig(threads=3), PerfConfig(device="cuda", precision="fp16"))
    assert merged.threads == 3 and merged.precision == "fp16"


def test_doctor_command():
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "doctor"], capture_output=True, text=True, timeout=300,
                       cwd=REPO)
    assert r.returncode in (0, 1), r.stderr
    for name in ("GPU:", "torch:", "CPU cores:", "RAM:", "Disk:", "Python:", "gfpgan:", "xformers:",
                 "Recommended settings: device"):
        assert name in r.stdout, name
