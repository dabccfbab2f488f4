"""The one entry point: parse the CLI -> config -> build services -> launch the UI (or run a CLI command).

    python app.py                       # web app on http://127.0.0.1:7860
    python app.py --listen --auth u:p   # shared on the LAN behind a login
    python app.py txt2img --prompt "a red circle" --output out.png
    python app.py talk --image face.png --audio speech.wav --output talk.mp4
    python app.py train --help
    python app.py upscale --image in.png --upscaler StudioCompact-x4 --scale 4 --output out.png
    python app.py train-upscaler        # retrain the embedded upscalers (models/RealESRGAN/StudioCompact-x*)
    python app.py doctor                # this machine against the requirements, recommended settings
    python app.py train-controlnet      # the demo model's sketch ControlNet (models/ControlNet/)
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    # Offline first: no library may reach a model hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from webui.cli import parse_args

    parsed = parse_args(sys.argv[1:] if argv is None else argv)
    if parsed.command == "train":
        from webui.train import main as train_main

        return train_main(list(parsed.rest))
    if parsed.command == "train-upscaler":
        from webui.upscale.train import main as train_upscaler_main

        return train_upscaler_main(list(parsed.rest))
    if parsed.command == "train-controlnet":
        from webui.train.controlnet import main as train_controlnet_main

        return train_controlnet_main(list(parsed.rest))

    if parsed.command == "doctor":
        from webui.doctor import main as doctor_main

        return doctor_main(parsed.config.paths)

    from webui.services import Services

    services = Services(parsed.config)
    if parsed.command == "serve":
        from webui.server import serve

        serve(services)
        return 0

    from webui.commands import run_command

    return run_command(services, parsed.command, parsed.args)


if __name__ == "__main__":
    sys.exit(main())
