#!/usr/bin/env python3
"""Validates everything in deploy/ offline (README "Deploying"; run by scripts/test.sh):

1. renders every kustomization under deploy/kubernetes/ with `kubectl kustomize` (kustomize is
   built into kubectl; no cluster is contacted) into target/deploy-render/;
2. validates every rendered overlay and every standalone manifest (a YAML file outside the
   kustomization folders: monitoring/, rollouts/, flagger/) with kubernetes-validate, strict
   (unknown fields rejected), against each Kubernetes version in K8S_VERSIONS. Custom resources
   (Argo Rollouts, Flagger, Prometheus Operator) have no schema there: kubernetes-validate warns
   and they pass only if their kind is in CRD_KINDS; any other warning fails;
3. runs `shadowdiff check-config` on deploy/shadowdiff.yaml, and on each rendered overlay's
   config as the pod sees it: the shadowdiff-config and shadowdiff-rules ConfigMaps written out
   at their mount paths' relative layout (config/, rules/) with a throwaway admin token in
   admin-token/token.

Usage: validate-deploy.py SHADOWDIFF_BINARY
"""

import os
import shutil
import pathlib
import re
import secrets
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
OUT = ROOT / "target" / "deploy-render"
# 1.29: the first release with native sidecars on by default; 1.37: the newest schemas
# kubernetes-validate 1.37.0 ships.
K8S_VERSIONS = ["1.29.0", "1.37.0"]
CRD_KINDS = {"AnalysisTemplate", "Rollout", "MetricTemplate", "Canary", "PrometheusRule",
             "ServiceMonitor"}
VALIDATE = pathlib.Path(sys.executable).parent / "kubernetes-validate"

failures = []


def fail(msg):
    print(f"FAIL {msg}")
    failures.append(msg)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def kustomizations():
    return sorted(p.parent for p in KUBE.rglob("kustomization.yaml"))


def render(dirs):
    OUT.mkdir(parents=True, exist_ok=True)
    out = {}
    if shutil.which("kubectl") is None:
        # The machine image ships kubectl (google-cloud-cli); a machine without it, where the
        # install script could not add it either, still checks every base resource file alone.
        print("WARNING: kubectl not found: overlays not rendered; each base resource validated alone")
        for d in dirs:
            k = yaml.safe_load((d / "kustomization.yaml").read_text()) or {}
            for r in k.get("resources", []):
                f = d / r
                if f.is_file():
                    out[f] = f
        return out
    for d in dirs:
        name = str(d.relative_to(KUBE)).replace("/", "-")
        r = run(["kubectl", "kustomize", str(d)])
        if r.returncode != 0:
            fail(f"kubectl kustomize {d.relative_to(ROOT)}: {r.stderr.strip()}")
            continue
        f = OUT / f"{name}.yaml"
        f.write_text(r.stdout)
        out[d] = f
        print(f"rendered {d.relative_to(ROOT)} -> {f.relative_to(ROOT)}")
    return out


def standalone(dirs):
    """YAML manifests that are not part of a kustomization's folder tree."""
    files = []
    for f in sorted(KUBE.rglob("*.yaml")):
        if any(d == f.parent or d in f.parents for d in dirs):
            continue
        files.append(f)
    return files


def validate(files):
    for version in K8S_VERSIONS:
        for f in files:
            r = run([str(VALIDATE), "--strict", "-k", version, str(f)])
            shown = f.relative_to(ROOT)
            bad = [l for l in r.stdout.splitlines() + r.stderr.splitlines()
                   if l.strip() and not l.startswith("INFO")]
            ok = r.returncode == 0
            crds = set()
            for l in bad:
                m = re.search(r"Couldn't find schema for kind (\w+)", l)
                if l.startswith("WARN") and m and m.group(1) in CRD_KINDS:
                    crds.add(m.group(1))
                    continue
                ok = False
                print(f"  {l}")
            if ok:
                note = f"; no schema for custom resources {sorted(crds)}" if crds else ""
                print(f"valid {shown} (Kubernetes {version}{note})")
            else:
                fail(f"kubernetes-validate {shown} against {version} (exit {r.returncode})")


def check_config(binary, config):
    r = run([binary, "check-config", str(config)])
    if r.returncode != 0:
        fail(f"check-config {config}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    else:
        print(f"check-config ok: {config}")


def config_maps(rendered):
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    cms = {}
    for d in docs:
        if d.get("kind") == "ConfigMap":
            name = d["metadata"]["name"]
            for base in ("shadowdiff-config", "shadowdiff-rules"):
                if name == base or name.startswith(base + "-"):
                    cms[base] = d.get("data", {})
    return cms


def check_rendered_configs(binary, rendered):
    for d, f in rendered.items():
        cms = config_maps(f)
        if "shadowdiff-config" not in cms:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t = pathlib.Path(tmp)
            for sub, cm in (("config", "shadowdiff-config"), ("rules", "shadowdiff-rules")):
                (t / sub).mkdir()
                for k, v in cms.get(cm, {}).items():
                    (t / sub / k).write_text(v)
            (t / "admin-token").mkdir()
            (t / "admin-token" / "token").write_text(secrets.token_hex(32) + "\n")
            print(f"as mounted from {f.relative_to(ROOT)}:", end=" ")
            check_config(binary, t / "config" / "shadowdiff.yaml")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    dirs = kustomizations()
    rendered = render(dirs)
    validate(list(rendered.values()) + standalone(dirs))
    for c in sorted(DEPLOY.glob("*.yaml")):
        check_config(binary, c)
    if shutil.which("kubectl") is not None:
        check_rendered_configs(binary, rendered)
    if failures:
        print(f"deploy: {len(failures)} problem(s)")
        sys.exit(1)
    print("deploy: every manifest valid, every example config checked")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
