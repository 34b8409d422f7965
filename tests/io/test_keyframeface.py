"""KeyframeFace JSONL: requests and responses, the published examples, malformed lines."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from facecore import arkit
from facecore.io import (
    SYSTEM_PROMPT,
    FormatError,
    KeyframeRequest,
    format_response,
    keyframe_key,
    keyframe_name,
    make_requests,
    parse_response,
    read_csv,
    read_keyframeface,
    write_keyframeface,
)


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; printed on failure
    print(f"numpy seed: {seed}")
    return np.random.default_rng(seed)


def test_published_requests(keyframeface_dir, tmp_path):
    path = keyframeface_dir / "example.jsonl"
    reqs = read_keyframeface(path)
    assert len(reqs) == 2 and all(isinstance(r, KeyframeRequest) for r in reqs)
    r = reqs[0]
    assert list(r.keyframes) == ["Keyframe One", "Keyframe Two"]
    assert r.keyframes["Keyframe Two"].startswith("The gaze rises and both mouth corners")
    assert r.background.startswith("A student waits outside an interview room")
    assert r.emotion == "Anxiety concealed by a restrained smile."
    assert (r.target, reqs[1].target) == ("Keyframe One", "Keyframe Two")
    assert (r.target_key, reqs[1].target_key) == ("Keyframe_one", "Keyframe_two")
    assert r.system == SYSTEM_PROMPT and r.response is None
    # written back: the same lines (the published file ends with one extra blank line)
    out = tmp_path / "requests.jsonl"
    write_keyframeface(out, reqs)
    assert out.read_text().splitlines() == [ln for ln in path.read_text().splitlines() if ln]
    assert make_requests(list(r.keyframes.values()), r.background, r.emotion) == reqs


def test_published_responses(keyframeface_dir, tmp_path):
    path = keyframeface_dir / "example_result.jsonl"
    resp = read_keyframeface(path)
    assert [list(r) for r in resp] == [["Keyframe_one"], ["Keyframe_two"]]
    one = resp[0]["Keyframe_one"]
    assert one.dtype == np.float32 and one.shape == (61,)
    assert one[arkit.index("MouthPressLeft")] == np.float32(0.4)
    # the published CSV holds the same two keyframes
    csv = read_csv(keyframeface_dir / "example_result.csv")
    np.testing.assert_array_equal(np.stack([one, resp[1]["Keyframe_two"]]), csv.params)
    out = tmp_path / "responses.jsonl"
    write_keyframeface(out, resp)
    assert out.read_bytes() == path.read_bytes()


def test_requests_pair_with_responses(keyframeface_dir):
    reqs = read_keyframeface(keyframeface_dir / "example.jsonl")
    resp = read_keyframeface(keyframeface_dir / "example_result.jsonl")
    assert [r.target_key for r in reqs] == [next(iter(r)) for r in resp]


@pytest.mark.parametrize("i,name,key", [
    (1, "Keyframe One", "Keyframe_one"), (13, "Keyframe Thirteen", "Keyframe_thirteen"),
    (20, "Keyframe Twenty", "Keyframe_twenty"), (42, "Keyframe Forty Two", "Keyframe_forty_two"),
])
def test_keyframe_names(i, name, key):
    assert keyframe_name(i) == name and keyframe_key(name) == key


def test_keyframe_name_range():
    for bad in (0, 100, 1.0, True):
        with pytest.raises(ValueError, match="1..99"):
            keyframe_name(bad)


def test_training_lines_with_assistant_answer(tmp_path, rng):
    req = make_requests(["Eyes close.", "A wide smile."], "Sunset.", "Calm")[1]
    req.response = {"Keyframe_two": rng.uniform(arkit.LOW, arkit.HIGH).astype(np.float32)}
    p = tmp_path / "sft.jsonl"
    write_keyframeface(p, [req])
    msg = json.loads(p.read_text())["messages"]
    assert [m["role"] for m in msg] == ["system", "user", "assistant"]
    back = read_keyframeface(p)[0]
    assert back == req
    np.testing.assert_array_equal(back.response["Keyframe_two"], req.response["Keyframe_two"])


def test_multiline_description_and_fields(tmp_path):
    req = KeyframeRequest({"Keyframe One": "first line\nsecond line", "Keyframe Two": "  spaced "},
                          "Keyframe One", background="a\nb", emotion=" ")
    p = tmp_path / "r.jsonl"
    write_keyframeface(p, req)
    assert read_keyframeface(p) == [req]


def test_request_without_system_message(tmp_path):
    user = make_requests(["Smile."])[0].user_prompt()
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "user", "content": user}]}) + "\n")
    req = read_keyframeface(p)[0]
    assert req.system is None and [m["role"] for m in req.messages()] == ["user"]


def test_parse_response_strict_and_lenient():
    v = np.linspace(-1, 1, 61).astype(np.float32)
    text = format_response({"Keyframe_three": v})
    np.testing.assert_array_equal(parse_response(text)["Keyframe_three"], v)
    fenced = "Here you go:\n```json\n" + json.dumps({"Keyframe_one": {"jawOpen": 0.5}}) + "\n```"
    with pytest.raises(FormatError, match="not strict JSON"):
        parse_response(fenced)
    got = parse_response(fenced, strict=False)["Keyframe_one"]
    assert got[arkit.index("JawOpen")] == 0.5 and np.count_nonzero(got) == 1
    noted = json.dumps({"Keyframe_one": {"jawOpen": 0.5}, "note": "mouth slightly open"})
    assert list(parse_response(noted, strict=False)) == ["Keyframe_one"]
    with pytest.raises(FormatError, match="expected an object of 61 channel values, got str"):
        parse_response(json.dumps({"Keyframe_one": FULL, "note": "x"}))
    with pytest.raises(FormatError, match="holds no keyframe"):
        parse_response('{"note": 1}', strict=False)
    with pytest.raises(FormatError, match=r"60 channel\(s\) missing"):
        parse_response(json.dumps({"Keyframe_one": {"jawOpen": 0.5}}))
    with pytest.raises(FormatError, match="must be a number"):
        parse_response(json.dumps({"Keyframe_one": {"jawOpen": "wide"}}), strict=False)


def _line(obj) -> str:
    return json.dumps(obj) + "\n"


def _response_line(values: dict) -> str:
    return _line({"response": json.dumps({"Keyframe_one": values})})


FULL = {n: 0.0 for n in arkit.NAMES}


@pytest.mark.parametrize("bad,match", [
    ('{"response": \n', "not JSON"),
    (_line({"foo": 1}), "either 'messages' .* or 'response'"),
    (_line({"response": {"Keyframe_one": FULL}}), "'response' must be a JSON string"),
    (_response_line({**FULL, "JawOpen": float("nan")}), "'JawOpen' is not finite"),
    (_response_line({**FULL, "JawOpn": 0.1}), "did you mean 'JawOpen'"),
    (_line({"response": "Sure: {\"Keyframe_one\": {}}"}), "not strict JSON"),
    (_line({"messages": [{"role": "user", "content": "hi"}]}), "a request line in a file of responses"),
])
def test_malformed_response_lines(tmp_path, bad, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(_response_line(FULL) + "\n" + bad + _response_line(FULL))
    with pytest.raises(FormatError, match=match) as info:
        read_keyframeface(p)
    assert info.value.line == 3 and str(info.value).startswith(f"{p}:3: ")


def _request_line(user: str, **extra) -> str:
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return _line({"messages": msgs, **extra})


GOOD_USER = make_requests(["Smile."])[0].user_prompt()


@pytest.mark.parametrize("bad,match", [
    (_request_line(GOOD_USER.replace("for Keyframe One.", "for Keyframe Two.")),
     "targets 'Keyframe Two', which is not in the sequence"),
    (_request_line(GOOD_USER.replace("Task Instruction", "Task")), "unexpected text"),
    (_request_line(GOOD_USER.split("\n\nTask")[0]), "no 'Task Instruction"),
    (_line({"messages": [{"role": "critic", "content": "x"}]}), "unknown message role 'critic'"),
    (_line({"messages": "hello"}), "list of {role, content}"),
    (_response_line(FULL), "a response line in a file of requests"),
    (_request_line("Keyframe Description Sequence:\n- Keyframe One: x\n- Keyframe One: y"),
     "described twice"),
])
def test_malformed_request_lines(tmp_path, bad, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(_request_line(GOOD_USER) + bad)
    with pytest.raises(FormatError, match=match) as info:
        read_keyframeface(p)
    assert info.value.line == 2


def test_write_errors(tmp_path):
    req = make_requests(["Smile."])[0]
    with pytest.raises(TypeError, match="mixes requests and responses"):
        write_keyframeface(tmp_path / "x.jsonl", [req, {"Keyframe_one": np.zeros(61)}])
    with pytest.raises(ValueError, match=r"items\[0\].*shape \[61\]"):
        write_keyframeface(tmp_path / "x.jsonl", [{"Keyframe_one": np.zeros(52)}])
    with pytest.raises(ValueError, match="non-finite"):
        write_keyframeface(tmp_path / "x.jsonl", [{"Keyframe_one": np.full(61, np.nan)}])
    with pytest.raises(TypeError, match="must be a KeyframeRequest"):
        write_keyframeface(tmp_path / "x.jsonl", ["text"])
    with pytest.raises(ValueError, match="target 'Keyframe Two' is not one of"):
        KeyframeRequest({"Keyframe One": "x"}, "Keyframe Two")
    with pytest.raises(ValueError, match="one-line strings without ':'"):
        KeyframeRequest({"Keyframe: One": "x"}, "Keyframe: One")
    assert read_keyframeface(_empty(tmp_path)) == []


def _empty(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    return p


# --- hostile input --------------------------------------------------------------------------------


def test_answers_beyond_float32_are_refused(tmp_path):
    # 1e39 passed a float64 finiteness check and became inf in the float32 parameters.
    for value in (1e39, -3.5e38, 10**400):
        text = json.dumps({"Keyframe_one": {**FULL, "JawOpen": value}})
        for strict in (True, False):
            with pytest.raises(FormatError, match="'JawOpen' is not finite"):
                parse_response(text, strict=strict)
    with pytest.raises(FormatError, match="must be a number"):  # lenient numbers in strings too
        parse_response(json.dumps({"Keyframe_one": {"JawOpen": "1e39"}}), strict=False)
    with pytest.raises(ValueError, match="non-finite values in JawOpen"):
        format_response({"Keyframe_one": np.where(np.arange(61) == 17, 1e39, 0.0)})


@pytest.mark.parametrize("line, match", [
    ("[" * 100_000, "not JSON: nested too deeply"),
    ('{"response": "' + "[" * 100_000 + '"}', "response is not strict JSON: nested too deeply"),
    ('{"response": 1' + "0" * 5000 + "}", "not JSON: Exceeds the limit"),
    ('{"response": "{\\"Keyframe_one\\": ' + "9" * 5000 + '}"}', "Exceeds the limit"),
])
def test_decoder_failures_name_file_and_line(tmp_path, line, match):
    # Deep nesting and over-long integers escaped as bare RecursionError / ValueError.
    p = tmp_path / "deep.jsonl"
    p.write_text(_response_line(FULL) + line + "\n")
    with pytest.raises(FormatError, match=match) as info:
        read_keyframeface(p)
    assert str(info.value).startswith(f"{p}:2: ") and len(str(info.value)) < 300


def test_undecodable_bytes_name_their_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes((_response_line(FULL) * 2).encode() + b'{"response": "\xff"}\n')
    with pytest.raises(FormatError, match=r"bad\.jsonl:3: not utf-8 text: byte 0xff"):
        read_keyframeface(p)


@pytest.mark.timeout(60)
def test_user_message_parsing_is_linear(tmp_path):
    # "- Keyframe One:" was matched by a regex that backtracked cubically on runs of spaces
    # (5,000 spaces took 76 s); the task line's regex quadratically.
    spaces = " " * 200_000
    item = "- Keyframe One: Smile." + spaces + "wide"
    task = "Task Instruction: Generate the facial expression parameters for Keyframe One."
    p = tmp_path / "r.jsonl"
    p.write_text(_request_line(f"Keyframe Description Sequence:\n{item}\n\n-{spaces}x\n\n{task}"))
    with pytest.raises(FormatError, match="unexpected text"):
        read_keyframeface(p)
    far = task.replace("for Keyframe One.", "for Keyframe" + spaces + "One.")
    p.write_text(_request_line(f"Keyframe Description Sequence:\n{item}\n\n{far}"))
    with pytest.raises(FormatError, match="targets 'Keyframe  .*', which is not in"):
        read_keyframeface(p)
    p.write_text(_request_line(f"Keyframe Description Sequence:\n{item}\n\n{task}"))
    assert read_keyframeface(p)[0].keyframes["Keyframe One"] == "Smile." + spaces + "wide"
    # A description running over 200,000 lines was extended one str concatenation at a time.
    many = "\n".join(["the smile widens"] * 200_000)
    p.write_text(_request_line(f"Keyframe Description Sequence:\n- Keyframe One: {many}\n\n{task}"))
    t = time.perf_counter()
    assert read_keyframeface(p)[0].keyframes["Keyframe One"] == many
    assert time.perf_counter() - t < 1.0


def test_messages_quote_short_excerpts(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(_line({"messages": [{"role": "x" * 100_000, "content": "hi"}]}))
    with pytest.raises(FormatError, match="unknown message role") as info:
        read_keyframeface(p)
    assert len(str(info.value)) < 300
    p.write_text(_response_line({**FULL, "Q" * 100_000: 0.1}))
    with pytest.raises(FormatError, match="unknown ARKit channel name") as info:
        read_keyframeface(p)
    assert len(str(info.value)) < 300
