import importlib.util

# MuJoCo's offscreen GL (Mesa) loaded before triton makes a later ``import triton`` crash the process
# (torch optimizers, SB3, the model tests); importing it before any test module keeps the process safe.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
