"""``python -m webui.train ...`` (the same as ``python app.py train ...``)."""

import sys

from webui.train import main

sys.exit(main(sys.argv[1:]))
