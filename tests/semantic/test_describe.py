"""Stage 1: parameters -> analysis, the released answer text, and reading it back."""

from __future__ import annotations

import numpy as np
import pytest

from facecore import arkit
from facecore.animate import lexicon as lx
from facecore.animate.semantic import SemanticGenerator, au_vector
from facecore.io import ANALYSIS_KEYS, parse_semanticface
from facecore.semantic import analysis_text, answer_text, describe, quantize
from facecore.synth import sample_params

RECOVERY_FLOOR = 0.9  # measured 0.97 over 300 prior samples (docs/semantic.md)


def _face(**channels: float) -> np.ndarray:
    p = np.zeros(61)
    for k, v in channels.items():
        p[arkit.index(k)] = v
    return p


def test_schema_and_determinism():
    p = sample_params(1, 5)[0]
    a = describe(p)
    assert list(a) == list(ANALYSIS_KEYS)
    assert all(isinstance(a[k], str) for k in ("expression_category", "emotional_implication", "symmetry"))
    assert isinstance(a["muscle_movements"], dict) and a["muscle_movements"]
    assert describe(p.numpy().tolist()) == a == describe(p)


def test_neutral_face():
    a = describe(np.zeros(61))
    assert a["expression_category"] == "neutral"
    assert a["emotional_implication"] == "not clearly observable"
    assert a["symmetry"] == "mostly symmetric"
    assert a["muscle_movements"] == {"Face": "No visible muscle movement."}


@pytest.mark.parametrize("emotion", ["happiness", "surprise", "anger", "sadness", "disgust"])
def test_prototypes_are_named(emotion):
    p = au_vector(lx.EMOTIONS[emotion], 0.9)
    a = describe(p)
    assert a["expression_category"] == emotion
    assert emotion in a["emotional_implication"] and "(AU" in a["emotional_implication"]


def test_regions_sides_and_symmetry():
    a = describe(_face(MouthSmileLeft=0.8, MouthSmileRight=0.2, BrowInnerUp=0.5, JawOpen=0.3, HeadYaw=0.2))
    mm = a["muscle_movements"]
    assert list(mm) == ["Brows", "Mouth", "Jaw", "Head"]
    assert mm["Mouth"] == ("The left lip corner is strongly pulled up (AU12), "
                           "the right lip corner is faintly pulled up (AU12).")
    assert mm["Head"] == "The head is turned moderately to the left (AU51)."  # 0.2 / 0.45 per unit
    assert a["symmetry"] == "Asymmetric: the smile is stronger on the left side."
    both = describe(_face(MouthSmileLeft=0.6, MouthSmileRight=0.5))
    assert both["muscle_movements"]["Mouth"] == "Both lip corners are noticeably pulled up (AU12)."
    assert both["symmetry"] == "mostly symmetric"


def test_bad_params():
    with pytest.raises(ValueError, match=r"shape \[61\]"):
        describe(np.zeros(52))
    with pytest.raises(ValueError, match="non-finite values in JawOpen"):
        describe(_face(JawOpen=np.nan))
    with pytest.raises(TypeError, match="must be numbers"):
        describe(np.array(["x"] * 61))
    with pytest.raises(ValueError, match="form must be"):
        answer_text(np.zeros(61), form="yaml")


@pytest.mark.parametrize("form", ["markdown", "json"])
def test_answer_text_round_trips(form):
    params = sample_params(16, 11).numpy()
    params[0] = np.clip(params[0] * 3, -2, 2)  # out of range: clipped before writing
    for p in params:
        text = answer_text(p, form=form)
        analysis, back = parse_semanticface(text, structured=True)
        np.testing.assert_array_equal(back, quantize(p).astype(np.float32))
        want = describe(p)
        assert analysis["muscle_movements"] == want["muscle_movements"]
        assert {k: analysis[k] for k in ANALYSIS_KEYS} == want


def test_markdown_is_the_released_shape():
    p = _face(EyeWideLeft=0.6, EyeWideRight=0.6, JawOpen=0.3, HeadRoll=-0.04)
    text = answer_text(p)
    head, channels = text.split("\n\n")
    assert head == analysis_text(describe(p))
    lines = head.splitlines()
    assert lines[0].startswith("1. **Facial Expression Category**: ") and lines[0].endswith("  ")
    assert lines[1] == "2. **Detailed Facial Muscle Movements**:  "
    assert lines[2].startswith("   - **Eyes**: ")
    assert lines[-2].startswith("3. **Emotional Implication**: ")
    assert lines[-1].startswith("4. **Symmetry**: ")
    assert channels.startswith('{"EyeBlinkLeft": 0.0, ') and '"HeadRoll": -0.0' in channels
    assert channels.count(":") == 61


def test_reading_the_description_back_recovers_the_active_channels():
    """describe -> the animator's SemanticGenerator (lexicon only) -> the active channels, same sign."""
    gen = SemanticGenerator(encoder="off")
    hit = total = 0
    for p in sample_params(120, 21).numpy():
        q = quantize(p)
        back = gen.describe(" ".join(describe(q)["muscle_movements"].values()))
        active = np.flatnonzero(np.abs(q) >= 0.1)
        total += active.size
        hit += int(np.sum((np.sign(back[active]) == np.sign(q[active])) & (np.abs(back[active]) >= 0.01)))
    rate = hit / total
    print(f"active-channel recovery: {rate:.3f} over {total} channels")
    assert rate >= RECOVERY_FLOOR
