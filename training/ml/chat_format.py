"""Chat formats: how a dialogue is laid out around a model's control tokens.

A format renders turns as a list of `Piece`s: control tokens (encoded as their own ids) and the
ordinary text between them, with the pieces the model learns to produce (assistant content and
the token that closes an assistant turn) marked. `ChatTokenizer` turns pieces into ids and the
assistant mask. Four formats:

- `OursFormat`, for tokenizers we train: `<|endoftext|><|user|>..<|end|><|assistant|>..<|end|>`,
  a system turn merged into the first user turn;
- `ChatMLFormat` (SmolLM2, Qwen): `<|im_start|>role\\ncontent<|im_end|>\\n`, with the template's
  default system prompt when the dialogue has none;
- `Llama3Format`: `<|begin_of_text|>` then `<|start_header_id|>role<|end_header_id|>\\n\\n`,
  the content stripped as Meta's template does, and `<|eot_id|>`;
- `GPT2Format`: each turn's content followed by the end-of-sequence token, no roles.

A model's format comes from its chat template (`chat_format_from_template`): the template names
its family by its control tokens, and then the template itself renders probe dialogues in a jinja
sandbox, as transformers renders it, which our format must reproduce character for character. A
template we don't reproduce is refused rather than approximated: the model would be fine-tuned on
a layout it was not trained on.
"""

import functools
import json
from dataclasses import dataclass

ROLES = ("user", "assistant")

ENDOFTEXT, USER, ASSISTANT, END = "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
HEADER_START, HEADER_END, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"

OURS_TEMPLATE = (
    "{% set ns = namespace(system='') %}{{ '<|endoftext|>' }}"
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system = message['content'] %}{% else %}{% set content = message['content'] %}"
    "{% if ns.system | trim %}{% set content = ns.system + '\\n\\n' + content %}"
    "{% set ns.system = '' %}{% endif %}"
    "{{ ('<|user|>' if message['role'] == 'user' else '<|assistant|>') + content + '<|end|>' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
GPT2_TEMPLATE = "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"


@dataclass(frozen=True)
class Piece:
    text: str
    special: bool = False  # a control token, encoded as its own id
    learn: bool = False  # assistant content, or the control token closing an assistant turn


def check_turns(turns: list[dict]) -> tuple[str | None, list[tuple[str, str]]]:
    """Validate a dialogue: an optional leading system turn, then user and assistant turns
    alternating from a user turn, user turns not empty. Returns (system text or None, pairs)."""
    if not turns:
        raise ValueError("empty prompt: a dialogue needs at least one user turn")
    pairs = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise ValueError(f"turn {i} must be a dict with a string 'content'")
        pairs.append((turn.get("role"), turn["content"]))
    system = None
    if pairs[0][0] == "system":
        if len(pairs) < 2 or pairs[1][0] != "user":
            raise ValueError("a system turn must be followed by a user turn")
        system, pairs = pairs[0][1], pairs[1:]
    for i, (role, content) in enumerate(pairs):
        expected = ROLES[i % 2]
        if role != expected:
            raise ValueError(
                f"turn {i} has role {role!r}, expected {expected!r}: roles are 'user' and "
                "'assistant', alternating, starting with 'user'"
            )
        if role == "user" and not content.strip():
            raise ValueError(f"empty prompt: user turn {i} has no text")
    return system, pairs


class ChatFormat:
    """A dialogue layout. Subclasses set `kind`, `end_token` and `control_tokens` and write
    `pieces`; `template` is the jinja chat template that renders the same text."""

    kind: str
    end_token: str  # closes an assistant turn; sampling stops on it
    control_tokens: tuple[str, ...]

    def __init__(self, template: str):
        self.template = template

    def pieces(self, turns: list[dict], *, add_generation_prompt: bool = False) -> list[Piece]:
        raise NotImplementedError

    def text(self, turns: list[dict], *, add_generation_prompt: bool = False) -> str:
        """The rendered string, as the chat template renders it."""
        pieces = self.pieces(turns, add_generation_prompt=add_generation_prompt)
        return "".join(p.text for p in pieces)

    def _closing(self, role: str) -> Piece:
        return Piece(self.end_token, special=True, learn=role == "assistant")


class OursFormat(ChatFormat):
    kind, end_token = "ours", END
    control_tokens = (ENDOFTEXT, USER, ASSISTANT, END)

    def __init__(self, template: str = OURS_TEMPLATE):
        super().__init__(template)

    def pieces(self, turns, *, add_generation_prompt=False):
        system, pairs = check_turns(turns)
        if system is not None and system.strip():  # the tiny models have no system channel
            pairs[0] = ("user", f"{system}\n\n{pairs[0][1]}")
        out = [Piece(ENDOFTEXT, special=True)]
        for role, content in pairs:
            opening = USER if role == "user" else ASSISTANT
            learn = role == "assistant"
            out += [Piece(opening, special=True), Piece(content, learn=learn), self._closing(role)]
        if add_generation_prompt:
            out.append(Piece(ASSISTANT, special=True))
        return out


class ChatMLFormat(ChatFormat):
    kind, end_token = "chatml", IM_END
    control_tokens = (IM_START, IM_END)

    def __init__(self, template: str, default_system: str | None = None):
        super().__init__(template)
        self.default_system = default_system

    def pieces(self, turns, *, add_generation_prompt=False):
        system, pairs = check_turns(turns)
        system = self.default_system if system is None else system
        out = []
        for role, content in [*([("system", system)] if system is not None else []), *pairs]:
            out += [
                Piece(IM_START, special=True),
                Piece(f"{role}\n"),
                Piece(content, learn=role == "assistant"),
                self._closing(role),
                Piece("\n"),
            ]
        if add_generation_prompt:
            out += [Piece(IM_START, special=True), Piece("assistant\n")]
        return out


class Llama3Format(ChatFormat):
    kind, end_token = "llama3", EOT
    control_tokens = (HEADER_START, HEADER_END, EOT)

    def __init__(self, template: str, bos_token: str):
        super().__init__(template)
        self.bos_token = bos_token
        self.control_tokens = (bos_token, *Llama3Format.control_tokens)

    def pieces(self, turns, *, add_generation_prompt=False):
        system, pairs = check_turns(turns)
        out = [Piece(self.bos_token, special=True)]
        for role, content in [*([("system", system)] if system is not None else []), *pairs]:
            out += [
                *self._header(role),
                Piece(content.strip(), learn=role == "assistant"),
                self._closing(role),
            ]
        if add_generation_prompt:
            out += self._header("assistant")
        return out

    @staticmethod
    def _header(role: str) -> list[Piece]:
        return [
            Piece(HEADER_START, special=True),
            Piece(role),
            Piece(HEADER_END, special=True),
            Piece("\n\n"),
        ]


class GPT2Format(ChatFormat):
    kind = "gpt2"

    def __init__(self, template: str, eos_token: str):
        super().__init__(template)
        self.end_token = eos_token
        self.control_tokens = (eos_token,)

    def pieces(self, turns, *, add_generation_prompt=False):
        system, pairs = check_turns(turns)
        out = []
        for role, content in [*([("system", system)] if system is not None else []), *pairs]:
            out += [Piece(content, learn=role == "assistant"), self._closing(role)]
        return out


# -- from a chat template ---------------------------------------------------------------------

# Dialogues the template and our format must render identically: system or not, whitespace at
# both ends of turns (templates that strip it differ from ones that don't), a generation prompt.
PROBES = (
    ([{"role": "user", "content": "Hello"}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey."}], False),
    (
        [
            {"role": "system", "content": " Be brief.\n"},
            {"role": "user", "content": "  Tell me\n\na joke "},
            {"role": "assistant", "content": "\nWhy not? \n"},
            {"role": "user", "content": "Another,\tplease."},
        ],
        True,
    ),
    (
        [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": ""},
        ],
        False,
    ),
    ([{"role": "system", "content": ""}, {"role": "user", "content": "x"}], True),
)


def render_template(
    template: str, turns: list[dict], *, add_generation_prompt: bool, **special_tokens
) -> str:
    """Render a chat template as transformers' `apply_chat_template` does (sandboxed jinja,
    trim_blocks and lstrip_blocks, loop controls, `raise_exception`, `tojson`)."""
    return _compile(template).render(
        messages=turns, add_generation_prompt=add_generation_prompt, **special_tokens
    )


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def chat_format_from_template(
    template: str | None, *, bos_token: str | None = None, eos_token: str | None = None
) -> ChatFormat:
    """The format a chat template renders, checked on `PROBES`; no template means GPT-2 style
    (what transformers used for models without one). ValueError if we don't reproduce it."""
    if template is None:
        template = GPT2_TEMPLATE
    tokens = {"bos_token": bos_token, "eos_token": eos_token}
    if IM_START in template:
        fmt = ChatMLFormat(template, _default_system(template, tokens))
    elif HEADER_START in template:
        if bos_token is None:
            raise ValueError("a Llama-3 chat template needs the tokenizer's bos token")
        fmt = Llama3Format(template, bos_token)
    elif USER in template and ASSISTANT in template:
        fmt = OursFormat(template)
    else:
        if eos_token is None:
            raise ValueError("a GPT-2 style chat template needs the tokenizer's eos token")
        fmt = GPT2Format(template, eos_token)
    for turns, prompt in PROBES:
        try:
            theirs = render_template(template, turns, add_generation_prompt=prompt, **tokens)
        except Exception as exc:  # jinja syntax, sandbox or raise_exception: all mean "not ours"
            raise ValueError(
                f"unsupported chat template (it fails to render: {type(exc).__name__}: {exc}): "
                f"{template[:200]!r}"
            ) from None
        ours = fmt.text(turns, add_generation_prompt=prompt)
        if theirs != ours:
            raise ValueError(
                f"unsupported chat template: it renders {theirs!r} where the {fmt.kind} format "
                f"renders {ours!r}; template {template[:200]!r}"
            )
    return fmt


def _default_system(template: str, tokens: dict) -> str | None:
    """The system prompt a ChatML template adds to a dialogue that has none, if any."""
    try:
        text = render_template(
            template, [{"role": "user", "content": "x"}], add_generation_prompt=False, **tokens
        )
    except Exception:  # reported with its probe by the check that follows
        return None
    head = f"{IM_START}system\n"
    if not text.startswith(head) or IM_END not in text:
        return None
    return text[len(head) : text.index(IM_END)]
