"""Constrained decoding: every answer parses and holds all 61 channels, each a valid one-decimal value.

The answer is decoded in lockstep for the whole batch, on the model's KV cache, greedily by default or
by sampling (``temperature`` > 0, nucleus ``top_p``; each row its own generator seeded from ``seed`` and
the row's index, so a seed reproduces its answers). Every choice the model makes is among the tokens the
format allows at that point:

1. *the analysis* (T1): the four section titles (one token each in facecore's tokenizer) are forced in
   order; after each the model writes freely (``max_analysis_tokens`` for the four sections together,
   a few kept for each section still to come) until it picks the next title (or, after the fourth
   section, the JSON's first token). Special tokens, ``</s>``, other titles and any token holding a
   brace are banned. At the limit, or when the model picks a title mid-line, a line break and the next
   title are forced. (A foreign tokenizer whose titles are several tokens each writes the analysis
   freely, titles not forced.)
2. *the JSON skeleton*: each key piece (``, "JawOpen": ``) is forced with exactly the ids of
   :func:`facecore.semantic.data.encode_pieces` (the ids the model was trained on), and for each value
   the model chooses only among the tokens of the allowed values of that channel (a trie over the
   values' token ids, so multi-token values of a foreign tokenizer work too); then ``}`` and ``</s>``.

The text is assembled from the decoded analysis and the chosen value strings, so it is exactly what the
model's tokens spell; the parameters are those values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import arkit
from ..training_utils import seed_of
from .data import ANALYSIS_END, CLOSE, KEY_PIECES, encode_pieces, value_strings


@dataclasses.dataclass
class Decoded:
    """One decoded answer: the full ``text``, its ``analysis_text`` part, the 61 ``params`` and the number
    of tokens generated."""

    text: str
    analysis_text: str
    params: np.ndarray
    tokens: int


class AnswerGrammar:
    """The token tables of the answer format for one tokenizer (built once, reused by every decode)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.key_ids = [encode_pieces(tokenizer, [k]) for k in KEY_PIECES]
        self.close_ids = encode_pieces(tokenizer, [CLOSE]) + [tokenizer.eos_token_id]
        self.open_id = self.key_ids[0][0]
        self.tries: dict[tuple[str, ...], dict] = {}
        self.channel_trie = []
        for c in range(arkit.NUM_CHANNELS):
            vals = value_strings(c)
            if vals not in self.tries:
                self.tries[vals] = _trie({v: encode_pieces(tokenizer, [v]) for v in vals})
            self.channel_trie.append(self.tries[vals])
        V = len(tokenizer)
        banned = torch.zeros(V, dtype=torch.bool)
        banned[list(tokenizer.all_special_ids)] = True
        self.ends_line = [False] * V
        for tid in range(V):
            piece = tokenizer.decode([tid])
            if "{" in piece or "}" in piece:
                banned[tid] = True
            self.ends_line[tid] = piece.endswith("\n")
        # The section titles, when each is one token (facecore's tokenizer): forced in order, banned
        # elsewhere. A foreign tokenizer writes the analysis freely (no titles forced).
        from .tokenizer import section_headers

        heads = [tokenizer.encode(h, add_special_tokens=False) for h in section_headers()]
        self.headers = [h[0] for h in heads] if all(len(h) == 1 for h in heads) else []
        banned[self.headers] = True
        banned[self.open_id] = False
        self.free_banned = banned
        # per section: what the model may not write (every title, except the one that ends the section)
        self.section_banned = []
        for stop in [*self.headers, self.open_id]:
            b = banned.clone()
            b[self.headers] = True
            b[stop] = False
            self.section_banned.append(b)
        self.break_ids = tokenizer.encode("  \n", add_special_tokens=False)
        self.end_ids = tokenizer.encode(ANALYSIS_END, add_special_tokens=False)


def _trie(values: dict[str, list[int]]) -> dict:
    """``{token: subtrie}``; a node's ``None`` key holds the value string completed there."""
    root: dict = {}
    for s, ids in values.items():
        node = root
        for t in ids:
            node = node.setdefault(t, {})
        node[None] = s
    return root


class _Chooser:
    """Picks a token from logits whose disallowed entries are ``-inf``: the argmax (``temperature`` 0)
    or a sample from ``softmax(logits / temperature)`` restricted to the smallest set of tokens holding
    ``top_p`` of the probability (nucleus sampling, Holtzman et al. 2020)."""

    def __init__(self, temperature: float, top_p: float, seed: int):
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.generator = torch.Generator().manual_seed(seed) if self.temperature > 0 else None

    def __call__(self, logits: torch.Tensor) -> int:
        if self.generator is None:
            return int(logits.argmax())
        probs = torch.softmax(logits.double().cpu() / self.temperature, -1)
        order = torch.argsort(probs, descending=True, stable=True)
        sorted_p = probs[order]
        keep = int((torch.cumsum(sorted_p, 0) < self.top_p).sum()) + 1  # the token crossing top_p included
        kept = sorted_p[:keep]
        return int(order[torch.multinomial(kept / kept.sum(), 1, generator=self.generator)])


def check_sampling(temperature: Any, top_p: Any) -> None:
    """ValueError unless ``temperature`` >= 0 and ``0 < top_p <= 1`` (finite numbers)."""
    for name, v in (("temperature", temperature), ("top_p", top_p)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


class _Answer:
    """The decoding state of one sequence: what to feed next given the model's logits."""

    def __init__(self, g: AnswerGrammar, max_free: int, choose: _Chooser | None = None):
        self.g, self.max_free = g, max_free
        self.choose = choose or _Chooser(0.0, 1.0, 0)
        self.free: list[int] = []  # every token before the JSON (titles and forced breaks included)
        self.queue: list[int] = []
        self.values: list[str] = []
        self.node: dict | None = None
        self.phase = "free" if max_free > 0 else "json"
        self.done = False
        self.count = 0
        self.section = 0  # titles written so far
        self.written = 0  # free tokens the model chose, all sections together
        # One budget for the whole analysis; each section after the current one keeps a small reserve
        # (the muscle-movement section is often most of the text).
        self.reserve = min(4, max_free // 8) if g.headers else 0
        if self.phase == "json":
            self.queue = list(g.key_ids[0])
        elif g.headers:
            self._to_free([g.headers[0]])

    def _to_free(self, ids: list[int]) -> None:
        """Queue ``ids`` as analysis tokens (forced)."""
        self.queue += ids

    def _stop(self) -> int:
        """The token that ends the current section: the next title, or the JSON's first token."""
        g = self.g
        return g.headers[self.section] if self.section < len(g.headers) else g.open_id

    def _ends(self, logits: torch.Tensor, stop: int) -> bool:
        """Whether the model's choice is the stop token while the text is not at a line start (a title
        or the JSON must start a line for the answer to parse)."""
        banned = self.g.section_banned[min(self.section, len(self.g.headers))]
        self._pick = self.choose(logits.masked_fill(banned.to(logits.device), -float("inf")))
        return self._pick == stop and not (self.free and self.g.ends_line[self.free[-1]])

    def _end_section(self, tok: int) -> None:
        g = self.g
        if tok == g.open_id:
            self.phase, self.queue = "json", list(g.key_ids[0][1:])
            if not self.queue:
                self.phase, self.node = "value", g.channel_trie[0]
        else:
            self.free.append(tok)
            self.section += 1

    def step(self, logits: torch.Tensor) -> int:
        self.count += 1
        tok = self._choose(logits)
        if not self.queue and self.phase == "done":
            self.done = True
        return tok

    def _choose(self, logits: torch.Tensor) -> int:
        g = self.g
        if self.queue:
            tok = self.queue.pop(0)
            if self.phase == "free":
                if tok == self._stop() and not self.queue:
                    self._end_section(tok)
                else:
                    self.free.append(tok)
            elif not self.queue and self.phase == "json":
                self.phase, self.node = "value", g.channel_trie[len(self.values)]
            return tok
        if self.phase == "free":
            stop = self._stop()
            later = max(0, len(g.headers) - self.section)  # sections still to come after this one
            if self.written >= self.max_free - self.reserve * later or self._ends(logits, stop):
                # out of budget, or the model ends the section mid-line: a line break, then the stop token
                brk = g.end_ids if stop == g.open_id else g.break_ids
                self.queue = brk[1:] + [stop]
                self.free.append(brk[0])
                return brk[0]
            tok = self._pick
            if tok == stop:
                self._end_section(tok)
                return tok
            self.written += 1
            self.free.append(tok)
            return tok
        # choosing a value: only the tokens that continue an allowed value string
        allowed = [t for t in self.node if t is not None]
        tok = allowed[self.choose(logits[allowed])] if len(allowed) > 1 else allowed[0]
        self.node = self.node[tok]
        if None in self.node and len(self.node) == 1:
            self.values.append(self.node[None])
            c = len(self.values)
            if c == arkit.NUM_CHANNELS:
                self.phase, self.queue = "done", list(g.close_ids)
            else:
                self.phase, self.queue = "json", list(g.key_ids[c])
        return tok

    def result(self) -> Decoded:
        analysis = self.g.tokenizer.decode(self.free, skip_special_tokens=True) if self.max_free > 0 else ""
        if analysis and not analysis.endswith(ANALYSIS_END):
            analysis = analysis.rstrip("\n") + ANALYSIS_END
        text = analysis + "".join(k + v for k, v in zip(KEY_PIECES, self.values)) + CLOSE
        return Decoded(text, analysis.strip(), np.array([float(v) for v in self.values], dtype=np.float32),
                       self.count)


@torch.no_grad()
def constrained_decode(model: torch.nn.Module, grammar: AnswerGrammar, prompt: torch.Tensor,
                       pixel_values: torch.Tensor, *, max_analysis_tokens: int = 256,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                       first_row: int = 0) -> list[Decoded]:
    """Constrained answers for a batch: ``prompt [B, P]`` token ids (the same length for every row:
    image placeholders + prompt text), ``pixel_values [B, 3, S, S]``; ``max_analysis_tokens=0`` writes
    the coefficients only (variant T0). ``temperature`` 0 decodes greedily; above 0 each row samples
    with a generator seeded by ``seed_of(seed, first_row + row)``."""
    if prompt.dim() != 2 or prompt.shape[0] != pixel_values.shape[0]:
        raise ValueError(f"prompt must be [B, P] with B = pixel_values' batch {pixel_values.shape[0]}, "
                         f"got {list(prompt.shape)}")
    if isinstance(max_analysis_tokens, bool) or not isinstance(max_analysis_tokens, int) or \
            max_analysis_tokens < 0:
        raise ValueError(f"max_analysis_tokens must be an integer >= 0, got {max_analysis_tokens!r}")
    check_sampling(temperature, top_p)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    was_training = model.training
    model.eval()
    try:
        B = prompt.shape[0]
        states = [_Answer(grammar, max_analysis_tokens,
                          _Chooser(temperature, top_p, seed_of(seed, first_row + b))) for b in range(B)]
        out = model(input_ids=prompt, pixel_values=pixel_values, use_cache=True, logits_to_keep=1)
        pad = grammar.tokenizer.pad_token_id
        while not all(s.done for s in states):
            logits = out.logits[:, -1].float()
            nxt = [s.step(logits[b]) if not s.done else pad for b, s in enumerate(states)]
            if all(s.done for s in states):
                break
            ids = torch.tensor(nxt, dtype=torch.long, device=prompt.device)[:, None]
            out = model(input_ids=ids, cache=_cache(out), use_cache=True, logits_to_keep=1)
        return [s.result() for s in states]
    finally:
        model.train(was_training)


def _cache(out: Any) -> Any:
    c = getattr(out, "cache", None)  # transformers >= 5 names it cache, earlier past_key_values
    return c if c is not None else out.past_key_values


def decode_any(model: torch.nn.Module, grammar: AnswerGrammar, prompt: torch.Tensor,
               pixel_values: torch.Tensor, **kw: Any) -> list[Decoded]:
    """:func:`constrained_decode` in chunks of at most 16 images (bounds the KV cache)."""
    res: list[Decoded] = []
    for i in range(0, pixel_values.shape[0], 16):
        res += constrained_decode(model, grammar, prompt[i:i + 16], pixel_values[i:i + 16], first_row=i, **kw)
    return res
