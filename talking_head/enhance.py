"""Stage 5 (opt-in): GFPGAN v1.4 face restoration on the rendered face crops.

Nothing is ever downloaded.  The ``gfpgan`` package is imported lazily (it is not a core
dependency: it needs torchvision), and its weights are looked up in::

    models/GFPGAN/                    (A1111 layout)
    checkpoints/gfpgan/weights/       (SadTalker layout)

Each folder must hold ``GFPGANv1.4.pth`` plus facexlib's ``detection_Resnet50_Final.pth`` and
``parsing_parsenet.pth``.  ``GFPGANer`` would download the latter two into ``./gfpgan/weights``
on construction, so we assemble the restorer ourselves and hand facexlib's
``FaceRestoreHelper`` the real folder as ``model_rootpath`` (facexlib only downloads a file
that is not already there).
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

GFPGAN_FILE = "GFPGANv1.4.pth"
HELPER_FILES = ("detection_Resnet50_Final.pth", "parsing_parsenet.pth")
SECONDS_PER_FACE_512 = 13.0  # the known figure for 2 CPU cores (not re-measured here: no real weights)
INSTALL_HINT = ("pip install torch==2.14.1 torchvision==0.29.1 && "
                "pip install --no-build-isolation gfpgan basicsr facexlib")
BATCH = 4


def weight_dirs(paths: Any = None) -> list[Path]:
    """Candidate weight folders.  ``paths``: None (current dir), a repo root, or an object with
    ``models_dir`` / ``checkpoints_dir`` (webui.config.PathsConfig)."""
    if paths is None or isinstance(paths, (str, Path)):
        root = Path(paths or ".")
        return [root / "models" / "GFPGAN", root / "checkpoints" / "gfpgan" / "weights"]
    return [Path(paths.models_dir) / "GFPGAN", Path(paths.checkpoints_dir) / "gfpgan" / "weights"]


def find_weights(paths: Any = None) -> Path:
    """Folder holding all three files; FileNotFoundError naming what goes where otherwise."""
    dirs = weight_dirs(paths)
    for d in dirs:
        if (d / GFPGAN_FILE).is_file():
            missing = [f for f in HELPER_FILES if not (d / f).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"GFPGAN: found {d / GFPGAN_FILE} but {', '.join(missing)} missing: put "
                    f"{' and '.join(missing)} into {d}/ (they come with SadTalker's gfpgan/weights)")
            return d
    raise FileNotFoundError(
        f"GFPGAN weights not found: put {GFPGAN_FILE} (and {HELPER_FILES[0]}, {HELPER_FILES[1]}) "
        f"into {dirs[0]}/ or {dirs[1]}/ -- nothing is downloaded at run time")


def _torchvision_compat() -> None:
    """basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, removed in
    torchvision 0.17; alias it to ``torchvision.transforms.functional`` (which has the same
    ``rgb_to_grayscale``) before basicsr/gfpgan are imported."""
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional as functional
    except ImportError:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision)
    except ImportError:
        sys.modules[name] = functional


def _import_gfpgan():
    _torchvision_compat()
    try:
        from facexlib.utils.face_restoration_helper import FaceRestoreHelper
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    except ImportError as exc:
        raise RuntimeError(f"GFPGAN needs the gfpgan package ({exc}); install it with: {INSTALL_HINT}") from exc
    return GFPGANv1Clean, FaceRestoreHelper


def gfpgan_status(paths: Any = None) -> tuple[bool, str]:
    """(available, message) for the UI checkbox; never raises, never imports torch eagerly."""
    try:
        folder = find_weights(paths)
    except FileNotFoundError as exc:
        return False, str(exc)
    import importlib.util

    if importlib.util.find_spec("gfpgan") is None or importlib.util.find_spec("facexlib") is None:
        return False, f"GFPGAN weights found in {folder}, but the gfpgan package is missing: {INSTALL_HINT}"
    return True, (f"GFPGAN v1.4 from {folder}; slow on CPU: about {SECONDS_PER_FACE_512:.0f} s "
                  f"per frame at 512 px (a 10 s clip = 250 frames)")


class GFPGANEnhancer:
    """Loads GFPGAN once; ``enhance_frames`` restores the face in each (size, size) crop."""

    def __init__(self, paths: Any = None, device: str = "cpu") -> None:
        folder = find_weights(paths)
        GFPGANv1Clean, FaceRestoreHelper = _import_gfpgan()
        import torch

        self.torch = torch
        self.device = torch.device(device)
        net = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                            fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True,
                            narrow=1, sft_half=True)
        state = torch.load(folder / GFPGAN_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(state["params_ema"] if "params_ema" in state else state["params"], strict=True)
        self.net = net.eval().to(self.device)
        self.helper = FaceRestoreHelper(1, face_size=512, crop_ratio=(1, 1), det_model="retinaface_resnet50",
                                        save_ext="png", use_parse=True, device=self.device,
                                        model_rootpath=str(folder))

    def _restore_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        import cv2

        torch = self.torch
        crops, metas = [], []
        for frame in frames:
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            self.helper.clean_all()
            self.helper.read_image(bgr)
            self.helper.get_face_landmarks_5(only_center_face=True, eye_dist_threshold=5)
            self.helper.align_warp_face()
            if not self.helper.cropped_faces:
                metas.append(None)
                continue
            crops.append(self.helper.cropped_faces[0])
            metas.append((bgr, [m.copy() for m in self.helper.affine_matrices]))
        restored: list[np.ndarray] = []
        if crops:
            batch = np.stack(crops).astype(np.float32)[..., ::-1] / 255.0  # BGR -> RGB, [0, 1]
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
            # contiguous NCHW: a permuted (channels-last) input propagates through the convs and
            # GFPGAN's final ``feat.view`` fails on it
            x = ((x - 0.5) / 0.5).contiguous().to(self.device)
            with torch.no_grad():
                y = self.net(x, return_rgb=False)[0]
            y = ((y.clamp(-1, 1) + 1) / 2 * 255).round().permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
            restored = [np.ascontiguousarray(im[..., ::-1]) for im in y]  # RGB -> BGR
        out, k = [], 0
        for frame, meta in zip(frames, metas):
            if meta is None:
                out.append(frame)
                continue
            bgr, affines = meta
            self.helper.clean_all()
            self.helper.read_image(bgr)
            self.helper.affine_matrices = affines
            self.helper.add_restored_face(restored[k])
            k += 1
            self.helper.get_inverse_affine(None)
            result = self.helper.paste_faces_to_input_image()
            out.append(cv2.cvtColor(result, cv2.COLOR_BGR2RGB))
        return out

    def enhance_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Streams frames through in batches of BATCH; order and count are preserved."""
        buf: list[np.ndarray] = []
        for frame in frames:
            buf.append(frame)
            if len(buf) == BATCH:
                yield from self._restore_batch(buf)
                buf = []
        if buf:
            yield from self._restore_batch(buf)
