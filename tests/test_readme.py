"""The README and the pages of docs/ run as written, and cannot drift from the code.

README.md leads; the user guide, the evaluation protocol, the reproduction report, the
zoo and Hub, scaling and faults, and the architecture live in docs/*.md. "The pages"
below are README.md and docs/*.md (not the result folders under docs/reproduce/).

* Every fenced block of the pages preceded by `<!-- readme-test: digits -->` runs, on digits, in
  a temporary working folder whose `tools/` links to this repository's (so
  `python tools/train.py ...` works as typed and `runs/...` lands in the temporary
  folder). To keep it cheap (the whole file stays under 90 s on 2 shared cores):
  - bash blocks: `CHEAP_FLAGS[tool]` is appended to every command of that tool
    (absl lets a later flag override an earlier one, so the command itself is
    untouched);
  - Python blocks: the `PYTHON_SUBSTITUTIONS` below (fewer epochs and trials,
    fewer test images and attack steps, tiny or no sanity checks; the `quick`
    preset itself runs in the bash flow); each must apply somewhere, so an edit
    of the README that removes its target is noticed here.
  Each Python block runs in a fresh namespace: every snippet stands alone.
* Every Python block of the pages is marked runnable (no untested snippet).
* Every `--flag` the pages (and zoo/README.md) give a tool exists in that
  tool's `--helpfull`, and every other `--flag` they mention exists in some tool's.
* The tables that copy numbers equal their sources: the zoo status (README.md) the zoo
  entries; the Fashion-MNIST claims, collapse and variants studies and the reports
  beside them (docs/reproduction.md) docs/reproduce/fashion_mnist-<study>/; the dataset
  recipes (docs/guide.md) keras_sgn.recipes.
* Every relative link of the pages points to a file that exists, and to a heading
  of it that exists.
"""

import glob
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
# README.md first, then the pages of docs/ (the order their runnable blocks run in).
PAGES = [README] + sorted(glob.glob(os.path.join(DOCS, "*.md")))
MARKER = "<!-- readme-test: digits -->"
# Appended to each command of these tools in runnable bash blocks.
CHEAP_FLAGS = {
    "train.py": "--epochs=1 --n_train=128 --n_eval=32 --eval_steps=2 --test_steps=2 --verbose=0",
    "evaluate.py": ("--n_examples=32 --sanity_examples=8 --square_queries=10 --attacks=quick "
                    "--verbose=0"),
}
# (README text, cheap replacement) in runnable Python blocks; each must occur.
PYTHON_SUBSTITUTIONS = [
    ("epochs=30)", "epochs=1)"),
    ("epochs=15)", "epochs=1)"),
    ("max_trials=12,", "max_trials=1,"),
    ('attacks="quick")', 'attacks="apgd-ce:steps=5;apgd-t:steps=5", n_examples=32, '
     'n_sanity_examples=8, sanity_steps=2, square_queries=10)'),
    ('evaluate_pretrained("sgn-cnn-digits")',  # a robust model: APGD-T is costly on it
     'evaluate_pretrained("sgn-cnn-digits", n_examples=16, run_sanity_checks=False, '
     'attacks="apgd-ce:steps=5")'),
]
# What the README's flow writes (each name is also asserted to be in the README).
FLOW_RUN = "runs/digits-sgn"
FLOW_FILES = ["model.keras", "summary.json", "history.json", "training_curves.png",
              "config.json", "logs", "eval/report.json", "eval/report.md",
              "eval/accuracy_vs_epsilon.png", "eval/adversarial_examples.png",
              "hub/config.json", "hub/model.weights.h5", "hub/metadata.json", "hub/README.md"]
# `--flag` tokens of the README that are not keras-sgn tool flags, and why.
NOT_TOOL_FLAGS = {"flag": "the placeholder of '--flag=value'", "logdir": "tensorboard's own"}
FLAG = re.compile(r"(?<![\w-])--([A-Za-z_][A-Za-z0-9_]*)")
TOOL = re.compile(r"tools/(\w+\.py)")

# One process prints every tool's --helpfull (one TensorFlow start-up instead of
# seven): each tool runs as __main__ with --helpfull, then the flags it defined are
# deleted. (A flag defined by a module on its first import would show only in the
# first tool's help; keras-sgn defines none: every tool defines its own as it runs.)
HELP_ALL = textwrap.dedent("""
    import contextlib, io, json, os, runpy, sys
    from absl import app, flags
    app.define_help_flags()
    sys.path.insert(0, os.path.abspath("tools"))
    helps = {}
    for tool in sys.argv[1:]:
        before = set(flags.FLAGS)
        sys.argv = [tool, "--helpfull"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_path(tool, run_name="__main__")
            except SystemExit:
                pass
        helps[os.path.basename(tool)] = out.getvalue()
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
    print("HELP-JSON " + json.dumps(helps))
""")
# Runs each Python block file in a fresh namespace, in order.
RUN_BLOCKS = textwrap.dedent("""
    import runpy, sys, time
    for path in sys.argv[1:]:
        start = time.time()
        print("=== running", path, flush=True)
        runpy.run_path(path, run_name="__main__")
        print(f"=== {path}: {time.time() - start:.1f} s", flush=True)
""")


def _readme(path=README):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _page(name):
    """The text of docs/<name>."""
    return _readme(os.path.join(DOCS, name))


def _all_pages():
    """README.md and every docs/*.md, one text."""
    return "\n".join(_readme(path) for path in PAGES)


def _page_blocks():
    """[(page, language, code, runnable, line)] of the fenced blocks of every page."""
    return [(os.path.relpath(path, ROOT), *block) for path in PAGES
            for block in _blocks(_readme(path))]


def _blocks(text):
    """[(language, code, runnable, line)] of the fenced blocks."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = [line for line in lines[:start] if line.strip()]
        runnable = bool(before) and before[-1].strip() == MARKER
        blocks.append((language, textwrap.dedent("\n".join(lines[start + 1:end])), runnable,
                       start + 1))
        i = end + 1
    return blocks


def _logical_lines(code):
    """Shell lines with `\\` continuations joined."""
    return code.replace("\\\n", " ").splitlines()


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _workdir(path):
    path.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join(ROOT, "tools"), path / "tools")
    return path


class _Background:
    """A subprocess started now and collected later (its output in files)."""

    def __init__(self, args, cwd, name):
        self.out, self.err = cwd / f".{name}.out", cwd / f".{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(args, cwd=cwd, env=_env(), stdout=out, stderr=err)

    def result(self, timeout=600):
        returncode = self.process.wait(timeout=timeout)
        return returncode, self.out.read_text(), self.err.read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _cheap_bash(code):
    lines = []
    for line in _logical_lines(code):
        tool = TOOL.search(line)
        if tool and tool.group(1) in CHEAP_FLAGS:
            line = f"{line} {CHEAP_FLAGS[tool.group(1)]}"
        lines.append(line)
    return "\n".join(lines)


def _cheap_python(blocks):
    applied = {old: 0 for old, _ in PYTHON_SUBSTITUTIONS}
    cheap = []
    for code in blocks:
        for old, new in PYTHON_SUBSTITUTIONS:
            applied[old] += code.count(old)
            code = code.replace(old, new)
        cheap.append(code)
    unused = [old for old, count in applied.items() if not count]
    assert not unused, f"the pages no longer contain {unused}: update PYTHON_SUBSTITUTIONS"
    return cheap


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Starts the tool help and the Python blocks at once; each test collects its own."""
    blocks = [block for _, *block in _page_blocks()]
    started = {}
    help_dir = _workdir(tmp_path_factory.mktemp("help"))
    tools = sorted(f for f in os.listdir(os.path.join(ROOT, "tools"))
                   if f.endswith(".py") and f not in ("flags.py", "quiet_start.py"))
    started["help"] = _Background([sys.executable, "-c", HELP_ALL]
                                  + [f"tools/{t}" for t in tools], help_dir, "help")
    python_dir = _workdir(tmp_path_factory.mktemp("readme-python"))
    paths = []
    python_blocks = [code for language, code, runnable, _ in blocks
                     if runnable and language == "python"]
    for i, code in enumerate(_cheap_python(python_blocks)):
        path = python_dir / f"readme_block_{i}.py"
        path.write_text(code)
        paths.append(str(path))
    started["python"] = _Background([sys.executable, "-c", RUN_BLOCKS] + paths, python_dir,
                                    "python")
    yield {"dirs": {"python": python_dir}, **started}
    for job in started.values():
        job.stop()


@pytest.fixture(scope="module")
def bash_flow(tmp_path_factory):
    """The README's bash blocks run in order (train, evaluate, publish): a few minutes, so
    only the slow test that checks them starts it."""
    script = "\n".join(_cheap_bash(code) for _, language, code, runnable, _ in _page_blocks()
                       if runnable and language == "bash")
    folder = _workdir(tmp_path_factory.mktemp("readme-bash"))
    job = _Background(["bash", "-euo", "pipefail", "-c", script], folder, "bash")
    yield job, folder
    job.stop()


@pytest.fixture(scope="module")
def tool_flags(jobs):
    """{tool file: (flags, boolean flags)} parsed from each tool's --helpfull."""
    returncode, out, err = jobs["help"].result()
    assert returncode == 0, err[-3000:]
    helps = json.loads(out.split("HELP-JSON ", 1)[1])
    parsed = {}
    for tool, text in helps.items():
        assert "flags:" in text, f"{tool} --helpfull printed no flags: {text[-500:]}"
        names = re.findall(r"^\s+(?:-\S+,)?--(\[no\])?([A-Za-z_][A-Za-z0-9_]*)", text, re.M)
        parsed[tool] = ({name for _, name in names}, {name for no, name in names if no})
    return parsed


def _known(flag, flag_sets):
    names, booleans = flag_sets
    return flag in names or (flag.startswith("no") and flag[2:] in booleans)


def _tool_commands(text):
    """[(tool file, the command's text after it)] from fenced blocks and inline code."""
    commands = []
    pieces = [line for language, code, _, _ in _blocks(text) if language in ("bash", "")
              for line in _logical_lines(code)]
    pieces += re.findall(r"`([^`\n]*tools/\w+\.py[^`\n]*)`", text)
    for piece in pieces:
        piece = piece.split(" #", 1)[0]
        matches = list(TOOL.finditer(piece))
        for match, following in zip(matches, matches[1:] + [None]):
            end = following.start() if following else len(piece)
            commands.append((match.group(1), piece[match.end():end]))
    return commands


@pytest.mark.parametrize("readme", [README, os.path.join(ROOT, "zoo", "README.md")],
                         ids=["README.md and docs/*.md", "zoo/README.md"])
def test_every_tool_flag_in_the_readme_exists(tool_flags, readme):
    text = _all_pages() if readme == README else _readme(readme)
    commands = _tool_commands(text)
    assert len(commands) > (20 if readme == README else 3)
    wrong = []
    for tool, rest in commands:
        assert os.path.exists(os.path.join(ROOT, "tools", tool)), f"no tools/{tool}"
        if tool not in tool_flags:  # a module of the tools (flags.py), not a program
            assert not FLAG.findall(rest), f"tools/{tool} is not a program: {rest}"
            continue
        wrong += [f"tools/{tool} --{flag}" for flag in FLAG.findall(rest)
                  if not _known(flag, tool_flags[tool])]
    every_tool = (set().union(*(names for names, _ in tool_flags.values())),
                  set().union(*(booleans for _, booleans in tool_flags.values())))
    wrong += [f"--{flag} (in no tool)" for flag in set(FLAG.findall(text))
              if not _known(flag, every_tool) and flag not in NOT_TOOL_FLAGS]
    assert not wrong, f"flags named in {readme} that the tools do not have: {sorted(wrong)}"


def test_every_python_block_is_marked_runnable():
    blocks = _page_blocks()
    unmarked = [f"{page}:{line}" for page, language, _, runnable, line in blocks
                if language == "python" and not runnable]
    assert not unmarked, (f"Python blocks at {unmarked} are not marked "
                          f"{MARKER}: every Python snippet must run as written")
    assert any(language == "bash" and runnable for _, language, _, runnable, _ in blocks)
    # README.md leads with the flow that runs.
    assert any(language == "bash" and runnable for language, _, runnable, _ in _blocks(_readme()))


@pytest.mark.slow
def test_the_flow_runs_as_written_and_writes_what_the_readme_says(bash_flow):
    job, folder = bash_flow
    returncode, out, err = job.result()
    assert returncode == 0, f"{out[-2000:]}\n{err[-4000:]}"
    run = folder / FLOW_RUN
    missing = [name for name in FLOW_FILES if not (run / name).exists()]
    assert not missing, f"the README's flow did not write {missing}"
    text = _page("guide.md")  # the flow step by step, with every file it writes
    assert all(os.path.basename(name) in text for name in FLOW_FILES)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["protocol"]["suite"].startswith("quick")  # the README's headline rule
    assert [a["name"] for a in summary["protocol"]["attacks"]] == ["apgd-ce", "apgd-t"]
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["n_examples"] == 32 and 0 <= report["robust_accuracy"] <= 1
    assert "model-index" in (run / "hub" / "README.md").read_text()
    # Each tool ends with a line saying what it wrote where.
    assert f"wrote {FLOW_RUN}/model.keras" in out
    assert f"to {FLOW_RUN}/eval" in out
    assert f"to {FLOW_RUN}/hub" in out


@pytest.mark.slow  # end to end: a run of 20-60 s (make test-slow, which CI runs)
def test_the_python_snippets_run_as_written(jobs):
    returncode, out, err = jobs["python"].result()
    assert returncode == 0, f"{out[-3000:]}\n{err[-4000:]}"
    folder = jobs["dirs"]["python"]
    assert (folder / "sgn.keras").exists()  # the tour's model.save
    assert (folder / "runs" / "tune-digits-bayes" / "best_recipe.flags").exists()
    assert "sgn-cnn-digits" in out and "PGD-20 fooled" in out


def _first_table_lines(lines):
    """The lines of the first Markdown table among `lines`."""
    return list(itertools.takewhile(lambda line: line.startswith("|"),
                                    itertools.dropwhile(lambda line: not line.startswith("|"),
                                                        lines)))


def _table_after(text, marker):
    """The rows (lists of cells) of the first Markdown table after `marker`."""
    lines = _first_table_lines(text[text.index(marker):].splitlines()[1:])
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return rows[2:]  # after the header and its rule


def _table_lines_after(text, marker):
    """The Markdown table lines right after the line of `marker`."""
    after_marker = text[text.index(marker):].splitlines()[1:]
    return list(itertools.takewhile(lambda line: line.startswith("|"), after_marker))


def _percent(value):
    return "-" if value is None else f"{value:.1%}"


def test_the_zoo_status_table_equals_the_zoo_entries():
    entries_dir = os.path.join(ROOT, "keras_sgn", "zoo_entries")
    entries = {}
    for name in os.listdir(entries_dir):
        with open(os.path.join(entries_dir, name)) as f:
            entry = json.load(f)
        entries[entry["name"]] = entry
    rows = {row[0].strip("`"): row for row in _table_after(_readme(), "<!-- zoo-status")}
    assert set(rows) == set(entries), "one row per keras_sgn/zoo_entries/*.json"
    for name, entry in entries.items():
        metrics = entry.get("metrics") or {}
        row = rows[name]
        assert row[3:5] == [_percent(metrics.get("clean_accuracy")),
                            _percent(metrics.get("robust_accuracy"))], name
        assert row[6].startswith(entry["status"]), name
        if metrics:
            assert f"{metrics['n_examples']:,} test images" in row[5], name
            for attack in metrics["protocol"]["attacks"]:  # the protocol beside the number
                assert attack["name"].upper() in row[5].upper(), (name, attack["name"])


@pytest.mark.parametrize("study", ["claims", "collapse", "variants"])
def test_each_study_table_is_the_committed_one(study):
    path = os.path.join(ROOT, "docs", "reproduce", f"fashion_mnist-{study}", "results.md")
    with open(path) as f:
        committed = [line for line in f.read().splitlines() if line.startswith("|")]
    marker = f"<!-- fashion-mnist-{study}"
    report = _page("reproduction.md")
    assert marker in report, f"docs/reproduction.md has no {study} table (marker {marker!r})"
    table = _table_lines_after(report, marker)
    assert len(committed) > 2, "the committed results hold at least one method"
    assert table == committed, (f"docs/reproduction.md's {study} table differs from the "
                                "committed results.md")


_BUDGETS = os.path.join(ROOT, "docs", "reproduce", "fashion_mnist-budgets")


def test_the_budgets_front_in_the_readme_is_the_committed_one():
    """Each cell: the mean robust accuracy of results.json at that budget, and its seed
    count when more than one, or "-" while that cell has not run; every method of the
    study has a row."""
    with open(os.path.join(_BUDGETS, "results.json")) as f:
        fronts = json.load(f)["fronts"]
    readme = _readme()
    rows = _table_after(readme, "<!-- budgets-front")
    header = readme[readme.index("<!-- budgets-front"):].splitlines()[1]
    budgets = [int(cell.split()[0]) for cell in header.strip().strip("|").split("|")[1:]]
    methods = {row[0].split()[0].strip("`"): row[1:] for row in rows}
    assert set(methods) == set(fronts), "one row per method of the study"
    for method, cells in methods.items():
        by_budget = {point["budget_minutes"]: point for point in fronts[method]}
        for minutes, cell in zip(budgets, cells, strict=True):
            if minutes not in by_budget:
                assert cell == "-", (method, minutes, "not in results.json")
                continue
            point = by_budget[minutes]
            seeds = len(point["seeds"])
            expected = (f"{point['robust_accuracy']:.2%}"
                        + (f" ({seeds} seeds)" if seeds > 1 else ""))
            assert cell == expected, (method, minutes)


def test_the_budgets_table_of_the_report_is_the_committed_one():
    with open(os.path.join(_BUDGETS, "results.md")) as f:
        lines = f.read().splitlines()
    first_table = _first_table_lines(lines)
    table = _table_lines_after(_page("reproduction.md"), "<!-- fashion-mnist-budgets")
    assert len(first_table) > 2 and table == first_table


def _rows_with_reports(marker, folder):
    """[(row, method, seed, report)] of the table after `marker` in docs/reproduction.md,
    whose first cell "`method` seed N" names the report `folder/<method>-seed<N>/report.json`."""
    found = []
    for row in _table_after(_page("reproduction.md"), marker):
        method, seed = re.fullmatch(r"`(\S+)` seed (\d+)", row[0]).groups()
        with open(os.path.join(folder, f"{method}-seed{seed}", "report.json")) as f:
            found.append((row, method, int(seed), json.load(f)))
    return found


def test_the_attacks_alone_table_is_the_committed_reports():
    folder = os.path.join(ROOT, "docs", "reproduce", "fashion_mnist-collapse", "attacks-alone")
    rows = _rows_with_reports("<!-- attacks-alone", folder)
    assert len(rows) == 3
    for row, method, _, report in rows:
        assert report["protocol"]["per_attack"] == "alone", method  # each attack on its own
        attacks = ("fgsm", "pgd-ce:steps=20", "apgd-ce", "apgd-t")
        assert row[1:] == [f"{report['clean_accuracy']:.3f}"] + [
            f"{report['per_attack'][attack]:.3f}" for attack in attacks], method


def test_the_all_test_images_table_is_the_committed_reports():
    claims = os.path.join(ROOT, "docs", "reproduce", "fashion_mnist-claims")
    runs = {}
    for study in ("claims", "variants"):  # the runs of both share one folder
        path = os.path.join(ROOT, "docs", "reproduce", f"fashion_mnist-{study}", "results.json")
        with open(path) as f:
            runs.update({(r["method"], r["seed"]): r for r in json.load(f)["runs"]})
    rows = _rows_with_reports("<!-- quick-all-test", os.path.join(claims, "quick-all-test"))
    assert len(rows) >= 3
    for row, method, seed, report in rows:
        assert report["n_examples"] == 10000 and report["split"] == "test", method
        assert [a["name"] for a in report["protocol"]["attacks"]] == ["apgd-ce", "apgd-t"]
        first_1000 = runs[(method, seed)]["final"]
        assert row[1:] == [f"{report['clean_accuracy']:.3f}", f"{report['robust_accuracy']:.3f}",
                           f"{first_1000['clean_accuracy']:.3f}",
                           f"{first_1000['robust_accuracy']:.3f}"], method


def test_the_recipe_table_equals_the_recipes():
    from keras_sgn import recipes

    def epsilon(value):
        return "8/255" if abs(value - 8 / 255) < 1e-12 else f"{value:g}"

    expected = [[name, r["model"], epsilon(r["epsilon"]), str(r["epochs"]),
                 str(r["batch_size"]), r["optimizer"], f"{r['learning_rate']:g}",
                 r["lr_schedule"], f"{r['weight_decay']:g}"]
                for name, r in sorted(recipes.DATASET_RECIPES.items())]
    assert _table_after(_page("guide.md"), "<!-- recipes") == expected


def _slug(heading):
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _outside_fences(text):
    """The lines of `text` that are not inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if re.match(r"^\s*```", line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(path):
    anchors, seen = set(), {}
    for line in _outside_fences(_readme(path)):
        match = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_relative_link_of_the_pages_exists():
    assert len(PAGES) >= 7, "README.md and the six pages of docs/"
    broken, checked = [], 0
    for page in PAGES:
        text = "\n".join(_outside_fences(_readme(page)))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            where = f"{os.path.relpath(page, ROOT)}: {target}"
            if not os.path.exists(path):
                broken.append(f"{where} (no such file)")
            elif anchor and (not path.endswith(".md") or anchor not in _anchors(path)):
                broken.append(f"{where} (no such heading)")
    assert checked > 40
    assert not broken, f"links to nothing: {broken}"
