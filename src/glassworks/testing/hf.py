"""A tiny randomly initialised BERT in a folder of ``save_pretrained`` files, for tests and
benchmarks of the Hugging Face path without downloading weights."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_bert_dir(path: str | Path, texts: Iterable[str], *, hidden: int = 32, layers: int = 2,
                  heads: int = 2, max_positions: int = 64, seed: int = 0) -> Path:
    """Write config.json + model.safetensors + a WordPiece tokenizer whose vocabulary is the
    lowercased words of ``texts`` (so the model sees real tokens, not [UNK])."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    # A few continuation pieces so some words split into wordpieces.
    pieces = ["##s", "##ing", "##ed", "##ly"]
    vocab = [*SPECIALS, *words, *pieces]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max_positions, pad_token_id=0)
    BertForSequenceClassification(config).save_pretrained(str(path), safe_serialization=True)
    return path
