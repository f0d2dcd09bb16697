//! CDI's built-in storage capabilities by provisioner (domain §4.2, CDI
//! `pkg/storagecapabilities/storagecapabilities.go` `CapabilitiesByProvisionerKey`).
//!
//! CDI fills a StorageProfile's `status.claimPropertySets` from this table when the profile
//! has no `spec.claimPropertySets`. We use it when no StorageProfile is known for a class
//! (CDI not installed, or the profile not reconciled yet) and say so in a finding.
//! Order matters: the first set is what a DataVolume gets when it requests nothing (§4.3).

use std::collections::BTreeMap;

use crate::resources::{AccessMode, VolumeMode};

use AccessMode::{ReadOnlyMany as ROX, ReadWriteMany as RWX, ReadWriteOnce as RWO};
use VolumeMode::{Block, Filesystem as File};

/// One capability: an access mode with a volume mode.
pub type Capability = (AccessMode, VolumeMode);

const RBD: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File)];
const ALL_BUT_RWX_FILE: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File), (ROX, Block), (ROX, File)];
const ALL_FS: &[Capability] = &[(RWX, File), (RWO, File), (ROX, File)];
const DELL_BLOCK: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File), (ROX, Block)];
const RWO_BLOCK_AND_FS: &[Capability] = &[(RWO, Block), (RWO, File)];
const RWX_BLOCK_FIRST: &[Capability] = &[(RWX, Block), (RWO, Block), (RWO, File)];
const RWO_FS: &[Capability] = &[(RWO, File)];
const RWO_BLOCK: &[Capability] = &[(RWO, Block)];
const RWX_FS: &[Capability] = &[(RWX, File)];
const RWX_FS_RWO_FS: &[Capability] = &[(RWX, File), (RWO, File)];

/// The StorageClass parameters [`provisioner_key`] reads; the caches keep only these.
pub const PARAMETER_KEYS: &[&str] = &[
    "backend",
    "backendType",
    "csi.storage.k8s.io/fstype",
    "fsType",
    "migratable",
    "nfsOptions",
    "protocol",
    "selector",
    "sharedv4_mount_options",
    "storage_protocol",
    "type",
];

/// The capability table key CDI derives from a StorageClass (`storageProvisionerKey`):
/// some provisioners are split by a parameter (EBS volume type, Trident backend, …).
pub fn provisioner_key(provisioner: &str, parameters: &BTreeMap<String, String>) -> String {
    let param = |k: &str| {
        debug_assert!(PARAMETER_KEYS.contains(&k), "{k} missing from PARAMETER_KEYS");
        parameters.get(k).map(String::as_str).unwrap_or("")
    };
    let fs_type = || param("csi.storage.k8s.io/fstype").to_ascii_lowercase();
    let has_nfs_mount_opts = || {
        let opts: Vec<&str> = param("sharedv4_mount_options").split(',').collect();
        opts.contains(&"vers=3.0") && opts.contains(&"nolock")
    };
    let key = match provisioner {
        "kubernetes.io/portworx-volume" if has_nfs_mount_opts() => "kubernetes.io/portworx-volume/nfs",
        "pxd.portworx.com" => match (parameters.contains_key("backend"), param("backend")) {
            (true, "pure_block") => "pxd.portworx.com/pure_block",
            (true, "pure_fa_file") => "pxd.portworx.com/pure_fa_file",
            (false, _) if has_nfs_mount_opts() => "pxd.portworx.com/nfs",
            _ => "pxd.portworx.com",
        },
        "csi.trident.netapp.io" => {
            let backend = param("backendType");
            let flex = param("selector")
                .split([';', ','])
                .any(|s| s.trim() == "performance=flex");
            if backend.starts_with("ontap-nas") {
                "csi.trident.netapp.io/ontap-nas"
            } else if backend.starts_with("ontap-san") {
                "csi.trident.netapp.io/ontap-san"
            } else if backend == "google-cloud-netapp-volumes" && flex {
                "csi.trident.netapp.io/gcnv-flex"
            } else {
                "UNKNOWN"
            }
        }
        "infinibox-csi-driver" => match param("storage_protocol") {
            "iscsi" | "fc" => "infinibox-csi-driver/iscsiorfibrechannel",
            "nvme" => "infinibox-csi-driver/nvme",
            "nfs" | "nfs_treeq" => "infinibox-csi-driver/nfs",
            _ => "UNKNOWN",
        },
        "csi.vsphere.vmware.com" if fs_type().contains("nfs") => "csi.vsphere.vmware.com/nfs",
        "csi-unity.dellemc.com" if param("protocol").eq_ignore_ascii_case("nfs") => {
            "csi-unity.dellemc.com/nfs"
        }
        "csi-powerstore.dellemc.com" if fs_type() == "nfs" => "csi-powerstore.dellemc.com/nfs",
        "csi-vxflexos.dellemc.com" if fs_type() == "nfs" => "csi-vxflexos.dellemc.com/nfs",
        "csi-powermax.dellemc.com" if fs_type() == "nfs" => "csi-powermax.dellemc.com/nfs",
        "csi.huawei.com" if param("protocol") == "nfs" => "csi.huawei.com/nfs",
        "driver.longhorn.io" => {
            if param("migratable") == "true" {
                "driver.longhorn.io/migratable"
            } else if !param("nfsOptions").is_empty() {
                "driver.longhorn.io/nfs"
            } else if !param("fsType").is_empty() {
                "driver.longhorn.io/fs"
            } else {
                "driver.longhorn.io"
            }
        }
        "ebs.csi.aws.com" => match param("type") {
            "io1" => "ebs.csi.aws.com/io1",
            "io2" => "ebs.csi.aws.com/io2",
            "gp2" | "gp3" => "ebs.csi.aws.com/gp",
            _ => "ebs.csi.aws.com",
        },
        "pd.csi.storage.gke.io" => match param("type") {
            "hyperdisk-balanced" | "hyperdisk-balanced-high-availability" => {
                "pd.csi.storage.gke.io/hyperdisk"
            }
            _ => "pd.csi.storage.gke.io",
        },
        other => other,
    };
    key.to_owned()
}

/// CDI's `kubernetes.io/no-provisioner` (local PVs): capabilities come from existing PVs,
/// which we do not watch, so such classes are treated as unknown (domain §4.2 item 3).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Capabilities for a provisioner key, `None` when CDI does not know it (§4.2 item 4:
/// the profile then gets no claimPropertySets).
pub fn capabilities(key: &str) -> Option<&'static [Capability]> {
    Some(match key {
        // hostpath-provisioner and other node-local file provisioners
        "kubevirt.io.hostpath-provisioner"
        | "kubevirt.io/hostpath-provisioner"
        | "k8s.io/minikube-hostpath" => RWO_FS,
        "kubernetes.io/storageos" | "storageos" | "directpv-min-io" => RWO_FS,
        // NFS and other shared file systems
        "nfs.csi.k8s.io" | "k8s-sigs.io/nfs-subdir-external-provisioner" => RWX_FS,
        "kubernetes.io/azure-file" | "file.csi.azure.com" | "manila.csi.openstack.org" => RWX_FS,
        "efs.csi.aws.com" => RWX_FS_RWO_FS,
        // Ceph RBD under all its provisioner names
        "kubernetes.io/rbd"
        | "rbd.csi.ceph.com"
        | "rook-ceph.rbd.csi.ceph.com"
        | "openshift-storage.rbd.csi.ceph.com" => RBD,
        // CephFS under all its provisioner names (RWX FS, RWO FS at the domain sheet's CDI commit)
        "cephfs.csi.ceph.com" | "rook-ceph.cephfs.csi.ceph.com" | "openshift-storage.cephfs.csi.ceph.com" => {
            RWX_FS_RWO_FS
        }
        "linstor.csi.linbit.com" | "csi-unity.dellemc.com" | "csi.huawei.com" => ALL_BUT_RWX_FILE,
        "csi-unity.dellemc.com/nfs" | "csi-vxflexos.dellemc.com/nfs" | "csi-isilon.dellemc.com" => ALL_FS,
        "csi-powermax.dellemc.com/nfs" | "csi-powerstore.dellemc.com/nfs" | "csi.huawei.com/nfs" => ALL_FS,
        "csi-vxflexos.dellemc.com" => ALL_BUT_RWX_FILE,
        "csi-powermax.dellemc.com" | "csi-powerstore.dellemc.com" => DELL_BLOCK,
        // AWS EBS by volume type
        "kubernetes.io/aws-ebs" | "ebs.csi.aws.com" | "ebs.csi.aws.com/io1" | "ebs.csi.aws.com/gp" => {
            RWO_BLOCK
        }
        "ebs.csi.aws.com/io2" => RWX_BLOCK_FIRST,
        // Azure disk, GCE PD
        "kubernetes.io/azure-disk" | "disk.csi.azure.com" => RWO_BLOCK,
        "kubernetes.io/gce-pd" | "pd.csi.storage.gke.io" => RWO_BLOCK,
        "pd.csi.storage.gke.io/hyperdisk" => RWX_BLOCK_FIRST,
        // Block arrays with multi-attach
        "hspc.csi.hitachi.com" | "csi.hpe.com" | "block.csi.ibm.com" | "blockvolume.csi.oraclecloud.com" => {
            RWX_BLOCK_FIRST
        }
        "infinibox-csi-driver/iscsiorfibrechannel" | "infinibox-csi-driver/nvme" => RWX_BLOCK_FIRST,
        "infinibox-csi-driver/nfs" | "spectrumscale.csi.ibm.com" => RWX_FS_RWO_FS,
        // Portworx
        "kubernetes.io/portworx-volume" | "pxd.portworx.com" => {
            &[(RWX, Block), (RWX, File), (RWO, Block), (RWO, File)]
        }
        "kubernetes.io/portworx-volume/nfs" | "pxd.portworx.com/nfs" | "pxd.portworx.com/pure_fa_file" => {
            RWX_FS_RWO_FS
        }
        "pxd.portworx.com/pure_block" => RWX_BLOCK_FIRST,
        // NetApp Trident (other backends map to "UNKNOWN": no sets)
        "csi.trident.netapp.io/ontap-nas" | "csi.trident.netapp.io/gcnv-flex" => RWX_FS_RWO_FS,
        "csi.trident.netapp.io/ontap-san" => &[(RWX, Block)],
        // TopoLVM / LVMS, Cinder, oVirt
        "topolvm.cybozu.com" | "topolvm.io" => RWO_BLOCK_AND_FS,
        "cinder.csi.openstack.org" | "csi.ovirt.org" => RWO_BLOCK_AND_FS,
        // vSphere (NFS file shares are RWX)
        "csi.vsphere.vmware.com" => RWO_BLOCK_AND_FS,
        "csi.vsphere.vmware.com/nfs" => &[(RWX, File), (RWO, Block), (RWO, File)],
        "kubesan.gitlab.io" => &[(RWX, Block), (ROX, Block), (RWO, Block), (RWO, File)],
        // Longhorn
        "driver.longhorn.io" => RWO_BLOCK,
        "driver.longhorn.io/migratable" => &[(RWX, Block), (RWO, Block)],
        "driver.longhorn.io/nfs" => RWX_FS_RWO_FS,
        "driver.longhorn.io/fs" => RWO_FS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keys_split_by_parameters_like_cdi() {
        let cases = [
            (
                "ebs.csi.aws.com",
                params(&[("type", "gp3")]),
                "ebs.csi.aws.com/gp",
            ),
            (
                "ebs.csi.aws.com",
                params(&[("type", "io2")]),
                "ebs.csi.aws.com/io2",
            ),
            ("ebs.csi.aws.com", params(&[]), "ebs.csi.aws.com"),
            (
                "csi.trident.netapp.io",
                params(&[("backendType", "ontap-nas-economy")]),
                "csi.trident.netapp.io/ontap-nas",
            ),
            (
                "csi.trident.netapp.io",
                params(&[("backendType", "solidfire-san")]),
                "UNKNOWN",
            ),
            (
                "driver.longhorn.io",
                params(&[("migratable", "true")]),
                "driver.longhorn.io/migratable",
            ),
            (
                "csi.vsphere.vmware.com",
                params(&[("csi.storage.k8s.io/fstype", "NFS4")]),
                "csi.vsphere.vmware.com/nfs",
            ),
            (
                "pxd.portworx.com",
                params(&[("sharedv4_mount_options", "vers=3.0,nolock")]),
                "pxd.portworx.com/nfs",
            ),
            (
                "pd.csi.storage.gke.io",
                params(&[("type", "hyperdisk-balanced")]),
                "pd.csi.storage.gke.io/hyperdisk",
            ),
            (
                "rook-ceph.rbd.csi.ceph.com",
                params(&[("pool", "x")]),
                "rook-ceph.rbd.csi.ceph.com",
            ),
        ];
        for (prov, p, want) in cases {
            assert_eq!(provisioner_key(prov, &p), want, "{prov} {p:?}");
        }
    }

    #[test]
    fn first_set_decides_rwx_for_well_known_classes() {
        let first_rwx = |k: &str| capabilities(k).map(|c| c[0].0 == RWX);
        assert_eq!(first_rwx("openshift-storage.rbd.csi.ceph.com"), Some(true));
        assert_eq!(first_rwx("openshift-storage.cephfs.csi.ceph.com"), Some(true));
        assert_eq!(first_rwx("ebs.csi.aws.com/gp"), Some(false));
        assert_eq!(first_rwx("kubevirt.io.hostpath-provisioner"), Some(false));
        assert_eq!(first_rwx("topolvm.io"), Some(false));
        assert_eq!(first_rwx("nfs.csi.k8s.io"), Some(true));
        assert_eq!(first_rwx("UNKNOWN"), None);
        assert_eq!(first_rwx("example.com/unknown"), None);
        assert_eq!(first_rwx(NO_PROVISIONER), None);
    }
}
