"""C3D and VGG-19 feature networks without Caffe: release weights read directly, Caffe's preprocessing.

    from caffe_models import C3D, load_caffemodel, load_mean, preprocess_c3d
    net = C3D(); load_caffemodel(net, "conv3d_deepnetA_sport1m_iter_1900000")
    mean = load_mean("sport1m_train16_128_mean.binaryproto")            # (3, 16, 128, 171)
    feats = net.features(preprocess_c3d(frames, mean), ("fc6", "fc8"))  # frames (B, 16, H, W, 3) uint8 RGB
"""

from caffe_models.c3d import C3D
from caffe_models.caffemodel import (
    CaffeLayer,
    CaffeNet,
    file_sha256,
    load_caffemodel,
    load_mean,
    parse_mean,
    parse_net,
)
from caffe_models.caffenet import RandomWeightsWarning, WeightsInfo
from caffe_models.errors import CaffeModelError, VideoError
from caffe_models.extract import ExtractSummary, FeatureExtractor, extract_videos
from caffe_models.prefetch import decode_in_background
from caffe_models.preprocess import (
    C3D_CROP_OFFSET,
    C3D_MEAN_BGR,
    VGG_MEAN_BGR,
    preprocess_c3d,
    preprocess_vgg,
)
from caffe_models.sampling import FrameSampling, sample_frames
from caffe_models.vgg import VGG19
from caffe_models.video import ContainerInfo, FrameChunk, VideoReader, probe, rotate_frame

__all__ = [
    "C3D", "VGG19", "load_caffemodel", "load_mean", "parse_net", "parse_mean", "file_sha256", "CaffeNet",
    "CaffeLayer", "WeightsInfo", "RandomWeightsWarning", "CaffeModelError", "VideoError", "preprocess_c3d",
    "preprocess_vgg", "C3D_MEAN_BGR", "VGG_MEAN_BGR", "C3D_CROP_OFFSET",
    "VideoReader", "ContainerInfo", "FrameChunk", "FrameSampling", "sample_frames", "probe", "rotate_frame",
    "decode_in_background", "FeatureExtractor", "ExtractSummary", "extract_videos",
]
