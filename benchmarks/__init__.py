"""Benchmarks: speed and memory facts measured on this machine, run with `make bench`.

Each module runs as `python -m benchmarks.<name>` and writes its section to
`benchmarks/results/<name>.md`; `benchmarks.run` gathers them into `benchmarks/RESULTS.md`.
"""
