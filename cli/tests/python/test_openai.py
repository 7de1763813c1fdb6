"""`rkl serve` through the official `openai` Python package (and curl).

Run by `make cli-check`: starts `rkl serve` on the simulator, then checks
exact replies streamed and not, usage, stop strings, automatic caching, a
crash that fails one request cleanly, and the client's error types for
4xx answers. Usage: test_openai.py RKL_BINARY SIM_LIB WORKDIR
"""

import json
import os
import re
import subprocess
import sys
import time

import openai

rkl, sim, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
def model_file(name, *lines):
    path = os.path.join(work, name + ".sim")
    with open(path, "w") as f:
        f.write("RKLLM-SIM 1\nname = %s\ntime_scale = 0\n" % name + "".join(l + "\n" for l in lines))
    return path

m = model_file("m", "reply = You said: {prompt}. Bye now!")
crashy = model_file("crashy", "reply = {prompt}", "fault = segv@token:12")
env = dict(os.environ, RKL_RUNTIME=sim, RKLLM_SIM_TIME_SCALE="0")
server = subprocess.Popen(
    [rkl, "serve", m, crashy, "--listen", "127.0.0.1:0", "--api-key", "k3y",
     "--cache-dir", os.path.join(work, "cache")],
    stdout=subprocess.PIPE, env=env, text=True)
try:
    addr = None
    for line in server.stdout:
        hit = re.match(r"rkl serve: listening on (http://\S+)", line)
        if hit:
            addr = hit.group(1)
            break
    assert addr, "rkl serve did not start"
    client = openai.OpenAI(base_url=addr + "/v1", api_key="k3y", max_retries=0)

    # Not streamed.
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "You said: hello. Bye now!", r
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (8, 13, 21), r.usage

    # Streamed, with usage.
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "streamed"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: streamed. Bye now!", text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 15, chunks[-1]

    # System prompt cached automatically: saved, then hit.
    system = "You are a terse assistant. " * 10
    for user, use in (("one", "saved"), ("two", "hit")):
        r = client.chat.completions.create(model="m", messages=[
            {"role": "system", "content": system}, {"role": "user", "content": user}], max_tokens=200)
        assert r.choices[0].message.content == "You said: %s. Bye now!" % user
        assert r.model_extra["rkl"]["cache"] == use, r.model_extra

    # Stop strings and max_tokens.
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stop=["Bye"])
    assert r.choices[0].message.content == "You said: x. ", r
    r = client.completions.create(model="m", prompt="abc", max_tokens=3)
    assert (r.choices[0].text, r.choices[0].finish_reason) == ("You sa", "length"), r
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="m", prompt="p", stream=True) if c.choices)
    assert streamed == "You said: p. Bye now!", streamed

    # Models.
    assert sorted(x.id for x in client.models.list()) == ["crashy", "m"]

    # A crash mid-reply: the stream raises, the next request succeeds.
    try:
        for _ in client.chat.completions.create(model="crashy", stream=True,
                                                messages=[{"role": "user", "content": "long enough to crash the worker"}]):
            pass
        raise AssertionError("the crash was not reported")
    except openai.APIError as e:
        assert "SIGSEGV" in str(e), e
    r = client.chat.completions.create(model="crashy", messages=[{"role": "user", "content": "short"}])
    assert r.choices[0].message.content == "short"

    # 4xx as the client's own error types.
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert "not served here" in str(e), e
    try:
        openai.OpenAI(base_url=addr + "/v1", api_key="wrong", max_retries=0).models.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError:
        pass
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], n=2)
        raise AssertionError("n=2 accepted")
    except openai.BadRequestError as e:
        assert "'n' must be 1" in str(e), e

    # curl, streamed, as the README shows it.
    out = subprocess.run(
        ["curl", "-sS", "-N", addr + "/v1/chat/completions", "-H", "Authorization: Bearer k3y",
         "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "curl"}]})],
        capture_output=True, text=True, check=True).stdout
    events = [l[6:] for l in out.splitlines() if l.startswith("data: ")]
    assert events[-1] == "[DONE]", events
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "You said: curl. Bye now!", text
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", addr + "/v1/chat/completions",
                          "-H", "Authorization: Bearer k3y", "-d", "{not json"], capture_output=True, text=True).stdout
    assert out == "400", out
    metrics = subprocess.run(["curl", "-sS", "-H", "Authorization: Bearer k3y", addr + "/metrics"],
                             capture_output=True, text=True, check=True).stdout
    assert 'rkl_worker_restarts_total{model="crashy"} 1' in metrics, metrics
    print("openai client and curl against rkl serve: all passed (openai %s)" % openai.__version__)
finally:
    server.kill()
    server.wait()
