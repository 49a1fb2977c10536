"""The OpenAI wire format of the inference server: SSE framing, stop sequences, checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.trainer.model_server import openai_answers as answers
from services.trainer.model_server import openai_wire as wire
from services.trainer.model_server.vllm_engine import vllm_argv


def parse_sse(data: bytes) -> list[Any]:
    """Events of an SSE body as a client reads them (``[DONE]`` kept as the string)."""
    events = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_sse_frames_one_json_line_per_event_and_done_last() -> None:
    chunk = answers.chat_chunk(id="c1", model="m", created=1, delta={"content": "a\nb\n\ndata: x"})
    body = (
        answers.sse(chunk)
        + answers.sse(answers.chat_chunk(id="c1", model="m", created=1))
        + answers.SSE_DONE
    )
    # a newline in the content never breaks the framing: JSON escapes it
    assert body.count(b"\n\n") == 3
    events = parse_sse(body)
    assert events[0]["choices"][0]["delta"]["content"] == "a\nb\n\ndata: x"
    assert events[-1] == "[DONE]"


def test_final_usage_chunk_has_no_choices() -> None:
    chunk = answers.chat_chunk(id="c", model="m", created=1, usage_counts=answers.usage(3, 4))
    assert chunk["choices"] == [] and chunk["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }


def feed_all(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = answers.StopMatcher(stops)
    out, stopped = "", False
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out += text
        if stopped:
            return out, True
    return out + matcher.flush(), False


def test_stop_sequence_split_across_pieces_is_never_sent() -> None:
    assert feed_all(["END"], ["Hello E", "N", "D and more"]) == ("Hello ", True)
    assert feed_all(["\n\n"], ["one\n", "\ntwo"]) == ("one", True)


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    matcher = answers.StopMatcher(["END"])
    assert matcher.feed("abc E") == ("abc ", False)  # "E" might start END
    assert matcher.feed("ND!") == ("", True)
    matcher = answers.StopMatcher(["END"])
    assert matcher.feed("abc E") == ("abc ", False)
    assert matcher.feed("nd") == ("End", False)
    matcher = answers.StopMatcher(["END"])
    assert matcher.feed("EN") == ("", False)
    assert matcher.flush() == "EN"  # the generation ended: what was held goes out


def test_earliest_of_several_stops_wins_and_no_stop_passes_through() -> None:
    assert feed_all(["b", "a"], ["xxab"]) == ("xx", True)
    assert feed_all([], ["a", "b"]) == ("ab", False)
    assert feed_all(["zz"], ["a", "b"]) == ("ab", False)


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (chat(temperature=3), "temperature", "invalid_value"),
        (chat(temperature="hot"), "temperature", "invalid_type"),
        (chat(top_p=0), "top_p", "invalid_value"),
        (chat(max_tokens=0), "max_tokens", "invalid_value"),
        (chat(max_tokens=True), "max_tokens", "invalid_type"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop", "invalid_value"),
        (chat(stop=[1]), "stop", "invalid_type"),
        (chat(n=2), "n", "invalid_value"),
        (chat(stream="yes"), "stream", "invalid_type"),
        (chat(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        (chat(frequency_penalty=1), "frequency_penalty", "unsupported_value"),
        (chat(tools=[]), "tools", "unknown_parameter"),
        (chat(messages=[]), "messages", "invalid_value"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role", "invalid_value"),
        (chat(messages=[{"role": "user", "content": 3}]), "messages[0].content", "invalid_type"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
            "messages[0].content",
            "invalid_value",
        ),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "invalid_value"),
    ],
)
def test_bad_chat_bodies_are_400_naming_the_parameter(
    body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(wire.OpenAIError) as info:
        wire.parse_chat(body, served="m")
    assert info.value.status == 400
    assert info.value.param == param and info.value.code == code
    error = info.value.body()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404_and_not_an_object_is_400() -> None:
    with pytest.raises(wire.OpenAIError) as info:
        wire.parse_chat(chat(model="gpt-4"), served="m")
    assert info.value.status == 404 and info.value.code == "model_not_found"
    with pytest.raises(wire.OpenAIError) as info:
        wire.parse_completion(["x"], served="m")
    assert info.value.status == 400


def test_good_bodies_parse_to_generation_parameters() -> None:
    req = wire.parse_chat(
        chat(
            messages=[
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": None},
            ],
            max_completion_tokens=5,
            temperature=0,
            stop="\n",
            stream=True,
            stream_options={"include_usage": True},
            seed=7,
        ),
        served="m",
    )
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": ""},
    ]
    assert (req.params.max_tokens, req.params.temperature, req.params.stop) == (5, 0.0, ["\n"])
    assert req.stream and req.include_usage and req.params.seed == 7
    comp = wire.parse_completion({"model": "m", "prompt": ["once"], "echo": True}, served="m")
    assert comp.prompt == "once" and comp.echo and comp.params.max_tokens is None


def test_vllm_command_line_serves_a_model_or_an_adapter_on_its_base() -> None:
    argv = vllm_argv(python="/py", model_dir="/m", name="model-1", port=8001)
    assert argv[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(argv)
    assert "--model /m --served-model-name model-1" in text
    assert "--host 127.0.0.1 --port 8001" in text
    assert "--enable-lora" not in argv and "--trust-remote-code" not in argv
    assert "--load-format safetensors" in text

    adapter = {"base": "/m/base", "rank": 12, "config": {}}
    argv = vllm_argv(python="/py", model_dir="/m", name="model-2", port=1, adapter=adapter, gpus=2)
    text = " ".join(argv)
    assert "--model /m/base --served-model-name model-2-base" in text
    assert "--enable-lora --lora-modules model-2=/m --max-lora-rank 16" in text
    assert "--tensor-parallel-size 2" in text
