"""The real CLIP BPE tokenizer, built offline from the vocab that ships inside open_clip_torch.

open_clip_torch carries ``bpe_simple_vocab_16e6.txt.gz`` (OpenAI's original BPE merges). From it we
build the ``vocab.json`` / ``merges.txt`` pair that ``transformers.CLIPTokenizer`` reads, exactly as
OpenAI's CLIP does: 256 byte characters, the same with ``</w>``, one entry per merge, then the two
special tokens -> 49,408 entries. Nothing is downloaded; importing this module does nothing.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import tempfile
from pathlib import Path

VOCAB_SIZE = 49_408
NUM_MERGES = 49_152 - 256 - 2  # 48,894 merges
MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"


def bundled_bpe_path() -> Path:
    """Path of open_clip's bundled BPE file (found without importing open_clip, which needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{BPE_FILE_NAME} not found: install open_clip_torch (pip install --no-deps open_clip_torch)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{BPE_FILE_NAME} is missing from {path.parent}")
    return path


def _bytes_to_unicode() -> list[str]:
    """OpenAI's byte -> printable-unicode table, in its original (not sorted) order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(out_dir: Path) -> Path:
    """Write vocab.json, merges.txt and tokenizer configs for CLIPTokenizer into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bundled_bpe_path(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    byte_chars = _bytes_to_unicode()
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    config = {
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2),
        encoding="utf-8",
    )
    return out_dir


@functools.lru_cache(maxsize=1)
def _tokenizer_dir() -> Path:
    return write_tokenizer_files(Path(tempfile.mkdtemp(prefix="clip-tokenizer-")))


def load_clip_tokenizer():
    """A ``transformers.CLIPTokenizer`` identical to openai/clip-vit-large-patch14's, built offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(_tokenizer_dir()), local_files_only=True)
