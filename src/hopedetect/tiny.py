"""Tiny random models + locally trained tokenizers, for tests and smoke runs (no download)."""
from __future__ import annotations

from pathlib import Path


def _train_tokenizer(texts: list[str], vocab_size: int, encoder: bool):
    """WordPiece tokenizer trained with `tokenizers`; encoder=True adds [CLS] ... [SEP] around each text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if encoder else ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.WordPiece(unk_token=specials[1]))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.decoder = decoders.WordPiece()
    if encoder:
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=512)


def make_tiny_encoder(path: str | Path, texts: list[str], kind: str = "deberta-v2", hidden: int = 32,
                      layers: int = 1, vocab_size: int = 300, seed: int = 0) -> Path:
    """A random DeBERTa-v2 (or BERT) encoder built from a config + a local tokenizer, saved with
    save_pretrained so `AutoModel/AutoTokenizer.from_pretrained(path)` work offline."""
    import torch
    from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2Model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fast = _train_tokenizer(texts, vocab_size, encoder=True)
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


def make_tiny_causal_lm(path: str | Path, texts: list[str], hidden: int = 32, layers: int = 1,
                        vocab_size: int = 300, seed: int = 0, tokenizer_from: str | Path | None = None) -> Path:
    """A random Llama-architecture causal LM + local tokenizer (for hopedetect.lm tests); `tokenizer_from`
    reuses another tiny LM's tokenizer (a Binoculars pair must share it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fast = AutoTokenizer.from_pretrained(str(tokenizer_from)) if tokenizer_from else _train_tokenizer(texts, vocab_size, encoder=False)
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                      eos_token_id=fast.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path
