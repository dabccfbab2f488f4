"""GFPGAN through the real ``gfpgan``/``facexlib``/``basicsr`` packages, with random weights saved in
the official file layouts. Those packages need torchvision (the large ``torch==2.14.1
torchvision==0.29.1`` pair), which the default install leaves out, so this test runs only where
they are installed::

    pip install torch==2.14.1 torchvision==0.29.1 && pip install --no-build-isolation gfpgan basicsr facexlib
"""

from __future__ import annotations

import numpy as np
import pytest

import importlib.util

# find_spec, not importorskip: importing gfpgan before enhance's compatibility alias fails
if any(importlib.util.find_spec(m) is None for m in ("torchvision", "gfpgan", "facexlib")):
    pytest.skip("gfpgan, facexlib and torchvision are not installed", allow_module_level=True)


def test_gfpgan_enhancer_loads_official_files_and_restores_the_face(tmp_path):
    import torch

    from talking_head import enhance

    enhance._torchvision_compat()  # basicsr 1.4.2 imports a module modern torchvision removed
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    folder = tmp_path / "checkpoints" / "gfpgan" / "weights"  # SadTalker's place
    folder.mkdir(parents=True)
    assert not enhance.gfpgan_status(tmp_path)[0]
    torch.manual_seed(0)
    net = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                        fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    torch.save({"params_ema": net.state_dict()}, folder / "GFPGANv1.4.pth")
    assert "detection_Resnet50_Final.pth" in enhance.gfpgan_status(tmp_path)[1]  # names the missing file
    torch.save(RetinaFace(network_name="resnet50", half=False).state_dict(), folder / "detection_Resnet50_Final.pth")
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    ok, message = enhance.gfpgan_status(tmp_path)
    assert ok, message

    enhancer = enhance.GFPGANEnhancer(tmp_path)  # strict load; would raise on a key mismatch
    from skimage import data
    import cv2

    img = cv2.resize(data.astronaut(), (512, 512))
    points = np.array([[185, 160], [265, 150], [230, 205], [195, 250], [262, 243]], np.float32)

    def detect(**_):  # random detector weights find no face: hand the helper the astronaut's 5 points
        enhancer.helper.all_landmarks_5 = [points.copy()]
        enhancer.helper.det_faces = [np.array([150, 100, 300, 300, 0.99])]
        return 1

    enhancer.helper.get_face_landmarks_5 = detect
    out = list(enhancer.enhance_frames(iter([img.copy(), img.copy()])))
    assert len(out) == 2 and out[0].shape == img.shape and out[0].dtype == np.uint8
    diff = np.abs(out[0].astype(int) - img.astype(int)).mean(axis=2)
    assert (diff[140:280, 170:280] > 2).mean() > 0.5  # the face was replaced by the network's output
    assert (diff[-60:, -60:] > 2).mean() < 0.05  # far from the face nothing changed
