"""Sample frames of the weight-free talking head, cut from a real output MP4 (docs/talking-head-frames.png).

    python scripts/talking_head_frames.py [--portrait astronaut|hopper|lfw] [--size 512]
                                          [--out docs/talking-head-frames.png] [--frames-dir DIR]

Speaks a sentence with espeak-ng (offline), renders it through the pipeline, decodes the MP4 with
the bundled ffmpeg and picks five frames from the clip's own coefficients: mouth closed (silence),
mouth open (loudest), half blink, full blink, head turned.  ``--frames-dir`` also writes every picked
frame as a full-size PNG to look at.  Portraits: scikit-image's astronaut (teeth showing),
matplotlib's Grace Hopper photo (mouth closed), an LFW face from scikit-image's lfw_subset
(25 x 25 grey, upscaled: a low-resolution, grey source).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TEXT = "Hello! I am speaking from a single photo. Everything runs offline, on the processor."


def portrait(name: str) -> np.ndarray:
    import skimage.data

    if name == "astronaut":
        return skimage.data.astronaut()
    if name == "hopper":
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    if name == "lfw":
        import cv2

        face = (skimage.data.lfw_subset()[0] * 255).astype(np.uint8)
        return np.repeat(cv2.resize(face, (250, 250), interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)
    raise ValueError(f"portrait={name!r} must be astronaut, hopper or lfw")


def decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    """All frames of the MP4, (T, H, W, 3) uint8, decoded by the bundled ffmpeg binary."""
    from talking_head.video import ffmpeg_exe

    w, h = size
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:1"], stdout=subprocess.PIPE, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def pick(coeffs) -> dict[str, int]:
    """Frame index per label from the clip's coefficients."""
    jaw, blink, yaw = coeffs.jaw_open, np.maximum(coeffs.blink_right, coeffs.blink_left), np.abs(coeffs.yaw)
    calm = (blink == 0) & (yaw < 4)
    idx = np.arange(len(jaw))
    out = {"mouth closed": int(idx[calm][np.argmin(jaw[calm] + 0.02 * yaw[calm])]),
           "mouth open": int(idx[calm][np.argmax(jaw[calm])])}
    half = np.flatnonzero(np.isclose(blink, 0.5))
    full = np.flatnonzero(np.isclose(blink, 1.0))
    if len(half):
        out["half blink"] = int(half[0])
    if len(full):
        out["blink"] = int(full[0])
    open_eyes = blink == 0
    out["head turned"] = int(idx[open_eyes][np.argmax(yaw[open_eyes])])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--portrait", default="astronaut")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pose-style", type=int, default=31)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--preprocess", default=None, help="default: crop (resize for the tight lfw face)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "talking-head-frames.png")
    ap.add_argument("--frames-dir", type=Path)
    args = ap.parse_args()
    import cv2
    from PIL import Image

    from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest
    from talking_head.video import probe

    with tempfile.TemporaryDirectory(prefix="th_frames_") as d:
        pipe = TalkingHeadPipeline(outputs_dir=d)
        preprocess = args.preprocess or ("resize" if args.portrait == "lfw" else "crop")
        res = pipe(TalkingHeadRequest(image=portrait(args.portrait), text=TEXT, voice="en", size=args.size,
                                      preprocess=preprocess,
                                      pose_style=args.pose_style, seed=args.seed, output=Path(d) / "clip.mp4"))
        frames = decode(res.video_path, probe(res.video_path)["video"])
    chosen = pick(res.coeffs)
    tiles = []
    for label, i in chosen.items():
        frame = frames[i]
        if args.frames_dir:
            args.frames_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(args.frames_dir / f"{args.portrait}_{i:03d}_{label.replace(' ', '_')}.png")
        yaw = float(res.coeffs.yaw[i])
        text = f"{label} ({yaw:+.0f} deg yaw)" if label == "head turned" else label
        bar = np.full((36, frame.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, text, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        tiles.append(np.concatenate([frame, bar], 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, 1)).save(args.out, optimize=True)
    print(args.out, {k: int(v) for k, v in chosen.items()}, f"{res.duration:.1f} s clip")


if __name__ == "__main__":
    main()
