"""The GPT that predicts spectrogram codebook indices given a visual (and/or class) condition.

A pre-LayerNorm decoder-only transformer in minGPT/nanoGPT style with the parameter names of the official
SpecVQGAN checkpoints (`tok_emb`, `pos_emb`, `blocks.<i>.{ln1, ln2, attn.{key,query,value,proj}, mlp.0,
mlp.2}`, `ln_f`, `head`, and the condition embedder(s)), so official weights load 1:1 once the import drops
their `blocks.<i>.attn.mask` buffers (we use a causal attention kernel instead of a stored mask).

Sequence layout (positions share one learned `pos_emb`):

    [c_0 ... c_{C-1}, t_0 ... t_{T-1}]    C = cfg.cond_len condition embeddings, then code tokens

The output at position C-1+i predicts token t_i. Tokens are in time-major order: the 5 frequency codes of a
time column, then the next column (`to_sequence` / `from_sequence`).

Condition embedders by `cfg.condition`:
- "feats": `embedder` = Conv1d(feat_dim -> n_embd, kernel 1), i.e. one linear map per frame.
- "class": `embedder` = Embedding(num_classes, n_embd), one position.
- "feats+class": `feat_embedder` (Conv1d) for the frames, then `cls_embedder` (Embedding) as the last position.
- `cfg.sync` (not in the paper, off in the paper presets): `sync_embedder` (Linear feat_dim -> n_embd) maps
  the features, averaged over each code column's time span, onto the input embedding of every token whose
  *next* token lies in that column. The paper's layout leaves it to attention over learned positions to
  find which frames belong to which column; on our synthetic data its models use the frames only as a bag
  (class), never their timing. With `sync` the timing is on the token's own input from step 0.
- "none": the "No Feats" baseline. The reference fed one frame of U(0, 1) noise through the feature
  embedder; since the embedder is linear we feed the noise's mean (a constant 0.5 frame) instead, which is
  the expected embedding and keeps the model deterministic. Layout = a 1-frame "feats" model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vgs_cli.config.transformer import GPTConfig

NONE_FEATURE_VALUE = 0.5  # mean of the U(0, 1) noise the reference's "No Feats" runs were fed


def to_sequence(indices: Tensor) -> Tensor:
    """Grid codes to GPT order. `Tensor[B, H, W]` (raster r = h*W + w) -> `Tensor[B, H*W]` (p = w*H + h)."""
    b, h, w = indices.shape
    return indices.transpose(1, 2).reshape(b, h * w)


def from_sequence(seq: Tensor, grid: tuple[int, int]) -> Tensor:
    """Inverse of `to_sequence`: `Tensor[B, H*W]` -> `Tensor[B, H, W]`."""
    h, w = grid
    return seq.reshape(seq.shape[0], w, h).transpose(1, 2).contiguous()


def column_weights(frames: int, columns: int) -> Tensor:
    """`Tensor[columns, frames]`: the share of each code column's time span covered by each feature frame
    (rows sum to 1). 212 frames over 53 columns: 4 frames at 1/4 each; 5 frames: 1 or 2 frames per column."""
    f = torch.arange(frames + 1, dtype=torch.float64) / frames
    c = torch.arange(columns + 1, dtype=torch.float64) / columns
    overlap = (torch.minimum(c[1:, None], f[None, 1:]) - torch.maximum(c[:-1, None], f[None, :-1])).clamp(min=0)
    return (overlap / overlap.sum(1, keepdim=True)).float()


@dataclass
class KVCache:
    """Per-layer keys/values of everything fed so far, preallocated to the block size.

    `k[i]`, `v[i]`: `Tensor[B, n_head, block_size - shared, head_dim]`, positions `shared ..`; `length` =
    positions filled (condition included). Create with `GPT.new_cache(batch)`; one cache serves one sequence
    batch. After `share(n)` the first `shared` positions (the condition) live once per group of n rows in
    `shared_k[i]`, `shared_v[i]`: `Tensor[B/n, n_head, shared, head_dim]`.
    """

    k: list[Tensor] = field(default_factory=list)
    v: list[Tensor] = field(default_factory=list)
    length: int = 0
    sync: Tensor | None = None  # `Tensor[B, num_tokens, n_embd]` time-aligned features (cfg.sync), set at prefill
    shared_k: list[Tensor] = field(default_factory=list)
    shared_v: list[Tensor] = field(default_factory=list)
    shared: int = 0

    def share(self, n: int) -> "KVCache":
        """A cache for n samples of each of its B sequences (rows b*n .. b*n+n-1 continue row b), whose filled
        positions (the condition) are kept ONCE per b and read by all n rows, not copied n times.

        Why: at paper size the condition's 212 positions are 44% of the 477 a full clip attends over; with
        `--samples 10` copies of them were read ten times per token (24 layers x 2 x [10, 16, 212, 64] fp32
        = 420 MB per token, a third of the weights' 1.2 GB). `Tensor[B, ...] -> Tensor[B*n, ...]`."""
        if self.shared:
            raise ValueError("this cache is already shared")
        if n == 1:
            return self
        fill = self.length
        own = lambda t: t.new_zeros(t.shape[0] * n, t.shape[1], t.shape[2] - fill, t.shape[3])  # noqa: E731
        return KVCache([own(k) for k in self.k], [own(v) for v in self.v], fill,
                       None if self.sync is None else self.sync.repeat_interleave(n, dim=0),
                       [k[:, :, :fill] for k in self.k], [v[:, :, :fill] for v in self.v], fill)


def _visible(t: int, length: int, device: torch.device) -> Tensor:
    """`Tensor[t, length]` bool: which of `length` positions each of the last `t` (new) ones may attend to,
    i.e. new position i sees positions up to length - t + i (causal among the new, everything before)."""
    return torch.ones(t, length, dtype=torch.bool, device=device).tril(diagonal=length - t)


def _attend_shared(q: Tensor, k_own: Tensor, v_own: Tensor, k_pre: Tensor, v_pre: Tensor) -> Tensor:
    """Softmax attention of `q` over a per-group prefix and its own positions (causal among the new ones).

    `q`: `Tensor[B, nh, t, hs]` (the newest t positions); `k_own`/`v_own`: `Tensor[B, nh, L, hs]`, each row's
    own positions after the prefix, the last t of them new; `k_pre`/`v_pre`: `Tensor[G, nh, P, hs]`, the
    prefix of rows g*B/G .. (g+1)*B/G - 1. One softmax over the P + L scores, so the result equals attention
    over the concatenated keys; the prefix is multiplied as one [B/G*t, hs] block per group and head.
    -> `Tensor[B, nh, t, hs]`."""
    b, nh, t, hs = q.shape
    g, length, p = k_pre.shape[0], k_own.shape[2], k_pre.shape[2]
    n = b // g

    def grouped(x: Tensor) -> Tensor:  # [B, nh, t, *] -> [G, nh, n*t, *]
        return x.reshape(g, n, nh, t, -1).transpose(1, 2).reshape(g, nh, n * t, x.shape[-1])

    def ungrouped(x: Tensor) -> Tensor:  # [G, nh, n*t, *] -> [B, nh, t, *]
        return x.reshape(g, nh, n, t, -1).transpose(1, 2).reshape(b, nh, t, x.shape[-1])

    scores = torch.cat([ungrouped(grouped(q) @ k_pre.transpose(-1, -2)), q @ k_own.transpose(-1, -2)], -1)
    scores = scores * hs ** -0.5
    if t > 1:
        scores[..., p:] = scores[..., p:].masked_fill(~_visible(t, length, q.device), float("-inf"))
    w = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return ungrouped(grouped(w[..., :p]) @ v_pre) + w[..., p:] @ v_own


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.key = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.query = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.value = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """`x`: `Tensor[B, T, C]` (the new positions) -> `Tensor[B, T, C]`."""
        b, t, c = x.shape
        q, k, v = (m(x).view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for m in (self.query, self.key, self.value))  # [B, nh, T, hs]
        past = 0
        if cache is not None:
            past, own = cache.length, cache.length - cache.shared  # own: this row's positions before these
            cache.k[layer][:, :, own:own + t] = k
            cache.v[layer][:, :, own:own + t] = v
            k = cache.k[layer][:, :, :own + t]
            v = cache.v[layer][:, :, :own + t]
            if cache.shared:
                y = _attend_shared(q, k, v, cache.shared_k[layer], cache.shared_v[layer])
                return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        drop = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        elif t == 1:  # one new position may see everything before it: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # several new positions after a filled cache: causal within the new ones
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=_visible(t, past + t, x.device), dropout_p=drop)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln1(x)), then x + mlp(ln2(x)); MLP is 4x wide with GELU."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


def _embedding(num: int, dim: int, meta: bool) -> nn.Embedding:
    """`nn.Embedding(num, dim)`; on the meta device without its initialisation (see `GPT.__init__`)."""
    return nn.Embedding(num, dim, _weight=torch.empty(num, dim)) if meta else nn.Embedding(num, dim)


class GPT(nn.Module):
    """Conditional GPT over codebook indices. Build with `GPT(cfg.model)`."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Built on the meta device, the model is only a frame for a checkpoint's tensors (loading/models.py):
        # initialising it would be wasted, and nn.Embedding's own normal_ on meta tensors imports
        # torch._dynamo (~1.1 s of every `vgs generate`). On a real device the init is the usual one.
        meta = torch.get_default_device().type == "meta"
        self.tok_emb = _embedding(cfg.vocab_size, cfg.n_embd, meta)
        # zeros, as minGPT/the reference (its init never touched pos_emb)
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.sync:
            self.sync_embedder = nn.Linear(cfg.feat_dim, cfg.n_embd)
        if cfg.condition == "feats+class":
            self.feat_embedder = nn.Conv1d(cfg.feat_dim, cfg.n_embd, kernel_size=1)
            self.cls_embedder = _embedding(cfg.num_classes, cfg.n_embd, meta)
        elif cfg.condition == "class":
            self.embedder = _embedding(cfg.num_classes, cfg.n_embd, meta)
        else:  # "feats" and "none"
            self.embedder = nn.Conv1d(cfg.feat_dim, cfg.n_embd, kernel_size=1)
        if not meta:
            self.apply(self._init_weights)
        if cfg.sync:
            # A per-channel gate from zero (as Flamingo's gated cross-attention): the model starts as the
            # paper's and opens the gate as the aligned features prove useful. Without it the projection of
            # 1280-2048-d features drowns the token embeddings within a few Adam steps and training slows.
            self.sync_gate = nn.Parameter(torch.zeros(cfg.n_embd))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # N(0, 0.02) weights and zero biases (minGPT); embedders included so every run starts alike.
        if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def new_cache(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for `batch` sequences of up to `block_size` positions (24 layers x 2 x
        [B, 16, 477, 64] fp32 = 94 MB per sequence at paper size). When sampling under autocast pass its
        dtype, so the cached keys are not converted at every step."""
        p = self.pos_emb
        shape = (batch, self.cfg.n_head, self.cfg.block_size, self.cfg.head_dim)
        device, dtype = device or p.device, dtype or p.dtype
        return KVCache(k=[torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks],
                       v=[torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks])

    def embed_condition(self, cond_feats: Tensor | None, cond_class: Tensor | None, batch: int) -> Tensor:
        """Condition embeddings `Tensor[B, cond_len, n_embd]`.

        `cond_feats`: `Tensor[B, feat_frames, feat_dim]`; `cond_class`: `Tensor[B]` int64. `batch` is used
        by "none", which takes neither."""
        cfg = self.cfg
        if cfg.condition == "none":
            frame = self.embedder.bias.new_full((batch, cfg.feat_dim, 1), NONE_FEATURE_VALUE)
            return self.embedder(frame).transpose(1, 2)
        parts = []
        if cfg.uses_feats:
            if cond_feats is None or cond_feats.shape[1:] != (cfg.feat_frames, cfg.feat_dim):
                got = None if cond_feats is None else tuple(cond_feats.shape)
                raise ValueError(f"cond_feats must be [B, {cfg.feat_frames}, {cfg.feat_dim}], got {got}")
            conv = self.feat_embedder if cfg.condition == "feats+class" else self.embedder
            parts.append(conv(cond_feats.transpose(1, 2).to(conv.weight.dtype)).transpose(1, 2))
        if cfg.uses_class:
            if cond_class is None or cond_class.dim() != 1:
                raise ValueError("cond_class must be an int64 Tensor[B]")
            emb = self.cls_embedder if cfg.condition == "feats+class" else self.embedder
            parts.append(emb(cond_class).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def embed_sync(self, cond_feats: Tensor) -> Tensor:
        """`cond_feats` `Tensor[B, F, feat_dim]` -> per-token aligned embeddings `Tensor[B, num_tokens, n_embd]`."""
        rows, cols = self.cfg.grid
        weights = column_weights(self.cfg.feat_frames, cols).to(cond_feats.device, cond_feats.dtype)
        per_column = weights @ cond_feats  # [B, W, feat_dim]
        emb = self.sync_gate * self.sync_embedder(per_column.to(self.sync_embedder.weight.dtype))
        # Input token i predicts token i+1, so it gets the features of token i+1's time column.
        column = ((torch.arange(self.cfg.num_tokens, device=emb.device) + 1) // rows).clamp(max=cols - 1)
        return emb[:, column]

    def forward(self, idx: Tensor, cond_feats: Tensor | None = None, cond_class: Tensor | None = None,
                kv_cache: KVCache | None = None) -> Tensor:
        """Next-token logits.

        `idx`: `Tensor[B, T]` code tokens (sequence order). Without a cache, or with an empty one (prefill),
        the condition is embedded first and the result is `Tensor[B, T+1, vocab]`: row i predicts token i
        given tokens < i (so `forward(codes[:, :-1])` scores all of `codes`). With a cache that already
        holds the condition, `idx` are only the new tokens and the result is `Tensor[B, T, vocab]`: row j
        predicts the token after new token j. The cache is advanced in place.
        """
        b, t = idx.shape
        start = 0 if kv_cache is None else kv_cache.length
        n = t + (self.cfg.cond_len if start == 0 else 0)
        if start + n > self.cfg.block_size:
            raise ValueError(f"sequence of {start + n} positions exceeds block_size {self.cfg.block_size}")
        tok = self.tok_emb(idx)
        if start == 0:
            cond = self.embed_condition(cond_feats, cond_class, b)  # also checks cond_feats' shape
            if self.cfg.sync:
                sync = self.embed_sync(cond_feats)
                if kv_cache is not None:
                    kv_cache.sync = sync
                tok = tok + sync[:, :t]
            x = torch.cat([cond, tok], dim=1)
        else:
            if self.cfg.sync:
                first = start - self.cfg.cond_len
                tok = tok + kv_cache.sync[:, first:first + t]
            x = tok
        x = self.drop(x + self.pos_emb[:, start:start + n])
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        if kv_cache is not None:
            kv_cache.length = start + n
        if start == 0:
            x = x[:, self.cfg.cond_len - 1:]  # outputs from the last condition position on
        return self.head(self.ln_f(x))
