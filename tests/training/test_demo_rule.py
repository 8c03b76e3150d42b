"""The simulated labelers' rule in the headless demo."""

from types import SimpleNamespace

from training.demo import rule_order, rule_score


def test_the_rule_prefers_the_function_then_its_module():
    assert rule_score("Use os.writev to write buffers.", "os.writev") == 2
    assert rule_score("The os module can do it.", "os.writev") == 1
    assert rule_score("Nobody knows.", "os.writev") == 0
    assert rule_score("cosine", "os.writev") == 0  # a word boundary, not a substring
    replies = [SimpleNamespace(pk=i, text=t) for i, t in
               enumerate(["no idea", "os.writev writes", "see the os docs", "maybe"])]  # fmt: skip
    assert rule_order(replies, "os.writev") == [[1], [2], [0, 3]]
