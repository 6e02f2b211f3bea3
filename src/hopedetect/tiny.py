"""A tiny random encoder + locally trained tokenizer, for tests and smoke runs (no download)."""
from __future__ import annotations

from pathlib import Path


def make_tiny_encoder(path: str | Path, texts: list[str], kind: str = "deberta-v2", hidden: int = 32,
                      layers: int = 1, vocab_size: int = 300, seed: int = 0) -> Path:
    """Train a WordPiece tokenizer on `texts` with `tokenizers`, build a random DeBERTa-v2 (or BERT) encoder
    from a config and save both with save_pretrained, so `AutoModel/AutoTokenizer.from_pretrained(path)` work."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2Model, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    common = dict(vocab_size=fast.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                  intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=fast.pad_token_id)
    if kind == "deberta-v2":
        model = DebertaV2Model(DebertaV2Config(**common, relative_attention=True, position_buckets=32,
                                               pos_att_type=["p2c", "c2p"], max_relative_positions=-1))
    elif kind == "bert":
        model = BertModel(BertConfig(**common))
    else:
        raise ValueError(f"kind must be deberta-v2 or bert, got {kind!r}")
    model.save_pretrained(path)
    return path
