"""Loading a trained face-reading model and reading faces: ``facecore.semantic.load(path).predict(images)``.

``path`` is the ``model/`` folder :func:`facecore.semantic.train` exports (or the run folder holding it):
``facecore_semantic.json`` says what it is (``vlm``: facecore's LLaVA, ``lora``: a peft adapter on a local
HF VLM, ``regression``: variants R and R+S) plus the image size, the prompt and the number of image tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as sd
from .model import REGRESSION_HEAD, RegressionModel, VLMConfig, pixel_values, set_attn_implementation

INFO = "facecore_semantic.json"


class SemanticModel:
    """A loaded model. :meth:`predict` -> ``[(analysis, params float32 [61])]`` per image; for the text
    variants :meth:`generate` gives the decoded answers (:class:`facecore.semantic.decoding.Decoded`)."""

    def __init__(self, model: torch.nn.Module, tokenizer, info: dict[str, Any],
                 device: torch.device | str = "cpu"):
        self.model, self.tokenizer, self.info = model.eval(), tokenizer, info
        self.variant = info["variant"]
        self.device = torch.device(device)
        self._grammar = None

    @property
    def grammar(self):
        from .decoding import AnswerGrammar

        if self._grammar is None:
            self._grammar = AnswerGrammar(self.tokenizer)
        return self._grammar

    def _pixels(self, images: Any) -> torch.Tensor:
        return pixel_values(images, int(self.info["image_size"]), self.device,
                            next(self.model.parameters()).dtype)

    def generate(self, images: Any, *, max_analysis_tokens: int = 512, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0) -> list:
        """Constrained answers for ``images`` (text variants only): greedy, or sampled when
        ``temperature`` > 0 (nucleus ``top_p``; ``seed`` reproduces them; see
        :func:`facecore.semantic.decoding.constrained_decode`)."""
        from .decoding import decode_any

        if self.variant in sd.REGRESSION_VARIANTS:
            raise ValueError(f"variant {self.variant} regresses the coefficients and writes no text; use "
                             "predict()")
        pv = self._pixels(images)
        prompt = torch.tensor([sd.prompt_ids(self.tokenizer, int(self.info["n_image_tokens"]))] * pv.shape[0],
                              device=self.device)
        return decode_any(self.model, self.grammar, prompt, pv,
                          max_analysis_tokens=max_analysis_tokens if self.variant == "T1" else 0,
                          temperature=temperature, top_p=top_p, seed=seed)

    @torch.no_grad()
    def predict(self, images: Any, *, max_analysis_tokens: int = 512, temperature: float = 0.0,
                top_p: float = 1.0, seed: int = 0) -> list[tuple[dict, np.ndarray]]:
        """``images`` (uint8 ``[B, H, W, 3]``, ``[H, W, 3]`` or a list of images of any size) ->
        ``[(analysis, params)]``: the parsed analysis (``facecore.io.parse_semanticface``'s structured
        fields; ``{}`` for T0, R and R+S, which write none) and the 61 coefficients. ``temperature``,
        ``top_p`` and ``seed`` as in :meth:`generate` (R and R+S regress and ignore them)."""
        from ..io.semanticface import parse_semanticface

        if self.variant in sd.REGRESSION_VARIANTS:
            out = self.model(self._pixels(images)).float().cpu().numpy()
            return [({}, row.astype(np.float32)) for row in out]
        res = []
        for d in self.generate(images, max_analysis_tokens=max_analysis_tokens, temperature=temperature,
                               top_p=top_p, seed=seed):
            analysis = parse_semanticface(d.text, strict=False)[0] if self.variant == "T1" else {}
            res.append((analysis, d.params))
        return res


def _folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    if (p / INFO).is_file():
        return p
    if (p / "model" / INFO).is_file():
        return p / "model"
    raise FileNotFoundError(f"no facecore semantic model in {p} (expected {INFO}, as train() exports in "
                            "<out>/model)")


def load(path: str | os.PathLike, device: torch.device | str = "cpu",
         attn_implementation: str | None = None) -> SemanticModel:
    """The model exported by :func:`facecore.semantic.train` in ``path`` (offline; nothing downloaded).
    ``attn_implementation`` overrides the trained one ("facecore", "sdpa", "eager")."""
    from .tokenizer import load_tokenizer

    folder = _folder(path)
    info = json.loads((folder / INFO).read_text(encoding="utf-8"))
    impl = attn_implementation or info.get("vlm", {}).get("attn_implementation", "facecore")
    if info["kind"] == "regression":
        from safetensors.torch import load_file

        if info.get("head") != REGRESSION_HEAD:
            raise ValueError(f"{folder}: an R/R+S model exported before the regression head became a "
                             f"straight-through clamp (head {info.get('head')!r}, expected "
                             f"{REGRESSION_HEAD!r}); retrain it with facecore semantic train")

        cfg = VLMConfig.from_dict({**info["vlm"], "attn_implementation": impl})
        model = RegressionModel(cfg, align_dim=int(info.get("align_dim", 0)))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return SemanticModel(model.to(device), None, info, device)
    from transformers import AutoModelForImageTextToText

    from .hf_attention import check_implementation

    check_implementation(impl)
    tokenizer = load_tokenizer(folder)
    if info["kind"] == "vlm":
        model = AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True)
    elif info["kind"] == "lora":
        from peft import PeftModel

        base = AutoModelForImageTextToText.from_pretrained(info["base"], local_files_only=True)
        model = PeftModel.from_pretrained(base, str(folder))
    else:
        raise ValueError(f"{folder / INFO}: unknown model kind {info['kind']!r}")
    set_attn_implementation(model, impl)
    return SemanticModel(model.to(device), tokenizer, info, device)
