"""Build a self-contained Bento of churnml's service (``make bento``).

1. copy the two champions from the MLflow registry into BentoML's model store
   (:func:`bento_models.import_champions`);
2. stage a build folder: ``service.py``, ``bento_models.py``, ``bentofile.yaml``, the
   declarative configuration (``features/*.yaml``, ``models/*.yaml``), the health weights the
   weekly job uses now (``features/serving_health.yaml``: the adopted version, else the
   defaults) and the ``churnml`` package source, so the Bento needs neither this checkout,
   the MLflow store nor the data home;
3. ``bentoml build`` it. Prints the Bento tag; serve it with ``bentoml serve <tag>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def stage(ctx: Path, model_tags: list[str] | None = None) -> Path:
    """Copy what the Bento needs into ``ctx`` (the build context); ``model_tags``: the
    imported champions, written into the staged ``bentofile.yaml``'s ``models``."""
    from churnml.config import features_dir, models_dir

    for name in ("service.py", "bento_models.py", "bentofile.yaml"):
        shutil.copy2(HERE / name, ctx / name)
    if model_tags is not None:
        import yaml

        spec = yaml.safe_load((ctx / "bentofile.yaml").read_text())
        spec["models"] = [f"{tag.split(':')[0]}:latest" for tag in model_tags]
        (ctx / "bentofile.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # the configuration in use (CHURNML_CONFIG_DIR, else the defaults: churnml.config)
    for folder, source in (("features", features_dir()), ("models", models_dir())):
        (ctx / folder).mkdir()
        for path in sorted(source.glob("*.yaml")):
            shutil.copy2(path, ctx / folder / path.name)
    shutil.copytree(ROOT / "src" / "churnml", ctx / "churnml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    embed_health_weights(ctx / "features")
    return ctx


def embed_health_weights(folder: Path) -> Path:
    """Write the health weights the weekly job uses now (the adopted version under the data
    home, else the defaults) into ``folder`` as ``serving_health.yaml``: the built Bento
    scores with them wherever it runs (``churnml.api.predictor.serving_health``)."""
    from churnml.api.predictor import EMBEDDED_HEALTH_FILE
    from churnml.health.adopted import load_adopted_health

    health = load_adopted_health()
    path = health.save(folder / EMBEDDED_HEALTH_FILE)
    print(f"health weights {health.version} -> {path.name}", file=sys.stderr)
    return path


def build() -> str:
    """Import the champions, stage and build; returns the Bento tag."""
    sys.path.insert(0, str(HERE))
    from bento_models import import_champions

    tags = import_champions()
    for tag in tags:
        print(f"model {tag}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="churnml-bento-") as tmp:
        ctx = stage(Path(tmp), tags)
        result = subprocess.run(
            [sys.executable, "-m", "bentoml", "build", ".", "--output", "tag"],
            cwd=ctx, env={**os.environ, "CHURNML_CONFIG_DIR": str(ctx)},
            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(result.returncode)
    tag = result.stdout.strip().splitlines()[-1].replace("__tag__:", "").strip()
    return tag


if __name__ == "__main__":
    from churnml.errors import ChurnMLError

    try:
        print(build())
    except ChurnMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
