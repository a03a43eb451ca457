"""The backend worker's refusals, called directly (no thread, no sockets): a STEP or CHECK naming a session
the worker does not hold gets UNKNOWN_SESSION, except on rows that reset, which open the session anew."""

import numpy as np

from world_model.constant import ConstantWorldModel
from world_model.serve.batching import PendingStep
from world_model.serve.worker import BackendWorker
from world_model.wire.protocol import ErrorCode, MsgType
from world_model.wire.requests import SceneSpec, StepRequest


def _worker() -> BackendWorker:
    worker = BackendWorker(ConstantWorldModel, max_batch=8, wake_fd=-1)
    worker.backend = ConstantWorldModel()  # the jobs run on the calling thread here
    return worker


def _step(request_id: int, sessions: list[int], resets: dict[int, SceneSpec] | None = None) -> PendingStep:
    rel = np.broadcast_to(np.eye(4), (len(sessions), 1, 2, 4, 4)).copy()
    events = [[[]] for _ in sessions]
    return PendingStep(b"client", request_id, StepRequest(sessions, rel, events, resets=resets or {}), 0.0)


def test_a_session_the_worker_does_not_hold_is_refused_unless_its_row_resets():
    worker = _worker()
    worker.open_sessions([7, 8], [SceneSpec(scene_seed=1), SceneSpec(scene_seed=2)], ("rgb",), 1)
    worker.close_sessions([7], 2)  # as after a reset that failed: the client still names it

    replies, sizes = worker.step_batch([_step(3, [7, 8]), _step(4, [8])])
    (who, refused), (_, stepped) = replies
    assert who == b"client" and refused.type == MsgType.ERROR
    assert refused.meta["code"] == ErrorCode.UNKNOWN_SESSION and "[7]" in refused.meta["message"]
    assert stepped.type == MsgType.REPLY and stepped.arrays["rgb"].shape[:2] == (1, 1)
    assert sizes == [1]  # the refused request stepped nothing, the other one its one session

    check = worker.check([7, 8], [[[]], [[]]], 5)
    assert check.type == MsgType.ERROR and check.meta["code"] == ErrorCode.UNKNOWN_SESSION

    reopened = worker.step_batch([_step(6, [7, 8], resets={0: SceneSpec(scene_seed=3)})])[0][0][1]
    assert reopened.type == MsgType.REPLY and reopened.meta["scenes"][0][0] == 0
    assert worker.check([7, 8], [[[]], [[]]], 7).type == MsgType.REPLY  # open again, stepping as before
    again = worker.step_batch([_step(8, [7])])[0][0][1]
    assert again.type == MsgType.REPLY
