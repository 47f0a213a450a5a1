"""Decoding (PyAV) and frame sampling, against videos encoded here with known frames."""

import threading
import time
import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers.videos import (
    CODECS,
    decode_all,
    make_video,
    moving_frames,
    truncate,
    write_audio_only,
    write_video,
)
from hypothesis import given
from hypothesis import strategies as st

from caffe_models.errors import VideoError
from caffe_models.prefetch import decode_in_background
from caffe_models.sampling import sample_frames
from caffe_models.video import FrameChunk, VideoReader, probe, rotate_frame


def read_all(path, chunk_length=16):
    with VideoReader(path) as reader:
        chunks = list(reader.chunks(chunk_length))
        return reader, chunks


def nearest_frames(decoded, truth):
    """Index of the true frame closest (mean squared error) to each decoded frame."""
    d = decoded.reshape(len(decoded), -1).astype(np.float64)
    t = truth.reshape(len(truth), -1).astype(np.float64)
    dist = (d**2).sum(1)[:, None] - 2 * d @ t.T + (t**2).sum(1)[None, :]
    return dist.argmin(axis=1)


# ---------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codec, height, width",
    [("h264", 61, 97), ("mjpeg", 61, 97), ("vp9", 61, 97), ("ffv1", 61, 97), ("h264_420", 48, 64)],
)
def test_decoded_frames_match_the_encoded_frames(tmp_path, codec, height, width):
    truth = moving_frames(37, height, width, seed=3)
    path = tmp_path / f"v{CODECS[codec][1]}"
    max_error = write_video(path, truth, codec, fps=25)
    reader, chunks = read_all(path, chunk_length=16)

    # chunks: 16, 16, 5 frames starting at 0, 16, 32; timestamps t / fps
    assert [c.start for c in chunks] == [0, 16, 32]
    assert [len(c.frames) for c in chunks] == [16, 16, 5]
    decoded = np.concatenate([c.frames for c in chunks])
    assert decoded.dtype == np.uint8 and decoded.shape == truth.shape
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), np.arange(37) / 25, atol=1e-6)
    errors = np.abs(decoded.astype(np.int16) - truth)
    assert errors.max() <= max_error
    assert errors.mean() < 3.0
    np.testing.assert_array_equal(nearest_frames(decoded, truth), np.arange(37))
    assert reader.frames_decoded == 37 and reader.problems == []
    assert reader.info.width == width and reader.info.height == height and reader.info.rotation == 0
    assert reader.info.fps == pytest.approx(25.0)
    assert reader.info.frames == 37
    assert reader.info.duration == pytest.approx(37 / 25, abs=0.05)


@pytest.mark.parametrize("rotation, k", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, rotation, k):
    truth = moving_frames(5, 24, 40, seed=4)  # (T, H=24, W=40, 3)
    write_video(tmp_path / "r.mp4", truth, "h264", rotation=rotation)
    with av.open(str(tmp_path / "r.mp4")) as container:  # the display matrix was written
        assert next(container.decode(video=0)).rotation % 360 == rotation % 360
    reader, chunks = read_all(tmp_path / "r.mp4")
    decoded = np.concatenate([c.frames for c in chunks])
    T, H, W, _ = truth.shape
    # counter-clockwise turns, index by index: 90: out[i, j] = in[j, W-1-i]; 180: in[H-1-i, W-1-j];
    # 270: out[i, j] = in[H-1-j, i]
    i, j = np.meshgrid(np.arange(decoded.shape[1]), np.arange(decoded.shape[2]), indexing="ij")
    src = {1: (j, W - 1 - i), 2: (H - 1 - i, W - 1 - j), 3: (H - 1 - j, i)}[k]
    np.testing.assert_array_equal(decoded, truth[:, src[0], src[1]])
    expected_size = (W, H) if k == 2 else (H, W)  # (displayed width, height)
    assert (reader.info.width, reader.info.height) == expected_size
    assert reader.info.rotation == rotation % 360


def test_rotate_frame_is_a_quarter_turn_counter_clockwise():
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    turned = rotate_frame(frame, 90)
    # the top row, read right to left, becomes the left column read top to bottom
    np.testing.assert_array_equal(turned[:, 0], frame[0, ::-1])
    np.testing.assert_array_equal(rotate_frame(frame, 360), frame)
    np.testing.assert_array_equal(rotate_frame(rotate_frame(frame, 90), -90), frame)


def test_variable_frame_rate_keeps_every_frame_with_its_timestamp(tmp_path):
    truth = moving_frames(21, 32, 48, seed=5)
    rng = np.random.default_rng(5)
    pts = np.concatenate([[0], np.cumsum(rng.integers(1, 5, size=20))])  # gaps of 1..4 ticks
    write_video(tmp_path / "vfr.mp4", truth, "h264", pts=list(pts), time_base=Fraction(1, 30))
    reader, chunks = read_all(tmp_path / "vfr.mp4", chunk_length=8)
    decoded = np.concatenate([c.frames for c in chunks])
    np.testing.assert_array_equal(decoded, truth)  # frame k = k-th frame, not resampled to a fixed rate
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), pts / 30, atol=1e-6)
    assert [c.start for c in chunks] == [0, 8, 16]
    assert reader.problems == []


def test_truncated_mp4_decodes_its_readable_prefix_and_says_so(tmp_path):
    truth = moving_frames(80, 48, 64, seed=6)
    write_video(tmp_path / "full.mp4", truth, "h264")
    truncate(tmp_path / "full.mp4", tmp_path / "cut.mp4", 0.5)
    reader, chunks = read_all(tmp_path / "cut.mp4")
    decoded = np.concatenate([c.frames for c in chunks])
    assert 16 <= reader.frames_decoded == len(decoded) < 80
    np.testing.assert_array_equal(decoded, truth[: len(decoded)])
    assert any(f"truncated: decoded {len(decoded)} of 80 frames" in p for p in reader.problems)


def test_truncated_webm_without_frame_count_is_reported_from_its_duration(tmp_path):
    truth = moving_frames(60, 32, 48, seed=7)
    write_video(tmp_path / "full.webm", truth, "vp9")
    truncate(tmp_path / "full.webm", tmp_path / "cut.webm", 0.5)
    reader, chunks = read_all(tmp_path / "cut.webm")
    assert 0 < reader.frames_decoded < 50
    message = f"truncated: decoded {reader.frames_decoded} of about 60"
    assert any(p.startswith(message) for p in reader.problems)


def test_corrupt_packet_is_skipped_and_the_rest_decoded(tmp_path):
    truth = moving_frames(30, 32, 48, seed=8)
    write_video(tmp_path / "v.avi", truth, "mjpeg")
    with av.open(str(tmp_path / "v.avi")) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray((tmp_path / "v.avi").read_bytes())
    pos, size = packets[12]
    data[pos + 50 : pos + size] = b"\xff" * (size - 50)  # destroy frame 12's entropy-coded data
    (tmp_path / "bad.avi").write_bytes(bytes(data))
    reader, chunks = read_all(tmp_path / "bad.avi")
    decoded = np.concatenate([c.frames for c in chunks])
    assert reader.frames_decoded == 29
    # frames keep decoding order: 0..11, then 13..29 (frame 12 is gone)
    np.testing.assert_array_equal(nearest_frames(decoded, truth), np.r_[0:12, 13:30])
    assert any("undecodable data after frame 12" in p for p in reader.problems)


def test_file_without_video_stream_raises_video_error(tmp_path):
    write_audio_only(tmp_path / "a.m4a")
    with pytest.raises(VideoError, match=r"a\.m4a: no video stream \(streams: audio\)"):
        VideoReader(tmp_path / "a.m4a")


def test_unreadable_files_raise_video_error(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 20)
    with pytest.raises(VideoError, match="notes.mp4: cannot open as a video"):
        probe(tmp_path / "notes.mp4")
    with pytest.raises(VideoError, match="missing.mp4: cannot open as a video"):
        probe(tmp_path / "missing.mp4")
    truth = moving_frames(40, 48, 64, seed=9)
    write_video(tmp_path / "v.mp4", truth, "h264")
    truncate(tmp_path / "v.mp4", tmp_path / "head.mp4", 0.03)  # the index survives, no frame does
    with pytest.raises(VideoError, match="head.mp4"):
        probe(tmp_path / "head.mp4")


def test_probe_matches_the_container(tmp_path):
    write_video(tmp_path / "v.mkv", moving_frames(30, 61, 97), "ffv1", fps=30)
    info = probe(tmp_path / "v.mkv")
    assert (info.frames, info.fps, info.width, info.height, info.rotation) == (30, 30.0, 97, 61, 0)
    assert info.duration == pytest.approx(1.0, abs=0.04)


def test_decoding_streams_chunks_instead_of_holding_the_video(tmp_path):
    truth = moving_frames(320, 48, 64, seed=10)  # 2.9 MB of pixels
    write_video(tmp_path / "long.mkv", truth, "ffv1")
    with VideoReader(tmp_path / "long.mkv") as reader:
        chunks = reader.chunks(16)
        assert iter(chunks) is chunks  # a generator: nothing decoded before it is asked for
        tracemalloc.start()
        try:
            checksum = 0
            for chunk in chunks:
                checksum += int(chunk.frames.sum(dtype=np.int64))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert checksum == int(truth.sum(dtype=np.int64))
    chunk_bytes = 16 * 48 * 64 * 3
    assert peak < 4 * chunk_bytes < truth.nbytes / 4


# ---------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------


@given(st.integers(0, 2000), st.sampled_from([(16, 8), (16, 16), (16, 4), (8, 8)]))
def test_sample_frames_closed_form(num_frames, lengths):
    L, s = lengths
    sampling = sample_frames(num_frames, L, s)
    clips = num_frames // L
    assert sampling.chunk_starts.tolist() == [L * k for k in range(clips)]
    assert sampling.attended.tolist() == [s * i for i in range(clips * L // s)]
    assert sampling.chunk_starts.dtype == np.int64 and sampling.attended.dtype == np.int64
    # every clip lies inside the video, every attended frame inside a complete clip
    assert all(start + L <= num_frames for start in sampling.chunk_starts)
    assert all(a < clips * L for a in sampling.attended)


def test_windows_of_the_storage_sampling_hold_t_equal_n_or_2n_frames():
    sampling = sample_frames(1000, 16, 8)  # the stored convention: one attended row every 8 frames
    F, N = 192, 12
    for first_clip in range(len(sampling.chunk_starts) - N + 1):
        start = sampling.chunk_starts[first_clip]
        in_window = sampling.attended[(sampling.attended >= start) & (sampling.attended < start + F)]
        assert len(in_window) == 2 * N  # T = 2N: every 8 frames
        assert len(in_window[::2]) == N and (in_window[::2] % 16 == 0).all()  # T = N: every 16 frames


def test_sample_frames_rejects_strides_that_do_not_divide_the_clip():
    with pytest.raises(ValueError, match="must divide"):
        sample_frames(100, 16, 6)


# ---------------------------------------------------------------------------------------------------
# Background decoding
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def three_videos(tmp_path):
    truths = [moving_frames(n, 24, 32, seed=n) for n in (40, 19, 33)]
    paths = []
    for k, truth in enumerate(truths):
        write_video(tmp_path / f"v{k}.mkv", truth, "ffv1")
        paths.append(tmp_path / f"v{k}.mkv")
    write_audio_only(tmp_path / "bad.m4a")
    return [paths[0], tmp_path / "bad.m4a", paths[1], paths[2]], [truths[0], None, truths[1], truths[2]]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_background_decoding_keeps_order_and_reports_failures(three_videos, workers):
    paths, truths = three_videos
    seen = []
    for video in decode_in_background(paths, chunk_length=16, workers=workers, queue_size=2):
        seen.append(video.path)
        if truths[video.index] is None:
            assert video.info is None and "no video stream" in video.error
            assert list(video.items) == []
            continue
        decoded = np.concatenate([c.frames for c in video.items])
        np.testing.assert_array_equal(decoded, truths[video.index])
        assert video.report["frames_decoded"] == len(truths[video.index])
        assert video.report["problems"] == []
    assert seen == [str(p) for p in paths]


def test_background_queue_is_bounded(tmp_path):
    truth = moving_frames(200, 16, 16, seed=11)
    write_video(tmp_path / "v.mkv", truth, "ffv1")
    produced = []
    lock = threading.Lock()

    def transform(chunk: FrameChunk) -> int:
        with lock:
            produced.append(chunk.start)
        return chunk.start

    queue_size = 2
    consumed = 0
    gaps = []
    for video in decode_in_background([tmp_path / "v.mkv"], transform, chunk_length=4, queue_size=queue_size):
        for start in video.items:
            with lock:
                gaps.append(len(produced) - consumed)
            consumed += 1
            assert start == 4 * (consumed - 1)
            threading.Event().wait(0.002)  # a slow consumer: the worker must wait, not run ahead
    assert consumed == 50 and len(produced) == 50
    # in the worker's hands: one chunk being put, queue_size queued, one handed to us
    assert max(gaps) <= queue_size + 2


def test_a_byte_allowance_lets_a_worker_decode_its_whole_video_ahead(tmp_path):
    """The consumer holds video 0 at its first chunk. Without a byte allowance worker 1 stops after
    the chunk it transforms (queue_size 1: its "open" message fills the queue); with room for a whole
    video it decodes all 4 chunks of video 1 meanwhile. Both yield the same frames."""
    truths = [moving_frames(64, 24, 32, seed=s) for s in (21, 22)]
    paths = []
    for k, truth in enumerate(truths):
        paths.append(tmp_path / f"v{k}.mkv")
        write_video(paths[-1], truth, "ffv1")
    chunk_bytes = 16 * 24 * 32 * 3
    for buffer_bytes, ahead in ((0, 1), (2 * 5 * chunk_bytes, 4)):
        transformed = {"decode-0": 0, "decode-1": 0}
        lock = threading.Lock()

        def transform(chunk: FrameChunk, transformed=transformed, lock=lock) -> FrameChunk:
            with lock:
                transformed[threading.current_thread().name] += 1
            return chunk

        videos = decode_in_background(paths, transform, workers=2, queue_size=1, buffer_bytes=buffer_bytes)
        first = next(videos)
        chunks = [next(first.items)]
        deadline = time.monotonic() + 10
        while transformed["decode-1"] < ahead and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)                                       # time to run further ahead, if it could
        assert transformed["decode-1"] == ahead
        chunks += list(first.items)
        np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), truths[0])
        second = next(videos)
        np.testing.assert_array_equal(np.concatenate([c.frames for c in second.items]), truths[1])
        assert next(videos, None) is None


def test_skipping_the_rest_of_a_video_leaves_the_next_intact(three_videos):
    paths, truths = three_videos
    out = {}
    for video in decode_in_background(paths, workers=2, queue_size=1):
        if video.info is not None:
            out[video.index] = next(video.items).frames  # only the first chunk
    for index, first in out.items():
        np.testing.assert_array_equal(first, truths[index][:16])


def test_worker_bugs_reach_the_consumer(three_videos):
    paths, _ = three_videos

    def broken(chunk):
        raise ZeroDivisionError("bug in transform")

    with pytest.raises(ZeroDivisionError, match="bug in transform"):
        for video in decode_in_background(paths, broken):
            list(video.items)


def test_test_helpers_agree_with_the_reader(tmp_path):
    truth, max_error = make_video(tmp_path / "v.mp4", 20, 61, 97, "h264", seed=12)
    assert max_error == 0 and truth.shape == (20, 61, 97, 3)
    _, chunks = read_all(tmp_path / "v.mp4", chunk_length=7)
    decoded = np.concatenate([c.frames for c in chunks])
    np.testing.assert_array_equal(decoded, decode_all(tmp_path / "v.mp4"))
    np.testing.assert_array_equal(decoded, truth)
