"""Per-session memory of what was seen, and retrieval by camera geometry (WorldMem-style).

Every generated frame is kept with its predicted depth, pose, time and world state. The bank keeps the
latest frame plus *keyframes*: a frame becomes a keyframe unless a keyframe of the same look of the world
(lights, door) already covers its view from nearby; keyframes of other looks stay, ranked after this look's,
so the world looks as it did when it comes back to a look; when the bank is full, the keyframe another one
covers best goes, so rarely seen places stay remembered.
Retrieval for a target camera starts from the latest frame and greedily adds the keyframes that cover the
most still-uncovered parts of the target view (footprints projected into the target), minus staleness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from world_model.geometry import Intrinsics, shared_pixel_rays
from world_model.model import native

COVERAGE_CELLS = 4  # the target view is split into COVERAGE_CELLS x COVERAGE_CELLS cells for coverage
NEAREST_M = 0.05  # a footprint point nearer to a camera than this (or behind it) is not in its view
DEGREES_PER_M = 30.0  # camera distance: metres apart plus degrees between view directions / DEGREES_PER_M
# footprint points below which the C kernel keeps to the calling thread: waking OpenMP's threads costs more
# (30 us of a 65 us call, one bank's new keyframe against 48 others, from the server's worker thread)
SMALL_COVERAGE = 1 << 15
SETTLE_FRAMES = 8  # frames after a world-state change (lights, door) in which the network's look converges:
# keyframes made then are replaced by newer views of their place, never kept as its settled look


@dataclass
class MemoryEntry:
    """One remembered frame: ``rgb [3,H,W]`` in [-1, 1], metric ``depth [H,W]`` (inf: sky), ``door [H,W]``
    (1 where the door was seen), ``pose [4,4]``, ``time`` (frame index), the world state it was seen in
    (``lights``, ``door_open``, ``version``: the look and the change it was seen after) and ``points [P,3]``,
    its footprint for retrieval."""

    rgb: torch.Tensor
    depth: torch.Tensor
    door: torch.Tensor
    pose: np.ndarray
    time: int
    lights: bool
    door_open: bool
    version: int
    points: np.ndarray

    @property
    def look(self) -> tuple[bool, bool]:
        """The world's look it was seen in (``WorldState.look``)."""
        return self.lights, self.door_open


def look_code(look: tuple[bool, bool]) -> int:
    """``WorldState.look`` as a small integer, for array comparisons."""
    return int(look[0]) + 2 * int(look[1])


def _project(points: torch.Tensor, poses: torch.Tensor, intr: Intrinsics):
    """Pixel ``u, v`` and camera z ``[B, E, P]`` of footprints ``points [B, E, P, 3]`` in cameras ``poses
    [B, 4, 4]``, and whether each lands in the image in front of the camera. Written element by element,
    so a session's answer does not depend on the batch it is computed in."""
    rot, t = poses[:, None, None, :3, :3], poses[:, None, None, :3, 3]
    d = points - t
    cam = [
        d[..., 0] * rot[..., 0, j] + d[..., 1] * rot[..., 1, j] + d[..., 2] * rot[..., 2, j] for j in range(3)
    ]
    z = cam[2]
    u, v = intr.to_pixels(cam[0], cam[1], z.clamp_min(1e-6))
    inside = (z > NEAREST_M) & (u >= 0) & (u < intr.width) & (v >= 0) & (v < intr.height)
    return u, v, inside


def coverage(
    points: torch.Tensor, poses: torch.Tensor, intr: Intrinsics
) -> tuple[torch.Tensor, torch.Tensor]:
    """For footprints ``points [B, E, P, 3]`` and cameras ``poses [B, 4, 4]``: which coverage cells of each
    camera every footprint lands in (``[B, E, cells²]`` bool; nothing behind the camera or outside the image)
    and the fraction of each footprint the camera sees (``[B, E]``, frustum test, no occlusion). ``points
    [1, E, P, 3]``: the same footprints in every camera. On the CPU, the C kernel ``native/coverage.c`` where
    it builds: the same numbers bit for bit as its reference :func:`coverage_torch`, 3-4 times faster (32
    cameras x 49 footprints: 0.69 ms against 2.4-3.0)."""
    if points.device.type == "cpu" and native.available():
        return _coverage_native(points, poses, intr)
    return coverage_torch(points, poses, intr)


def _coverage_native(
    points: torch.Tensor, poses: torch.Tensor, intr: Intrinsics
) -> tuple[torch.Tensor, torch.Tensor]:
    pts = points.to(torch.float64).contiguous()  # a broadcast view is laid out in full first
    cams = poses.to(torch.float64).contiguous()
    b, e, p, _ = pts.shape
    shared = b == 1 and len(cams) != 1  # one set of footprints for all cameras, read in place
    b = len(cams) if shared else b
    if cams.shape != (b, 4, 4):
        raise ValueError(f"need a [{b}, 4, 4] camera pose per footprint set, got {list(cams.shape)}")
    threads = torch.get_num_threads() if b * e * p >= SMALL_COVERAGE else 1
    hits = torch.empty(b, e, COVERAGE_CELLS**2, dtype=torch.bool)
    seen = torch.empty(b, e, dtype=torch.float64)
    native.load().dreamx_coverage(
        pts.data_ptr(), int(shared), cams.data_ptr(), b, e, p, intr.fx, intr.fy, intr.cx, intr.cy, intr.width,
        intr.height, NEAREST_M, COVERAGE_CELLS, threads, hits.data_ptr(), seen.data_ptr(),
    )  # fmt: skip
    return hits, seen


def coverage_torch(
    points: torch.Tensor, poses: torch.Tensor, intr: Intrinsics
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`coverage` in torch tensor operations, on any device."""
    u, v, inside = _project(points, poses, intr)
    n = COVERAGE_CELLS
    cu = (u * n / intr.width).long().clamp(0, n - 1)
    cv = (v * n / intr.height).long().clamp(0, n - 1)
    cell = torch.where(inside, cv * n + cu, n * n)  # out of view: an extra cell, dropped below
    hits = torch.zeros(*cell.shape[:2], n * n + 1, dtype=torch.bool, device=cell.device)
    hits.scatter_(2, cell, True)
    return hits[..., : n * n], inside.double().mean(dim=2)


def select_many(
    points: torch.Tensor,
    valid: torch.Tensor,
    ages: torch.Tensor,
    poses: torch.Tensor,
    intr: Intrinsics,
    k: int,
    staleness: float = 0.002,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Memories for ``B`` cameras at once. ``points [B, E, P, 3]`` are each candidate's footprint (index 0:
    the latest frame), ``valid [B, E]`` marks real candidates (the rest is padding), ``ages [B, E]`` frames
    since each was seen. Per camera: the latest first, then greedy coverage of the target view (ties and
    leftovers by overlap minus ``staleness`` per frame of age), up to ``k`` (:func:`greedy_torch`; on the
    CPU the C kernel in ``native/coverage.c``, the same choice: retrieval for one camera took 0.09 ms instead
    of 0.32). Returns the chosen indices ``[B, k]`` (-1: none) and every candidate's overlap with the camera
    ``[B, E]``."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (the latest frame), got {k}")
    cells, seen = coverage(points, poses, intr)
    if cells.device.type == "cpu" and native.available() and cells.shape[2] <= 64:
        return _greedy_native(cells, seen, valid, ages, k, staleness), seen
    return greedy_torch(cells, seen, valid, ages, k, staleness), seen


def _greedy_native(
    cells: torch.Tensor, seen: torch.Tensor, valid: torch.Tensor, ages: torch.Tensor, k: int, staleness: float
) -> torch.Tensor:
    b, e, n = cells.shape
    hits, ok = cells.contiguous(), valid.to(torch.bool).contiguous()
    seen, ages = seen.to(torch.float64).contiguous(), ages.to(torch.float64).contiguous()
    chosen = torch.empty(b, k, dtype=torch.long)
    native.load().dreamx_select(
        hits.data_ptr(), seen.data_ptr(), ok.data_ptr(), ages.data_ptr(), b, e, n, k, staleness,
        chosen.data_ptr(),
    )  # fmt: skip
    return chosen


def greedy_torch(
    cells: torch.Tensor, seen: torch.Tensor, valid: torch.Tensor, ages: torch.Tensor, k: int, staleness: float
) -> torch.Tensor:
    """The greedy choice of :func:`select_many` in torch tensor operations, on any device, given each
    candidate's coverage cells ``[B, E, cells]`` and overlap ``seen [B, E]``."""
    cells = cells & valid[..., None]
    b = cells.shape[0]
    rows = torch.arange(b, device=cells.device)
    score = torch.where(valid, seen - staleness * ages, -torch.inf)
    taken = torch.zeros_like(valid)
    taken[:, 0] = True
    chosen = torch.full((b, k), -1, dtype=torch.long, device=cells.device)
    chosen[:, 0] = 0
    covered = cells[:, 0].clone()
    active = valid.sum(dim=1) > 1
    for i in range(1, k):
        gain = (cells & ~covered[:, None]).sum(dim=2) + score
        gain = torch.where(taken, -torch.inf, gain)
        best = gain.argmax(dim=1)  # the first of equals, as the order of candidates says
        active &= cells[rows, best].any(dim=1) & torch.isfinite(gain[rows, best])  # none left: stop
        chosen[:, i] = torch.where(active, best, -1)
        taken[rows, best] |= active
        covered |= cells[rows, best] & active[:, None]
    return chosen


def select(
    points: np.ndarray,
    ages: np.ndarray,
    pose: np.ndarray,
    intr: Intrinsics,
    k: int,
    latest: int,
    staleness: float = 0.002,
) -> list[int]:
    """:func:`select_many` for one camera: indices of up to ``k`` memories among ``points [E, P, 3]``,
    ``latest`` first."""
    order = [latest] + [i for i in range(len(points)) if i != latest]
    pts = torch.as_tensor(np.asarray(points, np.float64)[order])[None]
    chosen, _ = select_many(
        pts,
        torch.ones(1, len(order), dtype=torch.bool),
        torch.as_tensor(np.asarray(ages, np.float64)[order])[None],
        torch.as_tensor(np.asarray(pose, np.float64))[None],
        intr,
        k,
        staleness,
    )
    return [order[i] for i in chosen[0].tolist() if i >= 0]


def overlap(points: np.ndarray, pose: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Fraction ``[E]`` of each footprint ``points [E, P, 3]`` that camera ``pose`` sees."""
    pts = torch.as_tensor(np.asarray(points, np.float64))[None]
    return coverage(pts, torch.as_tensor(np.asarray(pose, np.float64))[None], intr)[1][0].numpy()


def camera_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far apart cameras ``a [..., 4, 4]`` and ``b [..., 4, 4]`` are as viewpoints: metres between them
    plus the degrees between their view directions over ``DEGREES_PER_M``. A memory's reprojection error
    from wrong depth grows with this distance (none at the same viewpoint, whatever the depth), so it orders
    which memories to trust for a view."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    metres = np.linalg.norm(a[..., :3, 3] - b[..., :3, 3], axis=-1)
    cos = np.clip(np.sum(a[..., :3, 2] * b[..., :3, 2], axis=-1), -1.0, 1.0)
    return metres + np.degrees(np.arccos(cos)) / DEGREES_PER_M


class MemoryBank:
    """A session's bounded memory: the latest frame plus at most ``capacity`` keyframes."""

    def __init__(self, capacity: int = 48, same_place_m: float = 0.5, same_view: float = 0.8) -> None:
        self.capacity, self.same_place_m, self.same_view = capacity, same_place_m, same_view
        self.keyframes: list[MemoryEntry] = []
        self.used: list[int] = []  # when each keyframe was last retrieved (least recently used goes first)
        self.latest: MemoryEntry | None = None
        self.latest_at = -1  # the latest frame's index among the keyframes (-1: not a keyframe)
        # the keyframes' footprints, poses, times, world-state versions and looks, stacked and kept in step
        # (replaced, never written to: forks share them)
        self._stacked: tuple[np.ndarray, ...] | None = None
        # _views[v, e]: how much of keyframe e's footprint keyframe v's camera sees, kept up to date
        # incrementally: a keyframe's row is what add was given or computed, its column (in _stale) is
        # computed when next needed
        self._views = np.zeros((0, 0))
        self._stale: set[int] = set()
        self.version_since: dict[int, int] = {}  # the first frame seen in each world-state version

    def __len__(self) -> int:
        return len(self.keyframes) + (self.latest is not None and self.latest_at < 0)

    def copy(self) -> MemoryBank:
        """A fork's memory: same (immutable) entries, independent lists."""
        out = MemoryBank(self.capacity, self.same_place_m, self.same_view)
        out.keyframes, out.used, out.latest = list(self.keyframes), list(self.used), self.latest
        out.latest_at, out._stacked = self.latest_at, self._stacked
        out._views, out._stale = self._views.copy(), set(self._stale)
        out.version_since = dict(self.version_since)
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The keyframes' footprints ``[E, P, 3]``, camera positions ``[E, 3]`` and times ``[E]``."""
        points, poses, times = self._stacked[:3]
        return points, poses[:, :3, 3], times

    def add(self, entry: MemoryEntry, intr: Intrinsics, seen: np.ndarray | None = None) -> None:
        """Remember ``entry``. ``seen [len(keyframes)]``: how much of each keyframe's footprint the entry's
        camera sees, when the caller has it already (retrieval for that camera computes it)."""
        add_many([self], [entry], intr, [seen])

    def _put(self, at: int, entry: MemoryEntry, seen: np.ndarray | None) -> None:
        """Make ``entry`` keyframe ``at`` (``len(keyframes)``: a new one) and the latest; ``seen``: how much
        of each keyframe (before this one) it sees."""
        rows = (entry.points, entry.pose, np.float64(entry.time), np.int64(entry.version))
        rows += (np.int64(look_code(entry.look)),)
        if at == len(self.keyframes):
            self.keyframes.append(entry)
            self.used.append(entry.time)
            views = np.zeros((len(self._views) + 1,) * 2)  # one row and column more (np.pad: 10x slower)
            views[:-1, :-1] = self._views
            self._views = views
            stacked = self._stacked or tuple(np.empty((0, *np.shape(r)), np.asarray(r).dtype) for r in rows)
            self._stacked = tuple(
                np.concatenate([a, np.asarray(r)[None]]) for a, r in zip(stacked, rows, strict=True)
            )
        else:
            self.keyframes[at], self.used[at] = entry, entry.time
            self._stacked = tuple(a.copy() for a in self._stacked)
            for a, r in zip(self._stacked, rows, strict=True):
                a[at] = r
        if seen is not None:
            self._views[at, : len(seen)] = seen
        self.latest_at = at
        self._stale.add(at)

    def _drop(self, at: int) -> None:
        """Forget keyframe ``at``."""
        self.keyframes.pop(at)
        self.used.pop(at)
        self._stacked = tuple(np.delete(a, at, axis=0) for a in self._stacked)
        keep = np.arange(len(self._views)) != at
        self._views = self._views[keep][:, keep]
        self._stale = {i - (i > at) for i in self._stale if i != at}
        self.latest_at = -1 if at == self.latest_at else self.latest_at - (at < self.latest_at)

    def _most_redundant(self, intr: Intrinsics) -> int:
        """The keyframe whose view another keyframe covers best (least recently used among equals)."""
        seen = self._views_now(intr).copy()  # [viewer, entry]
        np.fill_diagonal(seen, 0.0)
        used = np.asarray(self.used, np.float64)
        return int(np.argmax(seen.max(axis=0) - 1e-6 * (used - used.min())))

    def _views_now(self, intr: Intrinsics) -> np.ndarray:
        """``_views`` with the stale columns computed: one keyframe added costs ``E`` footprint projections
        instead of the ``E²`` of the whole matrix. Same numbers as the whole matrix, since the projection is
        element by element."""
        if not self._stale:
            return self._views
        points, poses = self._stacked[:2]
        stale = np.array(sorted(self._stale))
        pts = torch.from_numpy(points[stale][None])  # the stale footprints, seen from every keyframe's camera
        self._views[:, stale] = coverage(pts, torch.from_numpy(poses), intr)[1].numpy()
        self._stale.clear()
        return self._views

    def forget(self, center: tuple[float, float], radius: float, top: float, intr: Intrinsics) -> None:
        """Forget what every remembered frame saw inside a vertical cylinder (``center`` x, y, ``radius``,
        from the floor up to ``top``): something left that place (a pushed object), so warps leave those
        pixels for the network to draw anew. Entries are replaced, not written to: forks share them."""
        entries = self.keyframes if self.latest_at >= 0 else [*self.keyframes, self.latest]
        cleared = [_cleared(e, center, radius, top, intr) for e in entries]
        self.keyframes = cleared[: len(self.keyframes)]
        self.latest = self.keyframes[self.latest_at] if self.latest_at >= 0 else cleared[-1]

    def shadowed(self, look: tuple[bool, bool], intr: Intrinsics) -> np.ndarray:
        """Which keyframes ``[E]`` (bool) were seen in another look than ``look`` at a place a keyframe or the
        latest frame of ``look`` covers (the test ``add_many`` keeps a place's keyframe by): what is there now
        is that newer view, so retrieval leaves them out; they stay for when the world returns to their look.
        Warped in beside it, an old view's mislabelled door or lit pixels would show through."""
        codes = self._stacked[4]
        other = codes != look_code(look)
        if not other.any() or other.all() and self.latest.look != look:
            return other & False
        positions = self._stacked[1][:, :3, 3]
        near = np.linalg.norm(positions[:, None] - positions[None], axis=-1) < self.same_place_m
        covers = near & (self._views_now(intr) >= self.same_view) & ~other[:, None]  # [viewer, keyframe]
        shadow = covers.any(axis=0)
        if self.latest_at < 0 and self.latest.look == look:
            seen = overlap(self._stacked[0], self.latest.pose, intr)
            near = np.linalg.norm(positions - self.latest.pose[:3, 3], axis=-1) < self.same_place_m
            shadow |= near & (seen >= self.same_view)
        return shadow & other


def _cleared(
    entry: MemoryEntry, center: tuple[float, float], radius: float, top: float, intr: Intrinsics
) -> MemoryEntry:
    """``entry`` with no depth (0: nothing, as the warp reads it) where it saw inside the cylinder."""
    depth = entry.depth
    rays = torch.tensor(shared_pixel_rays(intr), dtype=torch.float32, device=depth.device)
    pose = torch.as_tensor(entry.pose, dtype=torch.float32, device=depth.device)
    world = (rays * depth.float()[..., None]) @ pose[:3, :3].T + pose[:3, 3]
    dx, dy = world[..., 0] - center[0], world[..., 1] - center[1]
    inside = (dx * dx + dy * dy < radius * radius) & (world[..., 2] < top) & torch.isfinite(depth)
    if not bool(inside.any()):
        return entry
    return dataclasses.replace(entry, depth=torch.where(inside, torch.zeros_like(depth), depth))


def add_many(
    banks: list[MemoryBank],
    entries: list[MemoryEntry],
    intr: Intrinsics,
    seen: list[np.ndarray | None] | None = None,
) -> None:
    """:meth:`MemoryBank.add` for many banks, one entry each. ``seen``: per bank, how much of each of its
    keyframes the entry's camera sees (``None``: computed here). The entry becomes the latest frame; it
    becomes a keyframe unless a settled keyframe of the same look (``WorldState.look``) was seen from within
    ``same_place_m`` and shares at least ``same_view`` of its view; an unsettled one of that look there (made
    while the look converged after a change) is replaced by it. Keyframes of other looks stay: the world
    may come back to them (the door closes again), and retrieval ranks them after this look's. That
    test runs for all banks at once, in a few array operations over their keyframes (padded to the largest
    bank), not a dozen small ones per bank."""
    if len(entries) != len(banks) or (seen is not None and len(seen) != len(banks)):
        raise ValueError(f"need one entry (and seen) per bank: {len(entries)} for {len(banks)} banks")
    seen = [None] * len(banks) if seen is None else list(seen)
    for bank, entry in zip(banks, entries, strict=True):
        # version 0 is the world as opened: its first frame is the given one, the best memory there is
        bank.version_since.setdefault(entry.version, entry.time if entry.version else -SETTLE_FRAMES)
    sizes = [len(bank.keyframes) for bank in banks]
    skip, replace = [False] * len(banks), [-1] * len(banks)
    if max(sizes, default=0):
        n, most = len(banks), max(sizes)
        positions = np.full((n, most, 3), np.inf)  # padding: infinitely far, never the same place
        views, looks = np.zeros((n, most)), np.full((n, most), -1, np.int64)
        settled = np.zeros((n, most), bool)
        for b, (bank, entry) in enumerate(zip(banks, entries, strict=True)):
            if sizes[b]:
                points, poses, _, version, look = bank._stacked
                if seen[b] is None:
                    seen[b] = overlap(points, entry.pose, intr)
                positions[b, : sizes[b]], views[b, : sizes[b]] = poses[:, :3, 3], seen[b]
                looks[b, : sizes[b]] = look
                since = np.array([bank.version_since.get(int(v), 0) for v in version])
                settled[b, : sizes[b]] = bank._stacked[2] >= since + SETTLE_FRAMES
        offset = positions - np.array([entry.pose[:3, 3] for entry in entries])[:, None]
        distance = np.sqrt(np.add.reduce(offset * offset, axis=2))  # as np.linalg.norm
        near = distance < np.array([bank.same_place_m for bank in banks])[:, None]
        same = near & (views >= np.array([bank.same_view for bank in banks])[:, None])
        here = same & (looks == np.array([look_code(entry.look) for entry in entries])[:, None])
        skip = (here & settled).any(axis=1).tolist()  # this place is remembered in this look
        replace = np.where(here.any(axis=1), here.argmax(axis=1), -1).tolist()  # the first such keyframe
    for bank, entry, size, seen_b, known, at in zip(banks, entries, sizes, seen, skip, replace, strict=True):
        bank.latest, bank.latest_at = entry, -1
        if known:
            continue
        if at >= 0:  # remembered while the look converged: the newer view wins
            bank._put(at, entry, seen_b)
            continue
        bank._put(size, entry, seen_b)
        if len(bank.keyframes) > bank.capacity:
            bank._drop(bank._most_redundant(intr))


def retrieve_many(
    banks: list[MemoryBank],
    poses: np.ndarray,
    intr: Intrinsics,
    k: int,
    now: list[int],
    device: torch.device | str = "cpu",
    near_gate: float = 0.0,
    near_k: int = 0,
    looks: list[tuple[bool, bool]] | None = None,
) -> tuple[list[list[MemoryEntry]], list[np.ndarray]]:
    """:meth:`MemoryBank.retrieve` for many banks and cameras ``poses [B, 4, 4]`` in one batched pass on
    ``device``. Also returns, per bank, how much of each keyframe the camera sees (for ``add``).

    With ``near_k`` > 0, up to ``near_k`` keyframes seen from within ``near_gate`` of the camera
    (:func:`camera_distance`) come right after the latest frame, nearest first, and greedy coverage fills
    the rest: back at a place, the views taken there are retrieved even when the latest frame already
    covers the view (coverage alone then prefers recent frames, whose depth has drifted furthest). With
    ``looks`` (per bank, the world's look now), only keyframes seen in that look are taken so, and keyframes
    of another look are not taken where one of this look covers their place (``MemoryBank.shadowed``)."""
    if any(bank.latest is None for bank in banks):
        raise RuntimeError("empty memory: open the session with a first frame")
    sizes = [len(bank.keyframes) for bank in banks]
    pts = np.zeros((len(banks), 1 + max(sizes), *banks[0].latest.points.shape))
    valid = np.zeros(pts.shape[:2], bool)
    ages = np.zeros(pts.shape[:2])
    for b, bank in enumerate(banks):  # candidates: the latest, then the keyframes (less the latest)
        pts[b, 0] = bank.latest.points
        valid[b, 0], ages[b, 0] = True, now[b] - bank.latest.time
        if sizes[b]:
            points, _, times = bank.arrays()
            pts[b, 1 : 1 + sizes[b]] = points
            valid[b, 1 : 1 + sizes[b]] = True
            if bank.latest_at >= 0:  # no second copy of the latest
                valid[b, 1 + bank.latest_at] = False
            ages[b, 1 : 1 + sizes[b]] = now[b] - times
    if looks is not None:
        for b, bank in enumerate(banks):
            if sizes[b]:
                valid[b, 1 : 1 + sizes[b]] &= ~bank.shadowed(looks[b], intr)
    near = _nearest_keyframes(banks, poses, valid, near_gate, near_k, looks) if near_k > 0 else None
    if near is not None:
        for b, picks in enumerate(near):
            valid[b, [1 + i for i in picks]] = False  # taken already: greedy coverage fills the rest
    chosen, seen = select_many(
        torch.as_tensor(pts, device=device),
        torch.as_tensor(valid, device=device),
        torch.as_tensor(ages, device=device),
        torch.as_tensor(np.asarray(poses, np.float64), device=device),
        intr,
        k,
    )
    chosen, seen = chosen.cpu().numpy(), seen.cpu().numpy()
    if near is not None:
        chosen = [_merge(row, [1 + i for i in picks], k) for row, picks in zip(chosen, near, strict=True)]
    out = []
    for b, bank in enumerate(banks):
        picked = [bank.latest if c == 0 else bank.keyframes[c - 1] for c in chosen[b] if c >= 0]
        for c in chosen[b][1:]:
            if c > 0:
                bank.used[c - 1] = now[b]
        if bank.latest_at >= 0:  # the latest is always retrieved
            bank.used[bank.latest_at] = now[b]
        out.append(picked)
    return out, [seen[b, 1 : 1 + sizes[b]] for b in range(len(banks))]


def _nearest_keyframes(
    banks: list[MemoryBank],
    poses: np.ndarray,
    valid: np.ndarray,
    gate: float,
    most: int,
    looks: list[tuple[bool, bool]] | None = None,
) -> list[list[int]]:
    """Per bank, the indices of up to ``most`` keyframes (not the latest) within ``gate`` of its camera
    (:func:`camera_distance`), nearest first; with ``looks``, only those seen in the bank's look."""
    out = []
    for b, bank in enumerate(banks):
        if not bank.keyframes:
            out.append([])
            continue
        cams = bank._stacked[1]
        dist = camera_distance(cams, np.asarray(poses[b])[None])
        ok = valid[b, 1 : 1 + len(cams)]
        if looks is not None:
            ok = ok & (bank._stacked[4] == look_code(looks[b]))
        dist = np.where(ok, dist, np.inf)
        order = np.argsort(dist, kind="stable")[:most]
        out.append([int(i) for i in order if dist[i] <= gate])
    return out


def _merge(greedy: np.ndarray, near: list[int], k: int) -> np.ndarray:
    """The latest (greedy's first), then ``near``, then greedy's other picks, ``k`` in all (-1: none)."""
    picks = [int(greedy[0])] + near + [int(c) for c in greedy[1:] if c >= 0]
    picks = picks[:k]
    return np.array(picks + [-1] * (k - len(picks)))
