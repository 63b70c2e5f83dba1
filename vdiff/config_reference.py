"""The config reference page, docs/reference/configs.md, generated from the comments in configs/.

    python -m vdiff.config_reference            # (re)write the page
    python -m vdiff.config_reference --check    # exit 1 when the committed page differs from what it would be

Each group folder under configs/ gets a section, each option its header comment (the leading comment
block's first sentence) and a table of its keys, dotted for nested ones, with the value as written and
the key's trailing comment (or the comment lines just above it). train.yaml and sample.yaml come first;
the proof presets (configs/proof/<device>/) get a short list at the end.

Hand-written because Hydra composes configs but keeps no comments, and no reference generator reads
them; the comments are the documentation of the options, so the page is built from them, line by line:
yaml.safe_load checks each file and gives block scalars, a regex finds the keys and their comments.
"""

import argparse
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
PAGE = os.path.join(ROOT, "docs", "reference", "configs.md")
TOP_LEVEL = ("train.yaml", "sample.yaml")

KEY = re.compile(r"^( *)([\w@/.$-]+|\"[^\"]*\"|'[^']*'):(?:\s+(.*))?$")
ITEM = re.compile(r"^( *)- +(.*)$")
SENTENCE_END = re.compile(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z]|python )")
MAX_VALUE = 60
SELF_EXPLAINED = ("_target_", "_partial_")  # explained once at the top of the page


def split_comment(text: str) -> tuple[str, str]:
    """`value   # comment` -> (value, comment); a `#` inside a quoted value is not a comment."""
    start = 0
    if text.startswith(("'", '"')):
        start = max(text.find(text[0], 1), 0)
    m = re.compile(r"(^|\s)#").search(text, start)
    if not m:
        return text.strip(), ""
    return text[: m.start()].strip(), text[m.end() :].strip()


def parse(path: str) -> dict:
    """{header: [lines], package, rows: [(key, value, comment, kind)]} of one YAML file; kind is leaf, map
    (a key holding a mapping or list) or item (a list entry, whose key is the list's)."""
    with open(path) as f:
        text = f.read()
    data = yaml.safe_load(text)  # a file that does not load is an error here, not a broken table
    lines = text.splitlines()
    header, package, i = [], None, 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        line = lines[i].lstrip()[1:]
        if line.strip().startswith("@package"):
            package = line.split()[1]
        else:
            header.append(line[1:] if line.startswith(" ") else line)
        i += 1
    rows, stack, above, block = [], [], [], None
    for line in lines[i:]:
        indent = len(line) - len(line.lstrip())
        if block is not None and (not line.strip() or indent > block):
            continue  # inside a block scalar
        block = None
        if not line.strip():
            above = []
        elif line.lstrip().startswith("#"):
            above.append(line.lstrip()[1:].strip())
        elif m := ITEM.match(line):
            while stack and stack[-1][0] > indent:
                stack.pop()
            value, comment = split_comment(m.group(2))
            rows.append((".".join(k for _, k in stack), value, comment, "item"))
            above = []
        elif m := KEY.match(line):
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = m.group(2).strip("\"'")
            value, comment = split_comment(m.group(3) or "")
            comment = comment or " ".join(above)
            above = []
            keys = [k for _, k in stack] + [key]
            if value.startswith(("|", ">")):
                block = indent
                loaded = data
                for k in keys:
                    loaded = loaded.get(k) if isinstance(loaded, dict) else None
                value = str(loaded).splitlines()[0] + " …" if loaded else value
            rows.append((".".join(keys), value, comment, "leaf" if value else "map"))
            if value == "":
                stack.append((indent, key))
    return {"header": header, "package": package, "rows": rows}


def first_sentence(header: list[str]) -> str:
    """The header's first sentence, from its prose lines (up to an indented example or a `- ` list); a
    header that starts with a command line is that command."""
    if header and header[0].startswith("python "):
        return f"`{split_comment(header[0])[0]}`"
    prose = []
    for line in header:
        if line.startswith((" ", "- ")) and prose:
            break
        prose.append(line.strip())
    text = " ".join(prose).strip()
    m = SENTENCE_END.search(text)
    text = text[: m.start() + 1] if m else text
    return text[:-1] + "." if text.endswith(":") else text


def md(text: str) -> str:
    """Escape text for a markdown table cell, leaving its `code spans` as they are."""
    parts = re.split(r"(`[^`]*`)", text)
    for j in range(0, len(parts), 2):
        p = parts[j].replace("<", "&lt;")
        parts[j] = re.sub(r"(?<!\w)([_*])|([_*])(?!\w)", lambda m: "\\" + m.group(0), p)
    return "".join(parts).replace("|", "\\|")


def code(value: str) -> str:
    if len(value) > MAX_VALUE:
        value = value[: MAX_VALUE - 1] + "…"
    value = f"`` {value} ``" if "`" in value else f"`{value}`"  # a value holding backticks needs a longer fence
    return value.replace("|", "\\|") if value != "``" else ""


def option(title: str, path: str, stats: dict) -> list[str]:
    """An option's section: its heading, the first sentence of its header comment and its table of keys."""
    doc = parse(path)
    out = [f"### {title}", ""]
    about = first_sentence(doc["header"])
    if doc["package"] == "_global_":
        about += " Its keys are paths from the config's root (`@package _global_`)."
    elif doc["package"]:
        about += f" Its keys go under `{doc['package']}` (`@package {doc['package']}`)."
    if about.strip():
        out += [md(about.strip()), ""]
    rows = [r for r in doc["rows"] if r[3] != "map" or r[2]]
    if rows:
        out += ["| key | value | meaning |", "| --- | --- | --- |"]
        for key, value, comment, kind in rows:
            out.append(f"| `{key}` | {code(value)} | {md(comment)} |")
            if kind == "leaf" and key.rpartition(".")[2] not in SELF_EXPLAINED:
                stats["commented" if comment else "uncommented"].append(f"{os.path.relpath(path, CONFIGS)}: {key}")
        out.append("")
    return out


def yaml_files(folder: str) -> list[str]:
    """The .yaml files under folder, as paths relative to it, sorted."""
    found = []
    for parent, _, names in os.walk(folder):
        found += [os.path.relpath(os.path.join(parent, n), folder) for n in names if n.endswith(".yaml")]
    return sorted(found, key=lambda p: (p.count(os.sep), p))


def generate(configs: str = CONFIGS, stats: dict | None = None) -> str:
    """The page's text."""
    stats = {"commented": [], "uncommented": []} if stats is None else stats
    out = [
        "# Config reference",
        "",
        "Every config group under `configs/` and its options (`python train.py <group>=<option>`), with the",
        "meaning of each key as the YAML files' comments give it. Generated by `python -m vdiff.config_reference`",
        "from those comments: edit a comment there, then regenerate this page (a test fails while it is stale).",
        "",
        "`_target_` names the class Hydra instantiates, `_partial_: true` makes it a factory the code completes",
        "(an optimizer awaiting the parameters), and `${...}` values are interpolations of other keys.",
        "A `defaults` row is an entry of the option's defaults list: the configs it is composed from.",
        "",
        "## Top-level configs",
        "",
    ]
    for name in TOP_LEVEL:
        out += option(name, os.path.join(configs, name), stats)
    groups = sorted(g for g in os.listdir(configs) if os.path.isdir(os.path.join(configs, g)) and g != "proof")
    for group in groups:
        out += [f"## {group}", ""]
        for rel in yaml_files(os.path.join(configs, group)):
            sub, name = os.path.split(rel[: -len(".yaml")])
            out += option(
                f"{'/'.join([group, sub] if sub else [group])}={name}", os.path.join(configs, group, rel), stats
            )
    proof = os.path.join(configs, "proof")
    if os.path.isdir(proof):
        out += [
            "## proof presets",
            "",
            "Not a config group: the recipes `python -m vdiff.proof` trains and evaluates (vdiff/proof/presets.py).",
            "",
        ]
        for rel in yaml_files(proof):
            doc = parse(os.path.join(proof, rel))
            out.append(f"- `proof/{rel[: -len('.yaml')]}`: {md(first_sentence(doc['header']))}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the page is not what it would be generated as")
    p.add_argument("--page", default=PAGE, help="the page (default docs/reference/configs.md)")
    args = p.parse_args(argv)
    stats = {"commented": [], "uncommented": []}
    text = generate(stats=stats)
    if args.check:
        current = None
        if os.path.exists(args.page):
            with open(args.page) as f:
                current = f.read()
        if current != text:
            name = os.path.relpath(args.page, ROOT) if args.page.startswith(ROOT + os.sep) else args.page
            print(f"{name} is stale: regenerate it with python -m vdiff.config_reference", file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.page)), exist_ok=True)
    with open(args.page, "w") as f:
        f.write(text)
    n, missing = len(stats["commented"]) + len(stats["uncommented"]), stats["uncommented"]
    print(f"wrote {args.page}: {n} keys, {len(missing)} without a comment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
