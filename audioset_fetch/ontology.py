"""The AudioSet ontology and the class index of the released features.

A class such as "Laughter" means itself and everything below it ("Baby laughter", "Giggle", ...),
so every lookup here resolves a name or mid to that whole subtree.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from homesound.errors import HomesoundError


@dataclass(frozen=True)
class AudioSetClass:
    mid: str
    name: str
    child_ids: tuple[str, ...]
    restrictions: tuple[str, ...]


class Ontology:
    """AudioSet classes by mid and by (case-insensitive) name, with subtree resolution."""

    def __init__(self, classes: list[AudioSetClass]):
        self.by_mid = {item.mid: item for item in classes}
        self._mid_by_name = {item.name.casefold(): item.mid for item in classes}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ontology":
        path = Path(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            classes = [
                AudioSetClass(
                    mid=entry["id"],
                    name=entry["name"],
                    child_ids=tuple(entry.get("child_ids", ())),
                    restrictions=tuple(entry.get("restrictions", ())),
                )
                for entry in entries
            ]
        except FileNotFoundError:
            raise HomesoundError(
                f"{path} not found; fetch it with `homesound audioset download --what ontology`"
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise HomesoundError(
                f"{path} is not the AudioSet ontology.json ({error}); download it again"
            ) from error
        return cls(classes)

    def mid(self, name_or_mid: str) -> str:
        """The mid of a class given by mid ("/m/01j3sz") or by name ("Laughter", any case)."""
        if name_or_mid in self.by_mid:
            return name_or_mid
        mid = self._mid_by_name.get(name_or_mid.strip().casefold())
        if mid is None:
            names = [item.name for item in self.by_mid.values()]
            close = difflib.get_close_matches(name_or_mid, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
            raise HomesoundError(f"{name_or_mid!r} is neither an AudioSet class name nor a mid{hint}")
        return mid

    def name(self, mid: str) -> str:
        return self.by_mid[mid].name

    def resolve(self, name_or_mid: str) -> frozenset[str]:
        """The class and all of its descendants (the ontology is a DAG: a class may have two parents)."""
        start = self.mid(name_or_mid)
        found: set[str] = set()
        pending = [start]
        while pending:
            mid = pending.pop()
            if mid in found:
                continue
            found.add(mid)
            pending.extend(self.by_mid[mid].child_ids)
        return frozenset(found)

    def resolve_all(self, names_or_mids: tuple[str, ...] | list[str]) -> frozenset[str]:
        resolved: set[str] = set()
        for item in names_or_mids:
            resolved |= self.resolve(item)
        return frozenset(resolved)


def load_class_indices(path: str | os.PathLike) -> tuple[str, ...]:
    """Mids in the order of the released features' integer `labels` (index -> mid).

    The official file starts with an `index,mid,display_name` header; copies without it also work.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except FileNotFoundError:
        raise HomesoundError(
            f"{path} not found; fetch it with `homesound audioset download --what csv`"
        ) from None
    if rows and rows[0][0].strip().lower() == "index":
        rows = rows[1:]
    mids: dict[int, str] = {}
    for line_number, row in enumerate(rows, start=1):
        try:
            index, mid = int(row[0]), row[1].strip()
        except (ValueError, IndexError):
            raise HomesoundError(
                f"{path}: row {line_number} is not 'index,mid,display_name': {row!r}; download it again"
            ) from None
        mids[index] = mid
    if sorted(mids) != list(range(len(mids))):
        raise HomesoundError(f"{path}: class indices are not 0..{len(mids) - 1} without gaps; download it again")
    return tuple(mids[index] for index in range(len(mids)))
