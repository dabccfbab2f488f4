"""Talking-head batches: folder expansion, pairing, one video per pair, failures reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from talking_head.batch import MAX_BATCH, expand_inputs, output_names, pair_inputs, run_batch
from talking_head.pipeline import TalkingHeadRequest


def touch(p: Path) -> Path:
    p.write_bytes(b"x")
    return p


def test_expand_and_pair(tmp_path):
    d = tmp_path / "faces"
    d.mkdir()
    b, a = touch(d / "b.png"), touch(d / "a.jpg")
    touch(d / "notes.txt")
    s1, s2 = touch(tmp_path / "s1.wav"), touch(tmp_path / "s2.mp3")
    assert expand_inputs([d], "image") == [a, b]                     # sorted, non-images skipped
    assert expand_inputs([s2, s1], "audio") == [s2, s1]              # files keep their order
    with pytest.raises(ValueError, match="holds no audio"):
        expand_inputs([d], "audio")
    with pytest.raises(ValueError, match="does not exist"):
        expand_inputs([tmp_path / "nope.png"], "image")
    assert pair_inputs([a, b], [s1, s2]) == [(a, s1), (a, s2), (b, s1), (b, s2)]
    assert pair_inputs([a, b], [s1, s2], "zip") == [(a, s1), (b, s2)]
    with pytest.raises(ValueError, match="as many images"):
        pair_inputs([a, b], [s1], "zip")
    with pytest.raises(ValueError, match="limit"):
        pair_inputs([a] * 9, [s1] * 8)
    assert MAX_BATCH == 64
    names = output_names([(a, s1), (a, s1), (b, s2)], tmp_path)
    assert [n.name for n in names] == ["a__s1.mp4", "a__s1-2.mp4", "b__s2.mp4"]


def test_run_batch_goes_on_after_a_failure_and_reports_progress(tmp_path):
    calls, events = [], []

    def fake_pipeline(request, progress):
        calls.append((request.image.name, request.audio.name, request.output.name, request.size))
        progress("render", 0.5)
        if request.image.name == "bad.png":
            raise ValueError("no face found in image='bad.png'")
        request.output.write_bytes(b"mp4")
        return type("R", (), {"video_path": request.output, "frames": 10})()

    pairs = [(Path("good.png"), Path("s.wav")), (Path("bad.png"), Path("s.wav")), (Path("good2.png"), Path("s.wav"))]
    template = TalkingHeadRequest(image="x.png", audio="y.wav", size=512)
    stop_after = {"n": 99}
    res = run_batch(fake_pipeline, template, pairs, tmp_path / "out",
                    progress=lambda i, n, stage, f: events.append((i, n, stage, f)),
                    should_stop=lambda: len(calls) >= stop_after["n"])
    assert [c[0] for c in calls] == ["good.png", "bad.png", "good2.png"] and all(c[3] == 512 for c in calls)
    assert [i.ok for i in res.items] == [True, False, True]
    assert "no face found" in res.failed[0].error and len(res.done) == 2
    assert (tmp_path / "out" / "good__s.mp4").exists()
    assert (1, 3, "render", 0.5) in events and events[-1] == (2, 3, "done", 1.0)
    calls.clear()
    stop_after["n"] = 1
    res = run_batch(fake_pipeline, template, pairs, tmp_path / "out2", should_stop=lambda: len(calls) >= 1)
    assert len(calls) == 1 and [i.ok for i in res.items] == [True, False, False]
    assert "stopped" in res.items[2].error
    with pytest.raises(ValueError, match="must be a folder"):
        run_batch(fake_pipeline, template, pairs, touch(tmp_path / "file.mp4"))
