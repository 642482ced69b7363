"""ConvTok: one whole-frame convolutional tokenizer behind `vidtok`, `reftok` and `tivtok`.

Why this design (the research record, docs/RESEARCH.md, has the measurements):

* **No tiles, no grid.** Every layer is a convolution without normalisation, so the network runs on
  the whole frame (padded to a multiple of 16) and its output has no block or tile structure; a
  token's influence fades smoothly into its neighbours'.
* **Luma/chroma.** Frames enter as YCbCr 4:2:0, packed losslessly by space-to-depth to 1/4
  resolution (luma 4x4, chroma 2x2 after 2x2 averaging), the four frames of a chunk stacked as
  channels (cheap: 2D convolutions only). The decoder predicts the same packing; chroma is
  upsampled bilinearly and the loss is taken in RGB, so a chroma error costs what it costs a viewer.
* **Coarse first.** One token per 16x16 pixels x 4 frames (1,024 pixels, the 1/16 scale); the
  convolutions at 1/8 and 1/16 carry most of the compute.
* **Any rate from one checkpoint.** A token has `len(levels)` FSQ channels ordered by importance:
  training keeps a random prefix of them (nested dropout, as in quantizer dropout), the rest set to
  the middle level, so an encoder may send any prefix. The codec's context-adaptive range coder
  (vtcodec.entropy) spends almost nothing on a channel that never leaves the middle level, so the
  prefix length is the rate knob (`channels_for`), recorded in the .vtk header.
* **Conditional coding.** A chunk may be coded against a reference frame (the state): the reference,
  packed the same way, gives features at 1/4, 1/8 and 1/16 that both encoder and decoder add at
  every scale, and the decoder's output starts from the reference, so a static scene costs
  nothing but its change. The modes share every weight:
    - `intra` (the baseline, key `vidtok`): every chunk on its own;
    - `ref` (RefTok): the reference is the previous chunk's last decoded frame;
    - `tiv` (TivTok): the reference is the segment's key chunk's last decoded frame (its
      time-invariant image), reused by every chunk of the segment until the codec's refresh
      decision starts a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vtcodec.colour import BT601_YCC
from vtcodec.errors import ModelError
from vtcodec.models.base import Streams, Tokenizer
from vtcodec.quantizers import FSQ

STRIDE = 16  # pixels per token side: frames are padded to a multiple of this
GROUP = 8    # FSQ channels per token stream (a stream's codebook must stay below 2**32)
PACK = 4     # space-to-depth factor of the packed pixel layout
MODES = ("intra", "ref", "tiv")


class EditedKey(NamedTuple):
    """The decoder state `state_from_reference` gives: decode the key chunk, then use `frame`."""

    frame: torch.Tensor


@dataclass(frozen=True)
class ConvTokConfig:
    frames: int = 4
    levels: tuple[int, ...] = (15,) * 4 + (5,) * 12  # finer steps for the first (coarsest) channels
    widths: tuple[int, int, int] = (64, 128, 192)   # channels at 1/4, 1/8, 1/16
    blocks: tuple[int, int, int] = (1, 2, 2)        # residual blocks per scale (encoder and decoder)
    post_width: int = 16     # channels of the full-resolution filter after the decoder (0: none)
    coarse: bool = True      # a direct path for each token's mean colour (`Coarse`); every shipped checkpoint has it
    smooth_up: bool = False  # a depthwise 3x3 after each decoder pixel shuffle (`Up`): tried, not shipped (docs/RESEARCH.md)
    mode: str = "ref"
    key_channels: int = 8    # default FSQ channels sent for a key chunk (quality 2)
    next_channels: int = 4   # ... and for a chunk coded against a reference

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.frames <= 16:
            raise ValueError(f"frames must be in [1, 16], got {self.frames}")
        if len(self.widths) != 3 or len(self.blocks) != 3 or min(self.widths) < 1 or min(self.blocks) < 0:
            raise ValueError("widths and blocks need three positive entries (1/4, 1/8, 1/16)")
        if not 0 <= self.post_width <= 256:
            raise ValueError(f"post_width must be in [0, 256], got {self.post_width}")
        if max(self.widths) > 1024 or max(self.blocks) > 8:
            raise ValueError("widths above 1024 or more than 8 blocks per scale are not supported")
        if not 1 <= len(self.levels) <= 32 or any(not 3 <= int(n) <= 64 or int(n) % 2 == 0 for n in self.levels):
            raise ValueError("levels: 1-32 odd counts in [3, 64] (the middle level is the dropped value)")
        n = len(self.levels)
        if not (1 <= self.key_channels <= n and 1 <= self.next_channels <= n):
            raise ValueError(f"key_channels / next_channels must be in [1, {n}]")


# -- pixels <-> packed YCbCr 4:2:0 --------------------------------------------------------------
_TO_YCC = torch.tensor(BT601_YCC)
_TO_RGB = torch.linalg.inv(_TO_YCC)


def rgb_to_ycc(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, ...) RGB in [-1, 1] -> YCbCr (BT.601 full range, the same scale)."""
    return torch.einsum("ij,bj...->bi...", _TO_YCC.to(x), x)


def ycc_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bj...->bi...", _TO_RGB.to(x), x)


def pack(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) RGB -> (B, 24 T, H/4, W/4): per frame 16 luma + 2 x 4 chroma (4:2:0) channels."""
    b, _, t, h, w = video.shape
    ycc = rgb_to_ycc(video).transpose(1, 2).reshape(b * t, 3, h, w)
    y = F.pixel_unshuffle(ycc[:, :1], PACK)
    c = F.pixel_unshuffle(F.avg_pool2d(ycc[:, 1:], 2), PACK // 2)
    return torch.cat([y, c], 1).view(b, t * 24, h // PACK, w // PACK)


def unpack(x: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of `pack` (chroma upsampled bilinearly): (B, 24 T, h, w) -> (B, 3, T, 4h, 4w) RGB."""
    b, _, h, w = x.shape
    x = x.reshape(b * t, 24, h, w)
    y = F.pixel_shuffle(x[:, :16], PACK)
    c = F.interpolate(F.pixel_shuffle(x[:, 16:], PACK // 2), scale_factor=2, mode="bilinear", align_corners=False)
    rgb = ycc_to_rgb(torch.cat([y, c], 1))
    return rgb.view(b, t, 3, PACK * h, PACK * w).transpose(1, 2)


# -- layers -------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, padding=1)
        self.b = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, x):
        return x + self.b(F.silu(self.a(F.silu(x))))


def _stage(ch: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(ch) for _ in range(n)])


class Up(nn.Module):
    """x2 upsampling by a 1x1 convolution to 4x the channels and a pixel shuffle; with `smooth`,
    plus a residual depthwise 3x3 across the shuffle's 2x2 cells (each cell comes from one input
    position: an 8- and 16-pixel lattice in the output otherwise). It starts as the identity."""

    def __init__(self, c_in: int, c_out: int, smooth: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(c_in, 4 * c_out, 1)
        self.smooth = nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out) if smooth else None
        if self.smooth is not None:
            nn.init.zeros_(self.smooth.weight)
            nn.init.zeros_(self.smooth.bias)

    def forward(self, x):
        y = F.pixel_shuffle(self.proj(F.silu(x)), 2)
        return y if self.smooth is None else y + self.smooth(y)


class FullResFilter(nn.Module):
    """A residual 3x3 filter on the decoded frames at full resolution: the packed layout's 4x4
    sub-pixels come from separate channels, and this lets neighbours across their borders agree.
    Starts as the identity (zero last layer)."""

    def __init__(self, width: int):
        super().__init__()
        self.a = nn.Conv2d(3, width, 3, padding=1)
        self.b = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    BAND = 128  # rows per band when run without gradients (memory: a band's activations, not a frame's)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        x = video.transpose(1, 2).reshape(b * t, c, h, w)
        if torch.is_grad_enabled() or h <= self.BAND:
            x = x + self.b(F.silu(self.a(x)))
        else:  # frame by frame, in bands of rows with the 2-row halo two 3x3 convolutions need: exact
            out = torch.empty_like(x)
            for i in range(b * t):
                for top in range(0, h, self.BAND):
                    lo, hi = max(0, top - 2), min(h, top + self.BAND + 2)
                    band = x[i:i + 1, :, lo:hi]
                    y = self.b(F.silu(self.a(band), inplace=True))
                    out[i:i + 1, :, top:top + self.BAND] = (band + y)[:, :, top - lo:top - lo + self.BAND]
            x = out
        return x.view(b, t, c, h, w).transpose(1, 2)


class Coarse(nn.Module):
    """Coarse first, by construction: each token's mean YCbCr over its 16x16x4 pixels (less the
    reference's, for a chunk coded against one) enters the first latent channels through a 1x1
    map (and FSQ's inverse bound, so a channel's code is the value, to its step), and the decoder
    adds the way back, bilinearly upsampled to full resolution, to its output. At initialisation
    channels 0-2 carry Y, Cb and Cr, and the decoder starts from the thumbnail a 16x-downscaled
    frame gives; both maps are learned."""

    EDGE = 0.98  # |value| the encoder's map may ask of a code (FSQ's tanh reaches 1 only at infinity)

    def __init__(self, channels: int):
        super().__init__()
        self.into = nn.Conv2d(3, channels, 1, bias=False)
        self.back = nn.Conv2d(channels, 3, 1, bias=False)
        with torch.no_grad():
            self.into.weight.zero_()
            self.back.weight.zero_()
            for i in range(min(3, channels)):
                self.into.weight[i, i] = 1.0
                self.back.weight[i, i] = 1.0

    def encode(self, video: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """(B, 3, T, H, W) RGB (+ reference (B, 3, H, W)) -> latent offsets (B, D, H/16, W/16)."""
        ycc = rgb_to_ycc(video.mean(2) - (0 if ref is None else ref))
        return torch.atanh(self.into(F.avg_pool2d(ycc, STRIDE)).clamp(-self.EDGE, self.EDGE))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, D, h, w) -> an RGB offset (B, 3, 1, 16h, 16w) for every frame."""
        ycc = F.interpolate(self.back(codes), scale_factor=STRIDE, mode="bilinear", align_corners=False)
        return ycc_to_rgb(ycc)[:, :, None]


class RefFeatures(nn.Module):
    """A reference frame's features at 1/4, 1/8 and 1/16 (added by encoder and decoder)."""

    def __init__(self, widths):
        super().__init__()
        w4, w8, w16 = widths
        self.stem = nn.Conv2d(24, w4, 3, padding=1)
        self.s4 = ResBlock(w4)
        self.d8 = nn.Conv2d(w4, w8, 3, stride=2, padding=1)
        self.d16 = nn.Conv2d(w8, w16, 3, stride=2, padding=1)

    def forward(self, ref_packed):
        f4 = self.s4(self.stem(ref_packed))
        f8 = self.d8(F.silu(f4))
        f16 = self.d16(F.silu(f8))
        return f4, f8, f16


class ConvTok(Tokenizer):
    arch = "convtok"
    Config = ConvTokConfig
    QUALITIES = 5
    CHANNELS_LAST = True
    # modules that start as the identity: a training state without them resumes with them added
    ADDABLE = ("post.", "dec_u8.smooth.", "dec_u4.smooth.")

    def __init__(self, config: ConvTokConfig):
        super().__init__(config)
        c = config
        self.grid = (1, 1)  # tokens per frame (rows, columns): set_frame
        w4, w8, w16 = c.widths
        d = len(c.levels)
        cin = 24 * c.frames
        self.quant = FSQ(c.levels)
        # one FSQ per token stream, for index <-> code conversion (no parameters)
        self.stream_quants = nn.ModuleList(FSQ(c.levels[i:i + GROUP]) for i in range(0, d, GROUP))
        self.ref = RefFeatures(c.widths)
        # encoder
        self.enc_in = nn.Conv2d(cin, w4, 3, padding=1)
        self.enc4 = _stage(w4, c.blocks[0])
        self.enc_d8 = nn.Conv2d(w4, w8, 3, stride=2, padding=1)
        self.enc8 = _stage(w8, c.blocks[1])
        self.enc_d16 = nn.Conv2d(w8, w16, 3, stride=2, padding=1)
        self.enc16 = _stage(w16, c.blocks[2])
        self.enc_out = nn.Conv2d(w16, d, 1)
        # decoder
        self.dec_in = nn.Conv2d(d, w16, 3, padding=1)
        self.dec16 = _stage(w16, c.blocks[2])
        self.dec_u8 = Up(w16, w8, c.smooth_up)
        self.dec8 = _stage(w8, c.blocks[1])
        self.dec_u4 = Up(w8, w4, c.smooth_up)
        self.dec4 = _stage(w4, c.blocks[0])
        self.dec_out = nn.Conv2d(w4, cin, 3, padding=1)
        nn.init.zeros_(self.dec_out.weight)
        nn.init.zeros_(self.dec_out.bias)
        self.post = FullResFilter(c.post_width) if c.post_width else None
        self.coarse = Coarse(d) if c.coarse else None
        if self.coarse is not None:  # start as the thumbnail codec: the network's latents grow from zero
            nn.init.zeros_(self.enc_out.weight)
            nn.init.zeros_(self.enc_out.bias)

    # -- the codec's questions ------------------------------------------------------------------
    @property
    def tile(self) -> int:
        return 0  # whole frames: the codec pads each frame to a multiple of `STRIDE`

    @property
    def stream_levels(self) -> dict[str, list[int]]:
        lv = list(self.config.levels)
        return {name: lv[i * GROUP:(i + 1) * GROUP] for i, name in enumerate(self._streams)}

    @property
    def _streams(self) -> list[str]:
        """Token streams: `latent0` holds FSQ channels 0-7, `latent1` 8-15, ..."""
        return [f"latent{i}" for i in range(-(-len(self.config.levels) // GROUP))]

    def set_frame(self, height: int, width: int) -> None:
        if height % STRIDE or width % STRIDE or height <= 0 or width <= 0:
            raise ValueError(f"frame {width}x{height} is not a positive multiple of {STRIDE}")
        self.grid = (height // STRIDE, width // STRIDE)

    def tokens_per_chunk(self, key: bool) -> dict[str, int]:
        return {name: self.grid[0] * self.grid[1] for name in self._streams}

    def count_tokens(self, streams: Streams) -> int:
        """One token per position: its 16 channels are split over the streams, GROUP a stream."""
        return math.prod(streams[self._streams[0]].shape)

    @property
    def stream_grids(self) -> dict[str, tuple[int, int, int]]:
        return {name: (1, *self.grid) for name in self._streams}

    @property
    def pixels_per_token(self) -> int:
        return self.config.frames * STRIDE * STRIDE

    @property
    def latent_heads(self) -> dict[str, nn.Module]:
        return {}

    @property
    def encoder_only(self) -> tuple[str, ...]:
        return ("enc_*",)

    def channels_for(self, quality: int | None, key: bool) -> int:
        """FSQ channels sent at `quality` 0-4 (None: the config's default, quality 2): each step
        doubles the channels of the one below, up to all of them; `key_channels` / `next_channels`
        are quality 2's for a key chunk / a chunk coded against a reference (so quality 4 adds to 3
        only in the chunks coded against a reference). With the coarse path a key chunk sends at
        least its 3 colour channels: 2 of them (no Cr) cost 2.2 dB for 2 % fewer bits."""
        c = self.config
        base = c.key_channels if key else c.next_channels
        q = 2 if quality is None else quality
        least = min(3, len(c.levels)) if key and c.coarse else 1
        return max(least, min(len(c.levels), round(base * 2.0 ** (q - 2))))

    # -- networks -------------------------------------------------------------------------------
    def ref_features(self, ref: torch.Tensor | None):
        """ref: (B, 3, H, W) RGB in [-1, 1] or None -> (packed reference, features) or (None, None)."""
        if ref is None:
            return None, None
        rp = pack(ref[:, :, None])
        return rp, self.ref(rp)

    def encode_latent(self, video: torch.Tensor, feats=None, ref: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, T, H, W), H and W multiples of 16 -> pre-quantization latents (B, h, w, D);
        `ref` (B, 3, H, W): the reference frame `feats` came from (the coarse path codes the change)."""
        x = self.enc4(self.enc_in(pack(video)) + (feats[0] if feats else 0))
        x = self.enc8(self.enc_d8(F.silu(x)) + (feats[1] if feats else 0))
        x = self.enc16(self.enc_d16(F.silu(x)) + (feats[2] if feats else 0))
        z = self.enc_out(F.silu(x))
        if self.coarse is not None:
            z = z + self.coarse.encode(video, ref)
        return z.permute(0, 2, 3, 1)

    def decode_codes(self, codes: torch.Tensor, ref_packed=None, feats=None) -> torch.Tensor:
        """Quantized codes (B, h, w, D) -> video (B, 3, T, 16h, 16w)."""
        x = self.dec16(self.dec_in(codes.permute(0, 3, 1, 2)) + (feats[2] if feats else 0))
        x = self.dec8(self.dec_u8(x) + (feats[1] if feats else 0))
        x = self.dec4(self.dec_u4(x) + (feats[0] if feats else 0))
        out = self.dec_out(F.silu(x))
        if ref_packed is not None:
            out = out + ref_packed.repeat(1, self.config.frames, 1, 1)
        video = unpack(out, self.config.frames)
        if self.coarse is not None:
            video = video + self.coarse.decode(codes.permute(0, 3, 1, 2))
        return video if self.post is None else self.post(video)

    def quantize(self, z: torch.Tensor, keep: int | torch.Tensor) -> torch.Tensor:
        """FSQ codes of latents (B, h, w, D), channels from `keep` on (an int, or per batch row)
        set to the middle level (code 0)."""
        codes = self.quant(z)
        d = codes.shape[-1]
        keep = torch.as_tensor(keep, device=codes.device).reshape(-1, 1, 1, 1)
        return codes * (torch.arange(d, device=codes.device) < keep).to(codes.dtype)

    def forward(self, video: torch.Tensor, keep: int | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Key-chunk coding, differentiable: video (B, 3, T, H, W) -> {"recon", "codes"}; `keep`
        FSQ channels (None: the default key-chunk rate)."""
        codes = self.quantize(self.encode_latent(video), self.channels_for(None, True) if keep is None else keep)
        return {"recon": self.decode_codes(codes), "codes": codes}

    # -- the codec's interface ----------------------------------------------------------------------
    # The state is the reference frame (B, 3, H, W) in [-1, 1], or None (a key chunk). The encoder
    # decodes what it sends, so its state is the decoder's (closed loop).
    def _encode_codes(self, video: torch.Tensor, state: Any | None):
        """video (B, 3, T, H, W) -> (FSQ codes sent, packed reference, its features)."""
        self.set_frame(*video.shape[-2:])
        key = state is None or self.config.mode == "intra"
        ref = None if key else state
        rp, feats = self.ref_features(ref)
        return self.quantize(self.encode_latent(video, feats, ref), self.channels_for(self.quality, key)), rp, feats

    def encode_chunk(self, video: torch.Tensor, state: Any | None):
        """video (B, 3, T, H, W) -> ({stream: indices (B, h*w)}, the decoder's state after it)."""
        codes, rp, feats = self._encode_codes(video, state)
        if self.config.mode == "intra" or (self.config.mode == "tiv" and state is not None):
            # the next state does not depend on this chunk's pixels (none; the segment's image)
            return self.codes_to_streams(codes), self.next_state(None, state)
        return self.codes_to_streams(codes), self.next_state(self.decode_codes(codes, rp, feats), state)

    def encode_and_decode_chunk(self, video: torch.Tensor, enc_state: Any | None, dec_state: Any | None):
        """Closed loop: the encoder's decode is the decoder's, so it runs once."""
        codes, rp, feats = self._encode_codes(video, enc_state)
        recon = self.decode_codes(codes, rp, feats)
        return self.codes_to_streams(codes), self.next_state(recon, enc_state), recon, self.next_state(recon, dec_state)

    def codes_to_streams(self, codes: torch.Tensor) -> Streams:
        """FSQ codes (B, h, w, D) -> {stream: indices (B, h*w)}, GROUP channels per stream."""
        out = {}
        for i, (name, q) in enumerate(zip(self._streams, self.stream_quants)):
            out[name] = q.codes_to_indices(codes[..., i * GROUP:(i + 1) * GROUP]).flatten(1)
        return out

    def next_state(self, recon: torch.Tensor, state):
        if self.config.mode == "intra":
            return None
        if self.config.mode == "tiv" and state is not None:
            return state  # the segment's image stays
        return recon[:, :, -1].clamp(-1, 1)

    def decode_chunk(self, streams: Streams, state: Any | None):
        parts = [q.indices_to_codes(streams[name]) for name, q in zip(self._streams, self.stream_quants)]
        codes = torch.cat(parts, -1)
        return self.decode_chunk_codes({"codes": codes.view(codes.shape[0], *self.grid, -1)}, state)

    def decode_chunk_codes(self, codes: dict[str, torch.Tensor], state):
        edited = state.frame if isinstance(state, EditedKey) else None
        if edited is not None:  # a key chunk: decoded as coded, then the edited frame takes over
            state = None
        ref = None if self.config.mode == "intra" else state
        rp, feats = self.ref_features(ref)
        recon = self.decode_codes(codes["codes"], rp, feats)
        return recon, (self.next_state(recon, state) if edited is None else edited)

    def state_from_reference(self, frame: torch.Tensor) -> "EditedKey":
        """Zero-shot editing (`vtcodec edit`): a key chunk decodes as coded, and the edited frame
        (B, 3, H, W) in [-1, 1] becomes the reference of the chunks after it: the segment's image
        (tiv) or the frame the next chunk continues from (ref)."""
        if self.config.mode == "intra":
            raise ModelError(f"model {getattr(self, 'key', self.arch)} codes every chunk on its own: it has no "
                             "reference frame to edit; use a reftok or tivtok .vtk")
        return EditedKey(frame)
