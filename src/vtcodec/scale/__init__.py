"""Tokenizing whole datasets: `vtcodec tokenize` on Ray Data, and the loader for its shards.

    vtcodec.scale.tokenize(sources, out, model=...)   files/folders/globs/manifests -> OUT/shard-*.parquet
    vtcodec.read_token_shards(out)                    numpy batches of clips (pyarrow only, no Ray)

Ray is an optional extra (`pip install "vtcodec[scale]"`), imported only when a pipeline runs;
nothing else in vtcodec imports this package.
"""

from vtcodec.scale.shards import read_token_shards, row_chunks

__all__ = ["read_token_shards", "row_chunks", "tokenize"]


def __getattr__(name: str):
    if name in ("tokenize", "TokenizeSummary"):
        from vtcodec.scale import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'vtcodec.scale' has no attribute {name!r}")
