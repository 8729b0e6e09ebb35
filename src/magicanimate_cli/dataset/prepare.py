"""`prepare-data`: clips and photos of people → a DATA folder of pairs (source, DensePose render) that `train` reads.

Each clip is decoded once: every frame is written, re-encoded, to `videos/NAME.mp4` and rendered through the
`pose` machinery (`render_video`, so `--smooth` steadies it exactly as `pose --smooth` does) into
`densepose/NAME.mp4`, and, from the same decode, into the pair's training-ready copy (store.py: frames as JPEG and
the render as part labels, at `--short-side`), which is what `train` reads. All stay temporaries until the pair has
passed its checks (every frame decoded, the same count in both, a person in at least `min_person_frames` of them);
then they are published (the ready copy last, recording the size and mtime of the pair it was made from) and the
source's record written (records.py). A source that fails a check is skipped with its reason, and files an earlier run
left under its NAME are removed, so DATA never holds a pair its manifest calls skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media.reader import MotionClip, load_reference, open_motion
from ..media.writer import open_writer, write_image_atomic
from ..densepose.model import PoseModel
from ..densepose.render import render_frame
from ..densepose.settings import PoseSettings
from ..densepose.video import render_video
from ..motion.fit import resize
from ..runtime.errors import InputError, MagicAnimateError, SettingsError
from ..runtime.model_guard import ModelRunError
from ..runtime.progress import Reporter
from .layout import DataLayout
from .records import IMAGE_KIND, VIDEO_KIND, Outcome, read_record, rebuild_manifest, write_record
from .sources import Source, list_clips, list_images
from .store import DEFAULT_SHORT_SIDE, StorePaths, StoreWriter, file_stamp

DEFAULT_MIN_PERSON_FRAMES = 0.5
"""A clip is kept when a person is drawn in at least half its frames: most of its frames then teach the model
something, while a clip where the person leaves the picture for a moment is not lost."""


@dataclass(frozen=True)
class PrepareSettings:
    """What decides the DATA a run writes (the pose settings decide the renders)."""

    pose: PoseSettings
    min_person_frames: float = DEFAULT_MIN_PERSON_FRAMES
    max_side: int | None = None
    skip_existing: bool = False
    short_side: int = DEFAULT_SHORT_SIDE  # of the training-ready copy (store.py)

    def validate(self) -> None:
        self.pose.validate()
        if not 0.0 <= self.min_person_frames <= 1.0:
            raise SettingsError(f"--min-person-frames must be between 0 and 1 (got {self.min_person_frames})")
        if self.max_side is not None and self.max_side < 16:
            raise SettingsError(f"--max-side must be 16 or more (got {self.max_side})")
        if self.short_side < 16:
            raise SettingsError(f"--short-side must be 16 or more (got {self.short_side})")


@dataclass(frozen=True)
class WorkItem:
    kind: str  # records.VIDEO_KIND or IMAGE_KIND
    source: Source


@dataclass
class Plan:
    """Everything SOURCE (and --images) hold, and the share of it this run works on."""

    clips: list[Source]
    images: list[Source]
    collisions: list[dict]
    items: list[WorkItem]


@dataclass
class Summary:
    data: Path
    prepared: list[str] = field(default_factory=list)
    existing: int = 0
    skipped: list[dict] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    seconds: float = 0.0

    def record(self) -> dict:
        return {"data": str(self.data), "prepared": len(self.prepared), "existing": self.existing,
                "skipped": self.skipped, "videos": len(self.manifest.get("videos", [])),
                "images": len(self.manifest.get("images", [])), "seconds": round(self.seconds, 3)}


def plan_sources(source: Path, images: Path | None, data: Path) -> Plan:
    """List SOURCE's clips and --images' photos; NAME collisions become skipped entries."""
    clips = list_clips(source, exclude=(data,) if images is None else (data, images))
    photos = list_images(images, exclude=(data,)) if images is not None else None
    collisions = [{"source": str(path), "reason": f"another source already has the name {name!r}"}
                  for listing in (clips, photos) if listing is not None for path, name in listing.collisions]
    image_sources = photos.sources if photos is not None else []
    if not clips.sources and not image_sources:
        where = f"{source}" + (f" and {images}" if images is not None else "")
        raise InputError(f"{where}: no videos, frame folders or photos found")
    items = [WorkItem(VIDEO_KIND, s) for s in clips.sources] + [WorkItem(IMAGE_KIND, s) for s in image_sources]
    return Plan(clips.sources, image_sources, collisions, items)


def already_done(layout: DataLayout, item: WorkItem) -> bool:
    """--skip-existing: the item's files and its record (for this very source) are there; skipped sources are
    tried again (their files never existed)."""
    outcome = read_record(layout.root, item.kind, item.source)
    if outcome is None or not outcome.kept:
        return False
    name = item.source.name
    if item.kind == VIDEO_KIND:
        return layout.video(name).is_file() and layout.video_render(name).is_file()
    return layout.image(name).is_file() and layout.image_render(name).is_file()


def prepare(model: PoseModel | None, settings: PrepareSettings, plan: Plan, todo: list[WorkItem], existing: int,
            layout: DataLayout, reporter: Reporter) -> Summary:
    """Prepare each item of `todo`, record it, and rebuild the manifest; an empty result is an error."""
    started = time.perf_counter()
    summary = Summary(layout.root, existing=existing)
    for number, item in enumerate(todo, start=1):
        reporter.note(f"[{number}/{len(todo)}] {item.source.path} → {item.source.name}")
        outcome = prepare_item(model, settings, item, layout, reporter)
        write_record(layout.root, item.kind, item.source.name, outcome)
        if outcome.kept:
            summary.prepared.append(item.source.name)
        else:
            summary.skipped.append(outcome.skipped())
            reporter.note(f"skipped {item.source.path}: {outcome.reason}")
    summary.manifest = rebuild_manifest(layout.root, plan.clips, plan.images, plan.collisions)
    summary.skipped = plan.collisions + summary.skipped
    summary.seconds = time.perf_counter() - started
    if todo and not summary.prepared and not summary.existing:
        if not (summary.manifest["videos"] or summary.manifest["images"]):
            _forget(layout, todo)
        first = summary.skipped[0]
        raise InputError(f"{first['source']}: nothing usable was prepared: {len(summary.skipped)} source(s) "
                         f"skipped (first: {first['reason']})")
    return summary


def prepare_item(model: PoseModel, settings: PrepareSettings, item: WorkItem, layout: DataLayout,
                 reporter: Reporter) -> Outcome:
    """One source's outcome; a source that cannot be used is skipped (its old files in DATA removed)."""
    try:
        if item.kind == VIDEO_KIND:
            return prepare_clip(model, settings, item.source, layout, reporter)
        return prepare_image(model, settings, item.source, layout)
    except (InputError, ModelRunError) as exc:
        reason = _reason(exc, item.source.path)
    _remove_pair(layout, item)
    return Outcome(item.source.path, reason=reason)


def prepare_clip(model: PoseModel, settings: PrepareSettings, source: Source, layout: DataLayout,
                 reporter: Reporter) -> Outcome:
    """Decode once; write the source frames and their render; publish both only if the pair passes its checks."""
    clip = open_motion(source.path)
    width, height = scaled_size(clip.width, clip.height, settings.max_side)
    with ExitStack() as stack:
        video = stack.enter_context(open_writer(layout.video(source.name), clip.fps, width, height,
                                                settings.pose.crf))
        render = stack.enter_context(open_writer(layout.video_render(source.name), clip.fps, width, height,
                                                 settings.pose.crf))
        store = StoreWriter(StorePaths(layout.root, source.name), settings.short_side)
        stack.callback(store.abort)  # after publish the temporaries are gone: nothing left to remove
        tee = SavedClip(clip, width, height, video, store)
        stats = render_video(model, settings.pose, tee, [render, RenderLabels(store)], reporter)
        problem = pair_problem(len(clip), video.frames_written, render.frames_written,
                               stats.frames - stats.frames_without_people, settings.min_person_frames)
        if problem is not None:
            raise InputError(f"{source.path}: {problem}")  # leaving the block discards both temporaries
        size = video.encoded_size
        store.paths.index.unlink(missing_ok=True)  # an older copy must not vouch for the new pair
        _publish_pair(render, video)
        store.publish(clip.fps, {"video": file_stamp(video.path), "render": file_stamp(render.path)})
    return Outcome(source.path, {"name": source.name, "frames": len(clip), "fps": clip.fps, "width": size[0],
                                 "height": size[1], "person_frames": stats.frames - stats.frames_without_people})


def prepare_image(model: PoseModel, settings: PrepareSettings, source: Source, layout: DataLayout) -> Outcome:
    """A photo and its render, both as PNG; a photo without a person is skipped."""
    pixels = load_reference(source.path)
    height, width = pixels.shape[:2]
    width, height = scaled_size(width, height, settings.max_side)
    pixels = resize(pixels, width, height)
    image, people = render_frame(model.detect(pixels, f"photo {source.path}"), width, height,
                                 settings.pose.min_score, settings.pose.people)
    if people == 0:
        raise InputError(f"{source.path}: no person found")
    write_image_atomic(layout.image(source.name), pixels)
    write_image_atomic(layout.image_render(source.name), image)
    return Outcome(source.path, {"name": source.name, "width": width, "height": height})


def pair_problem(decoded: int, video_frames: int, render_frames: int, person_frames: int,
                 min_share: float) -> str | None:
    """Why a clip and its render cannot be a training pair, or None when they can."""
    if not video_frames == render_frames == decoded:
        return (f"frame counts differ: {decoded} decoded, {video_frames} in the video, {render_frames} in the "
                f"render")
    if decoded == 0 or person_frames < min_share * decoded:
        return (f"a person was found in {person_frames} of {decoded} frames, fewer than --min-person-frames "
                f"{min_share:g} asks")
    return None


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size with its longer side at most `max_side`, aspect kept, each side even (H.264's 4:2:0 needs it)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


class SavedClip:
    """The source clip as `render_video` reads it, each frame (scaled) also written to the re-encoded video as it
    is decoded: one decode feeds both files, so they hold the same frames in the same order."""

    def __init__(self, clip: MotionClip, width: int, height: int, writer, store: StoreWriter) -> None:
        self.clip, self.width, self.height, self.writer, self.store = clip, width, height, writer, store

    @property
    def path(self) -> Path:
        return self.clip.path

    @property
    def source_indices(self) -> range:
        return self.clip.source_indices

    def __len__(self) -> int:
        return len(self.clip)

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self.clip:
            frame = resize(frame, self.width, self.height)
            self.writer.write(frame)
            self.store.write_frame(frame)
            yield frame


class RenderLabels:
    """A render writer for `render_video` that adds each render to the ready copy (as part labels)."""

    def __init__(self, store: StoreWriter) -> None:
        self.store = store

    def write(self, image: np.ndarray) -> None:
        self.store.write_render(image)


def _publish_pair(first, second) -> None:
    """Publish two finished writers as a pair: if the second cannot be published, the first is taken back."""
    first.close()
    try:
        second.close()
    except BaseException:
        first.path.unlink(missing_ok=True)
        raise


def _remove_pair(layout: DataLayout, item: WorkItem) -> None:
    name = item.source.name
    paths = ((layout.video(name), layout.video_render(name)) if item.kind == VIDEO_KIND
             else (layout.image(name), layout.image_render(name)))
    if item.kind == VIDEO_KIND:
        store = StorePaths(layout.root, name)
        paths = (store.index, *paths, store.frames, store.labels)  # the index first: no half copy is trusted
    for path in paths:
        path.unlink(missing_ok=True)


def _forget(layout: DataLayout, todo: list[WorkItem]) -> None:
    """A run that prepared nothing leaves nothing: its skip records go, and the folders it made if now empty."""
    from .records import RECORDS, record_path

    for item in todo:
        record_path(layout.root, item.kind, item.source.name).unlink(missing_ok=True)
    records = layout.root / RECORDS
    (records / "lock").unlink(missing_ok=True)
    folders = sorted((p for p in layout.root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for folder in [*folders, layout.root]:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: something else lives there


def _reason(exc: MagicAnimateError, path: Path) -> str:
    """The error's words without the source path it starts with (the manifest names the source beside it)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text
