"""``dreamx-bench``: how fast the learned world model runs, alone and behind the env + server, against the
machine's matmul peak and a DIAMOND-size diffusion yardstick. Entry point: ``dreamx_bench.cli``."""
