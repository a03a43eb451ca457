"""Process checks the tests that start servers share (importable: ``pythonpath`` in pyproject's pytest
settings puts ``tests/`` on the path)."""


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
