"""Datasets on disk → single-object tracks, frames, masks and object-centred patches."""
from bmvtrack.data.images import DatasetError, FrameCache, read_frame, read_mask
from bmvtrack.data.readers import DataConfig, Track, TrackFilter, VideoDataset, detect_layout

__all__ = [
    "DataConfig", "DatasetError", "FrameCache", "Track", "TrackFilter", "VideoDataset",
    "detect_layout", "read_frame", "read_mask",
]
