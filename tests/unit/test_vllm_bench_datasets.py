"""Prompt datasets and request payloads."""

import json
import random

import pytest
from ansible.module_utils.vllm_bench_datasets import (
    SONNET_INSTRUCTION,
    Prompt,
    request_payload,
    sharegpt_prompts,
    sonnet_lines,
    sonnet_prompts,
    sonnet_words,
    tokenizer_prompts,
    word_prompts,
)


def test_sonnet_text_is_shipped():
    assert len(sonnet_lines()) >= 100
    assert "summer's" in " ".join(sonnet_lines())
    assert all(word == word.lower() for word in sonnet_words())


def test_word_prompts_are_seeded_and_sized():
    first = word_prompts(3, 16, 8, random.Random(1))
    again = word_prompts(3, 16, 8, random.Random(1))
    assert first == again
    assert all(len(p.text.split()) == 16 and p.output_len == 8 for p in first)
    assert len({p.text for p in first}) == 3


def test_tokenizer_prompts_cut_to_exact_token_count():
    calls = []

    def tokenize(text):
        calls.append(text)
        return [len(word) for word in text.split()]  # one token per word, ids are word lengths

    prompts = tokenizer_prompts(2, 10, 5, random.Random(0), tokenize, lambda ids: f"<{len(ids)} tokens>")
    assert [p.text for p in prompts] == ["<10 tokens>", "<10 tokens>"]
    assert all(p.prompt_len == 10 for p in prompts)


def test_tokenizer_prompts_give_up_on_a_useless_tokenizer():
    with pytest.raises(ValueError, match="tokenizer gave 0 tokens"):
        tokenizer_prompts(1, 10, 5, random.Random(0), lambda text: [], lambda ids: "")


def test_sonnet_prompts_reach_input_len():
    prompts = sonnet_prompts(4, 60, 16, random.Random(0), tokens_per_char=0.25)
    for prompt in prompts:
        assert prompt.text.startswith(SONNET_INSTRUCTION)
        assert 60 <= prompt.prompt_len <= 60 + 30
    words_only = sonnet_prompts(1, 60, 16, random.Random(0))
    assert words_only[0].prompt_len >= 60


def sharegpt_file(tmp_path, data):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_sharegpt_prompts_use_first_turn_and_reply_length(tmp_path):
    data = [
        {"id": "a", "conversations": [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "w " * 30}]},
        {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
        {"id": "c", "conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "x"}]},
    ]
    prompts = sharegpt_prompts(sharegpt_file(tmp_path, data), 3, None, random.Random(0))
    assert [p.text for p in prompts] == ["Hi there"] * 3  # cycles through the usable ones
    assert prompts[0].output_len == 40  # 30 words / 0.75 words per token
    fixed = sharegpt_prompts(sharegpt_file(tmp_path, data), 1, 7, random.Random(0))
    assert fixed[0].output_len == 7


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{bad", "not readable JSON"),
        ("[]", "no usable conversation"),
        ('{"a":1}', "no usable"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ],
)
def test_sharegpt_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        sharegpt_prompts(str(path), 1, None, random.Random(0))
    with pytest.raises(ValueError, match="does not exist"):
        sharegpt_prompts(str(tmp_path / "missing.json"), 1, None, random.Random(0))


def test_request_payloads():
    prompt = Prompt("hello", 1, 9)
    completions = request_payload("completions", "tiny", prompt, True, 0.0, {"top_k": 1})
    assert completions == {
        "model": "tiny",
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "hello",
        "max_tokens": 9,
        "ignore_eos": True,
        "temperature": 0.0,
        "top_k": 1,
    }
    chat = request_payload("chat", "tiny", prompt, ignore_eos=False)
    assert chat["messages"] == [{"role": "user", "content": "hello"}]
    assert chat["max_completion_tokens"] == 9 and "ignore_eos" not in chat


def test_sharegpt_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'[{"conversations": "\xff\xfe"}]')
    with pytest.raises(ValueError, match="not readable JSON"):
        sharegpt_prompts(str(path), 1, None, random.Random(0))
