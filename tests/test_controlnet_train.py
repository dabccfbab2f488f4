"""The embedded ControlNet's trainer (webui/train/controlnet.py): its timestep sampler, CLI and a tiny run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from webui.train import controlnet as cn_train
from webui.train.controlnet import ControlTrainConfig, config_from_args, sample_control_timesteps


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_cubic_timesteps_follow_the_t2i_adapter_distribution():
    n, num = 200_000, 1000
    t = sample_control_timesteps("cubic", num, n, _gen())
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) == num - 1
    # P(t >= s) = (1 - s / num) ** (1 / 3)
    for s in (100, 500, 800, 900, 990):
        want = (1 - s / num) ** (1 / 3)
        assert abs(float((t >= s).float().mean()) - want) < 0.006, s
    assert int((t < 50).sum()) > 0  # the low-noise steps still get trained


def test_uniform_timesteps_are_uniform_and_both_are_seeded():
    t = sample_control_timesteps("uniform", 1000, 200_000, _gen())
    assert abs(float((t >= 500).float().mean()) - 0.5) < 0.006
    assert abs(float((t >= 900).float().mean()) - 0.1) < 0.004
    for mode in ("uniform", "cubic"):
        assert torch.equal(sample_control_timesteps(mode, 1000, 64, _gen(3)), sample_control_timesteps(mode, 1000, 64, _gen(3)))
    with pytest.raises(ValueError, match="'logit'"):
        sample_control_timesteps("logit", 1000, 8, _gen())


def test_cli_flags_reach_the_config():
    assert config_from_args([]) == ControlTrainConfig()
    cfg = config_from_args(["--timestep-sampling", "cubic", "--high-noise-weight", "0", "--steps", "7", "--no-resume"])
    assert (cfg.timestep_sampling, cfg.high_noise_weight, cfg.steps, cfg.resume) == ("cubic", 0.0, 7, False)
    with pytest.raises(SystemExit):
        config_from_args(["--timestep-sampling", "logit"])


def test_tiny_run_uses_the_sampler_writes_a_controlnet_and_resumes(tmp_path, monkeypatch):
    from diffusers import ControlNetModel

    from webui.diffusion.tiny import save_tiny_model

    save_tiny_model(tmp_path / "sd", seed=0)
    seen = []
    real = cn_train.sample_control_timesteps

    def spy(mode, num, n, gen):
        t = real(mode, num, n, gen)
        seen.append((mode, num, n))
        return t

    monkeypatch.setattr(cn_train, "sample_control_timesteps", spy)
    cfg = ControlTrainConfig(base_model=str(tmp_path / "sd"), output=str(tmp_path / "cn"), work_dir=str(tmp_path / "work"),
                             steps=2, extra_steps=1, batch_size=2, pool_size=4, warmup=1, checkpoint_every=2,
                             timestep_sampling="cubic", high_noise_weight=0.0, threads=1)
    with pytest.raises(ValueError, match="'nope'"):  # a bad mode fails before the pool is built
        cn_train.train_controlnet(replace(cfg, timestep_sampling="nope"))
    assert not (tmp_path / "work" / "pool.pt").exists()
    seen.clear()
    cn_train.train_controlnet(cfg)
    steps = [s for s in seen if s[2] == 2]
    assert len(steps) == 3 and all(m == "cubic" and num == 1000 for m, num, _ in steps)
    assert json.loads((tmp_path / "work" / "config.json").read_text())["timestep_sampling"] == "cubic"
    model = ControlNetModel.from_pretrained(tmp_path / "cn", local_files_only=True)
    assert model.config.conditioning_embedding_out_channels == [8, 16, 32, 64]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "cn" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    seen.clear()
    cn_train.train_controlnet(replace(cfg, extra_steps=2))  # resumes at step 3 of 4
    assert len([s for s in seen if s[2] == 2]) == 1
