"""The demo's evaluation table: win rates under the rule with ties counting half, and the
ceiling a policy can reach when the SFT model already follows the rule on some prompts (a win
rate that cannot pass it is a property of the rule and the SFT model, not a failure of PPO)."""

from training.demo.headless import Evaluation, evaluation_table, win_rate
from training.demo.rules import PREFERENCES


def evaluation(**figures) -> Evaluation:
    base = dict(prompts=4, rule_rate_before=0.5, rule_rate_after=1.0, win_rate=0.75,
                win_rate_ceiling=0.75, reward_before=None, reward_after=None, kl=1.5, examples=[],
                best_of=4, rule_rate_best_of=None, win_rate_best_of=None, reward_best_of=None)
    return Evaluation(**{**base, **figures})


def test_a_tie_counts_half_and_the_ceiling_is_every_reply_at_the_top():
    top = PREFERENCES["returns"].top
    sft = [top, 0, 0, top]
    assert win_rate([top] * 4, sft) == (0.5 + 1 + 1 + 0.5) / 4  # the ceiling: 0.5 + 0.5 / 2
    assert win_rate(sft, sft) == 0.5
    assert win_rate([0, 0, 0, 0], sft) == (0 + 0.5 + 0.5 + 0) / 4


def test_the_table_shows_the_ceiling_beside_the_policy_per_prompt_set():
    rule = PREFERENCES["concise"]
    lines = evaluation_table(rule, {"training prompts": evaluation(win_rate_ceiling=0.6),
                                    "held-out prompts": None})
    ceiling = next(line for line in lines if "ceiling" in line)
    assert ceiling.split()[-2:] == ["60%", "-"]
    # in the win-rate block, after the policy's and best-of-n's rows
    assert lines.index(ceiling) == lines.index("  win rate over SFT (ties count half):") + 3
    kl = lines[lines.index(ceiling) + 1]  # what the win rate cost, right under it
    assert "KL to SFT per policy reply" in kl and kl.split()[-2:] == ["1.50", "-"]
