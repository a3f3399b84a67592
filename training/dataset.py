"""The labelled-dataset layout every training step reads and writes.

A dataset folder holds `images/<split>/*.jpg`, YOLO box labels in `labels/<split>/*.txt`,
`grades.csv` (one row per photo: file, split, category, grade, defects) and `data.yaml`
(absolute paths, for ultralytics). The generator, the importer and QA corrections all write it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from inspection.grading.types import GRADES

CATEGORIES: tuple[str, ...] = ("electronics", "apparel", "shoes", "boxed", "hard_goods")
DEFECT_TYPES: tuple[str, ...] = (
    "crack",
    "scratch",
    "dent",
    "stain",
    "tear",
    "missing_part",
    "crushed_packaging",
    "wear",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
GRADES_FILE = "grades.csv"
DATA_YAML = "data.yaml"
GRADES_COLUMNS = ("file", "split", "category", "grade", "defects")
PROVENANCE_FILE = "PROVENANCE.txt"


@dataclass(frozen=True)
class LabelledPhoto:
    """One row of `grades.csv`; `path` is absolute, `defects` a list of defect type names."""

    path: Path
    split: str
    category: str
    grade: str
    defects: tuple[str, ...] = ()

    @property
    def grade_index(self) -> int:
        """Index of the grade in GRADES (resell, refurbish, reject)."""
        return GRADES.index(self.grade)


def write_grades_csv(*, dataset_dir: Path, rows: Iterable[LabelledPhoto]) -> Path:
    """Writes `grades.csv` with paths relative to the dataset folder."""
    path = dataset_dir / GRADES_FILE
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(GRADES_COLUMNS)
        for row in rows:
            rel = row.path.relative_to(dataset_dir).as_posix()
            writer.writerow([rel, row.split, row.category, row.grade, ";".join(row.defects)])
    return path


def read_grades_csv(*, dataset_dir: Path) -> list[LabelledPhoto]:
    """Reads `grades.csv` of one dataset folder; unknown grades are an error, not a skip."""
    path = dataset_dir / GRADES_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: a dataset folder needs grades.csv "
            "(make one with `training synth` or `training import`)"
        )
    rows: list[LabelledPhoto] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for line_no, rec in enumerate(csv.DictReader(fh), start=2):
            if rec["grade"] not in GRADES:
                raise ValueError(
                    f"{path}:{line_no}: grade {rec['grade']!r} is not one of {', '.join(GRADES)}"
                )
            defects = tuple(d for d in (rec.get("defects") or "").split(";") if d)
            rows.append(
                LabelledPhoto(
                    path=(dataset_dir / rec["file"]).resolve(),
                    split=rec["split"],
                    category=rec.get("category") or "",
                    grade=rec["grade"],
                    defects=defects,
                )
            )
    return rows


def read_many(*, dataset_dirs: Sequence[Path]) -> list[LabelledPhoto]:
    """Reads several dataset folders as one (earlier data plus QA corrections)."""
    rows: list[LabelledPhoto] = []
    for folder in dataset_dirs:
        rows.extend(read_grades_csv(dataset_dir=folder))
    return rows


def write_data_yaml(*, dataset_dir: Path, names: Sequence[str]) -> Path:
    """Writes the ultralytics data file with absolute paths (no `download:` key, ever)."""
    root = dataset_dir.resolve()
    data = {
        "path": str(root),
        "train": str(root / "images" / "train"),
        "val": str(root / "images" / "val"),
        "test": str(root / "images" / "test"),
        "names": dict(enumerate(names)),
    }
    path = dataset_dir / DATA_YAML
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def yolo_line(
    *, class_id: int, box: tuple[float, float, float, float], width: int, height: int
) -> str:
    """One YOLO label line from a pixel box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    cx = (x1 + x2) / 2 / width
    cy = (y1 + y2) / 2 / height
    bw = (x2 - x1) / width
    bh = (y2 - y1) / height
    return f"{class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def write_provenance(*, dataset_dir: Path, command: str) -> Path:
    """Records the command that made a dataset folder, so model cards can cite it."""
    path = dataset_dir / PROVENANCE_FILE
    path.write_text(command.strip() + "\n", encoding="utf-8")
    return path


def describe_data(*, dataset_dirs: Sequence[Path]) -> str:
    """Dataset folders for a model card, each with the command that made it (if recorded)."""
    parts = []
    for folder in dataset_dirs:
        prov = Path(folder) / PROVENANCE_FILE
        made = prov.read_text(encoding="utf-8").strip() if prov.exists() else ""
        parts.append(f"{folder} (made by: {made})" if made else str(folder))
    return "; ".join(parts)
