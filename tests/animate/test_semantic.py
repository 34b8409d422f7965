"""The semantic generator responds to what the text says (table-driven over many phrasings)."""

from __future__ import annotations

import numpy as np
import pytest

from facecore._names import NAMES
from facecore.animate import SemanticGenerator
from facecore.animate import lexicon as lx
from facecore.animate.semantic import split_clauses, stem

IDX = {n: i for i, n in enumerate(NAMES)}


@pytest.fixture(scope="module")
def gen() -> SemanticGenerator:
    return SemanticGenerator(encoder="off")  # the lexical path alone must get all of these right


def one(gen: SemanticGenerator, text: str, **kw) -> dict[str, float]:
    k = gen.generate([text], **kw)
    assert k.shape == (1, 61) and k.dtype == np.float32
    return {n: float(k[0, i]) for n, i in IDX.items()}


def both(v: dict[str, float], base: str) -> float:
    return min(v[base + "Left"], v[base + "Right"])


PRESSED_LIPS = [
    "The lips press together with visible tension.",
    "She presses her lips together.",
    "pressed lips",
    "His mouth is pressed tight.",
    "lips pursed",
    "The lips are tightly sealed.",
    "He clamps his lips shut.",
]
LOWERED_GAZE = [
    "The gaze is lowered.",
    "She looks down at the floor.",
    "eyes downcast",
    "Her eyes drop to the ground.",
    "He glances downward.",
    "looking down",
]
RESTRAINED_SMILE = [
    "both mouth corners form a small restrained smile",
    "a faint smile",
    "She smiles slightly.",
    "a polite, restrained smile",
    "a hint of a smile plays on the lips",
    "a subtle smile",
]
BROAD_SMILE = [
    "a broad smile",
    "She grins widely.",
    "a big beaming smile",
    "He smiles broadly",
]
INNER_BROWS = [
    "the inner brows lift slightly",
    "The inner eyebrows rise.",
    "raised inner brows",
    "her inner brows are lifted",
    "the middle of the brows goes up",
]
FURROWED = ["furrowed brows", "The brows knit together.", "He lowers his brows.", "scowling eyebrows"]
JAW_OPEN = ["The mouth falls open.", "her jaw drops", "mouth agape", "He opens his mouth wide."]
EYES_CLOSED = ["The eyes close.", "eyes shut tight", "She closes her eyes.", "closed eyes"]
EYES_WIDE = ["The eyes widen.", "wide open eyes", "Her eyes go wide."]
HEAD_DOWN = ["The head lowers.", "She bows her head.", "his head hangs"]
GAZE_UP = ["The gaze rises.", "She looks up.", "eyes turn upward", "He glances up at the ceiling."]


@pytest.mark.parametrize("text", PRESSED_LIPS)
def test_pressed_lips_raise_mouth_press(gen, text):
    v = one(gen, text)
    assert both(v, "MouthPress") >= 0.3, v
    assert both(v, "MouthSmile") == 0.0


@pytest.mark.parametrize("text", LOWERED_GAZE)
def test_lowered_gaze_raises_look_down_and_lowers_eye_pitch(gen, text):
    v = one(gen, text)
    assert both(v, "EyeLookDown") >= 0.15, v
    assert v["LeftEyePitch"] < -0.05 and v["RightEyePitch"] < -0.05
    assert v["EyeLookUpLeft"] == 0.0


@pytest.mark.parametrize("text", GAZE_UP)
def test_raised_gaze(gen, text):
    v = one(gen, text)
    assert both(v, "EyeLookUp") >= 0.1, v
    assert v["LeftEyePitch"] > 0.05 and v["RightEyePitch"] > 0.05


@pytest.mark.parametrize("text", RESTRAINED_SMILE)
def test_restrained_smile_is_modest(gen, text):
    v = one(gen, text)
    assert 0.08 <= both(v, "MouthSmile") <= 0.4, v


@pytest.mark.parametrize("text", BROAD_SMILE)
def test_broad_smile_is_strong(gen, text):
    v = one(gen, text)
    assert both(v, "MouthSmile") >= 0.7, v
    assert both(v, "CheekSquint") > 0.1  # Duchenne: AU6 comes with a real smile


def test_smile_intensity_orders_with_words(gen):
    s = [both(one(gen, t), "MouthSmile") for t in ("a barely visible smile", "a slight smile", "a smile",
                                                   "a broad smile", "a completely huge smile")]
    assert s == sorted(s) and s[0] < s[-1], s


@pytest.mark.parametrize("text", INNER_BROWS)
def test_raised_inner_brows_raise_brow_inner_up(gen, text):
    v = one(gen, text)
    assert v["BrowInnerUp"] >= 0.15, v
    assert v["BrowOuterUpLeft"] == 0.0  # inner only: AU1 without AU2


@pytest.mark.parametrize("text", FURROWED)
def test_furrowed_brows(gen, text):
    v = one(gen, text)
    assert both(v, "BrowDown") >= 0.3, v


@pytest.mark.parametrize("text", JAW_OPEN)
def test_jaw_open(gen, text):
    assert one(gen, text)["JawOpen"] >= 0.3


@pytest.mark.parametrize("text", EYES_CLOSED)
def test_eyes_closed(gen, text):
    assert both(one(gen, text), "EyeBlink") >= 0.9


@pytest.mark.parametrize("text", EYES_WIDE)
def test_eyes_wide(gen, text):
    assert both(one(gen, text), "EyeWide") >= 0.4


@pytest.mark.parametrize("text", HEAD_DOWN)
def test_head_down_lowers_head_pitch(gen, text):
    assert one(gen, text)["HeadPitch"] <= -0.1


@pytest.mark.parametrize("text, channel, sign", [
    ("He turns his head to the left.", "HeadYaw", 1),
    ("She turns her head to the right.", "HeadYaw", -1),
    ("tilts the head to the left", "HeadRoll", 1),
    ("looks to the left", "LeftEyeYaw", 1),
    ("glances right", "RightEyeYaw", -1),
])
def test_pose_directions_follow_the_subject_convention(gen, text, channel, sign):
    assert sign * one(gen, text)[channel] > 0.1


@pytest.mark.parametrize("text, on, off", [
    ("the left corner of the mouth lifts into a smile", "MouthSmileLeft", "MouthSmileRight"),
    ("a smile on the right side", "MouthSmileRight", "MouthSmileLeft"),
    ("a lopsided smirk", "MouthSmileLeft", "MouthSmileRight"),
    ("she winks with her right eye", "EyeBlinkRight", "EyeBlinkLeft"),
    ("one brow arches up", "BrowOuterUpLeft", "BrowOuterUpRight"),
])
def test_laterality(gen, text, on, off):
    v = one(gen, text)
    assert v[on] >= 0.2 and v[off] == 0.0, v


@pytest.mark.parametrize("text, on, off", [
    ("She bites her lower lip nervously.", "MouthRollLower", "MouthFrownLeft"),
    ("the lower lip drops", "MouthLowerDownLeft", "MouthFrownLeft"),
    ("His eyes dart to the right and back.", "EyeLookOutRight", "EyeLookOutLeft"),
    ("The mouth twists to the left in doubt.", "MouthLeft", "MouthRollLower"),
    ("He purses his lips and looks away.", "MouthPressLeft", "MouthSmileLeft"),
])
def test_phrasings_that_once_misfired(gen, text, on, off):
    v = one(gen, text)
    assert v[on] >= 0.2 and v[off] == 0.0, v


def test_one_raised_brow_is_one_sided(gen):
    v = one(gen, "She raises one eyebrow.")
    assert v["BrowOuterUpLeft"] >= 0.3 and v["BrowOuterUpRight"] == 0.0
    assert v["BrowInnerUp"] < v["BrowOuterUpLeft"] / 1.5  # a bilateral channel moves half as much


@pytest.mark.parametrize("text, channel", [
    ("without smiling", "MouthSmileLeft"),
    ("no smile", "MouthSmileLeft"),
    ("the eyes do not close", "EyeBlinkLeft"),
    ("The smile disappears.", "MouthSmileLeft"),
    ("the frown slowly fades", "MouthFrownLeft"),
])
def test_negation_keeps_the_channel_at_rest(gen, text, channel):
    assert one(gen, text)[channel] == 0.0


@pytest.mark.parametrize("emotion, channels", [
    ("happiness", ("MouthSmileLeft", "CheekSquintLeft")),
    ("She is deeply sad.", ("MouthFrownLeft", "BrowInnerUp")),
    ("surprise", ("BrowOuterUpLeft", "EyeWideLeft", "JawOpen")),
    ("Fear", ("EyeWideLeft", "MouthStretchLeft")),
    ("anger", ("BrowDownLeft", "EyeSquintLeft")),
    ("disgusted", ("NoseSneerLeft",)),
])
def test_emotion_line_colours_a_neutral_keyframe(gen, emotion, channels):
    v = one(gen, "The face holds still.", emotion=emotion)
    for c in channels:
        assert v[c] > 0.05, (c, v[c])


def test_anxious_background_keeps_the_brows_worried(gen):
    calm = one(gen, "She smiles.")
    anxious = one(gen, "She smiles.", background="A student waits outside an interview room and tries "
                                                 "to hide their anxiety.")
    assert calm["BrowInnerUp"] == 0.0 and anxious["BrowInnerUp"] > 0.05
    assert both(anxious, "MouthSmile") >= both(calm, "MouthSmile")


def test_colouring_does_not_contradict_the_description(gen):
    # A described frown is not tinted with the emotion's smile; described relaxation wins too.
    v = one(gen, "The corners of the mouth turn down.", emotion="joy")
    assert both(v, "MouthSmile") == 0.0 and both(v, "MouthFrown") > 0.2
    v = one(gen, "The brows relax.", emotion="anger")
    assert both(v, "BrowDown") == 0.0


def test_keyframeface_example_sequence(gen):
    k = gen.generate(
        ["The gaze is lowered, the inner brows lift slightly, and the lips press together with visible "
         "tension.",
         "The gaze rises and both mouth corners form a small restrained smile while the brows remain "
         "worried."],
        background="A student waits outside an interview room and tries to hide their anxiety.",
        emotion="Anxiety concealed by a restrained smile.")
    one_, two = ({n: float(r[i]) for n, i in IDX.items()} for r in k)
    assert both(one_, "MouthPress") > both(two, "MouthPress")
    assert both(two, "MouthSmile") > both(one_, "MouthSmile")
    assert one_["LeftEyePitch"] < 0 < two["LeftEyePitch"]
    assert one_["BrowInnerUp"] > 0.1 and two["BrowInnerUp"] > 0.1


def test_outputs_always_in_range(gen):
    texts = ["extremely wide eyes, completely open mouth, huge smile, fully raised brows and a head "
             "turned hard to the left while the tongue sticks out"] * 2
    k = gen.generate(texts, emotion="surprise and joy", background="fear")
    assert (k[:, :52] >= 0).all() and (k[:, :52] <= 1).all()
    assert (k[:, 52:] >= -1).all() and (k[:, 52:] <= 1).all()


@pytest.mark.parametrize("bad, err", [([], ValueError), ("a smile", TypeError), ([3], TypeError)])
def test_bad_input(gen, bad, err):
    with pytest.raises(err):
        gen.generate(bad)


def test_clause_splitting_and_stemming():
    assert split_clauses("The gaze rises and a smile forms, while the brows stay worried.") == [
        "The gaze rises", "a smile forms", "the brows stay worried"]
    assert stem("lifts") == stem("lifted") == stem("lifting") == stem("lift")
    assert stem("brows") == stem("brow") and stem("presses") == stem("pressed") == "press"
    assert stem("smiles") == stem("smiling") == stem("smile")


def test_lexicon_is_consistent():
    for entry in lx.ENTRIES:
        for au in entry.aus:
            assert au in lx.ACTION_UNITS, (entry.name, au)
    for emo, aus in lx.EMOTIONS.items():
        assert emo in lx.EMOTION_WORDS
        for au in aus:
            assert au in lx.ACTION_UNITS, (emo, au)
    for _, (_, channels) in lx.ACTION_UNITS.items():
        for ch in channels:
            name = ch.replace("{S}", "Left").replace("{E}", "LeftEye")
            assert name in IDX, name
