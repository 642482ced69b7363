"""RefTok: target frames tokenized conditioned on an unquantized reference frame (arXiv 2507.02862).

Encoder: one sequence of [reference patches (16x16 of one frame) | target tubelets (4x16x16)];
the attention mask lets reference tokens attend only to reference tokens, and targets attend to
both, so information flows reference -> target only. Reference features h_r leave the encoder
*unquantized*; target features are FSQ-quantized into the chunk's tokens. The decoder sees
[h_r | quantized target tokens] under the same mask.

Closed loop, as a codec needs: h_r is a function of the reference frame alone, and both sides
compute it from the *decoded* reference -- the last decoded frame of the previous chunk, rounded to
8 bits so encoder and decoder hold the same pixels. A segment's first chunk (and a chunk after a
scene cut) has no reference, so it sends an intra-coded one: the chunk's first frame through a
small image tokenizer at a finer budget (8x8 patches, 64 px/token) that lives in this model.
We chose a separate image tokenizer over a "no-reference mode" of the same network because the
reference quality bounds every following chunk, and a dedicated image tokenizer spends its bits
on exactly one frame. Its bits are counted: they are the `intra` stream.

Collapse guard (training): the reference is taken at a random gap before the targets (wide gaps
included) and dropped (replaced by zeros) some of the time, so the decoder must read the target
tokens; tests/test_models.py checks that the output depends on them.

The opposite failure happened too. `ref_path` chooses how the decoder uses the reference: 1,
targets with 1D positions and the reference reachable through attention only (a layout that
learned to ignore its reference entirely); 2 gives targets (row, column, time) positions matching
the reference's, adds to each target token its own patch position's reference features, and adds
the reference frame to the output through a learned gate (residual coding). That gate is one
scalar (it learned 0.20): on a near-static validation clip, copying the reference scored 22.9 dB
and the model 19.8. `ref_path 3` lets the head decide per pixel: it
emits a fourth channel g and the output is content + (gate + g) * reference, so static regions
can copy the reference and moving ones ignore it. g's rows start at zero, so a warm start from a
ref_path 2 checkpoint begins as exactly that model. `ref_path 4` also moves the
reference before adding it: the head emits two more channels, a per-pixel displacement in pixels
(`flow_px` per unit), and the reference is sampled there (bilinear, `layers.warp`), so a pan or a
moving object can copy detail from where it was, not from where it is. Those rows start at zero
too: a warm start from ref_path 3 decodes as before (to float rounding of the resampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vtcodec.models.base import Tokenizer
from vtcodec.models.layers import Block, PixelHead, PostFilter, patchify, sincos_2d, sincos_table, warp, zero_linear
from vtcodec.quantizers import FSQ


@dataclass(frozen=True)
class RefTokConfig:
    """RefTok at 1024 px/token: 4x16x16 target tubelets; intra reference at 64 px/token.
 Quantizer: FSQ `levels` (why FSQ: quantizers/fsq.py)."""
    tile: int = 128
    frames: int = 16
    patch: int = 16
    tubelet_t: int = 4
    dim: int = 192
    heads: int = 4
    enc_depth: int = 4
    dec_depth: int = 4
    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    head_width: int = 16
    # intra (reference) image tokenizer
    intra_patch: int = 8
    intra_dim: int = 160
    intra_depth: int = 3
    # 2: targets carry (row, column, time) positions, each target token adds the reference features
    # of its own patch position, and the output adds the reference frame through a learned gate.
    # 1: 1D target positions, reference reachable through attention only, which learned to ignore
    # its reference: video PSNR with the true, the intra or a zeroed reference agreed to 0.01 dB
    # on the validation split. Kept so the checkpoints trained that way load unchanged.
    # 3: as 2, with a per-pixel correction of the gate from a fourth head channel.
    # 4: as 3, and the reference is first moved by a per-pixel displacement from two more head
    # channels (`flow_px` pixels per unit), so detail can be copied from where it was.
    ref_path: int = 2
    # True: the target tokens' encoder has its own transformer blocks (tgt_enc), so it can be
    # trained with everything the decoder uses frozen (`vtcodec train --part encoder`); the shared
    # blocks (enc) then only compute the reference features, exactly as the decoder does.
    enc_split: bool = False
    # 1: the intra encoder also sees the mean frame of the chunk its reference serves (through a
    # zero-initialised embedding, so a warm start begins as the model without it). The intra
    # frame is the reference every target frame of the chunk builds on, and the encoder-side
    # search (vtcodec.refine) found its gain mostly in it; frame 0 alone cannot tell the encoder what the chunk needs.
    # 2: as 1, and also the means of the chunk's four quarters (where things go within the chunk),
    # through a second zero-initialised embedding (a warm start from 1 codes exactly as before).
    intra_ctx: int = 0
    # > 0: a full-resolution detail pass of this width after the pixel head (layers.PostFilter),
    # starting as the identity; 0 decodes without one. Needs ref_path 2 or more.
    post_width: int = 0
    # ref_path 4: pixels of displacement per unit of the head's two displacement channels (their
    # learning rate, in effect: Adam moves a weight by about lr a step)
    flow_px: float = 16.0


def to_8bit(frame: torch.Tensor) -> torch.Tensor:
    """Round a [-1, 1] frame to the 8-bit grid, so encoder and decoder share an exact reference."""
    x = frame.float().clamp(-1, 1)
    y = ((x + 1) * 127.5).round() / 127.5 - 1
    # straight-through when differentiated (vtcodec.refine); exactly y otherwise
    return x + (y - x).detach() if x.requires_grad else y


class IntraTokenizer(nn.Module):
    """A small ViT image tokenizer for reference frames: (B, 3, H, W) <-> (B, (H/p)*(W/p)) tokens."""

    def __init__(self, c: RefTokConfig, quant: FSQ):
        super().__init__()
        d, p = c.intra_dim, c.intra_patch
        self.c, self.quant = c, quant
        self.grid = c.tile // p
        self.embed = nn.Linear(3 * p * p, d)
        if c.intra_ctx:
            self.ctx_embed = zero_linear(3 * p * p, d)
        if c.intra_ctx >= 2:
            self.ctx_quarters = zero_linear(4 * 3 * p * p, d)
        self.enc = nn.ModuleList(Block(d, c.heads) for _ in range(c.intra_depth))
        self.to_q = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, quant.dim))
        self.from_q = nn.Linear(quant.dim, d)
        self.dec = nn.ModuleList(Block(d, c.heads) for _ in range(c.intra_depth))
        self.norm = nn.LayerNorm(d)
        self.head = PixelHead(d, p, c.head_width)
        self.register_buffer("pos", sincos_2d(self.grid, self.grid, d), persistent=False)

    def encode(self, frame: torch.Tensor, chunk: torch.Tensor | None = None) -> torch.Tensor:
        """frame (B, 3, H, W) -> latents; with intra_ctx the chunk (B, 3, T, H, W) it is the
        reference for, seen as its mean frame (and with intra_ctx 2 its quarters' means; the frame
        itself alone when None)."""
        p = self.c.intra_patch
        x = self.embed(patchify(frame[:, :, None], 1, p)) + self.pos
        if self.c.intra_ctx and chunk is not None:
            x = x + self.ctx_embed(patchify(chunk.mean(2, keepdim=True), 1, p))
            if self.c.intra_ctx >= 2:
                quarters = chunk.unflatten(2, (4, chunk.shape[2] // 4)).mean(3)  # (B, 3, 4, H, W)
                x = x + self.ctx_quarters(patchify(quarters, 4, p))
        for blk in self.enc:
            x = blk(x)
        return self.to_q(x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.from_q(codes) + self.pos
        for blk in self.dec:
            x = blk(x)
        return self.head(self.norm(x), (self.grid, self.grid))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quant(self.encode(frame)))


class RefTok(Tokenizer):
    arch = "reftok"
    Config = RefTokConfig
    LEGACY = {"ref_path": 1}
    # ref_path 3 appends the gate channel's rows to head.up2 (4: and the displacement's); head_width widens both pixel heads
    GROWABLE = ("head.*", "intra.head.*")
    # enc_split: the target encoder's own blocks start as copies of the shared ones
    DERIVED = {"tgt_enc.": "enc.", "tgt_enc_norm.": "enc_norm."}
    # stream names: the intra-coded reference (key chunks only), the target tokens (every chunk)
    KEY, MAIN = "intra", "target"
    # decode_chunk_codes' error for a continuing chunk decoded without the state
    NO_STATE = "a chunk without an intra reference needs the previous chunk's frame"

    def __init__(self, config: RefTokConfig):
        super().__init__(config)
        c = config
        d = c.dim
        self.grid = c.tile // c.patch
        self.n_ref = self.grid * self.grid
        self.n_tgt = (c.frames // c.tubelet_t) * self.n_ref
        self.quant = FSQ(c.levels)
        q = self.quant.dim
        self.intra = IntraTokenizer(c, self.quant)
        self.ref_embed = nn.Linear(3 * c.patch * c.patch, d)
        self.tgt_embed = nn.Linear(3 * c.tubelet_t * c.patch * c.patch, d)
        self.enc = nn.ModuleList(Block(d, c.heads) for _ in range(c.enc_depth))
        self.enc_norm = nn.LayerNorm(d)
        if c.enc_split:
            self.tgt_enc = nn.ModuleList(Block(d, c.heads) for _ in range(c.enc_depth))
            self.tgt_enc_norm = nn.LayerNorm(d)
        self.to_q = nn.Linear(d, q)
        self.from_q = nn.Linear(q, d)
        self.ref_in = nn.Linear(d, d)
        self.dec = nn.ModuleList(Block(d, c.heads) for _ in range(c.dec_depth))
        self.dec_norm = nn.LayerNorm(d)
        # each target token decodes to tubelet_t frames' worth of patch features
        self.unfold_t = nn.Linear(d, c.tubelet_t * d)
        tt = c.frames // c.tubelet_t
        if c.intra_ctx not in (0, 1, 2):
            raise ValueError(f"reftok intra_ctx must be 0, 1 or 2, got {c.intra_ctx}")
        if c.intra_ctx == 2 and c.frames % 4:
            raise ValueError(f"reftok intra_ctx 2 needs frames divisible by 4, got {c.frames}")
        if c.ref_path not in (1, 2, 3, 4):
            raise ValueError(f"reftok ref_path must be 1, 2, 3 or 4, got {c.ref_path}")
        self.head = PixelHead(d, c.patch, c.head_width, out_ch={3: 4, 4: 6}.get(c.ref_path, 3))
        if c.ref_path >= 3:
            self.head.zero_channels(3)  # the gate correction g (and the displacement) start at zero
        if c.post_width < 0 or (c.post_width and c.ref_path < 2):
            raise ValueError(f"reftok post_width must be >= 0, and needs ref_path 2 or more (got {c.post_width}, ref_path {c.ref_path})")
        if c.post_width:
            self.post = PostFilter(c.post_width)
        if c.ref_path >= 2:
            self.ref_skip = zero_linear(d, d)
            self.ref_gate = nn.Parameter(torch.zeros(()))
            pos_tgt = sincos_2d(self.grid, self.grid, d).repeat(tt, 1) + sincos_table(tt, d).repeat_interleave(self.n_ref, 0)
        else:
            pos_tgt = sincos_table(self.n_tgt, d)
        n = self.n_ref + self.n_tgt
        mask = torch.ones(n, n, dtype=torch.bool)
        mask[: self.n_ref, self.n_ref:] = False  # reference never sees targets
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("pos_ref", sincos_2d(self.grid, self.grid, d), persistent=False)
        self.register_buffer("pos_tgt", pos_tgt, persistent=False)

    # -- interface ----------------------------------------------------------------------------
    @property
    def stream_levels(self) -> dict[str, list[int]]:
        return {self.KEY: list(self.config.levels), self.MAIN: list(self.config.levels)}

    def tokens_per_chunk(self, key: bool) -> dict[str, int]:
        tgt = {self.MAIN: self.n_tgt}
        return {self.KEY: self.intra.grid**2, **tgt} if key else tgt

    @property
    def encoder_only(self) -> tuple[str, ...]:
        own = ("intra.embed.*", "intra.enc.*", "intra.to_q.*", "tgt_embed.*", "to_q.*")
        own += ("intra.ctx_embed.*",) if self.config.intra_ctx else ()
        own += ("intra.ctx_quarters.*",) if self.config.intra_ctx >= 2 else ()
        return own + (("tgt_enc.*", "tgt_enc_norm.*") if self.config.enc_split else ())

    @property
    def latent_heads(self) -> dict[str, nn.Module]:
        return {self.KEY: self.intra.to_q[-1], self.MAIN: self.to_q}

    @property
    def stream_grids(self) -> dict[str, tuple[int, int, int]]:
        g = self.grid
        return {self.KEY: (1, self.intra.grid, self.intra.grid), self.MAIN: (self.config.frames // self.config.tubelet_t, g, g)}

    # -- parts --------------------------------------------------------------------------------
    def _ref_tokens(self, ref: torch.Tensor) -> torch.Tensor:
        return self.ref_embed(patchify(ref[:, :, None], 1, self.config.patch)) + self.pos_ref

    def reference_features(self, ref: torch.Tensor) -> torch.Tensor:
        """h_r (B, n_ref, D) from a reference frame (B, 3, H, W) alone (the mask makes this exact)."""
        x = self._ref_tokens(ref)
        mask = self.mask[: self.n_ref, : self.n_ref]
        for blk in self.enc:
            x = blk(x, mask=mask)
        return self.enc_norm(x)

    def encode_targets(self, video: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (target latents (B, n_tgt, q), h_r (B, n_ref, D), or None with enc_split, whose
        encoder blocks are not the ones the decoder computes h_r with)."""
        c = self.config
        tgt = self.tgt_embed(patchify(video, c.tubelet_t, c.patch)) + self.pos_tgt
        x = torch.cat([self._ref_tokens(ref), tgt], dim=1)
        blocks, norm = (self.tgt_enc, self.tgt_enc_norm) if c.enc_split else (self.enc, self.enc_norm)
        for blk in blocks:
            x = blk(x, mask=self.mask)
        x = norm(x)
        return self.to_q(x[:, self.n_ref:]), None if c.enc_split else x[:, : self.n_ref]

    def decode_targets(self, codes: torch.Tensor, ref: torch.Tensor, h_ref: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_tgt, q) codes, reference frame (B, 3, H, W) -> video (B, 3, T, H, W).

        `h_ref`: the reference features if already computed (training reuses encode_targets'
        copy; the codec recomputes them from the reference alone, exactly as a decoder does).
        """
        c = self.config
        b = codes.shape[0]
        h_ref = self.reference_features(ref) if h_ref is None else h_ref
        tgt = self.from_q(codes) + self.pos_tgt
        if c.ref_path >= 2:  # each target token starts from its own patch position's reference features
            tgt = tgt + self.ref_skip(h_ref).repeat(1, c.frames // c.tubelet_t, 1)
        x = torch.cat([self.ref_in(h_ref), tgt], dim=1)
        for blk in self.dec:
            x = blk(x, mask=self.mask)
        x = self.unfold_t(self.dec_norm(x[:, self.n_ref:]))  # (B, n_tgt, tubelet_t*D)
        tt = c.frames // c.tubelet_t
        # (B, tt, gh, gw, tubelet_t, D) -> (B*T, gh*gw, D)
        x = x.view(b, tt, self.grid, self.grid, c.tubelet_t, -1).permute(0, 1, 4, 2, 3, 5)
        return self.head_to_video(self.head(x.reshape(b * c.frames, self.n_ref, -1), (self.grid, self.grid)), ref)

    def head_to_video(self, frames: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The pixel head's output (B*T, out_ch, H, W) -> video (B, 3, T, H, W): the reference
        through its gate (ref_path 2, 3; 4 moved first), then the detail pass (post_width)."""
        c = self.config
        video = frames.reshape(ref.shape[0], c.frames, -1, c.tile, c.tile).transpose(1, 2)
        if c.ref_path == 1:
            return video
        gate = self.ref_gate + video[:, 3:4] if c.ref_path >= 3 else self.ref_gate
        moved = warp(ref, video[:, 4:6] * c.flow_px) if c.ref_path == 4 else ref[:, :, None]
        video = video[:, :3] + gate * moved
        return self.post(video, ref) if c.post_width else video

    # -- training -----------------------------------------------------------------------------
    def forward(self, video: torch.Tensor, ref: torch.Tensor, use_intra_ref: bool = False,
                drop: torch.Tensor | None = None) -> dict:
        """Reconstruct `video` (B,3,T,H,W) given reference frames `ref` (B,3,H,W).

        The intra tokenizer is trained on `ref` in the same pass. `use_intra_ref` conditions the
        targets on the intra reconstruction instead (what inference sees at a segment start);
        `drop` (B,) bool zeroes the reference of those samples (the collapse guard).
        """
        intra_recon = self.intra(ref)
        if use_intra_ref:
            ref = intra_recon.detach()
        if drop is not None:
            ref = ref * (~drop).view(-1, 1, 1, 1).to(ref.dtype)
        latents, h_ref = self.encode_targets(video, ref)  # h_ref equals reference_features(ref) (the mask), or None
        codes = self.quant(latents)
        return {"recon": self.decode_targets(codes, ref, h_ref), "intra_recon": intra_recon}

    # -- codec --------------------------------------------------------------------------------
    def key_image(self, key_codes: torch.Tensor) -> torch.Tensor:
        """Quantized key-stream codes -> the image they decode to (RefTok's intra-coded reference,
        TivTok's TIV image), on the 8-bit grid encoder and decoder share."""
        return to_8bit(self.intra.decode(key_codes))

    def key_latents(self, video: torch.Tensor) -> torch.Tensor:
        """A key chunk's key-stream latents: its first frame, coded by the intra tokenizer with the
        whole chunk (B, 3, T, H, W) as context."""
        return self.intra.encode(video[:, :, 0], video)

    def _chunk_latents(self, video: torch.Tensor, state: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A chunk's latents and the reference its targets are coded against: with state None (a key
        chunk) the first frame is coded as the key image, which becomes the reference."""
        latents: dict[str, torch.Tensor] = {}
        if state is None:
            latents[self.KEY] = self.key_latents(video)
            state = self.key_image(self.quant(latents[self.KEY]))
        latents[self.MAIN], _ = self.encode_targets(video, state)
        return latents, state

    def _reference(self, codes: dict[str, torch.Tensor], state: torch.Tensor | None) -> torch.Tensor:
        """What a chunk's targets decode against: its key image on a key chunk, else the state."""
        if self.KEY in codes:
            return self.key_image(codes[self.KEY])
        if state is None:
            raise ValueError(f"{self.arch}: {self.NO_STATE}")
        return state

    def encode_chunk_latents(self, video: torch.Tensor, state: torch.Tensor | None, *,
                             closed_loop: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        latents, state = self._chunk_latents(video, state)
        if not closed_loop:  # the caller takes the decoder's state (next_encoder_state)
            return latents, None
        # closed loop: the next reference is what the decoder will see
        recon = self.decode_targets(self.quant(latents[self.MAIN]), state)
        return latents, to_8bit(recon[:, :, -1])

    def state_from_reference(self, frame: torch.Tensor) -> torch.Tensor:
        """A reference frame (B, 3, H, W) in [-1, 1] as decoder state: zero-shot editing."""
        return to_8bit(frame)

    def decode_chunk_codes(self, codes: dict[str, torch.Tensor], state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.decode_targets(codes[self.MAIN], self._reference(codes, state))
        return video, to_8bit(video[:, :, -1])
