"""The stand-in tokenizer: stable ids in every process, shared prefixes stay shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from servestack.sim.tokenizer import (
    PIECE,
    SEGMENT_CACHE_LIMIT,
    Tokenizer,
    chat_segments,
    generated_pieces,
    render_chat,
)

TEXT = "The quick brown fox jumps over the lazy dog; internationalization!  Twice."


def test_same_text_same_ids_across_tokenizers() -> None:
    assert Tokenizer().encode(TEXT) == Tokenizer().encode(TEXT)


def test_same_ids_in_another_process_with_another_hash_seed() -> None:
    code = (
        f"import json; from servestack.sim.tokenizer import Tokenizer; print(json.dumps(Tokenizer().encode({TEXT!r})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == Tokenizer().encode(TEXT)


def test_pieces_are_short_runs_with_their_leading_space() -> None:
    assert PIECE.findall("hello internationalization  x") == [
        "hello", " intern", "ationa", "lizati", "on", "  x"
    ]  # fmt: skip
    assert Tokenizer().count("hello internationalization  x") == 6


def test_texts_sharing_a_prefix_share_token_ids_up_to_where_they_differ() -> None:
    tok = Tokenizer()
    system = "You are a careful assistant. " * 50
    a = tok.encode(render_chat([{"role": "system", "content": system}, {"role": "user", "content": "first question"}]))
    b = tok.encode(render_chat([{"role": "system", "content": system}, {"role": "user", "content": "other thing"}]))
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared > 250  # the whole system prompt
    assert a[:shared] == b[:shared]


def test_chat_rendering_takes_text_parts_and_ends_at_the_assistant_turn() -> None:
    text = render_chat([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_generated_words_are_one_token_each() -> None:
    pieces = generated_pieces(5, 40, leading_space=False)
    assert len(Tokenizer().encode("".join(pieces))) == 40
    assert not pieces[0].startswith(" ")
    assert generated_pieces(5, 3, leading_space=True)[0].startswith(" ")


def test_chat_prompts_are_tokenized_message_by_message_and_memoized() -> None:
    tok = Tokenizer()
    messages = [{"role": "system", "content": "Be brief. " * 200}, {"role": "user", "content": "hi"}]
    segments = chat_segments(messages)
    assert "".join(segments) == render_chat(messages)
    ids = tok.encode_segments(segments)
    assert ids == [token for segment in segments for token in tok.encode(segment)]
    assert tok.encode_segments(segments) == ids  # from the memo
    for i in range(SEGMENT_CACHE_LIMIT + 10):
        tok.encode_segments([f"message {i}"])
    assert len(tok._segments) <= SEGMENT_CACHE_LIMIT
