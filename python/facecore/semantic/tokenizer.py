"""The face-reading model's BPE tokenizer, trained by facecore (``tokenizers``) on its own target texts.

Byte-level BPE (any text encodes; decoding is exact) with digits split one by one, plus:

* special tokens ``<pad> <s> </s> <unk> <image>`` (``<image>`` is the placeholder LLaVA replaces with
  the vision features);
* every coefficient value the answers use as one added token: ``0.0 … 1.0`` and ``-1.0 … -0.1, -0.0``
  (:data:`VALUE_STRINGS`). Added tokens are cut out before the BPE runs, so a value is always a single
  token and constrained decoding chooses a value in one step among the allowed ids;
* the four section titles of the Markdown analysis (:func:`section_headers`), one token each, which
  constrained decoding forces in order.

Training is deterministic: the same texts in the same order give the same vocabulary (BPE merges are
ranked by count, ties broken by the pair itself). The tokenizer is saved with the model
(``save_pretrained``) and loaded from that folder only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE)

BLENDSHAPE_VALUES = tuple(f"{i / 10:.1f}" for i in range(11))  # "0.0" … "1.0"
POSE_VALUES = tuple(f"{-i / 10:.1f}" for i in range(10, 0, -1)) + ("-0.0",) + BLENDSHAPE_VALUES
VALUE_STRINGS = tuple(dict.fromkeys(POSE_VALUES))  # every value string once


def section_headers() -> tuple[str, ...]:
    """The four numbered section titles of a Markdown analysis (``1. **Facial Expression Category**:`` …),
    as :func:`facecore.io.semanticface.format_analysis_markdown` writes them; added tokens too, so
    constrained decoding can force them (every answer then holds the four sections)."""
    import re

    from ..io.semanticface import ANALYSIS_KEYS, format_analysis_markdown

    text = format_analysis_markdown({k: "x" for k in ANALYSIS_KEYS})
    heads = tuple(re.findall(r"^\d+\. \*\*[^*]+\*\*:", text, flags=re.M))
    if len(heads) != len(ANALYSIS_KEYS):
        raise RuntimeError(f"expected {len(ANALYSIS_KEYS)} section titles in the Markdown analysis, "
                           f"got {heads}")
    return heads


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, *, min_frequency: int = 2):
    """A :class:`transformers.PreTrainedTokenizerFast` trained on ``texts`` (byte-level BPE of at most
    ``vocab_size`` entries, the special and value tokens included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("train_tokenizer: texts must be a non-empty list of strings")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    added = list(VALUE_STRINGS) + list(section_headers())
    floor = len(alphabet) + len(SPECIAL_TOKENS) + len(added)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < floor:
        raise ValueError(f"train_tokenizer: vocab_size must be an integer >= {floor} (bytes, special, "
                         f"value and title tokens), got {vocab_size!r}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(added), min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens(added)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK, extra_special_tokens={"image_token": IMAGE})


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer saved in the folder ``path`` (``tokenizer.json`` and its config); FileNotFoundError
    when there is none."""
    from pathlib import Path

    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer.json").is_file() and not (Path(path) / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"no tokenizer in {path} (expected tokenizer.json / tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def image_token_id(tokenizer) -> int:
    """The id of the image placeholder token (``<image>`` for facecore's tokenizer)."""
    tid = getattr(tokenizer, "image_token_id", None)
    if tid is None:
        tid = tokenizer.convert_tokens_to_ids(IMAGE)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ValueError("the tokenizer has no image placeholder token (<image>)")
    return int(tid)
