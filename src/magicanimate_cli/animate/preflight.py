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

from ..media.reader import FrameSelection, load_reference, open_motion
from ..motion.align import (FrameMap, Similarity, apply_similarity, box_record, decode_labels, fit_measured,
                            majority_filter, measure, person_box)
from ..motion.fit import Box, plan_fit
from ..motion.people import (InstanceMaps, PeopleAlignment, count_runs, fit_pairs, frame_people, gap_for,
                             pair_people, parse_pairs, people_from_owners, split_people, track_frames)
from ..runtime.errors import InputError, SettingsError, WeightsError
from ..runtime.progress import Reporter
from .job import prepare_inputs
from .preview import compose_preview, preview_frames
from .settings import AnimateSettings


@dataclass(frozen=True)
class MotionCheck:
    """`--align`, `--align-frame`, `--preview` and `--preview-only` as asked; `pose` finds the reference person."""

    align: bool = False
    align_frame: int = 0
    preview: Path | None = None
    preview_only: bool = False
    pose: object | None = None  # PoseSettings, with --align
    pairs: tuple[tuple[int, int], ...] | None = None  # --align-pairs, 0-based (motion, reference) people

    def preview_path(self, output: Path, batch: bool) -> Path | None:
        """Where this run's preview goes: --preview PATH (in a batch, a folder for every item's preview), else
        beside the output with --preview-only."""
        name = f"{output.name}.preview.png"
        if self.preview is not None:
            return self.preview / name if batch else self.preview
        return output.parent / name if self.preview_only else None


def motion_check(settings: AnimateSettings, **o) -> MotionCheck | None:
    """The checked options, or None when none was given (then the run is exactly what it was without them)."""
    from ..densepose.loading import pose_settings

    align, frame, preview, only = o["align"], o["align_frame"], o["preview"], o["preview_only"]
    if frame != 0 and not align:
        raise SettingsError("--align-frame chooses the anchor frame of --align; add --align")
    pairs = align_pairs(o.get("align_pairs"), align, "--align")
    if frame < 0:
        raise SettingsError(f"--align-frame must be at least 0 (got {frame})")
    if not (align or preview is not None or only):
        return None
    pose = pose_settings(o["pose_model"], settings.weights, settings.device, o["min_score"], o["people"],
                         settings.crf) if align else None
    return MotionCheck(align, frame, preview, only, pose, pairs)


def align_pairs(text: str | None, align: bool, option: str) -> tuple[tuple[int, int], ...] | None:
    """`--align-pairs` read and checked (its people counts are checked once they are known); `option` is the
    alignment option it belongs to (--align, --align-to)."""
    if text is None:
        return None
    if not align:
        raise SettingsError(f"--align-pairs pairs the people of {option}; add {option}")
    try:
        return tuple(parse_pairs(text))
    except ValueError as exc:
        raise SettingsError(f"--align-pairs {text}: {exc}") from None


def check_preview_path(path: Path | None, batch: bool) -> None:
    if path is not None and not batch and path.suffix.lower() != ".png":
        raise SettingsError(f"{path}: --preview writes a PNG picture; name a .png file")


def load_pose_model_for(pose, check: MotionCheck | None, reporter: Reporter):
    """The DensePose model when --motion-from-video (`pose`) or --align needs it, else None."""
    from ..densepose.loading import load_pose_model

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
    """The transform to apply to every motion frame (None: leave them), its sidecar record, the preview written,
    and (when asked to share them) the inputs as read, for the run to use rather than decode the motion again."""

    transform: object | None = None  # align.Similarity or people.PeopleAlignment
    record: dict | None = None
    preview: Path | None = None
    inputs: object | None = None  # job.PreparedInputs, not yet moved

    def sidecar_extra(self, extra: dict | None) -> dict | None:
        """`extra` with the alignment (and preview) sections added; unchanged when there are none."""
        sections = {k: v for k, v in (("alignment", self.record),
                                      ("preview", None if self.preview is None else str(self.preview))) if v}
        return {**(extra or {}), **sections} if sections else extra


def check_motion(check: MotionCheck | None, settings: AnimateSettings, reference_path: Path, motion_path: Path,
                 preview_path: Path | None, pose_model, reporter: Reporter,
                 motion_name: Path | str | None = None, share_frames: bool = False) -> CheckedMotion:
    """Fit the alignment and write the preview, as `check` asks; `motion_name` is what errors call the motion
    (the video, when `motion_path` is its temporary render). With `share_frames` every fitted frame is kept and
    returned (`CheckedMotion.inputs`), so that the run that follows decodes the motion no second time."""
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

    people: list[tuple[Box, ...]] = []  # with --align, each frame's people (by box), as the run will find them
    maps = _instance_files(motion_path) if check.align else None  # --motion-from-video: the model's instances

    def keep(frames: Iterator[np.ndarray], _count: int) -> dict[int, np.ndarray]:
        kept = {}
        for index, frame in enumerate(frames):
            if share_frames or index in wanted:
                kept[index] = frame
            if check.align and maps is None:
                people.append(frame_people(frame).boxes)
        return np.stack([kept[i] for i in range(len(kept))]) if share_frames else kept

    inputs = prepare_inputs(settings, reference_path, motion_path, store=keep,
                            reporter=reporter if share_frames else None,
                            raw_frames={check.align_frame} if check.align else ())
    background = inputs.fit.background
    transform, record = None, None
    if check.align:
        instances = None if maps is None else InstanceMaps(maps, inputs.fit)
        if instances is not None:
            people = [instances.people(index).boxes for index in range(len(maps))]
        work_h, work_w = inputs.reference.shape[:2]
        ref_fit = plan_fit(*inputs.source["reference_size"], work_w, work_h, settings.fit)
        photo = load_reference(reference_path)[ref_fit.source_box.slices()]
        raw = inputs.raw[check.align_frame][inputs.fit.source_box.slices()]
        reference = Picture(photo, FrameMap.onto(photo.shape[1], photo.shape[0], ref_fit.working_box))
        motion = Picture(raw, FrameMap.onto(raw.shape[1], raw.shape[0], inputs.fit.working_box))
        if _one_body(len(people[check.align_frame]), check):  # the one transform of every earlier version
            transform, record = _align(check, reference, motion, inputs.motion[check.align_frame],
                                       reference_path, name, pose_model)
            reporter.note(f"--align: scale {transform.scale:.3f}, shift ({transform.dx:.1f}, "
                          f"{transform.dy:.1f}) px from {record['method']}, residual {record['residual_px']:.1f} px")
        else:
            transform, record = _align_people(check, reference, motion, inputs.motion[check.align_frame], people,
                                              reference_path, name, pose_model, reporter, instances)
        record["people_per_frame"] = count_runs([len(frame) for frame in people])
    if preview_path is not None:
        from ..media.writer import write_image_atomic

        shown = {i: inputs.motion[i] for i in preview_frames(count)}
        write_image_atomic(preview_path, compose_preview(inputs.reference, shown, transform, background))
        reporter.note(f"wrote preview {preview_path}")
    return CheckedMotion(transform, record, preview_path, inputs if share_frames else None)


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
    from ..densepose.reference import reference_person

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


def _instance_files(motion_path: Path) -> tuple[str, ...] | None:
    """The owner maps of a render `--motion-from-video` made (pose.motion.instance_maps), or None."""
    from ..media.reader import list_frame_files
    from .rendered_motion import instance_maps

    folder = instance_maps(Path(motion_path))
    return None if folder is None else tuple(str(f) for f in list_frame_files(folder))


def _one_body(motion_people: int, check: MotionCheck) -> bool:
    """Whether the motion is aligned as one body: one person (or none, which `_align` refuses) in the anchor
    frame, and no `--align-pairs` choosing the reference person it goes to."""
    return motion_people == 0 or (motion_people == 1 and check.pairs is None)


def _align_people(check: MotionCheck, reference: Picture, motion: Picture, motion_working: np.ndarray,
                  people: list[tuple[Box, ...]] | None, reference_path: Path, motion_name, pose_model,
                  reporter: Reporter, instances: InstanceMaps | None = None) -> tuple[PeopleAlignment, dict]:
    """`--align` with several people in the motion's anchor frame: every reference person (the model's
    instances) and every motion person (split from the render, docs/alignment.md) measured in their own
    pictures, paired (left to right, or `--align-pairs`), one similarity per pair; `people` (each frame's
    people by box) names the people of every frame, or None to follow them frame by frame (`pose --align-to`);
    `instances` are the model's own people of each frame, where the motion was rendered from a video."""
    from ..densepose.reference import reference_people

    found = reference_people(pose_model, reference.pixels, check.pose.min_score, check.pose.people,
                             f"the reference image {reference_path}")
    refs = [m for m in (measure(labels, reference.frame) for labels in found) if m is not None]
    if not refs:
        raise InputError(f"{reference_path}: DensePose finds no person in the reference image (above --min-score "
                         f"{check.pose.min_score}); --align needs one to align the motion to")
    if instances is not None:
        split = instances.people(check.align_frame)
        mots = _instance_people(motion, split, instances.raw(check.align_frame)[instances.fit.source_box.slices()],
                                motion_working)
    else:
        split = frame_people(motion_working)
        mots = _motion_people(motion, split, motion_working)
    work_w = motion_working.shape[1]
    pairs = list(check.pairs) if check.pairs is not None else None
    if pairs is not None:
        _check_pairs(pairs, len(mots), len(refs), motion_name, reference_path)
    pairs = pair_people([m.extent.cx / work_w for m in mots], [r.extent.cx / work_w for r in refs], pairs)
    paired = fit_pairs(refs, mots, pairs)
    owners = None if people is None else tuple(
        tuple(zip(boxes, names)) for boxes, names in zip(people, track_frames(people, check.align_frame)))
    alignment = PeopleAlignment(paired.transforms, paired.order, split.boxes, gap_for(motion_working.shape), owners,
                                instances)
    left = _unpaired_note(paired, len(mots), len(refs))
    if left:
        reporter.warn(f"--align: {left}")
    for m, r in paired.pairs:
        t = paired.fits[m].transform
        reporter.note(f"--align: motion person {m + 1} onto reference person {r + 1}: scale {t.scale:.3f}, "
                      f"shift ({t.dx:.1f}, {t.dy:.1f}) px")
    working_labels = majority_filter(decode_labels(motion_working))
    record = {"anchor_frame": check.align_frame, "method": "people",
              "people": {"motion": len(mots), "reference": len(refs),
                         "pairs": [[m + 1, r + 1] for m, r in paired.pairs],
                         "paired_by": "--align-pairs" if check.pairs is not None else "left to right",
                         "found_by": "the model's instances" if instances is not None else "the render's labels",
                         "unpaired": left or None},
              "fits": [_person_record(m, paired, mots, refs, split, working_labels) for m in range(len(mots))],
              "drawing_order": [m + 1 for m in paired.order],
              "reference_person": "every person above --min-score" if check.pose.people != "largest"
              else "largest"}
    return alignment, record


def _motion_people(motion: Picture, split, motion_working: np.ndarray) -> list:
    """Each motion person of the anchor frame measured in the render at its own resolution: the render split the
    same way, with the same gap in the render's pixels; where the two splits disagree (people so close that the
    working frame joins them), in the working frame."""
    raw_labels = majority_filter(decode_labels(motion.pixels))
    raw = split_people(raw_labels, max(1, round(gap_for(motion_working.shape) / motion.frame.kx)))
    if len(raw) == len(split):
        return [measure(np.where(raw.mask(i), raw_labels, 0), motion.frame) for i in range(len(raw))]
    working = majority_filter(decode_labels(motion_working))
    return [measure(np.where(split.mask(i), working, 0)) for i in range(len(split))]


def _instance_people(motion: Picture, split, raw_owners: np.ndarray, motion_working: np.ndarray) -> list:
    """Each motion person of the anchor frame, cut out of the render at its own resolution by the model's own
    instance map; in the working frame where the two disagree."""
    raw_labels = majority_filter(decode_labels(motion.pixels))
    raw = people_from_owners(raw_owners)
    if len(raw) == len(split):
        return [measure(np.where(raw.mask(i), raw_labels, 0), motion.frame) for i in range(len(raw))]
    working = majority_filter(decode_labels(motion_working))
    return [measure(np.where(split.mask(i), working, 0)) for i in range(len(split))]


def _check_pairs(pairs: list[tuple[int, int]], motion: int, reference: int, motion_name, reference_path) -> None:
    for m, r in pairs:
        if m >= motion:
            raise SettingsError(f"{motion_name}: --align-pairs names motion person {m + 1}, but the anchor frame "
                                f"shows {motion}")
        if r >= reference:
            raise SettingsError(f"{reference_path}: --align-pairs names reference person {r + 1}, but DensePose "
                                f"finds {reference}")


def _unpaired_note(paired, motion: int, reference: int) -> str:
    """The one warning line of unequal counts ('' when everyone is paired)."""
    if motion == reference and len(paired.pairs) == motion:
        return ""
    lone = [m for m in range(motion) if paired.fits[m] is None]
    unused = sorted(set(range(reference)) - {r for _, r in paired.pairs})
    people = "person" if motion == 1 else "people"
    parts = [f"the motion shows {motion} {people} and the reference {reference}; paired "
             + ", ".join(f"{m + 1}-{r + 1}" for m, r in paired.pairs)]
    if lone:
        parts.append("motion " + ", ".join(f"person {m + 1} moves with person {paired.follows[m] + 1}"
                                           for m in lone))
    if unused:
        parts.append("reference " + ", ".join(f"person {r + 1}" for r in unused) + " left out")
    return "; ".join(parts)


def _person_record(m: int, paired, mots, refs, split, working_labels: np.ndarray) -> dict:
    fit = paired.fits[paired.follows[m]]
    mine = np.where(split.mask(m), working_labels, 0)
    partner = next((r for mm, r in paired.pairs if mm == m), None)
    return {"motion_person": m + 1, "reference_person": None if partner is None else partner + 1,
            "follows": paired.follows[m] + 1, **fit.to_dict(),
            "reference_box": None if partner is None else box_record(refs[partner].extent.box()),
            "motion_box_before": box_record(person_box(mine)),
            "motion_box_after": box_record(person_box(apply_similarity(mine, fit.transform)))}


def letterbox_box(width: int, height: int, frame_w: int, frame_h: int) -> Box:
    """Where a width×height picture lands when fitted inside a frame_w×frame_h frame keeping its aspect."""
    from ..motion.fit import _fit_inside

    w, h = _fit_inside(width, height, frame_w, frame_h)
    return Box((frame_w - w) // 2, (frame_h - h) // 2, w, h)


def align_video_render(model, settings, video: Path, reference_path: Path, frame: int,
                       selection: FrameSelection = FrameSelection(), pairs: tuple[tuple[int, int], ...] | None = None,
                       reporter: Reporter | None = None):
    """`pose --align-to`: the transform that puts the render's person in frame `frame` of the selected frames of
    `video` onto the person of the reference, letterboxed into the video's frame (the reference is measured at
    its own resolution and its numbers mapped into that frame); with several people in that frame, one per
    person, paired as `animate --align` pairs them (a `people.PeopleAlignment`)."""
    from ..densepose.render import render_labels
    from ..densepose.video import open_video
    from ..motion.palette import colourise

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
    check = MotionCheck(align=True, align_frame=frame, pose=settings, pairs=pairs)
    if _one_body(len(frame_people(render)), check):
        return _align(check, reference, Picture(render, FrameMap()), render, reference_path, video, model)
    return _align_people(check, reference, Picture(render, FrameMap()), render, None, reference_path, video, model,
                         reporter or Reporter())
