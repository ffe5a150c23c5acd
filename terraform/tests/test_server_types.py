"""No default, example or document names a server type Hetzner has retired.

Hetzner deprecated the CX Gen2 (cx22-cx52) and CPX Gen1 (cpx11-cpx51) types on 2025-10-16 and no
longer sells them: the API refuses to create them, so a default naming one fails at `tofu apply`,
after the plan was approved. The module's validation rejects them (validation.tftest.hcl); this
checks what the operator copies: defaults, .tfvars examples, fixtures and the documentation.
"""

from __future__ import annotations

import re

from conftest import TERRAFORM_DIR

REPO = TERRAFORM_DIR.parent
RETIRED = ("cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51")
RETIRED_WORD = re.compile(r"\b(" + "|".join(RETIRED) + r")\b")
VARIABLE_BLOCK = re.compile(r'(?ms)^variable\s+"([^"]*server_type[^"]*)"\s*\{(.*?)^\}')


def _server_type_values() -> list[tuple[str, str]]:
    """(file, value) of every server type default or assignment in the OpenTofu code and examples."""
    found: list[tuple[str, str]] = []
    for path in sorted(TERRAFORM_DIR.rglob("*")):
        if path.suffix not in (".tf", ".example") or ".terraform" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for _, body in VARIABLE_BLOCK.findall(text):
            found += [(str(path), v) for v in re.findall(r'(?m)^\s*default\s*=\s*"([^"]+)"', body)]
        found += [(str(path), v) for v in re.findall(r'(?m)^\s*\w*server_type\s*=\s*"([^"]+)"', text)]
    return found


def test_defaults_and_examples_name_current_server_types() -> None:
    values = _server_type_values()
    # The environments' defaults, the module's and the examples are all seen.
    assert len(values) >= 10, values
    retired = [(path, value) for path, value in values if value in RETIRED]
    assert not retired, f"retired Hetzner server types: {retired}"


def test_production_sizes_are_the_successors_of_the_same_size() -> None:
    text = (TERRAFORM_DIR / "environments/production/production.tfvars.example").read_text(encoding="utf-8")
    assert re.search(r'(?m)^gateway_server_type\s*=\s*"cx33"$', text)
    assert re.search(r'(?m)^support_server_type\s*=\s*"cx23"$', text)


def test_documents_name_retired_server_types_only_as_retired() -> None:
    """A document may say which types are retired, never offer one to use."""
    documents = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *TERRAFORM_DIR.rglob("*.md")]
    hits = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in documents
        for line in path.read_text(encoding="utf-8").splitlines()
        if RETIRED_WORD.search(line) and not re.search(r"(?i)retired|deprecated", line)
    ]
    assert not hits, hits
