"""TivTok (arch `tivtok2`, the shipped `tivtok`): the time-invariant tokens are a coded image,
broadcast to every frame of a segment.

TivTok's first design (models/tivtok.py, arch `tivtok`) read its TIV tokens out of the clip through
a 32-px tubelet embedding and decoded 32-px patches; through the codec it stayed 2.7-3.1 dB behind
the baseline however it was trained (docs/RESEARCH.md). This design keeps the paper's two rules
and changes what a TIV token is:

* TIV tokens: the tokens of one image (8x8 patches, 64 px/token) that the whole segment builds on.
  Its encoder sees the key chunk's first frame and its mean frame (`intra_ctx 1`; RefTok's steps
  train it on a frame alone, the codec's loop with the mean), so its scope is
  the whole clip; what the image shows is learned on the codec's own loop (`--part codec`), where
  every chunk of the segment is decoded from it, so it is the image that serves all of them, not a
  copy of frame 0.
* Invariant Broadcasting: the decoder turns the TIV tokens into that image once, and its features
  (computed from the image alone, as RefTok computes a reference's) condition every frame; later
  chunks of the segment reuse it and send TV tokens only (cross-chunk reuse). Unlike RefTok, whose
  state is the previous chunk's last decoded frame, the state never changes within a segment, so
  any chunk decodes from the segment's TIV tokens plus its own TV tokens: a chunk needs no
  earlier chunk's pixels and nothing accumulates from chunk to chunk (the codec still walks a
  segment's chunks in order, recomputing the TIV features per chunk; it could decode them in
  parallel or from any chunk, and does not yet).
* Scope-Induced Factorization (`tv_scope 1`): TV tokens are 4x16x16 tubelets; an attention mask
  lets the TV tokens of one time slot (4 frames) see only each other and the TIV features, in the
  encoder and in the decoder. The paper scopes TV tokens to one frame; a slot of 4 frames keeps
  the 1024 px/token budget on 16-px patches. `tv_scope 0` lets TV tokens see the whole chunk.

The network is RefTok's (models/reftok.py), so a TivTok of this design warm-starts from a trained
RefTok checkpoint (`vtcodec train --model tivtok2 --init models/reftok.safetensors --part codec`):
the same modules, a different scope, a different state, and TIV/TV stream names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vtcodec.models.reftok import RefTok, RefTokConfig


@dataclass(frozen=True)
class TivTok2Config(RefTokConfig):
    """TivTok (image TIV tokens) at 1024 px/token: 4x16x16 TV tubelets; TIV image at 64 px/token."""
    # 1: TV tokens of one time slot see only that slot and the TIV features (the scope rule).
    # 0: TV tokens see the whole chunk.
    tv_scope: int = 1
    ref_path: int = 3   # per-pixel gate: static regions copy the TIV image, moving ones do not
    intra_ctx: int = 1  # the TIV encoder sees the chunk's mean frame too


class TivTok2(RefTok):
    arch = "tivtok2"
    Config = TivTok2Config
    LEGACY = {}
    WARM_FROM = ("reftok",)  # registry.warm_start may fill this arch from a RefTok checkpoint
    PART_STREAMS = {"intra": "tiv"}  # `--part intra` trains the tokenizer of the `tiv` stream
    KEY, MAIN = "tiv", "tv"  # RefTok's streams, renamed: the TIV image, the TV tubelets
    STATE_FROM_KEY = True  # a seek decodes the TIV image of the segment, not the chunks before it
    NO_STATE = "a chunk without TIV tokens needs the segment's TIV image"

    def __init__(self, config: TivTok2Config):
        super().__init__(config)
        c = config
        if c.tv_scope not in (0, 1):
            raise ValueError(f"tivtok2 tv_scope must be 0 or 1, got {c.tv_scope}")
        if c.ref_path < 2:
            raise ValueError("tivtok2 needs ref_path 2 or more (TV tokens start from their position's TIV features)")
        if c.tv_scope:
            slot = torch.arange(self.n_tgt) // self.n_ref  # tokens lie in (t', h', w') order
            self.mask[self.n_ref:, self.n_ref:] = slot[:, None] == slot[None, :]

    # -- codec: RefTok's, with the key image (the TIV image) as the state for the whole segment --
    def key_state(self, streams: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.key_image(self.quant.indices_to_codes(streams[self.KEY]))

    def encode_chunk_latents(self, video: torch.Tensor, state: torch.Tensor | None, *,
                             closed_loop: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self._chunk_latents(video, state)  # the state is the decoder's too: no decode needed to continue

    def decode_chunk_codes(self, codes: dict[str, torch.Tensor], state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        state = self._reference(codes, state)
        return self.decode_targets(codes[self.MAIN], state), state
