"""The scripting CLI: `app.py txt2img|img2img|inpaint` on the tiny model; errors exit non-zero with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webui.cli import parse_args, parse_auth

REPO = Path(__file__).resolve().parent.parent


def run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_server_flags():
    parsed = parse_args(["--listen", "--port", "9000", "--auth", "a:b,c:d"])
    assert parsed.command == "serve"
    assert parsed.config.server.host == "0.0.0.0" and parsed.config.server.port == 9000
    assert parsed.config.server.auth == (("a", "b"), ("c", "d"))
    assert parse_args([]).config.server.host == "127.0.0.1"


def test_auth_file(tmp_path):
    f = tmp_path / "logins.txt"
    f.write_text("# team\nalice:pw1\nbob:pw2,carol:pw3\n")
    assert parse_auth(None, f) == (("alice", "pw1"), ("bob", "pw2"), ("carol", "pw3"))
    with pytest.raises(ValueError, match="user:password"):
        parse_auth("nocolon", None)


def test_perf_flags_reach_config():
    cfg = parse_args(["txt2img", "--prompt", "x", "--output", "o.png", "--vae-tiling", "--attention", "sliced",
                      "--memory", "model-offload", "--precision", "fp32", "--no-tf32"]).config.perf
    assert cfg.vae_tiling and cfg.attention == "sliced" and cfg.memory.value == "model-offload"
    assert cfg.precision == "fp32" and cfg.tf32 is False


def test_cli_txt2img_img2img_inpaint(tiny_models_dir, tmp_path):
    common = ["--models-dir", str(tiny_models_dir), "--steps", "3", "--width", "64", "--height", "64", "--seed", "5"]
    out = tmp_path / "t.png"
    r = run_app("txt2img", "--prompt", "a red circle", "--output", str(out), *common)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "Steps: 3" in r.stdout and "Seed: 5" in r.stdout
    saved = Image.open(out)
    assert saved.size == (64, 64) and "Seed: 5" in saved.info["parameters"]

    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((32, 32), 255, np.uint8), 16)).save(mask)
    out2 = tmp_path / "i.png"
    r = run_app("inpaint", "--prompt", "a green square", "--image", str(out), "--mask", str(mask),
                "--output", str(out2), *common)
    assert r.returncode == 0, r.stderr
    assert Image.open(out2).size == (64, 64)
    r = run_app("img2img", "--prompt", "blue", "--image", str(out), "--strength", "0.5", "--output",
                str(tmp_path / "j.png"), *common)
    assert r.returncode == 0, r.stderr


def test_cli_errors_exit_nonzero(tiny_models_dir, tmp_path):
    r = run_app("txt2img", "--prompt", "x", "--width", "65", "--output", str(tmp_path / "x.png"),
                "--models-dir", str(tiny_models_dir))
    assert r.returncode != 0 and "65" in r.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    r = run_app("img2img", "--prompt", "x", "--image", str(bad), "--output", str(tmp_path / "y.png"),
                "--models-dir", str(tiny_models_dir))
    assert r.returncode != 0 and "not a readable image" in r.stderr
    r = run_app("txt2img", "--prompt", "x", "--sampler", "Bogus", "--output", str(tmp_path / "z.png"),
                "--models-dir", str(tiny_models_dir), "--width", "64", "--height", "64")
    assert r.returncode != 0 and "Bogus" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_cli_talk(tmp_path):
    from skimage.data import astronaut

    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hi."], check=True)
    out = tmp_path / "talk.mp4"
    r = run_app("talk", "--image", str(face), "--audio", str(speech), "--output", str(out), "--still",
                "--preprocess", "resize", "--checkpoints-dir", str(tmp_path / "none"))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "render:" in r.stdout and out.stat().st_size > 1000
    r = run_app("talk", "--image", str(speech), "--audio", str(face), "--output", str(tmp_path / "bad.mp4"))
    assert r.returncode != 0 and "error:" in r.stderr
    assert not (tmp_path / "bad.mp4").exists()
    # typed text instead of a speech file; the speech is kept beside the video
    out = tmp_path / "typed.mp4"
    r = run_app("talk", "--image", str(face), "--text", "Hello there.", "--voice", "en-us", "--rate", "200",
                "--pitch", "40", "--output", str(out), "--still", "--engine", "default")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 1000 and str(out.with_suffix(".wav")) in r.stdout
    r = run_app("talk", "--image", str(face), "--text", " ", "--output", str(tmp_path / "empty.mp4"))
    assert r.returncode != 0 and "text is empty" in r.stderr


def test_cli_talk_batch_reference_and_failures(tmp_path):
    """Two portraits (one without a face) x one speech file, with a reference pose video:
    one video per pair, the failing pair reported, exit code 1, the good video written."""
    from skimage.data import astronaut

    faces = tmp_path / "faces"
    faces.mkdir()
    Image.fromarray(astronaut()).save(faces / "a_astronaut.png")
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(faces / "b_wall.png")
    speech = tmp_path / "hi.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hi."], check=True)
    single = tmp_path / "ref.mp4"
    r = run_app("talk", "--image", str(faces / "a_astronaut.png"), "--audio", str(speech), "--output", str(single),
                "--checkpoints-dir", str(tmp_path / "none"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "batch"
    r = run_app("talk", "--image", str(faces), "--audio", str(speech), "--output", str(out),
                "--ref-pose", str(single), "--checkpoints-dir", str(tmp_path / "none"))
    assert r.returncode == 1, r.stderr
    assert (out / "a_astronaut__hi.mp4").stat().st_size > 1000
    assert not (out / "b_wall__hi.mp4").exists()
    assert "FAILED" in r.stdout and "b_wall.png" in r.stdout and "no face found" in r.stdout
    assert "1 of 2 videos" in r.stdout
    r = run_app("talk", "--image", str(faces), "--audio", str(speech), "--output", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "must be a folder" in r.stderr
    r = run_app("talk", "--image", str(faces / "a_astronaut.png"), "--audio", str(speech), "--output", str(out))
    assert r.returncode == 2 and "is a folder" in r.stderr
    r = run_app("talk", "--image", str(faces), "--audio", str(speech), "--output", str(out), "--pairing", "zip")
    assert r.returncode == 2 and "as many images" in r.stderr
    # a typed script spoken by every portrait of the folder
    typed = tmp_path / "typed"
    r = run_app("talk", "--image", str(faces), "--text", "Hi.", "--output", str(typed), "--engine", "default")
    assert r.returncode == 1 and (typed / "a_astronaut__text.mp4").stat().st_size > 1000
    assert (typed / "a_astronaut__text.wav").exists() and "1 of 2 videos" in r.stdout


def test_admin_and_body_limit_flags():
    parsed = parse_args(["--auth", "alice:pw,bob:pw2", "--admin", "alice", "--max-body-mb", "8"])
    assert parsed.config.server.admins == ("alice",)
    assert parsed.config.server.max_body_bytes == 8 * 2**20
    assert parse_args([]).config.server.max_body_bytes == 64 * 2**20
    with pytest.raises(SystemExit):
        parse_args(["--auth", "alice:pw", "--admin", "mallory"])  # not a login


def test_cli_option_errors_are_clear(tmp_path):
    """--vae is not an ambiguous prefix; bad sizes and outputs are argparse errors, not tracebacks."""
    parsed = parse_args(["txt2img", "--prompt", "x", "--output", "o.png", "--vae", "v.safetensors", "--vae-tiling"])
    assert parsed.args.vae == "v.safetensors" and parsed.config.perf.vae_tiling
    assert parse_args(["txt2img", "--prompt", "x", "--output", "o.png", "--width", "64"]).args.width == 64
    bad = [["--width", "0"], ["--height", "65"], ["--width", "4096"], ["--output", str(tmp_path)],
           ["--output", str(tmp_path / "a.jpg")], ["--vae-til"]]
    for extra in bad:
        argv = ["txt2img", "--prompt", "x", "--output", str(tmp_path / "o.png"), *extra]
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 2, extra


def test_cli_talk_help_and_bomb(tmp_path):
    """Every talk option has a help text; a decompression-bomb portrait is a one-line error."""
    from webui.cli import build_parser

    talk = build_parser()._subparsers._group_actions[0].choices["talk"]
    missing = [a.option_strings for a in talk._actions if a.option_strings and not a.help]
    assert not missing
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(bomb)  # 400 Mpx, a few hundred KB on disk
    speech = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hi."], check=True)
    r = run_app("talk", "--image", str(bomb), "--audio", str(speech), "--output", str(tmp_path / "t.mp4"),
                "--checkpoints-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and "too large" in r.stderr and "Traceback" not in r.stderr


def test_the_first_page_is_built_without_the_heavy_engines(tmp_path):
    """Page load: parsing the CLI and building the whole app (UI + API) imports no torch, diffusers,
    transformers, mediapipe or OpenCV; they load with the first job that needs them."""
    code = f"""
import sys
from webui.cli import parse_args
from webui.server import build_app
from webui.services import Services
parsed = parse_args(["--outputs-dir", {str(tmp_path / "out")!r}])
app = build_app(Services(parsed.config))
heavy = [m for m in ("torch", "diffusers", "transformers", "mediapipe", "cv2") if m in sys.modules]
print("HEAVY", heavy)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr[-2000:]


def test_cli_xyz_plot_grid(tiny_models_dir, tmp_path):
    out = tmp_path / "grid.png"
    r = run_app("--models-dir", str(tiny_models_dir), "--outputs-dir", str(tmp_path / "o"), "txt2img",
                "--prompt", "a red circle", "--seed", "3", "--steps", "2", "--width", "64", "--height", "64",
                "--xyz-x", "Steps:1,2", "--xyz-y", "CFG Scale:3,7", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as grid:
        assert grid.width > 2 * 64 and grid.height > 2 * 64  # 2x2 cells plus the legend
    assert "X Type: Steps" in r.stdout and "Y Type: CFG Scale" in r.stdout
    bad = run_app("--models-dir", str(tiny_models_dir), "txt2img", "--prompt", "x", "--xyz-x", "Steps",
                  "--output", str(out))
    assert bad.returncode != 0 and "TYPE:VALUES" in bad.stderr
