"""What the benchmarks (``tools/bench/benchmark_*.py``), the GPU check and the tests share: inputs
made for timing (:mod:`.inputs`) and reference implementations timed and tested against
(:mod:`.discovery_reference`). Not used by the pipeline; nothing here imports ``tests/`` and
no tool imports another tool for these."""
