"""W+ row groups, named as StyleDomain names them (``SimilarDomains/core/parametrizations.py``, its
``level_to_conv_name_map``): "coarse" = rows 0-5 (the first six modulated convolutions, up to 32 px), "medium" = rows
6-10, "fine" = every row after. A small generator simply has fewer rows in the later groups (at 64 px: no fine row).

One spelling for the whole project: ``AdaptConfig.frozen_rows`` (rows that do not train), ``nada.edits`` (rows an edit
may change), ``nada invert --edit smile:1.5@medium`` and the Invert tab take a group name, several joined by "+"
("coarse+medium"), or explicit row numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

ROW_GROUPS: dict[str, range] = {"coarse": range(0, 6), "medium": range(6, 11), "fine": range(11, 10_000)}


def resolve_rows(spec: str | int | Iterable[int | str] | None, n_latent: int) -> list[int]:
    """The sorted W+ rows ``spec`` names on a generator with ``n_latent`` rows: None or "all" = every row; a group
    ("coarse", "medium", "fine", or several joined by "+"); a row number; or a list of numbers and group names.
    ValueError names what is wrong (an unknown group, a row out of range, nothing named)."""
    if spec is None:
        return list(range(n_latent))
    items: list[int | str]
    if isinstance(spec, str):
        items = [part.strip() for part in spec.split("+")]
    elif isinstance(spec, int):
        items = [spec]
    else:
        items = list(spec)
    rows: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"Rows are group names ({', '.join(ROW_GROUPS)}) or row numbers, got {item!r}.")
        if isinstance(item, int):
            if not 0 <= item < n_latent:
                raise ValueError(f"Row {item} does not exist: this generator has W+ rows 0-{n_latent - 1}.")
            rows.add(item)
            continue
        name = str(item).strip().lower()
        if name == "all":
            rows.update(range(n_latent))
        elif name.isdigit():
            rows.update(resolve_rows(int(name), n_latent))
        elif name in ROW_GROUPS:
            rows.update(r for r in ROW_GROUPS[name] if r < n_latent)
        else:
            raise ValueError(f"Unknown row group {item!r}: use {', '.join(ROW_GROUPS)} (or several joined by '+'), "
                             "or row numbers.")
    if not rows:
        raise ValueError(f"{spec!r} names no W+ row of this generator (it has rows 0-{n_latent - 1}: "
                         f"{describe_groups(n_latent)}).")
    return sorted(rows)


def describe_groups(n_latent: int) -> str:
    """The groups a generator with ``n_latent`` rows has, e.g. "coarse 0-5, medium 6-9" at 64 px."""
    parts = []
    for name, group in ROW_GROUPS.items():
        rows = [r for r in group if r < n_latent]
        if rows:
            parts.append(f"{name} {rows[0]}-{rows[-1]}" if len(rows) > 1 else f"{name} {rows[0]}")
    return ", ".join(parts)


def canonical_rows(spec: str | int | Iterable[int | str] | None) -> str | None:
    """One plain spelling of a rows spec, for settings, file metadata and cache keys: None for every row ("all",
    or coarse+medium+fine), else the groups in order then the other row numbers, joined by "+" ("coarse+medium",
    "medium+3", "0+1+2"; rows 0-5 become "coarse" and 6-10 "medium"). Checks the spelling, not a generator's range
    (:func:`resolve_rows` does); ValueError with words."""
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise ValueError(f"Rows are group names ({', '.join(ROW_GROUPS)}) or row numbers, got {spec!r}.")
    if isinstance(spec, str) and not spec.strip():
        raise ValueError(f"No rows named: use {', '.join(ROW_GROUPS)} (or several joined by '+'), all, or row "
                         "numbers.")
    items = spec.split("+") if isinstance(spec, str) else [spec] if isinstance(spec, int) else list(spec)
    groups: set[str] = set()
    numbers: set[int] = set()
    for item in items:
        name = item.strip().lower() if isinstance(item, str) else item
        if isinstance(name, bool) or not isinstance(name, (int, str)):
            raise ValueError(f"Rows are group names ({', '.join(ROW_GROUPS)}) or row numbers, got {item!r}.")
        if name == "":
            raise ValueError(f"{spec!r} has an empty part: join group names or row numbers with '+' "
                             "(e.g. coarse+medium or 0+1+2).")
        if isinstance(name, str) and name.removeprefix("-").isdigit():
            name = int(name)
        if isinstance(name, int):
            if name < 0:
                raise ValueError(f"Row {name} does not exist: W+ rows are numbered from 0.")
            numbers.add(name)
        elif name == "all":
            return None
        elif name in ROW_GROUPS:
            groups.add(name)
        else:
            raise ValueError(f"Unknown row group {item!r}: use {', '.join(ROW_GROUPS)} (or several joined by '+'), "
                             "all, or row numbers.")
    if not groups and not numbers:
        raise ValueError(f"{spec!r} names no W+ row: use {', '.join(ROW_GROUPS)}, all, or row numbers.")
    for name in ("coarse", "medium"):  # whole fixed groups by number: named (fine's extent depends on the generator)
        if set(ROW_GROUPS[name]) <= numbers:
            groups.add(name)
    numbers = {n for n in numbers if not any(n in ROW_GROUPS[g] for g in groups - {"fine"})}  # fine: range unknown
    if groups == set(ROW_GROUPS):
        return None
    return "+".join([g for g in ROW_GROUPS if g in groups] + [str(n) for n in sorted(numbers)])


def rows_label(spec: str | int | Iterable[int | str] | None) -> str:
    """A rows spec in words: "every row", "coarse+medium rows", "rows 0+1+2"."""
    canon = canonical_rows(spec)
    if canon is None:
        return "every row"
    return f"{canon} rows" if all(part in ROW_GROUPS for part in canon.split("+")) else f"rows {canon}"
