"""The evidence files under docs/: what each results file records, so that its figures can be checked.

Every results file under docs/ (`results.json`, or `results-*.json` beside one), outside
docs/results/unverified/, records at its top level:

- `machine`: the CPU model or GPU it ran on (a string, a list of them, or a mapping of a role to
  one); every per-entry `cpu` or `gpu` the file records is among them;
- `precision`: fp32, bf16, fp16 ... (a string or a list), where the file trains or times anything;
- `command`: the command line that wrote it (a string, or a list where several invocations did);
- `protocol`, where it holds quality scores (FID, KID and their fast versions): each feature
  extractor with its weights' SHA-256, the number of samples and their seeds, the reference and its split.

The folders under docs/results/unverified/ lack one or more of these; their README names what each
lacks. Pages that link to evidence must link to files that exist.

Run this file as a script for the survey: every results file and what it lacks.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
UNVERIFIED = DOCS / "results" / "unverified"

MACHINE = re.compile(r"\b(AMD|EPYC|Ryzen|Threadripper|Intel|Xeon|Core i[3579]|Apple M\d|Graviton|ARM|"
                     r"NVIDIA|GeForce|RTX|Quadro|Tesla|[AHLTV]\d{2,3}|GH200|MI\d{3})\b")
PRECISIONS = {"fp32", "bf16", "fp16", "tf32", "float32", "bfloat16", "float16"}
TIMING_KEYS = {"seconds", "images_per_s", "img_per_s", "minutes", "kimg", "steps", "epochs"}
SCORE_KEY = re.compile(r"^(fid|kid|is)(_|$)")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PROGRAMS = {"dcgan", "python", "python3", "torchrun"}


def results_files(root: Path = DOCS) -> list[Path]:
    """Every results file under `root`, outside docs/results/unverified/."""
    return sorted(path for path in root.rglob("results*.json")
                  if UNVERIFIED not in path.parents and path.name.startswith(("results.", "results-")))


def walk(value, skip: tuple[str, ...] = ()):
    """(key, value) of every mapping entry inside `value`, leaving out the top-level keys in `skip`."""
    stack = [(value, True)]
    while stack:
        node, top = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if top and key in skip:
                    continue
                yield key, item
                stack.append((item, False))
        elif isinstance(node, list):
            stack.extend((item, False) for item in node)


def machine_names(value) -> list[str] | None:
    """The machine strings of a `machine` field, or None when the field is not of a recorded form."""
    if isinstance(value, str):
        names = [value]
    elif isinstance(value, list) and value:
        names = value
    elif isinstance(value, dict) and value:
        names = list(value.values())
    else:
        return None
    if not all(isinstance(name, str) and MACHINE.search(name) for name in names):
        return None
    return names


def machine_problems(record: dict) -> list[str]:
    if "machine" not in record:
        return ["machine: missing (the CPU model or GPU the file's figures come from)"]
    names = machine_names(record["machine"])
    if names is None:
        return [f"machine: {record['machine']!r} names no CPU model or GPU"]
    entries = {value for key, value in walk(record, skip=("args", "machine"))  # args: the command line's words
               if key in ("cpu", "gpu") and isinstance(value, str) and MACHINE.search(value)}
    return [f"machine: {names} does not name {value!r}, which an entry ran on"
            for value in sorted(entries) if not any(value in name for name in names)]


def precision_problems(record: dict) -> list[str]:
    if not any(key in TIMING_KEYS for key, _ in walk(record, skip=("precision",))):
        return []  # neither trains nor times anything
    if "precision" not in record:
        return ["precision: missing (the file trains or times something)"]
    value = record["precision"]
    values = value if isinstance(value, list) and value else [value]
    if not all(isinstance(v, str) and v.lower() in PRECISIONS for v in values):
        return [f"precision: {value!r} is not one of {sorted(PRECISIONS)}"]
    return []


def command_problems(record: dict) -> list[str]:
    if "command" not in record:
        return ["command: missing (the command line that wrote the file)"]
    value = record["command"]
    commands = value if isinstance(value, list) and value else [value]
    for command in commands:
        words = command.split() if isinstance(command, str) else []
        if not words or not (Path(words[0]).name in PROGRAMS or words[0].endswith(".py")) or len(words) < 2:
            return [f"command: {command!r} is not a command line (dcgan ..., python ..., or a script)"]
    return []


def score_kinds(record: dict) -> set[str]:
    kinds = set()
    for key, _ in walk(record, skip=("args", "protocol")):
        if isinstance(key, str) and SCORE_KEY.match(key):
            kinds.add("fast" if "fast" in key else "inception")
    return kinds


def protocol_problems(record: dict) -> list[str]:
    kinds = score_kinds(record)
    if not kinds:
        return []
    protocol = record.get("protocol")
    if not isinstance(protocol, dict):
        return [f"protocol: missing (the file holds {' and '.join(sorted(kinds))} scores)"]
    problems = []
    extractors = protocol.get("feature_extractors")
    if extractors is None:
        extractors = [protocol.get("feature_extractor")]
    if not isinstance(extractors, list) or not extractors:
        extractors = [None]
    recorded = set()
    for extractor in extractors:
        if not isinstance(extractor, dict) or not extractor.get("name"):
            problems.append("protocol: a feature extractor without its name")
            continue
        if not SHA256.match(str(extractor.get("weights_sha256", ""))):
            problems.append(f"protocol: extractor {extractor['name']!r} without its weights' SHA-256")
        recorded.add(extractor.get("kind"))
    problems += [f"protocol: no {kind} extractor, though the file holds {kind} scores"
                 for kind in sorted(kinds - recorded) if recorded]
    generated = protocol.get("generated")
    if not isinstance(generated, dict) or not isinstance(generated.get("num_images"), int) \
            or generated["num_images"] <= 0 or not (generated.get("seeds") or "sample_seed" in generated):
        problems.append("protocol: the generated images' number and seeds (generated.num_images, generated.seeds)")
    reference = protocol.get("reference")
    if not isinstance(reference, dict) or not reference.get("split") \
            or not any(reference.get(key) for key in ("root", "name", "dataset")):
        problems.append("protocol: the reference and its split (reference.root or .name, reference.split)")
    return problems


def problems(record) -> list[str]:
    """What `record` (a results file's content) lacks; empty when it records all it should. A
    metrics file of `dcgan evaluate --out` holds its fields in each of its evaluations."""
    if not isinstance(record, dict):
        return ["not a JSON object: machine, precision, command and protocol need top-level keys"]
    evaluations = record.get("evaluations")
    if isinstance(evaluations, list) and evaluations and "machine" not in record:
        return [f"evaluation {i}: {problem}" for i, evaluation in enumerate(evaluations)
                for problem in problems(evaluation)]
    return machine_problems(record) + precision_problems(record) + command_problems(record) + protocol_problems(record)


# ---------------------------------------------------------------------------------------- the files

def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_results_files_to_check():
    assert DOCS / "results" / "long-budget-cars" / "results.json" in results_files()


@pytest.mark.parametrize("path", results_files(), ids=name)
def test_a_results_file_records_its_machine_precision_command_and_protocol(path):
    found = problems(json.loads(path.read_text(encoding="utf-8")))
    assert not found, f"{name(path)}:\n  " + "\n  ".join(found)


def unverified_folders() -> list[Path]:
    return sorted(folder for folder in UNVERIFIED.iterdir() if folder.is_dir()) if UNVERIFIED.is_dir() else []


@pytest.mark.parametrize("folder", unverified_folders(), ids=name)
def test_the_unverified_readme_says_what_each_folder_lacks(folder):
    readme = (UNVERIFIED / "README.md").read_text(encoding="utf-8")
    assert f"[{folder.name}]({folder.name}/" in readme, f"docs/results/unverified/README.md does not list {folder.name}"
    records = [json.loads(path.read_text(encoding="utf-8")) for path in folder.rglob("results*.json")]
    assert not records or any(problems(record) for record in records), \
        f"every results file in {name(folder)} records what it should: it belongs in docs/results/"


# ---------------------------------------------------------------------------------------- the links

LINK = re.compile(r"\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "results").rglob("*.md")),
            *sorted((ROOT / "src" / "dcgan" / "pretrained").glob("*/MODEL_CARD.md"))]


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = unquote(target.split("#")[0])
        resolved = (page.parent / path).resolve()
        if not resolved.exists() or ROOT not in resolved.parents:
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", pages(), ids=name)
def test_every_link_of_a_page_reaches_a_file_in_the_repository(page):
    broken = broken_links(page)
    assert not broken, f"{name(page)} links to {broken}"


# ---------------------------------------------------------------------------------------- the checks fail

INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
GOOD = {"machine": "AMD EPYC (AVX-512 with bf16, 2 cores)", "precision": ["bf16"],
        "command": "benchmarks/long_budget.py --run a=RUN --kimg 500 --out OUT",
        "protocol": {"feature_extractor": {"name": "inception-v3-tf-2015-12-05", "kind": "inception",
                                           "weights_sha256": INCEPTION_SHA256},
                     "generated": {"num_images": 5000, "seeds": "0-4999"},
                     "reference": {"root": "cifar10/test", "split": "train", "num_images": 1000}},
        "results": {"a": {"run": {"cpu": "AMD EPYC (AVX-512 with bf16, 2 cores)", "seconds": 60.0},
                          "points": [{"kimg": 500, "fid": 65.4, "kid": 0.038}]}}}


def changed(**fields) -> dict:
    record = json.loads(json.dumps(GOOD))
    for key, value in fields.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


def test_a_record_with_every_field_passes():
    assert problems(GOOD) == []


BAD = [
    ([{"set": "cars", "share": 0.0}], "not a JSON object"),
    (changed(machine=None), "machine: missing"),
    (changed(machine="cpu"), "names no CPU model or GPU"),
    (changed(machine="cuda"), "names no CPU model or GPU"),
    (changed(machine="a 2-core AMD EPYC (AVX2, no AVX-512 or bf16)"), "which an entry ran on"),
    (changed(precision=None), "precision: missing"),
    (changed(precision=0.454), "precision: 0.454"),
    (changed(command=None), "command: missing"),
    (changed(command="the sweep, rerun"), "is not a command line"),
    (changed(protocol=None), "protocol: missing"),
    (changed(protocol={**GOOD["protocol"], "feature_extractor": {"name": "inception-v3-tf-2015-12-05",
                                                                 "kind": "inception"}}), "SHA-256"),
    (changed(protocol={**GOOD["protocol"], "generated": {"num_images": 5000}}), "seeds"),
    (changed(protocol={**GOOD["protocol"], "reference": {"root": "cifar10/test"}}), "split"),
    (changed(results={"a": [{"kimg": 650, "fid_fast_ema": 0.12}]}), "no fast extractor"),
]


@pytest.mark.parametrize("record, field", [pytest.param(record, field, id=field) for record, field in BAD])
def test_a_record_that_lacks_a_field_fails(record, field):
    found = problems(record)
    assert any(field in problem for problem in found), found


def test_an_evaluation_record_of_dcgan_evaluate_passes_only_with_every_field():
    evaluation = {"time": "2026-12-08T00:00:00+00:00", "scores": {"fid": 69.5, "kid": 0.036},
                  "machine": GOOD["machine"], "precision": "fp32",
                  "command": "dcgan evaluate --model cifar10-cars --ref cifar10-test", "protocol": GOOD["protocol"]}
    assert problems({"checkpoint": "generator.safetensors", "evaluations": [evaluation]}) == []
    lacking = {key: value for key, value in evaluation.items() if key != "command"}
    found = problems({"checkpoint": "g", "evaluations": [evaluation, lacking]})
    assert found == ["evaluation 1: command: missing (the command line that wrote the file)"]


def test_a_broken_link_is_found(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "there.json").write_text("{}")
    page = tmp_path / "page.md"
    page.write_text("[kept](results/there.json) [moved](results/gone/results.md) [web](https://example.org) "
                    "[anchor](#x) [out](../../etc/passwd)\n")
    assert broken_links(page) == ["results/gone/results.md", "../../etc/passwd"]


if __name__ == "__main__":  # the survey: every results file under docs/ and what it lacks
    for path in sorted(DOCS.rglob("results*.json")):
        found = problems(json.loads(path.read_text(encoding="utf-8")))
        print(f"{name(path)}: {'complete' if not found else '; '.join(found)}")
