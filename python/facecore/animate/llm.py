"""The ``llm`` keyframe generator: a local Hugging Face causal LM (+ optional LoRA), KeyframeFace prompts,
and constrained decoding that always yields valid JSON with all 61 channels in range.

One request per keyframe, exactly as KeyframeFace asks (system prompt + the whole description
sequence + background + emotion + "Generate ... for Keyframe N"). The answer
``{"Keyframe_n":{"EyeBlinkLeft":<v>,...,"RightEyeRoll":<v>}}`` is decoded under a grammar:
the JSON structure and the 61 keys (in Live Link Face order) are forced tokens, and each value is
chosen token by token among the tokens that keep it a prefix of an allowed number (``0``, ``1``,
``0.d``, ``0.dd``, ``1.0``, ``1.00``; pose values may carry a ``-``), with "the number ends here"
scored by the model's probability of the following delimiter. So the output always parses, has
all 61 keys and stays in [0, 1] / [-1, 1], whatever the weights are; the model decides the values.

Needs the ``llm`` extra (``transformers``, ``peft`` for adapters); nothing is downloaded: the
model directory (and adapter directory) must be local.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._names import BLENDSHAPES, NAMES


def allowed_values(signed: bool) -> frozenset[str]:
    """The number strings a value may take (two decimals at most)."""
    base = {"0", "1", "1.0", "1.00"} | {f"0.{d}" for d in range(10)} | {f"0.{d:02d}" for d in range(100)}
    if signed:
        base |= {"-" + v for v in base if v not in ("0",)}
    return frozenset(base)


def _prefixes(values: frozenset[str]) -> frozenset[str]:
    return frozenset(v[:i] for v in values for i in range(1, len(v) + 1))


class LLMGenerator:
    """``LLMGenerator(model_dir, adapter=None).generate(descriptions, background, emotion) -> [K, 61]``.

    ``temperature=0`` (default) decodes greedily; ``> 0`` samples (seeded by ``seed``).
    ``device``: torch device for the model (default CPU).
    """

    name = "llm"

    def __init__(self, model_dir: str | os.PathLike, adapter: str | os.PathLike | None = None, *,
                 device: str = "cpu", temperature: float = 0.0, seed: int = 0, dtype: Any = None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise ImportError("the llm generator needs transformers: pip install 'facecore[llm]'") from e
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no Hugging Face model (config.json) in {model_dir}")
        self.torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                         dtype=dtype or torch.float32)
        except (OSError, ValueError) as e:
            raise ValueError(f"model {model_dir} does not load: {str(e).splitlines()[0]}") from None
        if adapter is not None:
            adapter = Path(adapter)
            if not (adapter / "adapter_config.json").is_file():
                raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {adapter}")
            try:
                from peft import PeftModel
            except ImportError as e:
                raise ImportError("LoRA adapters need peft: pip install 'facecore[llm]'") from e
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        self.model = model.to(device).eval()
        import inspect

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        params = inspect.signature(base.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.device = device
        self.temperature = float(temperature)
        self.seed = seed
        self._vocab_cache: tuple[list[int], list[str]] | None = None

    # -- prompt ----------------------------------------------------------------------------------
    def prompt(self, request: Any) -> str:
        """The text the model continues: its chat template when it has one, else plain turns."""
        msgs = request.messages()
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n\n" for m in msgs) + "assistant: "

    # -- constrained decoding --------------------------------------------------------------------
    def _number_tokens(self) -> tuple[list[int], list[str]]:
        """Vocabulary ids whose text is made only of number characters (computed once)."""
        if self._vocab_cache is None:
            ids, texts = [], []
            chars = set("-0123456789.")
            for tid in range(len(self.tokenizer)):
                s = self.tokenizer.decode([tid])
                if s and set(s) <= chars:
                    ids.append(tid)
                    texts.append(s)
            if not ids:
                raise ValueError("the tokenizer has no tokens for digits; cannot decode numbers")
            self._vocab_cache = (ids, texts)
        return self._vocab_cache

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _step(self, new_ids: list[int], past: Any) -> tuple[Any, Any]:
        """Feed tokens after the cached context; returns (next-token logits, cache)."""
        torch = self.torch
        x = torch.tensor([new_ids], device=self.device)
        # transformers >= 5 names the KV cache ``cache``; older versions ``past_key_values``.
        kw = {self._cache_arg: past} if past is not None else {}
        out = self.model(input_ids=x, use_cache=True, logits_to_keep=1, **kw)
        cache = out.get("cache", None)
        if cache is None:
            cache = out.get("past_key_values", None)
        return out.logits[0, -1].float(), cache

    def _pick(self, scores: list[float], rng: np.random.Generator) -> int:
        s = np.asarray(scores, np.float64)
        if self.temperature <= 0:
            return int(np.argmax(s))
        p = np.exp((s - s.max()) / self.temperature)
        return int(rng.choice(len(s), p=p / p.sum()))

    def _value(self, logits: Any, past: Any, delimiter: str, values: frozenset[str], prefixes: frozenset[str],
               rng: np.random.Generator) -> tuple[str, Any]:
        """Decode one number after the cached context; returns (text, cache). The caller feeds the
        delimiter next (together with the following key, in one forward pass)."""
        ids, texts = self._number_tokens()
        end_id = self._encode(delimiter)[0]
        text = ""
        while True:
            options = [(tid, s) for tid, s in zip(ids, texts) if text + s in prefixes]
            if text in values:
                options.append((None, ""))  # the number ends here
            if not options:  # cannot happen: every prefix extends to an allowed value
                raise RuntimeError(f"constrained decoding stuck at {text!r}")
            lg = logits.tolist()
            scores = [lg[tid] if tid is not None else lg[end_id] for tid, _ in options]
            tid, s = options[self._pick(scores, rng)]
            if tid is None:
                return text, past
            text += s
            logits, past = self._step([tid], past)

    def generate_one(self, request: Any) -> np.ndarray:
        """One KeyframeFace request -> its keyframe ``float32 [61]`` (the raw JSON answer is kept in
        ``self.last_response``)."""
        from ..io import parse_response

        torch = self.torch
        rng = np.random.default_rng(self.seed)
        blend_v, pose_v = allowed_values(False), allowed_values(True)
        blend_p, pose_p = _prefixes(blend_v), _prefixes(pose_v)
        key = request.target_key
        out = "{" + json.dumps(key) + ":{"
        forced = self._encode(self.prompt(request)) + self._encode(out)
        past = None
        with torch.no_grad():
            for i, name in enumerate(NAMES):
                lead = json.dumps(name) + ":"
                logits, past = self._step(forced + self._encode(lead), past)
                signed = i >= len(BLENDSHAPES)
                delim = "," if i + 1 < len(NAMES) else "}}"
                text, past = self._value(logits, past, delim, pose_v if signed else blend_v,
                                         pose_p if signed else blend_p, rng)
                out += lead + text + delim
                forced = self._encode(delim)
        self.last_response = out
        parsed = parse_response(out, strict=True)
        return np.asarray(parsed[key], np.float32)

    def generate(self, descriptions: list[str], background: str = "", emotion: str = "") -> np.ndarray:
        """``descriptions`` (K strings) -> ``float32 [K, 61]``, one constrained request per keyframe."""
        from ..io import make_requests

        if isinstance(descriptions, str) or not descriptions:
            raise ValueError("descriptions must be a non-empty list of strings")
        reqs = make_requests(list(descriptions), background, emotion)
        return np.stack([self.generate_one(r) for r in reqs])
