"""A static transform tree, as ``/tf_static`` describes one (no ROS).

Camera extrinsics on a vehicle come from ``/tf_static`` (``base_link -> ... -> cam_front``,
REP-105). ``tf2_ros`` is not installable from PyPI and static extrinsics need none of its
time-interpolated buffering, so the nodes keep the tree here: one parent per frame, the latest
transform of an edge wins, and :meth:`StaticTransformTree.lookup` composes any chain through
the common ancestor. Frame ids are compared without a leading ``/`` (ROS 1 habit).

Convention: ``RigidTransform(R, t)`` of edge ``parent -> child`` maps points in the child frame
into the parent frame, ``p_parent = R @ p_child + t`` (metres), as
``geometry_msgs/TransformStamped`` with ``header.frame_id = parent``,
``child_frame_id = child``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RigidTransform:
    """``p_parent = rotation @ p_child + translation``; rotation 3 x 3, translation 3 (m)."""

    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def identity() -> RigidTransform:
        return RigidTransform(np.eye(3), np.zeros(3))

    def compose(self, inner: RigidTransform) -> RigidTransform:
        """``self ∘ inner``: first ``inner`` (child -> middle), then ``self`` (middle -> parent)."""
        return RigidTransform(self.rotation @ inner.rotation,
                              self.rotation @ inner.translation + self.translation)

    def inverse(self) -> RigidTransform:
        r_t = self.rotation.T
        return RigidTransform(r_t, -r_t @ self.translation)


def _frame(name: str) -> str:
    return name.strip().lstrip("/")


class StaticTransformTree:
    """Edges ``parent -> child`` from ``/tf_static``; lookups compose through the tree."""

    #: a chain longer than this is treated as a loop (mis-published tree)
    MAX_DEPTH = 64

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, RigidTransform]] = {}
        self.version = 0  # bumped on every change, so users can recompute lazily

    def __len__(self) -> int:
        return len(self._parent)

    def set(self, parent: str, child: str, transform: RigidTransform) -> bool:
        """Add or replace edge ``parent -> child``; returns True when something changed.

        Raises ValueError for an empty or self-referencing frame id, a non-finite transform or
        a rotation that is not a proper rotation (|R R^T - I| > 1e-4 or det < 0)."""
        parent, child = _frame(parent), _frame(child)
        if not parent or not child or parent == child:
            raise ValueError(f"bad frame ids: parent {parent!r}, child {child!r}")
        r = np.asarray(transform.rotation, dtype=np.float64).reshape(3, 3)
        t = np.asarray(transform.translation, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
            raise ValueError(f"{parent} -> {child}: non-finite transform")
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
            raise ValueError(f"{parent} -> {child}: not a proper rotation")
        old = self._parent.get(child)
        if old is not None and old[0] == parent and np.array_equal(old[1].rotation, r) \
                and np.array_equal(old[1].translation, t):
            return False
        self._parent[child] = (parent, RigidTransform(r, t))
        self.version += 1
        return True

    def _chain(self, frame: str) -> list[tuple[str, RigidTransform]]:
        """``[(frame, T_root<-frame), (parent, T_root<-parent), ..., (root, I)]`` bottom-up."""
        # first collect the edges up to the root, then accumulate root-side transforms
        edges: list[tuple[str, RigidTransform]] = []  # (child, T_parent<-child)
        seen = {frame}
        node = frame
        while node in self._parent:
            parent, tf = self._parent[node]
            edges.append((node, tf))
            if parent in seen or len(edges) > self.MAX_DEPTH:
                raise LookupError(f"transform loop through {parent!r}")
            seen.add(parent)
            node = parent
        out = [(node, RigidTransform.identity())]
        acc = RigidTransform.identity()
        for child, tf in reversed(edges):
            acc = acc.compose(tf)
            out.append((child, acc))
        out.reverse()
        return out

    def lookup(self, target: str, source: str) -> RigidTransform:
        """Transform mapping points of frame ``source`` into frame ``target``.

        Raises LookupError when the two frames are not connected (yet)."""
        target, source = _frame(target), _frame(source)
        if target == source:
            return RigidTransform.identity()
        up_s = self._chain(source)
        up_t = self._chain(target)
        if up_s[-1][0] != up_t[-1][0]:
            known = {c for c in self._parent} | {p for p, _ in self._parent.values()}
            why = ("not connected (yet)" if target not in known or source not in known
                   else "two trees")
            raise LookupError(f"no transform between {target!r} and {source!r}: {why}")
        # both expressed in the shared root: T_target<-source = T_root<-target^-1 T_root<-source
        return up_t[0][1].inverse().compose(up_s[0][1])
