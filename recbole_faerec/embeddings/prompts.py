"""Item prompts: the text embedded for each item, built from the ``.item`` atomic file.

The default template is the paper's (§4.1, "LLM Embedding Layer"), as the authors' code writes it
(``reference-faerec.md``, "Item text")::

    The <category> item has following attributes: \\n name is <name>; brand is <brand>; price is <price>. \\n
    The item has following features: <features>. \\n
    The item has following descriptions: <description>. \\n

A missing attribute reads "unknown"; the features line is left out when the item has no features
and cut at 2,048 characters; the whole prompt is cut at 4,095 characters. Which ``.item`` field
fills each slot (``name``, ``brand``, ``price``, ``features``, ``description``) and the category
word are per-dataset settings (``props/dataset/*.yaml``). Any other template is a Python format
string over the ``.item`` fields, e.g. ``"{movie_title} ({release_year}): {class}"``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import string
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from recbole_faerec.data.atomic import AtomicFileError, read_header
from recbole_faerec.settings import config_value, default, setting

PAPER = "paper"
SLOTS = ("name", "brand", "price", "features", "description")
#: which .item field fills each slot by default (``llm_prompt_fields`` in props/overall.yaml)
DEFAULT_FIELDS = dict(default("llm_prompt_fields"))
FEATURES_CAP = 2048
PROMPT_CAP = 4095
UNKNOWN = "unknown"


@dataclass
class PromptSettings:
    """How item prompts are made: template (``"paper"`` or a format string), category, slots."""

    template: str = PAPER
    category: str = "item"
    fields: Dict[str, Optional[str]] = field(default_factory=lambda: dict(DEFAULT_FIELDS))

    @classmethod
    def from_config(cls, config: Mapping) -> "PromptSettings":
        """From RecBole-style settings ``llm_prompt_template``/``_category``/``_fields``."""
        fields = dict(DEFAULT_FIELDS)
        fields.update(config_value(config, "llm_prompt_fields") or {})
        unknown = set(fields) - set(SLOTS)
        if unknown:
            raise ValueError(f"llm_prompt_fields: unknown slot(s) {sorted(unknown)}; slots are {SLOTS}")
        return cls(template=setting(config, "llm_prompt_template"),
                   category=setting(config, "llm_prompt_category"), fields=fields)

    def signature(self) -> Dict:
        """What the manifest records: a change here means every prompt changes."""
        return {"template": self.template, "category": self.category, "fields": self.fields}


def _clip(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap]


def paper_prompt(values: Mapping[str, str], settings: PromptSettings) -> str:
    """The paper's prompt for one item; ``values`` maps ``.item`` field -> text ('' = missing)."""

    def slot(name: str) -> str:
        source = settings.fields.get(name)
        return (values.get(source) or "").strip() if source else ""

    attributes = (
        f"The {settings.category} item has following attributes: \n "
        f"name is {slot('name') or UNKNOWN}; brand is {slot('brand') or UNKNOWN}; "
        f"price is {slot('price') or UNKNOWN}. \n"
    )
    features = slot("features")
    feature_line = (
        _clip(f"The item has following features: {features}. \n", FEATURES_CAP) if features else ""
    )
    description = f"The item has following descriptions: {slot('description') or UNKNOWN}. \n"
    return _clip(attributes + feature_line + description, PROMPT_CAP)


def format_prompt(values: Mapping[str, str], settings: PromptSettings) -> str:
    """Prompt from a user's format string; a missing field reads "unknown"."""
    filled = {k: (v.strip() or UNKNOWN) for k, v in values.items()}
    return _clip(settings.template.format(**filled), PROMPT_CAP)


def template_fields(template: str) -> List[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def read_item_texts(item_path: str, iid_field: str = "item_id", sep: str = "\t",
                    encoding: str = "utf-8") -> Tuple[List[str], List[Dict[str, str]], List[str]]:
    """``(tokens, values, text_fields)`` of an ``.item`` file: raw text of every non-id field.

    Parsed the way RecBole's pandas reader does (tab-separated, ``"``-quoted fields allowed), so
    the text is exactly what the atomic file holds.
    """
    header = read_header(item_path, sep, encoding)
    names = [name for name, _ in header]
    if iid_field not in names:
        raise AtomicFileError(f"{item_path}: the header has no '{iid_field}' field ({', '.join(names)})")
    text_fields = [name for name, ftype in header if name != iid_field]
    tokens: List[str] = []
    values: List[Dict[str, str]] = []
    seen: Dict[str, int] = {}
    with open(item_path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=sep, quotechar='"')
        next(reader)
        for row in reader:
            lineno = reader.line_num
            if not row:
                continue
            if len(row) != len(names):
                raise AtomicFileError(
                    f"{item_path}, line {lineno}: {len(row)} fields, but the header has {len(names)}"
                )
            record = dict(zip(names, row))
            token = record.pop(iid_field)
            if token in seen:
                raise AtomicFileError(
                    f"{item_path}, line {lineno}: item '{token}' already has a row (line {seen[token]})"
                )
            seen[token] = lineno
            tokens.append(token)
            values.append(record)
    return tokens, values, text_fields


def build_prompts(item_path: str, settings: PromptSettings, iid_field: str = "item_id",
                  sep: str = "\t", encoding: str = "utf-8"):
    """``(tokens, prompts, empty)`` for every row of ``item_path``; ``empty`` lists the items
    whose prompt fields are all empty (they get the template with "unknown")."""
    tokens, values, text_fields = read_item_texts(item_path, iid_field, sep, encoding)
    if settings.template == PAPER:
        used = [f for f in settings.fields.values() if f]
        missing = [f for f in used if f not in text_fields]
        # A slot whose field the dataset lacks is simply "unknown" (e.g. no brand in ml-100k), but
        # a template that uses none of the file's fields is a mistake.
        if used and len(missing) == len(used):
            raise AtomicFileError(
                f"{item_path}: none of the prompt fields {used} is in the file (it has "
                f"{', '.join(text_fields) or 'no text fields'}); set llm_prompt_fields"
            )
        used = [f for f in used if f in text_fields]
        make = paper_prompt
    else:
        used = template_fields(settings.template)
        missing = [f for f in used if f not in text_fields]
        if missing:
            raise AtomicFileError(
                f"{item_path}: the prompt template uses {missing}, which the file does not have "
                f"(it has {', '.join(text_fields)})"
            )
        make = format_prompt
    prompts = [make(v, settings) for v in values]
    empty = [t for t, v in zip(tokens, values) if not any((v.get(f) or "").strip() for f in used)]
    return tokens, prompts, empty


def text_hash(prompt: str) -> str:
    """Short, stable hash of one prompt (the manifest's per-item record)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def write_prompts(path: str, tokens: List[str], prompts: List[str]) -> None:
    """The exact text embedded per item, one JSON line each (``--dry-run``)."""
    import json

    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for token, prompt in zip(tokens, prompts):
            f.write(json.dumps({"item_id": token, "prompt": prompt}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
