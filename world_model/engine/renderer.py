"""Offscreen MuJoCo rendering of RGB, metric depth and segmentation from the ``eye`` camera.

One pass reads RGB and depth together; a second pass with MuJoCo's segmentation colours gives the geom
id of every pixel. Works on CPU with Debian's Mesa (``MUJOCO_GL=egl`` or ``osmesa``) and on NVIDIA EGL.
"""

from __future__ import annotations

import numpy as np

from world_model.engine import mujoco  # sets MUJOCO_GL before the import


class SceneRenderer:
    """Renders any ``MjData`` of models that share this model's structure (forks of one scene)."""

    def __init__(
        self, model: mujoco.MjModel, height: int = 64, width: int = 64, gl: mujoco.GLContext | None = None
    ) -> None:
        """``gl``: a GL context to share (renderers of many scenes in one thread); default: its own."""
        self.height, self.width = height, width
        self._owns_gl = gl is None
        self._gl = gl or mujoco.GLContext(
            max(width, model.vis.global_.offwidth), max(height, model.vis.global_.offheight)
        )
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=500)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "eye")
        self._rect = mujoco.MjrRect(0, 0, width, height)
        near = np.float32(model.vis.map.znear * model.stat.extent)
        far = np.float32(model.vis.map.zfar * model.stat.extent)
        c = -(far + near) / (far - near)
        d = -(np.float32(2) * far * near) / (far - near)
        # MuJoCo renders with reversed z: undo its projection to metric z-depth.
        self._c, self._d = np.float32(-0.5) * c - np.float32(0.5), np.float32(-0.5) * d
        self._far = float(far)
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._zbuf = np.empty((height, width), np.float32)
        self._seg = np.empty((height, width, 3), np.uint8)

    def render(
        self, model: mujoco.MjModel, data: mujoco.MjData, segmentation: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """RGB ``[H,W,3] uint8``, z-depth ``[H,W] float32`` in metres (inf where nothing is hit) and
        the geom id per pixel ``[H,W] int32`` (-1 for nothing), or None without segmentation."""
        self._gl.make_current()
        # Renderers of other scenes may share the GL context and leave their framebuffer bound.
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        mujoco.mjv_updateScene(
            model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._rgb, self._zbuf, self._rect, self._context)
        rgb = np.flipud(self._rgb).copy()
        z = np.flipud(self._zbuf).astype(np.float64)
        depth = (self._d / (z + self._c)).astype(np.float32)
        depth[depth >= 0.99 * self._far] = np.inf
        if not segmentation:
            return rgb, depth, None
        flags = self._scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        try:
            mujoco.mjr_render(self._rect, self._scene, self._context)
            mujoco.mjr_readPixels(self._seg, None, self._rect, self._context)
        finally:
            flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
        seg = np.flipud(self._seg).astype(np.int32)
        segid = seg[..., 0] + (seg[..., 1] << 8) + (seg[..., 2] << 16)  # 0 = background
        lookup = np.full(self._scene.ngeom + 1, -1, np.int32)
        for i in range(self._scene.ngeom):
            g = self._scene.geoms[i]
            if g.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lookup[g.segid + 1] = g.objid
        return rgb, depth, lookup[np.minimum(segid, self._scene.ngeom)]

    def close(self) -> None:
        """Free the GL resources, in this renderer's own context: GL objects freed while another context is
        current would delete that context's buffers instead (a garbage-collected renderer did just that)."""
        if getattr(self, "_context", None) is not None:
            self._gl.make_current()
            self._context.free()
            self._context = None
            if self._owns_gl:
                self._gl.free()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit EGL may already be gone; nothing is left to free then
            pass
