"""The official OpenAI Python client against a running Duet (mock mode, accounts on): an account
and an API key made over the REST API, then every OpenAI-compatible route with that key, streaming
and not, and the errors the client maps to its exception types.

Usage: openai_check.py BASE_URL   (e.g. http://127.0.0.1:3999)
Exits non-zero with the failing check's message.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import openai


def check(cond, message):
    if not cond:
        raise SystemExit(f"FAILED: {message}")


def post_json(url, body, headers=None):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req) as res:
        return res.headers, json.loads(res.read())


def api_key(base):
    """Register an account (which logs in) and make a key with the session cookie."""
    headers, account = post_json(f"{base}/auth/register", {"username": "openai-check", "password": "a long password"})
    cookie = headers["Set-Cookie"].split(";")[0]
    _, created = post_json(f"{base}/account/keys", {"name": "openai-python"}, {"Cookie": cookie})
    check(created["key"].startswith("duet_"), f"a Duet key: {created['info']}")
    return created["key"]


def main(base):
    unauthenticated = openai.OpenAI(base_url=f"{base}/v1", api_key="duet_made-up", max_retries=0)
    try:
        unauthenticated.models.list()
        check(False, "a made-up key must be refused")
    except openai.AuthenticationError as err:
        check(err.status_code == 401, f"status {err.status_code}")
    key = api_key(base)
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

    models = [m.id for m in client.models.list().data]
    check(len(models) == 2, f"two models listed, got {models}")
    chat_model = models[0]

    reply = client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        max_tokens=64,
        temperature=0.6,
        seed=1,
    )
    message = reply.choices[0].message
    check(message.content == "You said: Hello there", f"content: {message.content!r}")
    reasoning = (message.model_extra or {}).get("reasoning_content")
    check(reasoning == "The user wrote 2 words. Echo them back.", f"reasoning_content: {reasoning!r}")
    check(reply.choices[0].finish_reason == "stop", reply.choices[0].finish_reason)
    check(reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens, reply.usage)

    content, thought, usage = [], [], None
    stream = client.chat.completions.create(
        model=chat_model,
        messages=[{"role": "user", "content": "Hello there"}],
        stream=True,
        stream_options={"include_usage": True},
        stop=["there"],
    )
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
            extra = (choice.delta.model_extra or {}).get("reasoning_content")
            if extra:
                thought.append(extra)
    check("".join(content) == "You said: Hello ", f"streamed content with stop: {''.join(content)!r}")
    check("".join(thought).startswith("The user wrote"), f"streamed reasoning: {''.join(thought)!r}")
    check(usage is not None and usage.completion_tokens > 0, f"usage chunk: {usage}")

    images = client.images.generate(prompt="a red fox", n=2, size="256x256", response_format="b64_json")
    check(len(images.data) == 2, f"two images, got {len(images.data)}")
    png = base64.b64decode(images.data[0].b64_json)
    check(png[:8] == b"\x89PNG\r\n\x1a\n", "b64_json is a PNG")
    by_url = client.images.generate(prompt="a red fox", size="256x256")
    check(by_url.data[0].url.startswith(base + "/images/"), f"absolute URL: {by_url.data[0].url}")
    fetch = urllib.request.Request(by_url.data[0].url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(fetch) as res:
        check(res.read(8) == b"\x89PNG\r\n\x1a\n", "the URL serves the PNG to its owner")
    try:
        urllib.request.urlopen(by_url.data[0].url)
        check(False, "the image URL needs the key")
    except urllib.error.HTTPError as err:
        check(err.code == 401, f"status {err.code}")

    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        check(False, "an unknown model must fail")
    except openai.NotFoundError as err:
        check(err.body and err.body.get("code") == "model_not_found", f"error body: {err.body}")
    try:
        client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "hi"}], temperature=5)
        check(False, "temperature 5 must fail")
    except openai.UnprocessableEntityError as err:
        check(err.body and err.body.get("param") == "temperature", f"error body: {err.body}")
    print("openai-python", openai.__version__, ": every check passed")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
