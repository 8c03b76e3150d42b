"""The rules the headless demo's simulated labelers rank by."""

from types import SimpleNamespace

from training.demo_rules import RULES, names_score, returns_score, rule_order


def replies(*texts):
    return [SimpleNamespace(pk=i, text=t) for i, t in enumerate(texts)]


def test_the_names_rule_prefers_the_function_then_its_module():
    assert names_score("Use os.writev to write buffers.", "os.writev") == 2
    assert names_score("The os module can do it.", "os.writev") == 1
    assert names_score("Nobody knows.", "os.writev") == 0
    assert names_score("cosine", "os.writev") == 0  # a word boundary, not a substring
    order = rule_order(
        RULES["names"], replies("no idea", "os.writev writes", "see the os docs", "maybe"),
        "os.writev",
    )  # fmt: skip
    assert order == [[1], [2], [0, 3]]


def test_the_returns_rule_prefers_replies_that_say_what_comes_back():
    assert returns_score("math.floor returns the floor of x.", "math.floor") == 1
    assert returns_score("Returning an int.", None) == 1
    assert returns_score("It removes a file.", "os.unlink") == 0
    assert returns_score("the returnee", None) == 0  # a word, not a prefix
    order = rule_order(
        RULES["returns"], replies("removes it", "returns a list", "returned x", "hm"), None
    )
    assert order == [[1, 2], [0, 3]]
    assert RULES["returns"].top == returns_score("returns", None)
    assert RULES["names"].top == names_score("os.writev", "os.writev")
