"""What is decided about the motion before any diffusion model loads: `--align` and `--preview`.

Both run on the CPU in seconds, on the motion exactly as the engine would receive it (after `--fit`), so that a
wrong fit, a misplaced body or a bad render shows before the GPU run. The alignment's one transform is then
applied to every frame by `job.prepare_inputs`; without `--align` that code path is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import (FrameMap, Similarity, apply_similarity, box_record, decode_labels, fit_measured,
                    majority_filter, measure, person_box)
from .config import AnimateSettings, FrameSelection
from .errors import InputError, SettingsError, WeightsError
from .job import prepare_inputs
from .geometry import Box, plan_fit
from .media import load_reference, open_motion
from .preview import compose_preview, preview_frames
from .progress import Reporter


@dataclass(frozen=True)
class MotionCheck:
    """`--align`, `--align-frame`, `--preview` and `--preview-only` as asked; `pose` finds the reference person."""

    align: bool = False
    align_frame: int = 0
    preview: Path | None = None
    preview_only: bool = False
    pose: object | None = None  # PoseSettings, with --align

    def preview_path(self, output: Path, batch: bool) -> Path | None:
        """Where this run's preview goes: --preview PATH (in a batch, a folder for every item's preview), else
        beside the output with --preview-only."""
        name = f"{output.name}.preview.png"
        if self.preview is not None:
            return self.preview / name if batch else self.preview
        return output.parent / name if self.preview_only else None


def motion_check(settings: AnimateSettings, **o) -> MotionCheck | None:
    """The checked options, or None when none was given (then the run is exactly what it was without them)."""
    from .pose.loading import pose_settings

    align, frame, preview, only = o["align"], o["align_frame"], o["preview"], o["preview_only"]
    if frame != 0 and not align:
        raise SettingsError("--align-frame chooses the anchor frame of --align; add --align")
    if frame < 0:
        raise SettingsError(f"--align-frame must be at least 0 (got {frame})")
    if not (align or preview is not None or only):
        return None
    pose = pose_settings(o["pose_model"], settings.weights, settings.device, o["min_score"], o["people"],
                         settings.crf) if align else None
    return MotionCheck(align, frame, preview, only, pose)


def check_preview_path(path: Path | None, batch: bool) -> None:
    if path is not None and not batch and path.suffix.lower() != ".png":
        raise SettingsError(f"{path}: --preview writes a PNG picture; name a .png file")


def load_pose_model_for(pose, check: MotionCheck | None, reporter: Reporter):
    """The DensePose model when --motion-from-video (`pose`) or --align needs it, else None."""
    from .pose.loading import load_pose_model

    if pose is not None:
        return load_pose_model(pose.settings, reporter)[0]
    if check is None or not check.align:
        return None
    try:
        return load_pose_model(check.pose, reporter)[0]
    except WeightsError as exc:
        raise WeightsError(f"{exc}; --align finds the reference person with it") from None


@dataclass(frozen=True)
class CheckedMotion:
    """The transform to apply to every motion frame (None: leave them), its sidecar record, the preview written."""

    transform: Similarity | None = None
    record: dict | None = None
    preview: Path | None = None

    def sidecar_extra(self, extra: dict | None) -> dict | None:
        """`extra` with the alignment (and preview) sections added; unchanged when there are none."""
        sections = {k: v for k, v in (("alignment", self.record),
                                      ("preview", None if self.preview is None else str(self.preview))) if v}
        return {**(extra or {}), **sections} if sections else extra


def check_motion(check: MotionCheck | None, settings: AnimateSettings, reference_path: Path, motion_path: Path,
                 preview_path: Path | None, pose_model, reporter: Reporter,
                 motion_name: Path | str | None = None) -> CheckedMotion:
    """Fit the alignment and write the preview, as `check` asks; `motion_name` is what errors call the motion
    (the video, when `motion_path` is its temporary render)."""
    if check is None:
        return CheckedMotion()
    name = motion_name or motion_path
    sel = settings.selection
    count = len(open_motion(motion_path, start=sel.start, max_frames=sel.max_frames, stride=sel.stride))
    if check.align and check.align_frame >= count:
        raise SettingsError(f"{name}: --align-frame {check.align_frame} is past the motion's last frame "
                            f"({count} frames: 0..{count - 1})")
    wanted = set(preview_frames(count)) if preview_path is not None else set()
    if check.align:
        wanted.add(check.align_frame)

    def keep(frames: Iterator[np.ndarray], _count: int) -> dict[int, np.ndarray]:
        return {i: f for i, f in enumerate(frames) if i in wanted}

    inputs = prepare_inputs(settings, reference_path, motion_path, store=keep)
    background = inputs.fit.background
    transform, record = None, None
    if check.align:
        work_h, work_w = inputs.reference.shape[:2]
        ref_fit = plan_fit(*inputs.source["reference_size"], work_w, work_h, settings.fit)
        photo = load_reference(reference_path)[ref_fit.source_box.slices()]
        raw = _raw_frame(motion_path, sel, check.align_frame)[inputs.fit.source_box.slices()]
        reference = Picture(photo, FrameMap.onto(photo.shape[1], photo.shape[0], ref_fit.working_box))
        motion = Picture(raw, FrameMap.onto(raw.shape[1], raw.shape[0], inputs.fit.working_box))
        transform, record = _align(check, reference, motion, inputs.motion[check.align_frame], reference_path,
                                   name, pose_model)
        reporter.note(f"--align: scale {transform.scale:.3f}, shift ({transform.dx:.1f}, {transform.dy:.1f}) px "
                      f"from {record['method']}, residual {record['residual_px']:.1f} px")
    if preview_path is not None:
        from .writer import write_image_atomic

        shown = {i: inputs.motion[i] for i in preview_frames(count)}
        write_image_atomic(preview_path, compose_preview(inputs.reference, shown, transform, background))
        reporter.note(f"wrote preview {preview_path}")
    return CheckedMotion(transform, record, preview_path)


def _raw_frame(motion_path: Path, sel: FrameSelection, index: int) -> np.ndarray:
    """Selected frame `index` of the motion as the file holds it (before `--fit`)."""
    for position, frame in enumerate(open_motion(motion_path, start=sel.start, max_frames=sel.max_frames,
                                                 stride=sel.stride)):
        if position == index:
            return frame
    raise SettingsError(f"{motion_path}: frame {index} could not be read")


@dataclass(frozen=True)
class Picture:
    """A picture at its own resolution (the photo, the render) and where its pixels land in the working frame:
    people are measured here, where they are largest, and their numbers mapped (align.FrameMap)."""

    pixels: np.ndarray
    frame: FrameMap


def _align(check: MotionCheck, reference: Picture, motion: Picture, motion_working: np.ndarray,
           reference_path: Path, motion_name, pose_model) -> tuple[Similarity, dict]:
    """Fit the motion's person onto the reference person, each measured in its own picture (`Picture`), and
    describe the fit in working pixels; `motion_working` is the anchor frame as the engine receives it."""
    from .pose.reference import reference_person

    ref_labels = reference_person(pose_model, reference.pixels, check.pose.min_score, check.pose.people,
                                  f"the reference image {reference_path}")
    if ref_labels is None:
        raise InputError(f"{reference_path}: DensePose finds no person in the reference image (above --min-score "
                         f"{check.pose.min_score}); --align needs one to align the motion to")
    motion_labels = majority_filter(decode_labels(motion.pixels))
    ref, mot = measure(ref_labels, reference.frame), measure(motion_labels, motion.frame)
    if mot is None:
        raise InputError(f"{motion_name}: motion frame {check.align_frame} shows no person; --align needs one in "
                         "its anchor frame (choose another with --align-frame)")
    fit = fit_measured(ref, mot)
    working_labels = majority_filter(decode_labels(motion_working))
    anchors = [{"part": p, "reference": [round(ref.anchors[p].cx, 2), round(ref.anchors[p].cy, 2)],
                "motion": [round(mot.anchors[p].cx, 2), round(mot.anchors[p].cy, 2)],
                "pixels": [ref.anchors[p].pixels, mot.anchors[p].pixels]} for p in fit.parts]
    record = {"anchor_frame": check.align_frame, **fit.to_dict(), "anchors": anchors,
              "measured_at": {"reference": list(reference.pixels.shape[1::-1]),
                              "motion": list(motion.pixels.shape[1::-1])},
              "reference_person": "largest" if check.pose.people == "largest" else "most confident",
              "reference_box": box_record(ref.extent.box()),
              "motion_box_before": box_record(person_box(working_labels)),
              "motion_box_after": box_record(person_box(apply_similarity(working_labels, fit.transform)))}
    return fit.transform, record


def letterbox_box(width: int, height: int, frame_w: int, frame_h: int) -> Box:
    """Where a width×height picture lands when fitted inside a frame_w×frame_h frame keeping its aspect."""
    from .geometry import _fit_inside

    w, h = _fit_inside(width, height, frame_w, frame_h)
    return Box((frame_w - w) // 2, (frame_h - h) // 2, w, h)


def align_video_render(model, settings, video: Path, reference_path: Path, frame: int,
                       selection: FrameSelection = FrameSelection()) -> tuple[Similarity, dict]:
    """`pose --align-to`: the transform that puts the render's person in frame `frame` of the selected frames of
    `video` onto the person of the reference, letterboxed into the video's frame (the reference is measured at
    its own resolution and its numbers mapped into that frame)."""
    from .densepose import colourise
    from .pose.job import open_video
    from .pose.render import render_labels

    clip = open_video(video, selection)
    if not 0 <= frame < len(clip):
        raise SettingsError(f"{video}: --align-frame {frame} is past the video's last frame "
                            f"({len(clip)} frames: 0..{len(clip) - 1})")
    for index, pixels in enumerate(clip):
        if index == frame:
            break
    detections = model.detect(pixels, f"frame {clip.source_indices[frame]} of {video}")
    labels, _ = render_labels(detections, clip.width, clip.height, settings.min_score, settings.people)
    photo = load_reference(reference_path)
    place = letterbox_box(photo.shape[1], photo.shape[0], clip.width, clip.height)
    reference = Picture(photo, FrameMap.onto(photo.shape[1], photo.shape[0], place))
    render = colourise(labels)
    check = MotionCheck(align=True, align_frame=frame, pose=settings)
    return _align(check, reference, Picture(render, FrameMap()), render, reference_path, video, model)
