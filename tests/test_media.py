"""Specification of reading inputs: the reference image and the DensePose motion (video or frame folder)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_helpers import encode_video, frame_index, indexed_frame, indexed_frames, save_image, truncate
from PIL import Image

from magicanimate_cli.demo.inputs import make_motion_frames, make_reference_image, write_demo_inputs
from magicanimate_cli.media.reader import (DEFAULT_FOLDER_FPS, MotionClip, load_reference, natural_sort_key,
                                           open_motion, probe_motion)
from magicanimate_cli.motion.palette import BACKGROUND, PART_COLOURS, border_colour
from magicanimate_cli.runtime.errors import InputError, SettingsError


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


# --------------------------------------------------------------------------- reference image


def test_reference_png_is_read_as_uint8_rgb_unchanged(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = load_reference(save_image(tmp_path / "ref.png", pixels))
    assert image.dtype == np.uint8
    assert np.array_equal(image, pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_reference_jpeg_and_webp_are_read(tmp_path: Path, suffix: str) -> None:
    pixels = np.full((16, 24, 3), (200, 100, 50), dtype=np.uint8)
    image = load_reference(save_image(tmp_path / f"ref{suffix}", pixels, quality=95))
    assert image.shape == (16, 24, 3)
    assert np.abs(image.astype(int) - pixels).max() <= 8


def _marked_picture() -> np.ndarray:
    """40 wide, 20 tall, red square in the top-left corner."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    return pixels


def test_reference_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "phone.png"
    Image.fromarray(_marked_picture()).save(path, exif=exif)
    image = load_reference(path)
    assert image.shape == (40, 20, 3)  # portrait once upright
    assert tuple(image[2, -3]) == (255, 0, 0)  # top-left marker turns to the top-right
    assert tuple(image[2, 2]) == (0, 0, 0)


def test_reference_exif_orientation_is_applied_to_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # display rotated 90 degrees counter-clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(_marked_picture()).save(path, exif=exif, quality=95)
    image = load_reference(path)
    assert image.shape == (40, 20, 3)
    assert image[-3, 2, 0] > 200  # top-left marker turns to the bottom-left


def test_reference_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)  # colour hidden under alpha
    rgba[:, :2, 3] = 0  # fully transparent
    rgba[:, 2:4, 3] = 128  # half
    rgba[:, 4:, 3] = 255  # opaque
    image = load_reference(save_image(tmp_path / "cutout.png", rgba))
    assert np.all(image[:, :2] == 255)
    assert np.abs(image[:, 2:4].astype(int) - (133, 138, 143)).max() <= 1
    assert np.all(image[:, 4:] == (10, 20, 30))


def test_reference_greyscale_with_alpha_is_composited_over_white(tmp_path: Path) -> None:
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[:, :2, 1] = 255
    image = load_reference(save_image(tmp_path / "grey_alpha.png", la, mode="LA"))
    assert np.all(image[:, :2] == 0)
    assert np.all(image[:, 2:] == 255)


def test_reference_palette_transparency_is_composited_over_white(tmp_path: Path) -> None:
    indices = np.zeros((4, 4), dtype=np.uint8)
    indices[:, 2:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    path = tmp_path / "palette.png"
    image.save(path, transparency=1)
    loaded = load_reference(path)
    assert np.all(loaded[:, :2] == (0, 0, 255))
    assert np.all(loaded[:, 2:] == 255)


def test_reference_greyscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (3, 1))
    image = load_reference(save_image(tmp_path / "grey.png", grey))
    assert image.shape == (3, 8, 3)
    assert np.array_equal(image[..., 0], grey) and np.array_equal(image[..., 2], grey)


def test_reference_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    deep = np.array([[0, 32896, 65535]], dtype=np.uint16)
    image = load_reference(save_image(tmp_path / "deep.png", deep))
    assert image[0, :, 0].tolist() == [0, 128, 255]


def test_reference_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(path, quality=95)
    image = load_reference(path)
    assert image.shape == (8, 8, 3)
    assert image.min() >= 245  # no ink is white paper


def test_missing_reference_raises_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InputError, match="not found") as error:
        load_reference(path)
    assert_one_line_naming(error, path)


def test_text_file_named_png_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(InputError, match="not an image") as error:
        load_reference(path)
    assert_one_line_naming(error, path)


def test_truncated_png_raises_input_error(tmp_path: Path) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = save_image(tmp_path / "whole.png", noisy)
    path = truncate(whole, 0.5, tmp_path / "cut.png")
    with pytest.raises(InputError, match="damaged or truncated") as error:
        load_reference(path)
    assert_one_line_naming(error, path)


def test_folder_as_reference_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder") as error:
        load_reference(tmp_path)
    assert_one_line_naming(error, tmp_path)


# --------------------------------------------------------------------------- motion videos


def test_video_probe_gives_exact_count_rate_and_size(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "m.mp4", indexed_frames(7), fps=Fraction(30000, 1001))
    info = probe_motion(path)
    assert (info.frame_count, info.fps, info.width, info.height) == (7, Fraction(30000, 1001), 32, 24)
    assert isinstance(info.fps, Fraction)


def test_webm_without_a_frame_count_in_its_header_is_counted_by_decoding(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "m.webm", indexed_frames(5), fps=25, codec="libvpx-vp9")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the container does not say
    assert probe_motion(path).frame_count == 5


def test_motion_frames_stream_in_order_as_uint8_rgb(tmp_path: Path) -> None:
    clip = open_motion(encode_video(tmp_path / "m.mp4", indexed_frames(6)))
    frames = iter(clip)
    first = next(frames)
    assert first.dtype == np.uint8 and first.shape == (24, 32, 3)
    assert [frame_index(first)] + [frame_index(f) for f in frames] == [0, 1, 2, 3, 4, 5]


def test_read_all_returns_one_array_of_the_selected_frames(tmp_path: Path) -> None:
    clip = open_motion(encode_video(tmp_path / "m.mp4", indexed_frames(5)), max_frames=3)
    frames = clip.read_all()
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == [0, 1, 2]


def test_start_stride_and_max_frames_select_frames_and_scale_the_rate(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "m.mp4", indexed_frames(9), fps=30)
    clip = open_motion(path, start=1, stride=3, max_frames=2)
    assert list(clip.source_indices) == [1, 4]
    assert len(clip) == clip.frame_count == 2
    assert [frame_index(f) for f in clip] == [1, 4]
    assert clip.source_fps == 30 and clip.fps == 10  # the selection keeps real-time speed


def test_selection_runs_to_the_end_without_max_frames(tmp_path: Path) -> None:
    clip = open_motion(encode_video(tmp_path / "m.mp4", indexed_frames(7)), start=2, stride=2)
    assert [frame_index(f) for f in clip] == [2, 4, 6]


def test_clip_can_be_iterated_twice(tmp_path: Path) -> None:
    clip = open_motion(encode_video(tmp_path / "m.mp4", indexed_frames(3)))
    assert [frame_index(f) for f in clip] == [frame_index(f) for f in clip] == [0, 1, 2]


def test_fps_override_replaces_the_video_rate(tmp_path: Path) -> None:
    clip = open_motion(encode_video(tmp_path / "m.mp4", indexed_frames(3), fps=25), fps="30000/1001")
    assert clip.fps == Fraction(30000, 1001)


def test_gif_motion_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.gif"
    images = [Image.fromarray(f) for f in indexed_frames(4)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    clip = open_motion(path)
    assert (clip.frame_count, clip.fps) == (4, 25)
    assert [frame_index(f) for f in clip] == [0, 1, 2, 3]


def test_start_beyond_the_end_raises_input_error(tmp_path: Path) -> None:
    path = encode_video(tmp_path / "m.mp4", indexed_frames(4))
    with pytest.raises(InputError, match="beyond the end") as error:
        open_motion(path, start=4)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("selection", [{"start": -1}, {"stride": 0}, {"max_frames": 0}])
def test_impossible_selection_raises_settings_error(tmp_path: Path, selection: dict[str, int]) -> None:
    with pytest.raises(SettingsError):
        open_motion(tmp_path / "never-read.mp4", **selection)


def test_missing_motion_raises_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.mp4"
    with pytest.raises(InputError, match="not found") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_text_file_named_mp4_is_not_decodable(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_text("hello\n" * 100)
    with pytest.raises(InputError, match="not a decodable video") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_empty_file_named_mp4_is_not_decodable(tmp_path: Path) -> None:
    path = tmp_path / "zero.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="not a decodable video") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_mp4_cut_short_before_its_index_is_not_decodable(tmp_path: Path) -> None:
    whole = encode_video(tmp_path / "whole.mp4", indexed_frames(8))  # index (moov) written at the end
    path = truncate(whole, 0.8, tmp_path / "cut.mp4")
    with pytest.raises(InputError, match="not a decodable video") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_mp4_cut_mid_stream_names_the_frame_where_decoding_stops(tmp_path: Path) -> None:
    noisy = [np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8) for i in range(12)]
    whole = encode_video(tmp_path / "whole.mp4", noisy, container_options={"movflags": "+faststart"})
    path = truncate(whole, 0.6, tmp_path / "cut.mp4")
    with pytest.raises(InputError, match=r"truncated.*frame \d+") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_webm_cut_mid_stream_is_reported_as_truncated(tmp_path: Path) -> None:
    noisy = [np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8) for i in range(12)]
    whole = encode_video(tmp_path / "whole.webm", noisy, codec="libvpx-vp9")
    path = truncate(whole, 0.5, tmp_path / "cut.webm")
    with pytest.raises(InputError, match=r"truncated.*frame \d+") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize(("name", "codec"), [("empty.mp4", "libx264"), ("empty.webm", "libvpx-vp9")])
def test_video_with_zero_frames_raises_input_error(tmp_path: Path, name: str, codec: str) -> None:
    path = encode_video(tmp_path / name, [], codec=codec)
    with pytest.raises(InputError, match="(no|before any) video frame") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_file_without_a_video_stream_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


def test_single_image_as_motion_raises_input_error(tmp_path: Path) -> None:
    path = save_image(tmp_path / "pose.png", indexed_frame(0))
    with pytest.raises(InputError, match="single image") as error:
        open_motion(path)
    assert_one_line_naming(error, path)


# --------------------------------------------------------------------------- frame folders


def _frame_folder(folder: Path, names: dict[str, int]) -> Path:
    folder.mkdir()
    for name, index in names.items():
        save_image(folder / name, indexed_frame(index))
    return folder


def test_natural_sort_puts_frame2_before_frame10() -> None:
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b3", "frame2b"]  # mixed shapes must not crash
    assert sorted(names, key=natural_sort_key) == ["Frame1.png", "frame2.png", "frame2b", "frame2b3", "frame10.png"]


def test_frame_folder_is_read_in_natural_name_order(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"frame10.png": 2, "frame2.png": 1, "frame1.png": 0})
    clip = open_motion(folder)
    assert [path.name for path in clip.info.files] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [frame_index(f) for f in clip] == [0, 1, 2]


def test_frame_folder_ignores_hidden_and_non_image_files(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"a1.png": 0, "a2.jpg": 1, ".a0.png": 5})
    (folder / "notes.txt").write_text("not a frame")
    (folder / "sub").mkdir()
    assert probe_motion(folder).frame_count == 2


def test_frame_folder_rate_defaults_to_25_and_can_be_given(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"1.png": 0, "2.png": 1})
    assert open_motion(folder).fps == DEFAULT_FOLDER_FPS == 25
    assert open_motion(folder, fps=Fraction(24000, 1001)).fps == Fraction(24000, 1001)


def test_frame_folder_selection_works_like_video_selection(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {f"f{i}.png": i for i in range(6)})
    clip = open_motion(folder, start=1, stride=2, max_frames=2)
    assert [frame_index(f) for f in clip.read_all()] == [1, 3]
    assert clip.fps == Fraction(25, 2)


def test_transparent_folder_frames_get_the_densepose_background(tmp_path: Path) -> None:
    folder = tmp_path / "poses"
    folder.mkdir()
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:, 4:, 3] = 255
    save_image(folder / "0.png", rgba)
    frame = next(iter(open_motion(folder)))
    assert np.all(frame[:, :4] == (68, 1, 84)) and np.all(frame[:, 4:] == 255)  # viridis(0), never black


def test_empty_frame_folder_raises_input_error(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no frames here")
    with pytest.raises(InputError, match="no frame images") as error:
        open_motion(folder)
    assert_one_line_naming(error, folder)


def test_frame_folder_with_mixed_sizes_raises_input_error_naming_the_odd_file(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"1.png": 0, "2.png": 1})
    odd = save_image(folder / "3.png", indexed_frame(2, width=16, height=16))
    with pytest.raises(InputError, match="16x16.*one size") as error:
        open_motion(folder)
    assert_one_line_naming(error, odd)


def test_broken_file_in_frame_folder_raises_input_error_naming_it(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"1.png": 0})
    broken = folder / "2.png"
    broken.write_text("not a png")
    with pytest.raises(InputError) as error:
        open_motion(folder)
    assert_one_line_naming(error, broken)


def test_start_beyond_the_end_of_a_frame_folder_raises_input_error(tmp_path: Path) -> None:
    folder = _frame_folder(tmp_path / "poses", {"1.png": 0, "2.png": 1})
    with pytest.raises(InputError, match="beyond the end"):
        MotionClip(probe_motion(folder), start=2)


# --------------------------------------------------------------------------- demo inputs


def test_demo_motion_is_a_render_in_magicanimates_densepose_format_and_deterministic() -> None:
    frames = make_motion_frames(4, 48, 64, seed=3)
    assert frames.shape == (4, 64, 48, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, make_motion_frames(4, 48, 64, seed=3))
    colours = {tuple(c) for c in PART_COLOURS}
    assert {tuple(c) for c in frames.reshape(-1, 3)} <= colours  # nothing but the 25 palette colours
    assert border_colour(frames[0]) == BACKGROUND and np.all(frames[:, 0, 0] == BACKGROUND)  # not black
    body = frames[0][np.any(frames[0] != BACKGROUND, axis=-1)]
    assert len(body) > 0.05 * 48 * 64
    parts = {part for part, colour in enumerate(PART_COLOURS) if np.all(body == colour, axis=-1).any()}
    assert {2, 23, 24} <= parts and len(parts) >= 10  # torso, both halves of the head, the limbs
    assert not np.array_equal(frames[0], frames[2])  # it moves


def test_demo_reference_is_a_deterministic_picture() -> None:
    image = make_reference_image(64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, make_reference_image(64))
    assert image[2, 2].min() > 180  # pale backdrop
    assert image[20:40, 28:36].mean() < 180  # a figure in the middle


def test_demo_inputs_are_written_and_read_back(tmp_path: Path) -> None:
    demo = write_demo_inputs(tmp_path / "demo", size=32, frames=5, fps=25)
    assert load_reference(demo.reference).shape == (32, 32, 3)
    clip = open_motion(demo.motion)
    assert (clip.frame_count, clip.fps, clip.width, clip.height) == (5, 25, 32, 32)
