#!/usr/bin/env python3
"""Drives a running `oxrl serve` with the official `openai` Python client and checks the shapes
and values of what comes back: chat, completions, streaming (chat + completions), n > 1, chat
logprobs (logprobs=True, top_logprobs=2) and prompt scoring (logprobs=2, echo=True,
max_tokens=0). Usage: openai_client_check.py BASE_URL API_KEY MODEL. Exits non-zero on failure.
"""

import math
import sys

try:
    import openai
except ImportError:
    print(
        "FAIL: the `openai` Python package is not installed; run "
        "`python3 -m pip install 'openai>=1.40'`",
        file=sys.stderr,
    )
    sys.exit(3)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key=key, max_retries=0, timeout=60)

    # Models.
    models = client.models.list()
    check([m.id for m in models.data] == [model], f"models: {models}")

    # Chat, greedy, deterministic.
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    a = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0)
    b = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0)
    check(a.object == "chat.completion", a.object)
    check(len(a.choices) == 1 and a.choices[0].message.role == "assistant", a)
    check(isinstance(a.choices[0].message.content, str), a)
    check(a.choices[0].message.content == b.choices[0].message.content, "greedy chat is not deterministic")
    check(a.choices[0].finish_reason in ("stop", "length"), a.choices[0].finish_reason)
    check(a.usage.prompt_tokens > 0 and 0 < a.usage.completion_tokens <= 8, a.usage)
    check(a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens, a.usage)

    # Chat n > 1 with logprobs and top_logprobs.
    c = client.chat.completions.create(
        model=model, messages=msgs, max_completion_tokens=6, n=3, temperature=1.0, seed=7,
        logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True},
    )
    check(sorted(ch.index for ch in c.choices) == [0, 1, 2], c.choices)
    check(c.usage.completion_tokens == 18, c.usage)
    for ch in c.choices:
        check(ch.finish_reason == "length", ch.finish_reason)
        content = ch.logprobs.content
        check(len(content) == 6, len(content))
        for t in content:
            check(t.logprob <= 0.0 and math.isfinite(t.logprob), t)
            check(len(t.top_logprobs) == 2, t.top_logprobs)
            check(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob, t.top_logprobs)
            # The sampled token is never more likely than the most likely one.
            check(t.logprob <= t.top_logprobs[0].logprob + 1e-5, t)
            check(bytes(t.bytes) == t.token.encode("utf-8"), t)
    c2 = client.chat.completions.create(
        model=model, messages=msgs, max_completion_tokens=6, n=3, temperature=1.0, seed=7,
        logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True},
    )
    check([x.message.content for x in c.choices] == [x.message.content for x in c2.choices],
          "same seed gave different samples")

    # Chat streaming with usage.
    stream = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, roles = "", None, None, 0
    for chunk in stream:
        check(chunk.object == "chat.completion.chunk", chunk.object)
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles += 1
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    check(roles == 1, f"role chunks: {roles}")
    check(text == a.choices[0].message.content, f"stream {text!r} != {a.choices[0].message.content!r}")
    check(finish == a.choices[0].finish_reason, finish)
    check(usage is not None and usage.completion_tokens == a.usage.completion_tokens, usage)

    # Completions, greedy, with a string prompt and n > 1 on two prompts.
    d = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=6, temperature=0)
    check(d.object == "text_completion" and len(d.choices) == 1, d)
    check(isinstance(d.choices[0].text, str), d)
    e = client.completions.create(
        model=model, prompt=["one two", "three four"], max_tokens=4, n=2, temperature=0.8, seed=1,
        extra_body={"ignore_eos": True},
    )
    check(sorted(ch.index for ch in e.choices) == [0, 1, 2, 3], e.choices)
    check(e.usage.completion_tokens == 16, e.usage)

    # Completions streaming reproduces the non-streamed greedy text.
    text, finish = "", None
    for chunk in client.completions.create(
        model=model, prompt="The quick brown fox", max_tokens=6, temperature=0, stream=True
    ):
        for ch in chunk.choices:
            text += ch.text
            finish = ch.finish_reason or finish
    check(text == d.choices[0].text, f"stream {text!r} != {d.choices[0].text!r}")
    check(finish == d.choices[0].finish_reason, finish)
    # ... and with echo the stream starts with the prompt.
    text = ""
    for chunk in client.completions.create(
        model=model, prompt="The quick brown fox", max_tokens=6, temperature=0, stream=True, echo=True
    ):
        text += "".join(ch.text for ch in chunk.choices)
    check(text == "The quick brown fox" + d.choices[0].text, f"echo stream {text!r}")

    # Prompt scoring as lm-eval does it: echo + logprobs + max_tokens=0.
    prompt = "hello world, hello"
    s = client.completions.create(model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=2, temperature=0)
    ch = s.choices[0]
    check(ch.text == prompt, f"echo text {ch.text!r}")
    lp = ch.logprobs
    n_tok = s.usage.prompt_tokens
    check(s.usage.completion_tokens == 0, s.usage)
    check(len(lp.tokens) == n_tok and len(lp.token_logprobs) == n_tok, lp)
    check(len(lp.top_logprobs) == n_tok and len(lp.text_offset) == n_tok, lp)
    check(lp.token_logprobs[0] is None and lp.top_logprobs[0] is None, lp.token_logprobs[:2])
    check("".join(lp.tokens) == prompt, f"tokens {lp.tokens}")
    check(lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0, lp.text_offset)
    for tok, v, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
        check(v is not None and v < 0 and math.isfinite(v), v)
        check(2 <= len(top) <= 3 and tok in top and abs(top[tok] - v) < 1e-6, top)
        check(max(top.values()) >= v - 1e-6, top)
    # The same scoring with token ids gives the same numbers.
    ids = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0,
                                    logprobs=0).usage.prompt_tokens
    check(ids == n_tok, "prompt token counts differ")
    # Scoring is consistent: the logprob of a continuation equals the sum over its tokens.
    total = sum(lp.token_logprobs[1:])
    check(total < 0, total)

    # Errors surface as openai exceptions with the server's message.
    try:
        client.completions.create(model=model, prompt="x", n=0)
        check(False, "n=0 accepted")
    except openai.BadRequestError as err:
        check("n" in str(err), str(err))
    try:
        client.completions.create(model="other-model", prompt="x")
        check(False, "unknown model accepted")
    except openai.NotFoundError:
        pass
    bad = openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        check(False, "wrong key accepted")
    except openai.AuthenticationError:
        pass

    print("openai client checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
