import importlib.util
import threading

import pytest

# MuJoCo's offscreen GL (Mesa) loaded before triton makes a later ``import triton`` crash the process
# (torch optimizers, SB3, the model tests); importing it before any test module keeps the process safe.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401


@pytest.fixture
def serving():
    """``serving(server_or_broker)``: run its ``serve_forever`` on a thread and wait until it is ready;
    returns the list of what ``serve_forever`` raised. All are stopped (and checked stopped) afterwards."""
    started = []

    def start(obj, ready: bool = True) -> list:
        """``ready=False``: return at once (a worker whose broker is not up yet, one that will be refused)."""
        errors: list = []

        def run():
            try:
                obj.serve_forever()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.append((obj, thread))
        assert not ready or obj.ready.wait(10)
        return errors

    yield start
    for obj, thread in reversed(started):
        obj.stop()
        thread.join(10)
        assert not thread.is_alive()
