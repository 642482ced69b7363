"""VidTok-style causal convolutional baseline (arXiv 2412.13061), shrunk to train on two CPU cores.

(2+1)D instead of full 3D convolutions (a 3D conv tokenizer trains ~50x slower per clip here):
a 4x space-to-depth stem, then residual blocks of a 3x3 spatial conv plus a *causal* temporal conv
(kernel 2: frame t sees t and t-1), strided 2D convs for spatial down-sampling and an AlphaBlender
for temporal down-sampling (a learned blend of a strided causal conv and average pooling over
non-overlapping frame pairs), FSQ on the latent. The decoder mirrors it with pixel shuffles.

Causality holds at the granularity of a latent frame (4 frames): decoded frames of group g depend
only on input frames of groups <= g. We use chunks of 4k frames with a causal cache instead of the
paper's 1 + 4k: uniform chunks keep the codec's chunking model-agnostic.

Causal cache: the encoder's receptive field reaches back fewer than `context` (8) input frames and
the decoder's fewer than 2 latent frames, so each chunk is coded with the previous context
prepended and its outputs for the context dropped: chunk-by-chunk coding equals one-shot coding
(tests/test_models.py checks it) and memory stays bounded for any length.

Configs: 4x16x16 pixels per token (1024) and 4x8x8 (256, `spatial_down=8`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vtcodec.models.base import Tokenizer
from vtcodec.quantizers import FSQ


@dataclass(frozen=True)
class VidTokConfig:
    """The baseline: 4 x spatial_down x spatial_down pixels per token (16: 1024, 8: 256).
 Quantizer: FSQ `levels` (why FSQ: quantizers/fsq.py)."""
    tile: int = 128
    frames: int = 16
    spatial_down: int = 16   # 16 -> 1024 px/token, 8 -> 256
    channels: tuple[int, ...] = (32, 64, 96)
    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    context: int = 8         # input frames of causal cache (encoder)
    latent_context: int = 2  # latent frames of causal cache (decoder)


class FrameNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame: normalising over time would leak future frames into the
    past and break causality (and chunked == one-shot coding)."""

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.view(b, t, c, h, w).transpose(1, 2)


class CausalTime(nn.Module):
    """Temporal conv, kernel 2, causal: out[t] = f(x[t-1], x[t]); the first frame repeats itself."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (2, 1, 1))

    def forward(self, x):
        return self.conv(torch.cat([x[:, :, :1], x], dim=2))


class Spatial(nn.Module):
    """A 2D conv applied to every frame of (B, C, T, H, W)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))

    def forward(self, x):
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm = FrameNorm(8, ch)
        self.s = Spatial(ch, ch)
        self.t = CausalTime(ch)

    def forward(self, x):
        return x + self.t(F.silu(self.s(F.silu(self.norm(x)))))


class AlphaDown(nn.Module):
    """Temporal /2: alpha * strided conv over frame pairs + (1 - alpha) * mean of the pair."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (2, 1, 1), stride=(2, 1, 1))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        a = torch.sigmoid(self.alpha)
        pooled = F.avg_pool3d(x, (2, 1, 1))
        return a * self.conv(x) + (1 - a) * pooled


class AlphaUp(nn.Module):
    """Temporal x2: alpha * learned split of each frame into two + (1 - alpha) * repetition."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv3d(ch, 2 * ch, 1)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b, c, t, h, w = x.shape
        a = torch.sigmoid(self.alpha)
        split = self.conv(x).view(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        return a * split + (1 - a) * x.repeat_interleave(2, dim=2)


class VidTok(Tokenizer):
    arch = "vidtok"
    Config = VidTokConfig

    def __init__(self, config: VidTokConfig):
        super().__init__(config)
        c = config
        if c.spatial_down not in (8, 16):
            raise ValueError(f"vidtok spatial_down must be 8 or 16, got {c.spatial_down}")
        if c.frames % 4 or c.frames < c.context or c.frames // 4 < c.latent_context:
            # a key chunk's state must have the shape of a continuing chunk's (per-tile refresh mixes rows)
            raise ValueError(f"vidtok frames ({c.frames}) must be a multiple of 4 and cover the causal cache "
                             f"({c.context} frames, {c.latent_context} latent frames)")
        c0, c1, c2 = c.channels
        self.quant = FSQ(c.levels)
        q = self.quant.dim
        self.n_sdown = 2 if c.spatial_down == 16 else 1  # strided convs after the 4x stem
        # encoder
        self.stem = Spatial(3 * 16, c0)
        enc = [ResBlock(c0), AlphaDown(c0), Spatial(c0, c1, stride=2), ResBlock(c1), AlphaDown(c1)]
        enc += [Spatial(c1, c2, stride=2) if self.n_sdown == 2 else Spatial(c1, c2), ResBlock(c2)]
        self.enc = nn.Sequential(*enc)
        self.to_q = nn.Sequential(FrameNorm(8, c2), nn.SiLU(), nn.Conv3d(c2, q, 1))
        # decoder
        self.from_q = nn.Conv3d(q, c2, 1)
        self.dec_a = nn.Sequential(ResBlock(c2), AlphaUp(c2))
        self.up1 = Spatial(c2, 4 * c1) if self.n_sdown == 2 else Spatial(c2, c1)
        self.dec_b = nn.Sequential(ResBlock(c1), AlphaUp(c1))
        self.to_c0 = Spatial(c1, 4 * c0)
        self.dec_c = nn.Sequential(ResBlock(c0), FrameNorm(8, c0), nn.SiLU(), Spatial(c0, 3 * 16))

    # -- interface ----------------------------------------------------------------------------
    @property
    def stream_levels(self) -> dict[str, list[int]]:
        return {"latent": list(self.config.levels)}

    def tokens_per_chunk(self, key: bool) -> dict[str, int]:
        c = self.config
        return {"latent": (c.frames // 4) * (c.tile // c.spatial_down) ** 2}

    @property
    def stream_grids(self) -> dict[str, tuple[int, int, int]]:
        g = self.config.tile // self.config.spatial_down
        return {"latent": (self.config.frames // 4, g, g)}  # encode_chunk flattens (t, g, g)

    @property
    def encoder_only(self) -> tuple[str, ...]:
        return ("stem.*", "enc.*", "to_q.*")

    @property
    def latent_heads(self) -> dict[str, nn.Module]:
        return {"latent": self.to_q[-1]}

    # -- parts --------------------------------------------------------------------------------
    def encode_latent(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, q, T/4, H/s, W/s) pre-quantization latents."""
        b, _, t, h, w = video.shape
        x = F.pixel_unshuffle(video.transpose(1, 2).reshape(b * t, 3, h, w), 4)
        x = x.view(b, t, 48, h // 4, w // 4).transpose(1, 2)
        return self.to_q(self.enc(self.stem(x)))

    def _shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial pixel shuffle x2 on every frame of (B, 4C, T, H, W)."""
        b, c, t, h, w = x.shape
        y = F.pixel_shuffle(x.transpose(1, 2).reshape(b * t, c, h, w), 2)
        return y.view(b, t, c // 4, 2 * h, 2 * w).transpose(1, 2)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, q, T/4, h, w) codes -> (B, 3, T, H, W)."""
        x = self.dec_a(self.from_q(codes))
        x = self.up1(x)
        if self.n_sdown == 2:
            x = self._shuffle(x)
        x = self._shuffle(self.to_c0(self.dec_b(x)))
        x = self.dec_c(x)  # (B, 48, T, H/4, W/4)
        b, c, t, h, w = x.shape
        y = F.pixel_shuffle(x.transpose(1, 2).reshape(b * t, c, h, w), 4)
        return y.view(b, t, 3, 4 * h, 4 * w).transpose(1, 2)

    def forward(self, video: torch.Tensor) -> dict:
        z = self.encode_latent(video)
        codes = self.quant(z.movedim(1, -1)).movedim(-1, 1)
        return {"recon": self.decode_latent(codes)}

    # -- codec (causal cache) -----------------------------------------------------------------
    def encode_chunk_latents(self, video: torch.Tensor, state: torch.Tensor | None, *,
                             closed_loop: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        c = self.config
        x = video if state is None else torch.cat([state, video], dim=2)
        z = self.encode_latent(x)[:, :, -(video.shape[2] // 4):]
        return {"latent": z.movedim(1, -1).flatten(1, 3)}, x[:, :, -c.context:]  # (B, t * g * g, q)

    def decode_chunk_codes(self, codes: dict[str, torch.Tensor], state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        g = c.tile // c.spatial_down
        lat = codes["latent"]
        lat = lat.reshape(lat.shape[0], -1, g, g, lat.shape[-1]).movedim(-1, 1)  # (B, q, t, g, g)
        t_new = lat.shape[2]
        x = lat if state is None else torch.cat([state, lat], dim=2)
        video = self.decode_latent(x)[:, :, -4 * t_new:]
        return video, x[:, :, -c.latent_context:]

    def next_encoder_state(self, enc_state: torch.Tensor, dec_state: torch.Tensor) -> torch.Tensor:
        return enc_state  # the encoder's causal context is its input video, whatever tokens were sent
