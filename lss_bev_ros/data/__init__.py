"""Data: synthetic nuScenes-schema scenes (`synthetic`) and the LSS dataset (`dataset`).

Submodules are imported explicitly (`from lss_bev_ros.data.synthetic import generate_dataset`) so
that importing the package stays cheap.
"""
