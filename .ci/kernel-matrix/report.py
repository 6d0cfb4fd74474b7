#!/usr/bin/env python3
"""Reads the kernel matrix's results (see run.sh) and prints them.

Usage:
  report.py executables BUILD_JSON    the test executables and examples of
                                      `cargo test --no-run --message-format=json`
                                      as NAME<TAB>PATH lines
  report.py kernel DIR                one kernel's results; exit status 1
                                      when a test failed there
  report.py table DIR...              the per-kernel table, as text
  report.py readme DIR...             the kernel support table, as markdown
  report.py update-readme README DIR...
                                      replaces the table between the
                                      kernel-matrix markers in README

DIR is one kernel's results directory ($KMATRIX_CACHE/results/<kernel>).
"""

import json
import os
import re
import sys

MODES = ("libc", "library")
MODE_TITLE = {"libc": "glibc-owned", "library": "library-owned"}
BEGIN = "<!-- kernel-matrix table: begin -->"
END = "<!-- kernel-matrix table: end -->"
RESULT = re.compile(
    r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;"
)
FAILED_TEST = re.compile(r"^test (\S+) \.\.\. FAILED$")


def executables(build_json):
    """NAME<TAB>PATH for every test executable and example cargo built."""
    rows = []
    with open(build_json) as f:
        for line in f:
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
                continue
            target = msg["target"]
            if msg["profile"]["test"]:
                name = target["name"] if "test" in target["kind"] else "lib"
            elif "example" in target["kind"]:
                name = "example:" + target["name"]
            else:
                continue
            rows.append((name, msg["executable"]))
    if not any(not n.startswith("example:") for n, _ in rows):
        sys.exit("no test executable in " + build_json)
    for name, path in sorted(rows):
        print(f"{name}\t{path}")


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


def info(text):
    """rseq_info's 'key : value' lines as a dict (the report's lines, `key: value`
    with the key padded, and the raw values' `key : value`)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" ") and key.strip():
            out.setdefault(key.strip(), value.strip())
    return out


def number(value):
    """The leading integer of an rseq_info value, or None."""
    m = re.match(r"-?\d+", value or "")
    return int(m.group()) if m else None


class Kernel:
    """One kernel's results: one directory, or several runs of the same
    kernel (each with some executables or modes) read as one."""

    def __init__(self, paths):
        self.paths = paths
        path = paths[0]
        self.spec = os.path.basename(os.path.normpath(path))
        package = read(os.path.join(path, "package")).split("\t")
        self.package = package[0] if package else ""
        self.version = package[1] if len(package) > 1 else ""
        self.accel = package[2].strip() if len(package) > 2 else ""
        self.release = read(os.path.join(path, "uname"), "?").strip()
        self.wall = sum(number(read(os.path.join(p, "wall_seconds"))) or 0 for p in paths)
        self.libc = read(os.path.join(path, "libc"), "?").strip()
        auxv = dict(
            line.split() for line in read(os.path.join(path, "auxv")).splitlines()
        )
        self.feature_size = int(auxv.get("AT_RSEQ_FEATURE_SIZE", -1))
        self.align = int(auxv.get("AT_RSEQ_ALIGN", -1))
        self.info = {}
        self.modes = {}
        for mode in MODES:
            ran = [p for p in paths
                   if mode in read(os.path.join(p, "modes"), " ".join(MODES)).split()]
            if ran:
                self.info[mode] = info(read(os.path.join(ran[-1], f"info-{mode}.txt")))
                self.modes[mode] = self._mode(mode, ran)

    @staticmethod
    def _mode(mode, paths):
        """Counts of one mode over its runs: passed, failed, ignored, the
        failures. A later run of an executable replaces an earlier one."""
        counts = {"passed": 0, "failed": 0, "ignored": 0, "failures": []}
        runs, expected = {}, []
        for path in paths:
            for line in read(os.path.join(path, "tests.tsv")).splitlines():
                if line and line.split("\t")[0] not in expected:
                    expected.append(line.split("\t")[0])
            for line in read(os.path.join(path, f"status-{mode}.tsv")).splitlines():
                name, rc, _seconds = line.split("\t")
                runs[name] = (rc, read(os.path.join(path, f"test-{mode}-{name}.txt")))
        for name in expected:
            if name not in runs:
                counts["failed"] += 1
                counts["failures"].append(f"{name}: not finished")
                continue
            rc, text = runs[name]
            results = [r for r in map(RESULT.match, text.splitlines()) if r]
            for r in results:
                counts["passed"] += int(r.group(1))
                counts["failed"] += int(r.group(2))
                counts["ignored"] += int(r.group(3))
            failed = [m.group(1) for m in map(FAILED_TEST.match, text.splitlines()) if m]
            counts["failures"] += [f"{name}: {t}" for t in failed]
            if (rc != "0" or not results) and (not results or not failed):
                # A crash, a timeout (124) or an executable that printed no
                # result: the executable itself counts as one failure.
                counts["failed"] += 1
                why = "timed out" if rc == "124" else f"exit status {rc}"
                counts["failures"].append(f"{name}: {why}")
        return counts

    def ok(self):
        return all(c["failed"] == 0 for c in self.modes.values())

    def cell(self, mode):
        c = self.modes.get(mode)
        if c is None:
            return "not run"
        return f"{c['passed']} passed, {c['failed']} failed"

    def owner(self, mode):
        return self.info.get(mode, {}).get("owner", "?").split(" ")[0]

    def fact(self, mode, key):
        return self.info.get(mode, {}).get(key, "")

    def sort_key(self):
        return [int(x) for x in re.findall(r"\d+", self.spec)]


def print_kernel(k):
    print(f"kernel {k.release} ({k.package} {k.version}, {k.accel}), {k.wall} s")
    print(f"  AT_RSEQ_FEATURE_SIZE {k.feature_size}, AT_RSEQ_ALIGN {k.align}")
    for mode, c in k.modes.items():
        print(
            f"  {MODE_TITLE[mode]:14}: owner {k.owner(mode)}, "
            f"{c['passed']} passed, {c['failed']} failed, {c['ignored']} ignored"
        )
        for f in c["failures"]:
            print(f"    FAILED {f}")
    return 0 if k.ok() else 1


def text_table(kernels):
    head = ["kernel", "release", "glibc-owned", "library-owned", "feature size",
            "align", "owner (glibc)", "owner (library)", "wall"]
    rows = [head]
    for k in kernels:
        rows.append([
            k.spec,
            k.release,
            k.cell("libc"),
            k.cell("library"),
            str(k.feature_size),
            str(k.align),
            k.owner("libc"),
            k.owner("library"),
            f"{k.wall} s",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    total_pass = sum(c["passed"] for k in kernels for c in k.modes.values())
    total_fail = sum(c["failed"] for k in kernels for c in k.modes.values())
    print(f"kernel-matrix: {total_pass} passed, {total_fail} failed")


def yes_no(flag):
    return "yes" if flag else "no"


def features(k):
    """What works on kernel k, each as (row title, cell, works)."""
    rows = []
    for mode in MODES:
        c = k.modes.get(mode)
        if c is None:
            cell = "not run"
        elif c["failed"] == 0:
            cell = f"{c['passed']} passed"
        else:
            cell = f"{c['passed']} passed, {c['failed']} failed"
        rows.append((f"test suite, {MODE_TITLE[mode]} mode", cell,
                     c is not None and c["failed"] == 0))
    in_use = all(k.fact(m, "sections here") == "yes"
                 or k.fact(m, "rseq in use here") == "true" for m in MODES)
    rows.append(("rseq CPU read and critical sections", yes_no(in_use), in_use))
    owners = f"{k.owner('libc')} / {k.owner('library')}"
    rows.append(("owner (glibc-owned / library-owned mode)", owners,
                 owners == "libc / library"))
    rows.append(("AT_RSEQ_FEATURE_SIZE / AT_RSEQ_ALIGN",
                 f"{k.feature_size} / {k.align}", None))
    usable = number(k.fact("library", "feature size")
                    or k.fact("library", "usable feature size"))
    rows.append(("usable feature size (`feature_size()`)", str(usable), None))
    ids = all(k.fact(m, "node_id") not in ("", "not provided")
              and k.fact(m, "mm_cid") not in ("", "not provided") for m in MODES)
    rows.append(("`node_id()`, `mm_cid()`, sections indexed by mm_cid",
                 yes_no(ids), ids))
    fence = all((k.fact(m, "lock/stack cs") or k.fact(m, "lock/stack sections")).startswith("yes")
                for m in MODES)
    rows.append(("`PerCpuLock` / `PerCpuStack` in rseq sections (rseq membarrier)",
                 yes_no(fence), fence))
    return rows


def markdown(kernels):
    kernels = sorted(kernels, key=Kernel.sort_key)
    table = [features(k) for k in kernels]
    lines = []
    head = ["", "from"] + [k.version.split("-")[0] for k in kernels]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for i, (title, _cell, _works) in enumerate(table[0]):
        cells = [t[i][1] for t in table]
        works = [t[i][2] for t in table]
        if works[0] is None:
            since = ""
        else:
            # The oldest kernel from which it works on every newer one.
            since = "-"
            for j in range(len(kernels)):
                if all(works[j:]):
                    since = kernels[j].spec
                    break
        lines.append("| " + " | ".join([title, since] + cells) + " |")
    failures = [
        f"{k.spec} {MODE_TITLE[mode]}: " + "; ".join(c["failures"])
        for k in kernels
        for mode, c in k.modes.items()
        if c["failures"]
    ]
    if failures:
        lines.append("")
        lines.append("Failures and executables that did not finish:")
        lines.append("")
        lines += [f"- {f}" for f in failures]
    accel = "/".join(sorted({k.accel for k in kernels}))
    packages = ", ".join(f"`{k.package}` {k.version}" for k in kernels)
    lines.append("")
    lines.append(
        "*from*: the oldest kernel of the matrix from which the row holds on every "
        "newer one. Test counts are libtest's (each test executable once per mode, "
        "doc-tests not included); the feature rows are `rseq_info`'s, in both modes. "
        f"Booted under QEMU ({accel}), 2 vCPUs, x86_64, "
        f"{', '.join(sorted({k.libc for k in kernels}))}: {packages}."
    )
    return "\n".join(lines) + "\n"


def update_readme(readme, kernels):
    text = read(readme)
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"{readme} has no '{BEGIN}' ... '{END}' markers")
    new = text[: start + len(BEGIN)] + "\n" + markdown(kernels) + text[end:]
    with open(readme, "w") as f:
        f.write(new)


def load(dirs):
    """The kernels of the results directories DIRS, those of one kernel
    (the same last path component) read as one, in the order given."""
    groups = {}
    for d in dirs:
        groups.setdefault(os.path.basename(os.path.normpath(d)), []).append(d)
    return [Kernel(paths) for paths in groups.values()]


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "executables":
        executables(args[0])
        return 0
    if cmd == "kernel":
        return max(print_kernel(k) for k in load(args))
    if cmd == "table":
        text_table(load(args))
        return 0
    if cmd == "readme":
        sys.stdout.write(markdown(load(args)))
        return 0
    if cmd == "update-readme":
        update_readme(args[0], load(args[1:]))
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
