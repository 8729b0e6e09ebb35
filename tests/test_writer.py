"""Specification of the output writers: formats, exact rates and counts, atomic publication, grids, sidecars."""

from __future__ import annotations

import gc
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_helpers import frame_index, gif_delays_cs, indexed_frame, indexed_frames

from magicanimate_cli.media.reader import open_motion
from magicanimate_cli.media.writer import compose_grid, open_grid_writer, open_writer, write_image_atomic
from magicanimate_cli.runtime.atomic import write_json_atomic
from magicanimate_cli.runtime.errors import OutputError, SettingsError

NTSC = Fraction(30000, 1001)


def write_frames(path: Path, frames: list[np.ndarray], fps: Fraction | int = 25) -> Path:
    height, width = frames[0].shape[:2]
    with open_writer(path, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)
    return path


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "frames"])
def test_written_rate_and_count_survive_a_round_trip_exactly(tmp_path: Path, name: str) -> None:
    path = write_frames(tmp_path / name, indexed_frames(7), fps=NTSC)
    clip = open_motion(path)
    assert clip.frame_count == 7
    assert clip.fps == NTSC
    assert [frame_index(f) for f in clip] == list(range(7))


def test_mp4_stores_the_ntsc_rate_as_1001_tick_frames(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "out.mp4", indexed_frames(3), fps=NTSC)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == NTSC
        durations = {frame.duration * frame.time_base for frame in container.decode(stream)}
    assert durations == {Fraction(1001, 30000)}


def test_gif_keeps_exact_rates_that_divide_a_second_into_centiseconds(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "out.gif", indexed_frames(7), fps=25)
    assert gif_delays_cs(path) == [4] * 7
    clip = open_motion(path)
    assert (clip.frame_count, clip.fps) == (7, 25)
    assert [frame_index(f) for f in clip] == list(range(7))


def test_gif_tracks_other_rates_to_the_nearest_centisecond(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "out.gif", indexed_frames(7), fps=NTSC)
    delays = gif_delays_cs(path)
    assert len(delays) == 7 and set(delays) <= {3, 4}  # 100 / 29.97 = 3.34 cs per frame
    exact_cs = Fraction(7 * 100) / NTSC
    assert abs(sum(delays) - exact_cs) <= 1
    starts = np.cumsum([0] + delays[:-1])
    assert all(abs(start - i * 100 / NTSC) <= Fraction(1, 2) for i, start in enumerate(starts))
    clip = open_motion(path)
    assert clip.frame_count == 7
    assert abs(7 / clip.fps - 7 / NTSC) <= Fraction(1, 100)  # the reader reports the achieved rate


def test_png_folder_holds_numbered_frames_and_the_exact_rate(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "frames", indexed_frames(3), fps=NTSC)
    assert sorted(p.name for p in path.iterdir()) == [
        "frame_00000.png", "frame_00001.png", "frame_00002.png", "frames.json",
    ]
    assert json.loads((path / "frames.json").read_text())["fps"] == "30000/1001"


def test_trailing_slash_or_existing_folder_means_png_frames(tmp_path: Path) -> None:
    with open_writer(f"{tmp_path / 'a.mp4'}/", 25, 32, 24) as writer:
        writer.write(indexed_frame(0))
        writer.write(indexed_frame(1))
    (tmp_path / "b.gif").mkdir()
    write_frames(tmp_path / "b.gif", indexed_frames(2))
    assert (tmp_path / "a.mp4" / "frame_00001.png").is_file()
    assert (tmp_path / "b.gif" / "frame_00001.png").is_file()


def test_mp4_odd_size_is_evened_by_repeating_the_last_row_and_column(tmp_path: Path) -> None:
    frame = np.zeros((21, 33, 3), dtype=np.uint8)
    frame[:, -1] = 200
    frame[-1, :] = 200
    path = write_frames(tmp_path / "odd.mp4", [frame])
    decoded = open_motion(path).read_all()[0]
    assert decoded.shape == (22, 34, 3)
    assert decoded[5:15, -2:].min() > 170 and decoded[-2:, 5:25].min() > 170
    assert decoded[5:15, 5:25].max() < 30


@pytest.mark.parametrize("name", ["odd.webm", "odd.gif", "odd"])
def test_other_formats_keep_odd_sizes(tmp_path: Path, name: str) -> None:
    clip = open_motion(write_frames(tmp_path / name, [indexed_frame(1, 33, 21)]))
    assert (clip.width, clip.height) == (33, 21)


def test_float_frames_in_0_1_are_accepted(tmp_path: Path) -> None:
    frame = np.full((8, 8, 3), 0.5, dtype=np.float32)
    path = write_frames(tmp_path / "f", [frame])
    assert np.all(open_motion(path).read_all() == 128)


def test_frame_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    with open_writer(tmp_path / "x", 25, 8, 8) as writer:
        writer.write(indexed_frame(0, 8, 8))
        with pytest.raises(ValueError, match="expected"):
            writer.write(indexed_frame(0, 16, 8))


def test_existing_file_is_replaced_on_close(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    write_frames(path, indexed_frames(2))
    write_frames(path, indexed_frames(5))
    assert open_motion(path).frame_count == 5


def test_existing_frame_folder_from_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "frames", indexed_frames(4))
    write_frames(path, indexed_frames(2))
    assert open_motion(path).frame_count == 2
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


# --------------------------------------------------------------------------- errors


def test_unknown_extension_raises_output_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "out.avi"
    with pytest.raises(OutputError, match="unknown output type") as error:
        open_writer(path, 25, 8, 8)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_uncreatable_destination_folder_raises_output_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should go")
    folder = blocker / "sub"
    with pytest.raises(OutputError, match="cannot create the output folder") as error:
        open_writer(folder / "out.mp4", 25, 8, 8)
    assert str(folder) in str(error.value)


def test_missing_destination_folders_are_created(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "a" / "b" / "out.webm", indexed_frames(1))
    assert path.is_file()


def test_frame_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(OutputError, match="holds other files"):
        open_writer(folder, 25, 8, 8)
    assert (folder / "thesis.txt").read_text() == "precious"


def test_refusing_to_overwrite_raises_output_error(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "out.gif", indexed_frames(1))
    with pytest.raises(OutputError, match="already exists"):
        open_writer(path, 25, 32, 24, overwrite=False)


@pytest.mark.parametrize(("name", "crf"), [("out.mp4", 52), ("out.webm", 64), ("out.mp4", -1)])
def test_crf_outside_the_codec_scale_raises_settings_error(tmp_path: Path, name: str, crf: int) -> None:
    with pytest.raises(SettingsError, match="crf"):
        open_writer(tmp_path / name, 25, 8, 8, crf=crf)


@pytest.mark.parametrize("fps", [0, -25, "fast"])
def test_impossible_frame_rate_raises_settings_error(tmp_path: Path, fps: object) -> None:
    with pytest.raises(SettingsError, match="frame rate"):
        open_writer(tmp_path / "out.mp4", fps, 8, 8)


# --------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "out.gif", "frames"])
def test_output_appears_only_when_closed(tmp_path: Path, name: str) -> None:
    writer = open_writer(tmp_path / name, 25, 32, 24)
    writer.write(indexed_frame(0))
    assert not (tmp_path / name).exists()
    assert writer.close() == tmp_path / name
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "out.gif", "frames"])
@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_write_leaves_no_output_and_no_temporary(
    tmp_path: Path, name: str, interruption: type[BaseException]
) -> None:
    with pytest.raises(interruption):
        with open_writer(tmp_path / name, 25, 32, 24) as writer:
            writer.write(indexed_frame(0))
            writer.write(indexed_frame(1))
            raise interruption()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_the_previous_file_untouched(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "out.mp4", indexed_frames(3))
    before = path.read_bytes()
    writer = open_writer(path, 25, 32, 24)
    writer.write(indexed_frame(5))
    writer.abort()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_writer_dropped_without_closing_removes_its_temporary(tmp_path: Path, name: str) -> None:
    writer = open_writer(tmp_path / name, 25, 32, 24)
    writer.write(indexed_frame(0))
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_interrupt_while_finishing_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = open_writer(tmp_path / "out.mp4", 25, 32, 24)
    writer.write(indexed_frame(0))

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_closing_without_frames_creates_nothing(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "out.mp4", 25, 32, 24)
    with pytest.raises(OutputError, match="no frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- grid


def test_grid_puts_panels_side_by_side_at_one_height_with_black_gaps() -> None:
    reference = np.full((16, 16, 3), 50, dtype=np.uint8)
    motion = np.full((8, 12, 3), 100, dtype=np.uint8)  # scaled up to height 16 -> 24 wide
    result = np.full((16, 24, 3), 150, dtype=np.uint8)
    grid = compose_grid([reference, motion, result], height=16, gap=2)
    assert grid.shape == (20, 2 + 16 + 2 + 24 + 2 + 24 + 2, 3)
    assert np.all(grid[2:18, 2:18] == 50)
    assert np.all(grid[2:18, 20:44] == 100)
    assert np.all(grid[2:18, 46:70] == 150)
    assert np.all(grid[:2] == 0) and np.all(grid[:, 18:20] == 0) and np.all(grid[:, -2:] == 0)


def test_grid_writer_writes_reference_motion_result_frames(tmp_path: Path) -> None:
    reference = np.full((32, 32, 3), 200, dtype=np.uint8)
    path = tmp_path / "grid.mp4"
    with open_grid_writer(path, NTSC, [(32, 32), (32, 24), (32, 24)]) as grid:
        for i in range(3):
            grid.write(reference, indexed_frame(i), indexed_frame(i))
    clip = open_motion(path)
    assert (clip.frame_count, clip.fps) == (3, NTSC)
    assert (clip.width, clip.height) == (2 + 24 + 2 + 32 + 2 + 32 + 2, 2 + 24 + 2)  # the result's height rules


def test_grid_writer_is_atomic_too(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with open_grid_writer(tmp_path / "grid.gif", 25, [(8, 8), (8, 8)]) as grid:
            grid.write(indexed_frame(0, 8, 8), indexed_frame(1, 8, 8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- small files


def test_json_sidecar_is_written_atomically_with_exact_fractions(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "side" / "run.json", {"fps": NTSC, "frames": np.int64(7), "out": tmp_path})
    data = json.loads(path.read_text())
    assert Fraction(data["fps"]) == NTSC and data["frames"] == 7 and data["out"] == str(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]


def test_unserialisable_json_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "run.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_image_is_written_atomically(tmp_path: Path) -> None:
    picture = indexed_frame(3, 10, 6)
    path = write_image_atomic(tmp_path / "ref.png", picture)
    assert np.array_equal(open_motion(tmp_path, fps=1).read_all()[0], picture)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
