"""Talking-head benchmark: real-time factor at 256 and 512, peak RSS for 10 s vs 60 s clips.

    python benchmarks/talking_head_bench.py [--seconds 10] [--long 60] [--no-memory]
    python benchmarks/talking_head_bench.py --lipsync      # Pearson(mouth opening, energy), espeak-ng speech

Real-time factor = audio seconds / wall seconds, end to end (validation, face, audio,
coefficients, render, H.264 + AAC mux); >= 1.0 means faster than real time.  Peak RSS is
measured in a fresh subprocess per clip length, so the ratio shows whether memory grows
with the clip (it should stay ~1.0: frames are streamed).  Prints numbers, asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate (4 Hz) formant-shaped harmonic bursts with pauses; offline stand-in for speech."""
    from talking_head.audio import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    sig = sum(np.sin(h * phase) / h for h in range(1, 25))
    env = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    env *= (np.sin(2 * np.pi * 0.25 * t) > -0.6)  # pauses
    return (0.3 * sig * env / np.abs(sig).max()).astype(np.float32)


def run_once(seconds: float, size: int, preprocess: str, tmp: Path) -> dict:
    import skimage.data
    import soundfile as sf

    from talking_head.audio import SAMPLE_RATE
    from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest

    wav = tmp / f"speech_{seconds:g}.wav"
    sf.write(wav, speech_like(seconds), SAMPLE_RATE)
    pipe = TalkingHeadPipeline(outputs_dir=tmp)
    image = skimage.data.astronaut()
    # warm-up (imports, mediapipe graph) on a short clip, not counted
    short = tmp / "warm.wav"
    sf.write(short, speech_like(0.5), SAMPLE_RATE)
    pipe(TalkingHeadRequest(image=image, audio=short, size=size, preprocess=preprocess, output=tmp / "warm.mp4"))
    t0 = time.perf_counter()
    res = pipe(TalkingHeadRequest(image=image, audio=wav, size=size, preprocess=preprocess,
                                  output=tmp / f"out_{size}.mp4", max_audio_seconds=600))
    wall = time.perf_counter() - t0
    return {"size": size, "preprocess": preprocess, "audio_s": res.duration, "wall_s": round(wall, 3),
            "rtf": round(res.duration / wall, 2), "timings": {k: round(v, 3) for k, v in res.timings.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


SENTENCES = ("Hello, my name is Anna. Open your mouth wide and say aah.",
             "The quick brown fox jumps over the lazy dog, then rests in the sun.",
             "Speaking from a single photo, offline, on a small processor.")


def lipsync() -> None:
    """Pearson r between the mouth opening measured on the output video (the pipeline's own face
    mesh on every decoded frame) and the speech energy, for three espeak-ng sentences (typed text
    through the pipeline), still head, no blinks, 256 and 512."""
    import imageio_ffmpeg
    import skimage.data

    from talking_head import mesh
    from talking_head.audio import frame_features
    from talking_head.face import FaceLandmarker
    from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest
    from talking_head.tts import SpeechRequest, synthesize

    landmarker = FaceLandmarker()
    with tempfile.TemporaryDirectory(prefix="th_lipsync_") as d:
        pipe = TalkingHeadPipeline(outputs_dir=d)
        for size in (256, 512):
            for text in SENTENCES:
                res = pipe(TalkingHeadRequest(image=skimage.data.astronaut(), text=text, size=size, still=True,
                                              blink=False, output=Path(d) / "l.mp4"))
                gen = imageio_ffmpeg.read_frames(str(res.video_path))
                w, h = next(gen)["size"]
                opening = [mesh.mouth_opening(landmarker.detect(np.frombuffer(b, np.uint8).reshape(h, w, 3)).landmarks)
                           for b in gen]
                energy = frame_features(synthesize(SpeechRequest(text))).energy
                r = np.corrcoef(opening, energy[: len(opening)])[0, 1]
                print(f"{size} r = {r:.3f}  ({res.duration:.1f} s: {text[:40]}...)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--long", type=float, default=60.0)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--lipsync", action="store_true", help="measure lip sync instead of speed")
    ap.add_argument("--child", nargs=3, metavar=("SECONDS", "SIZE", "PREPROCESS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lipsync:
        lipsync()
        return
    with tempfile.TemporaryDirectory(prefix="th_bench_") as d:
        tmp = Path(d)
        if args.child:
            print(json.dumps(run_once(float(args.child[0]), int(args.child[1]), args.child[2], tmp)))
            return

        def child(seconds: float, size: int, preprocess: str = "crop") -> dict:
            out = subprocess.run([sys.executable, __file__, "--child", str(seconds), str(size), preprocess],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        for size, mode in ((256, "crop"), (512, "crop"), (256, "full")):
            r = child(args.seconds, size, mode)
            print(f"{size:>4} {mode:<5} {r['audio_s']:.1f} s audio in {r['wall_s']:.2f} s -> "
                  f"real-time factor {r['rtf']:.2f}x   stages {r['timings']}")
        if not args.no_memory:
            a, b = child(args.seconds, 256), child(args.long, 256)
            print(f"peak RSS 256 crop: {args.seconds:g} s clip {a['peak_rss_mb']} MB, {args.long:g} s clip "
                  f"{b['peak_rss_mb']} MB, ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.2f} "
                  f"(RTF {a['rtf']}x / {b['rtf']}x)")


if __name__ == "__main__":
    main()
