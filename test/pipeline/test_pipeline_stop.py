"""``lss_bev_ros.pipeline.Pipeline.stop``: the executor's spin thread is gone before any node is
destroyed (a spin still building its wait set touched destroyed entities: ``InvalidHandle``
in the spin thread, seen in a fresh-clone CI run)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_stop_joins_the_spin_thread_before_destroying_nodes() -> None:
    from lss_bev_ros import pipeline

    pipe = pipeline.start(REPO / "config" / "pipeline.yaml", ["fusion_node"])
    assert pipe.thread is not None and pipe.thread.is_alive()
    spin_alive_at_destroy: list[bool] = []
    for node in pipe.nodes.values():
        destroy = node.destroy_node

        def recording_destroy(destroy=destroy) -> None:
            spin_alive_at_destroy.append(pipe.thread.is_alive())
            destroy()

        node.destroy_node = recording_destroy
    pipe.stop()
    assert spin_alive_at_destroy == [False]
    assert not pipe.thread.is_alive() and not pipe.context.ok()
