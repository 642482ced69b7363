"""The one surface every tokenizer offers the codec.

The codec cuts video into chunks of `chunk_frames` frames and square tiles of `tile` pixels, and
walks the chunks in order, carrying a per-tile *state* between them:

    streams, enc_state = model.encode_chunk(video, enc_state)   # enc_state None = start a segment
    video, dec_state   = model.decode_chunk(streams, dec_state) # dec_state None = start a segment

`streams` maps a stream name to int64 token indices (B, n); `stream_levels[name]` gives the
quantizer levels, which is all token packing needs. A chunk coded with state None is a *key*
chunk: decodable on its own, a random-access point. What the state holds is the model's business
(TivTok, arch `tivtok2`: the image the segment's time-invariant tokens decode to; its first
design, arch `tivtok`: those tokens themselves; RefTok: the last decoded frame; the
baseline: its causal context). Whether to start a new segment is decided by the codec, from
reconstruction error against bits, never by special-casing a model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from vtcodec.models.layers import count_params

Streams = dict[str, torch.Tensor]


class Tokenizer(nn.Module):
    arch: ClassVar[str]  # stable registry key, stored in checkpoints and .vtk headers
    Config: ClassVar[type]
    # Config values for fields a checkpoint's stored config lacks because it was saved before the
    # field existed: what that checkpoint was trained with (the field's default may differ).
    LEGACY: ClassVar[dict[str, Any]] = {}
    # Name patterns (fnmatch) of tensors a config change may grow along their first two dimensions
    # (output and input units) with the old units keeping their meaning: registry.warm_start
    # copies them and zeroes the new inputs of old units, so a widened layer stack starts as
    # exactly the stored model (an output layer given extra channels, a wider pixel head).
    GROWABLE: ClassVar[tuple[str, ...]] = ()
    # Name prefixes of tensors a warm start fills from another tensor of the stored model when the
    # checkpoint lacks them (new -> source): a config that duplicates a module starts the copy
    # as the original (registry.warm_start), e.g. RefTok's split target encoder.
    DERIVED: ClassVar[dict[str, str]] = {}
    # Architectures whose checkpoints this one can warm-start from (the same module names):
    # `vtcodec train --model THIS --init THAT.safetensors`.
    WARM_FROM: ClassVar[tuple[str, ...]] = ()
    # `--part` names whose submodule codes a stream of another name (validation counts its bits)
    PART_STREAMS: ClassVar[dict[str, str]] = {}

    # Encode-time rate steps a model offers (`vtcodec encode --quality 0..QUALITIES-1`); 0: one rate.
    QUALITIES: ClassVar[int] = 0

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.quality: int | None = None  # the encoder's rate step (None: the model's default)

    def set_frame(self, height: int, width: int) -> None:
        """Whole-frame models (tile 0) learn the padded frame size before a video is coded: their
        token counts and grids depend on it. Tile models have nothing to learn."""

    # -- what the codec needs to know -------------------------------------------------------
    @property
    def chunk_frames(self) -> int:
        return self.config.frames

    @property
    def tile(self) -> int:
        return self.config.tile

    @property
    def stream_levels(self) -> dict[str, list[int]]:
        raise NotImplementedError

    def tokens_per_chunk(self, key: bool) -> dict[str, int]:
        """Tokens one tile of one chunk costs, per stream, for a key chunk or a following chunk."""
        raise NotImplementedError

    def count_tokens(self, streams: Streams) -> int:
        """How many tokens a chunk's streams hold (what `pixels_per_token` divides by): every
        stream element, unless a model splits each token over several streams."""
        return sum(math.prod(v.shape) for v in streams.values())

    @property
    def stream_grids(self) -> dict[str, tuple[int, int, int]]:
        """How each stream's tokens of one tile lie, as (T, H, W) in C order: T the axis along which
        tokens repeat (latent time), H x W the positions of one step. The entropy coder's contexts
        come from it (vtcodec.entropy); it is stored in the payload, so decoding needs no model.
        The default, one row per stream, gives left-neighbour contexts only."""
        return {k: (1, 1, n) for k, n in self.tokens_per_chunk(True).items()}

    @property
    def encoder_only(self) -> tuple[str, ...]:
        """Name patterns (fnmatch) of the parameters only the encoder uses: decoding
        (`decode_chunk_codes`) never reads them, so training them alone (`vtcodec train --part
        encoder`) changes which tokens are sent, never what a token decodes to."""
        return ()

    @property
    def latent_heads(self) -> dict[str, nn.Module]:
        """Per token stream, the layer whose output channels are the stream's FSQ latents (a Linear
        or a 1x1 convolution: output channel i is row i of its weight and bias), for
        vtcodec.train.revive. Empty where a model does not say."""
        return {}

    @property
    def pixels_per_token(self) -> int:
        """The headline ratio: pixels of a tile-chunk per token of a key chunk's main streams."""
        px = self.chunk_frames * self.tile * self.tile
        return round(px / sum(self.tokens_per_chunk(key=False).values()))

    @property
    def params(self) -> int:
        return count_params(self)

    def describe(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "chunk_frames": self.chunk_frames,
            "tile": self.tile,
            "pixels_per_token": self.pixels_per_token,
            "tokens_key": self.tokens_per_chunk(True),
            "tokens_next": self.tokens_per_chunk(False),
            "stream_levels": self.stream_levels,
            "stream_grids": self.stream_grids,
            "codebook_bits": {k: math.log2(math.prod(v)) for k, v in self.stream_levels.items()},
            "params": self.params,
        }

    # -- coding -----------------------------------------------------------------------------
    def encode_chunk(self, video: torch.Tensor, state: Any | None) -> tuple[Streams, Any]:
        """Video -> (token indices (B, n) per stream, new state): `encode_chunk_latents`, quantized."""
        latents, state = self.encode_chunk_latents(video, state)
        return {k: self.quant.quantize(z)[1] for k, z in latents.items()}, state

    def encode_chunk_latents(self, video: torch.Tensor, state: Any | None, *,
                             closed_loop: bool = True) -> tuple[dict[str, torch.Tensor], Any]:
        """Video -> (pre-quantization latents (B, n, q) per stream, new state). Quantizing them
        with `self.quant` gives the chunk's tokens; encoder-side refinement (vtcodec.refine) starts
        its search from them.

        closed_loop False: the caller takes the next state from `next_encoder_state(state, the
        decoder's state)` (refinement, `train.steps.encoder_step`), so a model whose next state
        is the decoder's may skip computing it and return None (RefTok: one decode less)."""
        raise NotImplementedError

    def encode_and_decode_chunk(self, video: torch.Tensor, enc_state: Any | None,
                                dec_state: Any | None) -> tuple[Streams, Any, torch.Tensor, Any]:
        """Encode a chunk and decode what it sends: (streams, encoder state, video, decoder state),
        as `encode_chunk` then `decode_chunk`. A model whose encoder already decodes (closed loop)
        overrides it to decode once."""
        streams, enc_state = self.encode_chunk(video, enc_state)
        return streams, enc_state, *self.decode_chunk(streams, dec_state)

    def decode_chunk(self, streams: Streams, state: Any | None) -> tuple[torch.Tensor, Any]:
        """Token indices -> (video, new state): each stream's FSQ codes, then `decode_chunk_codes`."""
        return self.decode_chunk_codes({k: self.quant.indices_to_codes(v) for k, v in streams.items()}, state)

    def decode_chunk_codes(self, codes: dict[str, torch.Tensor], state: Any | None) -> tuple[torch.Tensor, Any]:
        """Quantized codes (B, n, q) per stream -> (video, new state); differentiable in `codes`,
        which is what encoder-side refinement (vtcodec.refine) optimises through."""
        raise NotImplementedError

    # True: the codec stores the weights channels-last (a convolutional network's faster layout)
    CHANNELS_LAST: ClassVar[bool] = False

    # True: the state after any chunk follows from the key streams alone (`key_state`), never from
    # a chunk's other streams (TivTok's TIV image), so a seek skips decoding the chunks before it.
    STATE_FROM_KEY: ClassVar[bool] = False

    def key_state(self, streams: Streams) -> Any:
        """The state key streams (token indices) give, without decoding the chunk (STATE_FROM_KEY)."""
        raise NotImplementedError

    def next_encoder_state(self, enc_state: Any, dec_state: Any) -> Any:
        """The encoder's state for the next chunk once refinement has changed this chunk's tokens.
        Closed-loop models (RefTok's decoded frame, TivTok's TIV codes) carry what the decoder
        carries, so by default the decoder's state; a model whose encoder state depends on its
        input alone (the baseline's causal input context) returns `enc_state`."""
        return dec_state

    # Per-tile refresh: the codec restarts some tiles of a batch while the others continue, so it
    # needs a state's rows. Every state here is a tensor with the batch first; a model whose state
    # is not overrides these two.
    @staticmethod
    def state_rows(state: Any, rows: torch.Tensor) -> Any:
        """The state of the batch rows selected by the bool mask `rows`."""
        return state[rows]

    @staticmethod
    def replace_state_rows(state: Any, rows: torch.Tensor, new: Any) -> Any:
        """`state` with the rows selected by the bool mask `rows` replaced by `new` (those rows' state)."""
        out = state.clone()
        out[rows] = new.to(out.dtype)
        return out

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
