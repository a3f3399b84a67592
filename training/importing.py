"""Import of real labelled photos: class folders + a class-to-grade mapping file -> dataset folder.

Defect boxes come from PNG masks (white = defect, one box per connected component), Pascal-VOC
XML or YOLO txt beside each photo (or in an annotations folder). Exact and near duplicates
(same sha256, or perceptual hashes within a few bits) are grouped and a group never straddles
the seeded, grade-stratified train/val/test split.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspection.grading.intake import perceptual_hash
from inspection.grading.types import GRADES
from training.dataset import (
    SPLITS,
    LabelledPhoto,
    write_data_yaml,
    write_grades_csv,
    yolo_line,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}
# Perceptual hashes this close are the same picture re-encoded or resized (A's intake says a
# different photo differs in ~32 bits).
DEFAULT_PHASH_DISTANCE = 4
# Mask components smaller than this share of the photo are speckle, not a defect.
MIN_MASK_AREA = 0.0002


@dataclass(frozen=True)
class GradeMapping:
    """The mapping file: class (folder or defect name) -> grade, and optional defect names."""

    grades: dict[str, str]
    # class folder -> detector class for its mask boxes (default: the folder name)
    defects: dict[str, str] = field(default_factory=dict)
    # YOLO txt label ids -> names, when the source has YOLO labels
    yolo_names: tuple[str, ...] = ()
    default_grade: str | None = None


def load_mapping(path: Path) -> GradeMapping:
    """Reads and validates a mapping YAML (see datasets/real/magnetic-tile.grades.yaml)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    grades = data.get("grades")
    if not isinstance(grades, dict) or not grades:
        raise ValueError(
            f"{path}: needs a 'grades:' map of class name -> one of {', '.join(GRADES)}"
        )
    bad = {k: v for k, v in grades.items() if v not in GRADES}
    if bad:
        raise ValueError(f"{path}: unknown grades {bad}; use one of {', '.join(GRADES)}")
    default = data.get("default_grade")
    if default is not None and default not in GRADES:
        raise ValueError(f"{path}: default_grade {default!r} is not one of {', '.join(GRADES)}")
    return GradeMapping(
        grades={str(k): str(v) for k, v in grades.items()},
        defects={str(k): str(v) for k, v in (data.get("defects") or {}).items()},
        yolo_names=tuple(str(n) for n in data.get("yolo_names") or ()),
        default_grade=default,
    )


@dataclass
class SourcePhoto:
    """One photo found in the source tree with its boxes (pixels) and grade."""

    path: Path
    class_name: str
    grade: str
    boxes: list[tuple[str, tuple[float, float, float, float]]]
    width: int
    height: int
    sha256: str = ""
    phash: str = ""


@dataclass
class ImportSummary:
    """What `import_dataset` wrote."""

    out_dir: Path
    count: int
    grades: dict[str, int]
    splits: dict[str, int]
    duplicate_groups: int
    duplicates: int
    defect_classes: list[str]
    grade_conflicts: int = 0


def mask_boxes(
    mask: np.ndarray, *, min_area: float = MIN_MASK_AREA
) -> list[tuple[float, float, float, float]]:
    """Boxes (x1, y1, x2, y2) of the white connected components of a binary mask."""
    binary = (mask > 127).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    limit = max(4.0, min_area * mask.shape[0] * mask.shape[1])
    boxes = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= limit:
            boxes.append((float(x), float(y), float(x + w), float(y + h)))
    return boxes


def voc_boxes(path: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(name, box) pairs of a Pascal-VOC XML file."""
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            continue
        box = tuple(float(bb.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((name, (box[0], box[1], box[2], box[3])))
    return out


def yolo_boxes(
    path: Path, *, names: Sequence[str], width: int, height: int
) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(name, pixel box) pairs of a YOLO txt label file."""
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"{path}:{line_no}: expected 'class cx cy w h', got {line!r}")
        cid = int(parts[0])
        if cid >= len(names):
            raise ValueError(
                f"{path}:{line_no}: class id {cid} has no name; list them under 'yolo_names:' "
                "in the mapping file"
            )
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        box = (
            (cx - bw / 2) * width,
            (cy - bh / 2) * height,
            (cx + bw / 2) * width,
            (cy + bh / 2) * height,
        )
        out.append((names[cid], box))
    return out


def _find_annotation(image: Path, annotations: Path | None, suffix: str) -> Path | None:
    for folder in (image.parent, annotations):
        if folder is not None and (folder / (image.stem + suffix)).exists():
            return folder / (image.stem + suffix)
    return None


def _worst(grades: Sequence[str]) -> str:
    return max(grades, key=GRADES.index)


def scan_source(
    *, src: Path, mapping: GradeMapping, annotations: Path | None = None
) -> list[SourcePhoto]:
    """Finds photos, their grade (class folder, else worst mapped box class) and their boxes."""
    photos: list[SourcePhoto] = []
    unmapped: Counter[str] = Counter()
    candidates = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    stems_with_jpg = {
        p.with_suffix("") for p in candidates if p.suffix.lower() in {".jpg", ".jpeg"}
    }
    for path in candidates:
        if path.suffix.lower() == ".png" and path.with_suffix("") in stems_with_jpg:
            continue  # a mask beside its photo
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            log.warning("skipping %s: not a decodable image", path)
            continue
        height, width = image.shape[:2]
        class_name = path.parent.name
        boxes: list[tuple[str, tuple[float, float, float, float]]] = []
        mask_path = path.with_suffix(".png") if path.suffix.lower() != ".png" else None
        xml = _find_annotation(path, annotations, ".xml")
        txt = _find_annotation(path, annotations, ".txt")
        if mask_path is not None and mask_path.exists():
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
            if mask is not None:
                if mask.shape != (height, width):
                    mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
                defect = mapping.defects.get(class_name, class_name)
                boxes = [(defect, b) for b in mask_boxes(mask)]
        elif xml is not None:
            boxes = voc_boxes(xml)
        elif txt is not None:
            boxes = yolo_boxes(txt, names=mapping.yolo_names, width=width, height=height)
        if class_name in mapping.grades:
            grade = mapping.grades[class_name]
        elif boxes and all(name in mapping.grades for name, _ in boxes):
            grade = _worst([mapping.grades[name] for name, _ in boxes])
        elif mapping.default_grade is not None:
            grade = mapping.default_grade
        else:
            unmapped[class_name] += 1
            continue
        photos.append(SourcePhoto(path, class_name, grade, boxes, width, height))
    if unmapped:
        raise ValueError(
            "no grade for classes "
            + ", ".join(f"{k} ({v} photos)" for k, v in unmapped.items())
            + ": add them under 'grades:' in the mapping file (or set default_grade)"
        )
    if not photos:
        raise ValueError(
            f"no photos found under {src} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return photos


def duplicate_groups(
    *, sha256s: Sequence[str], phashes: Sequence[str], max_distance: int
) -> list[int]:
    """Group id per photo: same bytes or perceptual hashes within `max_distance` bits."""
    n = len(sha256s)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first: dict[str, int] = {}
    for i, digest in enumerate(sha256s):
        if digest in first:
            union(first[digest], i)
        else:
            first[digest] = i
    if max_distance >= 0 and n > 1:
        values = np.array([int(h, 16) for h in phashes], dtype=np.uint64)
        as_bytes = values.view(np.uint8).reshape(n, 8)
        for start in range(0, n, 512):  # chunks keep memory at n * 512 * 8 bytes
            block = as_bytes[start : start + 512, None, :] ^ as_bytes[None, :, :]
            dist = np.unpackbits(block, axis=2).sum(axis=2)
            rows, cols = np.nonzero(dist <= max_distance)
            for r, c in zip(rows, cols, strict=True):
                if start + r < c:
                    union(start + int(r), int(c))
    return [find(i) for i in range(n)]


def stratified_group_split(
    *, grades: Sequence[str], groups: Sequence[int], seed: int, shares: dict[str, float]
) -> list[str]:
    """Split per photo: whole groups go to one split, balanced per grade by photo count."""
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_grade: dict[str, list[int]] = defaultdict(list)
    for g, idx in members.items():
        by_grade[_worst([grades[i] for i in idx])].append(g)
    out = [""] * len(grades)
    order = [s for s in SPLITS if shares.get(s, 0) > 0]
    for grade in GRADES:
        gids = sorted(by_grade.get(grade, []))
        rng.shuffle(gids)
        total = sum(len(members[g]) for g in gids)
        filled = dict.fromkeys(order, 0)
        for g in gids:
            # the split furthest below its target share takes the next group
            split = min(order, key=lambda s: (filled[s] / max(1, total)) - shares[s])
            for i in members[g]:
                out[i] = split
            filled[split] += len(members[g])
    return out


def import_dataset(
    *,
    src: Path,
    mapping_file: Path,
    out_dir: Path,
    seed: int = 0,
    shares: dict[str, float] | None = None,
    annotations: Path | None = None,
    phash_distance: int = DEFAULT_PHASH_DISTANCE,
    progress: bool = False,
) -> ImportSummary:
    """Imports a labelled photo tree into the dataset layout train-grader/train-detector read."""
    shares = shares or DEFAULT_SPLIT
    mapping = load_mapping(mapping_file)
    photos = scan_source(src=Path(src), mapping=mapping, annotations=annotations)
    iterator = photos
    if progress:
        from tqdm import tqdm

        iterator = tqdm(photos, desc="hashing", unit="photo")
    for photo in iterator:
        data = photo.path.read_bytes()
        photo.sha256 = hashlib.sha256(data).hexdigest()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"cannot decode {photo.path}")
        photo.phash = perceptual_hash(image)
    groups = duplicate_groups(
        sha256s=[p.sha256 for p in photos],
        phashes=[p.phash for p in photos],
        max_distance=phash_distance,
    )
    splits = stratified_group_split(
        grades=[p.grade for p in photos], groups=groups, seed=seed, shares=shares
    )
    group_sizes = Counter(groups)
    conflicts = sum(
        1
        for g in group_sizes
        if group_sizes[g] > 1
        and len({photos[i].grade for i, gg in enumerate(groups) if gg == g}) > 1
    )
    defect_classes = sorted({name for p in photos for name, _ in p.boxes})
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir / "images", ignore_errors=True)
        shutil.rmtree(out_dir / "labels", ignore_errors=True)
    for s in SPLITS:
        (out_dir / "images" / s).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / s).mkdir(parents=True, exist_ok=True)
    rows: list[LabelledPhoto] = []
    used: set[str] = set()
    for photo, split in zip(photos, splits, strict=True):
        stem = f"{photo.class_name}__{photo.path.stem}"
        while stem in used:  # same file name in two class folders
            stem += "_"
        used.add(stem)
        dst = out_dir / "images" / split / f"{stem}{photo.path.suffix.lower()}"
        shutil.copyfile(photo.path, dst)
        lines = [
            yolo_line(
                class_id=defect_classes.index(name), box=box, width=photo.width, height=photo.height
            )
            for name, box in photo.boxes
        ]
        (out_dir / "labels" / split / f"{stem}.txt").write_text(
            "\n".join(lines) + ("\n" if lines else ""), encoding="utf-8"
        )
        rows.append(
            LabelledPhoto(
                path=dst,
                split=split,
                category=photo.class_name,
                grade=photo.grade,
                defects=tuple(sorted({name for name, _ in photo.boxes})),
            )
        )
    write_grades_csv(dataset_dir=out_dir, rows=rows)
    write_data_yaml(dataset_dir=out_dir, names=defect_classes or ["defect"])
    summary = ImportSummary(
        out_dir=out_dir,
        count=len(rows),
        grades=dict(Counter(r.grade for r in rows)),
        splits=dict(Counter(r.split for r in rows)),
        duplicate_groups=sum(1 for v in group_sizes.values() if v > 1),
        duplicates=sum(v - 1 for v in group_sizes.values() if v > 1),
        defect_classes=defect_classes,
        grade_conflicts=conflicts,
    )
    log.info("imported %d photos from %s: %s", summary.count, src, summary.splits)
    return summary
