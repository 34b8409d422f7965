"""Preference optimisation (SuperFace, part 2): simulated annotator pools, a reward model and region-wise
DPO rounds of the face estimator.

* :class:`SimulatedAnnotator`, :class:`AnnotatorPool` (:mod:`.annotators`) -- a SIMULATION of raters that
  judge candidate renders against the truth's render per face region;
* :class:`CanonicalAvatar`, :func:`region_distances` (:mod:`.avatar`) -- the fixed face candidates are
  shown on and the region-wise image distance;
* :func:`sample_candidates`, :func:`sample_pairs` (:mod:`.candidates`) -- policy samples plus
  region-targeted exploration; :func:`add_rare_probes`, :func:`sample_probe_pairs` -- rare-channel probes;
* :class:`Judgments`, :func:`score_candidates`, :func:`judge_in_process` (:mod:`.judging`; the HTTP path
  through the labeling app is there too);
* :class:`RewardModel` (:mod:`.reward`) -- per-region Bradley-Terry reward on (image features, params);
* :class:`RoundConfig`, :func:`run_round`, :func:`run_rounds` (:mod:`.rounds`) -- the loop;
* :func:`policy_metrics`, :func:`win_rate`, :func:`wilson` (:mod:`.evaluation`).

Names import lazily, so ``import facecore.prefer`` (and the ``facecore`` CLI) stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    ".annotators": ("SimulatedAnnotator", "AnnotatorPool", "parse_pool"),
    ".avatar": ("CanonicalAvatar", "region_distances"),
    ".candidates": ("sample_candidates", "sample_pairs", "add_rare_probes", "sample_probe_pairs"),
    ".judging": ("Judgments", "score_candidates", "judge_in_process"),
    ".reward": ("RewardModel", "reward_features"),
    ".rounds": ("RoundConfig", "RoundResult", "run_round", "run_rounds", "format_rounds"),
    ".evaluation": ("policy_metrics", "win_rate", "wilson"),
    ".regions": ("REGIONS", "REGION_CHANNELS", "MODES"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.prefer' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
