#!/usr/bin/env python3
"""Lists the public items of the rendered crate docs that show no example.

    cargo doc --no-deps && python3 .ci/doc_examples.py   # status 1 if any

It reads what a user reads: every item page rustdoc wrote under
target/doc/restartable/ (functions, types, traits, macros, constants,
statics) and, on type pages, every inherent method. An item has an example
when its doc block holds a code block. Trait implementations are skipped
(their docs are the trait's), and so are struct fields and enum variants.
Standard library only.
"""

import html
import os
import re
import sys

DOC = os.path.join("target", "doc", "restartable")
PAGE = re.compile(r"^(fn|struct|enum|trait|type|constant|static|macro|union)\.(.+)\.html$")
METHOD = re.compile(r'<section id="method\.(\w+)" class="method">')
HAS_CODE = re.compile(r'<pre class="rust|<div class="example-wrap')


def top_docblock(page):
    """The item's own doc block: the first one after the main heading."""
    start = page.find('<details class="toggle top-doc"')
    if start < 0:
        return ""
    end = page.find("</details>", start)
    return page[start:end]


def inherent_methods(page):
    """(name, doc block) of each method of the inherent impls."""
    start = page.find('id="implementations-list"')
    if start < 0:
        return []
    end = page.find('id="trait-implementations"', start)
    block = page[start : end if end > 0 else len(page)]
    out = []
    for m in METHOD.finditer(block):
        stop = block.find("</details>", m.end())
        doc = block[m.end() : stop if stop > 0 else len(block)]
        if "deprecated" in doc[:400] and "class=\"stab deprecated\"" in doc:
            continue
        out.append((m.group(1), doc))
    return out


def main():
    if not os.path.isdir(DOC):
        sys.exit(f"{DOC} is missing: run `cargo doc --no-deps` first")
    missing = []
    for root, _, files in os.walk(DOC):
        for name in sorted(files):
            m = PAGE.match(name)
            if not m or name.endswith("!.html"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                page = f.read()
            if "<title>Redirection</title>" in page or 'http-equiv="refresh"' in page:
                continue  # a redirect from a re-export's other path
            item = os.path.relpath(path, DOC)[: -len(".html")]
            if not HAS_CODE.search(top_docblock(page)):
                missing.append(item)
            for method, doc in inherent_methods(page):
                if not HAS_CODE.search(doc):
                    missing.append(f"{item}::{method}")
    for item in missing:
        print(html.unescape(item))
    print(f"{len(missing)} public item(s) without an example", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
