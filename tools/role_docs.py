#!/usr/bin/env python3
"""Keep each role README's variables table in sync with meta/argument_specs.yml.

    python3 tools/role_docs.py          # rewrite the tables
    python3 tools/role_docs.py --check  # exit 1 if a README is out of date

The table sits between ``<!-- BEGIN VARIABLES -->`` and
``<!-- END VARIABLES -->``; everything else in the README is hand-written.
Suboptions (the fields of ``emperor_apps``) get a table of their own.  An
internal role with no ``main`` entry point (``corerouter``) gets a table per
entry point (``tasks_from``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Dict, List, Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- BEGIN VARIABLES -->", "<!-- END VARIABLES -->"


def plain(text: Any) -> str:
    """Ansible doc markup (C(x), O(x), V(x), I(x)...) to Markdown, on one line."""
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    text = str(text or "")
    text = re.sub(r"\b[COVIRP]\(([^)]*)\)", r"`\1`", text)
    text = re.sub(r"\bL\(([^,]*),([^)]*)\)", r"[\1](\2)", text)
    return " ".join(text.split()).replace("|", "\\|")


def default_of(spec: Dict[str, Any], templated: Any = None) -> str:
    """The spec's default, or the templated one of defaults/main.yml (a typed option's spec leaves it out)."""
    if "default" not in spec and templated is None:
        return "required" if spec.get("required") else ""
    value = spec.get("default", templated)
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = value if isinstance(value, str) else \
        yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().replace("...", "").strip()
    return "`%s`" % text.replace("|", "\\|")


def type_of(spec: Dict[str, Any]) -> str:
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = "list of %s" % spec["elements"]
    if spec.get("choices"):
        kind += " (%s)" % ", ".join(str(c) for c in spec["choices"])
    return kind


def table(options: Dict[str, Any], prefix: str = "", defaults: Optional[Dict[str, Any]] = None) -> List[str]:
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    nested = []
    for name, spec in options.items():
        value = (defaults or {}).get(name)
        templated = value if isinstance(value, str) and "{{" in value else None
        lines.append("| `%s%s` | %s | %s | %s |" % (prefix, name, type_of(spec), default_of(spec, templated),
                                                    plain(spec.get("description"))))
        if spec.get("options"):
            nested.append((name, spec))
    for name, spec in nested:
        lines += ["", "Fields of each item of `%s%s`:" % (prefix, name), ""]
        lines += table(spec["options"], "")
    return lines


def render(role_dir: str) -> str:
    with open(os.path.join(role_dir, "meta", "argument_specs.yml")) as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    defaults_file = os.path.join(role_dir, "defaults", "main.yml")
    defaults = {}
    if os.path.exists(defaults_file):
        with open(defaults_file) as handle:
            defaults = yaml.safe_load(handle) or {}
    lines = [BEGIN, "<!-- Generated from meta/argument_specs.yml by tools/role_docs.py. -->", ""]
    if "main" in specs:
        lines += table(specs["main"]["options"], defaults=defaults)
    else:
        for entry, spec in specs.items():
            lines += ["### `tasks_from: %s`" % entry, "", plain(spec.get("short_description")), ""]
            lines += table(spec.get("options") or {}, defaults=defaults) + [""]
        lines.pop()
    return "\n".join(lines + ["", END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a README is out of date")
    args = parser.parse_args()
    stale = []
    roles = os.path.join(ROOT, "roles")
    for role in sorted(os.listdir(roles)):
        role_dir = os.path.join(roles, role)
        readme = os.path.join(role_dir, "README.md")
        if not os.path.exists(os.path.join(role_dir, "meta", "argument_specs.yml")):
            continue
        if not os.path.exists(readme):
            stale.append("%s: no README.md" % role)
            continue
        with open(readme) as handle:
            text = handle.read()
        if BEGIN not in text or END not in text:
            stale.append("%s: README.md has no %s ... %s block" % (role, BEGIN, END))
            continue
        start, end = text.index(BEGIN), text.index(END) + len(END)
        new = text[:start] + render(role_dir) + text[end:]
        if new != text:
            stale.append("%s: README.md variables table is out of date" % role)
            if not args.check:
                with open(readme, "w") as handle:
                    handle.write(new)
    if args.check and stale:
        print("\n".join(stale) + "\nrun: python3 tools/role_docs.py", file=sys.stderr)
        return 1
    for line in stale:
        print("updated " + line.split(":")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
