"""The GPU farm: one studio across several GPUs and PCs, on Ray (``python app.py --cluster auto``).

``pool`` (the workers: one Ray actor per GPU, or N CPU workers per node; nodes that join get workers),
``worker`` (the actor: loads its models once, returns PNG/MP4 bytes), ``dispatch`` (the head's job runners:
split a batch across free workers, retry a dead worker's piece elsewhere). Nothing here imports Ray at
import time; without ``--cluster`` none of it is used. See docs/farm.md.
"""
