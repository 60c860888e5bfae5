"""``lss_bev_ros.pipeline.Pipeline.stop``: the executor's spin thread is gone before any node is
deactivated or destroyed. Deactivating destroys subscriptions and timers, destroying destroys
the rest; a spin still building its wait set touched such entities (``InvalidHandle`` from a QoS
event handler in the spin thread, seen in fresh-clone CI runs: first for destroy, then for
deactivate)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_stop_joins_the_spin_thread_before_deactivating_and_destroying_nodes() -> None:
    from lss_bev_ros import pipeline

    pipe = pipeline.start(REPO / "config" / "pipeline.yaml", ["fusion_node"])
    assert pipe.thread is not None and pipe.thread.is_alive()
    spin_alive: list[tuple[str, bool]] = []
    for node in pipe.nodes.values():
        assert node.active, "fusion_node autostarts: it must be deactivated by stop()"
        deactivate, destroy = node.trigger_deactivate, node.destroy_node

        def recording_deactivate(deactivate=deactivate):
            spin_alive.append(("deactivate", pipe.thread.is_alive()))
            return deactivate()

        def recording_destroy(destroy=destroy) -> None:
            spin_alive.append(("destroy", pipe.thread.is_alive()))
            destroy()

        node.trigger_deactivate = recording_deactivate
        node.destroy_node = recording_destroy
    pipe.stop()
    assert spin_alive == [("deactivate", False), ("destroy", False)]
    assert not pipe.thread.is_alive() and not pipe.context.ok()
    assert not any(n.active for n in pipe.nodes.values())
