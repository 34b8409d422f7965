"""The FACS lexicon: action units, gaze and head moves, emotion prototypes, intensity and side words.

Everything the semantic generator knows about faces lives here as data, so that a reader can check
each mapping against the FACS manual (Ekman, Friesen & Hager 2002) and Apple's ARKit blendshape
reference without reading any matching code.

- ``ACTION_UNITS``: AU number -> (FACS name, {ARKit channel: weight}). ``{S}`` in a channel name
  stands for ``Left``/``Right``; such a channel follows the laterality of the phrase ("left",
  "one side"), the others are bilateral. Pose channels use ``{E}`` for the eye prefix
  (``LeftEye``/``RightEye``).
- ``ENTRIES``: phrase patterns. Each entry is a list of word groups: a clause matches the entry
  when every group has a word in the clause (after light stemming), all within a short window;
  the entry then contributes its action units at the phrase's intensity (or the entry's default).
  ``examples`` are natural phrasings used by the optional sentence encoder for free text.
- ``EMOTIONS``: prototypes as AU combinations (EMFACS-style), used by emotion/background lines and
  by emotion words inside keyframe descriptions.
- ``INTENSITY_WORDS`` and ``SIDE_WORDS``: modifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- action units -------------------------------------------------------------------------------
# Weights are the channel value at AU intensity 1 (FACS level E). Pose weights are signed.
ACTION_UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "1": ("inner brow raiser", {"BrowInnerUp": 1.0}),
    "2": ("outer brow raiser", {"BrowOuterUp{S}": 1.0}),
    "4": ("brow lowerer", {"BrowDown{S}": 1.0}),
    "5": ("upper lid raiser", {"EyeWide{S}": 1.0}),
    "6": ("cheek raiser", {"CheekSquint{S}": 1.0, "EyeSquint{S}": 0.4}),
    "7": ("lid tightener", {"EyeSquint{S}": 1.0}),
    "9": ("nose wrinkler", {"NoseSneer{S}": 1.0, "BrowDown{S}": 0.3, "MouthUpperUp{S}": 0.2}),
    "10": ("upper lip raiser", {"MouthUpperUp{S}": 1.0, "NoseSneer{S}": 0.2}),
    "12": ("lip corner puller", {"MouthSmile{S}": 1.0}),
    "13": ("sharp lip puller", {"MouthSmile{S}": 0.5, "CheekSquint{S}": 0.4, "MouthDimple{S}": 0.3}),
    "14": ("dimpler", {"MouthDimple{S}": 1.0, "MouthPress{S}": 0.2}),
    "15": ("lip corner depressor", {"MouthFrown{S}": 1.0}),
    "16": ("lower lip depressor", {"MouthLowerDown{S}": 1.0}),
    "17": ("chin raiser", {"MouthShrugLower": 1.0, "MouthShrugUpper": 0.3}),
    "18": ("lip pucker", {"MouthPucker": 1.0}),
    "19": ("tongue show", {"TongueOut": 1.0, "JawOpen": 0.3}),
    "20": ("lip stretcher", {"MouthStretch{S}": 1.0}),
    "22": ("lip funneler", {"MouthFunnel": 1.0}),
    "23": ("lip tightener", {"MouthPress{S}": 0.5, "MouthRollLower": 0.25, "MouthRollUpper": 0.25}),
    "24": ("lip pressor", {"MouthPress{S}": 1.0, "MouthClose": 0.25}),
    "25": ("lips part", {"JawOpen": 0.12, "MouthLowerDown{S}": 0.35, "MouthUpperUp{S}": 0.15}),
    "26": ("jaw drop", {"JawOpen": 1.0}),
    "27": ("mouth stretch", {"JawOpen": 1.0, "MouthStretch{S}": 0.3}),
    "28": ("lip suck", {"MouthRollLower": 1.0, "MouthRollUpper": 1.0}),
    "29": ("jaw thrust", {"JawForward": 1.0}),
    "30L": ("jaw sideways left", {"JawLeft": 1.0}),
    "30R": ("jaw sideways right", {"JawRight": 1.0}),
    "34": ("cheek puff", {"CheekPuff": 1.0, "MouthClose": 0.3}),
    "38": ("nostril dilator", {"NoseSneer{S}": 0.3}),
    "41": ("lid droop", {"EyeBlink{S}": 0.35}),
    "42": ("slit", {"EyeBlink{S}": 0.6, "EyeSquint{S}": 0.3}),
    "43": ("eyes closed", {"EyeBlink{S}": 1.0}),
    "46": ("wink", {"EyeBlink{S}": 1.0, "CheekSquint{S}": 0.3}),
    "51": ("head turn left", {"HeadYaw": 0.45}),
    "52": ("head turn right", {"HeadYaw": -0.45}),
    "53": ("head up", {"HeadPitch": 0.35}),
    "54": ("head down", {"HeadPitch": -0.35}),
    "55": ("head tilt left", {"HeadRoll": 0.3}),
    "56": ("head tilt right", {"HeadRoll": -0.3}),
    "57": ("head forward", {"HeadPitch": -0.08}),
    "58": ("head back", {"HeadPitch": 0.08}),
    # Gaze: both the ARKit look shapes and the eye rotations (yaw > 0 toward the subject's left).
    "61": ("eyes turn left", {"EyeLookOutLeft": 0.8, "EyeLookInRight": 0.8,
                              "LeftEyeYaw": 0.5, "RightEyeYaw": 0.5}),
    "62": ("eyes turn right", {"EyeLookInLeft": 0.8, "EyeLookOutRight": 0.8,
                               "LeftEyeYaw": -0.5, "RightEyeYaw": -0.5}),
    "63": ("eyes up", {"EyeLookUp{S}": 0.6, "{E}Pitch": 0.45}),
    "64": ("eyes down", {"EyeLookDown{S}": 0.6, "{E}Pitch": -0.45}),
    "65": ("walleye", {"EyeLookOut{S}": 0.6}),
    "66": ("cross-eye", {"EyeLookIn{S}": 0.6}),
    "M1": ("nod (head lowered slightly)", {"HeadPitch": -0.15}),
    "M2": ("mouth sideways left", {"MouthLeft": 1.0}),
    "M3": ("mouth sideways right", {"MouthRight": 1.0}),
    "M4": ("lips closed over open jaw", {"MouthClose": 1.0}),
}

# --- intensity and side words -------------------------------------------------------------------
# A phrase's intensity: the smallest diminisher present, else the largest amplifier, else the
# entry's default. Values are AU intensity (FACS A..E ~ 0.1 .. 1.0).
INTENSITY_WORDS: dict[str, float] = {
    "barely": 0.12, "hint": 0.15, "trace": 0.15, "faint": 0.18, "faintly": 0.18, "almost": 0.2,
    "tiny": 0.2, "minimal": 0.2, "slightly": 0.28, "slight": 0.28, "little": 0.3, "small": 0.3,
    "subtle": 0.3, "subtly": 0.3, "gentle": 0.3, "gently": 0.3, "soft": 0.3, "softly": 0.3,
    "light": 0.3, "lightly": 0.3, "mild": 0.32, "mildly": 0.32, "restrained": 0.28,
    "polite": 0.3, "weak": 0.25, "faded": 0.2, "fading": 0.25, "tentative": 0.28, "hesitant": 0.28,
    "somewhat": 0.45, "partly": 0.4, "partially": 0.4, "half": 0.45, "moderate": 0.5,
    "moderately": 0.5, "visible": 0.55, "visibly": 0.55, "noticeably": 0.6, "noticeable": 0.6,
    "clearly": 0.65, "clear": 0.65, "firmly": 0.75, "firm": 0.75, "tension": 0.7, "tense": 0.7,
    "tightly": 0.8, "strongly": 0.85, "strong": 0.85, "hard": 0.8, "deep": 0.8, "deeply": 0.8,
    "big": 0.8, "broad": 0.85, "broadly": 0.85, "wide": 0.8, "widely": 0.8, "large": 0.8,
    "intense": 0.9, "intensely": 0.9, "sharply": 0.8, "very": 0.85, "fully": 0.95, "full": 0.95,
    "completely": 1.0, "totally": 1.0, "extremely": 1.0, "maximally": 1.0, "huge": 0.95,
    "enormous": 1.0, "beaming": 0.9, "grin": 0.8, "grins": 0.8, "grinning": 0.8,
}
DIMINISH_BELOW = 0.5  # intensity words under this are diminishers (they win over amplifiers)

SIDE_WORDS: dict[str, str] = {
    "left": "Left", "right": "Right",
    # One-sided without a named side: the subject's left by convention (contempt is often shown so).
    "one": "Left", "lopsided": "Left", "asymmetric": "Left", "asymmetrical": "Left",
    "unilateral": "Left", "crooked": "Left", "half": "Left", "wink": "Left", "winks": "Left",
    "smirk": "Left", "smirks": "Left", "smirking": "Left",
}
# "one" only means a side next to these words ("one side", "one corner", "one eye").
SIDE_CONTEXT = {"side", "corner", "eye", "brow", "eyebrow", "cheek", "half", "nostril"}
BOTH_WORDS = {"both", "each", "two", "bilateral", "symmetric", "symmetrical", "evenly"}

NEGATIONS = {"no", "not", "without", "never", "nor", "neither", "stop", "stops", "stopped", "cease",
             "ceases", "n't", "lack", "lacking", "absent", "instead", "rather"}

# Words after an action that end it: "the smile disappears", "the frown fades".
CESSATION = {"disappear", "disappears", "disappeared", "vanish", "vanishes", "vanished", "gone", "fade",
             "fades", "faded", "fading", "drain", "drains", "drained", "melt", "melts", "away"}

STOPWORDS = {"the", "a", "an", "of", "her", "his", "their", "its", "to", "is", "are", "be", "it",
             "with", "in", "into", "at", "on", "this", "that", "as", "so", "while", "remain",
             "remains", "stay", "stays", "keep", "keeps", "still", "both", "s"}


# --- phrase entries -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One lexicon entry: word groups that must all occur, and what they mean."""

    name: str
    groups: tuple[tuple[str, ...], ...]
    aus: dict[str, float]              # AU -> relative weight (multiplied by the phrase intensity)
    default: float = 0.6               # intensity when the phrase has no intensity word
    examples: tuple[str, ...] = ()     # natural phrasings for the sentence encoder
    region: str = ""                   # region relaxed by "neutral"/"relaxed" phrases
    lateral: bool = True               # whether side words apply
    window: int = 7                    # matched words must lie within this many tokens
    extra: dict[str, float] = field(default_factory=dict)  # raw channel values (x intensity)


BROW = ("brow", "brows", "eyebrow", "eyebrows", "forehead")
INNER = ("inner", "center", "centre", "middle", "medial")
OUTER = ("outer", "tail", "tails", "lateral", "arch", "arched")
UP = ("up", "raise", "raised", "raising", "lift", "lifted", "lifting", "rise", "rising", "rose",
      "upward", "upwards", "high", "higher", "arched", "arch", "shoot", "jump", "climb")
DOWN = ("down", "lower", "lowered", "lowering", "drop", "dropped", "drops", "sink", "sinks",
        "downward", "downwards", "downcast", "floor", "ground", "fall", "falls", "droop", "lap")
FURROW = ("furrow", "furrowed", "knit", "knitted", "draw", "drawn", "pinch", "pinched", "frown",
          "scowl", "scowling", "glower", "glare", "glaring", "pull", "pulled", "together", "lowered",
          "lower", "down", "bunched", "crease", "creased", "angry", "stern")
WORRY = ("worry", "worried", "anxious", "concern", "concerned", "pleading", "sad", "plead",
         "tilted", "upturned", "distressed", "apprehensive")
EYE = ("eye", "eyes", "eyelid", "eyelids", "lid", "lids", "upperlid", "upperlids", "lowerlid",
       "lowerlids")
GAZE = ("gaze", "look", "looks", "looking", "glance", "glances", "glancing", "stare", "stares",
        "staring", "eye", "eyes", "peer", "peers", "peek", "gazes", "gazing", "eyeline", "sight")
# Gaze turning sideways: no bare "eye" here, so "her left eye winks" is not a glance to the left.
GAZE_SIDE = tuple(w for w in GAZE if w not in ("eye", "eyes")) + (
    "dart", "darts", "shift", "shifts", "turn", "turns", "move", "moves", "flick", "flicks")
# "lower lip"/"upper lip"/"upper lid" are joined into one word by the tokenizer, so that the
# adjective "lower" is not read as the verb (the lower lip is not "lowered").
LOWER_LIP = ("lowerlip", "lowerlips")
UPPER_LIP = ("upperlip", "upperlips")
LIP = ("lip", "lips", "mouth") + LOWER_LIP + UPPER_LIP
CORNER = ("corner", "corners", "lip", "lips", "mouth")
PRESS = ("press", "pressed", "pressing", "presses", "purse", "pursed", "compress", "compressed",
         "clamp", "clamped", "seal", "sealed", "thin", "thinned", "tighten", "tightened", "tight",
         "tense", "tension", "clench", "clenched", "line", "set")
SMILE = ("smile", "smiles", "smiling", "smiled", "grin", "grins", "grinning", "beam", "beaming",
         "smirk", "smirks", "smirking")
OPEN = ("open", "opens", "opened", "opening", "part", "parted", "parts", "parting", "gape",
        "gaping", "agape", "drop", "dropped", "drops", "slack", "hang", "hangs", "fall", "falls")
JAW = ("jaw", "mouth", "chin")
HEAD = ("head", "face", "chin")
LEFT = ("left",)
RIGHT = ("right",)
TURN = ("turn", "turns", "turned", "turning", "rotate", "rotates", "rotated", "swivel", "swivels",
        "swing", "swings", "look", "looks", "toward", "towards")
TILT = ("tilt", "tilts", "tilted", "tilting", "cock", "cocked", "cocks", "lean", "leans", "incline")
CLOSE = ("close", "closed", "closes", "closing", "shut", "shuts")
NEUTRAL = ("neutral", "relax", "relaxed", "relaxes", "relaxing", "rest", "resting", "calm", "soften",
           "softens", "softened", "blank", "smooth", "smooths", "loosen", "loosens", "ease", "eases")

ENTRIES: tuple[Entry, ...] = (
    # Brows
    Entry("inner brow raise", (INNER, BROW, UP), {"1": 1.0}, 0.55,
          ("the inner brows lift", "raised inner eyebrows", "the middle of the brows goes up"),
          "brow", lateral=False),
    Entry("outer brow raise", (OUTER, BROW, UP), {"2": 1.0}, 0.55,
          ("the outer brows lift", "the tails of the eyebrows rise"), "brow"),
    Entry("brow raise", (BROW, UP), {"1": 0.9, "2": 1.0}, 0.6,
          ("raised eyebrows", "the brows go up", "eyebrows lifted high"), "brow"),
    Entry("brow lower", (BROW, FURROW), {"4": 1.0}, 0.6,
          ("furrowed brows", "the brows knit together", "a deep frown between the brows",
           "scowling eyebrows"), "brow"),
    Entry("worried brows", (BROW, WORRY), {"1": 0.8, "4": 0.45}, 0.55,
          ("worried brows", "brows pinched upward in concern", "pleading eyebrows"), "brow",
          lateral=False),
    Entry("brow relax", (BROW, NEUTRAL), {}, 0.0, ("the brows relax", "a smooth forehead"), "brow"),
    # Eyes and lids
    Entry("eyes wide", (EYE, ("wide", "widen", "widened", "widens", "widening", "bulge", "pop",
                              "round", "saucer")), {"5": 1.0}, 0.65,
          ("the eyes widen", "wide open eyes", "eyes pop open"), "eye", window=5),
    Entry("eyes narrow", (EYE, ("narrow", "narrowed", "narrows", "narrowing", "squint", "squints",
                                "squinted", "squinting", "tighten", "tightened", "slit")),
          {"7": 1.0}, 0.55, ("the eyes narrow", "squinting eyes", "narrowed eyes"), "eye"),
    Entry("squint", (("squint", "squints", "squinting", "squinted"),), {"7": 1.0, "6": 0.3}, 0.55,
          ("squints", "a suspicious squint"), "eye"),
    Entry("eyes closed", (EYE, CLOSE), {"43": 1.0}, 1.0,
          ("the eyes close", "eyes shut tight", "closed eyes"), "eye"),
    Entry("blink", (("blink", "blinks", "blinking", "blinked"),), {"43": 1.0}, 1.0,
          ("a blink",), "eye", lateral=False),
    Entry("wink", (("wink", "winks", "winking", "winked"),), {"46": 1.0, "12": 0.25}, 1.0,
          ("a wink",), "eye"),
    Entry("droopy lids", (EYE, ("droop", "droops", "drooping", "droopy", "heavy", "hooded",
                                "half", "sleepy", "tired", "drowsy", "heavily")),
          {"41": 1.0}, 0.7, ("heavy eyelids", "drowsy half closed eyes", "droopy lids"), "eye"),
    Entry("eye roll", (("roll", "rolls", "rolled", "rolling"), EYE), {"63": 1.3, "41": 0.5}, 0.6,
          ("rolls the eyes", "an exasperated eye roll"), "gaze", lateral=False),
    Entry("eyes relax", (EYE, NEUTRAL), {}, 0.0, ("the eyes relax",), "eye"),
    # Gaze (before head: "looks down" is gaze, "head down" is head)
    Entry("gaze down", (GAZE, DOWN), {"64": 1.0, "M1": 0.5}, 0.5,
          ("the gaze is lowered", "looks down at the floor", "downcast eyes", "eyes drop"),
          "gaze", lateral=False),
    Entry("gaze up", (GAZE, UP), {"63": 1.0}, 0.45,
          ("the gaze rises", "looks up", "eyes turn upward", "glances at the ceiling"), "gaze",
          lateral=False),
    Entry("gaze left", (GAZE_SIDE, LEFT), {"61": 1.0}, 0.5,
          ("looks to the left", "glances left", "eyes dart left"), "gaze", lateral=False),
    Entry("gaze right", (GAZE_SIDE, RIGHT), {"62": 1.0}, 0.5,
          ("looks to the right", "glances right", "eyes dart right"), "gaze", lateral=False),
    Entry("gaze away", (GAZE, ("away", "avert", "averted", "averts", "aside", "sideways", "elsewhere",
                               "off")), {"61": 0.8, "64": 0.4}, 0.5,
          ("averted gaze", "looks away", "eyes dart aside"), "gaze", lateral=False),
    Entry("gaze forward", (GAZE, ("forward", "ahead", "straight", "camera", "viewer", "direct",
                                  "directly", "front", "center", "centre", "meet", "meets", "back")),
          {}, 0.0, ("looks straight ahead", "meets the viewer's eyes", "direct gaze"), "gaze",
          lateral=False),
    # Mouth
    Entry("lip press", (LIP, PRESS), {"24": 1.0}, 0.6,
          ("the lips press together", "pressed lips", "pursed lips", "lips tightly sealed",
           "a thin tight line of a mouth"), "mouth"),
    Entry("lip tighten", (LIP, ("tight", "tightened", "tighten", "tightens", "narrow", "narrowed")),
          {"23": 1.0}, 0.55, ("tightened lips", "the lips narrow"), "mouth"),
    Entry("smile", (SMILE,), {"12": 1.0, "6": 0.35}, 0.6,
          ("a smile", "smiles warmly", "a grin", "the face lights up with a smile"), "mouth"),
    Entry("corners up", (CORNER, UP), {"12": 1.0}, 0.5,
          ("the mouth corners lift", "corners of the lips turn up", "lips curl upward"), "mouth"),
    Entry("corners down", (CORNER, DOWN), {"15": 1.0}, 0.55,
          ("the corners of the mouth turn down", "downturned lips", "lips pulled down"), "mouth"),
    Entry("frown mouth", (("frown", "frowns", "frowning", "pout", "pouts", "pouting", "sulk",
                           "grimace", "downturned"),), {"15": 0.9, "17": 0.4}, 0.55,
          ("a frown", "a sulky pout", "a downturned mouth"), "mouth"),
    Entry("jaw drop", (JAW, OPEN), {"26": 1.0, "25": 0.6}, 0.5,
          ("the mouth falls open", "the jaw drops", "mouth agape", "open mouth"), "mouth",
          lateral=False),
    Entry("lips part", (LIP, ("part", "parts", "parted", "parting", "apart", "separate", "separated")),
          {"25": 1.0, "26": 0.2}, 0.6, ("the lips part", "slightly parted lips"), "mouth",
          lateral=False),
    Entry("gasp", (("gasp", "gasps", "gasping", "yawn", "yawns", "yawning", "scream", "screams",
                    "shout", "shouts", "shouting", "yell", "yells"),), {"27": 1.0, "5": 0.4}, 0.75,
          ("a gasp", "a wide yawn", "screams"), "mouth", lateral=False),
    Entry("pucker", (("pucker", "puckers", "puckered", "kiss", "pout", "pouts", "pouting"),),
          {"18": 1.0}, 0.6, ("puckered lips", "lips pushed out as if to kiss"), "mouth",
          lateral=False),
    Entry("funnel", (("funnel", "funnels", "funneled", "funnelled", "oh", "o", "whistle", "round",
                      "rounded", "oval"), LIP), {"22": 1.0, "26": 0.2}, 0.6,
          ("lips form an O", "a rounded oh mouth", "funnelled lips"), "mouth", lateral=False),
    Entry("lip stretch", (LIP, ("stretch", "stretched", "stretches", "taut", "wide", "tense",
                                "grimace", "horizontal", "sideways")), {"20": 1.0}, 0.55,
          ("lips stretched wide", "a taut horizontal mouth", "a grimace"), "mouth"),
    Entry("chin raise", (("chin",), UP), {"17": 1.0}, 0.55,
          ("the chin raises and wrinkles", "chin pushed up"), "mouth", lateral=False),
    Entry("chin quiver", (("chin", "lip", "lips"), ("quiver", "quivers", "quivering", "tremble",
                                                    "trembles", "trembling", "wobble", "wobbles")),
          {"17": 0.8, "15": 0.5}, 0.55, ("a trembling chin", "quivering lips"), "mouth",
          lateral=False),
    Entry("lip bite", (LIP, ("bite", "bites", "biting", "bitten", "suck", "sucked", "sucks", "roll",
                             "rolled", "rolls", "tuck", "tucked", "inward", "inwards")),
          {"28": 1.0}, 0.6, ("bites the lower lip", "lips rolled inward"), "mouth", lateral=False),
    Entry("corners curl up", (("corner", "corners"), ("curl", "curls", "curled", "curling", "tug", "tugs",
                                                      "twitch", "twitches", "quirk", "quirks")),
          {"12": 1.0}, 0.45, ("the corners of the mouth curl", "a corner of the mouth twitches"),
          "mouth"),
    Entry("lip curl", (("lip", "lips"), ("curl", "curls", "curled", "sneer", "sneers", "sneering", "snarl")),
          {"10": 1.0}, 0.55, ("the upper lip curls", "a sneering lip"), "mouth"),
    Entry("upper lip raise", (UPPER_LIP, UP), {"10": 1.0}, 0.55,
          ("the upper lip rises",), "mouth"),
    Entry("lower lip down", (LOWER_LIP, DOWN + ("pull", "pulls", "pulled", "sag", "sags")),
          {"16": 1.0}, 0.55, ("the lower lip drops",), "mouth"),
    Entry("lower lip out", (LOWER_LIP, ("out", "push", "pushes", "pushed", "jut", "juts", "stick",
                                        "sticks", "protrude", "protrudes")), {"17": 0.6, "18": 0.5},
          0.55, ("the lower lip pushes out",), "mouth", lateral=False),
    Entry("bared teeth", (("bare", "bares", "bared", "baring", "grit", "grits", "gritted", "gritting",
                           "clench", "clenches", "clenched", "show", "shows", "showing"),
                          ("teeth", "tooth")), {"10": 0.9, "20": 0.6, "25": 0.5, "16": 0.4}, 0.6,
          ("bares the teeth", "gritted teeth", "a snarl showing the teeth"), "mouth"),
    Entry("dimple", (("dimple", "dimples", "dimpled", "dimpling"),), {"14": 1.0}, 0.55,
          ("dimples appear",), "mouth"),
    Entry("cheek puff", (("cheek", "cheeks"), ("puff", "puffs", "puffed", "inflate", "inflated",
                                               "blow", "blown", "full", "balloon")),
          {"34": 1.0}, 0.7, ("puffed cheeks", "blows out the cheeks"), "mouth", lateral=False),
    Entry("cheek raise", (("cheek", "cheeks"), UP + ("squint", "bunch", "bunched", "push", "pushed")),
          {"6": 1.0}, 0.55, ("the cheeks lift", "cheeks bunch up"), "mouth"),
    Entry("nose wrinkle", (("nose", "nostril", "nostrils"), ("wrinkle", "wrinkles", "wrinkled",
                                                              "scrunch", "scrunches", "scrunched",
                                                              "crinkle", "crinkles", "sneer",
                                                              "sneers", "flare", "flares",
                                                              "flared")),
          {"9": 1.0}, 0.55, ("a wrinkled nose", "the nose scrunches up"), "mouth"),
    Entry("tongue out", (("tongue",), ("out", "stick", "sticks", "stuck", "show", "shows", "poke",
                                       "pokes", "protrude", "protrudes", "lick", "licks")),
          {"19": 1.0}, 0.8, ("sticks out the tongue",), "mouth", lateral=False),
    Entry("jaw forward", (("jaw", "chin"), ("forward", "thrust", "thrusts", "jut", "juts", "jutting",
                                            "out")), {"29": 1.0}, 0.55,
          ("the jaw juts forward",), "mouth", lateral=False),
    Entry("jaw left", (("jaw",), LEFT), {"30L": 1.0}, 0.5, ("the jaw shifts left",), "mouth",
          lateral=False, window=5),
    Entry("jaw right", (("jaw",), RIGHT), {"30R": 1.0}, 0.5, ("the jaw shifts right",), "mouth",
          lateral=False, window=5),
    Entry("mouth left", (("mouth", "lips"), ("shift", "shifts", "pull", "pulls", "pulled", "twist",
                                             "twists", "skew"), LEFT), {"M2": 1.0}, 0.5,
          ("the mouth pulls to the left",), "mouth", lateral=False),
    Entry("mouth right", (("mouth", "lips"), ("shift", "shifts", "pull", "pulls", "pulled", "twist",
                                              "twists", "skew"), RIGHT), {"M3": 1.0}, 0.5,
          ("the mouth pulls to the right",), "mouth", lateral=False),
    Entry("mouth closed", (("mouth", "lips", "jaw"), CLOSE), {"24": 0.15}, 0.5,
          ("the mouth closes", "lips closed"), "mouth", lateral=False),
    Entry("mouth relax", (("mouth", "lips", "jaw"), NEUTRAL), {}, 0.0, ("the mouth relaxes",),
          "mouth"),
    # Head
    Entry("head down", (HEAD, DOWN + ("bow", "bows", "bowed", "hang", "hangs", "hung", "dip",
                                      "dips")), {"54": 1.0}, 0.5,
          ("the head lowers", "bows the head", "head hangs"), "head", lateral=False),
    Entry("head up", (HEAD, UP + ("back", "tip", "tips", "tilt", "tilts")), {"53": 1.0}, 0.5,
          ("lifts the head", "chin up", "the head tips back"), "head", lateral=False),
    Entry("nod", (("nod", "nods", "nodding", "nodded"),), {"54": 0.5}, 0.5, ("a nod",), "head",
          lateral=False),
    Entry("head turn left", (HEAD, TURN, LEFT), {"51": 1.0}, 0.5,
          ("turns the head to the left",), "head", lateral=False),
    Entry("head turn right", (HEAD, TURN, RIGHT), {"52": 1.0}, 0.5,
          ("turns the head to the right",), "head", lateral=False),
    Entry("head turn away", (HEAD, ("away", "aside", "sideways")), {"51": 1.0}, 0.5,
          ("turns the face away",), "head", lateral=False),
    Entry("head tilt left", (HEAD, TILT, LEFT), {"55": 1.0}, 0.5,
          ("tilts the head to the left",), "head", lateral=False),
    Entry("head tilt right", (HEAD, TILT, RIGHT), {"56": 1.0}, 0.5,
          ("tilts the head to the right",), "head", lateral=False),
    Entry("head tilt", (HEAD, TILT), {"55": 1.0}, 0.45,
          ("tilts the head", "a quizzical head tilt", "cocks the head"), "head", lateral=False),
    Entry("head shake", (("shake", "shakes", "shaking"), HEAD), {"52": 0.4}, 0.5,
          ("shakes the head",), "head", lateral=False),
    Entry("head forward", (HEAD, ("forward", "lean", "leans", "toward", "towards")), {"57": 1.0},
          0.6, ("leans the head forward",), "head", lateral=False),
    Entry("head straight", (HEAD, ("straight", "level", "upright", "center", "centre", "neutral",
                                   "front", "forward")), {}, 0.0,
          ("the head returns to center",), "head", lateral=False),
    # Whole face
    Entry("neutral face", (("face", "expression", "features"), NEUTRAL), {}, 0.0,
          ("a neutral expression", "the face relaxes completely", "a blank face"), "all",
          lateral=False),
)

# Which channels each region covers (used by "relax" entries and colouring).
REGIONS: dict[str, tuple[str, ...]] = {
    "brow": ("BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight"),
    "eye": ("EyeBlinkLeft", "EyeBlinkRight", "EyeSquintLeft", "EyeSquintRight", "EyeWideLeft",
            "EyeWideRight"),
    "gaze": ("EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
             "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
             "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
             "RightEyeRoll"),
    "mouth": ("JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
              "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
              "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight",
              "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper",
              "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
              "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight",
              "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight",
              "TongueOut"),
    "head": ("HeadYaw", "HeadPitch", "HeadRoll"),
}

# Pairs that cannot both be driven by colouring: when a keyframe drives one side, the emotion
# and background layers leave the other alone (a described frown is not tinted with a smile).
ANTAGONISTS: tuple[tuple[str, str], ...] = (
    ("MouthSmile", "MouthFrown"), ("MouthSmile", "MouthPress"), ("BrowDown", "BrowOuterUp"),
    ("EyeWide", "EyeBlink"), ("EyeWide", "EyeSquint"), ("EyeLookUp", "EyeLookDown"),
    ("EyeLookIn", "EyeLookOut"), ("JawOpen", "MouthPress"), ("JawOpen", "MouthClose"),
    ("MouthPucker", "MouthStretch"), ("MouthPucker", "MouthSmile"),
)

# --- emotion prototypes (EMFACS-style AU combinations, AU -> intensity) --------------------------
EMOTIONS: dict[str, dict[str, float]] = {
    "happiness": {"6": 0.5, "12": 0.7, "25": 0.2},
    "amusement": {"6": 0.7, "12": 0.8, "25": 0.5, "26": 0.25},
    "contentment": {"12": 0.35, "6": 0.2},
    "sadness": {"1": 0.6, "4": 0.4, "15": 0.55, "17": 0.3, "64": 0.3, "41": 0.2},
    "surprise": {"1": 0.8, "2": 0.8, "5": 0.6, "26": 0.45},
    "fear": {"1": 0.7, "2": 0.5, "4": 0.4, "5": 0.7, "20": 0.6, "25": 0.4},
    "anger": {"4": 0.8, "5": 0.3, "7": 0.6, "23": 0.6, "24": 0.3, "9": 0.15},
    "disgust": {"9": 0.7, "10": 0.5, "15": 0.3, "17": 0.3, "4": 0.3},
    "contempt": {"12": 0.35, "14": 0.4},  # unilateral: applied to one side
    "anxiety": {"1": 0.5, "4": 0.35, "24": 0.3, "7": 0.2, "20": 0.15},
    "embarrassment": {"12": 0.3, "24": 0.3, "64": 0.5, "54": 0.25},
    "shame": {"1": 0.3, "4": 0.3, "64": 0.7, "54": 0.4, "15": 0.2},
    "pride": {"12": 0.35, "53": 0.3, "17": 0.2},
    "confusion": {"4": 0.5, "7": 0.3, "55": 0.4, "1": 0.2},
    "determination": {"4": 0.5, "24": 0.5, "17": 0.3, "7": 0.3},
    "boredom": {"41": 0.5, "15": 0.15, "55": 0.2},
    "tiredness": {"41": 0.7, "25": 0.15, "54": 0.2},
    "relief": {"12": 0.35, "25": 0.3, "41": 0.25, "1": 0.2},
    "love": {"12": 0.5, "6": 0.3, "41": 0.2, "55": 0.2},
    "interest": {"1": 0.3, "2": 0.3, "5": 0.2, "57": 0.5},
    "skepticism": {"2": 0.6, "4": 0.3, "14": 0.3, "7": 0.3},  # one brow up: applied to one side
    "pain": {"4": 0.7, "6": 0.6, "7": 0.7, "9": 0.4, "10": 0.4, "20": 0.4, "43": 0.3},
    "nervousness": {"1": 0.45, "4": 0.3, "20": 0.3, "28": 0.2, "64": 0.2},
    "calm": {},
}
UNILATERAL_EMOTIONS = {"contempt", "skepticism"}

# Words that name each emotion (stemmed before matching).
EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    "happiness": ("happy", "happiness", "joy", "joyful", "delight", "delighted", "cheerful", "glad",
                  "elated", "warm", "warmth", "pleased", "excited", "excitement", "friendly"),
    "amusement": ("amused", "amusement", "laugh", "laughs", "laughing", "laughter", "funny", "giggle"),
    "contentment": ("content", "contentment", "satisfied", "satisfaction", "serene", "peaceful"),
    "sadness": ("sad", "sadness", "sorrow", "grief", "grieving", "unhappy", "melancholy", "upset",
                "despair", "heartbroken", "crying", "tearful", "disappointed", "disappointment",
                "gloomy", "mourning", "loss"),
    "surprise": ("surprise", "surprised", "astonished", "astonishment", "amazed", "amazement",
                 "shock", "shocked", "startled", "stunned", "disbelief"),
    "fear": ("fear", "afraid", "scared", "frightened", "terror", "terrified", "panic", "horror",
             "horrified", "dread"),
    "anger": ("anger", "angry", "furious", "fury", "rage", "irritated", "irritation", "annoyed",
              "annoyance", "mad", "hostile", "frustrated", "frustration", "indignant"),
    "disgust": ("disgust", "disgusted", "revulsion", "repulsed", "gross", "nauseated", "distaste"),
    "contempt": ("contempt", "disdain", "scorn", "smug", "condescending", "dismissive", "sneering"),
    "anxiety": ("anxiety", "anxious", "worry", "worried", "uneasy", "unease", "apprehensive",
                "stress", "stressed", "tension", "concern", "concerned", "insecure"),
    "embarrassment": ("embarrassed", "embarrassment", "awkward", "sheepish", "bashful", "shy"),
    "shame": ("shame", "ashamed", "guilt", "guilty", "humiliated", "remorse"),
    "pride": ("proud", "pride", "triumphant", "triumph", "confident", "confidence", "victorious"),
    "confusion": ("confused", "confusion", "puzzled", "perplexed", "bewildered", "uncertain",
                  "doubtful", "quizzical"),
    "determination": ("determined", "determination", "resolve", "resolute", "focused", "stubborn",
                      "defiant", "defiance", "steely"),
    "boredom": ("bored", "boredom", "indifferent", "indifference", "apathetic", "disinterested"),
    "tiredness": ("tired", "exhausted", "exhaustion", "sleepy", "weary", "fatigue", "fatigued"),
    "relief": ("relief", "relieved", "reassured", "release"),
    "love": ("love", "loving", "tender", "tenderness", "affection", "affectionate", "adoring", "fond"),
    "interest": ("interest", "interested", "curious", "curiosity", "attentive", "intrigued",
                 "fascinated", "eager"),
    "skepticism": ("skeptical", "sceptical", "skepticism", "suspicious", "suspicion", "distrust",
                   "incredulous", "wary"),
    "pain": ("pain", "hurt", "agony", "wince", "winces", "wincing", "ache", "suffering"),
    "nervousness": ("nervous", "nervousness", "jittery", "fidgety", "timid", "scared"),
    "calm": ("calm", "neutral", "composed", "relaxed", "collected", "tranquil", "still"),
}

# Concealment words: "anxiety concealed by a smile" shows the concealed emotion faintly.
CONCEAL_WORDS = ("conceal", "concealed", "conceals", "hide", "hides", "hiding", "hidden", "mask",
                 "masked", "masks", "suppress", "suppressed", "suppresses", "hold", "holds",
                 "holding", "restrain", "restrained", "behind", "despite", "beneath", "under",
                 "cover", "covered", "covers", "fight", "fights", "fighting", "try", "tries",
                 "trying")
