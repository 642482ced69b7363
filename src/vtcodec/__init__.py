"""vtcodec: a video codec built on neural video tokenizers.

Library surface (imports torch lazily, so `import vtcodec` is cheap):

    vtcodec.encode_file(src, dst, model="tivtok")   video file -> .vtk
    vtcodec.decode_file(src, dst)                   .vtk -> video file
    vtcodec.decode_frames(src)                      .vtk -> uint8 (T, H, W, 3)
    vtcodec.read_tokens(src)                        .vtk -> each chunk's token arrays (no model, no torch)
    vtcodec.load_tokenizer("tivtok")                a checkpoint as a model
    vtcodec.list_models()                           installed checkpoints
    vtcodec.read_token_shards(dir)                  `vtcodec tokenize` shards -> numpy batches (pyarrow, no Ray)
"""

__version__ = "0.1.0"

_LAZY = {
    "encode_file": "vtcodec.codec",
    "decode_file": "vtcodec.codec",
    "decode_frames": "vtcodec.codec",
    "iter_decode": "vtcodec.codec",
    "load_tokenizer": "vtcodec.codec",
    "read_tokens": "vtcodec.tokens",
    "list_models": "vtcodec.models.registry",
    "read_token_shards": "vtcodec.scale.shards",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vtcodec' has no attribute {name!r}")
