"""The embedded demo model: data generator, classical-CV checker, train/resume, committed weights."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from webui.train.data import VOCAB, FolderData, Scene, ShapesData, _jittered, render_scene, sample_scene, scene_for_seed
from webui.train.evaluate import analyse, held_out_cases

DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "demo-shapes"

# words captions may use besides the vocabulary table
GLUE = {"a", "an", "on", "at", "the", "in", "near", "side", "middle", "centre", "and", "with", "background", "two"}


def _vocab_words() -> set:
    words = set(VOCAB.colours) | set(VOCAB.shapes) | set(VOCAB.shapes.values())
    for _, syn in VOCAB.sizes.values():
        words |= set(syn)
    for _, phrases in VOCAB.positions.values():
        for p in phrases:
            words |= set(p.split())
    return words | GLUE


def test_generator_is_deterministic_per_seed():
    a, b = ShapesData(seed=3, size=64), ShapesData(seed=3, size=64)
    for i in range(5):
        (ia, ca), (ib, cb) = a.item(i), b.item(i)
        assert ca == cb
        assert np.array_equal(ia, ib)
        assert ia.shape == (64, 64, 3) and ia.dtype == np.uint8
    other = ShapesData(seed=4, size=64).item(0)
    assert other[1] != a.item(0)[1] or not np.array_equal(other[0], a.item(0)[0])


def test_captions_use_the_vocab_table_and_respect_the_holdout():
    allowed = _vocab_words()
    rng = random.Random(0)
    for _ in range(300):
        scene = sample_scene(rng, holdout=True)
        words = set(re.findall(r"[a-z]+", scene.caption))
        assert words <= allowed, (scene.caption, words - allowed)
        for s in scene.shapes:
            assert (s.colour, s.shape) not in VOCAB.held_out
            assert s.colour in scene.caption and (s.shape in scene.caption)
        for bg in scene.background:
            assert bg in scene.caption
    assert len(VOCAB.shapes) >= 5 and len(VOCAB.colours) >= 8


@pytest.mark.parametrize("blur", [0.0, 2.5])
def test_checker_reads_generator_images(blur):
    """Validates the evaluator: on drawn single-shape scenes it must be (near) always right, also
    when they are blurred more than the demo model's autoencoder softens its outputs."""
    import cv2

    hits = {"colour": 0, "shape": 0, "position": 0, "background": 0}
    n = 120
    for i in range(n):
        r = random.Random(i)
        shape, colour = list(VOCAB.shapes)[i % len(VOCAB.shapes)], r.choice(list(VOCAB.colours))
        bg = r.choice([c for c in VOCAB.colours if c != colour])
        spec = _jittered(r, shape, colour, "large", r.choice(list(VOCAB.positions)))
        img = render_scene(Scene((bg,), (spec,), ""), 128)
        a = analyse(cv2.GaussianBlur(img, (0, 0), blur) if blur else img)
        for key, want in (("colour", colour), ("shape", shape), ("position", spec.position), ("background", bg)):
            hits[key] += int(getattr(a, key) == want)
    for key, h in hits.items():
        assert h / n >= 0.97, (key, h / n)


def test_checker_shape_classes_survive_heavy_blur():
    """Soft generated stars keep fat arms (solidity up to 0.85 at sigma 4): they are still stars,
    and no other shape turns into one."""
    import cv2

    for i in range(60):
        r = random.Random(i)
        shape = list(VOCAB.shapes)[i % len(VOCAB.shapes)]
        spec = _jittered(r, shape, "red", "large", r.choice(list(VOCAB.positions)))
        img = render_scene(Scene(("white",), (spec,), ""), 128)
        for blur in (3.5, 4.0):
            assert analyse(cv2.GaussianBlur(img, (0, 0), blur)).shape == shape, (i, shape, blur)


def test_held_out_prompts_are_unseen_combinations():
    cases = held_out_cases()
    assert len(cases) >= 20
    for c in cases:
        assert (c.colour, c.shape) in VOCAB.held_out
        assert c.colour != c.background


def test_folder_dataset(tmp_path):
    from PIL import Image

    Image.fromarray(render_scene(scene_for_seed(1), 48)).save(tmp_path / "one.png")
    (tmp_path / "one.txt").write_text("a thing\n", encoding="utf-8")
    img, cap = FolderData(tmp_path, size=32).item(0)
    assert img.shape == (32, 32, 3) and cap == "a thing"
    with pytest.raises(ValueError, match="does not exist"):
        FolderData(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        FolderData(tmp_path / "empty", 32)


def test_tiny_train_checkpoints_and_resumes(tmp_path, capsys):
    import torch

    from webui.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        output=str(tmp_path / "model"), work_dir=str(tmp_path / "work"), preset="test", steps=3, batch_size=4,
        checkpoint_every=2, pool_size=8, vae_steps=2, vae_batch=2, vae_crop=32, threads=1,
    )
    train(cfg)
    state = torch.load(tmp_path / "work" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and "optimizer" in state and "ema" in state and "torch_rng" in state
    assert (tmp_path / "model" / "model_index.json").is_file()
    capsys.readouterr()
    train(TrainConfig(**{**cfg.__dict__, "steps": 5}))
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(tmp_path / "work" / "checkpoint.pt", weights_only=False)["step"] == 5

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        tmp_path / "model", local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    out = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 32, 32, 3)


def test_committed_demo_model_draws_red_where_the_prompt_says():
    assert (DEMO_DIR / "model_index.json").is_file(), f"the demo model is part of the repo: {DEMO_DIR}"
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(2)
    pipe = StableDiffusionPipeline.from_pretrained(
        DEMO_DIR, local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    for side in ("left", "right"):  # the same seed: the position word alone moves the shape
        img = pipe(
            f"a large red circle on the {side}, white background",
            num_inference_steps=10,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
        ).images[0]
        a = analyse(img)
        assert (a.colour, a.shape, a.position, a.background) == ("red", "circle", side, "white"), a


def _folder_dataset(path: Path, n: int = 4) -> Path:
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        scene = scene_for_seed(100 + i)
        Image.fromarray(render_scene(scene, 48)).save(path / f"img{i}.png")
        (path / f"img{i}.txt").write_text(scene.caption, encoding="utf-8")
    return path


def test_fine_tune_and_lora_from_a_caption_folder(tmp_path):
    """The train command on any diffusers SD folder: full fine-tuning and peft LoRA, from image + .txt pairs."""
    import torch
    from diffusers import StableDiffusionPipeline

    from webui.train import main as train_main

    base = tmp_path / "base"
    common = ["--preset", "test", "--batch-size", "2", "--pool-size", "4", "--threads", "1", "--checkpoint-every", "100"]
    assert train_main(["--output", str(base), "--work-dir", str(tmp_path / "w0"), "--steps", "1",
                       "--vae-steps", "1", "--vae-batch", "2", "--decoder-steps", "1", *common]) == 0
    data = _folder_dataset(tmp_path / "data")

    tuned = tmp_path / "tuned"
    assert train_main(["--base-model", str(base), "--data", str(data), "--output", str(tuned),
                       "--work-dir", str(tmp_path / "w1"), "--steps", "2", "--lr", "1e-2", *common]) == 0
    lora_dir = tmp_path / "lora"
    assert train_main(["--base-model", str(base), "--data", str(data), "--output", str(lora_dir),
                       "--work-dir", str(tmp_path / "w2"), "--steps", "2", "--lora-rank", "4", "--lr", "1e-1", *common]) == 0

    def render(path, lora=None):
        pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        if lora:
            pipe.load_lora_weights(str(lora), weight_name="pytorch_lora_weights.safetensors")
        g = torch.Generator().manual_seed(0)
        return pipe("a red circle", num_inference_steps=2, generator=g, output_type="np").images[0]

    before, after = render(base), render(tuned)
    assert after.shape == before.shape == (32, 32, 3)
    assert np.abs(after - before).max() > 1e-4  # the fine-tuned UNet changed
    assert (lora_dir / "pytorch_lora_weights.safetensors").is_file()
    assert np.abs(render(base, lora_dir) - before).max() > 1e-4  # the LoRA loads and acts


def test_train_rejects_bad_inputs(tmp_path):
    from webui.train import main as train_main

    with pytest.raises(ValueError, match="not a diffusers folder"):
        train_main(["--base-model", str(tmp_path), "--output", str(tmp_path / "o"), "--work-dir", str(tmp_path / "w")])
    with pytest.raises(ValueError, match="does not exist"):
        train_main(["--data", str(tmp_path / "nope"), "--preset", "test", "--output", str(tmp_path / "o"),
                    "--work-dir", str(tmp_path / "w"), "--vae-steps", "0", "--decoder-steps", "0"])


def test_position_recipe_schedule_leaves_almost_no_signal_and_every_sampler_starts_there():
    """The ``position`` preset: its noisiest training step keeps sqrt(alpha_bar) = 0.01 (SD 1.x: 0.068),
    every A1111 sampler built from its schedule starts at that step with finite sigmas, and the
    fp16 weights of every preset fit the 25 MB budget."""
    import torch

    from webui.diffusion.samplers import SAMPLER_NAMES, make_scheduler
    from webui.train import model_config
    from webui.train.model_config import POSITION, build_scheduler, low_terminal_snr_betas

    betas = np.asarray(low_terminal_snr_betas())
    root = np.sqrt(np.cumprod(1 - betas))
    sd = np.sqrt(np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2))
    assert abs(root[0] - sd[0]) < 1e-9 and abs(root[-1] - 0.01) < 1e-9 and abs(sd[-1] - 0.068) < 1e-3
    assert np.all(np.diff(root) < 0) and np.all((betas > 0) & (betas < 1))
    assert build_scheduler().config.prediction_type == "epsilon"  # the shipped recipe: SD 1.x
    config = dict(build_scheduler(POSITION).config)
    assert config["prediction_type"] == "v_prediction"
    for name in SAMPLER_NAMES:
        sched = make_scheduler(name, config)
        sched.set_timesteps(20)
        assert int(sched.timesteps[0]) == 999, name
        assert torch.allclose(sched.alphas_cumprod.double(), torch.from_numpy(root**2), atol=1e-6), name
        if hasattr(sched, "sigmas"):
            assert torch.isfinite(torch.as_tensor(sched.sigmas)).all(), name
    for name, arch in model_config.PRESETS.items():  # every from-scratch recipe fits the weight budget
        n = sum(
            sum(p.numel() for p in m.parameters())
            for m in (model_config.build_unet(arch), model_config.build_text_encoder(arch), model_config.build_vae(arch))
        )
        assert 2 * n <= 25_000_000, (name, n)


def test_pyramid_noise_hides_the_layout_but_stays_unit_gaussian_noise():
    """Multi-resolution training noise: discount 0 is plain torch.randn; otherwise every sample has
    unit standard deviation, and the difference between the left and right halves of a 16x16 latent
    (where a large shape is) is several times noisier than with white noise."""
    import torch

    from webui.train.trainer import pyramid_noise

    shape = (256, 4, 16, 16)
    plain = pyramid_noise(shape, 0.0, torch.Generator().manual_seed(3))
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    noise = pyramid_noise(shape, 0.8, torch.Generator().manual_seed(3))
    assert torch.allclose(noise.std(dim=(1, 2, 3)), torch.ones(256), atol=1e-4)
    assert abs(noise.mean().item()) < 0.05

    def halves(x):
        return (x[..., :8].mean(dim=(2, 3)) - x[..., 8:].mean(dim=(2, 3))).std().item()

    assert halves(noise) > 2.5 * halves(plain)
    assert halves(pyramid_noise(shape, 0.9, torch.Generator().manual_seed(3))) > halves(noise)


def test_train_device_is_checked_first_and_checkpoints_call_back(tmp_path):
    import torch

    from webui.train import trainer
    from webui.train.trainer import TrainConfig, load_components, train, train_denoiser

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no working CUDA"):
            train(TrainConfig(output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test", device="cuda"))
        assert not (tmp_path / "w" / "vae").exists()  # nothing was trained before the device was checked
    with pytest.raises(ValueError, match="Unknown device"):
        train(TrainConfig(output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test", device="tpu"))

    cfg = trainer.resolve_defaults(TrainConfig(output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test",
                                               steps=4, batch_size=2, checkpoint_every=2, device="cpu", pyramid_noise=0.8))
    comp = load_components(cfg)
    ids = comp.tokenizer(["a red circle"] * 4, padding="max_length", max_length=77, return_tensors="pt").input_ids
    pool = {"mean": torch.randn(4, 4, 16, 16).half(), "std": torch.full((4, 4, 16, 16), 0.1).half(), "ids": ids,
            "scaling_factor": 1.0}
    seen = []
    train_denoiser(cfg, comp, pool, tmp_path, on_checkpoint=lambda step, ema: seen.append((step, len(ema.shadow))))
    n = len(list(comp.unet.parameters())) + len(list(comp.text_encoder.parameters()))
    assert seen == [(2, n), (4, n)]
    assert next(comp.unet.parameters()).device.type == "cpu"


def _tiny_pool(comp, n=4):
    import torch

    ids = comp.tokenizer(["a red circle on the left"] * n, padding="max_length", max_length=77, return_tensors="pt").input_ids
    return {"mean": torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(1)).half(),
            "std": torch.full((n, 4, 4, 4), 0.1).half(), "ids": ids, "scaling_factor": 1.0}


def test_high_noise_phase_weighs_the_noisiest_steps_from_its_first_step(tmp_path, monkeypatch):
    import torch

    from webui.train import model_config, trainer
    from webui.train.trainer import TrainConfig, load_components, loss_weight, train_denoiser

    # epsilon + min-SNR: the x0 error of SD's noisiest step weighs its SNR (0.005); the floor lifts it
    # to 1 (an epsilon weight of 1 / SNR) and leaves the low-noise steps' min-SNR weight alone
    sched = model_config.build_scheduler(model_config.DEMO)
    a = sched.alphas_cumprod.float()
    snr = a / (1 - a)
    last, low = snr[-1:], torch.tensor([10.0])
    assert float(loss_weight(last, 5.0, False)) == pytest.approx(1.0)
    assert float(loss_weight(last, 5.0, False, 1.0)) == pytest.approx(1.0 / float(snr[-1]), rel=1e-5)
    assert 1.0 / float(snr[-1]) > 100
    assert float(loss_weight(low, 5.0, False, 1.0)) == pytest.approx(0.5) == float(loss_weight(low, 5.0, False))
    assert float(loss_weight(last, 5.0, True, 1.0)) == pytest.approx(2.0 / (float(snr[-1]) + 1))

    demo = trainer.resolve_defaults(TrainConfig(output="o", preset="demo"))  # the shipped recipe: 11,000 + 4000 steps
    assert (demo.high_noise_share, demo.high_noise_weight, demo.high_noise_from, demo.high_noise_lr) == (0.5, 1.0, 11000, 5e-4)
    assert demo.steps == 15000 and demo.batch_size == 16 and trainer.restarts(demo)
    asked = trainer.resolve_defaults(TrainConfig(output="o", preset="demo", high_noise_weight=1.0, high_noise_from=6500))
    assert (asked.high_noise_weight, asked.high_noise_from) == (1.0, 6500)
    tune = trainer.resolve_defaults(TrainConfig(output="o", base_model="m"))
    assert (tune.high_noise_share, tune.high_noise_weight, tune.high_noise_from) == (0.0, 0.0, 0)

    seen = []
    real_times, real_weight = trainer.sample_timesteps, trainer.loss_weight
    monkeypatch.setattr(trainer, "sample_timesteps", lambda num, n, share, gen: (seen.append(("share", share)), real_times(num, n, share, gen))[1])
    monkeypatch.setattr(trainer, "loss_weight", lambda s, g, v, floor=0.0: (seen.append(("floor", floor)), real_weight(s, g, v, floor))[1])
    cfg = trainer.resolve_defaults(TrainConfig(output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test", steps=4,
                                               batch_size=2, checkpoint_every=4, device="cpu", high_noise_share=0.5,
                                               high_noise_weight=1.0, high_noise_from=2))
    comp = load_components(cfg)
    train_denoiser(cfg, comp, _tiny_pool(comp), tmp_path)
    assert [v for k, v in seen if k == "share"] == [0.0, 0.0, 0.5, 0.5]
    assert [v for k, v in seen if k == "floor"] == [0.0, 0.0, 1.0, 1.0]


def test_restarting_high_noise_phase_fine_tunes_the_ema_weights_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    """A second phase of its own: own learning-rate schedule and batch size, fresh optimizer from the
    EMA weights, frozen text encoder; interrupted inside it, a resumed run ends with the same weights."""
    import torch

    from webui.train import trainer
    from webui.train.trainer import TrainConfig, load_components, lr_at, train_denoiser

    cfg = trainer.resolve_defaults(TrainConfig(
        output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test", steps=4, batch_size=2, warmup=1,
        lr=1e-2, checkpoint_every=1, device="cpu", high_noise_from=2, high_noise_share=0.5, high_noise_weight=1.0,
        high_noise_lr=3e-3, high_noise_batch=1, high_noise_frozen_text=1))
    # each phase: its own cosine from its own rate, down to 10 % at its end
    assert [round(lr_at(cfg, s), 6) for s in range(4)] == [0.01, 0.0055, 0.003, 0.00165]
    demo = trainer.resolve_defaults(TrainConfig(output="o", preset="demo"))  # the shipped recipe: two phases
    assert lr_at(demo, 10999) == pytest.approx(1e-4, rel=1e-3) and lr_at(demo, 11000) < lr_at(demo, 11099) == pytest.approx(5e-4, rel=1e-2)

    batches = []
    real_times = trainer.sample_timesteps
    monkeypatch.setattr(trainer, "sample_timesteps", lambda num, n, share, gen: (batches.append(n), real_times(num, n, share, gen))[1])

    def run(work, stop_at=None):
        torch.manual_seed(0)
        work.mkdir(exist_ok=True)
        comp = load_components(cfg)
        pool = _tiny_pool(comp)
        saved = {}

        def on_checkpoint(step, ema):
            saved[step] = [t.clone() for t in ema.shadow]
            if step == stop_at:
                raise KeyboardInterrupt

        try:
            train_denoiser(cfg, comp, pool, work, on_checkpoint=on_checkpoint)
        except KeyboardInterrupt:
            return None, saved
        return comp, saved

    whole, saved = run(tmp_path / "a")
    assert batches == [2, 2, 1, 1]
    assert "step 2: high-noise phase from the EMA weights" in capsys.readouterr().out
    n_unet = len(list(whole.unet.parameters()))
    te_now = [p.detach() for p in whole.text_encoder.parameters()]
    # the text encoder is the first phase's EMA, untouched afterwards; the UNet kept learning
    assert all(torch.equal(a, b) for a, b in zip(te_now, saved[2][n_unet:]))
    assert any(not torch.equal(a.detach(), b) for a, b in zip(whole.unet.parameters(), saved[2][:n_unet]))

    assert run(tmp_path / "b", stop_at=3)[0] is None  # interrupted inside the second phase
    resumed, _ = run(tmp_path / "b")
    assert "resumed from" in capsys.readouterr().out
    for a, b in zip(list(whole.unet.parameters()) + te_now, list(resumed.unet.parameters()) + list(resumed.text_encoder.parameters())):
        assert torch.allclose(a, b, atol=1e-6)


def test_unet_only_trains_just_the_named_parameters(tmp_path):
    import torch

    from webui.train import trainer
    from webui.train.trainer import TrainConfig, load_components, train_denoiser

    cfg = trainer.resolve_defaults(TrainConfig(output=str(tmp_path / "o"), work_dir=str(tmp_path / "w"), preset="test",
                                               steps=2, batch_size=2, lr=1e-2, device="cpu", unet_only="attn2",
                                               train_text_encoder=False))
    comp = load_components(cfg)
    before = {k: v.detach().clone() for k, v in comp.unet.named_parameters()}
    te_before = [p.detach().clone() for p in comp.text_encoder.parameters()]
    train_denoiser(cfg, comp, _tiny_pool(comp), tmp_path)
    changed = {k for k, v in comp.unet.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("attn2" in k for k in changed)
    assert all(torch.equal(a, b) for a, b in zip(te_before, comp.text_encoder.parameters()))
    with pytest.raises(ValueError, match="matches no UNet parameter"):
        train_denoiser(trainer.resolve_defaults(TrainConfig(**{**cfg.__dict__, "unet_only": "nope"})),
                       load_components(cfg), _tiny_pool(comp), tmp_path / "x")
