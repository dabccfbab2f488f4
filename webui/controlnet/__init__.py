"""ControlNet: units as the sd-webui-controlnet extension has them, weight-free preprocessors,
loading of ControlNet files from models/ControlNet/, and running them through diffusers' ControlNet
pipelines over the loaded model's own components. No gradio here (the UI is webui/ui/controlnet.py).
Importing this package imports nothing heavy.
"""
