import os

# Tests never touch the network: the hub is off for every library that might look at it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.app_fixtures import live_server, tiny_models_dir  # noqa: E402,F401  (shared fixtures)
