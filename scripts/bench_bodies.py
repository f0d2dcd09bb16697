#!/usr/bin/env python3
"""Realistic NodePool AdmissionReviews for the load benchmark (issue 12).

What kube-apiserver sends for a NodePool managed by a GitOps tool: 20 labels, annotations
with a ~1.5 KB `kubectl.kubernetes.io/last-applied-configuration`, `managedFields` as the
API server writes them (one entry per manager and subresource, each with `fieldsV1`), an
owner reference and a finalizer, and, once the operator has reconciled it, a status with
conditions. The root volume is ReadWriteOnce on `gp3-csi`, so every review is fully
evaluated and answered with warnings.

- CREATE (~4.6 KB): the object as `kubectl apply` creates it (its managedFields entry,
  no status yet).
- UPDATE (~13 KB): a replica change on the reconciled object; `oldObject` is the same
  object before the change (status, conditions, several managedFields entries).

Deterministic: the same bytes every run. `python3 scripts/bench_bodies.py DIR` writes
`nodepool-realistic-create.json` and `nodepool-realistic-update.json` into DIR (one line
each); the committed copies in examples/requests/ are checked against this generator by
scripts/bench_load.py.
"""
import copy
import json
import sys
from pathlib import Path

NAME, NAMESPACE, CLUSTER = "workers-east-1", "clusters-prod", "prod-east"
UID = "9d2a6c41-3b7e-4f0a-8e15-6c0d2b7f4a93"
CREATED = "2026-11-20T09:14:03Z"
RELEASE = "quay.io/openshift-release-dev/ocp-release:4.20.4-x86_64"
GROUP_VERSION = "hypershift.openshift.io/v1beta1"
GVK = {"group": "hypershift.openshift.io", "version": "v1beta1", "kind": "NodePool"}
GVR = {"group": "hypershift.openshift.io", "version": "v1beta1", "resource": "nodepools"}


def labels() -> dict:
    out = {
        "app.kubernetes.io/managed-by": "argocd",
        "app.kubernetes.io/part-of": "virt-platform",
        "app.kubernetes.io/instance": "prod-east-nodepools",
        "app.kubernetes.io/component": "worker-pool",
        "hypershift.openshift.io/nodepool-name": NAME,
        "hypershift.openshift.io/hosted-cluster": CLUSTER,
        "team": "virt-platform",
        "cost-center": "cc-4711",
        "environment": "production",
        "region": "us-east-1",
        "zone": "us-east-1a",
        "tier": "general-purpose",
        "owner": "platform-sre",
        "backup-policy": "none",
        "compliance.example.com/pci": "false",
        "compliance.example.com/sox": "true",
        "monitoring.example.com/scrape": "true",
        "argocd.argoproj.io/instance": "prod-east",
        "release-channel": "stable-4.20",
        "workload-class": "web",
    }
    assert len(out) == 20
    return out


def spec(replicas: int) -> dict:
    return {
        "arch": "amd64",
        "clusterName": CLUSTER,
        "management": {"autoRepair": True, "upgradeType": "Replace"},
        "nodeDrainTimeout": "10m0s",
        "nodeVolumeDetachTimeout": "5m0s",
        "platform": {
            "type": "KubeVirt",
            "kubevirt": {
                "attachDefaultNetwork": True,
                "compute": {"cores": 4, "memory": "16Gi", "qosClass": "Burstable"},
                "networkInterfaceMultiqueue": "Enable",
                "nodeSelector": {"node-role.kubernetes.io/infra-virt": ""},
                "rootVolume": {
                    "type": "Persistent",
                    "persistent": {"accessModes": ["ReadWriteOnce"], "size": "64Gi", "storageClass": "gp3-csi",
                                   "volumeMode": "Filesystem"},
                },
            },
        },
        "release": {"image": RELEASE},
        "replicas": replicas,
    }


def last_applied(replicas: int) -> str:
    """What `kubectl apply` records: the applied manifest, compact, with its labels."""
    applied = {
        "apiVersion": GROUP_VERSION, "kind": "NodePool",
        "metadata": {"labels": labels(), "name": NAME, "namespace": NAMESPACE},
        "spec": spec(replicas),
    }
    return json.dumps(applied, separators=(",", ":"), sort_keys=True)


def fields_of(value: dict) -> dict:
    """managedFields' fieldsV1 for a JSON object: `f:<key>` for each field, `.` for maps."""
    out = {}
    for k, v in value.items():
        if isinstance(v, dict):
            inner = fields_of(v)
            inner["."] = {}
            out[f"f:{k}"] = dict(sorted(inner.items()))
        else:
            out[f"f:{k}"] = {}
    return out


def apply_entry(replicas: int) -> dict:
    meta = {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
            "f:labels": dict(sorted({**{f"f:{k}": {} for k in labels()}, ".": {}}.items()))}
    return {"apiVersion": GROUP_VERSION, "fieldsType": "FieldsV1", "fieldsV1": {
        "f:metadata": meta, "f:spec": {".": {}, **fields_of(spec(replicas))}},
        "manager": "kubectl-client-side-apply", "operation": "Update", "time": CREATED}


def conditions() -> list:
    def c(type_, status, reason, message, gen=1):
        return {"lastTransitionTime": "2026-11-20T09:21:47Z", "message": message, "observedGeneration": gen,
                "reason": reason, "status": status, "type": type_}
    return [
        c("AutoscalingEnabled", "False", "AsExpected", ""),
        c("UpdateManagementEnabled", "True", "AsExpected", ""),
        c("ValidReleaseImage", "True", "AsExpected", "Using release image: " + RELEASE),
        c("ValidPlatformImage", "True", "AsExpected", "Bootstrap KubeVirt Image is " + RELEASE),
        c("ValidMachineConfig", "True", "AsExpected", ""),
        c("UpdatingConfig", "False", "AsExpected", ""),
        c("UpdatingVersion", "False", "AsExpected", ""),
        c("ReachedIgnitionEndpoint", "True", "AsExpected", ""),
        c("AllMachinesReady", "True", "AsExpected", "All is well"),
        c("AllNodesHealthy", "True", "AsExpected", "All is well"),
        c("KubeVirtNodesLiveMigratable", "False", "KubeVirtNodesLiveMigratable",
          "3 of 3 machines are not live migratable: DisksNotLiveMigratable"),
        c("Ready", "True", "AsExpected", ""),
    ]


def status() -> dict:
    return {"conditions": conditions(), "replicas": 3, "version": "4.20.4"}


def nodepool(replicas: int, generation: int, resource_version: str, reconciled: bool) -> dict:
    managed = [apply_entry(3)]
    meta = {
        "annotations": {
            "hypershift.openshift.io/nodePoolCurrentConfig": "8c1f2e3d",
            "hypershift.openshift.io/nodePoolCurrentConfigVersion": "5b8d2c1a",
            "kubectl.kubernetes.io/last-applied-configuration": last_applied(3),
        },
        "creationTimestamp": CREATED,
        "generation": generation,
        "labels": labels(),
        "managedFields": managed,
        "name": NAME,
        "namespace": NAMESPACE,
        "resourceVersion": resource_version,
        "uid": UID,
    }
    obj = {"apiVersion": GROUP_VERSION, "kind": "NodePool", "metadata": meta, "spec": spec(replicas)}
    if not reconciled:
        del meta["annotations"]["hypershift.openshift.io/nodePoolCurrentConfig"]
        del meta["annotations"]["hypershift.openshift.io/nodePoolCurrentConfigVersion"]
        return obj
    meta["finalizers"] = ["hypershift.openshift.io/finalizer"]
    meta["ownerReferences"] = [{"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
                                "name": CLUSTER, "uid": "0b7e2f6a-51c4-4d3e-9a8b-2c6f1e0d9b47"}]
    managed.append({"apiVersion": GROUP_VERSION, "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {
        "f:annotations": {"f:hypershift.openshift.io/nodePoolCurrentConfig": {},
                          "f:hypershift.openshift.io/nodePoolCurrentConfigVersion": {}},
        "f:finalizers": {".": {}, 'v:"hypershift.openshift.io/finalizer"': {}},
        "f:ownerReferences": {".": {}, 'k:{"uid":"0b7e2f6a-51c4-4d3e-9a8b-2c6f1e0d9b47"}': {}}}},
        "manager": "hypershift-operator-manager", "operation": "Update", "time": "2026-11-20T09:14:04Z"})
    managed.append({"apiVersion": GROUP_VERSION, "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {
        ".": {}, "f:conditions": {".": {}, **{f'k:{{"type":"{c["type"]}"}}': {
            ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {},
            "f:status": {}, "f:type": {}} for c in conditions()}}, "f:replicas": {}, "f:version": {}}},
        "manager": "hypershift-operator-manager", "operation": "Update", "subresource": "status",
        "time": "2026-11-20T09:21:47Z"})
    managed.append({"apiVersion": GROUP_VERSION, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}, "manager": "argocd-controller",
                    "operation": "Update", "time": "2026-11-21T16:02:11Z"})
    obj["status"] = status()
    return obj


def review(operation: str, obj: dict, old: dict | None, uid: str) -> dict:
    req = {
        "uid": uid, "kind": GVK, "resource": GVR, "requestKind": GVK, "requestResource": GVR,
        "name": NAME, "namespace": NAMESPACE, "operation": operation,
        "userInfo": {"username": "system:serviceaccount:openshift-gitops:argocd-application-controller",
                     "uid": "5d3c2b1a-0f9e-4d8c-b7a6-958473625140",
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:openshift-gitops",
                                "system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions",
                    "fieldManager": "argocd-controller"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def bodies() -> dict:
    """File name → one-line JSON body."""
    create = review("CREATE", nodepool(3, 1, "48213977", reconciled=False), None,
                    "3b8f2c1d-9e4a-4f6b-8c2d-1a7e5f9b0c3d")
    old = nodepool(3, 1, "48220412", reconciled=True)
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    new["metadata"]["generation"] = 2
    update = review("UPDATE", new, old, "c4e7a9b2-6d1f-4e83-a5c0-7b2d9f3e1a68")
    dump = lambda d: json.dumps(d, separators=(",", ":"))
    return {"nodepool-realistic-create.json": dump(create), "nodepool-realistic-update.json": dump(update)}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "examples/requests"
    for name, text in bodies().items():
        (out / name).write_text(text + "\n")
        print(f"{out / name}: {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
