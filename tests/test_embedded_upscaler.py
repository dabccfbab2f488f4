"""The embedded upscalers trained here (models/RealESRGAN/StudioCompact-x*.safetensors): small, in the
official SRVGGNetCompact layout, loaded through the same spandrel path as a user's file, and better than
Lanczos on a held-out photo; the training recipe is reproducible from its seed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from webui.config import REPO_ROOT
from webui.upscale.degrade import Degradation, bicubic_down, degrade
from webui.upscale.evaluate import crop_to_multiple, evaluate
from webui.upscale.metrics import psnr_y
from webui.upscale.photos import HELD_OUT_SKIMAGE, TRAIN_SKIMAGE, load_photo
from webui.upscale.registry import UpscalerRegistry
from webui.upscale.train import RECIPES, embedded_file, train

MODELS = REPO_ROOT / "models"
MAX_BYTES = 5 * 1024 * 1024


@pytest.mark.parametrize("scale", [2, 4])
def test_embedded_file_is_small_official_layout_and_beats_lanczos(scale):
    from safetensors import safe_open

    path = MODELS / "RealESRGAN" / embedded_file(scale)
    assert path.is_file() and path.stat().st_size <= MAX_BYTES
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    assert {"body.0.weight", "body.0.bias", "body.1.weight"} <= keys  # conv, PReLU, ... as in realesr-general-x4v3
    registry = UpscalerRegistry(MODELS)
    info = registry.find(path.stem)
    model = registry.model(info)
    assert model.architecture == "RealESRGAN Compact" and model.scale == scale
    assert 100_000 <= sum(p.numel() for p in model.descriptor.model.parameters()) <= 1_000_000
    photo = load_photo("skimage:coffee")  # held out from training
    scores = {s.method: s.psnr for s in evaluate(model.upscale_array, scale, [photo])}
    assert scores["model"] > scores["Lanczos"] + 0.2, scores
    assert scores["Lanczos"] > scores["bicubic"]


def test_held_out_photos_are_not_trained_on():
    assert not set(HELD_OUT_SKIMAGE) & set(TRAIN_SKIMAGE)


def test_degradations_are_seeded_and_degrade():
    hr = crop_to_multiple(load_photo("skimage:astronaut").pixels[:96, :96], 4)
    a = degrade(hr, 4, np.random.default_rng(1))
    b = degrade(hr, 4, np.random.default_rng(1))
    assert a.shape == (24, 24, 3) and np.array_equal(a, b)
    heavy = Degradation(p_clean=0.0, p_blur=1.0, p_noise=1.0, p_jpeg=1.0, noise_sigma=(20.0, 20.0))
    noisy = degrade(hr, 4, np.random.default_rng(2), heavy)
    clean = bicubic_down(hr, 4)
    assert psnr_y(clean, noisy) < 30  # the degradation is real
    with pytest.raises(ValueError, match="multiple of the scale"):
        degrade(hr[:10], 4, np.random.default_rng(0))


def test_training_is_reproducible_and_saves_a_spandrel_file(tmp_path):
    from webui.upscale.models import load_upscaler_file

    config = replace(RECIPES[2], steps=3, batch_size=2, lr_patch=8, num_feat=8, num_conv=1, warmup=1, threads=1, scenes=2)
    a = train(replace(config, out_dir=tmp_path / "a"), log=lambda _: None)
    b = train(replace(config, out_dir=tmp_path / "b"), log=lambda _: None)
    ma, mb = load_upscaler_file(a), load_upscaler_file(b)
    assert ma.scale == 2 and ma.architecture == "RealESRGAN Compact"
    for (ka, va), (kb, vb) in zip(ma.descriptor.model.state_dict().items(), mb.descriptor.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = train(replace(config, seed=1, out_dir=tmp_path / "c"), log=lambda _: None)
    assert not torch.equal(load_upscaler_file(c).descriptor.model.body[0].weight, ma.descriptor.model.body[0].weight)
    assert Path(a).name == "StudioCompact-x2.safetensors"
