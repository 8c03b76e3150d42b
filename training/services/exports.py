"""Model exports: a model version written out as a Hugging Face directory or a GGUF file under
ARTIFACTS_DIR/exports/<version name>/, for transformers and llama.cpp-based tools. Written in
place of an older export of the same version and format (a retrained version has a new name).
"""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from training.errors import Invalid
from training.models import ModelVersion

FORMATS = {"hf": "Hugging Face directory", "gguf": "GGUF file"}
EXPORTABLE = (ModelVersion.Kind.BASE, ModelVersion.Kind.SFT, ModelVersion.Kind.POLICY)


@dataclass
class Export:
    format: str
    path: Path
    bytes: int

    @property
    def filename(self) -> str:
        return self.path.name


def export_dir(version: ModelVersion) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", version.name).strip(".-") or f"version-{version.pk}"
    return Path(settings.ARTIFACTS_DIR) / "exports" / f"{safe}-{version.pk}"


def model_version_export(*, version: ModelVersion, format: str, dtype: str = "f16") -> Export:
    """Write `version` in `format` ("hf" or "gguf", the GGUF in `dtype` f16 or f32)."""
    from training.jobs.common import load_version
    from training.ml.model_export import GGUF_DTYPES, export_gguf, export_huggingface

    if format not in FORMATS:
        raise Invalid(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    if format == "gguf" and dtype not in GGUF_DTYPES:
        raise Invalid(f"A GGUF export is {' or '.join(GGUF_DTYPES)}, not {dtype!r}.")
    if version.kind not in EXPORTABLE:
        raise Invalid(f"{version.name} is a {version.get_kind_display().lower()}: only base, "
                      "SFT and policy models are language models to export.")  # fmt: skip
    model, tokenizer = load_version(version, "cpu")
    target = export_dir(version)
    target.mkdir(parents=True, exist_ok=True)
    try:
        if format == "hf":
            path = target / "huggingface"
            tmp = target / ".huggingface.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            export_huggingface(model, tokenizer, tmp)
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
            size = sum(f.stat().st_size for f in path.iterdir())
        else:
            path = export_gguf(model, tokenizer, target / f"{target.name}.{dtype}.gguf",
                               dtype=dtype)  # fmt: skip
            size = path.stat().st_size
    except ValueError as exc:  # e.g. a GPT-2 model to GGUF
        raise Invalid(str(exc)) from None
    return Export(format=format, path=path, bytes=size)


def exports_of(version: ModelVersion) -> list[Export]:
    """The exports written so far (a read, kept beside the write that names the files)."""
    target = export_dir(version)
    if not target.is_dir():
        return []
    found = []
    for path in sorted(target.iterdir()):
        if path.name == "huggingface" and path.is_dir():
            found.append(Export("hf", path, sum(f.stat().st_size for f in path.iterdir())))
        elif path.suffix == ".gguf" and path.is_file():
            found.append(Export("gguf", path, path.stat().st_size))
    return found
