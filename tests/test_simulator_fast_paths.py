"""The simulator's fast paths give exactly what the plain code they replace gives: the token
count (a map job counts every answer on its event loop), the message id digits, and the per-request
repeat counter (kept by digest, not by request text)."""

from __future__ import annotations

import json
import random
import string

from claudeforce_nb.simulator import Simulator
from claudeforce_nb.simulator.engine import hex_digits
from claudeforce_nb.simulator.text import _TOKEN_RE, count_tokens, simulated_answer


def regex_count(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def test_token_count_equals_the_tokenizer_regex_on_every_kind_of_text() -> None:
    rng = random.Random(7)
    ascii_all = "".join(chr(c) for c in range(128))
    alphabets = [ascii_all, string.ascii_letters + "_" + " " * 5, "ab1_ \n.,(){}", ascii_all + "é中…—😀\u00a0\u2003١"]
    texts = ["", " ", "a", "abcd", "abcde", "_" * 9, "x.y", "\x1c\x1d\x1e\x1f", "naïve café…"]
    for alphabet in alphabets:
        texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(500)]
    texts += [simulated_answer("claude-sonnet-5-5", "# Tester", f"Write a function for task {i}", 3) for i in range(50)]
    texts.append("word " * 1000)  # the memoised long-text path
    for text in texts:
        assert count_tokens(text) == regex_count(text), repr(text[:80])


def test_hex_digits_are_the_digits_random_choice_would_draw() -> None:
    for seed in range(300):
        a, b = random.Random(seed), random.Random(seed)
        assert hex_digits(a, 24) == "".join(b.choice("0123456789abcdef") for _ in range(24))
        assert a.random() == b.random()  # the same bits were consumed: later draws agree too


def test_a_repeated_request_is_still_counted_per_attempt() -> None:
    body = json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 100,
                       "messages": [{"role": "user", "content": "Explain a context manager"}]}).encode()

    def ids(headers: dict[str, str]) -> list[str]:
        sim = Simulator(speed=0.0, seed=5)
        return [sim.handle("POST", "/v1/messages", headers, body).body["id"] for _ in range(3)]  # type: ignore[index]

    first, again = ids({"x-api-key": "k"}), ids({"x-api-key": "k"})
    assert first == again  # deterministic for the same sequence of requests
    assert len(set(first)) == 3  # each repeat of the same request is a new draw
    retried = ids({"x-api-key": "k", "x-stainless-retry-count": "1"})
    assert not set(retried) & set(first)  # a retry attempt is counted apart from first tries
