# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prompts for the benchmark: random (model tokenizer or words), sonnet, ShareGPT; and request payloads.

Standard library only: this file runs on target hosts, which is also why the
sonnet text is a constant here (Ansible ships Python files, not data files).
The verse is William Shakespeare's (1609), in the public domain.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SONNETS = """\
Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
When, in disgrace with fortune and men's eyes,
I all alone beweep my outcast state,
And trouble deaf heaven with my bootless cries,
And look upon myself and curse my fate,
Wishing me like to one more rich in hope,
Featured like him, like him with friends possess'd,
Desiring this man's art and that man's scope,
With what I most enjoy contented least;
Yet in these thoughts myself almost despising,
Haply I think on thee, and then my state,
Like to the lark at break of day arising
From sullen earth, sings hymns at heaven's gate;
For thy sweet love remember'd such wealth brings
That then I scorn to change my state with kings.
When to the sessions of sweet silent thought
I summon up remembrance of things past,
I sigh the lack of many a thing I sought,
And with old woes new wail my dear time's waste:
Then can I drown an eye, unused to flow,
For precious friends hid in death's dateless night,
And weep afresh love's long since cancell'd woe,
And moan the expense of many a vanish'd sight:
Then can I grieve at grievances foregone,
And heavily from woe to woe tell o'er
The sad account of fore-bemoaned moan,
Which I new pay as if not paid before.
But if the while I think on thee, dear friend,
All losses are restored and sorrows end.
Not marble, nor the gilded monuments
Of princes, shall outlive this powerful rhyme;
But you shall shine more bright in these contents
Than unswept stone, besmear'd with sluttish time.
When wasteful war shall statues overturn,
And broils root out the work of masonry,
Nor Mars his sword nor war's quick fire shall burn
The living record of your memory.
'Gainst death and all-oblivious enmity
Shall you pace forth; your praise shall still find room
Even in the eyes of all posterity
That wear this world out to the ending doom.
So, till the judgment that yourself arise,
You live in this, and dwell in lovers' eyes.
Like as the waves make towards the pebbled shore,
So do our minutes hasten to their end;
Each changing place with that which goes before,
In sequent toil all forwards do contend.
Nativity, once in the main of light,
Crawls to maturity, wherewith being crown'd,
Crooked eclipses 'gainst his glory fight,
And Time that gave doth now his gift confound.
Time doth transfix the flourish set on youth
And delves the parallels in beauty's brow,
Feeds on the rarities of nature's truth,
And nothing stands but for his scythe to mow:
And yet to times in hope my verse shall stand,
Praising thy worth, despite his cruel hand.
That time of year thou mayst in me behold
When yellow leaves, or none, or few, do hang
Upon those boughs which shake against the cold,
Bare ruin'd choirs, where late the sweet birds sang.
In me thou see'st the twilight of such day
As after sunset fadeth in the west,
Which by and by black night doth take away,
Death's second self, that seals up all in rest.
In me thou see'st the glowing of such fire
That on the ashes of his youth doth lie,
As the death-bed whereon it must expire,
Consumed with that which it was nourish'd by.
This thou perceivest, which makes thy love more strong,
To love that well which thou must leave ere long.
Let me not to the marriage of true minds
Admit impediments. Love is not love
Which alters when it alteration finds,
Or bends with the remover to remove:
O no! it is an ever-fixed mark
That looks on tempests and is never shaken;
It is the star to every wandering bark,
Whose worth's unknown, although his height be taken.
Love's not Time's fool, though rosy lips and cheeks
Within his bending sickle's compass come:
Love alters not with his brief hours and weeks,
But bears it out even to the edge of doom.
If this be error and upon me proved,
I never writ, nor no man ever loved.
My mistress' eyes are nothing like the sun;
Coral is far more red than her lips' red;
If snow be white, why then her breasts are dun;
If hairs be wires, black wires grow on her head.
I have seen roses damask'd, red and white,
But no such roses see I in her cheeks;
And in some perfumes is there more delight
Than in the breath that from my mistress reeks.
I love to hear her speak, yet well I know
That music hath a far more pleasing sound;
I grant I never saw a goddess go;
My mistress, when she walks, treads on the ground:
And yet, by heaven, I think my love as rare
As any she belied with false compare.
"""

SONNET_INSTRUCTION = "Pick as many lines as you can from these poem lines:\n"
WORDS_PER_TOKEN_GUESS = 0.75  # English text with a typical BPE tokenizer, used only when no tokenizer is reachable
DEFAULT_OUTPUT_LEN = 128


@dataclass(slots=True)
class Prompt:
    """One prompt: its text, its length in tokens (measured or estimated) and the output tokens to ask for."""

    text: str
    prompt_len: int
    output_len: int


def sonnet_lines() -> list[str]:
    """Return the lines of the shipped sonnet text."""
    return [line for line in SONNETS.splitlines() if line.strip()]


def sonnet_words() -> list[str]:
    """Return the distinct lower-case words of the sonnet text (the vocabulary of word prompts)."""
    seen: dict[str, None] = {}
    for word in SONNETS.lower().split():
        cleaned = word.strip(".,;:!?'\"()")
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def word_prompts(count: int, input_len: int, output_len: int, rng: random.Random) -> list[Prompt]:
    """Return count prompts of input_len random words each (about input_len tokens or more)."""
    words = sonnet_words()
    return [Prompt(" ".join(rng.choices(words, k=input_len)), input_len, output_len) for _ in range(count)]


def tokenizer_prompts(
    count: int,
    input_len: int,
    output_len: int,
    rng: random.Random,
    tokenize: Callable[[str], list[int]],
    detokenize: Callable[[list[int]], str],
) -> list[Prompt]:
    """Return count prompts of exactly input_len tokens of the model's tokenizer (random words, cut by token)."""
    words = sonnet_words()
    prompts = []
    for _ in range(count):
        tokens: list[int] = []
        text = ""
        for _ in range(8):
            text = f"{text} {' '.join(rng.choices(words, k=input_len))}".strip()
            tokens = tokenize(text)
            if len(tokens) >= input_len:
                break
        else:
            raise ValueError(f"the tokenizer gave {len(tokens)} tokens for {len(text.split())} words")
        prompts.append(Prompt(detokenize(tokens[:input_len]), input_len, output_len))
    return prompts


def sonnet_prompts(
    count: int, input_len: int, output_len: int, rng: random.Random, tokens_per_char: float | None = None
) -> list[Prompt]:
    """Return count prompts: the instruction then random sonnet lines until about input_len tokens.

    tokens_per_char comes from the model's tokenizer when it is reachable; else a words-based guess is used.
    """
    lines = sonnet_lines()
    prompts = []
    for _ in range(count):
        chosen: list[str] = []
        text = SONNET_INSTRUCTION
        while _estimated_tokens(text, tokens_per_char) < input_len:
            chosen.append(rng.choice(lines))
            text = SONNET_INSTRUCTION + "\n".join(chosen)
        prompts.append(Prompt(text, _estimated_tokens(text, tokens_per_char), output_len))
    return prompts


def _estimated_tokens(text: str, tokens_per_char: float | None) -> int:
    if tokens_per_char:
        return round(len(text) * tokens_per_char)
    return round(len(text.split()) / WORDS_PER_TOKEN_GUESS)


def sharegpt_prompts(path: str, count: int, output_len: int | None, rng: random.Random) -> list[Prompt]:
    """Return count prompts from a ShareGPT-format JSON file (first turn is the prompt, second the reply).

    The output length is output_len, or else estimated from the reply's length. Raise ValueError with a
    message naming the file and what is wrong when it cannot be used.
    """
    if not os.path.isfile(path):
        raise ValueError(f"dataset_path {path!r} does not exist or is not a file")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"dataset_path {path!r} is not readable JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"dataset_path {path!r} is JSON nested too deeply to read") from exc
    pairs = sharegpt_pairs(data)
    if not pairs:
        raise ValueError(
            f"dataset_path {path!r} has no usable conversation: expected a JSON list of "
            '{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}'
        )
    rng.shuffle(pairs)
    prompts = []
    for index in range(count):
        prompt, reply = pairs[index % len(pairs)]
        wanted = output_len or max(4, _estimated_tokens(reply, None))
        prompts.append(Prompt(prompt, _estimated_tokens(prompt, None), wanted))
    return prompts


def sharegpt_pairs(data: Any) -> list[tuple[str, str]]:
    """Return (prompt, reply) pairs of the ShareGPT entries that have two non-empty turns."""
    if not isinstance(data, list):
        return []
    pairs = []
    for entry in data:
        turns = entry.get("conversations") or entry.get("conversation") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, second = turns[0], turns[1]
        if not (isinstance(first, dict) and isinstance(second, dict)):
            continue
        prompt, reply = first.get("value"), second.get("value")
        if isinstance(prompt, str) and isinstance(reply, str) and prompt.strip() and reply.strip():
            pairs.append((prompt, reply))
    return pairs


def request_payload(
    endpoint: str,
    model: str,
    prompt: Prompt,
    ignore_eos: bool = True,
    temperature: float | None = None,
    extra_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the JSON body of a streaming completions or chat request for prompt."""
    payload: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    if endpoint == "chat":
        payload["messages"] = [{"role": "user", "content": prompt.text}]
        payload["max_completion_tokens"] = prompt.output_len
    else:
        payload["prompt"] = prompt.text
        payload["max_tokens"] = prompt.output_len
    if ignore_eos:
        payload["ignore_eos"] = True
    if temperature is not None:
        payload["temperature"] = temperature
    if extra_body:
        payload.update(extra_body)
    return payload


def endpoint_path(endpoint: str) -> str:
    """Return the URL path of an endpoint choice."""
    return "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
