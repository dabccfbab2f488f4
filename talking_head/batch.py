"""Batch: several portraits and/or speech files in one job, one video per (portrait, audio) pair.

    pairs = pair_inputs(expand_inputs(images, "image"), expand_inputs(audios, "audio"))
    result = run_batch(pipeline, template_request, pairs, out_dir, progress=...)

Pairing: ``product`` (default) makes every portrait speak every audio (1 portrait x 3 audios =
3 videos; 2 x 2 = 4); ``zip`` pairs them in order and needs equal counts. Folders are expanded to
their image / audio files, sorted by name. A pair that fails (no face, bad audio, ...) is reported
with its error and the others go on. ``should_stop`` is checked between videos.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac", ".aac")
PAIRINGS = ("product", "zip")
MAX_BATCH = 64  # videos per job

BatchProgress = Callable[[int, int, str, float], None]  # (video index, videos, stage, fraction)


@dataclass(frozen=True, eq=False)
class BatchItem:
    """One (portrait, audio) pair and what became of it: ``result`` or ``error``."""

    index: int
    image: Path
    audio: Path | None        # None: the template's typed text is spoken
    output: Path
    result: Any = None        # TalkingHeadResult when it worked
    error: str | None = None  # the message when it failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None


@dataclass(frozen=True, eq=False)
class BatchResult:
    items: tuple[BatchItem, ...]

    @property
    def done(self) -> list[BatchItem]:
        return [i for i in self.items if i.ok]

    @property
    def failed(self) -> list[BatchItem]:
        return [i for i in self.items if not i.ok]


def expand_inputs(paths: Sequence[str | Path], kind: str) -> list[Path]:
    """Files as given, folders as their ``kind`` ('image' | 'audio') files sorted by name."""
    if kind not in ("image", "audio"):
        raise ValueError(f"kind={kind!r} must be 'image' or 'audio'")
    exts = IMAGE_EXTENSIONS if kind == "image" else AUDIO_EXTENSIONS
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise ValueError(f"folder {str(p)!r} holds no {kind} files ({', '.join(exts)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{kind}={str(p)!r} does not exist")
    if not out:
        raise ValueError(f"no {kind} given")
    return out


def pair_inputs(images: Sequence[Path], audios: Sequence[Path], pairing: str = "product") -> list[tuple[Path, Path]]:
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing={pairing!r} must be one of {PAIRINGS}")
    if not images or not audios:
        raise ValueError("a batch needs at least one image and one audio file")
    if pairing == "zip":
        if len(images) != len(audios):
            raise ValueError(f"pairing='zip' needs as many images as audio files, got {len(images)} and {len(audios)}")
        pairs = list(zip(images, audios))
    else:
        pairs = list(itertools.product(images, audios))
    if len(pairs) > MAX_BATCH:
        raise ValueError(f"the batch makes {len(pairs)} videos, more than the limit of {MAX_BATCH}")
    return [(Path(i), Path(a)) for i, a in pairs]


def output_names(pairs: Sequence[tuple[Path, Path]], out_dir: Path) -> list[Path]:
    """``<image stem>__<audio stem>.mp4`` in out_dir, made unique with ``-2``, ``-3`` ..."""
    seen: dict[str, int] = {}
    names = []
    for image, audio in pairs:
        stem = f"{image.stem}__{audio.stem if audio is not None else 'text'}"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        names.append(out_dir / (f"{stem}.mp4" if n == 1 else f"{stem}-{n}.mp4"))
    return names


def run_batch(pipeline, template, pairs: Sequence[tuple[Path, Path]], out_dir: str | Path,
              progress: BatchProgress | None = None, should_stop: Callable[[], bool] | None = None) -> BatchResult:
    """Run ``pipeline`` (a TalkingHeadPipeline or any callable(request, progress=)) on every pair
    with the options of ``template`` (a TalkingHeadRequest; its image/audio/output are replaced)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output={str(out_dir)!r} must be a folder for a batch")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda i, n, stage, frac: None)
    items: list[BatchItem] = []
    n = len(pairs)
    for i, ((image, audio), output) in enumerate(zip(pairs, output_names(pairs, out_dir))):
        if should_stop is not None and should_stop():
            items.append(BatchItem(i, image, audio, output, error="not run: the batch was stopped"))
            continue
        request = replace(template, image=image, audio=audio, output=output)
        report(i, n, "start", 0.0)
        try:
            result = pipeline(request, progress=lambda stage, frac, i=i: report(i, n, stage, frac))
        except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
            items.append(BatchItem(i, image, audio, output, error=str(exc)))
        else:
            items.append(BatchItem(i, image, audio, output, result=result))
        report(i, n, "done", 1.0)
    return BatchResult(items=tuple(items))
