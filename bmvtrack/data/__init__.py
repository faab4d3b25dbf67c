"""Datasets on disk → single-object tracks, frames, masks and object-centred patches."""
from bmvtrack.data.images import DatasetError, FrameCache, read_frame, read_mask
from bmvtrack.data.readers import DataConfig, Track, TrackFilter, VideoDataset, detect_layout, open_dataset

__all__ = [
    "DataConfig", "DatasetError", "FrameCache", "Track", "TrackFilter", "VideoDataset",
    "detect_layout", "open_dataset", "read_frame", "read_mask",
]
