#!/usr/bin/env python3
"""Fails if any crate under host/ (or wasm/) has an import cycle among its modules.

A module is one source file. There is an edge a -> b when file a names an item of file b
through a path (`crate::x::y`, `super::y`, `self::y`), in a `use` or inline. The module tree
itself is not a dependency: a parent's `mod child;` and its `pub use child::Item;`
re-exports are not edges, so the usual `mod.rs` re-exporting its children while they use
its shared items is fine. Test modules (`#[cfg(test)] mod tests`) are ignored.

Usage: tests/module_cycles.py [crate dirs...]   (default: every crate under host/ and wasm/)
Exit status 1 with the cycles printed, 0 when there are none.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def strip(text):
    """Removes comments, strings and `#[cfg(test)]` modules (good enough for our code)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def module_files(src):
    """Maps module path tuples (() = crate root) to files."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                key = ()
            elif rel[-1] == "mod":
                key = tuple(rel[:-1])
            else:
                key = tuple(rel)
            if rel[0] == "bin":
                continue
            mods[key] = os.path.join(dirpath, f)
    return mods


def resolve(mods, base, segments):
    """The longest module prefix of base + segments that is a file."""
    path = list(base)
    for s in segments:
        if s == "super":
            path = path[:-1]
        else:
            path.append(s)
    while path and tuple(path) not in mods:
        path.pop()
    return tuple(path)


def edges_of(mods, key, text):
    out = set()
    refs = []
    for m in USE_GROUP_RE.finditer(text):
        head = [m.group(1)] + [s for s in m.group(2).split("::") if s]
        for item in re.split(r"[,\s]+", re.sub(r"\{[^}]*\}", "", m.group(3))):
            if item and item not in ("self",):
                refs.append((m.start(), head + [item.split("::")[0]]))
    text_wo_groups = USE_GROUP_RE.sub("", text)
    for m in PATH_RE.finditer(text_wo_groups):
        refs.append((m.start(), [m.group(1)] + [s for s in m.group(2).split("::") if s]))
    reexports = set()
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)::", text):
        reexports.add(m.group(1))
    for _, segs in refs:
        kind, rest = segs[0], segs[1:]
        if kind == "crate":
            base, path = (), rest
        elif kind == "self":
            base, path = key, rest
        else:  # super
            base, path = key, ["super"] + rest
            while path and path[0] == "super" and len(path) > 1 and path[1] == "super":
                base, path = base[:-1], path[1:]
        target = resolve(mods, base, path)
        if target == key:
            continue
        # A parent naming its own child (module tree, re-export) is not a dependency.
        if target[: len(key)] == key and len(target) == len(key) + 1 and target[-1] in reexports:
            continue
        out.add(target)
    # Plain `pub use child::X` / `use child::X` inside a module refers to its children.
    for m in re.finditer(r"\buse\s+([a-z_][a-z0-9_]*)::", text):
        child = key + (m.group(1),)
        if child in mods and m.group(1) not in reexports:
            out.add(child)
    return out


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def check(crate_dir):
    src = os.path.join(crate_dir, "src")
    mods = module_files(src)
    graph = {}
    for key, path in mods.items():
        with open(path, encoding="utf-8") as f:
            graph[key] = edges_of(mods, key, strip(f.read()))
    return cycles(graph)


def main():
    dirs = sys.argv[1:] or sorted(
        os.path.join(ROOT, d, c)
        for d in ("host",)
        for c in os.listdir(os.path.join(ROOT, d))
        if os.path.isdir(os.path.join(ROOT, d, c, "src"))
    ) + [os.path.join(ROOT, "wasm")]
    bad = 0
    for d in dirs:
        for comp in check(d):
            bad += 1
            names = ", ".join("::".join(k) or "(root)" for k in sorted(comp))
            print(f"import cycle in {os.path.relpath(d, ROOT)}: {names}")
    if bad:
        sys.exit(1)
    print(f"no import cycles in {len(dirs)} crates")


if __name__ == "__main__":
    main()
