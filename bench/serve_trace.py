"""The request stream of the serving benchmark (issue 27), the same for every engine: prompt and
output lengths drawn with a fixed seed from a committed shape like ShareGPT conversations
(prompts 50-1,000 tokens, log-uniform; outputs 50-500, log-uniform), prompt ids spread over the
vocabulary so no two requests share a prefix unless asked, and Poisson arrival offsets for a rate.
Pure and deterministic: `trace(n, seed)` gives the same requests on every machine."""

import math
import random

PROMPT_RANGE = (50, 1000)
OUTPUT_RANGE = (50, 500)


def log_uniform(rng, low, high):
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def trace(n, seed=2026, shared_prefix=0, vocab=150000, scale=1.0):
    """`n` requests: dicts with `id`, `prompt_ids`, `max_new_tokens`. `shared_prefix` tokens open
    every prompt alike (a system prompt); `scale` shrinks lengths for quick checks."""
    rng = random.Random(seed)
    prefix = [3 + (i * 7919) % (vocab - 3) for i in range(shared_prefix)]
    requests = []
    for i in range(n):
        prompt = max(1, int(log_uniform(rng, *PROMPT_RANGE) * scale))
        output = max(1, int(log_uniform(rng, *OUTPUT_RANGE) * scale))
        ids = [3 + rng.randrange(vocab - 3) for _ in range(prompt)]
        requests.append({"id": i, "prompt_ids": prefix + ids, "max_new_tokens": output})
    return requests


def prefix_trace(n, prefix_len, suffix_len=64, output=16, vocab=150000, seed=2026):
    """`n` conversations opening alike: the same `prefix_len` tokens (a system prompt), then
    `suffix_len` of their own, `output` tokens each: what a new conversation costs once another
    has run the same system prompt."""
    rng = random.Random(seed)
    prefix = [3 + (i * 7919) % (vocab - 3) for i in range(prefix_len)]
    return [{"id": i, "prompt_ids": prefix + [3 + rng.randrange(vocab - 3) for _ in range(suffix_len)],
             "max_new_tokens": output} for i in range(n)]


def arrivals(n, rate, seed=2026):
    """Poisson arrivals at `rate` requests/s: offsets in seconds from the start."""
    rng = random.Random(seed + 1)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def percentiles(values, points=(50, 95, 99)):
    """Nearest-rank percentiles of `values` (NaN when empty)."""
    if not values:
        return {f"p{p}": float("nan") for p in points}
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] for p in points}


if __name__ == "__main__":
    t = trace(1000)
    assert t == trace(1000), "deterministic"
    prompts = [len(r["prompt_ids"]) for r in t]
    outputs = [r["max_new_tokens"] for r in t]
    assert min(prompts) >= 50 and max(prompts) <= 1000 and min(outputs) >= 50 and max(outputs) <= 500
    assert percentiles([1, 2, 3, 4])["p50"] == 2 and percentiles([5])["p99"] == 5
    print(f"prompts: mean {sum(prompts) / len(prompts):.0f}, {percentiles(prompts)}; "
          f"outputs: mean {sum(outputs) / len(outputs):.0f}, {percentiles(outputs)}")


def long_burst(n, prompt=900, replies=400, at=3.0, vocab=150000, seed=11):
    """`n` replies of `replies` tokens starting together, then, `at` seconds later, `n`
    `prompt`-token prompts arriving at once (8 new tokens each): prompt chunks sharing steps
    with decoding, the case a tail of first tokens is made of. Open loop (`arrival_s` given)."""
    rng = random.Random(seed)
    ids = lambda k: [3 + rng.randrange(vocab - 3) for _ in range(k)]  # noqa: E731
    requests = [{"id": i, "prompt_ids": ids(50), "max_new_tokens": replies, "arrival_s": 0.0} for i in range(n)]
    requests += [{"id": n + i, "prompt_ids": ids(prompt), "max_new_tokens": 8, "arrival_s": at} for i in range(n)]
    return requests

