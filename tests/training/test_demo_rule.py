"""The preferences the headless demo's simulated labelers rank by: each ranks hand-made replies
as its docstring says."""

from types import SimpleNamespace

from training.demo.rules import PREFERENCES, preference_order


def replies(*texts):
    return [SimpleNamespace(pk=i, text=t) for i, t in enumerate(texts)]


def order(key, *texts, name=None):
    return preference_order(PREFERENCES[key], replies(*texts), name)


def test_the_names_rule_prefers_the_function_then_its_module():
    score = PREFERENCES["names"].score
    assert score("Use os.writev to write buffers.", "os.writev") == 2
    assert score("The os module can do it.", "os.writev") == 1
    assert score("Nobody knows.", "os.writev") == 0
    assert score("cosine", "os.writev") == 0  # a word boundary, not a substring
    assert order("names", "no idea", "os.writev writes", "see the os docs", "maybe",
                 name="os.writev") == [[1], [2], [0, 3]]  # fmt: skip


def test_the_returns_rule_prefers_replies_that_say_what_comes_back():
    score = PREFERENCES["returns"].score
    assert score("math.floor returns the floor of x.", "math.floor") == 1
    assert score("Returning an int.", None) == 1
    assert score("It removes a file.", "os.unlink") == 0
    assert score("the returnee", None) == 0  # a word, not a prefix
    assert order("returns", "removes it", "returns a list", "returned x", "hm") == [[1, 2], [0, 3]]


def test_an_example_call_beats_a_description():
    assert order(
        "example",
        "os.getcwd gives the current directory.",
        "Call os.getcwd() to get the current directory.",
        "len(items) counts them.",
        "Use it (carefully).",  # parentheses after a space are not a call
    ) == [[1, 2], [0, 3]]


def test_plain_words_beat_one_jargon_word_which_beats_several():
    assert order(
        "plain",
        "It writes each buffer to the file descriptor.",  # two jargon words
        "It gives back the folder you are in.",
        "Loops over an iterable of lines.",  # one
        "Makes a coroutine from a callable iterator.",  # three: as low as two
    ) == [[1], [2], [0, 3]]
    assert PREFERENCES["plain"].score("Iterables, ITERATORS", None) == 0  # any case, plurals


def test_a_caveat_beats_a_reply_without_one():
    assert order(
        "caveat",
        "Removes the file.",
        "Removes the file, but raises OSError if it is a folder.",
        "Note: deprecated since 3.12.",
        "Returns the notebook.",  # "note" as a whole word only
    ) == [[1, 2], [0, 3]]


def test_courtesy_beats_neutral_which_beats_condescension():
    assert order(
        "polite",
        "Obviously it returns a list.",
        "It returns a list.",
        "You can call it to get a list; hope this helps.",
        "Please use it; it simply returns a list.",  # condescension outweighs the please
    ) == [[2], [1], [0, 3]]


def test_concise_replies_beat_long_ones_whatever_they_say():
    short = "Returns the current directory."
    medium = " ".join(["word"] * 20)
    long = " ".join(["word"] * 30)
    assert order("concise", long, short, medium) == [[1], [2], [0]]


def test_every_preference_has_a_docstring_a_top_score_and_a_top_reply():
    tops = {
        "returns": "It returns a list.",
        "names": "Use os.writev.",
        "example": "Try os.writev(fd, bufs).",
        "plain": "It writes your lines.",
        "caveat": "Works, but only on Unix.",
        "polite": "You can use it.",
        "concise": "Short answer.",
    }
    assert set(PREFERENCES) == set(tops)
    for key, preference in PREFERENCES.items():
        assert preference.key == key and len(type(preference).__doc__) > 60
        assert preference.score(tops[key], "os.writev") == preference.top
