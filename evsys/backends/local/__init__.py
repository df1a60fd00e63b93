"""The local backend: real training with TRL + PEFT and batched generation with transformers.

Offline on CPU, bf16 on a GPU. Importing this package registers the backend, its recipes and
its inference client without importing torch, transformers, trl or peft: they load when a run
starts (``import peft`` and ``from trl import SFTTrainer`` take seconds each).
"""

from evsys.backends.local import agent_rl, backend, distill, inference, rl, sft  # noqa: F401
