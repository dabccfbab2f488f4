"""The GPU farm: one studio across several GPUs and PCs, on Ray (``python app.py --cluster auto``).

``pool`` (the workers: one Ray actor per GPU, or N CPU workers per node; nodes that join get workers),
``worker`` (the actor: loads its models once, returns PNG/MP4 bytes), ``dispatch`` (the head's job runners:
split a batch across free workers, retry a dead worker's piece elsewhere). Nothing here imports Ray at
import time; without ``--cluster`` none of it is used. See docs/farm.md.
"""

from typing import Any

TABLE_COLUMNS = ("worker", "node", "device", "VRAM", "RAM", "loaded model", "current job", "jobs done", "state")


def workers_report(services: Any) -> dict[str, Any]:
    """``GET /sdapi/v1/workers`` and the Workers panel: {"cluster": bool, "workers": [one dict per worker]}."""
    farm = services.farm if services.config.cluster.enabled else None
    return {"cluster": farm is not None, "address": services.config.cluster.address,
            "workers": farm.status() if farm is not None else []}


def _gib(usage: Any) -> str:
    if not usage:
        return "—"
    return f"{usage['used'] / 2**30:.1f} / {usage['total'] / 2**30:.1f} GiB"


def workers_table(report: dict[str, Any]) -> list[list[Any]]:
    """The report as rows of TABLE_COLUMNS (for the Settings panel)."""
    rows = []
    for w in report["workers"]:
        state = w["state"] + (f" ({w['error']})" if w.get("error") else "")
        rows.append([w["name"], w["node"], w["device"], _gib(w.get("vram")), _gib(w.get("ram")),
                     w.get("loaded_model") or "", w.get("current_job") or "", w["jobs_done"], state])
    return rows
