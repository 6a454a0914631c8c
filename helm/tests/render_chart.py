#!/usr/bin/env python3
"""Lints, renders and validates the Warble chart; prints one JSON report.

Run by the Rust tests in helm/tests/chart.rs, which assert on the report.
Uses the real Helm library (PyPI `helm-python-sdk`, module `helm_python`) and
the Kubernetes OpenAPI schemas of `kubernetes-validate`; no helm binary and no
cluster are needed.

    python3 render_chart.py --chart helm/warble --values-dir helm/warble/ci \
        --bad-values-dir helm/tests/bad-values --kube-version 1.30.0 --kube-version 1.37.0

For the default values and every `*.yaml` in --values-dir it reports: the
strict lint findings, the rendered objects (parsed), and the result of
validating each object against every --kube-version's schemas (strict: unknown
fields are errors). For every file in --bad-values-dir it reports the schema
error, or the render error when the schema accepts the file.

Exit status: 0 with the report on stdout; 3 when Python packages are missing
(the message says which; the caller decides whether that skips or fails).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys

MISSING_TOOLING = 3
RELEASE = "warble"
NAMESPACE = "warble"


def import_tooling():
    """Imports the two packages, or exits with MISSING_TOOLING naming them."""
    missing = []
    try:
        import helm_python  # noqa: F401
    except ImportError:
        missing.append("helm-python-sdk==0.2.2")
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        missing.append("kubernetes-validate==1.37.0")
    try:
        import yaml  # noqa: F401  (a dependency of kubernetes-validate)
    except ImportError:
        missing.append("PyYAML")
    if missing:
        print("missing Python packages: " + ", ".join(missing), file=sys.stderr)
        sys.exit(MISSING_TOOLING)


def yaml_loader():
    """libyaml's loader when PyYAML was built with it (several times faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# What an operator must always give (the gateway's token issuer and
# audience, media-svc's bucket): every value set and bad-values file is
# rendered on top of it, and the "default" set is it alone.
REQUIRED_VALUES = pathlib.Path(__file__).parent / "required-values.yaml"


def merged(base: dict, override: dict) -> dict:
    """`override` deep-merged onto `base`, as Helm merges values files."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def load_values(path: pathlib.Path | None):
    import yaml

    with REQUIRED_VALUES.open() as file:
        required = yaml.load(file, Loader=yaml_loader()) or {}
    if path is None:
        return required
    with path.open() as file:
        return merged(required, yaml.load(file, Loader=yaml_loader()) or {})


def rendered_objects(manifests: dict[str, str]):
    """Parses every rendered template into objects; NOTES.txt is returned apart."""
    import yaml

    objects, notes = [], ""
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.load_all(text, Loader=yaml_loader()):
            if document:
                objects.append({"template": template, "object": document})
    return objects, notes


def validate(objects, kube_versions):
    import kubernetes_validate
    from kubernetes_validate import utils

    # kubernetes-validate re-reads (and re-parses) the multi-megabyte schema
    # files for every object; they never change during a run.
    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    results = []
    for entry in objects:
        obj = entry["object"]
        for version in kube_versions:
            result = {
                "kind": obj.get("kind"),
                "name": obj.get("metadata", {}).get("name"),
                "kube_version": version,
                "error": None,
                "skipped": None,
            }
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except utils.SchemaNotFoundError as error:
                result["skipped"] = error.message
            except utils.ValidationError as error:
                path = "/".join(str(part) for part in error.path)
                result["error"] = f"{path}: {error.message}"
            except Exception as error:  # noqa: BLE001 - reported, the test fails on it
                result["error"] = f"{type(error).__name__}: {error}"
            results.append(result)
    return results


def value_set_report(helm, chart, chart_dir, name, values_file, kube_versions):
    values = load_values(values_file)
    lint = helm.lint(
        str(chart_dir),
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version="v" + kube_versions[0],
    )
    report = {
        "name": name,
        "file": str(values_file) if values_file else None,
        "lint": {"errors": lint.get("errors") or [], "messages": lint.get("messages") or []},
        "render_error": None,
        "objects": [],
        "notes": "",
        "validation": [],
    }
    try:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as error:
        report["render_error"] = str(error)
        return report
    report["objects"], report["notes"] = rendered_objects(manifests)
    report["validation"] = validate(report["objects"], kube_versions)
    return report


def bad_values_report(helm, chart, values_file):
    values = load_values(values_file)
    report = {"file": values_file.name, "schema_error": None, "render_error": None}
    try:
        chart.validate_schema(values)
    except helm.HelmError as error:
        report["schema_error"] = str(error)
        return report
    try:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as error:
        report["render_error"] = str(error)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", required=True, type=pathlib.Path)
    parser.add_argument("--values-dir", required=True, type=pathlib.Path)
    parser.add_argument("--bad-values-dir", required=True, type=pathlib.Path)
    parser.add_argument("--kube-version", action="append", required=True)
    args = parser.parse_args()

    import_tooling()
    import helm_python as helm
    import kubernetes_validate.version

    kube_versions = [version.removeprefix("v") for version in args.kube_version]
    report = {
        "tooling": {
            "helm_sdk": helm.helm_sdk_version(),
            "helm_python_sdk": helm.__version__,
            "kubernetes_validate": kubernetes_validate.version.__version__,
            "kube_versions": kube_versions,
        },
        "value_sets": [],
        "bad_values": [],
    }
    with helm.Chart.load(str(args.chart)) as chart:
        sets = [("default", None)] + [
            (path.stem, path) for path in sorted(args.values_dir.glob("*.yaml"))
        ]
        for name, values_file in sets:
            report["value_sets"].append(
                value_set_report(helm, chart, args.chart, name, values_file, kube_versions)
            )
        for values_file in sorted(args.bad_values_dir.glob("*.yaml")):
            report["bad_values"].append(bad_values_report(helm, chart, values_file))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
