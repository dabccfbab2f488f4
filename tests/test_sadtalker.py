"""SadTalker engine: key parity with the official checkpoints, strict loading, stage shapes.

No real weights exist here: files are synthesised in exactly the official layout (names,
shapes, dtypes) from the key table committed at talking_head/sadtalker/checkpoint_keys.tsv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from talking_head.sadtalker import (CheckpointError, SadTalkerConfig, SadTalkerEngine, SadTalkerOptions,
                                    build_networks, clear_cache, load_sadtalker, required_files,
                                    sadtalker_available)
from talking_head.sadtalker.audio2exp import ExpNet
from talking_head.sadtalker.audio2pose import PoseVAE, smooth_pose
from talking_head.sadtalker.engine import blink_sequence, camera_path, window_indices
from talking_head.sadtalker.face3d import LM3D_STD, ReconNet, align_face, pos_fit
from talking_head.sadtalker.facerender import (KPDetector, OcclusionAwareSPADEGenerator, rotation_matrix,
                                               transform_keypoints)
from talking_head.sadtalker.loader import MAPPING_70, MAPPING_73, load_strict
from talking_head.sadtalker.mapping import MappingNet, bins_to_degrees

TSV = Path(__file__).resolve().parents[1] / "talking_head" / "sadtalker" / "checkpoint_keys.tsv"
RENDERER = "SadTalker_V0.0.2_{256,512}.safetensors"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


def read_tsv() -> list[tuple[str, str, str, tuple[int, ...]]]:
    rows = []
    for line in TSV.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        file, key, dtype, shape = line.split("\t")
        dims = tuple(int(x) for x in shape.strip("[]").split(",") if x.strip())
        rows.append((file, key, dtype, dims))
    return rows


def official_layout(prefix: str | None = None, file: str = RENDERER) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {}
    for f, key, dtype, shape in read_tsv():
        if f != file:
            continue
        if file == RENDERER:
            if key.startswith(prefix + "."):
                out[key[len(prefix) + 1:]] = (dtype, shape)
        else:
            out[key.removeprefix("mapping/")] = (dtype, shape)
    return out


def layout_of(module: torch.nn.Module) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in module.state_dict().items()}


def random_tensor(dtype: str, shape, gen: torch.Generator) -> torch.Tensor:
    if DTYPES[dtype] == torch.int64:
        return torch.zeros(shape, dtype=torch.int64)
    return torch.rand(shape, generator=gen) * 0.02 - 0.01


def write_mapping(path: Path, file: str, rename: tuple[str, str] | None = None) -> None:
    gen = torch.Generator().manual_seed(1)
    state = {k: random_tensor(d, s, gen) for k, (d, s) in official_layout(file=file).items()}
    if rename:
        state[rename[1]] = state.pop(rename[0])
    # training state beside the weights, as in the real file
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    opt.state_dict()
    torch.save({"mapping": state, "optimizer_mapping": opt.state_dict(), "epoch": 229}, path)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def official_dir(tmp_path_factory) -> Path:
    """checkpoints/ with a full-size renderer file (random values, official layout) + both mappings."""
    d = tmp_path_factory.mktemp("st") / "checkpoints"
    d.mkdir()
    gen = torch.Generator().manual_seed(0)
    tensors = {key: random_tensor(dtype, shape, gen)
               for f, key, dtype, shape in read_tsv() if f == RENDERER}
    save_file(tensors, str(d / "SadTalker_V0.0.2_256.safetensors"))
    del tensors
    write_mapping(d / MAPPING_70, MAPPING_70)
    write_mapping(d / MAPPING_73, MAPPING_73)
    yield d
    clear_cache()
    shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------- key parity

def test_key_table_copy_matches_shared_facts():
    shared = Path(__file__).resolve().parents[2] / "shared" / "facts" / "sadtalker_checkpoint_keys.tsv"
    if not shared.exists():
        pytest.skip("shared facts not beside the repo")
    assert shared.read_text() == TSV.read_text()


def test_full_size_modules_match_official_keys_shapes_dtypes():
    with torch.device("meta"):  # shapes only, no allocation or random init
        modules = {"kp_extractor": KPDetector(), "generator": OcclusionAwareSPADEGenerator(),
                   "audio2exp": ExpNet(), "audio2pose": PoseVAE(), "face_3drecon": ReconNet()}
        mappings = {MAPPING_70: MappingNet(70), MAPPING_73: MappingNet(73)}
    total = 0
    for prefix, module in modules.items():
        expected = official_layout(prefix)
        assert layout_of(module) == expected, prefix
        total += len(expected)
    for file, module in mappings.items():
        expected = official_layout(file=file)
        assert layout_of(module) == expected, file
        total += len(expected)
    assert total == len(read_tsv()) == 1341


# ----------------------------------------------------------------------------- loader

def test_loader_accepts_official_layout_strictly_and_caches(official_dir):
    nets = load_sadtalker(official_dir, 256, "crop")
    assert nets.coeff_nc == 70 and nets.mapping.first[0].in_channels == 70
    from safetensors import safe_open
    with safe_open(str(official_dir / "SadTalker_V0.0.2_256.safetensors"), "pt") as f:
        ref = f.get_tensor("generator.decoder.G_middle_3.conv_1.weight_orig")
    assert torch.equal(nets.generator.decoder.G_middle_3.conv_1.weight_orig, ref)
    assert load_sadtalker(official_dir, 256, "extcrop") is nets       # same mapping file -> cached
    full = load_sadtalker(str(official_dir), 256, "full")
    assert full is not nets and full.coeff_nc == 73
    assert all(not p.requires_grad for p in full.generator.parameters())
    for module in full.modules().values():  # built on the meta device: every tensor must come from a file
        assert all(t.device.type == "cpu" for t in [*module.parameters(), *module.buffers()])
    with torch.inference_mode():
        he = full.mapping(torch.randn(2, 73, 27))
        assert he["exp"].shape == (2, 45) and torch.isfinite(he["exp"]).all()
        assert full.expnet.predict(torch.randn(3, 80, 16), torch.zeros(64), torch.zeros(3)).shape == (3, 64)


def test_required_files_and_availability(tmp_path, official_dir):
    assert required_files(256, "crop") == ["SadTalker_V0.0.2_256.safetensors", MAPPING_70]
    assert required_files(512, "extfull") == ["SadTalker_V0.0.2_512.safetensors", MAPPING_73]
    assert sadtalker_available(official_dir, 256, "crop")
    assert sadtalker_available(official_dir, 256, "full")
    assert not sadtalker_available(official_dir, 512, "crop")        # no 512 file
    assert not sadtalker_available(tmp_path, 256, "crop")
    (tmp_path / "SadTalker_V0.0.2_256.safetensors").write_bytes(b"x")
    assert not sadtalker_available(tmp_path, 256, "crop")            # mapping still missing
    assert not sadtalker_available(official_dir, 300, "crop")
    with pytest.raises(ValueError, match="preprocess"):
        required_files(256, "bogus")


def test_missing_file_names_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SadTalker_V0\.0\.2_512\.safetensors.*checkpoints/"):
        load_sadtalker(tmp_path, 512, "crop")


def _small_renderer(path: Path):
    save_file({"generator.x": torch.zeros(1000), "kp_extractor.y": torch.zeros(1000)}, str(path))


def test_truncated_files_give_clear_errors(tmp_path, official_dir):
    d = tmp_path / "checkpoints"
    d.mkdir()
    _small_renderer(d / "SadTalker_V0.0.2_256.safetensors")
    data = (d / "SadTalker_V0.0.2_256.safetensors").read_bytes()
    (d / "SadTalker_V0.0.2_256.safetensors").write_bytes(data[: len(data) // 2])
    shutil.copy(official_dir / MAPPING_70, d / MAPPING_70)
    with pytest.raises(CheckpointError, match=r"SadTalker_V0\.0\.2_256\.safetensors.*(truncated|corrupt)"):
        load_sadtalker(d, 256, "crop")
    # truncated mapping with a valid renderer file
    (d / "SadTalker_V0.0.2_256.safetensors").unlink()
    (d / "SadTalker_V0.0.2_256.safetensors").symlink_to(official_dir / "SadTalker_V0.0.2_256.safetensors")
    m = (official_dir / MAPPING_70).read_bytes()
    (d / MAPPING_70).write_bytes(m[: len(m) // 3])
    with pytest.raises(CheckpointError, match=r"mapping_00229-model\.pth\.tar.*(truncated|corrupt)"):
        load_sadtalker(d, 256, "crop")


def test_renamed_key_is_named_in_error(tmp_path, official_dir):
    d = tmp_path / "checkpoints"
    d.mkdir()
    (d / "SadTalker_V0.0.2_256.safetensors").symlink_to(official_dir / "SadTalker_V0.0.2_256.safetensors")
    write_mapping(d / MAPPING_70, MAPPING_70, rename=("fc_yaw.weight", "fc_yawn.weight"))
    with pytest.raises(CheckpointError, match=r"mapping_00229.*missing keys \['fc_yaw.weight'\].*unexpected keys \['fc_yawn.weight'\]"):
        load_sadtalker(d, 256, "crop")
    # same check inside the renderer file (one prefix group, no 725 MB rewrite)
    net = ExpNet()
    state = net.state_dict()
    state["mapping2.weight"] = state.pop("mapping1.weight")
    with pytest.raises(CheckpointError, match=r"SadTalker_V0.0.2_256.*missing keys \['mapping1.weight'\]"):
        load_strict(net, state, "'SadTalker_V0.0.2_256.safetensors' (prefix 'audio2exp.')")
    state = net.state_dict()
    state["mapping1.weight"] = torch.zeros(64, 578)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_strict(net, state, "x")


# ----------------------------------------------------------------------------- stage shapes

def test_cheap_full_size_stages():
    torch.manual_seed(0)
    with torch.inference_mode():
        mels = torch.randn(12, 1, 80, 16)
        exp = ExpNet().eval().predict(mels, torch.zeros(64), torch.zeros(12))
        assert exp.shape == (12, 64)
        vae = PoseVAE().eval()
        for T in (1, 34):
            pose = vae.predict(torch.randn(T, 1, 80, 16), torch.ones(6), 45, torch.Generator().manual_seed(0))
            assert pose.shape == (T, 6)
            assert torch.allclose(pose[0], torch.ones(6))           # frame 0 is the reference
        with pytest.raises(ValueError, match="pose_style"):
            vae.predict(mels, torch.zeros(6), 46)
        for nc in (70, 73):
            he = MappingNet(nc).eval()(torch.randn(4, nc, 27))
            assert {k: tuple(v.shape) for k, v in he.items()} == {
                "yaw": (4, 66), "pitch": (4, 66), "roll": (4, 66), "t": (4, 3), "exp": (4, 45)}
        assert ReconNet().eval()(torch.rand(1, 3, 224, 224)).shape == (1, 257)


@pytest.mark.parametrize("size", [256, 512])
def test_renderer_shapes_tiny(size):
    cfg = SadTalkerConfig.tiny()
    nets = build_networks(cfg, size)
    with torch.inference_mode():
        img = torch.rand(1, 3, size, size)
        kp = nets.kp_detector(img)
        assert kp.shape == (1, 15, 3) and kp.abs().max() <= 1
        volume, compressed = nets.generator.encode_source(img)
        d = cfg.generator.reshape_depth
        assert volume.shape == (1, cfg.generator.reshape_channel, d, size // 4, size // 4)
        B = 2 if size == 256 else 1
        kp_d = kp + 0.05 * torch.randn(B, 15, 3)
        motion = nets.generator.dense_motion_network(compressed.expand(B, -1, -1, -1, -1), kp_d, kp.expand(B, -1, -1))
        assert motion["mask"].shape == (B, 16, d, size // 4, size // 4)
        assert torch.allclose(motion["mask"].sum(1), torch.ones(1))
        assert motion["deformation"].shape == (B, d, size // 4, size // 4, 3)
        assert motion["occlusion_map"].shape == (B, 1, size // 4, size // 4)
        out = nets.generator.render(volume, compressed, kp_d, kp)
        assert out.shape == (B, 3, size, size) and 0 <= out.min() and out.max() <= 1


def test_keypoint_transform_semantics():
    kp = torch.randn(1, 15, 3)
    zeros = {"yaw": torch.zeros(2, 66), "pitch": torch.zeros(2, 66), "roll": torch.zeros(2, 66),
             "t": torch.tensor([[5.0, 0.25, 7.0]] * 2), "exp": torch.zeros(2, 45)}
    assert torch.allclose(bins_to_degrees(torch.zeros(1, 66)), torch.tensor([-1.5]))
    z = torch.zeros(2)
    out = transform_keypoints(kp, zeros, yaw=z, pitch=z, roll=z)
    assert torch.allclose(out, kp + torch.tensor([0.0, 0.25, 0.0]))   # t: only y is used
    R = rotation_matrix(torch.tensor([30.0]), torch.tensor([-10.0]), torch.tensor([5.0]))
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3)[None], atol=1e-5)


def test_alignment_pos_fit_and_crop():
    # project the standard landmarks with a known scale/translation: POS recovers them
    lm2d = LM3D_STD[:, :2] * 90 + [128, 120]
    t, s = pos_fit(lm2d)
    assert s == pytest.approx(90, rel=1e-6) and np.allclose(t, [128, 120])
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    lm68 = np.random.default_rng(1).uniform(60, 200, (68, 2))
    res = align_face(img, lm68)
    assert res.image.shape == (224, 224, 3) and res.image.dtype == np.uint8
    assert res.crop_params.shape == (3,) and np.isfinite(res.crop_params).all()
    assert align_face(img, None).image.shape == (224, 224, 3)


def test_blinks_camera_windows_smoothing():
    rng = np.random.default_rng(0)
    assert not blink_sequence(20, rng).any()
    b = blink_sequence(200, np.random.default_rng(3))
    assert b.shape == (200,) and b.max() == 1.0
    assert np.array_equal(b, blink_sequence(200, np.random.default_rng(3)))
    starts = np.flatnonzero(np.diff(np.r_[0, (b > 0).astype(int)]) == 1)
    assert all(np.allclose(b[s:s + 5], [0.5, 0.9, 1, 0.9, 0.5]) for s in starts)
    assert starts[0] >= 10
    assert np.allclose(camera_path([10], 4), 10)
    path = camera_path([0, 20, 0], 21)
    assert path.shape == (21,) and path[0] == 0 and path.max() <= 20
    assert camera_path(None, 5) is None
    w = window_indices(np.array([0, 5]), 8)
    assert w.shape == (2, 27) and w.min() == 0 and w.max() == 7 and w[1, 13] == 5
    p = np.random.default_rng(0).standard_normal((40, 6))
    assert smooth_pose(p).shape == (40, 6) and smooth_pose(p[:2]).shape == (2, 6)


@pytest.mark.parametrize("size,preprocess,frames", [(256, "crop", 4), (256, "full", 2)])
def test_engine_end_to_end_tiny(size, preprocess, frames):
    nets = build_networks(SadTalkerConfig.tiny(), size, preprocess)
    engine = SadTalkerEngine(nets, batch_size=3)
    rng = np.random.default_rng(0)
    face = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    mels = rng.standard_normal((frames, 80, 16)).astype(np.float32)
    opts = SadTalkerOptions(preprocess=preprocess, pose_style=7, input_yaw=[0, 15], still=preprocess == "full",
                            expression_scale=1.5, seed=11)
    out = list(engine.generate(face, mels, rng.uniform(50, 200, (68, 2)), opts))
    assert len(out) == frames
    assert all(f.shape == (size, size, 3) and f.dtype == np.uint8 for f in out)
    # stages individually: deterministic for a seed, semantics of still / scale / full
    src = engine.source_coeffs(face)
    assert src.exp.shape == (64,) and src.pose.shape == (6,) and src.crop.shape == (3,) and src.full.shape == (257,)
    c1, c2 = engine.coefficients(mels, src, opts), engine.coefficients(mels, src, opts)
    assert np.array_equal(c1.pose, c2.pose) and c1.exp.shape == (frames, 64)
    drv = engine.driving_coeffs(c1, src, opts)
    assert drv.shape == (frames, nets.coeff_nc)
    assert np.allclose(drv[:, :64], c1.exp * 1.5)
    if preprocess == "full":
        assert np.allclose(drv[:, 64:], src.semantics(73)[64:])     # still: source pose + crop
    with pytest.raises(ValueError, match="mapping"):
        engine.driving_coeffs(c1, src, SadTalkerOptions(preprocess="full" if preprocess != "full" else "crop"))
    with pytest.raises(ValueError, match=r"\(T, 80, 16\)"):
        list(engine.generate(face, mels[:, :40], None, opts))
