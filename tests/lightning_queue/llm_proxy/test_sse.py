"""Cutting SSE streams into events and folding OpenAI chunks into one response."""

from __future__ import annotations

import json

from lightning_queue.llm_proxy.sse import EventSplitter, StreamAccumulator, event_data


def test_events_split_at_blank_lines_whatever_the_chunking() -> None:
    stream = b'data: {"a": 1}\n\n: keep-alive\n\ndata: [DONE]\r\n\r\n'
    for size in (1, 3, 7, len(stream)):
        splitter = EventSplitter()
        events = [e for i in range(0, len(stream), size) for e in splitter.feed(stream[i : i + size])]
        assert [event_data(e) for e in events] == ['{"a": 1}', None, "[DONE]"]
        assert splitter.rest() == b""


def test_multi_line_data_is_joined() -> None:
    assert event_data(b"event: x\ndata: one\ndata:two\n\n") == "one\ntwo"


def chunk(**fields: object) -> str:
    return json.dumps(fields)


def test_chat_chunks_fold_into_content_tool_calls_and_token_ids() -> None:
    folded = StreamAccumulator("chat")
    folded.add(
        chunk(id="c1", model="m", prompt_token_ids=[1, 2], choices=[{"index": 0, "delta": {"role": "assistant"}}])
    )
    folded.add(chunk(choices=[{"index": 0, "delta": {"content": "Hel"}, "token_ids": [10]}]))
    folded.add(chunk(choices=[{"index": 0, "delta": {"content": "lo"}, "token_ids": [11]}]))
    call_open = {"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
    folded.add(chunk(choices=[{"index": 0, "delta": {"tool_calls": [call_open]}, "token_ids": [12]}]))
    call_more = {"index": 0, "function": {"arguments": '{"x": 1}'}}
    folded.add(chunk(choices=[{"index": 0, "delta": {"tool_calls": [call_more]}, "token_ids": [13]}]))
    folded.add(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    folded.add(chunk(choices=[], usage={"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}))
    folded.add("[DONE]")

    assert folded.done and folded.error is None
    assert folded.result() == {
        "id": "c1",
        "model": "m",
        "prompt_token_ids": [1, 2],
        "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6},
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [
                        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
                    ],
                },
                "finish_reason": "tool_calls",
                "token_ids": [10, 11, 12, 13],
            }
        ],
    }


def test_completion_chunks_fold_per_choice_and_errors_are_kept() -> None:
    folded = StreamAccumulator("completion")
    folded.add(chunk(choices=[{"index": 1, "text": "b", "token_ids": [2]}, {"index": 0, "text": "a"}]))
    folded.add("not json at all")
    folded.add(chunk(error={"message": "boom"}))

    result = folded.result()
    assert [c["text"] for c in result["choices"]] == ["a", "b"]
    assert "token_ids" not in result["choices"][0] and result["choices"][1]["token_ids"] == [2]
    assert folded.error == {"message": "boom"} and not folded.done
