"""Video Depth Anything: our implementation of the model, batch and streaming inference."""

from preprocess.video_depth.inference import infer_video_depth
from preprocess.video_depth.model import (CheckpointError, VideoDepthAnything, build_model, checkpoint_filename,
                                         load_model)
from preprocess.video_depth.streaming import VideoDepthStream, stream_video_depth
from preprocess.video_depth.run import run_video_depth_anything

__all__ = ["CheckpointError", "VideoDepthAnything", "VideoDepthStream", "build_model", "checkpoint_filename",
           "infer_video_depth", "load_model", "stream_video_depth", "run_video_depth_anything"]
