"""The released SemanticFace model's answer form (numbered Markdown sections, then one flat JSON object
of channels), its inference JSON Lines, and the jsonl2csv-style conversion to a Live Link Face CSV.

The fixtures are written here in the same shape as the released repository's published example
outputs (section titles, bullets, two-space line ends, one-decimal values, ``-0.0``); their words are
our own.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from facecore import arkit
from facecore.io import (
    FormatError,
    format_answer,
    parse_semanticface,
    read_csv,
    read_semanticface,
    read_semanticface_answers,
    semanticface_to_csv,
    structure_analysis,
)


def _channels(seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    vals = np.round(rng.uniform(arkit.LOW, arkit.HIGH) * (rng.random(61) < 0.4), 1)
    vals[arkit.index("HeadRoll")] = -0.0  # the released answers write signed zeros
    return {n: float(v) for n, v in zip(arkit.NAMES, vals)}


LABELLED = """1. **Facial Expression Category**: A broad smile mixed with a touch of surprise.  
2. **Detailed Facial Muscle Movements**:  
   - **Eyes**: Both eyes are open wide (strong), gaze slightly lowered.  
   - **Brows**: Outer brows moderately lifted, inner brows a little raised.  
   - **Mouth**: A strong smile on both sides with the lower lip pulled down.  
   - **Jaw**: Slightly open and pushed forward.  
3. **Emotional Implication**: Joy with some alertness; possibly **mild surprise**.  
4. **Symmetry**: Largely symmetrical, the lower lip a bit lower on the right.

"""  # noqa: W291 (the released answers end lines in two spaces)

UNLABELLED = """1. **Facial Expression Category**:  
   A **squinting smile**, perhaps from concentration.

2. **Detailed Muscle Movements**:  
   - **Bilateral eye squinting** (high intensity) with **slight downward gaze**.  
   - **Smiling on both sides** (moderate) with **mild dimpling**.  
   - **Slight lowering of the eyebrows** and a faint nasolabial fold lift.  

3. **Emotional Implication**:  
   Probably **amusement**, with some focus.

4. **Symmetry or Asymmetry**:  
   The expression is **highly symmetrical**.

"""  # noqa: W291


@pytest.mark.parametrize("seed", [0, 1])
def test_labelled_sections_then_flat_json(seed):
    channels = _channels(seed)
    analysis, params = parse_semanticface(LABELLED + json.dumps(channels))
    np.testing.assert_array_equal(params, np.array(list(channels.values()), np.float32))
    assert np.signbit(params[arkit.index("HeadRoll")])  # -0.0 survives
    assert analysis["expression_category"] == "A broad smile mixed with a touch of surprise."
    assert list(analysis["muscle_movements"]) == ["Eyes", "Brows", "Mouth", "Jaw"]
    assert analysis["muscle_movements"]["Jaw"] == "Slightly open and pushed forward."
    assert analysis["muscle_movements_text"].splitlines()[0].startswith("- **Eyes**: Both eyes")
    assert analysis["emotional_implication"] == "Joy with some alertness; possibly mild surprise."
    assert analysis["symmetry"].startswith("Largely symmetrical")


def test_unlabelled_bullets_and_title_variants():
    analysis, params = parse_semanticface(UNLABELLED + json.dumps(_channels(3)))
    assert analysis["expression_category"] == "A squinting smile, perhaps from concentration."
    # Unlabelled bullets go to the region of their first face word ("eyebrows" is a brow).
    assert list(analysis["muscle_movements"]) == ["Eyes", "Mouth", "Brows"]
    assert analysis["muscle_movements"]["Brows"].startswith("Slight lowering of the eyebrows")
    assert analysis["symmetry"] == "The expression is highly symmetrical."
    assert params.shape == (61,)


def test_52_key_variant_and_other_key_orders():
    channels = _channels(4)
    blend = {k: channels[k] for k in reversed(arkit.BLENDSHAPES)}  # reversed order, no pose keys
    _, params = parse_semanticface(LABELLED + json.dumps(blend))
    np.testing.assert_array_equal(params[:52], np.float32([channels[k] for k in arkit.BLENDSHAPES]))
    assert not params[52:].any()
    # The same holds in the prompt's JSON form.
    obj = {"analysis": dict.fromkeys(("expression_category", "muscle_movements", "emotional_implication",
                                      "symmetry"), "x"), "arkit": arkit.to_dict(params, "arkit")}
    for k in arkit.to_dict(params, "arkit"):
        if arkit.index(k) >= 52:
            del obj["arkit"][k]
    np.testing.assert_array_equal(parse_semanticface(json.dumps(obj))[1], params)
    # A partial pose block is still an error in strict mode, and zero-filled when lenient.
    partial = {**blend, "HeadYaw": 0.2}
    with pytest.raises(FormatError, match="missing"):
        parse_semanticface(LABELLED + json.dumps(partial))
    assert parse_semanticface(LABELLED + json.dumps(partial), strict=False)[1][arkit.index("HeadYaw")] == \
        np.float32(0.2)


def test_braces_in_the_analysis_do_not_hide_the_channels():
    text = LABELLED.replace("touch of surprise", "touch of {surprise}") + json.dumps(_channels(5))
    assert parse_semanticface(text)[0]["expression_category"].endswith("{surprise}.")


def test_errors_name_what_was_expected():
    with pytest.raises(FormatError, match=r"nor a released-style answer .*Facial Expression Category"):
        parse_semanticface("The face looks happy to me.")
    with pytest.raises(FormatError, match="no JSON object of ARKit channels") as info:
        parse_semanticface(LABELLED)
    assert info.value.line == 8  # the last section seen
    with pytest.raises(FormatError, match=r"lacks the analysis section\(s\) symmetry"):
        parse_semanticface(LABELLED.split("4. **Symmetry")[0] + json.dumps(_channels(0)))
    bad = {**_channels(0), "JawOpen": "wide"}
    with pytest.raises(FormatError, match="'JawOpen' must be a number"):
        parse_semanticface(LABELLED + json.dumps(bad))
    with pytest.raises(FormatError, match="did you mean 'JawOpen'"):
        parse_semanticface(LABELLED + json.dumps({**_channels(0), "JawOpne": 0.1}))
    with pytest.raises(TypeError, match="text must be a str"):
        parse_semanticface(b"1. **Facial")


def test_structured_json_form():
    analysis = {"expression_category": "smile", "muscle_movements": "Brows: Raised a little. Mouth: Smiling.",
                "emotional_implication": "joy", "symmetry": "mostly symmetric", "confidence": 0.5}
    text = json.dumps({"analysis": analysis, "arkit": _channels(0)})
    assert parse_semanticface(text)[0] == analysis  # as written by default
    got = parse_semanticface(text, structured=True)[0]
    assert got["muscle_movements"] == {"Brows": "Raised a little.", "Mouth": "Smiling."}
    assert got["muscle_movements_text"] == analysis["muscle_movements"] and got["confidence"] == 0.5
    assert structure_analysis({"muscle_movements": ["AU12 lip corner puller", "AU1 inner brow"]})[
        "muscle_movements"] == {"Mouth": "AU12 lip corner puller", "Brows": "AU1 inner brow"}


def _record(answer: str, image: str) -> str:
    # One line as the released inference (ms-swift) writes it.
    return json.dumps({"response": answer, "labels": None, "logprobs": None,
                       "messages": [{"role": "user", "content": "<image>Analyse the face."},
                                    {"role": "assistant", "content": answer}],
                       "images": [{"bytes": None, "path": image}]})


def test_answers_file_and_csv_like_jsonl2csv(tmp_path):
    chans = [_channels(s) for s in range(3)]
    lines = [_record(LABELLED + json.dumps(chans[0]), "img/a.jpg"),
             _record("I cannot see a face here.", "img/b.jpg"),
             _record(UNLABELLED + json.dumps({k: chans[1][k] for k in arkit.BLENDSHAPES}), "img/c.jpg"),
             "",
             _record(LABELLED + json.dumps(chans[2]), "img/d.jpg")]
    src = tmp_path / "result.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=rf"^{src}:2: .*released-style"):
        read_semanticface_answers(src)
    with pytest.warns(UserWarning, match=r"skipped 1 answer\(s\) .* line\(s\) 2 "):
        answers = read_semanticface_answers(src, on_error="skip")
    assert [a.image for a in answers] == ["img/a.jpg", "img/c.jpg", "img/d.jpg"]
    assert [a.line for a in answers] == [1, 3, 5]
    assert answers[1].analysis["muscle_movements"]["Eyes"].startswith("Bilateral eye squinting")

    out = tmp_path / "out.csv"
    with pytest.warns(UserWarning, match="skipped 1"):
        assert semanticface_to_csv(src, out) == 3
    rows = out.read_text().splitlines()
    assert rows[0] == ",".join(("Timecode", "BlendshapeCount") + arkit.NAMES)
    assert [r.split(",")[0] for r in rows[1:]] == ["00:00:00:00.000", "00:00:01:00.000", "00:00:02:00.000"]
    assert all(r.split(",")[1] == "61" for r in rows[1:])
    # Values as written, -0.0 included; the 52-key answer's pose is written as 0.
    assert rows[1].split(",")[2:] == [str(v) for v in chans[0].values()]
    assert rows[2].split(",")[2 + 52:] == ["0.0"] * 9
    track = read_csv(out)
    np.testing.assert_allclose(track.times, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(track.params[2], np.float32(list(chans[2].values())))


def test_one_answer_files(tmp_path):
    chans = _channels(7)
    plain = tmp_path / "answer.txt"
    plain.write_text(LABELLED + json.dumps(chans))
    np.testing.assert_array_equal(read_semanticface(plain)[1], np.float32(list(chans.values())))
    assert [a.image for a in read_semanticface_answers(plain)] == [None]
    one = tmp_path / "one.jsonl"
    one.write_text(_record(LABELLED + json.dumps(chans), "x.jpg") + "\n")
    np.testing.assert_array_equal(read_semanticface(one)[1], np.float32(list(chans.values())))
    two = tmp_path / "two.jsonl"
    two.write_text((_record(LABELLED + json.dumps(chans), "x.jpg") + "\n") * 2)
    with pytest.raises(FormatError, match="holds 2 answers .*read_semanticface_answers"):
        read_semanticface(two)
    with pytest.raises(ValueError, match="on_error must be"):
        read_semanticface_answers(two, on_error="ignore")


def test_format_answer_both_forms_round_trip():
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    params = rng.uniform(arkit.LOW, arkit.HIGH)
    analysis = {"expression_category": "surprise", "muscle_movements": {"Brows": "Raised.", "Jaw": "Open."},
                "emotional_implication": "not clearly observable", "symmetry": "mostly symmetric"}
    want = np.array([round(float(v), 1) for v in params], np.float32)
    md = format_answer(analysis, params)
    assert md.startswith("1. **Facial Expression Category**: surprise  \n2. **Detailed Facial Muscle")
    assert "   - **Jaw**: Open.  \n3. **Emotional Implication**" in md
    got, back = parse_semanticface(md)
    np.testing.assert_array_equal(back, want)
    assert got["muscle_movements"] == analysis["muscle_movements"]
    got, back = parse_semanticface(format_answer(analysis, params, form="json"), structured=True)
    np.testing.assert_array_equal(back, want)
    assert got["muscle_movements"] == analysis["muscle_movements"]
    with pytest.raises(ValueError, match="form must be"):
        format_answer(analysis, params, form="yaml")
