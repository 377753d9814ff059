"""Run by .venv-kube's Python: validate objects (JSON list on stdin) with the `kubernetes`
client's pydantic models, which forbid unknown fields; print the errors as a JSON list."""

import json
import sys
from typing import Any

from kubernetes.client import models


def model_for(doc: dict[str, Any]) -> Any:
    """The model class of an object: V1Deployment, V2HorizontalPodAutoscaler, ..."""
    version = doc["apiVersion"].rsplit("/", 1)[-1]
    return getattr(models, version[0].upper() + version[1:] + doc["kind"])


def main() -> None:
    errors = []
    for doc in json.load(sys.stdin):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            model_for(doc).model_validate(doc)
        except AttributeError:
            errors.append(f"{where}: no model for {doc['apiVersion']} {doc['kind']}")
        except Exception as error:  # pydantic's ValidationError, reported as data
            errors.append(f"{where}: {error}")
    json.dump(errors, sys.stdout)


main()
