"""Importing and exporting models: `import_model` and the admin's "Import a model" page turn a
Hugging Face directory or a GGUF file into a base model version (checked before anything is
written), and a version exports back to both formats."""

import json

import pytest
import torch
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from training.jobs.common import load_version
from training.ml.llama import Llama, LlamaConfig
from training.ml.model_export import export_gguf, export_huggingface
from training.ml.model_files import load_tokenizer
from training.models import ModelVersion

TINY_LLAMA = dict(block_size=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                  intermediate_size=64, tie_embeddings=False)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_llama(tiny_base_dir):
    """A tiny random Llama with the tiny test tokenizer (our chat format)."""
    tokenizer = load_tokenizer(tiny_base_dir)
    torch.manual_seed(3)
    return Llama(LlamaConfig(vocab_size=tokenizer.vocab_size, **TINY_LLAMA)).eval(), tokenizer


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(torch.tensor([ids]))[0]


def test_a_hugging_face_directory_imports_as_a_base_version(tiny_llama, artifacts, tmp_path, db):
    model, tokenizer = tiny_llama
    source = export_huggingface(model, tokenizer, tmp_path / "hf")
    call_command("import_model", str(source), "--name", "tiny-llama")
    version = ModelVersion.objects.get(name="tiny-llama")
    assert version.kind == "base" and version.checkpoint_dir.startswith(str(artifacts))
    imported, imported_tokenizer = load_version(version, "cpu")
    question = [{"role": "user", "content": "What does json.dumps do?"}]
    ids = tokenizer.render_prompt(question)
    assert imported_tokenizer.render_prompt(question) == ids
    torch.testing.assert_close(logits(imported, ids), logits(model, ids), atol=1e-5, rtol=0)


def test_a_gguf_file_imports_with_its_tokenizer(tiny_llama, artifacts, tmp_path, db):
    model, tokenizer = tiny_llama
    path = export_gguf(model, tokenizer, tmp_path / "tiny.gguf", dtype="f32")
    call_command("import_model", str(path), "--name", "tiny-gguf")
    imported, imported_tokenizer = load_version(ModelVersion.objects.get(name="tiny-gguf"), "cpu")
    ids = tokenizer.render_prompt([{"role": "user", "content": "Which module parses JSON?"}])
    assert imported_tokenizer.encode("Which module parses JSON?") == tokenizer.encode(
        "Which module parses JSON?"
    )
    torch.testing.assert_close(logits(imported, ids), logits(model, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nowhere", "does not exist"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "neither"),
    (lambda d: (d / "bert").mkdir() or (d / "bert" / "config.json").write_text(
        json.dumps({"model_type": "bert"})) and d / "bert", "bert"),
])  # fmt: skip
def test_what_cannot_be_imported_is_a_clear_error_and_writes_nothing(
    make, message, artifacts, tmp_path, db
):
    with pytest.raises(CommandError, match=message):
        call_command("import_model", str(make(tmp_path)))
    assert not ModelVersion.objects.exists()
    assert not (artifacts / "models").exists() or not any((artifacts / "models").iterdir())


def test_the_admin_imports_a_model_and_shows_errors_on_the_page(tiny_llama, artifacts, tmp_path,
                                                                django_user_model):  # fmt: skip
    model, tokenizer = tiny_llama
    source = export_huggingface(model, tokenizer, tmp_path / "hf")
    admin = django_user_model.objects.create_superuser("root", password="pw-root-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    url = reverse("admin:training_modelversion_import")
    page = client.get(url)
    assert page.status_code == 200 and b"Import a model" in page.content
    token = page.cookies["csrftoken"].value
    assert client.post(url, {"path": str(source)}).status_code == 403  # no CSRF token
    bad = client.post(url, {"path": str(tmp_path / "nowhere"), "csrfmiddlewaretoken": token})
    assert bad.status_code == 400 and b"does not exist" in bad.content
    assert not ModelVersion.objects.exists()
    good = client.post(url, {"path": str(source), "name": "from-admin",
                             "csrfmiddlewaretoken": token})  # fmt: skip
    version = ModelVersion.objects.get(name="from-admin")
    assert good.status_code == 302 and good.url.endswith(f"/{version.pk}/change/")


def test_only_staff_with_permission_see_the_import_page(labeler, staff):
    url = reverse("admin:training_modelversion_import")
    client = Client()
    client.force_login(labeler)
    assert client.get(url).status_code == 302  # to the admin's login
    client.force_login(staff)  # staff without the add permission
    assert client.get(url).status_code == 403


def test_a_version_exports_from_its_page(tiny_llama, artifacts, tmp_path, staff, labeler):
    model, tokenizer = tiny_llama
    call_command("import_model", str(export_huggingface(model, tokenizer, tmp_path / "hf")),
                 "--name", "exportable")  # fmt: skip
    version = ModelVersion.objects.get(name="exportable")
    url = reverse("training:export", args=[version.pk])
    client = Client()
    client.force_login(labeler)
    assert client.post(url, {"format": "gguf"}).status_code == 403
    client.force_login(staff)
    assert client.post(url, {"format": "gguf", "dtype": "f32"}).status_code == 302
    assert client.post(url, {"format": "hf"}).status_code == 302
    assert client.post(url, {"format": "onnx"}).status_code == 400
    page = client.get(reverse("training:version", args=[version.pk])).content.decode()
    assert "Hugging Face directory" in page and ".f32.gguf" in page
    assert "llama: 2 layers, 32 wide, context 128" in page and "<dd>ours</dd>" in page
    gguf = next((artifacts / "exports").glob("*/*.f32.gguf"))
    download = client.get(reverse("training:export-download", args=[version.pk, gguf.name]))
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content)[:4] == b"GGUF"
