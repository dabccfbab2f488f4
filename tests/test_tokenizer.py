from webui.diffusion.tokenizer import VOCAB_SIZE, load_clip_tokenizer


def test_clip_tokenizer_matches_openai_ids():
    tok = load_clip_tokenizer()
    ids = tok("a photograph of an astronaut riding a horse").input_ids
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(tok) == VOCAB_SIZE
    assert tok.model_max_length == 77


def test_clip_tokenizer_pads_to_77():
    tok = load_clip_tokenizer()
    out = tok("a red circle", padding="max_length", max_length=77, truncation=True)
    assert len(out.input_ids) == 77
    assert out.input_ids[-1] == 49407
