"""The ``vtcodec bench`` package: quality metrics, classical-codec anchors, the benchmark runner
and its plot. The CLI front end is ``vtcodec.cli_bench``; nothing here imports rich."""
