"""Named chat renderers: the reference's ``model.renderer_name`` (Tinker's renderer hint, e.g.
``qwen3``) as the chat template the tinker backend renders rows and prompts with.

Without a name, a model's rows are rendered with its tokenizer's own chat template. A name
replaces that template by the renderer's format, written here as a chat template whose
``{% generation %}`` markers give the assistant's tokens their training weight.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

_ASSISTANT = "{% generation %}{{ message['content'] }}"

# Each template renders `messages` and, with add_generation_prompt, the assistant's header.
TEMPLATES: dict[str, str] = {
    # ChatML, as Qwen models write it.
    "qwen3": (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}<|im_start|>assistant\n"
        + _ASSISTANT
        + "<|im_end|>{% endgeneration %}\n"
        "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    # ChatML with an empty thinking block before every answer.
    "qwen3_disable_thinking": (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}<|im_start|>assistant\n<think>\n\n</think>\n\n"
        + _ASSISTANT
        + "<|im_end|>{% endgeneration %}\n"
        "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
    ),
    # Llama 3's headers.
    "llama3": (
        "{{ bos_token or '' }}{% for message in messages %}"
        "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
        "{% if message['role'] == 'assistant' %}" + _ASSISTANT + "<|eot_id|>{% endgeneration %}"
        "{% else %}{{ message['content'] }}<|eot_id|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    # Plain text: "User: …", "Assistant: …", for base models without a chat format.
    "role_colon": (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}Assistant: "
        + _ASSISTANT
        + "\n\n{% endgeneration %}"
        "{% else %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
}


def renderer_problem(name: str) -> str | None:
    """Why ``name`` is no renderer (naming the known ones), or None."""
    if name in TEMPLATES:
        return None
    return f"unknown renderer '{name}'; known renderers: {', '.join(sorted(TEMPLATES))}"


def _known(name: str) -> str:
    problem = renderer_problem(name)
    if problem:
        raise ValueError(problem)
    return name


RendererName = Annotated[str, AfterValidator(_known)]
"""A renderer's name, checked (``model.renderer_name``)."""
